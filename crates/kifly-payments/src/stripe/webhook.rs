//! `Stripe-Signature` verification and signing, and parsing of the events checkout reacts to.
//!
//! The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`; each `v1` is
//! `HMAC-SHA256(endpoint secret, "{t}.{raw body}")` in hex. Several `v1` entries appear while a secret is
//! being rolled, so any match is enough. The timestamp must be within [`WEBHOOK_TOLERANCE`] of now (in
//! either direction), which bounds replays; replays inside the window are caught by the caller's
//! de-duplication on the event id.
//!
//! The secret is used as given (`whsec_…` included), exactly as Stripe's libraries do.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::{CheckoutSession, PaymentIntent};
use crate::encoding::{constant_time_eq, hmac_sha256};

/// The header name.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// Stripe's default tolerance: 300 seconds.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeWebhookError {
    /// The header has no `t=` or no `v1=`, or they are not parseable.
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    /// No `v1` signature matches the body.
    #[error("no signature matches the payload")]
    SignatureMismatch,
    /// The timestamp is outside the tolerance.
    #[error("timestamp outside the tolerance window")]
    TimestampOutsideTolerance,
    /// The body is not a Stripe event.
    #[error("payload is not a Stripe event: {0}")]
    InvalidPayload(String),
}

/// Verifies `header` against the raw `payload` bytes. `now_unix` is the current time in seconds.
pub fn verify_signature(
    payload: &[u8],
    header: &str,
    secret: &str,
    tolerance: Duration,
    now_unix: i64,
) -> Result<(), StripeWebhookError> {
    let mut timestamp: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else { continue };
        match key {
            "t" => timestamp = Some(value.parse().map_err(|_| StripeWebhookError::MalformedHeader)?),
            // A v1 that is not hex cannot match; skipping it keeps other entries usable.
            "v1" => candidates.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(StripeWebhookError::MalformedHeader)?;
    if candidates.is_empty() {
        return Err(StripeWebhookError::MalformedHeader);
    }
    let expected = expected_signature(payload, secret, timestamp);
    // Compare against every candidate (no early exit), so timing does not reveal which one matched.
    let matched =
        candidates.iter().fold(false, |found, candidate| found | constant_time_eq(candidate, &expected));
    if !matched {
        return Err(StripeWebhookError::SignatureMismatch);
    }
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now_unix.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(StripeWebhookError::TimestampOutsideTolerance);
    }
    Ok(())
}

/// The `Stripe-Signature` value for `payload` at `timestamp` (used by the sandbox and tests).
pub fn sign_webhook(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!("t={timestamp},v1={}", hex::encode(expected_signature(payload, secret, timestamp)))
}

fn expected_signature(payload: &[u8], secret: &str, timestamp: i64) -> [u8; 32] {
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(payload);
    hmac_sha256(secret.as_bytes(), &signed)
}

/// A Stripe event: the envelope plus the typed object for the types checkout handles.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEvent {
    /// `evt_…`: the de-duplication key.
    pub id: String,
    /// e.g. `checkout.session.completed`.
    pub event_type: String,
    /// Creation time (unix seconds).
    pub created: i64,
    /// False in test mode and in the sandbox.
    pub livemode: bool,
    /// The typed content.
    pub kind: StripeEventKind,
}

/// The event types checkout reacts to; everything else is [`StripeEventKind::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum StripeEventKind {
    /// `checkout.session.completed`: paid when `payment_status` is `paid`; async methods follow up.
    CheckoutSessionCompleted(CheckoutSession),
    /// `checkout.session.async_payment_succeeded`.
    CheckoutSessionAsyncPaymentSucceeded(CheckoutSession),
    /// `checkout.session.async_payment_failed`.
    CheckoutSessionAsyncPaymentFailed(CheckoutSession),
    /// `checkout.session.expired`.
    CheckoutSessionExpired(CheckoutSession),
    /// `payment_intent.succeeded`.
    PaymentIntentSucceeded(PaymentIntent),
    /// `payment_intent.payment_failed`.
    PaymentIntentPaymentFailed(PaymentIntent),
    /// Any other type; the raw `data.object`.
    Other(Value),
}

#[derive(Deserialize, Serialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    livemode: bool,
    data: EnvelopeData,
}

#[derive(Deserialize, Serialize)]
struct EnvelopeData {
    object: Value,
}

/// Parses an event body (verify it first, or use [`construct_event`]).
pub fn parse_event(payload: &[u8]) -> Result<StripeEvent, StripeWebhookError> {
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|error| StripeWebhookError::InvalidPayload(error.to_string()))?;
    let object = envelope.data.object;
    let session = |object: Value| {
        serde_json::from_value::<CheckoutSession>(object)
            .map_err(|e| StripeWebhookError::InvalidPayload(e.to_string()))
    };
    let intent = |object: Value| {
        serde_json::from_value::<PaymentIntent>(object)
            .map_err(|e| StripeWebhookError::InvalidPayload(e.to_string()))
    };
    let kind = match envelope.event_type.as_str() {
        "checkout.session.completed" => StripeEventKind::CheckoutSessionCompleted(session(object)?),
        "checkout.session.async_payment_succeeded" => {
            StripeEventKind::CheckoutSessionAsyncPaymentSucceeded(session(object)?)
        }
        "checkout.session.async_payment_failed" => {
            StripeEventKind::CheckoutSessionAsyncPaymentFailed(session(object)?)
        }
        "checkout.session.expired" => StripeEventKind::CheckoutSessionExpired(session(object)?),
        "payment_intent.succeeded" => StripeEventKind::PaymentIntentSucceeded(intent(object)?),
        "payment_intent.payment_failed" => StripeEventKind::PaymentIntentPaymentFailed(intent(object)?),
        _ => StripeEventKind::Other(object),
    };
    Ok(StripeEvent {
        id: envelope.id,
        event_type: envelope.event_type,
        created: envelope.created,
        livemode: envelope.livemode,
        kind,
    })
}

/// Verifies the signature, then parses the event.
pub fn construct_event(
    payload: &[u8],
    header: &str,
    secret: &str,
    tolerance: Duration,
    now_unix: i64,
) -> Result<StripeEvent, StripeWebhookError> {
    verify_signature(payload, header, secret, tolerance, now_unix)?;
    parse_event(payload)
}

/// Builds an event body in Stripe's envelope shape (for the sandbox and tests).
pub fn event_body(
    id: &str,
    event_type: &str,
    created: i64,
    object: &impl Serialize,
) -> Result<Vec<u8>, serde_json::Error> {
    let envelope = Envelope {
        id: id.to_string(),
        event_type: event_type.to_string(),
        created,
        livemode: false,
        data: EnvelopeData { object: serde_json::to_value(object)? },
    };
    let mut value = serde_json::to_value(envelope)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("object".into(), Value::String("event".into()));
    }
    serde_json::to_vec(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_700_000_000;

    #[test]
    fn signature_matches_an_openssl_vector() {
        // printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac 'whsec_test_secret'
        let header = sign_webhook(br#"{"id":"evt_1"}"#, SECRET, NOW);
        assert_eq!(
            header,
            "t=1700000000,v1=248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"
        );
    }

    #[test]
    fn good_tampered_expired_and_rotated_signatures() {
        let body = br#"{"id":"evt_1","type":"x","data":{"object":{}}}"#;
        let header = sign_webhook(body, SECRET, NOW);
        assert_eq!(verify_signature(body, &header, SECRET, WEBHOOK_TOLERANCE, NOW + 299), Ok(()));
        let tampered = br#"{"id":"evt_2","type":"x","data":{"object":{}}}"#;
        assert_eq!(
            verify_signature(tampered, &header, SECRET, WEBHOOK_TOLERANCE, NOW),
            Err(StripeWebhookError::SignatureMismatch)
        );
        assert_eq!(
            verify_signature(body, &header, "whsec_other", WEBHOOK_TOLERANCE, NOW),
            Err(StripeWebhookError::SignatureMismatch)
        );
        assert_eq!(
            verify_signature(body, &header, SECRET, WEBHOOK_TOLERANCE, NOW + 301),
            Err(StripeWebhookError::TimestampOutsideTolerance)
        );
        assert_eq!(
            verify_signature(body, &header, SECRET, WEBHOOK_TOLERANCE, NOW - 301),
            Err(StripeWebhookError::TimestampOutsideTolerance)
        );
        // During a secret roll Stripe sends one v1 per secret; any one may match.
        let old = sign_webhook(body, "whsec_old", NOW);
        let rolled = format!("{},{},v0=deadbeef", header, old.split(',').nth(1).unwrap());
        assert_eq!(verify_signature(body, &rolled, "whsec_old", WEBHOOK_TOLERANCE, NOW), Ok(()));
        assert_eq!(verify_signature(body, &rolled, SECRET, WEBHOOK_TOLERANCE, NOW), Ok(()));
        for malformed in ["", "v1=00", "t=abc,v1=00", "t=1700000000", "t=1700000000,v0=00"] {
            assert_eq!(
                verify_signature(body, malformed, SECRET, WEBHOOK_TOLERANCE, NOW),
                Err(StripeWebhookError::MalformedHeader),
                "{malformed}"
            );
        }
    }

    #[test]
    fn events_parse_into_typed_kinds() {
        let body = br#"{"id":"evt_9","object":"event","type":"checkout.session.completed","created":5,"livemode":false,
            "data":{"object":{"id":"cs_1","object":"checkout.session","payment_status":"paid","status":"complete",
            "metadata":{"order_id":"ord_1"},"payment_intent":"pi_1","expires_at":9}}}"#;
        let event =
            construct_event(body, &sign_webhook(body, SECRET, NOW), SECRET, WEBHOOK_TOLERANCE, NOW).unwrap();
        assert_eq!(event.id, "evt_9");
        let StripeEventKind::CheckoutSessionCompleted(session) = event.kind else { panic!("wrong kind") };
        assert_eq!(session.metadata["order_id"], "ord_1");
        let other =
            parse_event(br#"{"id":"evt_3","type":"charge.refunded","data":{"object":{"id":"ch_1"}}}"#)
                .unwrap();
        assert!(matches!(other.kind, StripeEventKind::Other(_)));
        assert!(matches!(parse_event(b"not json"), Err(StripeWebhookError::InvalidPayload(_))));
    }

    #[test]
    fn event_body_round_trips() {
        let intent: PaymentIntent =
            serde_json::from_str(r#"{"id":"pi_1","amount":100,"currency":"usd","status":"succeeded"}"#)
                .unwrap();
        let body = event_body("evt_5", "payment_intent.succeeded", NOW, &intent).unwrap();
        let event = parse_event(&body).unwrap();
        assert_eq!(event.kind, StripeEventKind::PaymentIntentSucceeded(intent));
    }
}
