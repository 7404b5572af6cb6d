//! An x402 facilitator under `/sandbox/x402/`: `POST /verify`, `POST /settle`, `GET /supported`.
//!
//! Verification is real, not a stub: [`x402::verify_exact`] recovers the EIP-712
//! `TransferWithAuthorization` signer and checks scheme, network, asset, payee, exact amount and the
//! validity window. What a chain would add is simulated by memory: a settled `(payer, nonce)` pair
//! can never settle again, as the token contract enforces. `/verify` checks the nonce but does not
//! consume it; `/settle` checks and records it under one lock, so concurrent settles of one payment
//! succeed once. The transaction hash is a deterministic fake (keccak-256 of the signature).
//!
//! Refusals are answered 200 with `isValid: false` / `success: false` and the x402 reason code;
//! only an unreadable body is a 400.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kifly_payments::x402::{
    self, Address, FacilitatorRequest, KNOWN_NETWORKS, SCHEME_EXACT, SettleResponse, SupportedKind,
    SupportedResponse, VerifiedAuthorization, VerifyResponse, X402Rejection,
};
use serde_json::json;

use super::{Ledger, Sandbox, now_unix};

fn now() -> u64 {
    u64::try_from(now_unix()).unwrap_or_default()
}

fn nonce_key(verified: &VerifiedAuthorization) -> String {
    format!("{}:{}", verified.payer, verified.nonce_hex())
}

/// Everything a facilitator checks before settling, the spent-nonce lookup included.
fn check(
    ledger: &Ledger,
    request: &FacilitatorRequest,
    now: u64,
) -> Result<VerifiedAuthorization, X402Rejection> {
    let payment = &request.payment_payload;
    if request.x402_version != 2 || payment.x402_version != 2 {
        return Err(X402Rejection::InvalidVersion);
    }
    if !KNOWN_NETWORKS.iter().any(|network| network.caip2 == request.payment_requirements.network) {
        return Err(X402Rejection::InvalidNetwork);
    }
    let verified =
        x402::verify_exact(&payment.accepted, &payment.payload, &request.payment_requirements, now)?;
    if ledger.settled_nonces.contains(&nonce_key(&verified)) {
        return Err(X402Rejection::NonceAlreadyUsed);
    }
    Ok(verified)
}

/// The payer as claimed by the payload, for refusals.
fn claimed_payer(request: &FacilitatorRequest) -> Option<String> {
    Some(request.payment_payload.payload.authorization.from.clone())
}

pub(super) async fn verify(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<FacilitatorRequest>(&body) else {
        let reason = X402Rejection::InvalidPayload.reason_code();
        let refused = VerifyResponse { is_valid: false, invalid_reason: Some(reason.into()), payer: None };
        return (StatusCode::BAD_REQUEST, Json(refused)).into_response();
    };
    let answer = match sandbox.with_ledger(|ledger, _| check(ledger, &request, now())) {
        Ok(verified) => {
            VerifyResponse { is_valid: true, invalid_reason: None, payer: Some(verified.payer.to_string()) }
        }
        Err(rejection) => VerifyResponse {
            is_valid: false,
            invalid_reason: Some(rejection.reason_code().into()),
            payer: claimed_payer(&request),
        },
    };
    Json(answer).into_response()
}

pub(super) async fn settle(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let refused = |reason: X402Rejection, payer: Option<String>, network: &str| SettleResponse {
        success: false,
        error_reason: Some(reason.reason_code().into()),
        payer,
        transaction: String::new(),
        network: network.into(),
        amount: None,
    };
    let Ok(request) = serde_json::from_slice::<FacilitatorRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(refused(X402Rejection::InvalidPayload, None, "")))
            .into_response();
    };
    let network = request.payment_requirements.network.as_str();
    let settled = sandbox.with_ledger(|ledger, _| {
        let verified = check(ledger, &request, now())?;
        ledger.settled_nonces.insert(nonce_key(&verified));
        Ok(verified)
    });
    let answer = match settled {
        Ok(verified) => SettleResponse {
            success: true,
            error_reason: None,
            payer: Some(verified.payer.to_string()),
            transaction: format!(
                "0x{}",
                hex::encode(x402::eip712::keccak256(request.payment_payload.payload.signature.as_bytes()))
            ),
            network: verified.network,
            amount: Some(verified.value),
        },
        Err(rejection) => refused(rejection, claimed_payer(&request), network),
    };
    Json(answer).into_response()
}

/// `exact` on every known network, in v2 (CAIP-2) and v1 (legacy name) form, and one made-up signer.
pub(super) async fn supported() -> Json<SupportedResponse> {
    let kinds = KNOWN_NETWORKS
        .iter()
        .flat_map(|network| [(2, network.caip2), (1, network.v1_name)])
        .map(|(x402_version, network)| SupportedKind {
            x402_version,
            scheme: SCHEME_EXACT.into(),
            network: network.into(),
            extra: None,
        })
        .collect();
    let hash = x402::eip712::keccak256(b"kifly sandbox facilitator");
    let mut signer = [0u8; 20];
    signer.copy_from_slice(&hash[12..]);
    let mut signers = serde_json::Map::new();
    signers.insert("eip155:*".into(), json!([Address(signer).to_string()]));
    Json(SupportedResponse { kinds, extensions: Vec::new(), signers })
}
