//! x402 (rail 4): the `PAYMENT-REQUIRED` offer, the client's `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT`
//! (v1) payment, local verification of the `exact` EVM scheme (EIP-3009 `TransferWithAuthorization`),
//! a facilitator client for `/verify` `/settle` `/supported`, and `PAYMENT-RESPONSE`.
//!
//! Headers carry standard base64 (not base64url) of JSON. Clients in the wild send either header and read
//! either requirements form, so both versions are parsed; v1 payments are normalized to v2 for the
//! facilitator (the signed authorization is the same in both).
//!
//! [`verify_exact`] is the complete signature-level check a facilitator performs, minus the chain
//! (balance, simulation): scheme, network, asset, payee, *exact* amount, validity window, and that the
//! EIP-712 signature recovers to `from`. The built-in sandbox facilitator uses it as its `/verify`; the
//! server also runs it before calling a remote facilitator, so a bad payment never costs a round trip.
//! Single use of the nonce is the caller's job: [`VerifiedAuthorization::nonce`] is the key to record
//! (payer + nonce is what the token contract itself treats as used).

pub mod eip712;
mod facilitator;
mod types;

use k256::ecdsa::SigningKey;
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use eip712::{Address, Eip712Domain, SignatureError, TransferAuthorization, U256};
pub use facilitator::{FacilitatorClient, FacilitatorConfig};
pub use types::{
    AssetExtra, AuthorizationWire, ExactEvmPayload, FacilitatorRequest, PaymentPayload, PaymentPayloadV1,
    PaymentRequired, PaymentRequiredV1, PaymentRequirements, PaymentRequirementsV1, ResourceInfo,
    SettleResponse, SupportedKind, SupportedResponse, VerifyResponse,
};

use crate::encoding::{b64_decode, b64_encode};

/// v2: the 402's requirements header.
pub const PAYMENT_REQUIRED_HEADER: &str = "PAYMENT-REQUIRED";
/// v2: the client's payment header.
pub const PAYMENT_SIGNATURE_HEADER: &str = "PAYMENT-SIGNATURE";
/// v2: the settlement result header.
pub const PAYMENT_RESPONSE_HEADER: &str = "PAYMENT-RESPONSE";
/// v1: the client's payment header.
pub const X_PAYMENT_HEADER: &str = "X-PAYMENT";
/// v1: the settlement result header.
pub const X_PAYMENT_RESPONSE_HEADER: &str = "X-PAYMENT-RESPONSE";
/// The only scheme offered.
pub const SCHEME_EXACT: &str = "exact";
/// Facilitators reject authorizations expiring within this many seconds (they could not land in time).
pub const VALID_BEFORE_MARGIN_SECONDS: u64 = 6;

/// A USDC deployment and its EIP-712 domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsdcAsset {
    /// Contract address (checksummed).
    pub address: &'static str,
    /// EIP-712 domain name.
    pub name: &'static str,
    /// EIP-712 domain version.
    pub version: &'static str,
}

/// An EVM network x402 can settle on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvmNetwork {
    /// CAIP-2 id (v2).
    pub caip2: &'static str,
    /// Legacy name (v1).
    pub v1_name: &'static str,
    /// EVM chain id.
    pub chain_id: u64,
    /// Circle's USDC on this network.
    pub usdc: UsdcAsset,
}

/// Base mainnet. USDC's domain name there is "USD Coin" (x402's Python SDK asset table).
pub const BASE: EvmNetwork = EvmNetwork {
    caip2: "eip155:8453",
    v1_name: "base",
    chain_id: 8453,
    usdc: UsdcAsset { address: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", name: "USD Coin", version: "2" },
};

/// Base Sepolia testnet. USDC's domain name there is "USDC" (x402 spec examples, Python SDK table).
pub const BASE_SEPOLIA: EvmNetwork = EvmNetwork {
    caip2: "eip155:84532",
    v1_name: "base-sepolia",
    chain_id: 84532,
    usdc: UsdcAsset { address: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", name: "USDC", version: "2" },
};

/// The networks this crate knows by name.
pub const KNOWN_NETWORKS: [EvmNetwork; 2] = [BASE, BASE_SEPOLIA];

impl EvmNetwork {
    /// Looks a network up by CAIP-2 id or v1 name.
    pub fn find(name: &str) -> Option<Self> {
        KNOWN_NETWORKS.into_iter().find(|network| network.caip2 == name || network.v1_name == name)
    }
}

/// The chain id of an `eip155:<id>` CAIP-2 network.
pub fn chain_id_of(caip2: &str) -> Option<u64> {
    caip2.strip_prefix("eip155:")?.parse().ok()
}

/// USDC has 6 decimals, cents have 2: atomic units = cents × 10⁴. `None` for negative or overflowing
/// amounts.
pub fn usdc_atomic_from_cents(cents: i64) -> Option<String> {
    if cents < 0 {
        return None;
    }
    cents.checked_mul(10_000).map(|atomic| atomic.to_string())
}

/// What Kifly offers for one cart: USDC on one network, to one payee, for an exact amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactOffer {
    /// Network (and its USDC).
    pub network: EvmNetwork,
    /// Who receives the USDC.
    pub pay_to: Address,
    /// Amount in cents.
    pub amount_cents: i64,
    /// How long the client may take.
    pub max_timeout_seconds: u64,
}

impl ExactOffer {
    /// The v2 requirement; `None` if the amount cannot be expressed.
    pub fn requirements(&self) -> Option<PaymentRequirements> {
        Some(PaymentRequirements {
            scheme: SCHEME_EXACT.into(),
            network: self.network.caip2.into(),
            amount: usdc_atomic_from_cents(self.amount_cents)?,
            asset: self.network.usdc.address.into(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: Some(json!({"name": self.network.usdc.name, "version": self.network.usdc.version})),
        })
    }

    /// The v1 requirement (for the 402 body of v1 clients).
    pub fn requirements_v1(&self, resource_url: &str, description: &str) -> Option<PaymentRequirementsV1> {
        let v2 = self.requirements()?;
        Some(PaymentRequirementsV1 {
            scheme: v2.scheme,
            network: self.network.v1_name.into(),
            max_amount_required: v2.amount,
            resource: resource_url.into(),
            description: description.into(),
            mime_type: "application/json".into(),
            pay_to: v2.pay_to,
            max_timeout_seconds: v2.max_timeout_seconds,
            asset: v2.asset,
            extra: v2.extra,
        })
    }
}

/// Encodes a header document: standard base64 of its JSON.
pub fn encode_header<T: Serialize>(document: &T) -> String {
    // ok: the x402 types are plain data and always serialize.
    b64_encode(&serde_json::to_vec(document).unwrap_or_default())
}

/// Decodes a header document.
pub fn decode_header<T: DeserializeOwned>(value: &str) -> Result<T, X402Rejection> {
    let bytes = b64_decode(value).ok_or(X402Rejection::InvalidPayload)?;
    serde_json::from_slice(&bytes).map_err(|_| X402Rejection::InvalidPayload)
}

/// A payment as received, in the version the client used.
#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "one short-lived value per request; boxing buys nothing")]
pub enum IncomingPayment {
    /// From `PAYMENT-SIGNATURE`.
    V2(PaymentPayload),
    /// From `X-PAYMENT`.
    V1(PaymentPayloadV1),
}

/// Reads the payment headers; `Ok(None)` when neither is present. `PAYMENT-SIGNATURE` wins when a client
/// sends both.
pub fn parse_payment_headers(
    payment_signature: Option<&str>,
    x_payment: Option<&str>,
) -> Result<Option<IncomingPayment>, X402Rejection> {
    if let Some(value) = payment_signature {
        let payload: PaymentPayload = decode_header(value)?;
        if payload.x402_version != 2 {
            return Err(X402Rejection::InvalidVersion);
        }
        return Ok(Some(IncomingPayment::V2(payload)));
    }
    if let Some(value) = x_payment {
        let payload: PaymentPayloadV1 = decode_header(value)?;
        if payload.x402_version != 1 {
            return Err(X402Rejection::InvalidVersion);
        }
        return Ok(Some(IncomingPayment::V1(payload)));
    }
    Ok(None)
}

impl IncomingPayment {
    /// 1 or 2: answer in the version the client used.
    pub fn version(&self) -> u32 {
        match self {
            Self::V2(_) => 2,
            Self::V1(_) => 1,
        }
    }

    /// The signed authorization.
    pub fn exact_payload(&self) -> &ExactEvmPayload {
        match self {
            Self::V2(payload) => &payload.payload,
            Self::V1(payload) => &payload.payload,
        }
    }

    /// The requirement the client claims to pay, in v2 form. v1 payloads carry only scheme and network,
    /// so the rest is taken from `offered` (the signature still has to match it).
    pub fn accepted(&self, offered: &PaymentRequirements) -> Result<PaymentRequirements, X402Rejection> {
        match self {
            Self::V2(payload) => Ok(payload.accepted.clone()),
            Self::V1(payload) => {
                let network = EvmNetwork::find(&payload.network)
                    .map(|n| n.caip2.to_string())
                    .unwrap_or_else(|| payload.network.clone());
                Ok(PaymentRequirements { scheme: payload.scheme.clone(), network, ..offered.clone() })
            }
        }
    }

    /// [`verify_exact`] against what we offered.
    pub fn verify(
        &self,
        offered: &PaymentRequirements,
        now_unix: u64,
    ) -> Result<VerifiedAuthorization, X402Rejection> {
        verify_exact(&self.accepted(offered)?, self.exact_payload(), offered, now_unix)
    }

    /// The body for a facilitator's `/verify` and `/settle`, normalized to v2.
    pub fn facilitator_request(
        &self,
        offered: &PaymentRequirements,
    ) -> Result<FacilitatorRequest, X402Rejection> {
        let payment_payload = match self {
            Self::V2(payload) => payload.clone(),
            Self::V1(payload) => PaymentPayload {
                x402_version: 2,
                resource: None,
                accepted: self.accepted(offered)?,
                payload: payload.payload.clone(),
                extensions: None,
            },
        };
        Ok(FacilitatorRequest { x402_version: 2, payment_payload, payment_requirements: offered.clone() })
    }
}

/// Why a payment was refused; [`X402Rejection::reason_code`] gives the x402 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum X402Rejection {
    /// Header not decodable, or fields not parseable.
    #[error("invalid payment payload")]
    InvalidPayload,
    /// `x402Version` is not the one of the header it came in.
    #[error("invalid x402 version")]
    InvalidVersion,
    /// Scheme other than `exact`.
    #[error("unsupported scheme")]
    UnsupportedScheme,
    /// Network not offered, or not an `eip155:` network.
    #[error("network does not match the requirement")]
    InvalidNetwork,
    /// The client paid with another asset, or the requirement lacks the EIP-712 domain.
    #[error("payment requirements do not match")]
    InvalidRequirements,
    /// `to` (or the echoed `payTo`) is not our payee.
    #[error("recipient does not match")]
    RecipientMismatch,
    /// `value` (or the echoed amount) is not exactly the amount due.
    #[error("amount does not match")]
    ValueMismatch,
    /// `validBefore` has passed (or is too close to land).
    #[error("authorization expired")]
    Expired,
    /// `validAfter` is in the future.
    #[error("authorization not yet valid")]
    NotYetValid,
    /// The signature does not recover to `from`.
    #[error("invalid signature")]
    InvalidSignature,
    /// The nonce was used before (decided by the caller's store, reported with this code).
    #[error("nonce already used")]
    NonceAlreadyUsed,
}

impl X402Rejection {
    /// The x402 error code (`invalidReason` / `errorReason`), as the reference SDKs spell them.
    pub fn reason_code(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload",
            Self::InvalidVersion => "invalid_x402_version",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::InvalidNetwork => "invalid_network",
            Self::InvalidRequirements => "invalid_payment_requirements",
            Self::RecipientMismatch => "invalid_exact_evm_payload_recipient_mismatch",
            Self::ValueMismatch => "invalid_exact_evm_payload_authorization_value_mismatch",
            Self::Expired => "invalid_exact_evm_payload_authorization_valid_before",
            Self::NotYetValid => "invalid_exact_evm_payload_authorization_valid_after",
            Self::InvalidSignature => "invalid_exact_evm_payload_signature",
            Self::NonceAlreadyUsed => "invalid_exact_evm_nonce_already_used",
        }
    }
}

/// A payment whose signature and terms check out. Record `(payer, nonce)` as used before settling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAuthorization {
    /// The payer (recovered signer, equal to `from`).
    pub payer: Address,
    /// The EIP-3009 nonce.
    pub nonce: [u8; 32],
    /// Atomic units paid.
    pub value: String,
    /// CAIP-2 network.
    pub network: String,
    /// Unix time after which the authorization is dead (useful as the nonce record's expiry).
    pub valid_before: u64,
}

impl VerifiedAuthorization {
    /// `0x`-hex nonce.
    pub fn nonce_hex(&self) -> String {
        format!("0x{}", hex::encode(self.nonce))
    }
}

fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<Address>(), b.parse::<Address>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn same_amount(a: &str, b: &str) -> bool {
    matches!((U256::from_dec_str(a), U256::from_dec_str(b)), (Some(a), Some(b)) if a == b)
}

/// Parses the wire authorization.
pub fn parse_authorization(wire: &AuthorizationWire) -> Result<TransferAuthorization, X402Rejection> {
    let bad = |_| X402Rejection::InvalidPayload;
    Ok(TransferAuthorization {
        from: wire.from.parse().map_err(bad)?,
        to: wire.to.parse().map_err(bad)?,
        value: U256::from_dec_str(&wire.value).ok_or(X402Rejection::InvalidPayload)?,
        valid_after: U256::from_dec_str(&wire.valid_after).ok_or(X402Rejection::InvalidPayload)?,
        valid_before: U256::from_dec_str(&wire.valid_before).ok_or(X402Rejection::InvalidPayload)?,
        nonce: eip712::parse_hex_fixed(&wire.nonce, "nonce").map_err(bad)?,
    })
}

/// The EIP-712 domain of the asset an `exact` requirement names.
pub fn domain_of(requirements: &PaymentRequirements) -> Result<Eip712Domain, X402Rejection> {
    let chain_id = chain_id_of(&requirements.network).ok_or(X402Rejection::InvalidNetwork)?;
    let extra = requirements.asset_extra().ok_or(X402Rejection::InvalidRequirements)?;
    Ok(Eip712Domain {
        name: extra.name,
        version: extra.version,
        chain_id,
        verifying_contract: requirements.asset.parse().map_err(|_| X402Rejection::InvalidRequirements)?,
    })
}

/// Verifies an `exact` EVM payment against what we `offered`, at `now_unix`:
/// the client's `accepted` echo equals the offer (scheme, network, asset, payee, amount); the
/// authorization pays exactly `amount` to `payTo`; `validAfter ≤ now` and `validBefore ≥ now + 6 s`; and
/// the EIP-712 signature recovers to `from`. Checks run cheapest first; the signature is checked last.
pub fn verify_exact(
    accepted: &PaymentRequirements,
    payload: &ExactEvmPayload,
    offered: &PaymentRequirements,
    now_unix: u64,
) -> Result<VerifiedAuthorization, X402Rejection> {
    if offered.scheme != SCHEME_EXACT || accepted.scheme != SCHEME_EXACT {
        return Err(X402Rejection::UnsupportedScheme);
    }
    if accepted.network != offered.network {
        return Err(X402Rejection::InvalidNetwork);
    }
    let domain = domain_of(offered)?;
    if !same_address(&accepted.asset, &offered.asset) {
        return Err(X402Rejection::InvalidRequirements);
    }
    if !same_address(&accepted.pay_to, &offered.pay_to) {
        return Err(X402Rejection::RecipientMismatch);
    }
    if !same_amount(&accepted.amount, &offered.amount) {
        return Err(X402Rejection::ValueMismatch);
    }
    let authorization = parse_authorization(&payload.authorization)?;
    let pay_to: Address = offered.pay_to.parse().map_err(|_| X402Rejection::InvalidRequirements)?;
    if authorization.to != pay_to {
        return Err(X402Rejection::RecipientMismatch);
    }
    if Some(authorization.value) != U256::from_dec_str(&offered.amount) {
        return Err(X402Rejection::ValueMismatch);
    }
    let valid_before = authorization.valid_before.saturating_to_u64();
    if valid_before < now_unix.saturating_add(VALID_BEFORE_MARGIN_SECONDS) {
        return Err(X402Rejection::Expired);
    }
    if authorization.valid_after.saturating_to_u64() > now_unix {
        return Err(X402Rejection::NotYetValid);
    }
    let digest = authorization.signing_digest(&domain);
    let signer =
        eip712::recover_signer(&digest, &payload.signature).map_err(|_| X402Rejection::InvalidSignature)?;
    if signer != authorization.from {
        return Err(X402Rejection::InvalidSignature);
    }
    Ok(VerifiedAuthorization {
        payer: signer,
        nonce: authorization.nonce,
        value: payload.authorization.value.clone(),
        network: offered.network.clone(),
        valid_before,
    })
}

/// 32 random bytes for an EIP-3009 nonce.
pub fn random_nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// Signs a payment for `requirements` the way the x402 clients do (used by tests and the sandbox's
/// demo payer): an authorization from the key's address to `payTo` for exactly `amount`, valid in
/// `[valid_after, valid_before]`, with `nonce`.
pub fn sign_exact_payment(
    key: &SigningKey,
    requirements: &PaymentRequirements,
    resource: Option<ResourceInfo>,
    valid_after: u64,
    valid_before: u64,
    nonce: [u8; 32],
) -> Result<PaymentPayload, X402Rejection> {
    let domain = domain_of(requirements)?;
    let authorization = TransferAuthorization {
        from: Address::from_signing_key(key),
        to: requirements.pay_to.parse().map_err(|_| X402Rejection::InvalidRequirements)?,
        value: U256::from_dec_str(&requirements.amount).ok_or(X402Rejection::InvalidRequirements)?,
        valid_after: U256::from_u64(valid_after),
        valid_before: U256::from_u64(valid_before),
        nonce,
    };
    let signature = eip712::sign_digest(key, &authorization.signing_digest(&domain));
    Ok(PaymentPayload {
        x402_version: 2,
        resource,
        accepted: requirements.clone(),
        payload: ExactEvmPayload {
            signature,
            authorization: AuthorizationWire {
                from: authorization.from.to_string(),
                to: authorization.to.to_string(),
                value: requirements.amount.clone(),
                valid_after: valid_after.to_string(),
                valid_before: valid_before.to_string(),
                nonce: format!("0x{}", hex::encode(nonce)),
            },
        },
        extensions: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600;

    fn payee() -> Address {
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap()
    }

    fn offer() -> PaymentRequirements {
        ExactOffer { network: BASE_SEPOLIA, pay_to: payee(), amount_cents: 1999, max_timeout_seconds: 300 }
            .requirements()
            .unwrap()
    }

    fn payer_key() -> SigningKey {
        SigningKey::from_slice(&[0x11; 32]).unwrap()
    }

    fn signed(requirements: &PaymentRequirements) -> PaymentPayload {
        sign_exact_payment(&payer_key(), requirements, None, NOW - 600, NOW + 300, [0xab; 32]).unwrap()
    }

    #[test]
    fn amounts_convert_cents_to_usdc_atomic_units() {
        assert_eq!(usdc_atomic_from_cents(1999).as_deref(), Some("19990000"));
        assert_eq!(usdc_atomic_from_cents(1).as_deref(), Some("10000"));
        assert_eq!(usdc_atomic_from_cents(0).as_deref(), Some("0"));
        assert_eq!(usdc_atomic_from_cents(-1), None);
        assert_eq!(usdc_atomic_from_cents(i64::MAX), None);
    }

    #[test]
    fn offer_has_the_v2_shape() {
        let value = serde_json::to_value(offer()).unwrap();
        assert_eq!(
            value,
            json!({"scheme": "exact", "network": "eip155:84532", "amount": "19990000",
                   "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                   "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300,
                   "extra": {"name": "USDC", "version": "2"}})
        );
        let required = PaymentRequired {
            x402_version: 2,
            error: Some("payment required".into()),
            resource: ResourceInfo {
                url: "http://127.0.0.1/api/agent/cart/c1/checkout".into(),
                description: None,
                mime_type: None,
            },
            accepts: vec![offer()],
            extensions: None,
        };
        let header = encode_header(&required);
        assert!(!header.contains('-') && !header.contains('_'), "standard base64 alphabet");
        assert_eq!(decode_header::<PaymentRequired>(&header).unwrap(), required);
    }

    #[test]
    fn sign_then_verify_round_trip() {
        let payment = signed(&offer());
        let verified = verify_exact(&payment.accepted, &payment.payload, &offer(), NOW).unwrap();
        assert_eq!(verified.payer, Address::from_signing_key(&payer_key()));
        assert_eq!(verified.nonce, [0xab; 32]);
        assert_eq!(verified.value, "19990000");
        // Through the header, as a client sends it.
        let incoming = parse_payment_headers(Some(&encode_header(&payment)), None).unwrap().unwrap();
        assert_eq!(incoming.version(), 2);
        assert_eq!(incoming.verify(&offer(), NOW), Ok(verified.clone()));
        // The same signature as v1 `X-PAYMENT`.
        let v1 = PaymentPayloadV1 {
            x402_version: 1,
            scheme: "exact".into(),
            network: "base-sepolia".into(),
            payload: payment.payload.clone(),
        };
        let incoming = parse_payment_headers(None, Some(&encode_header(&v1))).unwrap().unwrap();
        assert_eq!(incoming.version(), 1);
        assert_eq!(incoming.verify(&offer(), NOW), Ok(verified));
        let request = incoming.facilitator_request(&offer()).unwrap();
        assert_eq!(request.payment_payload.accepted.network, "eip155:84532");
    }

    #[test]
    fn every_rejection() {
        let offered = offer();
        let payment = signed(&offered);
        let check = |accepted: &PaymentRequirements, payload: &ExactEvmPayload, now: u64| {
            verify_exact(accepted, payload, &offered, now)
        };

        // Wrong amount: a payment signed for another amount, however it is echoed.
        let cheaper = PaymentRequirements { amount: "19980000".into(), ..offered.clone() };
        let underpaid = signed(&cheaper);
        assert_eq!(check(&underpaid.accepted, &underpaid.payload, NOW), Err(X402Rejection::ValueMismatch));
        assert_eq!(check(&offered, &underpaid.payload, NOW), Err(X402Rejection::ValueMismatch));
        // Wrong payee.
        let elsewhere = PaymentRequirements {
            pay_to: "0x0000000000000000000000000000000000000001".into(),
            ..offered.clone()
        };
        let misdirected = signed(&elsewhere);
        assert_eq!(
            check(&misdirected.accepted, &misdirected.payload, NOW),
            Err(X402Rejection::RecipientMismatch)
        );
        assert_eq!(check(&offered, &misdirected.payload, NOW), Err(X402Rejection::RecipientMismatch));
        // Expired, and about to expire.
        assert_eq!(check(&payment.accepted, &payment.payload, NOW + 301), Err(X402Rejection::Expired));
        assert_eq!(check(&payment.accepted, &payment.payload, NOW + 295), Err(X402Rejection::Expired));
        // Not yet valid.
        assert_eq!(check(&payment.accepted, &payment.payload, NOW - 601), Err(X402Rejection::NotYetValid));
        // Bad signature: any signed field changed after signing, or a signature by someone else.
        let mut tampered = payment.payload.clone();
        tampered.authorization.nonce = format!("0x{}", "cd".repeat(32));
        assert_eq!(check(&payment.accepted, &tampered, NOW), Err(X402Rejection::InvalidSignature));
        let mut impostor = payment.payload.clone();
        impostor.authorization.from = "0x857b06519E91e3A54538791bDbb0E22373e36b66".into();
        assert_eq!(check(&payment.accepted, &impostor, NOW), Err(X402Rejection::InvalidSignature));
        let mut garbage = payment.payload.clone();
        garbage.signature = "0x00".into();
        assert_eq!(check(&payment.accepted, &garbage, NOW), Err(X402Rejection::InvalidSignature));
        // Wrong network: signed for Base mainnet, offered on Base Sepolia.
        let mainnet =
            ExactOffer { network: BASE, pay_to: payee(), amount_cents: 1999, max_timeout_seconds: 300 }
                .requirements()
                .unwrap();
        let other_chain = signed(&mainnet);
        assert_eq!(
            check(&other_chain.accepted, &other_chain.payload, NOW),
            Err(X402Rejection::InvalidNetwork)
        );
        // … and echoing our network does not help: the domain (chain id, contract) is in the signature.
        assert_eq!(check(&offered, &other_chain.payload, NOW), Err(X402Rejection::InvalidSignature));
        // Other asset echoed, other scheme.
        let other_asset = PaymentRequirements { asset: BASE.usdc.address.into(), ..offered.clone() };
        assert_eq!(check(&other_asset, &payment.payload, NOW), Err(X402Rejection::InvalidRequirements));
        let upto = PaymentRequirements { scheme: "upto".into(), ..offered.clone() };
        assert_eq!(check(&upto, &payment.payload, NOW), Err(X402Rejection::UnsupportedScheme));
        // Unparseable fields and headers.
        let mut bad = payment.payload.clone();
        bad.authorization.value = "1e6".into();
        assert_eq!(check(&payment.accepted, &bad, NOW), Err(X402Rejection::InvalidPayload));
        assert_eq!(parse_payment_headers(Some("%%%"), None), Err(X402Rejection::InvalidPayload));
        let v1_in_v2 = PaymentPayload { x402_version: 1, ..payment.clone() };
        assert_eq!(
            parse_payment_headers(Some(&encode_header(&v1_in_v2)), None),
            Err(X402Rejection::InvalidVersion)
        );
        assert_eq!(parse_payment_headers(None, None), Ok(None));
        // Requirement without the EIP-712 domain.
        let no_extra = PaymentRequirements { extra: None, ..offered.clone() };
        assert_eq!(
            verify_exact(&no_extra, &payment.payload, &no_extra, NOW),
            Err(X402Rejection::InvalidRequirements)
        );
    }

    #[test]
    fn x402_specification_example_is_an_independent_vector() {
        // The `PaymentPayload` example of the x402 v2 specification (coinbase/x402
        // `specs/x402-specification-v2.md` §5.2.1, repeated in `specs/schemes/exact/scheme_exact_evm.md`).
        // It was produced by the reference implementation, and its signature recovers to `from` under
        // the Base Sepolia USDC domain {USDC, 2, 84532, 0x036C…CF7e}: an EIP-3009 vector we did not sign.
        let example = json!({
            "x402Version": 2,
            "resource": {"url": "https://api.example.com/premium-data", "description": "Access to premium market data", "mimeType": "application/json"},
            "accepted": {"scheme": "exact", "network": "eip155:84532", "amount": "10000", "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                         "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}},
            "payload": {
                "signature": "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
                "authorization": {"from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                                  "value": "10000", "validAfter": "1740672089", "validBefore": "1740672154",
                                  "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}
            },
            "extensions": {}
        });
        let payload: PaymentPayload = serde_json::from_value(example).unwrap();
        let offered = payload.accepted.clone();
        let verified = verify_exact(&payload.accepted, &payload.payload, &offered, 1_740_672_100).unwrap();
        assert_eq!(verified.payer.to_string(), "0x857b06519E91e3A54538791bDbb0E22373e36b66");
        assert_eq!(
            verified.nonce_hex(),
            "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
        );
        // Its window is [1740672089, 1740672154].
        assert_eq!(
            verify_exact(&payload.accepted, &payload.payload, &offered, 1_740_672_088),
            Err(X402Rejection::NotYetValid)
        );
        assert_eq!(
            verify_exact(&payload.accepted, &payload.payload, &offered, 1_740_672_150),
            Err(X402Rejection::Expired)
        );
        // Change one hex digit of `s`: the signature no longer recovers to `from`.
        let mut flipped = payload.payload.clone();
        flipped.signature.replace_range(70..71, "9");
        assert_eq!(
            verify_exact(&payload.accepted, &flipped, &offered, 1_740_672_100),
            Err(X402Rejection::InvalidSignature)
        );
    }
}
