//! The JSON Schemas of the MCP tools, and the validator that enforces them.
//!
//! Tool arguments are checked against the very schema `tools/list` publishes, so what an agent reads
//! and what the server enforces cannot drift apart. The validator covers the subset of JSON Schema
//! the tool schemas use (draft-07 and 2020-12 agree on all of it): `type` (a name or a list),
//! `properties`, `required`, `additionalProperties`, `items`, `minItems`/`maxItems`, `enum`,
//! `const`, `minimum`/`maximum`, `minLength`/`maxLength` (in characters), `pattern`, `format`
//! (`email`, `date-time`) and `anyOf`. Annotations (`title`, `description`, `default`, `examples`)
//! are ignored. [`unknown_keywords`] lets the tests prove no schema uses anything else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

/// Why a value does not match a schema. `shape` failures (wrong type, missing or unknown field)
/// map to `invalid_request`; the others (bounds, patterns, enums) to `validation_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, as `field`, `address.city` or `items[2]`; empty for the value itself.
    pub path: String,
    pub reason: String,
    pub shape: bool,
}

const KEYWORDS: [&str; 20] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "anyOf",
    "title",
    "description",
    "default",
    "examples",
];

/// Keywords used in `schema` (at any depth) that [`validate`] does not understand.
pub fn unknown_keywords(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_unknown(schema, "", &mut out);
    out
}

fn collect_unknown(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Value::Object(map) = schema else { return };
    for (key, sub) in map {
        if !KEYWORDS.contains(&key.as_str()) {
            out.push(format!("{at}/{key}"));
        }
        match key.as_str() {
            "properties" => {
                for (name, prop) in sub.as_object().into_iter().flatten() {
                    collect_unknown(prop, &format!("{at}/properties/{name}"), out);
                }
            }
            "items" | "additionalProperties" => collect_unknown(sub, &format!("{at}/{key}"), out),
            "anyOf" => {
                for (i, branch) in sub.as_array().into_iter().flatten().enumerate() {
                    collect_unknown(branch, &format!("{at}/anyOf/{i}"), out);
                }
            }
            _ => {}
        }
    }
}

/// Checks `value` against `schema`; returns the first violation found.
pub fn validate(schema: &Value, value: &Value) -> Result<(), Violation> {
    check(schema, value, "")
}

fn violation(path: &str, reason: impl Into<String>, shape: bool) -> Violation {
    Violation { path: path.to_string(), reason: reason.into(), shape }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    let actual = type_name(value);
    actual == name || (name == "number" && actual == "integer")
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), Violation> {
    let Value::Object(s) = schema else { return Ok(()) };
    if let Some(types) = s.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.iter().any(|t| has_type(value, t)) {
            return Err(violation(
                path,
                format!("must be of type {} (got {})", allowed.join(" or "), type_name(value)),
                true,
            ));
        }
    }
    if let Some(branches) = s.get("anyOf").and_then(Value::as_array) {
        let mut first = None;
        for branch in branches {
            match check(branch, value, path) {
                Ok(()) => {
                    first = None;
                    break;
                }
                Err(v) => {
                    first.get_or_insert(v);
                }
            }
        }
        if let Some(v) = first {
            return Err(v);
        }
    }
    if let Some(constant) = s.get("const")
        && constant != value
    {
        return Err(violation(path, format!("must be {constant}"), false));
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        return Err(violation(path, format!("must be one of {}", list.join(", ")), false));
    }
    match value {
        Value::Number(n) => check_number(s, n.as_f64().unwrap_or_default(), path),
        Value::String(text) => check_string(s, text, path),
        Value::Array(items) => check_array(s, items, path),
        Value::Object(map) => check_object(s, map, path),
        _ => Ok(()),
    }
}

fn check_number(s: &Map<String, Value>, n: f64, path: &str) -> Result<(), Violation> {
    if let Some(min) = s.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        return Err(violation(path, format!("must be at least {}", s["minimum"]), false));
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        return Err(violation(path, format!("must be at most {}", s["maximum"]), false));
    }
    Ok(())
}

fn check_string(s: &Map<String, Value>, text: &str, path: &str) -> Result<(), Violation> {
    let len = text.chars().count() as u64;
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        let reason = if min == 1 {
            "must not be empty".to_string()
        } else {
            format!("must be at least {min} characters")
        };
        return Err(violation(path, reason, false));
    }
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        return Err(violation(path, format!("must be at most {max} characters"), false));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        match regex(pattern) {
            Some(re) if re.is_match(text) => {}
            Some(_) => return Err(violation(path, format!("must match the pattern {pattern}"), false)),
            None => return Err(violation(path, format!("has an unusable pattern {pattern}"), false)),
        }
    }
    match s.get("format").and_then(Value::as_str) {
        Some("email") if !is_email(text) => Err(violation(path, "must be an email address", false)),
        Some("date-time")
            if time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_err() =>
        {
            Err(violation(path, "must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z", false))
        }
        _ => Ok(()),
    }
}

fn check_array(s: &Map<String, Value>, items: &[Value], path: &str) -> Result<(), Violation> {
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        return Err(violation(path, format!("must have at least {min} items"), false));
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && (items.len() as u64) > max
    {
        return Err(violation(path, format!("must have at most {max} items"), false));
    }
    if let Some(item_schema) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn check_object(s: &Map<String, Value>, map: &Map<String, Value>, path: &str) -> Result<(), Violation> {
    let properties = s.get("properties").and_then(Value::as_object);
    for name in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(name) {
            return Err(violation(&join(path, name), "is required", true));
        }
    }
    for (name, field) in map {
        let at = join(path, name);
        match properties.and_then(|p| p.get(name)) {
            Some(prop) => check(prop, field, &at)?,
            None => match s.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> =
                        properties.into_iter().flatten().map(|(k, _)| k.as_str()).collect();
                    return Err(violation(
                        &at,
                        format!("is not a known field (known: {})", known.join(", ")),
                        true,
                    ));
                }
                Some(extra @ Value::Object(_)) => check(extra, field, &at)?,
                _ => {}
            },
        }
    }
    Ok(())
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Compiled patterns, shared: the schemas use a handful, so the cache stays tiny.
fn regex(pattern: &str) -> Option<Arc<regex_lite::Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<regex_lite::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(guard) = cache.lock()
        && let Some(re) = guard.get(pattern)
    {
        return Some(re.clone());
    }
    let re = Arc::new(regex_lite::Regex::new(pattern).ok()?);
    if let Ok(mut guard) = cache.lock() {
        guard.insert(pattern.to_string(), re.clone());
    }
    Some(re)
}

/// Removes `description` annotations at every depth (not properties that happen to be called
/// `description`).
pub fn strip_descriptions(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    map.remove("description");
    for (key, sub) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                for prop in sub.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                    strip_descriptions(prop);
                }
            }
            "items" | "additionalProperties" => strip_descriptions(sub),
            "anyOf" => {
                for branch in sub.as_array_mut().into_iter().flatten() {
                    strip_descriptions(branch);
                }
            }
            _ => {}
        }
    }
}

// --- Shared fragments -------------------------------------------------------------------------

/// An object schema that allows exactly `properties`, requiring `required`.
pub fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

pub fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

pub fn id(prefix: &str, description: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}_[0-9A-Za-z]{{26}}$"), "description": description})
}

pub fn cents(description: &str) -> Value {
    json!({"type": "integer", "minimum": 0, "description": description})
}

pub fn nullable(mut schema: Value, kind: &str) -> Value {
    schema["type"] = json!([kind, "null"]);
    schema
}

/// The optional `idempotency_key` argument of every mutating tool (SPEC §6).
pub fn idempotency_key() -> Value {
    json!({
        "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$",
        "description": "Optional. A unique value (e.g. a UUID) for this action. Reuse the SAME key when retrying the same action: the first result is returned again and nothing happens twice. A different action needs a new key; reusing a key with other arguments is an idempotency_conflict error."
    })
}

/// The `{error, message, details}` object of a failed call (`isError: true`).
pub fn error_object() -> Value {
    json!({
        "type": "object",
        "description": "A failed call (isError: true): the same error object the REST API returns.",
        "properties": {
            "error": {"type": "string", "pattern": "^[a-z0-9_]+$", "description": "Stable error code, e.g. cart_not_found (see docs/errors.md)."},
            "message": {"type": "string", "description": "What went wrong and what to do about it."},
            "details": {"type": "object", "description": "Context: the field at fault, the limit exceeded, the coverage, ..."},
            "retry_after_seconds": {"type": "integer", "minimum": 0, "description": "503 only: wait this long, then retry with the same idempotency_key."},
            "retryable": {"type": "boolean", "description": "503 only: always true."},
            "max_cents": {"type": "integer", "minimum": 0, "description": "cart_total_exceeds_limit only: the cap, as in details.max_cents."}
        },
        "required": ["error", "message", "details"],
        "additionalProperties": false
    })
}

pub fn coverage() -> Value {
    object(
        json!({
            "nationwide": {"type": "boolean", "description": "Delivers to every US state."},
            "states": {"type": "array", "items": {"type": "string"}, "description": "USPS codes of the states covered."},
            "cities": {"type": "array", "items": object(json!({"city": {"type": "string"}, "state": {"type": "string"}}), &["city", "state"]), "description": "Single cities covered outside those states (may be capped; compare with city_count)."},
            "city_count": {"type": "integer", "minimum": 0, "description": "How many cities are covered in all; call get_seller for the full list when it exceeds cities.length."},
            "coverage_configured": {"type": "boolean", "description": "false: the seller ships nowhere yet."}
        }),
        &["nationwide", "states", "cities", "city_count", "coverage_configured"],
    )
}

pub fn seller() -> Value {
    object(
        json!({
            "handle": string("Seller handle: pass it to create_cart as seller_handle."),
            "name": string("Display name."),
            "description": string("About the seller."),
            "storefront_url": nullable(string("The seller's own website."), "string"),
            "tier": {"type": "string", "enum": ["purchasable", "directory"], "description": "purchasable: buy through Kifly. directory: discovery only, checkout hands off to the seller's site."},
            "delivery_fee_cents": cents("Flat delivery fee per order, in US cents."),
            "delivery_coverage": coverage(),
            "kifly_purchasable": {"type": "boolean", "description": "false = directory seller: present checkout as a referral, not a Kifly order."},
            "fulfillment": {"type": "string", "enum": ["kifly", "external"], "description": "kifly: Kifly takes the order. external: hand-off to the seller."}
        }),
        &[
            "handle",
            "name",
            "description",
            "storefront_url",
            "tier",
            "delivery_fee_cents",
            "delivery_coverage",
            "kifly_purchasable",
            "fulfillment",
        ],
    )
}

/// A saved, normalised US address as returned in carts and profiles.
pub fn address_out() -> Value {
    object(
        json!({
            "name": {"type": "string"},
            "line1": {"type": "string"},
            "line2": {"type": ["string", "null"]},
            "city": {"type": "string"},
            "region": {"type": "string", "description": "USPS state code."},
            "postal_code": {"type": "string"},
            "country": {"type": "string", "const": "US"},
            "phone": {"type": ["string", "null"]},
            "email": {"type": ["string", "null"]}
        }),
        &["name", "line1", "line2", "city", "region", "postal_code", "country", "phone", "email"],
    )
}

/// The address fields an agent sends (flat in `set_shipping_address`, nested in
/// `save_buyer_address`).
pub fn address_in() -> Map<String, Value> {
    let props = json!({
        "name": {"type": "string", "minLength": 1, "maxLength": 150, "description": "Recipient's full name."},
        "line1": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Street address, line 1."},
        "line2": {"type": ["string", "null"], "maxLength": 200, "description": "Apartment, suite, unit (optional)."},
        "city": {"type": "string", "minLength": 1, "maxLength": 100},
        "region": {"type": "string", "pattern": "^\\s*[A-Za-z]{2}\\s*$", "description": "US state code, e.g. CA or NY (DC and PR too)."},
        "postal_code": {"type": "string", "pattern": "^\\s*[0-9]{5}(-?[0-9]{4})?\\s*$", "description": "US ZIP code: 5 or 9 digits (12345 or 12345-6789)."},
        "country": {"type": "string", "minLength": 2, "maxLength": 2, "default": "US", "description": "ISO 3166-1 alpha-2; only US is supported."},
        "phone": {"type": ["string", "null"], "maxLength": 30, "description": "Optional, for the carrier."},
        "email": {"type": ["string", "null"], "maxLength": 254, "format": "email", "description": "Optional, for delivery notices."}
    });
    match props {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub const ADDRESS_REQUIRED: [&str; 5] = ["name", "line1", "city", "region", "postal_code"];

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        object(
            json!({
                "q": {"type": "string", "minLength": 1, "maxLength": 5},
                "n": {"type": "integer", "minimum": 1, "maximum": 3},
                "kind": {"type": "string", "enum": ["a", "b"]},
                "code": {"type": "string", "pattern": "^\\d{6}$"},
                "when": {"type": "string", "format": "date-time"},
                "maybe": {"type": ["string", "null"]},
                "list": {"type": "array", "maxItems": 2, "items": {"type": "integer"}},
                "nested": object(json!({"x": {"type": "boolean"}}), &["x"]),
            }),
            &["q"],
        )
    }

    fn fails(value: Value) -> Violation {
        validate(&schema(), &value).expect_err("should fail")
    }

    #[test]
    fn accepts_what_the_schema_allows() {
        let ok = json!({"q": "hey", "n": 2, "kind": "a", "code": "123456", "when": "2026-01-31T12:00:00Z",
                        "maybe": null, "list": [1, 2], "nested": {"x": true}});
        assert_eq!(validate(&schema(), &ok), Ok(()));
    }

    #[test]
    fn reports_the_field_and_whether_it_is_a_shape_problem() {
        assert_eq!(
            fails(json!({})),
            Violation { path: "q".into(), reason: "is required".into(), shape: true }
        );
        assert!(fails(json!({"q": "x", "extra": 1})).shape);
        assert_eq!(fails(json!({"q": 1})).path, "q");
        assert!(fails(json!({"q": "x", "n": 1.5})).shape, "a float is not an integer");
        let v = fails(json!({"q": "x", "n": 4}));
        assert_eq!((v.path.as_str(), v.shape), ("n", false));
        assert_eq!(fails(json!({"q": ""})).reason, "must not be empty");
        assert_eq!(fails(json!({"q": "toolong"})).path, "q");
        assert_eq!(fails(json!({"q": "x", "kind": "c"})).path, "kind");
        assert_eq!(fails(json!({"q": "x", "code": "12345"})).path, "code");
        assert_eq!(fails(json!({"q": "x", "when": "yesterday"})).path, "when");
        assert_eq!(fails(json!({"q": "x", "list": [1, 2, 3]})).path, "list");
        assert_eq!(fails(json!({"q": "x", "list": ["a"]})).path, "list[0]");
        assert_eq!(fails(json!({"q": "x", "nested": {}})).path, "nested.x");
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert_eq!(validate(&schema(), &json!({"q": "ééééé"})), Ok(()));
    }

    #[test]
    fn any_of_passes_when_one_branch_does() {
        let s = json!({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]});
        assert!(validate(&s, &json!(5)).is_ok());
        assert!(validate(&s, &json!("a")).is_ok());
        assert!(validate(&s, &json!("ab")).is_err());
    }

    #[test]
    fn descriptions_are_stripped_but_not_properties_named_description() {
        let mut s = json!({"type": "object", "description": "x", "properties": {
            "description": {"type": "string", "description": "y"},
            "list": {"type": "array", "items": {"type": "string", "description": "z"}}}});
        strip_descriptions(&mut s);
        assert_eq!(
            s,
            json!({"type": "object", "properties": {
            "description": {"type": "string"}, "list": {"type": "array", "items": {"type": "string"}}}})
        );
    }

    #[test]
    fn unknown_keywords_are_found_at_any_depth() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string", "minimum_length": 1}}, "oneOf": []});
        assert_eq!(
            unknown_keywords(&s),
            vec!["/properties/a/minimum_length".to_string(), "/oneOf".to_string()]
        );
    }
}
