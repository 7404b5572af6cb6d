//! The service layer: what Kifly does, independent of how it is asked. REST handlers, MCP tools and
//! the CLI all call these functions, so rules (scopes, ownership, limits, coverage) live in one place.

pub mod buyers;
pub mod carts;
pub mod catalog;
pub mod checkout;
pub mod keys;
pub mod webhooks;

use kifly_store::AuditEntry;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::now_ms;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Serialises an operation's result to the JSON that is sent, and stored for replay. Idempotent
/// operations render inside their transaction (the outcome commits with the write), so this goes
/// straight to text rather than through a `serde_json::Value` tree.
pub fn render<T: serde::Serialize + ?Sized>(value: &T) -> ApiResult<Box<serde_json::value::RawValue>> {
    serde_json::value::to_raw_value(value).map_err(|_| ApiError::internal(None))
}

/// Deserialises a request body into `T`, reporting shape errors as `400 invalid_request` with the
/// field at fault in `details.field`.
pub fn parse_body<T: DeserializeOwned>(body: Value) -> ApiResult<T> {
    let body = if body.is_null() { Value::Object(Default::default()) } else { body };
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde names missing/unknown fields in the message, not the path.
        let named = message.split('`').nth(1).filter(|_| message.contains("field `"));
        let field = match (named, path.as_str()) {
            (Some(name), ".") => name.to_string(),
            (Some(name), parent) => format!("{parent}.{name}"),
            (None, p) => p.to_string(),
        };
        ApiError::invalid_request(&field, format!("Invalid request body at {field}: {message}"))
    })
}

/// An audit row for `caller` doing `action` on `resource_id`.
pub fn audit(caller: &Caller, action: &str, resource_id: Option<&str>) -> AuditEntry {
    AuditEntry {
        id: kifly_core::ids::new_id(kifly_core::ids::IdKind::Audit),
        api_key_id: caller.id().to_string(),
        action: action.to_string(),
        resource_id: resource_id.map(str::to_string),
        metadata: None,
        created_at: now_ms(),
    }
}
