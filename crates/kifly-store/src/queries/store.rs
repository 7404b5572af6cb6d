//! The `Store` and `StoreTx` implementation shared by every SQL backend.
//!
//! This file is compiled once inside each backend module (`#[path]` in `sqlite/mod.rs` and
//! `postgres/mod.rs`), where `super::sql`, `super::BackendStore` and friends name that backend's types.
//! So there is one copy of the logic and each backend only supplies its pools, its transaction start,
//! its error classification and the few statements whose SQL differs.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use kifly_core::address::ShippingAddress;
use kifly_core::catalog::CatalogFile;
use kifly_core::limits::PlatformLimits;

use super::catalog::SellerKey;
use super::{BACKEND_NAME, BackendStore, DirectReads, Tx, map_err};
use crate::model::*;
use crate::{Store, StoreResult, StoreTx, WriteJob};

#[async_trait]
impl Store for BackendStore {
    fn backend(&self) -> &'static str {
        BACKEND_NAME
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.run_migrations().await
    }

    async fn ping(&self) -> StoreResult<()> {
        super::sql::query("SELECT 1").execute(self.reader()).await.map_err(map_err)?;
        Ok(())
    }

    async fn begin_write(&self) -> StoreResult<Box<dyn StoreTx>> {
        let tx = self.begin().await?;
        Ok(Box::new(BackendTx { tx, direct: self.direct_reads().cloned(), pending_claim: None }))
    }

    async fn run_write(&self, job: WriteJob) -> StoreResult<()> {
        self.run_write_job(job).await
    }

    async fn import_catalog(&self, file: &CatalogFile, now: i64) -> StoreResult<ImportSummary> {
        let mut tx = self.begin().await?;
        let summary = super::catalog::import(&mut tx, file, now).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(summary)
    }

    async fn get_seller_by_handle(&self, handle: &str) -> StoreResult<Option<Seller>> {
        if let Some(direct) = self.direct_reads() {
            return direct.get_seller(SellerKey::Handle, handle);
        }
        super::catalog::seller_by(self.reader(), SellerKey::Handle, handle).await
    }

    async fn get_seller(&self, id: &str) -> StoreResult<Option<Seller>> {
        if let Some(direct) = self.direct_reads() {
            return direct.get_seller(SellerKey::Id, id);
        }
        super::catalog::seller_by(self.reader(), SellerKey::Id, id).await
    }

    async fn list_sellers(&self) -> StoreResult<Vec<Seller>> {
        super::catalog::list_sellers(self.reader()).await
    }

    async fn list_products(&self, filter: &ProductFilter) -> StoreResult<Vec<Product>> {
        super::catalog::list_products(self.reader(), filter).await
    }

    async fn count_products(&self, seller_id: Option<&str>) -> StoreResult<i64> {
        super::catalog::count_products(self.reader(), seller_id).await
    }

    async fn list_categories(&self, seller_id: Option<&str>) -> StoreResult<Vec<String>> {
        super::catalog::list_categories(self.reader(), seller_id).await
    }

    async fn get_variant(&self, variant_id: &str) -> StoreResult<Option<VariantRef>> {
        super::catalog::get_variant(self.reader(), variant_id).await
    }

    async fn catalog_version(&self) -> StoreResult<CatalogVersion> {
        super::catalog::catalog_version(self.reader()).await
    }

    async fn create_api_key(&self, key: &NewApiKey, now: i64) -> StoreResult<ApiKey> {
        super::keys::create(self.writer(), self.reader(), key, now).await
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        super::keys::find_by_hash(self.reader(), key_hash).await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        super::keys::list(self.reader()).await
    }

    async fn revoke_api_key(&self, id: &str, now: i64) -> StoreResult<bool> {
        super::keys::revoke(self.writer(), id, now).await
    }

    async fn get_limits(&self) -> StoreResult<PlatformLimits> {
        if let Some(direct) = self.direct_reads() {
            return direct.get_limits();
        }
        super::ops::get_limits(self.reader()).await
    }

    async fn set_limits(&self, limits: &PlatformLimits, now: i64) -> StoreResult<()> {
        super::ops::set_limits(self.writer(), limits, now).await
    }

    async fn get_cart(&self, cart_id: &str) -> StoreResult<Option<Cart>> {
        if let Some(direct) = self.direct_reads() {
            return direct.get_cart(cart_id);
        }
        super::carts::get(self.reader(), cart_id).await
    }

    async fn get_cart_cached(&self, cart_id: &str) -> StoreResult<Option<Arc<Cart>>> {
        if let Some(direct) = self.direct_reads() {
            return direct.get_cart_cached(cart_id);
        }
        Ok(super::carts::get(self.reader(), cart_id).await?.map(Arc::new))
    }

    async fn claim_idempotency(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<ClaimOutcome> {
        let mut tx = self.begin().await?;
        let outcome = super::ops::claim_idempotency(&mut tx, scope, fingerprint, now, lease_ms).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }

    async fn release_idempotency(&self, claim: &IdempotencyClaim) -> StoreResult<()> {
        super::ops::release_idempotency(self.writer(), claim).await
    }

    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64> {
        super::ops::purge_idempotency(self.writer(), before).await
    }

    async fn insert_audit_batch(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // In time order: SQLite reads the log back in insertion order (`RECENT_AUDIT_SQL`). Entries
        // recorded at once by concurrent requests can come a little out of order.
        let time_order = |a: &AuditEntry, b: &AuditEntry| (a.created_at, &a.id).cmp(&(b.created_at, &b.id));
        let entries: Cow<'_, [AuditEntry]> = if entries.is_sorted_by(|a, b| time_order(a, b).is_le()) {
            Cow::Borrowed(entries)
        } else {
            let mut sorted = entries.to_vec();
            sorted.sort_by(time_order);
            Cow::Owned(sorted)
        };
        // One transaction; full chunks of `AUDIT_ROWS_PER_INSERT` rows per statement (one shape,
        // kept prepared), then the rest as the backend prefers (`AUDIT_REST_ROW_BY_ROW`).
        let mut tx = self.begin().await?;
        let chunks = entries.chunks_exact(super::AUDIT_ROWS_PER_INSERT);
        let rest = chunks.remainder();
        for chunk in chunks {
            super::ops::insert_audit_rows(&mut *tx, chunk, true).await?;
        }
        if rest.len() > 1 && !super::AUDIT_REST_ROW_BY_ROW {
            super::ops::insert_audit_rows(&mut *tx, rest, false).await?;
        } else {
            for entry in rest {
                super::ops::insert_audit(&mut tx, entry).await?;
            }
        }
        tx.commit().await.map_err(map_err)
    }

    async fn get_order(&self, id_or_session: &str) -> StoreResult<Option<Order>> {
        super::orders::get(self.reader(), id_or_session).await
    }

    async fn list_overdue_orders(&self, now: i64, limit: i64) -> StoreResult<Vec<Order>> {
        super::orders::list_overdue(self.reader(), now, limit).await
    }

    async fn follow_link(&self, code: &str) -> StoreResult<Option<(String, i64)>> {
        super::orders::follow_link(self.writer(), code).await
    }

    async fn get_buyer_by_token(&self, token_hash: &str) -> StoreResult<Option<Buyer>> {
        super::buyers::by_token_hash(self.reader(), token_hash).await
    }

    async fn list_buyer_orders(&self, buyer: &Buyer, since: i64, limit: i64) -> StoreResult<Vec<Order>> {
        super::orders::list_for_buyer(self.reader(), &buyer.id, &buyer.email, since, limit).await
    }

    async fn revoke_buyer_tokens(&self, email: &str, now: i64) -> StoreResult<u64> {
        super::buyers::revoke_tokens(self.writer(), email, now).await
    }

    async fn claim_mail(&self, now: i64, lease_ms: i64, limit: i64) -> StoreResult<Vec<OutboxMail>> {
        super::buyers::claim_mail(self.writer(), now, lease_ms, limit).await
    }

    async fn finish_mail(
        &self,
        id: &str,
        sent: bool,
        retry_at: Option<i64>,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        super::buyers::finish_mail(self.writer(), id, sent, retry_at, error, now).await
    }

    async fn list_mail(&self, limit: i64) -> StoreResult<Vec<OutboxMail>> {
        super::buyers::list_mail(self.reader(), limit).await
    }

    async fn list_feedback(&self, limit: i64) -> StoreResult<Vec<FeedbackEntry>> {
        super::buyers::list_feedback(self.reader(), limit).await
    }

    async fn recent_audit(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        super::ops::recent_audit(self.reader(), limit).await
    }
}

/// A write transaction of this backend.
pub(super) struct BackendTx {
    pub(super) tx: Tx,
    /// The backend's reads without a round trip, if it has them (see `get_seller`).
    pub(super) direct: Option<Arc<DirectReads>>,
    /// This transaction's claim, not written yet (see [`super::ops::PendingClaim`]).
    pub(super) pending_claim: Option<super::ops::PendingClaim>,
}

impl BackendTx {
    /// The reads that skip this transaction's connection, when they read what it would.
    fn committed_reads(&self) -> Option<&DirectReads> {
        self.direct.as_deref().filter(|_| super::sees_only_committed_state(&self.tx))
    }
}

#[async_trait]
impl StoreTx for BackendTx {
    async fn get_cart(&mut self, cart_id: &str) -> StoreResult<Option<Cart>> {
        super::carts::get_for_update(&mut self.tx, cart_id).await
    }

    async fn insert_cart(&mut self, cart: &NewCart, now: i64) -> StoreResult<()> {
        super::carts::insert(&mut self.tx, cart, now).await
    }

    async fn insert_cart_line(&mut self, line: &NewCartLine, now: i64) -> StoreResult<()> {
        super::carts::insert_line(&mut self.tx, line, now).await
    }

    async fn set_cart_line_quantity(&mut self, item_id: &str, quantity: i64, now: i64) -> StoreResult<()> {
        super::carts::set_line_quantity(&mut self.tx, item_id, quantity, now).await
    }

    async fn delete_cart_line(&mut self, item_id: &str) -> StoreResult<()> {
        super::carts::delete_line(&mut self.tx, item_id).await
    }

    async fn set_cart_shipping_address(
        &mut self,
        cart_id: &str,
        address: &ShippingAddress,
        now: i64,
    ) -> StoreResult<()> {
        super::carts::set_address(&mut self.tx, cart_id, address, now).await
    }

    async fn touch_cart(&mut self, cart_id: &str, now: i64) -> StoreResult<()> {
        super::carts::touch(&mut self.tx, cart_id, now).await
    }

    async fn insert_audit(&mut self, entry: &AuditEntry) -> StoreResult<()> {
        super::ops::insert_audit(&mut self.tx, entry).await
    }

    // Sellers and limits are never written inside a `StoreTx`, so where the backend can read them
    // without a round trip through the transaction's connection (SQLite: see `sqlite/direct.rs`), the
    // result is the same as long as the transaction sees only committed state: the writer holds
    // SQLite's only write lock, so the committed state it would read is the committed state any
    // connection reads. Later transactions of a group-committed batch may see a catalog import or a
    // limits change the batch has not committed yet, so they read through their own connection.

    async fn get_seller(&mut self, id: &str) -> StoreResult<Option<Seller>> {
        if let Some(direct) = self.committed_reads() {
            return direct.get_seller(SellerKey::Id, id);
        }
        super::catalog::seller_by(&mut *self.tx, SellerKey::Id, id).await
    }

    async fn get_seller_by_handle(&mut self, handle: &str) -> StoreResult<Option<Seller>> {
        if let Some(direct) = self.committed_reads() {
            return direct.get_seller(SellerKey::Handle, handle);
        }
        super::catalog::seller_by(&mut *self.tx, SellerKey::Handle, handle).await
    }

    async fn get_variant(&mut self, variant_id: &str) -> StoreResult<Option<VariantRef>> {
        super::catalog::get_variant(&mut *self.tx, variant_id).await
    }

    async fn get_limits(&mut self) -> StoreResult<PlatformLimits> {
        if let Some(direct) = self.committed_reads() {
            return direct.get_limits();
        }
        super::ops::get_limits(&mut *self.tx).await
    }

    async fn claim_idempotency(
        &mut self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<ClaimOutcome> {
        if !super::CLAIMS_WAIT_FOR_OUTCOME {
            return super::ops::claim_idempotency(&mut self.tx, scope, fingerprint, now, lease_ms).await;
        }
        let (outcome, pending) =
            super::ops::claim_pending(&mut self.tx, scope, fingerprint, now, lease_ms).await?;
        self.pending_claim = pending;
        Ok(outcome)
    }

    async fn complete_idempotency(
        &mut self,
        claim: &IdempotencyClaim,
        response: &StoredResponse,
        now: i64,
    ) -> StoreResult<()> {
        if let Some(pending) = self.pending_claim.take()
            && super::ops::complete_pending_claim(&mut self.tx, &pending, claim, response).await?
        {
            return Ok(());
        }
        super::ops::complete_idempotency(&mut self.tx, claim, response, now).await
    }

    async fn get_order(&mut self, id_or_session: &str) -> StoreResult<Option<Order>> {
        super::orders::get(&mut *self.tx, id_or_session).await
    }

    async fn insert_order(&mut self, order: &NewOrder, now: i64) -> StoreResult<()> {
        super::orders::insert(&mut self.tx, order, now).await
    }

    async fn reserve_stock(&mut self, lines: &[OrderLine]) -> StoreResult<Result<(), OutOfStock>> {
        super::orders::reserve(&mut self.tx, lines).await
    }

    async fn lock_cart_for_checkout(&mut self, cart_id: &str, order_id: &str, now: i64) -> StoreResult<()> {
        super::orders::lock_cart(&mut self.tx, cart_id, order_id, now).await
    }

    async fn set_order_session(
        &mut self,
        order_id: &str,
        session_id: &str,
        payment_url: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> StoreResult<Order> {
        super::orders::set_session(&mut self.tx, order_id, session_id, payment_url, expires_at, now).await
    }

    async fn mark_order_paid(
        &mut self,
        order_id: &str,
        payment_reference: Option<&str>,
        now: i64,
    ) -> StoreResult<OrderTransition> {
        super::orders::mark_paid(&mut self.tx, order_id, payment_reference, now).await
    }

    async fn close_unpaid_order(
        &mut self,
        order_id: &str,
        to: OrderStatus,
        now: i64,
    ) -> StoreResult<OrderTransition> {
        super::orders::close_unpaid(&mut self.tx, order_id, to, now).await
    }

    async fn ship_order(
        &mut self,
        order_id: &str,
        shipment: &Shipment,
        now: i64,
    ) -> StoreResult<OrderTransition> {
        super::orders::ship(&mut self.tx, order_id, shipment, now).await
    }

    async fn deliver_order(&mut self, order_id: &str, now: i64) -> StoreResult<OrderTransition> {
        super::orders::deliver(&mut self.tx, order_id, now).await
    }

    async fn record_payment_event(
        &mut self,
        source: &str,
        event_id: &str,
        order_id: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        super::orders::record_event(&mut self.tx, source, event_id, order_id, now).await
    }

    async fn insert_link(
        &mut self,
        code: &str,
        url: &str,
        cart_id: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        super::orders::insert_link(&mut self.tx, code, url, cart_id, now).await
    }

    async fn get_buyer_by_email(&mut self, email: &str) -> StoreResult<Option<Buyer>> {
        super::buyers::by_email(&mut self.tx, email).await
    }

    async fn insert_buyer(&mut self, id: &str, email: &str, name: &str, now: i64) -> StoreResult<bool> {
        super::buyers::insert(&mut self.tx, id, email, name, now).await
    }

    async fn mark_buyer_verified(&mut self, buyer_id: &str, now: i64) -> StoreResult<()> {
        super::buyers::mark_verified(&mut self.tx, buyer_id, now).await
    }

    async fn set_buyer_address(
        &mut self,
        buyer_id: &str,
        address: &ShippingAddress,
        now: i64,
    ) -> StoreResult<()> {
        super::buyers::set_address(&mut self.tx, buyer_id, address, now).await
    }

    async fn set_buyer_code(
        &mut self,
        email: &str,
        code_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        super::buyers::set_code(&mut self.tx, email, code_hash, expires_at, now).await
    }

    async fn attempt_buyer_code(&mut self, email: &str) -> StoreResult<Option<BuyerCode>> {
        super::buyers::attempt_code(&mut self.tx, email).await
    }

    async fn delete_buyer_code(&mut self, email: &str) -> StoreResult<()> {
        super::buyers::delete_code(&mut self.tx, email).await
    }

    async fn insert_buyer_token(
        &mut self,
        id: &str,
        token_hash: &str,
        buyer_id: &str,
        api_key_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        super::buyers::insert_token(&mut self.tx, id, token_hash, buyer_id, api_key_id, now).await
    }

    async fn enqueue_mail(&mut self, mail: &NewMail, now: i64) -> StoreResult<()> {
        super::buyers::enqueue_mail(&mut self.tx, mail, now).await
    }

    async fn insert_feedback(&mut self, entry: &FeedbackEntry) -> StoreResult<()> {
        super::buyers::insert_feedback(&mut self.tx, entry).await
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map_err)
    }
}
