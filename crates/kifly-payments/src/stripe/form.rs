//! Stripe's request bodies are `application/x-www-form-urlencoded` with bracketed nested keys
//! (`metadata[order_id]=…`, `line_items[0][price_data][unit_amount]=…`). This is a tiny ordered builder
//! for them; the order of fields is kept so request bodies are deterministic (tests compare them).

use std::collections::BTreeMap;

/// An ordered list of form fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// An empty form.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `key=value`.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Appends `key=value` when `value` is present.
    pub fn push_opt(&mut self, key: impl Into<String>, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(value) = value {
            self.push(key, value);
        }
        self
    }

    /// Appends `prefix[k]=v` for every entry, in key order.
    pub fn push_map(&mut self, prefix: &str, map: &BTreeMap<String, String>) -> &mut Self {
        for (key, value) in map {
            self.push(format!("{prefix}[{key}]"), value.clone());
        }
        self
    }

    /// The value of the first field named `key` (for tests and fakes).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The urlencoded body.
    pub fn encode(&self) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.fields {
            serializer.append_pair(key, value);
        }
        serializer.finish()
    }

    /// Parses a urlencoded body back into fields (used by fakes and the sandbox).
    pub fn decode(body: &[u8]) -> Self {
        Self { fields: form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_are_percent_encoded_and_round_trip() {
        let mut form = Form::new();
        let metadata = BTreeMap::from([("order_id".to_string(), "ord_1 &2".to_string())]);
        form.push("line_items[0][price_data][unit_amount]", "1299")
            .push_map("metadata", &metadata)
            .push_opt("customer_email", None::<String>);
        let body = form.encode();
        assert_eq!(
            body,
            "line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=1299&metadata%5Border_id%5D=ord_1+%262"
        );
        let decoded = Form::decode(body.as_bytes());
        assert_eq!(decoded, form);
        assert_eq!(decoded.get("metadata[order_id]"), Some("ord_1 &2"));
    }
}
