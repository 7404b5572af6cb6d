//! Buyers, one-time codes, buyer tokens, the mail outbox and feedback.
//!
//! The outbox is claimed, not read: a worker takes due rows by setting a lease (`locked_until`) in
//! one statement, so several nodes can send concurrently without sending a mail twice (PostgreSQL
//! skips rows another worker holds; SQLite's single writer serialises the claims).

use super::sql::{self, Row};
use kifly_core::address::ShippingAddress;

use super::{Conn, DbPool, DbRow, OUTBOX_CLAIM_SQL, json_err, map_err};
use crate::StoreResult;
use crate::model::*;

fn buyer_from_row(r: &DbRow) -> StoreResult<Buyer> {
    let address: Option<String> = r.try_get("default_address").map_err(map_err)?;
    Ok(Buyer {
        id: r.try_get("id").map_err(map_err)?,
        email: r.try_get("email").map_err(map_err)?,
        name: r.try_get("name").map_err(map_err)?,
        default_address: address.map(|a| serde_json::from_str(&a)).transpose().map_err(json_err)?,
        verified_at: r.try_get("verified_at").map_err(map_err)?,
        created_at: r.try_get("created_at").map_err(map_err)?,
        updated_at: r.try_get("updated_at").map_err(map_err)?,
    })
}

pub(super) async fn by_email(conn: &mut Conn, email: &str) -> StoreResult<Option<Buyer>> {
    let row = sql::query(
        "SELECT id, email, name, default_address, verified_at, created_at, updated_at FROM buyers WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(conn)
    .await
    .map_err(map_err)?;
    row.as_ref().map(buyer_from_row).transpose()
}

/// The buyer behind a live (not revoked) token.
pub(super) async fn by_token_hash(pool: &DbPool, token_hash: &str) -> StoreResult<Option<Buyer>> {
    let row = sql::query(
        "SELECT b.id, b.email, b.name, b.default_address, b.verified_at, b.created_at, b.updated_at
         FROM buyer_tokens t JOIN buyers b ON b.id = t.buyer_id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    row.as_ref().map(buyer_from_row).transpose()
}

/// Creates the buyer unless the e-mail address has one already; `false` then.
pub(super) async fn insert(
    conn: &mut Conn,
    id: &str,
    email: &str,
    name: &str,
    now: i64,
) -> StoreResult<bool> {
    let r = sql::query(
        "INSERT INTO buyers (id, email, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(id)
    .bind(email)
    .bind(name)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn mark_verified(conn: &mut Conn, buyer_id: &str, now: i64) -> StoreResult<()> {
    sql::query("UPDATE buyers SET verified_at = COALESCE(verified_at, $2), updated_at = $2 WHERE id = $1")
        .bind(buyer_id)
        .bind(now)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(super) async fn set_address(
    conn: &mut Conn,
    buyer_id: &str,
    address: &ShippingAddress,
    now: i64,
) -> StoreResult<()> {
    let json = serde_json::to_string(address).map_err(json_err)?;
    sql::query("UPDATE buyers SET default_address = $2, updated_at = $3 WHERE id = $1")
        .bind(buyer_id)
        .bind(json)
        .bind(now)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Replaces the e-mail address's code (a new code resets the attempts).
pub(super) async fn set_code(
    conn: &mut Conn,
    email: &str,
    code_hash: &str,
    expires_at: i64,
    now: i64,
) -> StoreResult<()> {
    sql::query(
        "INSERT INTO buyer_codes (email, code_hash, attempts, expires_at, created_at) VALUES ($1, $2, 0, $3, $4)
         ON CONFLICT (email) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0,
             expires_at = excluded.expires_at, created_at = excluded.created_at",
    )
    .bind(email)
    .bind(code_hash)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Counts one verification attempt and returns the code as it is after counting.
pub(super) async fn attempt_code(conn: &mut Conn, email: &str) -> StoreResult<Option<BuyerCode>> {
    let row = sql::query(
        "UPDATE buyer_codes SET attempts = attempts + 1 WHERE email = $1
         RETURNING email, code_hash, attempts, expires_at",
    )
    .bind(email)
    .fetch_optional(conn)
    .await
    .map_err(map_err)?;
    row.map(|r| {
        Ok(BuyerCode {
            email: r.try_get("email").map_err(map_err)?,
            code_hash: r.try_get("code_hash").map_err(map_err)?,
            attempts: r.try_get("attempts").map_err(map_err)?,
            expires_at: r.try_get("expires_at").map_err(map_err)?,
        })
    })
    .transpose()
}

pub(super) async fn delete_code(conn: &mut Conn, email: &str) -> StoreResult<()> {
    sql::query("DELETE FROM buyer_codes WHERE email = $1")
        .bind(email)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(super) async fn insert_token(
    conn: &mut Conn,
    id: &str,
    token_hash: &str,
    buyer_id: &str,
    api_key_id: &str,
    now: i64,
) -> StoreResult<()> {
    sql::query(
        "INSERT INTO buyer_tokens (id, token_hash, buyer_id, api_key_id, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(token_hash)
    .bind(buyer_id)
    .bind(api_key_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Revokes every token of a buyer; returns how many were live.
pub(super) async fn revoke_tokens(pool: &DbPool, buyer_email: &str, now: i64) -> StoreResult<u64> {
    let r = sql::query(
        "UPDATE buyer_tokens SET revoked_at = $2
         WHERE revoked_at IS NULL AND buyer_id IN (SELECT id FROM buyers WHERE email = $1)",
    )
    .bind(buyer_email)
    .bind(now)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected())
}

pub(super) async fn enqueue_mail(conn: &mut Conn, mail: &NewMail, now: i64) -> StoreResult<()> {
    sql::query(
        "INSERT INTO outbox (id, recipient, subject, body, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
    )
    .bind(&mail.id)
    .bind(&mail.recipient)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

fn mail_from_row(r: &DbRow) -> StoreResult<OutboxMail> {
    Ok(OutboxMail {
        id: r.try_get("id").map_err(map_err)?,
        recipient: r.try_get("recipient").map_err(map_err)?,
        subject: r.try_get("subject").map_err(map_err)?,
        body: r.try_get("body").map_err(map_err)?,
        attempts: r.try_get("attempts").map_err(map_err)?,
        status: r.try_get("status").map_err(map_err)?,
        last_error: r.try_get("last_error").map_err(map_err)?,
    })
}

/// Claims up to `limit` due mails for `lease_ms`.
pub(super) async fn claim_mail(
    pool: &DbPool,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> StoreResult<Vec<OutboxMail>> {
    let rows = sql::query(OUTBOX_CLAIM_SQL)
        .bind(now)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter().map(mail_from_row).collect()
}

/// Records a sending attempt: sent, retry at `retry_at`, or (neither) failed for good.
pub(super) async fn finish_mail(
    pool: &DbPool,
    id: &str,
    sent: bool,
    retry_at: Option<i64>,
    error: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    let (status, next) = match (sent, retry_at) {
        (true, _) => ("sent", now),
        (false, Some(at)) => ("pending", at),
        (false, None) => ("failed", now),
    };
    sql::query(
        "UPDATE outbox SET status = $2, next_attempt_at = $3, last_error = $4, locked_until = NULL,
             sent_at = CASE WHEN $2 = 'sent' THEN $5 ELSE sent_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(next)
    .bind(error)
    .bind(now)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn list_mail(pool: &DbPool, limit: i64) -> StoreResult<Vec<OutboxMail>> {
    let rows = sql::query(
        "SELECT id, recipient, subject, body, attempts, status, last_error FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter().map(mail_from_row).collect()
}

pub(super) async fn insert_feedback(conn: &mut Conn, entry: &FeedbackEntry) -> StoreResult<()> {
    sql::query(
        "INSERT INTO feedback (id, kind, api_key_id, buyer_id, category, severity, content, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&entry.id)
    .bind(&entry.kind)
    .bind(&entry.api_key_id)
    .bind(&entry.buyer_id)
    .bind(&entry.category)
    .bind(&entry.severity)
    .bind(&entry.content)
    .bind(entry.created_at)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn list_feedback(pool: &DbPool, limit: i64) -> StoreResult<Vec<FeedbackEntry>> {
    let rows = sql::query(
        "SELECT id, kind, api_key_id, buyer_id, category, severity, content, created_at FROM feedback
         ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(FeedbackEntry {
                id: r.try_get("id").map_err(map_err)?,
                kind: r.try_get("kind").map_err(map_err)?,
                api_key_id: r.try_get("api_key_id").map_err(map_err)?,
                buyer_id: r.try_get("buyer_id").map_err(map_err)?,
                category: r.try_get("category").map_err(map_err)?,
                severity: r.try_get("severity").map_err(map_err)?,
                content: r.try_get("content").map_err(map_err)?,
                created_at: r.try_get("created_at").map_err(map_err)?,
            })
        })
        .collect()
}
