//! Exactly-once mutations: the `Idempotency-Key` contract of SPEC §6.
//!
//! A request is scoped by (token, method, path, key) and fingerprinted by the SHA-256 of its canonical
//! JSON body (object keys sorted, no insignificant whitespace; array order and null-vs-absent count).
//! Two ways to run an operation exactly once:
//!
//! - [`run_once`], for operations that only touch the database (every cart change): the claim, the
//!   business write and the stored outcome share **one transaction**, run as one write job
//!   ([`kifly_store::Store::run_write`]: on SQLite, queued jobs run back to back and commit
//!   together, so the operation must own what it captures). A finished scope with the same
//!   fingerprint is replayed byte for byte (`Idempotent-Replayed: true`); a different fingerprint is
//!   `409 idempotency_conflict`. A concurrent request with the same key waits for the first one's
//!   transaction (the single SQLite writer, or PostgreSQL's unique index) and then replays it. A crash
//!   before commit leaves nothing; after commit, the retry replays.
//! - [`run_once_leased_steps`], for operations that call another service while they run (checkout):
//!   the claim commits first as an in-flight marker with a lease, so the provider call happens outside
//!   any database transaction. Meanwhile a retry gets `409 idempotency_in_progress` with `Retry-After: 1`;
//!   if the request crashes, its retry takes the key over once the lease has run out, and the stalled
//!   request can no longer store its outcome (its transaction is rolled back): only one ever commits.
//!
//! Either way, final outcomes (2xx, and deterministic 400/403/404/409/422) are stored with the
//! business write; outcomes a retry may change (402 challenges, 409 `cart_locked`, 429, 5xx) are not,
//! so the retry runs again.
//!
//! [`run_once`] is the core shared by both front ends: REST routes reach it through the
//! [`Idempotent`] extractor (scope = key id, HTTP method, path, `Idempotency-Key`), MCP tools with
//! their optional `idempotency_key` argument (scope = key id, `MCP`, tool name, that key).

use std::future::Future;
use std::pin::Pin;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kifly_store::{
    ClaimOutcome, IdempotencyClaim, IdempotencyScope, StoreError, StoreTx, StoredResponse, WriteEnd,
};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::app::{App, now_ms};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::read_json_body;

/// How long an in-flight claim blocks its key before a retry may take it over.
pub const LEASE_MS: i64 = 60_000;
/// Finished records are kept at least this long (the contract asks for ≥ 24 h).
pub const RETENTION_MS: i64 = 25 * 60 * 60 * 1000;

/// The future an idempotent operation returns: it borrows the transaction for its lifetime, and
/// yields the status and the rendered body ([`crate::service::render`]).
pub type TxFuture<'a> = Pin<Box<dyn Future<Output = ApiResult<(StatusCode, Box<RawValue>)>> + Send + 'a>>;

/// A mutating request's idempotency inputs and its JSON body (`Value::Null` when empty).
pub struct Idempotent {
    pub key: String,
    pub method: String,
    pub path: String,
    pub fingerprint: String,
    pub body: Value,
}

/// Serialises `value` canonically: object keys sorted at every depth (by bytes), no whitespace.
/// Not `kifly_payments`' RFC 8785 form (keys by UTF-16 code units, numbers as ECMAScript prints
/// them): stored fingerprints were made with this one, and switching would turn retries of those
/// requests into conflicts.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    // Only serde_json's output and ASCII punctuation went in.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes strings and scalars with serde_json's own escaping, straight into `out`.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

pub fn fingerprint(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// 1 to 255 printable ASCII characters.
pub fn is_valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Which outcomes are final for a request and therefore stored for replay.
fn is_storable(status: StatusCode, code: Option<&str>) -> bool {
    if status.is_success() {
        return true;
    }
    matches!(status.as_u16(), 400 | 403 | 404 | 409 | 422)
        && !matches!(code, Some("cart_locked" | "idempotency_conflict" | "idempotency_in_progress"))
}

impl<S: Send + Sync> FromRequest<S> for Idempotent {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let key = request
            .headers()
            .get("idempotency-key")
            .ok_or_else(ApiError::missing_idempotency_key)?
            .to_str()
            .map_err(|_| {
                ApiError::invalid_request("Idempotency-Key", "Idempotency-Key must be printable ASCII")
            })?
            .to_string();
        if !is_valid_key(&key) {
            return Err(ApiError::invalid_request(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            ));
        }
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let bytes = Bytes::from_request(request, state).await.map_err(crate::http::body_rejection)?;
        let body = read_json_body(&bytes)?;
        Ok(Idempotent { fingerprint: fingerprint(&body), key, method, path, body })
    }
}

fn stored_to_response(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What an idempotent run produced: the status and body exactly as stored for replay.
#[derive(Debug)]
pub struct Outcome {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// True when this is the stored outcome of an earlier run (no side effect happened now).
    pub replayed: bool,
    /// A fresh error outcome, kept so front ends can render its headers (e.g. `Retry-After`).
    pub error: Option<ApiError>,
}

impl Idempotent {
    /// Runs `op` exactly once for this key; see the module docs.
    pub async fn run<F>(self, app: &App, caller: &Caller, op: F) -> Response
    where
        F: for<'a> FnOnce(&'a mut dyn StoreTx, Value) -> TxFuture<'a> + Send + 'static,
    {
        let scope = self.scope(caller);
        outcome_response(run_once(app, scope, &self.fingerprint, self.body, op).await)
    }

    /// Runs a multi-step operation (its own transactions, see [`run_once_leased_steps`]) exactly once
    /// for this key; `op` gets the request body.
    pub async fn run_steps<F>(self, app: &App, caller: &Caller, op: F) -> Response
    where
        F: FnOnce(Value) -> StepsFuture,
    {
        let scope = self.scope(caller);
        let body = self.body;
        outcome_response(run_once_leased_steps(app, scope, &self.fingerprint, move || op(body)).await)
    }

    /// The idempotency scope of this request for `caller`.
    pub fn scope(&self, caller: &Caller) -> IdempotencyScope {
        IdempotencyScope {
            principal: caller.id().to_string(),
            method: self.method.clone(),
            path: self.path.clone(),
            key: self.key.clone(),
        }
    }
}

/// Renders an idempotent run: the stored status and body (`Idempotent-Replayed: true` on a replay),
/// or the error with its headers.
pub fn outcome_response(outcome: ApiResult<Outcome>) -> Response {
    match outcome {
        Ok(Outcome { error: Some(e), .. }) => e.into_response(),
        Ok(outcome) => {
            let replayed = outcome.replayed;
            let mut response =
                stored_to_response(StoredResponse { status: outcome.status.as_u16(), body: outcome.body });
            if replayed {
                response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// The shared core of every idempotent front end (REST routes, MCP tools): claims `scope`, runs `op`
/// at most once and returns its stored outcome, or the earlier outcome when the key was already used
/// with the same `fingerprint`. `Err` is an answer that is not stored (conflict, in progress, or an
/// outcome a retry may change), so the same key may be retried.
///
/// The claim, the operation and the stored outcome share one transaction: a concurrent request with
/// the same key waits for it and then replays its outcome, and a crash leaves nothing behind. This is
/// for operations that only touch the database; operations that call out to another service while
/// they run (checkout) use [`run_once_leased_steps`], whose claim commits first and holds the key
/// with a lease.
pub async fn run_once<F>(
    app: &App,
    scope: IdempotencyScope,
    fingerprint: &str,
    body: Value,
    op: F,
) -> ApiResult<Outcome>
where
    F: for<'a> FnOnce(&'a mut dyn StoreTx, Value) -> TxFuture<'a> + Send + 'static,
{
    execute(app, ClaimInTx { scope, fingerprint: fingerprint.to_string() }, body, op).await
}

/// The future of a multi-step operation: it runs its own transactions and provider calls, and hands
/// back the still-open transaction of its final write, in which its outcome is stored.
pub type StepsFuture = Pin<Box<dyn Future<Output = ApiResult<(Box<dyn StoreTx>, StatusCode, Value)>> + Send>>;

/// For operations made of several transactions around a provider call (checkout): the claim commits
/// first with a lease, `op` runs its steps, and its final transaction stores the outcome. A final
/// error is stored in a fresh transaction; any other error releases the key so a retry runs again
/// (the operation itself must make that retry safe, e.g. by resuming a pending order).
pub async fn run_once_leased_steps<F>(
    app: &App,
    scope: IdempotencyScope,
    fingerprint: &str,
    op: F,
) -> ApiResult<Outcome>
where
    F: FnOnce() -> StepsFuture,
{
    let claim = match app.store.claim_idempotency(&scope, fingerprint, now_ms(), LEASE_MS).await? {
        ClaimOutcome::Claimed(claim) => claim,
        other => return settled(other),
    };
    let outcome = match op().await {
        Ok((tx, status, value)) => match serde_json::to_vec(&value) {
            Ok(body) => finish(tx, &claim, status, body, None).await,
            Err(_) => Err(ApiError::internal(None)),
        },
        Err(e) if is_storable(e.status, Some(e.code)) => match app.store.begin_write().await {
            Ok(tx) => finish(tx, &claim, e.status, e.body_bytes(), Some(e)).await,
            Err(store_error) => Err(store_error.into()),
        },
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        // Best effort: if this fails too, the lease expires and a retry takes the key over.
        if let Err(e) = app.store.release_idempotency(&claim).await {
            tracing::warn!(error = %e, "could not release idempotency claim");
        }
    }
    outcome
}

/// The answer for a scope that was not claimed: a replay, or a conflict / in-progress error.
fn settled(outcome: ClaimOutcome) -> ApiResult<Outcome> {
    match outcome {
        ClaimOutcome::Replay(stored) => {
            metrics::counter!("kifly_idempotent_replays_total").increment(1);
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            Ok(Outcome { status, body: stored.body, replayed: true, error: None })
        }
        ClaimOutcome::Conflict => Err(ApiError::idempotency_conflict()),
        ClaimOutcome::InProgress | ClaimOutcome::Claimed(_) => Err(ApiError::idempotency_in_progress()),
    }
}

/// Stores the outcome under the claim in `tx` and commits.
async fn finish(
    mut tx: Box<dyn StoreTx>,
    claim: &IdempotencyClaim,
    status: StatusCode,
    body: Vec<u8>,
    error: Option<ApiError>,
) -> ApiResult<Outcome> {
    let outcome = store_outcome(tx.as_mut(), claim, status, body, error).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Stores the outcome under the claim in `tx` (committed by the caller).
async fn store_outcome(
    tx: &mut dyn StoreTx,
    claim: &IdempotencyClaim,
    status: StatusCode,
    body: Vec<u8>,
    error: Option<ApiError>,
) -> ApiResult<Outcome> {
    let stored = StoredResponse { status: status.as_u16(), body };
    match tx.complete_idempotency(claim, &stored, now_ms()).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::idempotency_in_progress()),
        Err(e) => return Err(e.into()),
    }
    Ok(Outcome { status, body: stored.body, replayed: false, error })
}

/// The future of a [`write_job`] body.
type JobFuture<'a, T> = Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'a>>;

/// Runs `work` as one write transaction through [`kifly_store::Store::run_write`]: committed when
/// it returns `Ok`, rolled back on `Err`. Returns `work`'s result once the commit is durable, or the
/// commit's error.
async fn write_job<T, W>(app: &App, work: W) -> ApiResult<T>
where
    T: Send + 'static,
    W: for<'a> FnOnce(&'a mut dyn StoreTx) -> JobFuture<'a, T> + Send + 'static,
{
    let (result_tx, mut result) = tokio::sync::oneshot::channel();
    app.store
        .run_write(Box::new(move |tx| {
            Box::pin(async move {
                let outcome = work(tx).await;
                let end = if outcome.is_ok() { WriteEnd::Commit } else { WriteEnd::RollBack };
                let _ = result_tx.send(outcome);
                end
            })
        }))
        .await?;
    // The job always sends before it ends; an empty channel means it never ran to its end.
    result.try_recv().unwrap_or_else(|_| Err(ApiError::internal(None)))
}

/// Runs `op` in one write transaction without an idempotency record (MCP tools called without an
/// `idempotency_key`): committed on success, rolled back on error.
pub async fn run_in_tx<F>(app: &App, body: Value, op: F) -> ApiResult<(StatusCode, Box<RawValue>)>
where
    F: for<'a> FnOnce(&'a mut dyn StoreTx, Value) -> TxFuture<'a> + Send + 'static,
{
    write_job(app, move |tx| op(tx, body)).await
}

/// A scope claimed inside each transaction that runs the operation or stores its outcome.
#[derive(Clone)]
struct ClaimInTx {
    scope: IdempotencyScope,
    fingerprint: String,
}

impl ClaimInTx {
    /// The claim to store the outcome under in `tx`, or the settled answer when the scope is taken.
    async fn claim(&self, tx: &mut dyn StoreTx) -> ApiResult<Result<IdempotencyClaim, Outcome>> {
        match tx.claim_idempotency(&self.scope, &self.fingerprint, now_ms(), LEASE_MS).await? {
            ClaimOutcome::Claimed(claim) => Ok(Ok(claim)),
            other => settled(other).map(Err),
        }
    }
}

/// Runs the operation and stores its final outcome with it, as one write job. `Err` is an answer
/// that is not stored (the transaction is rolled back, the claim with it).
async fn execute<F>(app: &App, scope: ClaimInTx, body: Value, op: F) -> ApiResult<Outcome>
where
    F: for<'a> FnOnce(&'a mut dyn StoreTx, Value) -> TxFuture<'a> + Send + 'static,
{
    let first = scope.clone();
    let ran = write_job(app, move |tx| {
        Box::pin(async move {
            let claim = match first.claim(tx).await? {
                Ok(claim) => claim,
                Err(settled) => return Ok(settled),
            };
            let (status, rendered) = op(tx, body).await?;
            let body = String::from(Box::<str>::from(rendered)).into_bytes();
            store_outcome(tx, &claim, status, body, None).await
        })
    })
    .await;
    match ran {
        Err(e) if is_storable(e.status, Some(e.code)) => {
            // Nothing of the failed operation was kept: store the error in a fresh transaction.
            write_job(app, move |tx| {
                Box::pin(async move {
                    let claim = match scope.claim(tx).await? {
                        Ok(claim) => claim,
                        Err(settled) => return Ok(settled),
                    };
                    let body = e.body_bytes();
                    store_outcome(tx, &claim, e.status, body, Some(e)).await
                })
            })
            .await
        }
        // Not final: rolled back (an in-transaction claim went with it) so a retry runs again.
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_keeps_array_order() {
        let a = json!({"b": 1, "a": {"d": [2, 1], "c": null}});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":null,"d":[2,1]},"b":1}"#);
        let reordered: Value = serde_json::from_str(r#"{ "a": {"d":[2,1], "c":null}, "b":1 }"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&reordered));
        assert_ne!(fingerprint(&json!({"a": [1, 2]})), fingerprint(&json!({"a": [2, 1]})));
        assert_ne!(fingerprint(&json!({"a": null})), fingerprint(&json!({})));
        // Strings and keys keep serde_json's escaping; numbers its formatting.
        let escaped = json!({"b\"q": "é\n", "a": [1.5, true, null, -7]});
        assert_eq!(canonical_json(&escaped), r#"{"a":[1.5,true,null,-7],"b\"q":"é\n"}"#);
    }

    #[test]
    fn keys_must_be_printable_ascii() {
        assert!(is_valid_key("abc-123"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(&"x".repeat(256)));
        assert!(!is_valid_key("tab\there"));
    }

    #[test]
    fn storable_outcomes() {
        assert!(is_storable(StatusCode::CREATED, None));
        assert!(is_storable(StatusCode::NOT_FOUND, Some("cart_not_found")));
        assert!(!is_storable(StatusCode::CONFLICT, Some("cart_locked")));
        assert!(!is_storable(StatusCode::PAYMENT_REQUIRED, Some("payment_required")));
        assert!(!is_storable(StatusCode::SERVICE_UNAVAILABLE, Some("upstream_unavailable")));
        assert!(!is_storable(StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
    }
}
