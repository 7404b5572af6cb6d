//! The catalog: sellers, products and variants, and the import file that loads them.
//!
//! `kifly catalog import FILE.json` and `serve --demo` both go through [`CatalogFile::parse`], which
//! checks the whole file before anything is written, so a bad file is rejected whole with the failing
//! line or field named, and nothing is half-imported.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::coverage::{Coverage, CoverageSpec};

/// Whether a seller can take payment through Kifly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Checkout is a real Kifly purchase.
    Purchasable,
    /// Listed for discovery only; checkout hands the buyer off to the seller's own site.
    Directory,
}

impl Tier {
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Purchasable => "purchasable",
            Tier::Directory => "directory",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "purchasable" => Some(Tier::Purchasable),
            "directory" => Some(Tier::Directory),
            _ => None,
        }
    }

    /// Whether Kifly takes orders for this seller (`kifly_purchasable`).
    pub const fn is_purchasable(self) -> bool {
        matches!(self, Tier::Purchasable)
    }

    /// `kifly` when Kifly takes the order, `external` when the seller's own site does.
    pub const fn fulfillment(self) -> &'static str {
        match self {
            Tier::Purchasable => "kifly",
            Tier::Directory => "external",
        }
    }
}

/// The import file: `{"sellers": [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    pub sellers: Vec<SellerInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerInput {
    pub handle: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub storefront_url: Option<String>,
    pub tier: Tier,
    #[serde(default)]
    pub delivery_fee_cents: i64,
    #[serde(default)]
    pub coverage: Option<CoverageSpec>,
    #[serde(default)]
    pub products: Vec<ProductInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub handle: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub images: Vec<String>,
    pub variants: Vec<VariantInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub price_cents: i64,
    #[serde(default)]
    pub inventory: Option<i64>,
}

/// True for a lower-case slug: `[a-z0-9][a-z0-9-]*`, 2 to `max` characters.
pub fn is_slug(s: &str, max: usize) -> bool {
    (2..=max).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() <= 2048
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn text(field: String, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let n = value.chars().count();
    if n < min {
        return Err(FieldError::new(field, "is required"));
    }
    if n > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

impl CatalogFile {
    /// Parses and validates a whole import file. Syntax and type errors name the line, column and field
    /// path; rule violations name the field path (`sellers[1].products[4].variants[0].price_cents`).
    pub fn parse(json: &str) -> Result<CatalogFile, FieldError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let file: CatalogFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            FieldError::new(
                if path == "." { "file".to_string() } else { path },
                format!("line {} column {}: {}", inner.line(), inner.column(), inner),
            )
        })?;
        file.validate()?;
        Ok(file)
    }

    /// Checks every rule the import relies on; see the module docs.
    pub fn validate(&self) -> Result<(), FieldError> {
        let mut handles = HashSet::new();
        let mut skus = HashSet::new();
        for (si, s) in self.sellers.iter().enumerate() {
            let at = |f: &str| format!("sellers[{si}].{f}");
            if !is_slug(&s.handle, 63) {
                return Err(FieldError::new(at("handle"), "must be 2-63 characters of a-z, 0-9 and -"));
            }
            if !handles.insert(s.handle.as_str()) {
                return Err(FieldError::new(at("handle"), format!("duplicate seller handle {:?}", s.handle)));
            }
            text(at("name"), &s.name, 1, 200)?;
            text(at("description"), &s.description, 0, 5000)?;
            if let Some(url) = &s.storefront_url
                && !is_http_url(url)
            {
                return Err(FieldError::new(at("storefront_url"), "must be an http(s) URL"));
            }
            if !(0..=1_000_000).contains(&s.delivery_fee_cents) {
                return Err(FieldError::new(at("delivery_fee_cents"), "must be 0 to 1000000"));
            }
            if let Some(cov) = &s.coverage {
                for (i, st) in cov.states.iter().enumerate() {
                    if !crate::address::is_us_region(st) {
                        return Err(FieldError::new(
                            at(&format!("coverage.states[{i}]")),
                            "must be an upper-case US state code",
                        ));
                    }
                }
                for (i, c) in cov.cities.iter().enumerate() {
                    if !crate::address::is_us_region(&c.state) {
                        return Err(FieldError::new(
                            at(&format!("coverage.cities[{i}].state")),
                            "must be an upper-case US state code",
                        ));
                    }
                    text(at(&format!("coverage.cities[{i}].city")), c.city.trim(), 1, 100)?;
                }
            }
            let mut product_handles = HashSet::new();
            for (pi, p) in s.products.iter().enumerate() {
                let at = |f: &str| format!("sellers[{si}].products[{pi}].{f}");
                if !is_slug(&p.handle, 100) {
                    return Err(FieldError::new(at("handle"), "must be 2-100 characters of a-z, 0-9 and -"));
                }
                if !product_handles.insert(p.handle.as_str()) {
                    return Err(FieldError::new(
                        at("handle"),
                        format!("duplicate product handle {:?}", p.handle),
                    ));
                }
                text(at("title"), &p.title, 1, 300)?;
                text(at("description"), &p.description, 0, 10_000)?;
                text(at("category"), &p.category, 0, 100)?;
                text(at("brand"), &p.brand, 0, 200)?;
                if let Some(url) = &p.url
                    && !is_http_url(url)
                {
                    return Err(FieldError::new(at("url"), "must be an http(s) URL"));
                }
                for (ii, img) in p.images.iter().enumerate() {
                    if !is_http_url(img) {
                        return Err(FieldError::new(at(&format!("images[{ii}]")), "must be an http(s) URL"));
                    }
                }
                if p.variants.is_empty() {
                    return Err(FieldError::new(at("variants"), "a product needs at least one variant"));
                }
                for (vi, v) in p.variants.iter().enumerate() {
                    let at = |f: &str| format!("sellers[{si}].products[{pi}].variants[{vi}].{f}");
                    text(at("sku"), v.sku.trim(), 1, 100)?;
                    if !skus.insert(v.sku.as_str()) {
                        return Err(FieldError::new(at("sku"), format!("duplicate sku {:?}", v.sku)));
                    }
                    text(at("name"), &v.name, 1, 200)?;
                    if !(1..=100_000_000).contains(&v.price_cents) {
                        return Err(FieldError::new(at("price_cents"), "must be 1 to 100000000"));
                    }
                    if v.inventory.is_some_and(|n| n < 0) {
                        return Err(FieldError::new(
                            at("inventory"),
                            "must be 0 or more, or null when not tracked",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl SellerInput {
    pub fn coverage(&self) -> Coverage {
        Coverage::from(self.coverage.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"sellers":[{"handle":"acme","name":"Acme","tier":"purchasable",
        "delivery_fee_cents":500,"coverage":{"nationwide":true},
        "products":[{"handle":"rocket","title":"Rocket","variants":[{"sku":"R-1","name":"Default","price_cents":1000,"inventory":null}]}]}]}"#;

    #[test]
    fn parses_a_good_file() {
        let f = CatalogFile::parse(GOOD).unwrap();
        assert_eq!(f.sellers[0].products[0].variants[0].sku, "R-1");
        assert_eq!(f.sellers[0].coverage(), Coverage::Nationwide);
    }

    #[test]
    fn names_the_failing_field() {
        let bad = GOOD.replace("\"price_cents\":1000", "\"price_cents\":-5");
        assert_eq!(
            CatalogFile::parse(&bad).unwrap_err().field,
            "sellers[0].products[0].variants[0].price_cents"
        );
        let mistyped = GOOD.replace("\"price_cents\":1000", "\"price_cents\":\"ten\"");
        let err = CatalogFile::parse(&mistyped).unwrap_err();
        assert_eq!(err.field, "sellers[0].products[0].variants[0].price_cents");
        assert!(err.reason.contains("line"), "{err}");
        let unknown = GOOD.replace("\"tier\"", "\"colour\":1,\"tier\"");
        assert!(CatalogFile::parse(&unknown).unwrap_err().reason.contains("colour"));
        let broken = &GOOD[..40];
        assert!(CatalogFile::parse(broken).is_err());
    }

    #[test]
    fn rejects_duplicate_skus_across_sellers() {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let mut second = v["sellers"][0].clone();
        second["handle"] = "acme-two".into();
        v["sellers"].as_array_mut().unwrap().push(second);
        let err = CatalogFile::parse(&v.to_string()).unwrap_err();
        assert_eq!(err.field, "sellers[1].products[0].variants[0].sku");
    }
}
