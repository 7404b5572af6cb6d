//! Agent-key scopes. A key carries a set of them; each route names the one it needs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "catalog:read")]
    CatalogRead,
    #[serde(rename = "checkout:write")]
    CheckoutWrite,
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "buyer:write")]
    BuyerWrite,
    #[serde(rename = "feedback:write")]
    FeedbackWrite,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::CatalogRead,
        Scope::CheckoutWrite,
        Scope::OrdersRead,
        Scope::BuyerWrite,
        Scope::FeedbackWrite,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::CatalogRead => "catalog:read",
            Scope::CheckoutWrite => "checkout:write",
            Scope::OrdersRead => "orders:read",
            Scope::BuyerWrite => "buyer:write",
            Scope::FeedbackWrite => "feedback:write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s.trim())
    }
}

/// Parses a comma-separated scope list (`catalog:read,checkout:write`). Empty input means every scope.
pub fn parse_list(list: &str) -> Result<Vec<Scope>, String> {
    if list.trim().is_empty() {
        return Ok(Scope::ALL.to_vec());
    }
    let mut out = Vec::new();
    for part in list.split(',') {
        let scope = Scope::parse(part).ok_or_else(|| {
            let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown scope {:?} (known: {})", part.trim(), known.join(", "))
        })?;
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        assert_eq!(parse_list("").unwrap().len(), 5);
        assert_eq!(
            parse_list("catalog:read, checkout:write").unwrap(),
            vec![Scope::CatalogRead, Scope::CheckoutWrite]
        );
        assert!(parse_list("catalog:write").is_err());
    }
}
