//! Seller delivery coverage: where a seller ships, and whether an address is inside it.
//!
//! Three forms: nationwide; a list of states plus individual cities; or not configured, which ships
//! nowhere. An empty state list is *not* nationwide: a seller must say so explicitly.

use serde::{Deserialize, Serialize};

use crate::address::ShippingAddress;

/// One city a seller delivers to, outside its covered states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct City {
    pub city: String,
    pub state: String,
}

/// Where a seller delivers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Coverage {
    /// No coverage set up yet: ships nowhere.
    #[default]
    NotConfigured,
    /// All US states.
    Nationwide,
    /// These states, plus these individual cities.
    Areas { states: Vec<String>, cities: Vec<City> },
}

/// How coverage is written in the catalog file and stored: `{"nationwide": true}` or
/// `{"states": [...], "cities": [...]}`; absent means not configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageSpec {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nationwide: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cities: Vec<City>,
}

impl From<Option<CoverageSpec>> for Coverage {
    fn from(spec: Option<CoverageSpec>) -> Self {
        match spec {
            None => Coverage::NotConfigured,
            Some(s) if s.nationwide => Coverage::Nationwide,
            Some(s) => Coverage::Areas { states: s.states, cities: s.cities },
        }
    }
}

impl Coverage {
    /// The storable form; `None` for not configured.
    pub fn to_spec(&self) -> Option<CoverageSpec> {
        match self {
            Coverage::NotConfigured => None,
            Coverage::Nationwide => Some(CoverageSpec { nationwide: true, ..Default::default() }),
            Coverage::Areas { states, cities } => {
                Some(CoverageSpec { nationwide: false, states: states.clone(), cities: cities.clone() })
            }
        }
    }

    /// Eligible if nationwide, or the region is a covered state, or (city, region) is a covered city.
    /// City names compare case-insensitively and ignoring surrounding spaces.
    pub fn covers(&self, address: &ShippingAddress) -> bool {
        match self {
            Coverage::NotConfigured => false,
            Coverage::Nationwide => true,
            Coverage::Areas { states, cities } => {
                states.iter().any(|s| s.eq_ignore_ascii_case(&address.region))
                    || cities.iter().any(|c| {
                        c.state.eq_ignore_ascii_case(&address.region)
                            && c.city.trim().to_lowercase() == address.city.trim().to_lowercase()
                    })
            }
        }
    }

    /// The public coverage record, with at most `city_cap` of the cities.
    pub fn record(&self, city_cap: usize) -> CoverageRecord {
        let (nationwide, states, cities, configured): (bool, &[String], &[City], bool) = match self {
            Coverage::NotConfigured => (false, &[], &[], false),
            Coverage::Nationwide => (true, &[], &[], true),
            Coverage::Areas { states, cities } => (false, states, cities, true),
        };
        CoverageRecord {
            nationwide,
            states: states.to_vec(),
            cities: cities[..cities.len().min(city_cap)].to_vec(),
            city_count: cities.len(),
            coverage_configured: configured,
        }
    }
}

/// A seller's coverage as agents see it (`delivery_coverage`): a typed record rather than a JSON
/// value, because every cart read renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageRecord {
    pub nationwide: bool,
    pub states: Vec<String>,
    /// At most the caller's cap; `city_count` counts all of them.
    pub cities: Vec<City>,
    pub city_count: usize,
    pub coverage_configured: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::AddressInput;

    fn addr(city: &str, region: &str) -> ShippingAddress {
        AddressInput {
            name: Some("A".into()),
            line1: Some("1 Main".into()),
            city: Some(city.into()),
            region: Some(region.into()),
            postal_code: Some("10001".into()),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn coverage_rules() {
        let areas = Coverage::Areas {
            states: vec!["CA".into()],
            cities: vec![City { city: "Reno".into(), state: "NV".into() }],
        };
        assert!(areas.covers(&addr("Fresno", "CA")));
        assert!(areas.covers(&addr("reno ", "NV")));
        assert!(!areas.covers(&addr("Las Vegas", "NV")));
        assert!(Coverage::Nationwide.covers(&addr("Austin", "TX")));
        assert!(!Coverage::NotConfigured.covers(&addr("Austin", "TX")));
        let empty = Coverage::from(Some(CoverageSpec::default()));
        assert!(!empty.covers(&addr("Austin", "TX")), "an empty state list is not nationwide");
    }

    #[test]
    fn record_caps_cities() {
        let cities = (0..30).map(|i| City { city: format!("C{i}"), state: "TX".into() }).collect();
        let rec = Coverage::Areas { states: vec![], cities }.record(25);
        assert_eq!((rec.cities.len(), rec.city_count), (25, 30));
        assert!(!Coverage::NotConfigured.record(25).coverage_configured);
        // The contract's field order.
        assert_eq!(
            serde_json::to_string(&Coverage::Nationwide.record(25)).unwrap(),
            r#"{"nationwide":true,"states":[],"cities":[],"city_count":0,"coverage_configured":true}"#
        );
    }
}
