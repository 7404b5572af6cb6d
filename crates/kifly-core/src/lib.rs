//! Kifly's commerce domain, free of IO.
//!
//! Everything here is plain data and pure rules: prefixed ids, money in integer US cents, the catalog
//! import format and its validation, seller delivery coverage, US shipping addresses, cart totals and
//! platform limits. The store persists these types and the server's service layer applies the rules;
//! keeping them here means the rules are unit-tested without a database and shared by every front end
//! (REST, MCP, CLI).

pub mod address;
pub mod catalog;
pub mod coverage;
pub mod ids;
pub mod limits;
pub mod money;
pub mod scope;

/// A field-level validation failure: which field (a dotted path such as `sellers[0].products[2].title`)
/// and why. The server maps it to `422 validation_error` (or `400 invalid_request` for shape errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}
