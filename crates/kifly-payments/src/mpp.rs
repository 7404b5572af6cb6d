//! The `Payment` HTTP authentication scheme (MPP, draft-httpauth-payment) with the `stripe` method and
//! `charge` intent, as the real clients `mppx` and `pympp` speak it.
//!
//! Flow: the checkout answers 402 with `WWW-Authenticate: Payment id=…, realm=…, method="stripe",
//! intent="charge", request=…, expires=…, opaque=…`; the client mints a shared payment token (SPT) and
//! retries with `Authorization: Payment <base64url JSON credential>`; we verify, charge a PaymentIntent,
//! and answer 200 with `Payment-Receipt`.
//!
//! **Stateless binding.** The challenge id is the draft's recommended HMAC:
//! `base64url(HMAC-SHA256(secret, realm|method|intent|request|expires|digest|opaque))`, where `request` and
//! `opaque` are `base64url(JCS(json))` exactly as they appear on the wire. Nothing is stored at 402 time
//! (an unpaid request must have no side effect). What the challenge is bound to travels inside it:
//! `request.amount` (cents) and `currency`, and `opaque = {cart, cart_version, key}` — the cart id, its
//! version and the API key id. A credential for another cart, an edited cart (new version), another amount
//! or another key fails [`ChallengeSigner::verify`], and any edit of those fields breaks the HMAC. Because
//! the key id is inside the HMAC, the paid retry can be authenticated by the challenge itself when a client
//! (mppx does) replaces `Authorization: Bearer` with `Authorization: Payment`.
//!
//! **Verification order** (mpp-specs PR #210): HMAC → expiry → only then the SPT. Single use of the
//! challenge id is the caller's job: record [`VerifiedPayment::challenge_id`] in the same transaction as
//! the order, and use it as the Stripe idempotency key (keyed on the challenge id only — pympp #155).
//!
//! **Wire details copied from the clients** (mppx `src/Challenge.ts`, `src/Credential.ts`,
//! `src/PaymentRequest.ts`, `src/Receipt.ts`, `src/stripe/Methods.ts`; pympp `src/mpp/_parsing.py`):
//! every auth-param value is a quoted string (mppx's parser only reads `key="value"`); the credential's
//! `challenge.request` is the base64url string, re-serialized by mppx with JCS, which is why `request` must
//! be JCS; `challenge.opaque` arrives as an object from mppx and as the base64url string from pympp and the
//! draft, so both are accepted; the stripe request is `{amount, currency, description?, externalId?,
//! methodDetails: {networkId, paymentMethodTypes, metadata?}}` and the payload `{spt, externalId?}`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::Secret;
use crate::encoding::{
    b64_encode, b64url_decode, b64url_encode, canonical_json, constant_time_eq, hmac_sha256,
};

/// The authentication scheme name.
pub const SCHEME: &str = "Payment";
/// The payment method Kifly offers.
pub const METHOD_STRIPE: &str = "stripe";
/// The intent Kifly offers.
pub const INTENT_CHARGE: &str = "charge";
/// The receipt header.
pub const RECEIPT_HEADER: &str = "Payment-Receipt";
/// Problem type URIs are this prefix plus [`MppError::problem_type`].
pub const PROBLEM_TYPE_BASE: &str = "https://paymentauth.org/problems/";
/// Credentials larger than this are refused before decoding (the draft requires accepting ≥ 4 KB).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// What a challenge is bound to. Every field must match on the paid retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartBinding {
    /// The API key's public id (not the secret).
    pub key_id: String,
    /// The cart being paid.
    pub cart_id: String,
    /// The cart's version when the challenge was issued; any edit bumps it.
    pub cart_version: i64,
    /// The total in cents.
    pub amount_cents: i64,
    /// Lower-case ISO currency (`usd`).
    pub currency: String,
}

/// Stripe-method details the client needs to mint its shared payment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeMethodDetails {
    /// The seller's Stripe business network profile id (mppx refuses a challenge without one).
    pub network_id: String,
    /// e.g. `["card"]`; must not be empty.
    pub payment_method_types: Vec<String>,
    /// Optional metadata the client attaches to the SPT.
    pub metadata: BTreeMap<String, String>,
}

/// Everything needed to issue a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeParams {
    /// The binding (cart, version, amount, key).
    pub binding: CartBinding,
    /// Stripe method details.
    pub stripe: StripeMethodDetails,
    /// When the challenge stops being accepted.
    pub expires_at: OffsetDateTime,
    /// Display-only description (also placed in the request, where mppx shows it).
    pub description: Option<String>,
    /// Merchant reference placed in `request.externalId` (e.g. the cart id).
    pub external_id: Option<String>,
    /// RFC 9530 digest of the request body (see [`content_digest`]); binds the credential to the body.
    pub body_digest: Option<String>,
}

/// An issued challenge, ready to be rendered into `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// HMAC-bound id.
    pub id: String,
    /// Protection space (the server's host name; `mppx validate` checks it matches the host).
    pub realm: String,
    /// `stripe`.
    pub method: String,
    /// `charge`.
    pub intent: String,
    /// `base64url(JCS(request))`.
    pub request: String,
    /// RFC 3339, UTC, whole seconds.
    pub expires: String,
    /// Display-only description.
    pub description: Option<String>,
    /// RFC 9530 body digest.
    pub digest: Option<String>,
    /// `base64url(JCS({cart, cart_version, key}))`.
    pub opaque: String,
}

impl Challenge {
    /// The `WWW-Authenticate` header value. Every value is a quoted string. Free text (realm, description)
    /// never contains `"` or `\\` (mppx's parser does not unescape, so they become `'` and `/`) nor
    /// control characters.
    pub fn to_header_value(&self) -> String {
        let mut parts = vec![
            format!("id=\"{}\"", self.id),
            format!("realm=\"{}\"", quote(&self.realm)),
            format!("method=\"{}\"", self.method),
            format!("intent=\"{}\"", self.intent),
            format!("request=\"{}\"", self.request),
            format!("expires=\"{}\"", self.expires),
        ];
        if let Some(description) = &self.description {
            parts.push(format!("description=\"{}\"", quote(description)));
        }
        if let Some(digest) = &self.digest {
            parts.push(format!("digest=\"{}\"", quote(digest)));
        }
        parts.push(format!("opaque=\"{}\"", self.opaque));
        format!("{SCHEME} {}", parts.join(", "))
    }

    /// The decoded `request` JSON (for the 402 body or logs).
    pub fn request_json(&self) -> Value {
        decode_json_object(&self.request).map(Value::Object).unwrap_or(Value::Null)
    }
}

fn quote(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            other => other,
        })
        .collect()
}

/// The challenge fields a client echoes in its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoedChallenge {
    /// Challenge id.
    pub id: String,
    /// Realm.
    pub realm: String,
    /// Method.
    pub method: String,
    /// Intent.
    pub intent: String,
    /// `base64url(JCS(request))` as echoed.
    pub request: String,
    /// Expiry as echoed.
    pub expires: Option<String>,
    /// Digest as echoed.
    pub digest: Option<String>,
    /// `opaque`, normalized to its base64url form whether the client sent an object or a string.
    pub opaque: Option<String>,
}

/// A parsed `Authorization: Payment …` credential (not yet verified).
#[derive(Clone, PartialEq)]
pub struct PaymentCredential {
    /// The echoed challenge.
    pub challenge: EchoedChallenge,
    /// The method payload (`{spt, externalId?}` for stripe). Read it only after verification.
    pub payload: Value,
    /// Optional payer DID.
    pub source: Option<String>,
}

impl fmt::Debug for PaymentCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentCredential")
            .field("challenge", &self.challenge)
            .field("payload", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Deserialize)]
struct WireCredential {
    challenge: WireChallenge,
    payload: Value,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Deserialize)]
struct WireChallenge {
    id: String,
    #[serde(default)]
    realm: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    intent: String,
    #[serde(default)]
    request: Value,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    opaque: Option<Value>,
}

/// Parses an `Authorization` header value. The header may list several schemes separated by commas
/// (RFC 9110); the `Payment` one is used. A base64url credential contains no comma.
pub fn parse_authorization(header: &str) -> Result<PaymentCredential, MppError> {
    let token = header
        .split(',')
        .map(str::trim)
        .find_map(|part| {
            let (scheme, rest) = part.split_once(char::is_whitespace)?;
            scheme.eq_ignore_ascii_case(SCHEME).then(|| rest.trim())
        })
        .ok_or(MppError::Malformed("no Payment credential in the header"))?;
    if token.len() > MAX_CREDENTIAL_BYTES {
        return Err(MppError::Malformed("credential too large"));
    }
    let bytes = b64url_decode(token).ok_or(MppError::Malformed("credential is not base64url"))?;
    let wire: WireCredential = serde_json::from_slice(&bytes)
        .map_err(|_| MppError::Malformed("credential is not the expected JSON"))?;
    let request = match wire.challenge.request {
        Value::String(encoded) => encoded,
        // Some clients echo the decoded object; re-encode it canonically.
        Value::Object(map) => b64url_encode(canonical_json(&Value::Object(map)).as_bytes()),
        _ => return Err(MppError::Malformed("challenge.request missing")),
    };
    let opaque = match wire.challenge.opaque {
        None | Some(Value::Null) => None,
        Some(Value::String(encoded)) => Some(encoded),
        Some(Value::Object(map)) => Some(b64url_encode(canonical_json(&Value::Object(map)).as_bytes())),
        Some(_) => return Err(MppError::Malformed("challenge.opaque must be a string or an object")),
    };
    if wire.challenge.id.is_empty() {
        return Err(MppError::Malformed("challenge.id missing"));
    }
    Ok(PaymentCredential {
        challenge: EchoedChallenge {
            id: wire.challenge.id,
            realm: wire.challenge.realm,
            method: wire.challenge.method,
            intent: wire.challenge.intent,
            request,
            expires: wire.challenge.expires.filter(|value| !value.is_empty()),
            digest: wire.challenge.digest.filter(|value| !value.is_empty()),
            opaque,
        },
        payload: wire.payload,
        source: wire.source,
    })
}

/// A credential that passed verification: the payment may now be settled.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedPayment {
    /// The challenge id: record it as used, and use it as the Stripe idempotency key.
    pub challenge_id: String,
    /// What the challenge was bound to.
    pub binding: CartBinding,
    /// The shared payment token (`spt_…`). Never log it whole.
    pub shared_payment_token: String,
    /// Client reference from the payload, echoed into the receipt.
    pub external_id: Option<String>,
    /// Payer DID, when sent.
    pub source: Option<String>,
    /// The challenge's expiry.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for VerifiedPayment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedPayment")
            .field("challenge_id", &self.challenge_id)
            .field("binding", &self.binding)
            .field("shared_payment_token", &crate::redact(&self.shared_payment_token))
            .field("external_id", &self.external_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a credential was refused. Every case is answered with 402 and a fresh challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MppError {
    /// Not a parseable credential.
    #[error("malformed payment credential: {0}")]
    Malformed(&'static str),
    /// The id does not match the echoed fields under any of our secrets, or the realm is not ours.
    #[error("unknown or tampered challenge")]
    InvalidChallenge,
    /// The challenge is for a method or intent we do not offer.
    #[error("payment method or intent not supported")]
    MethodUnsupported,
    /// The challenge expired.
    #[error("payment challenge expired")]
    Expired,
    /// The challenge is genuine but bound to something else (another cart, version, amount or key).
    #[error("challenge does not match the current {0}")]
    BindingMismatch(&'static str),
    /// The request body differs from the one the challenge's digest covers.
    #[error("request body does not match the challenge digest")]
    DigestMismatch,
}

impl MppError {
    /// The paymentauth problem type slug (append to [`PROBLEM_TYPE_BASE`]).
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed-credential",
            Self::InvalidChallenge | Self::BindingMismatch(_) => "invalid-challenge",
            Self::MethodUnsupported => "method-unsupported",
            Self::Expired => "payment-expired",
            Self::DigestMismatch => "verification-failed",
        }
    }

    /// The full problem type URI.
    pub fn problem_uri(&self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.problem_type())
    }
}

/// Issues and verifies challenges with a server secret. Holds several secrets during a rotation: the
/// first signs, all verify, so challenges issued before the rotation stay valid until they expire.
#[derive(Clone)]
pub struct ChallengeSigner {
    realm: String,
    secrets: Vec<Secret>,
}

impl fmt::Debug for ChallengeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChallengeSigner")
            .field("realm", &self.realm)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl ChallengeSigner {
    /// A signer for `realm` (the public host name) with the current secret.
    pub fn new(realm: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self { realm: realm.into(), secrets: vec![secret.into()] }
    }

    /// Also accepts challenges signed with an older secret.
    pub fn with_previous_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Issues a stripe/charge challenge bound to `params.binding`.
    pub fn issue(&self, params: &ChallengeParams) -> Challenge {
        let binding = &params.binding;
        let mut method_details = Map::new();
        method_details.insert("networkId".into(), json!(params.stripe.network_id));
        method_details.insert("paymentMethodTypes".into(), json!(params.stripe.payment_method_types));
        if !params.stripe.metadata.is_empty() {
            method_details.insert("metadata".into(), json!(params.stripe.metadata));
        }
        let mut request = Map::new();
        request.insert("amount".into(), json!(binding.amount_cents.to_string()));
        request.insert("currency".into(), json!(binding.currency));
        if let Some(description) = &params.description {
            request.insert("description".into(), json!(description));
        }
        if let Some(external_id) = &params.external_id {
            request.insert("externalId".into(), json!(external_id));
        }
        request.insert("methodDetails".into(), Value::Object(method_details));
        let opaque = json!({
            "cart": binding.cart_id,
            "cart_version": binding.cart_version.to_string(),
            "key": binding.key_id,
        });
        let request = b64url_encode(canonical_json(&Value::Object(request)).as_bytes());
        let opaque = b64url_encode(canonical_json(&opaque).as_bytes());
        let expires = format_rfc3339(params.expires_at);
        let fields = HmacFields {
            realm: &self.realm,
            method: METHOD_STRIPE,
            intent: INTENT_CHARGE,
            request: &request,
            expires: &expires,
            digest: params.body_digest.as_deref().unwrap_or(""),
            opaque: &opaque,
        };
        // ok: `new` always stores one secret and nothing removes secrets.
        let id = b64url_encode(&fields.mac(self.secrets[0].expose().as_bytes()));
        Challenge {
            id,
            realm: self.realm.clone(),
            method: METHOD_STRIPE.into(),
            intent: INTENT_CHARGE.into(),
            request,
            expires,
            description: params.description.clone(),
            digest: params.body_digest.clone(),
            opaque,
        }
    }

    /// Verifies that the credential answers a challenge we issued and that has not expired, then reads the
    /// binding and the SPT. Does not compare the binding with the current cart: see [`Self::verify`].
    /// `body` is the request body, checked only when the challenge carries a digest.
    pub fn verify_challenge(
        &self,
        credential: &PaymentCredential,
        body: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> Result<VerifiedPayment, MppError> {
        let echo = &credential.challenge;
        // 1. The id must be our HMAC over exactly the echoed fields.
        let fields = HmacFields {
            realm: &echo.realm,
            method: &echo.method,
            intent: &echo.intent,
            request: &echo.request,
            expires: echo.expires.as_deref().unwrap_or(""),
            digest: echo.digest.as_deref().unwrap_or(""),
            opaque: echo.opaque.as_deref().unwrap_or(""),
        };
        let genuine = self.secrets.iter().fold(false, |found, secret| {
            found
                | constant_time_eq(
                    b64url_encode(&fields.mac(secret.expose().as_bytes())).as_bytes(),
                    echo.id.as_bytes(),
                )
        });
        if !genuine || echo.realm != self.realm {
            return Err(MppError::InvalidChallenge);
        }
        if echo.method != METHOD_STRIPE || echo.intent != INTENT_CHARGE {
            return Err(MppError::MethodUnsupported);
        }
        // 2. Expiry.
        let expires_at = echo
            .expires
            .as_deref()
            .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
            .ok_or(MppError::InvalidChallenge)?;
        if now >= expires_at {
            return Err(MppError::Expired);
        }
        if let Some(digest) = &echo.digest {
            let actual = content_digest(body.unwrap_or_default());
            if !constant_time_eq(actual.as_bytes(), digest.as_bytes()) {
                return Err(MppError::DigestMismatch);
            }
        }
        // The fields are ours (HMAC), so a decoding failure here means a bug, not an attack.
        let binding =
            decode_binding(&echo.request, echo.opaque.as_deref()).ok_or(MppError::InvalidChallenge)?;
        // 3. Only now read the method payload.
        let payload =
            credential.payload.as_object().ok_or(MppError::Malformed("payload must be an object"))?;
        let spt = payload
            .get("spt")
            .and_then(Value::as_str)
            .filter(|spt| !spt.is_empty())
            .ok_or(MppError::Malformed("payload.spt missing"))?;
        Ok(VerifiedPayment {
            challenge_id: echo.id.clone(),
            binding,
            shared_payment_token: spt.to_string(),
            external_id: payload.get("externalId").and_then(Value::as_str).map(str::to_string),
            source: credential.source.clone(),
            expires_at,
        })
    }

    /// [`Self::verify_challenge`], then requires the challenge's binding to equal `expected` (the current
    /// key, cart, cart version, amount and currency).
    pub fn verify(
        &self,
        credential: &PaymentCredential,
        expected: &CartBinding,
        body: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> Result<VerifiedPayment, MppError> {
        let verified = self.verify_challenge(credential, body, now)?;
        let bound = &verified.binding;
        let mismatch = if bound.key_id != expected.key_id {
            Some("api key")
        } else if bound.cart_id != expected.cart_id {
            Some("cart")
        } else if bound.cart_version != expected.cart_version {
            Some("cart version")
        } else if bound.amount_cents != expected.amount_cents {
            Some("amount")
        } else if bound.currency != expected.currency {
            Some("currency")
        } else {
            None
        };
        match mismatch {
            Some(field) => Err(MppError::BindingMismatch(field)),
            None => Ok(verified),
        }
    }
}

struct HmacFields<'a> {
    realm: &'a str,
    method: &'a str,
    intent: &'a str,
    request: &'a str,
    expires: &'a str,
    digest: &'a str,
    opaque: &'a str,
}

impl HmacFields<'_> {
    /// The draft's seven positional slots joined by `|`, absent ones empty.
    fn mac(&self, secret: &[u8]) -> [u8; 32] {
        let input =
            [self.realm, self.method, self.intent, self.request, self.expires, self.digest, self.opaque]
                .join("|");
        hmac_sha256(secret, input.as_bytes())
    }
}

fn decode_json_object(encoded: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&b64url_decode(encoded)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn decode_binding(request: &str, opaque: Option<&str>) -> Option<CartBinding> {
    let request = decode_json_object(request)?;
    let opaque = decode_json_object(opaque?)?;
    let text = |map: &Map<String, Value>, key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    Some(CartBinding {
        key_id: text(&opaque, "key")?,
        cart_id: text(&opaque, "cart")?,
        cart_version: text(&opaque, "cart_version")?.parse().ok()?,
        amount_cents: text(&request, "amount")?.parse().ok()?,
        currency: text(&request, "currency")?,
    })
}

/// RFC 3339 in UTC with whole seconds (`2026-01-15T12:05:00Z`), the form the clients' parsers accept.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let utc = at.to_offset(UtcOffset::UTC).replace_nanosecond(0).unwrap_or(at);
    // ok: RFC 3339 formatting fails only for years outside 0..=9999.
    utc.format(&Rfc3339).unwrap_or_default()
}

/// RFC 9530 `Content-Digest` value of a body: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", b64_encode(&Sha256::digest(body)))
}

/// The decoded `Payment-Receipt` (mppx's receipt schema plus `challengeId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Always `success`: receipts are never sent on errors.
    pub status: String,
    /// `stripe`.
    pub method: String,
    /// RFC 3339 settlement time.
    pub timestamp: String,
    /// The PaymentIntent id.
    pub reference: String,
    /// The challenge the payment answered.
    pub challenge_id: String,
    /// Echo of the credential's `externalId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl Receipt {
    /// A success receipt for a settled payment.
    pub fn success(verified: &VerifiedPayment, payment_intent_id: &str, settled_at: OffsetDateTime) -> Self {
        Self {
            status: "success".into(),
            method: METHOD_STRIPE.into(),
            timestamp: format_rfc3339(settled_at),
            reference: payment_intent_id.into(),
            challenge_id: verified.challenge_id.clone(),
            external_id: verified.external_id.clone(),
        }
    }

    /// The `Payment-Receipt` header value: `base64url(JSON)` without padding.
    pub fn to_header_value(&self) -> String {
        // ok: a struct of strings always serializes.
        b64url_encode(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Parses a header value (tests, clients).
    pub fn from_header_value(value: &str) -> Option<Self> {
        serde_json::from_slice(&b64url_decode(value)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    fn binding() -> CartBinding {
        CartBinding {
            key_id: "key_01".into(),
            cart_id: "cart_01".into(),
            cart_version: 3,
            amount_cents: 4599,
            currency: "usd".into(),
        }
    }

    fn params() -> ChallengeParams {
        ChallengeParams {
            binding: binding(),
            stripe: StripeMethodDetails {
                network_id: "profile_test".into(),
                payment_method_types: vec!["card".into()],
                metadata: BTreeMap::new(),
            },
            expires_at: now() + Duration::minutes(10),
            description: Some("Order at \"Demo\" shop".into()),
            external_id: Some("cart_01".into()),
            body_digest: None,
        }
    }

    /// What mppx's `Credential.serialize` sends: the parsed challenge object with `request` re-serialized
    /// by `PaymentRequest.serialize` (JCS + base64url), `opaque` as the parsed object, `payload {spt}`.
    fn mppx_credential(challenge: &Challenge, spt: &str) -> String {
        let opaque: Value = serde_json::from_slice(&b64url_decode(&challenge.opaque).unwrap()).unwrap();
        let wire = json!({
            "challenge": {
                "id": challenge.id, "realm": challenge.realm, "method": challenge.method, "intent": challenge.intent,
                "request": b64url_encode(canonical_json(&challenge.request_json()).as_bytes()),
                "description": challenge.description, "digest": challenge.digest, "expires": challenge.expires, "opaque": opaque,
            },
            "payload": {"spt": spt},
        });
        format!("Payment {}", b64url_encode(serde_json::to_string(&wire).unwrap().as_bytes()))
    }

    #[test]
    fn challenge_header_has_every_parameter_quoted() {
        let challenge = ChallengeSigner::new("shop.example", "secret").issue(&params());
        let header = challenge.to_header_value();
        assert!(header.starts_with("Payment id=\""), "{header}");
        for part in [
            "realm=\"shop.example\"",
            "method=\"stripe\"",
            "intent=\"charge\"",
            "expires=\"2026-01-01T00:10:00Z\"",
            "description=\"Order at 'Demo' shop\"",
        ] {
            assert!(header.contains(part), "{part} missing in {header}");
        }
        let request = challenge.request_json();
        assert_eq!(request["amount"], "4599");
        assert_eq!(request["currency"], "usd");
        assert_eq!(request["methodDetails"]["networkId"], "profile_test");
        assert_eq!(request["methodDetails"]["paymentMethodTypes"], json!(["card"]));
        // The request on the wire is canonical: re-serializing the decoded JSON gives the same bytes.
        assert_eq!(b64url_encode(canonical_json(&request).as_bytes()), challenge.request);
    }

    #[test]
    fn challenge_id_is_the_drafts_hmac() {
        let challenge = ChallengeSigner::new("shop.example", "secret").issue(&params());
        let input = format!(
            "shop.example|stripe|charge|{}|{}||{}",
            challenge.request, challenge.expires, challenge.opaque
        );
        assert_eq!(challenge.id, b64url_encode(&hmac_sha256(b"secret", input.as_bytes())));
    }

    #[test]
    fn mppx_shaped_credential_round_trips() {
        let signer = ChallengeSigner::new("shop.example", "secret");
        let challenge = signer.issue(&params());
        let credential = parse_authorization(&mppx_credential(&challenge, "spt_test_123")).unwrap();
        let verified = signer.verify(&credential, &binding(), None, now()).unwrap();
        assert_eq!(verified.challenge_id, challenge.id);
        assert_eq!(verified.shared_payment_token, "spt_test_123");
        assert!(
            !format!("{verified:?}").contains("spt_test_123"),
            "the token must not be debug-printed whole"
        );
        let receipt = Receipt::success(&verified, "pi_123", now());
        let decoded = Receipt::from_header_value(&receipt.to_header_value()).unwrap();
        assert_eq!(decoded.reference, "pi_123");
        assert_eq!(decoded.status, "success");
        assert_eq!(decoded.timestamp, "2026-01-01T00:00:00Z");
    }

    #[test]
    fn rejections() {
        let signer = ChallengeSigner::new("shop.example", "secret");
        let challenge = signer.issue(&params());
        let credential = parse_authorization(&mppx_credential(&challenge, "spt_1")).unwrap();
        let expect = |expected: CartBinding| signer.verify(&credential, &expected, None, now());
        assert_eq!(
            expect(CartBinding { cart_version: 4, ..binding() }),
            Err(MppError::BindingMismatch("cart version"))
        );
        assert_eq!(
            expect(CartBinding { amount_cents: 4600, ..binding() }),
            Err(MppError::BindingMismatch("amount"))
        );
        assert_eq!(
            expect(CartBinding { key_id: "key_02".into(), ..binding() }),
            Err(MppError::BindingMismatch("api key"))
        );
        assert_eq!(
            expect(CartBinding { cart_id: "cart_02".into(), ..binding() }),
            Err(MppError::BindingMismatch("cart"))
        );
        assert_eq!(
            signer.verify(&credential, &binding(), None, now() + Duration::minutes(10)),
            Err(MppError::Expired)
        );
        assert_eq!(
            ChallengeSigner::new("shop.example", "other").verify(&credential, &binding(), None, now()),
            Err(MppError::InvalidChallenge)
        );
        assert_eq!(
            ChallengeSigner::new("evil.example", "secret").verify(&credential, &binding(), None, now()),
            Err(MppError::InvalidChallenge)
        );

        // Tampering with the echoed amount breaks the HMAC.
        let mut tampered = credential.clone();
        let mut request = decode_json_object(&tampered.challenge.request).unwrap();
        request.insert("amount".into(), json!("1"));
        tampered.challenge.request = b64url_encode(canonical_json(&Value::Object(request)).as_bytes());
        assert_eq!(
            signer.verify(&tampered, &CartBinding { amount_cents: 1, ..binding() }, None, now()),
            Err(MppError::InvalidChallenge)
        );
        // So does extending the expiry.
        let mut tampered = credential.clone();
        tampered.challenge.expires = Some("2030-01-01T00:00:00Z".into());
        assert_eq!(signer.verify(&tampered, &binding(), None, now()), Err(MppError::InvalidChallenge));

        // A genuine challenge without an SPT is malformed, but only after the HMAC passed.
        let mut no_token = credential.clone();
        no_token.payload = json!({});
        assert_eq!(
            signer.verify(&no_token, &binding(), None, now()),
            Err(MppError::Malformed("payload.spt missing"))
        );
    }

    #[test]
    fn rotated_secrets_still_verify() {
        let old = ChallengeSigner::new("shop.example", "old");
        let challenge = old.issue(&params());
        let credential = parse_authorization(&mppx_credential(&challenge, "spt_1")).unwrap();
        let rotated = ChallengeSigner::new("shop.example", "new").with_previous_secret("old");
        assert!(rotated.verify(&credential, &binding(), None, now()).is_ok());
    }

    #[test]
    fn digest_binds_the_body() {
        let signer = ChallengeSigner::new("shop.example", "secret");
        let body = br#"{"cart_id":"cart_01"}"#;
        let challenge =
            signer.issue(&ChallengeParams { body_digest: Some(content_digest(body)), ..params() });
        assert!(challenge.to_header_value().contains("digest=\"sha-256=:"));
        let credential =
            parse_authorization(&format!("Bearer abc, {}", mppx_credential(&challenge, "spt_1"))).unwrap();
        assert!(signer.verify(&credential, &binding(), Some(body), now()).is_ok());
        assert_eq!(signer.verify(&credential, &binding(), Some(b"{}"), now()), Err(MppError::DigestMismatch));
    }

    #[test]
    fn pympp_shaped_credential_with_string_opaque_is_accepted() {
        // pympp's `format_authorization` echoes `opaque` as the base64url string and sorts keys.
        let signer = ChallengeSigner::new("shop.example", "secret");
        let challenge = signer.issue(&params());
        let wire = json!({
            "challenge": {"id": challenge.id, "realm": challenge.realm, "method": "stripe", "intent": "charge",
                          "request": challenge.request, "expires": challenge.expires, "opaque": challenge.opaque},
            "payload": {"spt": "spt_py", "externalId": "client-7"},
            "source": "did:example:payer",
        });
        let header = format!("payment {}", b64url_encode(canonical_json(&wire).as_bytes()));
        let verified =
            signer.verify(&parse_authorization(&header).unwrap(), &binding(), None, now()).unwrap();
        assert_eq!(verified.external_id.as_deref(), Some("client-7"));
        assert_eq!(verified.source.as_deref(), Some("did:example:payer"));
    }

    #[test]
    fn malformed_credentials_are_reported_as_such() {
        // `mppx validate` sends exactly this garbage credential.
        assert!(matches!(parse_authorization("Payment dGhpcyBpcyBnYXJiYWdl"), Err(MppError::Malformed(_))));
        assert!(matches!(parse_authorization("Bearer kfa_123"), Err(MppError::Malformed(_))));
        assert!(matches!(parse_authorization("Payment !!!"), Err(MppError::Malformed(_))));
        let huge = format!("Payment {}", "A".repeat(MAX_CREDENTIAL_BYTES + 1));
        assert_eq!(parse_authorization(&huge).unwrap_err(), MppError::Malformed("credential too large"));
        assert_eq!(
            MppError::Malformed("x").problem_uri(),
            "https://paymentauth.org/problems/malformed-credential"
        );
    }
}
