//! Platform limits, idempotency records and the audit log.

use super::sql::{self, Row};
use kifly_core::limits::PlatformLimits;

use super::{Conn, DbPool, map_err};
use crate::model::*;
use crate::{StoreError, StoreResult};

pub(super) const LIMITS_SQL: &str =
    "SELECT max_item_quantity, max_cart_total_cents FROM platform_limits WHERE id = 1";

pub(super) async fn get_limits<'e>(pool: impl sql::Executor<'e>) -> StoreResult<PlatformLimits> {
    let row = sql::query(LIMITS_SQL).fetch_one(pool).await.map_err(map_err)?;
    Ok(PlatformLimits {
        max_item_quantity: row.try_get(0).map_err(map_err)?,
        max_cart_total_cents: row.try_get(1).map_err(map_err)?,
    })
}

pub(super) async fn set_limits(pool: &DbPool, limits: &PlatformLimits, now: i64) -> StoreResult<()> {
    sql::query("UPDATE platform_limits SET max_item_quantity = $1, max_cart_total_cents = $2, updated_at = $3 WHERE id = 1")
        .bind(limits.max_item_quantity)
        .bind(limits.max_cart_total_cents)
        .bind(now)
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Claims a scope. Safe under concurrency on both backends: the insert either creates the in-flight
/// marker or does nothing, and a takeover only succeeds if the lease is still expired when it runs.
pub(super) async fn claim_idempotency(
    conn: &mut Conn,
    scope: &IdempotencyScope,
    fingerprint: &str,
    now: i64,
    lease_ms: i64,
) -> StoreResult<ClaimOutcome> {
    // The record that blocked the insert can be released (deleted) before it is read back; then the
    // key is free again and the insert is simply retried.
    for _ in 0..3 {
        if let Some(outcome) = try_claim(conn, scope, fingerprint, now, lease_ms).await? {
            return Ok(outcome);
        }
    }
    Ok(ClaimOutcome::InProgress)
}

/// One claim attempt; `None` when the conflicting record vanished in between.
async fn try_claim(
    conn: &mut Conn,
    scope: &IdempotencyScope,
    fingerprint: &str,
    now: i64,
    lease_ms: i64,
) -> StoreResult<Option<ClaimOutcome>> {
    let claimed = new_claim(scope);
    let inserted = sql::query(
        "INSERT INTO idempotency_records (principal, method, path, idem_key, fingerprint, state, claim_token, lease_expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, 'in_flight', $6, $7, $8)
         ON CONFLICT (principal, method, path, idem_key) DO NOTHING",
    )
    .bind(&scope.principal)
    .bind(&scope.method)
    .bind(&scope.path)
    .bind(&scope.key)
    .bind(fingerprint)
    .bind(&claimed.claim_token)
    .bind(now + lease_ms)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    if inserted.rows_affected() == 1 {
        return Ok(Some(ClaimOutcome::Claimed(claimed)));
    }
    settle_existing(conn, claimed, fingerprint, now, lease_ms).await
}

fn new_claim(scope: &IdempotencyScope) -> IdempotencyClaim {
    IdempotencyClaim { scope: scope.clone(), claim_token: ulid::Ulid::new().to_string() }
}

/// A claim that wrote nothing yet: its record is inserted, finished, with the outcome
/// ([`complete_pending_claim`]). Only where the transaction holding it is the database's only
/// writer (SQLite), so nobody can insert the same scope in between.
pub(super) struct PendingClaim {
    claim: IdempotencyClaim,
    fingerprint: String,
    created_at: i64,
    lease_expires_at: i64,
}

/// Claims a scope inside a transaction that is the database's only writer: reads the scope's record
/// and, if there is none, writes nothing until the outcome is stored ([`PendingClaim`]). Saves writing
/// the record twice (once in flight, once finished) in every cart change.
pub(super) async fn claim_pending(
    conn: &mut Conn,
    scope: &IdempotencyScope,
    fingerprint: &str,
    now: i64,
    lease_ms: i64,
) -> StoreResult<(ClaimOutcome, Option<PendingClaim>)> {
    let claimed = new_claim(scope);
    if let Some(settled) = settle_existing(conn, claimed.clone(), fingerprint, now, lease_ms).await? {
        return Ok((settled, None));
    }
    let pending = PendingClaim {
        claim: claimed.clone(),
        fingerprint: fingerprint.to_string(),
        created_at: now,
        lease_expires_at: now + lease_ms,
    };
    Ok((ClaimOutcome::Claimed(claimed), Some(pending)))
}

/// What an existing record of the scope means for a new claim; `None` when there is no record.
async fn settle_existing(
    conn: &mut Conn,
    claimed: IdempotencyClaim,
    fingerprint: &str,
    now: i64,
    lease_ms: i64,
) -> StoreResult<Option<ClaimOutcome>> {
    let scope = &claimed.scope;
    let Some(row) = sql::query(
        "SELECT fingerprint, state, lease_expires_at, status, response_body FROM idempotency_records
         WHERE principal = $1 AND method = $2 AND path = $3 AND idem_key = $4",
    )
    .bind(&scope.principal)
    .bind(&scope.method)
    .bind(&scope.path)
    .bind(&scope.key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?
    else {
        return Ok(None);
    };
    let stored_fingerprint: String = row.try_get(0).map_err(map_err)?;
    let state: String = row.try_get(1).map_err(map_err)?;
    let lease_expires_at: i64 = row.try_get(2).map_err(map_err)?;
    if stored_fingerprint != fingerprint {
        return Ok(Some(ClaimOutcome::Conflict));
    }
    if state == "done" {
        let status: i64 = row.try_get(3).map_err(map_err)?;
        let body: Vec<u8> = row.try_get(4).map_err(map_err)?;
        let status =
            u16::try_from(status).map_err(|_| StoreError::Other(format!("bad stored status {status}")))?;
        return Ok(Some(ClaimOutcome::Replay(StoredResponse { status, body })));
    }
    if lease_expires_at > now {
        return Ok(Some(ClaimOutcome::InProgress));
    }
    // The previous holder's lease ran out (it crashed or hung): take the key over, unless another
    // request just did.
    let taken = sql::query(
        "UPDATE idempotency_records SET claim_token = $5, lease_expires_at = $6
         WHERE principal = $1 AND method = $2 AND path = $3 AND idem_key = $4
           AND state = 'in_flight' AND lease_expires_at <= $7",
    )
    .bind(&scope.principal)
    .bind(&scope.method)
    .bind(&scope.path)
    .bind(&scope.key)
    .bind(&claimed.claim_token)
    .bind(now + lease_ms)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(Some(if taken.rows_affected() == 1 {
        ClaimOutcome::Claimed(claimed)
    } else {
        ClaimOutcome::InProgress
    }))
}

/// Stores the outcome of a [`PendingClaim`]: its record, inserted finished. Returns `Ok(false)`
/// (writing nothing) when `claim` is not the pending one.
pub(super) async fn complete_pending_claim(
    conn: &mut Conn,
    pending: &PendingClaim,
    claim: &IdempotencyClaim,
    response: &StoredResponse,
) -> StoreResult<bool> {
    if pending.claim != *claim {
        return Ok(false);
    }
    let s = &claim.scope;
    sql::query(
        "INSERT INTO idempotency_records (principal, method, path, idem_key, fingerprint, state, claim_token, lease_expires_at, status, response_body, created_at)
         VALUES ($1, $2, $3, $4, $5, 'done', $6, $7, $8, $9, $10)",
    )
    .bind(&s.principal)
    .bind(&s.method)
    .bind(&s.path)
    .bind(&s.key)
    .bind(&pending.fingerprint)
    .bind(&claim.claim_token)
    .bind(pending.lease_expires_at)
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(pending.created_at)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(true)
}

pub(super) async fn complete_idempotency(
    conn: &mut Conn,
    claim: &IdempotencyClaim,
    response: &StoredResponse,
    _now: i64,
) -> StoreResult<()> {
    let s = &claim.scope;
    let r = sql::query(
        "UPDATE idempotency_records SET state = 'done', status = $6, response_body = $7
         WHERE principal = $1 AND method = $2 AND path = $3 AND idem_key = $4 AND claim_token = $5 AND state = 'in_flight'",
    )
    .bind(&s.principal)
    .bind(&s.method)
    .bind(&s.path)
    .bind(&s.key)
    .bind(&claim.claim_token)
    .bind(i64::from(response.status))
    .bind(&response.body)
    .execute(conn)
    .await
    .map_err(map_err)?;
    if r.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict("idempotency claim lost to another request".into()))
    }
}

pub(super) async fn release_idempotency(pool: &DbPool, claim: &IdempotencyClaim) -> StoreResult<()> {
    let s = &claim.scope;
    sql::query(
        "DELETE FROM idempotency_records
         WHERE principal = $1 AND method = $2 AND path = $3 AND idem_key = $4 AND claim_token = $5 AND state = 'in_flight'",
    )
    .bind(&s.principal)
    .bind(&s.method)
    .bind(&s.path)
    .bind(&s.key)
    .bind(&claim.claim_token)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn purge_idempotency(pool: &DbPool, before: i64) -> StoreResult<u64> {
    let r = sql::query(super::PURGE_IDEMPOTENCY_SQL).bind(before).execute(pool).await.map_err(map_err)?;
    Ok(r.rows_affected())
}

pub(super) async fn insert_audit(conn: &mut Conn, entry: &AuditEntry) -> StoreResult<()> {
    sql::query(
        "INSERT INTO audit_log (id, api_key_id, action, resource_id, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&entry.id)
    .bind(&entry.api_key_id)
    .bind(&entry.action)
    .bind(&entry.resource_id)
    .bind(&entry.metadata)
    .bind(entry.created_at)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Inserts `entries` in one statement; `persistent` keeps it prepared for the next batch of the
/// same size.
pub(super) async fn insert_audit_rows<'e>(
    on: impl sql::Executor<'e>,
    entries: &[AuditEntry],
    persistent: bool,
) -> StoreResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut insert = sql::QueryBuilder::new(
        "INSERT INTO audit_log (id, api_key_id, action, resource_id, metadata, created_at) ",
    );
    insert.push_values(entries, |mut row, entry| {
        row.push_bind(&entry.id)
            .push_bind(&entry.api_key_id)
            .push_bind(&entry.action)
            .push_bind(&entry.resource_id)
            .push_bind(&entry.metadata)
            .push_bind(entry.created_at);
    });
    insert.build().persistent(persistent).execute(on).await.map_err(map_err)?;
    Ok(())
}

pub(super) async fn recent_audit(pool: &DbPool, limit: i64) -> StoreResult<Vec<AuditEntry>> {
    let rows = sql::query(super::RECENT_AUDIT_SQL).bind(limit).fetch_all(pool).await.map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get(0).map_err(map_err)?,
                api_key_id: r.try_get(1).map_err(map_err)?,
                action: r.try_get(2).map_err(map_err)?,
                resource_id: r.try_get(3).map_err(map_err)?,
                metadata: r.try_get(4).map_err(map_err)?,
                created_at: r.try_get(5).map_err(map_err)?,
            })
        })
        .collect()
}
