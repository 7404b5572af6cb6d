//! x402 wire types, v2 (current) and v1 (legacy), with camelCase field names as on the wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `extra` of an `exact` EVM requirement: the token's EIP-712 domain name and version. Always sent:
/// clients that miss it fall back to a built-in asset table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetExtra {
    /// EIP-712 domain name (`USDC`, `USD Coin`).
    pub name: String,
    /// EIP-712 domain version (`2`).
    pub version: String,
}

/// One way to pay (v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// `exact`.
    pub scheme: String,
    /// CAIP-2 network (`eip155:8453`).
    pub network: String,
    /// Atomic units, decimal string.
    pub amount: String,
    /// Token contract address.
    pub asset: String,
    /// Payee address.
    pub pay_to: String,
    /// How long the client may take to pay.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data; `{name, version}` for EIP-3009 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl PaymentRequirements {
    /// `extra` as the token's EIP-712 name/version, when present.
    pub fn asset_extra(&self) -> Option<AssetExtra> {
        serde_json::from_value(self.extra.clone()?).ok()
    }
}

/// What is being paid for (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The resource URL.
    pub url: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Response media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The `PAYMENT-REQUIRED` document (v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: u32,
    /// Why payment is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource.
    pub resource: ResourceInfo,
    /// Accepted ways to pay.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

/// The EIP-3009 authorization as sent on the wire (decimal strings, hex nonce).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationWire {
    /// Payer address.
    pub from: String,
    /// Payee address.
    pub to: String,
    /// Atomic units.
    pub value: String,
    /// Unix seconds.
    pub valid_after: String,
    /// Unix seconds.
    pub valid_before: String,
    /// `0x` + 64 hex digits.
    pub nonce: String,
}

/// The `exact` EVM payload: signature plus the authorization it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    /// `0x` + 130 hex digits (`r ‖ s ‖ v`).
    pub signature: String,
    /// The signed authorization.
    pub authorization: AuthorizationWire,
}

/// The `PAYMENT-SIGNATURE` document (v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// 2.
    pub x402_version: u32,
    /// The resource, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The requirement the client chose, echoed.
    pub accepted: PaymentRequirements,
    /// The signed payment.
    pub payload: ExactEvmPayload,
    /// Extensions (e.g. `payment-identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

/// One way to pay (v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    /// `exact`.
    pub scheme: String,
    /// Legacy network name (`base-sepolia`).
    pub network: String,
    /// Atomic units.
    pub max_amount_required: String,
    /// The resource URL.
    pub resource: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Response media type.
    #[serde(default)]
    pub mime_type: String,
    /// Payee.
    pub pay_to: String,
    /// Timeout.
    pub max_timeout_seconds: u64,
    /// Token contract.
    pub asset: String,
    /// `{name, version}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// The v1 402 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    /// 1.
    pub x402_version: u32,
    /// Why payment is required.
    pub error: String,
    /// Accepted ways to pay.
    pub accepts: Vec<PaymentRequirementsV1>,
}

/// The `X-PAYMENT` document (v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1 {
    /// 1.
    pub x402_version: u32,
    /// `exact`.
    pub scheme: String,
    /// Legacy network name.
    pub network: String,
    /// The signed payment.
    pub payload: ExactEvmPayload,
}

/// A facilitator's `/verify` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment is valid.
    pub is_valid: bool,
    /// x402 error code when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// A facilitator's `/settle` answer, also the `PAYMENT-RESPONSE` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the transfer was executed.
    pub success: bool,
    /// x402 error code when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Transaction hash; empty on failure.
    #[serde(default)]
    pub transaction: String,
    /// CAIP-2 network.
    #[serde(default)]
    pub network: String,
    /// Settled amount, atomic units (newer facilitators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// The body of `POST /verify` and `POST /settle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    /// Protocol version of the payload (2; v1 payloads are normalized to v2 before this).
    pub x402_version: u32,
    /// The client's payment.
    pub payment_payload: PaymentPayload,
    /// What the resource server requires.
    pub payment_requirements: PaymentRequirements,
}

/// One scheme/network pair a facilitator supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// Protocol version.
    pub x402_version: u32,
    /// `exact`.
    pub scheme: String,
    /// CAIP-2 network.
    pub network: String,
    /// Scheme data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// A facilitator's `GET /supported` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SupportedResponse {
    /// Supported kinds.
    pub kinds: Vec<SupportedKind>,
    /// Supported extensions.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Signer addresses per CAIP-2 family (`{"eip155:*": ["0x…"]}`).
    #[serde(default)]
    pub signers: serde_json::Map<String, Value>,
}
