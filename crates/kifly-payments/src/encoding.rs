//! Small shared codecs: base64 flavours, HMAC-SHA256, constant-time comparison and RFC 8785 (JCS)
//! canonical JSON.
//!
//! JCS matters because MPP binds the challenge id to `base64url(JCS(request))` *as it appears on the
//! wire*, and real clients (mppx's `PaymentRequest.serialize`) re-serialize the request with JCS when they
//! echo it. If our encoding were not canonical, a client's echo would not match our HMAC.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// `base64url` without padding (MPP challenge parameters, credentials, receipts).
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes `base64url`, with or without padding. Also accepts standard-alphabet input, which some
/// clients produce by mistake; both alphabets decode to the same bytes when unambiguous.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim();
    URL_SAFE_NO_PAD
        .decode(trimmed.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(trimmed))
        .or_else(|_| STANDARD.decode(trimmed))
        .ok()
}

/// Standard base64 with padding (x402 headers use the standard alphabet).
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes x402's standard base64; tolerates missing padding and the URL-safe alphabet.
pub(crate) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim();
    STANDARD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed.trim_end_matches('=')))
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed.trim_end_matches('=')))
        .ok()
}

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // ok: HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two byte strings (length is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// RFC 8785 canonical JSON: object members sorted by their UTF-16 code units, no insignificant
/// whitespace, strings escaped as ECMAScript's `JSON.stringify` does (which `serde_json` matches for
/// every string a Rust `str` can hold). Integers print as integers; the payment payloads here carry no
/// floating-point numbers (amounts are strings).
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (index, (key, member)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_recursively_and_drops_whitespace() {
        let value = json!({"b": 1, "a": {"z": [true, null], "y": "é\n\"q\""}, "A": "x"});
        assert_eq!(canonical_json(&value), r#"{"A":"x","a":{"y":"é\n\"q\"","z":[true,null]},"b":1}"#);
    }

    #[test]
    fn canonical_json_orders_by_utf16_code_units() {
        // U+E000 (one code unit 0xE000) sorts before U+1F600 (surrogate pair starting 0xD83D)? No:
        // 0xD83D < 0xE000, so the emoji comes first — the opposite of UTF-8 byte order.
        let value = json!({"\u{e000}": 1, "\u{1f600}": 2});
        assert_eq!(canonical_json(&value), "{\"\u{1f600}\":2,\"\u{e000}\":1}");
    }

    #[test]
    fn hmac_matches_an_openssl_vector() {
        // printf 'hello' | openssl dgst -sha256 -hmac 'key'
        let mac = hmac_sha256(b"key", b"hello");
        assert_eq!(hex::encode(mac), "9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b");
    }

    #[test]
    fn base64_flavours_round_trip() {
        let bytes = b"\xfb\xff\x00payment";
        assert_eq!(b64url_decode(&b64url_encode(bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(b64_decode(&b64_encode(bytes)).as_deref(), Some(&bytes[..]));
        assert!(b64url_decode("***").is_none());
    }

    #[test]
    fn constant_time_eq_compares_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
