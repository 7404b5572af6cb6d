//! Money is integer US cents everywhere (`i64`); the only currency is `usd`. Floats never touch an amount.

/// The one currency Kifly sells in, as it appears on the wire.
pub const CURRENCY: &str = "usd";

/// `12345` → `"123.45"`; negative amounts keep their sign.
pub fn cents_to_decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cents_as_dollars() {
        assert_eq!(cents_to_decimal(100000), "1000.00");
        assert_eq!(cents_to_decimal(5), "0.05");
        assert_eq!(cents_to_decimal(-1999), "-19.99");
    }
}
