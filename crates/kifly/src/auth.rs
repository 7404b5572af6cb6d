//! Agent API keys and the caller they identify.
//!
//! A key is `kfa_live_` followed by 40 random base62 characters (~238 bits). Only a keyed hash —
//! HMAC-SHA256 under the server secret — is stored, plus a short display prefix. Keyed rather than
//! plain SHA-256 so that a leaked database alone cannot be used to test guessed keys offline; a hash
//! rather than encryption because the server never needs the plaintext again. Lookup is by hash
//! equality in the database (an index probe on a value the attacker cannot compute), so no timing
//! side channel on the secret exists; the display prefix is never used for lookup.
//!
//! Resolution happens once per request in [`resolve`] (called by the HTTP edge middleware), so the
//! rate limiter can key on the token and handlers read the result through the [`Caller`] extractor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use hmac::{Hmac, KeyInit, Mac};
use kifly_core::scope::Scope;
use kifly_store::{ApiKey, Store};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::Sha256;

use crate::app::App;
use crate::error::ApiError;

pub const KEY_PREFIX: &str = "kfa_live_";
const KEY_RANDOM_CHARS: usize = 40;
/// How long a looked-up key is trusted before the database is asked again. Revocation therefore
/// reaches every node within this time (the contract allows 5 s).
const KEY_CACHE_TTL: Duration = Duration::from_secs(2);

/// A fresh plaintext agent key.
pub fn generate_key() -> String {
    let random: String =
        rand::rng().sample_iter(&Alphanumeric).take(KEY_RANDOM_CHARS).map(char::from).collect();
    format!("{KEY_PREFIX}{random}")
}

/// The keyed hash stored for a key, hex-encoded.
pub fn hash_key(secret: &[u8], key: &str) -> String {
    KeyHasher::new(secret).hash(key)
}

/// HMAC-SHA256 keyed with the server secret, set up once: keying costs two SHA-256 blocks, as much
/// again as hashing a key, and every request hashes the key it presents.
#[derive(Clone)]
pub struct KeyHasher(Hmac<Sha256>);

impl KeyHasher {
    pub fn new(secret: &[u8]) -> KeyHasher {
        KeyHasher(<Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length")) // ok: infallible for HMAC
    }

    /// [`hash_key`] with this hasher's secret.
    pub fn hash(&self, key: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(key.as_bytes());
        // `hex::encode` collects char by char; this runs on every request. (Neither step can fail
        // for 32 bytes; an empty hash would match no stored key.)
        let mut text = [0u8; 64];
        match hex::encode_to_slice(mac.finalize().into_bytes(), &mut text) {
            Ok(()) => String::from_utf8(text.to_vec()).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// The part of a key shown in listings (`kfa_live_AbC1…`).
pub fn display_prefix(key: &str) -> String {
    format!("{}…", &key[..(KEY_PREFIX.len() + 4).min(key.len())])
}

/// The authenticated agent behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Shared with the key cache: resolving a caller copies nothing.
    pub key: Arc<ApiKey>,
}

impl Caller {
    pub fn id(&self) -> &str {
        &self.key.id
    }

    /// The seller a seller-scoped key is bound to.
    pub fn seller_id(&self) -> Option<&str> {
        self.key.seller_id.as_deref()
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::scope_insufficient(scope.as_str()))
        }
    }
}

/// What [`resolve`] found out about the request's credentials.
#[derive(Debug, Clone)]
pub enum AuthState {
    Authenticated(Caller),
    Missing,
    Invalid,
    Revoked,
}

/// Reads the presented key: `Authorization: Bearer …` first, then `X-Api-Key` (which real MPP
/// clients need, since they replace `Authorization` with their `Payment` credential).
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|v| v.trim().to_string());
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string()))
}

/// A cached lookup: when it was made, and the key found (or not).
type CachedLookup = (Instant, Option<Arc<ApiKey>>);

/// A short-lived cache of key lookups (including misses), so hot paths skip the database.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, CachedLookup>>,
}

impl KeyCache {
    const MAX_ENTRIES: usize = 10_000;

    pub async fn lookup(
        &self,
        store: &Arc<dyn Store>,
        key_hash: &str,
    ) -> Result<Option<Arc<ApiKey>>, ApiError> {
        if let Some((at, hit)) = self.entries.lock().map_err(|_| ApiError::internal(None))?.get(key_hash)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(hit.clone());
        }
        let found = store.find_api_key_by_hash(key_hash).await?.map(Arc::new);
        let mut entries = self.entries.lock().map_err(|_| ApiError::internal(None))?;
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key_hash.to_string(), (Instant::now(), found.clone()));
        Ok(found)
    }
}

/// Resolves the caller's key of an agent API request ([`crate::http::is_agent_api`]) and stores an
/// [`AuthState`] in the request. A failed lookup is the error to answer with.
pub async fn resolve(app: &App, request: &mut Request) -> Result<(), ApiError> {
    let state = match presented_key(request.headers()) {
        None => AuthState::Missing,
        Some(key) if !key.starts_with(KEY_PREFIX) => AuthState::Invalid,
        Some(key) => match app.keys.lookup(&app.store, &app.key_hasher.hash(&key)).await? {
            Some(found) if found.revoked_at.is_some() => AuthState::Revoked,
            Some(found) => AuthState::Authenticated(Caller { key: found }),
            None => AuthState::Invalid,
        },
    };
    request.extensions_mut().insert(state);
    Ok(())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<AuthState>() {
            Some(AuthState::Authenticated(caller)) => Ok(caller.clone()),
            Some(AuthState::Revoked) => Err(ApiError::api_key_revoked()),
            _ => Err(ApiError::invalid_api_key()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_contract_shape_and_hash_stably() {
        let key = generate_key();
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(key.len(), KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        assert!(key[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(hash_key(b"s", &key), hash_key(b"s", &key));
        assert_ne!(hash_key(b"s", &key), hash_key(b"t", &key));
        assert!(display_prefix(&key).len() < key.len());
    }

    #[test]
    fn the_key_hash_is_lower_case_hex_hmac_sha256() {
        // RFC 4231, test case 2. Stored key hashes depend on this exact text.
        assert_eq!(
            hash_key(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let hasher = KeyHasher::new(b"Jefe");
        for text in ["what do ya want for nothing?", "kfa_live_x", ""] {
            assert_eq!(hasher.hash(text), hash_key(b"Jefe", text), "a reused hasher must not carry state");
        }
    }
}
