//! The read-only connections, and the hottest reads parsed by column position.
//!
//! Every read outside a write transaction runs on one of these connections (see `sql.rs`): they are
//! read-only, open lazily on the same WAL file as the writer, see every committed write and never
//! block the writer. The hottest reads (a cart with its lines, and the seller and limits every cart
//! change consults, inside its transaction or not) skip the generic row copy of `sql.rs` and read
//! columns by position; they share the query text (`CART_WITH_LINES_SQL`) and row parsing (`CartRow`,
//! `SellerRow`) with the generic path. A write transaction may read sellers and limits here because
//! no transaction ever writes them and the writer holds SQLite's only write lock, so both paths read
//! the same committed rows.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kifly_core::limits::PlatformLimits;
use rusqlite::{Connection, OpenFlags, Row};

use super::cart_cache::{CartCache, Generation};
use super::carts::{CART_WITH_LINES_SQL, CartRow};
use super::catalog::{SellerKey, SellerRow};
use super::map_err;
use super::ops::LIMITS_SQL;
use crate::StoreResult;
use crate::model::{Cart, CartLine, Seller};

/// Idle connections kept for reuse; more are opened when several threads read at once.
const MAX_IDLE: usize = 8;

pub(super) struct DirectReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    recent_carts: CartCache,
}

impl DirectReads {
    /// `writes` counts the commits of the writer on the same file.
    pub(super) fn new(path: PathBuf, writes: Generation) -> DirectReads {
        DirectReads { path, idle: Mutex::new(Vec::new()), recent_carts: CartCache::new(writes) }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        // A WAL reader waits only in rare cases (recovery after a crash); this runs on an async worker
        // thread, so give up soon and let the request answer 503.
        conn.busy_timeout(Duration::from_secs(1))?;
        // No mmap here: the file grows with every write, and each growth would remap every reader.
        conn.execute_batch("PRAGMA cache_size = -16384;")?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one) and puts the connection back afterwards.
    pub(super) fn with_connection<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
        result
    }

    /// The cart and its lines, exactly as the generic path reads them (`carts::get`).
    pub(super) fn get_cart(&self, cart_id: &str) -> StoreResult<Option<Cart>> {
        self.with_connection(|conn| Ok(read_cart(conn, cart_id))).map_err(map_err)?
    }

    /// The cart as [`Self::get_cart`] reads it, or as it was read recently (see `cart_cache.rs`).
    pub(super) fn get_cart_cached(&self, cart_id: &str) -> StoreResult<Option<Arc<Cart>>> {
        self.recent_carts.get_or_read(cart_id, || self.get_cart(cart_id))
    }

    /// A seller by id or handle, as `catalog::seller_by` reads it.
    pub(super) fn get_seller(&self, key: SellerKey, value: &str) -> StoreResult<Option<Seller>> {
        let row = self
            .with_connection(|conn| {
                let mut statement = conn.prepare_cached(key.sql())?;
                let mut rows = statement.query([value])?;
                rows.next()?.map(seller_row).transpose()
            })
            .map_err(map_err)?;
        row.map(SellerRow::into_seller).transpose()
    }

    /// The platform limits, as `ops::get_limits` reads them.
    pub(super) fn get_limits(&self) -> StoreResult<PlatformLimits> {
        self.with_connection(|conn| {
            conn.prepare_cached(LIMITS_SQL)?.query_row([], |row| {
                Ok(PlatformLimits { max_item_quantity: row.get(0)?, max_cart_total_cents: row.get(1)? })
            })
        })
        .map_err(map_err)
    }
}

/// The cart and its lines on `conn` (a read-only connection, or the writer inside a transaction),
/// exactly as the generic path reads them (`carts::get`).
pub(super) fn read_cart(conn: &Connection, cart_id: &str) -> StoreResult<Option<Cart>> {
    let read = || -> rusqlite::Result<Option<(CartRow, Vec<CartLine>)>> {
        let mut statement = conn.prepare_cached(CART_WITH_LINES_SQL)?;
        let mut rows = statement.query([cart_id])?;
        let mut cart: Option<CartRow> = None;
        let mut lines = Vec::new();
        while let Some(row) = rows.next()? {
            if cart.is_none() {
                cart = Some(cart_row(row)?);
            }
            if row.get::<_, Option<String>>(ITEM_ID)?.is_some() {
                lines.push(line(row)?);
            }
        }
        Ok(cart.map(|cart| (cart, lines)))
    };
    read().map_err(map_err)?.map(|(cart, lines)| cart.into_cart(lines)).transpose()
}

// Columns by position (cheaper than by name), in the order of `CART_WITH_LINES_SQL`'s SELECT list.

fn cart_row(row: &Row<'_>) -> rusqlite::Result<CartRow> {
    Ok(CartRow {
        id: row.get(0)?,
        api_key_id: row.get(1)?,
        seller_id: row.get(2)?,
        status: row.get(3)?,
        shipping_address: row.get(4)?,
        version: row.get(5)?,
        order_id: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

const ITEM_ID: usize = 9;

/// In the order of `seller_columns!`.
fn seller_row(row: &Row<'_>) -> rusqlite::Result<SellerRow> {
    Ok(SellerRow {
        id: row.get(0)?,
        handle: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        storefront_url: row.get(4)?,
        tier: row.get(5)?,
        delivery_fee_cents: row.get(6)?,
        coverage: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

fn line(row: &Row<'_>) -> rusqlite::Result<CartLine> {
    Ok(CartLine {
        item_id: row.get(ITEM_ID)?,
        variant_id: row.get(10)?,
        product_id: row.get(11)?,
        product_title: row.get(12)?,
        variant_name: row.get(13)?,
        sku: row.get(14)?,
        unit_price_cents: row.get(15)?,
        quantity: row.get(16)?,
        inventory: row.get(17)?,
        created_at: row.get(18)?,
    })
}
