//! Agent keys. Only the keyed hash of a key is stored; see the server's `auth` module for why.

use super::sql::{self, Row};
use kifly_core::scope::Scope;

use super::{DbPool, DbRow, map_err};
use crate::StoreResult;
use crate::model::*;

const SELECT: &str = "SELECT k.id, k.name, k.display_prefix, k.seller_id, s.handle AS seller_handle, k.scopes, k.created_at, k.revoked_at
     FROM api_keys k LEFT JOIN sellers s ON s.id = k.seller_id";

fn from_row(row: &DbRow) -> StoreResult<ApiKey> {
    let scopes: String = row.try_get("scopes").map_err(map_err)?;
    Ok(ApiKey {
        id: row.try_get("id").map_err(map_err)?,
        name: row.try_get("name").map_err(map_err)?,
        display_prefix: row.try_get("display_prefix").map_err(map_err)?,
        seller_id: row.try_get("seller_id").map_err(map_err)?,
        seller_handle: row.try_get("seller_handle").map_err(map_err)?,
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        created_at: row.try_get("created_at").map_err(map_err)?,
        revoked_at: row.try_get("revoked_at").map_err(map_err)?,
    })
}

pub(super) async fn create(
    writer: &DbPool,
    reader: &DbPool,
    key: &NewApiKey,
    now: i64,
) -> StoreResult<ApiKey> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    sql::query(
        "INSERT INTO api_keys (id, name, key_hash, display_prefix, seller_id, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.key_hash)
    .bind(&key.display_prefix)
    .bind(&key.seller_id)
    .bind(scopes.join(","))
    .bind(now)
    .execute(writer)
    .await
    .map_err(map_err)?;
    let row = sql::query(sql::AssertSqlSafe(format!("{SELECT} WHERE k.id = $1")))
        .bind(&key.id)
        .fetch_one(reader)
        .await
        .map_err(map_err)?;
    from_row(&row)
}

pub(super) async fn find_by_hash(pool: &DbPool, key_hash: &str) -> StoreResult<Option<ApiKey>> {
    let row = sql::query(sql::AssertSqlSafe(format!("{SELECT} WHERE k.key_hash = $1")))
        .bind(key_hash)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(pool: &DbPool) -> StoreResult<Vec<ApiKey>> {
    let rows = sql::query(sql::AssertSqlSafe(format!("{SELECT} ORDER BY k.created_at, k.id")))
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn revoke(pool: &DbPool, id: &str, now: i64) -> StoreResult<bool> {
    let exists: Option<String> = sql::query_scalar("SELECT id FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    if exists.is_none() {
        return Ok(false);
    }
    sql::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(true)
}
