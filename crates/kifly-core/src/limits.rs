//! Platform limits: operator-tunable caps stored in the database and read at run time.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The caps every cart is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformLimits {
    /// Largest quantity one cart line may hold.
    pub max_item_quantity: i64,
    /// Largest cart total (subtotal + delivery fee) that may be checked out.
    pub max_cart_total_cents: i64,
}

impl Default for PlatformLimits {
    fn default() -> Self {
        Self { max_item_quantity: 20, max_cart_total_cents: 100_000 }
    }
}

impl PlatformLimits {
    /// Applies one `KEY=VALUE` setting as given to `kifly limits set`.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), FieldError> {
        let parsed: i64 = value
            .trim()
            .parse()
            .map_err(|_| FieldError::new(key, format!("expected a whole number, got {value:?}")))?;
        if parsed < 1 {
            return Err(FieldError::new(key, "must be at least 1"));
        }
        match key {
            "max_item_quantity" => self.max_item_quantity = parsed,
            "max_cart_total_cents" => self.max_cart_total_cents = parsed,
            _ => {
                return Err(FieldError::new(
                    key,
                    "unknown limit (known: max_item_quantity, max_cart_total_cents)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_sets_known_keys_and_rejects_bad_values() {
        let mut l = PlatformLimits::default();
        l.apply("max_item_quantity", "5").unwrap();
        assert_eq!(l.max_item_quantity, 5);
        assert!(l.apply("max_item_quantity", "0").is_err());
        assert!(l.apply("max_item_quantity", "x").is_err());
        assert!(l.apply("nope", "3").is_err());
    }
}
