//! EIP-712 typed-data hashing for EIP-3009 `TransferWithAuthorization`, secp256k1 signing and signer
//! recovery — the cryptography behind x402's `exact` scheme on EVM.
//!
//! digest = keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct(message)), with
//! domainSeparator = hashStruct(EIP712Domain{name, version, chainId, verifyingContract}) and
//! hashStruct(s) = keccak256(typeHash ‖ encodeData(s)), every field encoded as one 32-byte word
//! (addresses and integers left-padded, `string` fields replaced by their keccak256).
//!
//! Recovery rejects high-`s` signatures (EIP-2) like the USDC contract's `ecrecover` wrapper does, so a
//! signature we accept is one the token contract would accept too.

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

/// `keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")`.
const DOMAIN_TYPE: &str =
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

/// The EIP-3009 struct type.
pub const TRANSFER_WITH_AUTHORIZATION_TYPE: &str = "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

/// keccak256 of `bytes`.
pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

/// A 20-byte EVM address. Parses with or without `0x`, in any case (the EIP-55 checksum is not
/// enforced, as facilitators compare addresses case-insensitively); displays checksummed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The address of a public key: the last 20 bytes of keccak256 of its uncompressed coordinates.
    pub fn from_verifying_key(key: &VerifyingKey) -> Self {
        let point = key.to_sec1_point(false);
        let hash = keccak256(&point.as_bytes()[1..]);
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&hash[12..]);
        Self(bytes)
    }

    /// The address controlled by a private key.
    pub fn from_signing_key(key: &SigningKey) -> Self {
        Self::from_verifying_key(key.verifying_key())
    }

    /// The address as one left-padded 32-byte ABI word.
    pub fn to_word(self) -> [u8; 32] {
        let mut word = [0u8; 32];
        word[12..].copy_from_slice(&self.0);
        word
    }

    /// Lower-case `0x…` form.
    pub fn to_lower_hex(self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

/// The error for unparseable hex values (addresses, nonces, signatures).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0}")]
pub struct HexError(pub &'static str);

impl FromStr for Address {
    type Err = HexError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(parse_hex_fixed(text, "address")?))
    }
}

impl fmt::Display for Address {
    /// EIP-55 mixed-case checksum encoding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (index, c) in lower.chars().enumerate() {
            let nibble = (hash[index / 2] >> (if index % 2 == 0 { 4 } else { 0 })) & 0x0f;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses `0x`-prefixed (or bare) hex of exactly `N` bytes.
pub fn parse_hex_fixed<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], HexError> {
    let digits =
        text.trim().strip_prefix("0x").or_else(|| text.trim().strip_prefix("0X")).unwrap_or(text.trim());
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|_| HexError(what))?;
    Ok(out)
}

/// A `uint256` as 32 big-endian bytes, parsed from the decimal strings x402 uses for amounts and times.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct U256(pub [u8; 32]);

impl U256 {
    /// Parses a decimal string (digits only, no sign, no leading `+`); `None` on overflow or bad input.
    pub fn from_dec_str(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 78 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        for digit in text.bytes().map(|b| u32::from(b - b'0')) {
            // bytes = bytes * 10 + digit, big-endian, overflow out of the top byte is an error.
            let mut carry = digit;
            for byte in bytes.iter_mut().rev() {
                let value = u32::from(*byte) * 10 + carry;
                *byte = (value & 0xff) as u8;
                carry = value >> 8;
            }
            if carry != 0 {
                return None;
            }
        }
        Some(Self(bytes))
    }

    /// From a `u64`.
    pub fn from_u64(value: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[24..].copy_from_slice(&value.to_be_bytes());
        Self(bytes)
    }

    /// The value as `u64`, or `u64::MAX` when larger.
    pub fn saturating_to_u64(&self) -> u64 {
        if self.0[..24].iter().any(|&b| b != 0) {
            return u64::MAX;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.0[24..]);
        u64::from_be_bytes(low)
    }
}

impl fmt::Debug for U256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U256(0x{})", hex::encode(self.0))
    }
}

/// The EIP-712 domain of an EIP-3009 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip712Domain {
    /// Token name in the domain (`USDC` on Base Sepolia, `USD Coin` on Base).
    pub name: String,
    /// Domain version (`2` for USDC).
    pub version: String,
    /// EVM chain id (from the CAIP-2 network).
    pub chain_id: u64,
    /// The token contract.
    pub verifying_contract: Address,
}

impl Eip712Domain {
    /// `hashStruct(EIP712Domain)`.
    pub fn separator(&self) -> [u8; 32] {
        let mut encoded = Vec::with_capacity(5 * 32);
        encoded.extend_from_slice(&keccak256(DOMAIN_TYPE.as_bytes()));
        encoded.extend_from_slice(&keccak256(self.name.as_bytes()));
        encoded.extend_from_slice(&keccak256(self.version.as_bytes()));
        encoded.extend_from_slice(&U256::from_u64(self.chain_id).0);
        encoded.extend_from_slice(&self.verifying_contract.to_word());
        keccak256(&encoded)
    }
}

/// The signed message of EIP-3009 `transferWithAuthorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferAuthorization {
    /// Payer.
    pub from: Address,
    /// Payee.
    pub to: Address,
    /// Amount in atomic units.
    pub value: U256,
    /// Valid strictly after this unix time.
    pub valid_after: U256,
    /// Valid strictly before this unix time.
    pub valid_before: U256,
    /// 32 random bytes, single use per payer on the token contract.
    pub nonce: [u8; 32],
}

impl TransferAuthorization {
    /// `hashStruct(TransferWithAuthorization)`.
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut encoded = Vec::with_capacity(7 * 32);
        encoded.extend_from_slice(&keccak256(TRANSFER_WITH_AUTHORIZATION_TYPE.as_bytes()));
        encoded.extend_from_slice(&self.from.to_word());
        encoded.extend_from_slice(&self.to.to_word());
        encoded.extend_from_slice(&self.value.0);
        encoded.extend_from_slice(&self.valid_after.0);
        encoded.extend_from_slice(&self.valid_before.0);
        encoded.extend_from_slice(&self.nonce);
        keccak256(&encoded)
    }

    /// The digest a wallet signs for this authorization in `domain`.
    pub fn signing_digest(&self, domain: &Eip712Domain) -> [u8; 32] {
        typed_data_digest(&domain.separator(), &self.struct_hash())
    }
}

/// `keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ structHash)`.
pub fn typed_data_digest(domain_separator: &[u8; 32], struct_hash: &[u8; 32]) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(66);
    bytes.extend_from_slice(&[0x19, 0x01]);
    bytes.extend_from_slice(domain_separator);
    bytes.extend_from_slice(struct_hash);
    keccak256(&bytes)
}

/// Why a signature could not be recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 65 bytes of hex (`r ‖ s ‖ v`).
    #[error("signature must be 65 bytes of hex")]
    Encoding,
    /// `v` is not 0, 1, 27 or 28.
    #[error("invalid recovery id")]
    RecoveryId,
    /// `s` is in the upper half of the curve order (malleable form, refused by EIP-2).
    #[error("non-canonical (high-s) signature")]
    HighS,
    /// `r`/`s` out of range, or no key recovers.
    #[error("signature does not recover to a public key")]
    Unrecoverable,
}

/// Recovers the address that signed `digest` with a 65-byte `r ‖ s ‖ v` signature (hex, `0x` optional).
pub fn recover_signer(digest: &[u8; 32], signature_hex: &str) -> Result<Address, SignatureError> {
    let bytes: [u8; 65] =
        parse_hex_fixed(signature_hex, "signature").map_err(|_| SignatureError::Encoding)?;
    let v = match bytes[64] {
        0 | 27 => 0,
        1 | 28 => 1,
        _ => return Err(SignatureError::RecoveryId),
    };
    let signature = Signature::from_slice(&bytes[..64]).map_err(|_| SignatureError::Unrecoverable)?;
    if signature.normalize_s() != signature {
        return Err(SignatureError::HighS);
    }
    let recovery_id = RecoveryId::from_byte(v).ok_or(SignatureError::RecoveryId)?;
    let key = VerifyingKey::recover_from_prehash(digest, &signature, recovery_id)
        .map_err(|_| SignatureError::Unrecoverable)?;
    Ok(Address::from_verifying_key(&key))
}

/// Signs `digest` and returns `0x`-hex `r ‖ s ‖ v` with `v` ∈ {27, 28}, as Ethereum wallets do
/// (deterministic RFC 6979 nonce, low-`s`).
pub fn sign_digest(key: &SigningKey, digest: &[u8; 32]) -> String {
    let (signature, recovery_id) = key.sign_prehash_recoverable(digest);
    let mut bytes = Vec::with_capacity(65);
    bytes.extend_from_slice(&signature.to_bytes());
    bytes.push(27 + recovery_id.to_byte());
    format!("0x{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(text: &str) -> [u8; 32] {
        parse_hex_fixed(text, "test").unwrap()
    }

    /// The worked example of the EIP-712 specification ("Ether Mail"), also used by MetaMask's
    /// eth-sig-util tests: domain {name "Ether Mail", version "1", chainId 1, verifyingContract
    /// 0xCcCC…cccC}, signed with keccak256("cow"). The published values are the domain separator, the
    /// digest and the signature; this checks our domain hashing, digest and recovery against them.
    #[test]
    fn eip712_mail_example_from_the_specification() {
        let domain = Eip712Domain {
            name: "Ether Mail".into(),
            version: "1".into(),
            chain_id: 1,
            verifying_contract: "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC".parse().unwrap(),
        };
        assert_eq!(
            domain.separator(),
            hex32("f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f")
        );

        let person = |name: &str, wallet: &str| {
            let mut encoded = keccak256(b"Person(string name,address wallet)").to_vec();
            encoded.extend_from_slice(&keccak256(name.as_bytes()));
            encoded.extend_from_slice(&wallet.parse::<Address>().unwrap().to_word());
            keccak256(&encoded)
        };
        let mail_type = b"Mail(Person from,Person to,string contents)Person(string name,address wallet)";
        assert_eq!(
            keccak256(mail_type),
            hex32("a0cedeb2dc280ba39b857546d74f5549c3a1d7bdc2dd96bf881f76108e23dac2")
        );
        let mut encoded = keccak256(mail_type).to_vec();
        encoded.extend_from_slice(&person("Cow", "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"));
        encoded.extend_from_slice(&person("Bob", "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"));
        encoded.extend_from_slice(&keccak256(b"Hello, Bob!"));
        let struct_hash = keccak256(&encoded);
        assert_eq!(struct_hash, hex32("c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"));
        let digest = typed_data_digest(&domain.separator(), &struct_hash);
        assert_eq!(digest, hex32("be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"));

        let cow = SigningKey::from_slice(&keccak256(b"cow")).unwrap();
        let cow_address: Address = "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826".parse().unwrap();
        assert_eq!(Address::from_signing_key(&cow), cow_address);
        let published = "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b915621c";
        assert_eq!(recover_signer(&digest, published), Ok(cow_address));
        // RFC 6979 is deterministic, so our signer reproduces the published signature byte for byte.
        assert_eq!(sign_digest(&cow, &digest), published);
    }

    #[test]
    fn transfer_with_authorization_typehash_matches_the_usdc_contract() {
        // FiatTokenV2 (USDC) `TRANSFER_WITH_AUTHORIZATION_TYPEHASH`.
        assert_eq!(
            keccak256(TRANSFER_WITH_AUTHORIZATION_TYPE.as_bytes()),
            hex32("7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267")
        );
    }

    #[test]
    fn addresses_print_with_the_eip55_checksum() {
        // Examples from EIP-55.
        for checksummed in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let address: Address = checksummed.to_lowercase().parse().unwrap();
            assert_eq!(address.to_string(), checksummed);
        }
        assert!("0x1234".parse::<Address>().is_err());
    }

    #[test]
    fn u256_parses_decimal_strings() {
        assert_eq!(U256::from_dec_str("10000"), Some(U256::from_u64(10_000)));
        assert_eq!(U256::from_dec_str("18446744073709551616").unwrap().saturating_to_u64(), u64::MAX);
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(U256::from_dec_str(max), Some(U256([0xff; 32])));
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert_eq!(U256::from_dec_str(over), None);
        for bad in ["", "-1", "1.5", "0x10", " 1"] {
            assert_eq!(U256::from_dec_str(bad), None, "{bad}");
        }
    }

    #[test]
    fn recovery_rejects_malformed_and_high_s_signatures() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let digest = keccak256(b"message");
        let signature = sign_digest(&key, &digest);
        assert_eq!(recover_signer(&digest, &signature), Ok(Address::from_signing_key(&key)));
        assert_eq!(recover_signer(&digest, "0x1234"), Err(SignatureError::Encoding));
        let mut bytes = hex::decode(&signature[2..]).unwrap();
        bytes[64] = 5;
        assert_eq!(recover_signer(&digest, &hex::encode(&bytes)), Err(SignatureError::RecoveryId));
        // The malleable twin (n - s, flipped v) recovers the same key but is refused.
        let order = hex32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
        let mut high_s = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let diff = i16::from(order[i]) - i16::from(bytes[32 + i]) - borrow;
            high_s[i] = diff.rem_euclid(256) as u8;
            borrow = i16::from(diff < 0);
        }
        bytes[32..64].copy_from_slice(&high_s);
        bytes[64] = if signature.ends_with("1b") { 28 } else { 27 };
        assert_eq!(recover_signer(&digest, &hex::encode(&bytes)), Err(SignatureError::HighS));
    }
}
