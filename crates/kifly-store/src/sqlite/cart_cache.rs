//! Recently read carts, for reads that only show a cart (`Store::get_cart_cached`).
//!
//! Reading a cart from SQLite starts and ends a read transaction (shared locks on the WAL index and
//! the file) and runs a join; under a load of cart reads that was about a quarter of the server's CPU.
//! A cart only changes when this process's writer commits, or when another process (a CLI
//! `catalog import`) changes the products and variants its lines show. So:
//!
//! - Every batch the writer commits bumps a [`Generation`], *after* its `COMMIT` and before any of
//!   its transactions' callers carry on. An entry is served only while the generation it was read
//!   under is still the current one, so a read that follows one of this process's writes never sees
//!   the cart as it was before (the generation is loaded *before* the database read, so a write that
//!   commits during the read leaves the entry already stale). Every commit counts, not just those
//!   that touched carts: it needs no list of tables to keep in step with the queries, and under a load
//!   of reads the only commits are the read-audit batches, tens of milliseconds apart. Statements run
//!   on the writer outside a batch (`Writer::acquire`: migrations, before anything reads) do not
//!   bump it; a new caller of `acquire` that changes rows must.
//! - Changes by other processes are not seen by the writer; an entry lives at most [`MAX_AGE`], so
//!   such a change shows within that time, as sellers and limits do (their caches hold 2 s).
//!
//! Money is never decided on a cached cart: checkout reads with `Store::get_cart`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::StoreResult;
use crate::model::Cart;

/// How long another process's change to what a cart shows may take to be seen.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);
/// Carts kept at most; when full, entries that can no longer be served are dropped, and if none
/// can, all of them.
const MAX_ENTRIES: usize = 4096;

/// Counts the writer's commits (see the module docs); shared by the writer and the cache.
#[derive(Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    /// Called after each `COMMIT`, before the committed transactions' callers carry on.
    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// Commits so far.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Entry {
    generation: u64,
    read_at: Instant,
    cart: Arc<Cart>,
}

pub(super) struct CartCache {
    generation: Generation,
    entries: Mutex<HashMap<String, Entry>>,
}

impl CartCache {
    pub(super) fn new(generation: Generation) -> CartCache {
        CartCache { generation, entries: Mutex::new(HashMap::new()) }
    }

    /// The cart from the cache while it can be served, else from `read` (remembered if found).
    pub(super) fn get_or_read(
        &self,
        cart_id: &str,
        read: impl FnOnce() -> StoreResult<Option<Cart>>,
    ) -> StoreResult<Option<Arc<Cart>>> {
        // Loaded before the read: a commit during the read makes what it returns stale at once.
        let generation = self.generation.current();
        if let Ok(entries) = self.entries.lock()
            && let Some(entry) = entries.get(cart_id)
            && entry.generation == generation
            && entry.read_at.elapsed() < MAX_AGE
        {
            return Ok(Some(entry.cart.clone()));
        }
        let cart = read()?.map(Arc::new);
        if let (Some(cart), Ok(mut entries)) = (&cart, self.entries.lock()) {
            if entries.len() >= MAX_ENTRIES && !entries.contains_key(cart_id) {
                entries.retain(|_, e| e.generation == generation && e.read_at.elapsed() < MAX_AGE);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            let entry = Entry { generation, read_at: Instant::now(), cart: Arc::clone(cart) };
            entries.insert(cart_id.to_string(), entry);
        }
        Ok(cart)
    }
}

#[cfg(test)]
mod tests {
    use kifly_core::catalog::CatalogFile;

    use super::MAX_AGE;
    use crate::sqlite::tests::migrated_file_store;
    use crate::{NewCart, NewCartLine, Store};

    const CATALOG: &str = r#"{"sellers": [{"handle": "acme", "name": "Acme", "tier": "purchasable",
      "coverage": {"nationwide": true},
      "products": [{"handle": "rocket", "title": "Rocket",
        "variants": [{"sku": "R-RED", "name": "Red", "price_cents": 1000}]}]}]}"#;

    /// While one copy is served, every read returns the same `Arc` (callers key their renderings on
    /// it); after a commit, a new one.
    #[tokio::test]
    async fn a_served_copy_is_shared_until_the_next_commit() {
        let (_dir, _path, store) = migrated_file_store().await;
        store.import_catalog(&CatalogFile::parse(CATALOG).expect("catalog"), 1).await.expect("import");
        let seller_id = store.get_seller_by_handle("acme").await.expect("read").expect("acme").id;
        let mut tx = store.begin_write().await.expect("begin");
        let cart = NewCart { id: "cart_1".into(), api_key_id: "key_1".into(), seller_id };
        tx.insert_cart(&cart, 2).await.expect("cart");
        tx.commit().await.expect("commit");
        let read = || async { store.get_cart_cached("cart_1").await.expect("read").expect("cart_1") };
        let (first, second) = (read().await, read().await);
        assert!(std::sync::Arc::ptr_eq(&first, &second), "one copy while nothing was written");

        let mut tx = store.begin_write().await.expect("begin");
        tx.touch_cart("cart_1", 3).await.expect("touch");
        tx.commit().await.expect("commit");
        let third = read().await;
        assert!(!std::sync::Arc::ptr_eq(&second, &third), "a new copy after a commit");
        assert_eq!(third.updated_at, 3);
    }

    /// Another process's change is not seen by the writer: a cached cart shows it within
    /// [`MAX_AGE`], an uncached read at once.
    #[tokio::test]
    async fn another_process_s_change_shows_within_the_maximum_age() {
        let (_dir, path, store) = migrated_file_store().await;
        store.import_catalog(&CatalogFile::parse(CATALOG).expect("catalog"), 1).await.expect("import");
        let seller_id = store.get_seller_by_handle("acme").await.expect("read").expect("acme").id;
        let variant_id: String = rusqlite::Connection::open(&path)
            .expect("open")
            .query_row("SELECT id FROM variants WHERE sku = 'R-RED'", [], |row| row.get(0))
            .expect("variant");
        let mut tx = store.begin_write().await.expect("begin");
        let cart = NewCart { id: "cart_1".into(), api_key_id: "key_1".into(), seller_id };
        tx.insert_cart(&cart, 2).await.expect("cart");
        let line =
            NewCartLine { item_id: "item_1".into(), cart_id: "cart_1".into(), variant_id, quantity: 1 };
        tx.insert_cart_line(&line, 2).await.expect("line");
        tx.commit().await.expect("commit");
        let price = |cart: Option<&crate::Cart>| cart.expect("cart_1").lines[0].unit_price_cents;
        assert_eq!(price(store.get_cart_cached("cart_1").await.expect("read").as_deref()), 1000);

        let other_process = rusqlite::Connection::open(&path).expect("open");
        other_process.execute("UPDATE variants SET price_cents = 1500", []).expect("reprice");
        assert_eq!(price(store.get_cart("cart_1").await.expect("read").as_ref()), 1500, "uncached");
        assert_eq!(price(store.get_cart_cached("cart_1").await.expect("read").as_deref()), 1000, "cached");
        tokio::time::sleep(MAX_AGE).await;
        assert_eq!(
            price(store.get_cart_cached("cart_1").await.expect("read").as_deref()),
            1500,
            "after the maximum age"
        );
    }
}
