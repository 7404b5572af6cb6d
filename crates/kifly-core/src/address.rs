//! US shipping addresses: the one shape Kifly accepts, and its validation.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The 50 states, DC and Puerto Rico, by USPS code.
pub const US_REGIONS: [&str; 52] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY",
    "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND",
    "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC",
    "PR",
];

/// True for a USPS state code from [`US_REGIONS`] (upper case).
pub fn is_us_region(code: &str) -> bool {
    US_REGIONS.contains(&code)
}

/// Every field a shipping address may carry, as sent by a client. Unknown fields are rejected by the
/// caller before this is built; here every field is optional so that a missing one is reported as a
/// validation error naming it rather than as a parse error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AddressInput {
    pub name: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// The field names an address may have, for rejecting anything else.
pub const ADDRESS_FIELDS: [&str; 9] =
    ["name", "line1", "line2", "city", "region", "postal_code", "country", "phone", "email"];

/// A validated, normalised US shipping address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

fn required(field: &str, value: Option<String>, max: usize) -> Result<String, FieldError> {
    let value = value.map(|v| v.trim().to_string()).unwrap_or_default();
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    check_len(field, &value, max)?;
    Ok(value)
}

fn optional(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    match value.map(|v| v.trim().to_string()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            check_len(field, &v, max)?;
            Ok(Some(v))
        }
    }
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(())
}

fn is_postal_code(code: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match code.len() {
        5 | 9 => digits(code),
        10 => code.as_bytes()[5] == b'-' && digits(&code[..5]) && digits(&code[6..]),
        _ => false,
    }
}

fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

impl AddressInput {
    /// Validates and normalises: trims every field, upper-cases `region` and `country`, defaults
    /// `country` to `US`, and accepts only US addresses with a known state code and a 5- or 9-digit ZIP.
    pub fn validate(self) -> Result<ShippingAddress, FieldError> {
        let name = required("name", self.name, 150)?;
        let line1 = required("line1", self.line1, 200)?;
        let line2 = optional("line2", self.line2, 200)?;
        let city = required("city", self.city, 100)?;
        let region = required("region", self.region, 50)?.to_ascii_uppercase();
        if !is_us_region(&region) {
            return Err(FieldError::new("region", "must be a US state code such as CA or NY"));
        }
        let postal_code = required("postal_code", self.postal_code, 20)?;
        if !is_postal_code(&postal_code) {
            return Err(FieldError::new("postal_code", "must be a 5-digit or 9-digit US ZIP code"));
        }
        let country = optional("country", self.country, 2)
            .map_err(|_| FieldError::new("country", "only US addresses are supported"))?
            .unwrap_or_else(|| "US".to_string())
            .to_ascii_uppercase();
        if country != "US" {
            return Err(FieldError::new("country", "only US addresses are supported"));
        }
        let phone = optional("phone", self.phone, 30)?;
        let email = optional("email", self.email, 254)?;
        if let Some(email) = &email
            && !is_plausible_email(email)
        {
            return Err(FieldError::new("email", "must be an email address"));
        }
        Ok(ShippingAddress { name, line1, line2, city, region, postal_code, country, phone, email })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> AddressInput {
        AddressInput {
            name: Some("Ada Lovelace".into()),
            line1: Some("1 Market St".into()),
            city: Some("San Francisco".into()),
            region: Some("ca".into()),
            postal_code: Some("94105".into()),
            ..Default::default()
        }
    }

    #[test]
    fn normalises_a_good_address() {
        let a = input().validate().unwrap();
        assert_eq!(a.region, "CA");
        assert_eq!(a.country, "US");
    }

    #[test]
    fn rejects_bad_fields_by_name() {
        type Case = (fn(&mut AddressInput), &'static str);
        let cases: Vec<Case> = vec![
            (|a| a.name = None, "name"),
            (|a| a.region = Some("ZZ".into()), "region"),
            (|a| a.postal_code = Some("1234".into()), "postal_code"),
            (|a| a.postal_code = Some("94105-12".into()), "postal_code"),
            (|a| a.country = Some("CA".into()), "country"),
            (|a| a.country = Some("USA".into()), "country"),
            (|a| a.email = Some("nope".into()), "email"),
            (|a| a.line1 = Some("x".repeat(201)), "line1"),
        ];
        for (mutate, field) in cases {
            let mut a = input();
            mutate(&mut a);
            assert_eq!(a.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn accepts_nine_digit_zips() {
        for zip in ["941051234", "94105-1234"] {
            let mut a = input();
            a.postal_code = Some(zip.into());
            assert!(a.validate().is_ok(), "{zip}");
        }
    }
}
