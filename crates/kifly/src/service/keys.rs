//! Creating agent keys (CLI and demo); listing and revocation are thin store calls.

use kifly_core::ids::{IdKind, new_id};
use kifly_core::scope::Scope;
use kifly_store::{ApiKey, NewApiKey, Store};

use crate::app::now_ms;
use crate::auth::{display_prefix, generate_key, hash_key};

/// Creates a key and returns it with its plaintext, which is never stored and cannot be shown again.
pub async fn create_key(
    store: &dyn Store,
    secret: &str,
    name: &str,
    seller_handle: Option<&str>,
    scopes: Vec<Scope>,
) -> Result<(ApiKey, String), String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err("--name must be 1 to 100 characters".into());
    }
    let seller_id = match seller_handle {
        None => None,
        Some(handle) => Some(
            store
                .get_seller_by_handle(handle)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no seller with handle {handle:?}; import the catalog first"))?
                .id,
        ),
    };
    let plaintext = generate_key();
    let new = NewApiKey {
        id: new_id(IdKind::ApiKey),
        name: name.to_string(),
        key_hash: hash_key(secret.as_bytes(), &plaintext),
        display_prefix: display_prefix(&plaintext),
        seller_id,
        scopes,
    };
    let key = store.create_api_key(&new, now_ms()).await.map_err(|e| e.to_string())?;
    Ok((key, plaintext))
}
