//! Carts and their lines. Lines are read joined with the live variant, so prices and names are
//! always current.

use super::sql::{self, Row};
use kifly_core::address::ShippingAddress;

use super::{CART_FOR_UPDATE_SQL, Conn, QueryResult, json_err, map_err};
use crate::model::*;
use crate::{StoreError, StoreResult};

/// The cart and its lines in one round trip (one row per line, or one row with NULL line columns for
/// an empty cart). Also used by the SQLite backend's direct read path (`sqlite/direct.rs`).
pub(super) const CART_WITH_LINES_SQL: &str = "SELECT c.id, c.api_key_id, c.seller_id, c.status, c.shipping_address, c.version, c.order_id, c.created_at, c.updated_at,
       i.id AS item_id, i.variant_id, v.product_id, p.title, v.name AS variant_name, v.sku, v.price_cents, i.quantity, v.inventory, i.created_at AS item_created_at
FROM carts c
LEFT JOIN cart_items i ON i.cart_id = c.id
LEFT JOIN variants v ON v.id = i.variant_id
LEFT JOIN products p ON p.id = v.product_id
WHERE c.id = $1 ORDER BY i.created_at, i.id";

const LINES_SQL: &str = "SELECT i.id AS item_id, i.variant_id, v.product_id, p.title, v.name AS variant_name, v.sku, v.price_cents, i.quantity, v.inventory, i.created_at AS item_created_at
FROM cart_items i JOIN variants v ON v.id = i.variant_id JOIN products p ON p.id = v.product_id
WHERE i.cart_id = $1 ORDER BY i.created_at, i.id";

fn line_from_row(r: &super::DbRow) -> StoreResult<CartLine> {
    Ok(CartLine {
        item_id: r.try_get("item_id").map_err(map_err)?,
        variant_id: r.try_get("variant_id").map_err(map_err)?,
        product_id: r.try_get("product_id").map_err(map_err)?,
        product_title: r.try_get("title").map_err(map_err)?,
        variant_name: r.try_get("variant_name").map_err(map_err)?,
        sku: r.try_get("sku").map_err(map_err)?,
        unit_price_cents: r.try_get("price_cents").map_err(map_err)?,
        quantity: r.try_get("quantity").map_err(map_err)?,
        inventory: r.try_get("inventory").map_err(map_err)?,
        created_at: r.try_get("item_created_at").map_err(map_err)?,
    })
}

/// The `carts` columns as stored, before parsing.
pub(super) struct CartRow {
    pub id: String,
    pub api_key_id: String,
    pub seller_id: String,
    pub status: String,
    pub shipping_address: Option<String>,
    pub version: i64,
    pub order_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CartRow {
    fn read(row: &super::DbRow) -> StoreResult<CartRow> {
        Ok(CartRow {
            id: row.try_get("id").map_err(map_err)?,
            api_key_id: row.try_get("api_key_id").map_err(map_err)?,
            seller_id: row.try_get("seller_id").map_err(map_err)?,
            status: row.try_get("status").map_err(map_err)?,
            shipping_address: row.try_get("shipping_address").map_err(map_err)?,
            version: row.try_get("version").map_err(map_err)?,
            order_id: row.try_get("order_id").map_err(map_err)?,
            created_at: row.try_get("created_at").map_err(map_err)?,
            updated_at: row.try_get("updated_at").map_err(map_err)?,
        })
    }

    pub(super) fn into_cart(self, lines: Vec<CartLine>) -> StoreResult<Cart> {
        Ok(Cart {
            status: CartStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Other(format!("unknown cart status {:?}", self.status)))?,
            shipping_address: self
                .shipping_address
                .map(|a| serde_json::from_str(&a))
                .transpose()
                .map_err(json_err)?,
            id: self.id,
            api_key_id: self.api_key_id,
            seller_id: self.seller_id,
            version: self.version,
            order_id: self.order_id,
            lines,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Reads a cart with its lines (one joined query).
pub(super) async fn get<'e>(on: impl sql::Executor<'e>, cart_id: &str) -> StoreResult<Option<Cart>> {
    let rows = sql::query(CART_WITH_LINES_SQL).bind(cart_id).fetch_all(on).await.map_err(map_err)?;
    let Some(first) = rows.first() else { return Ok(None) };
    let lines = rows
        .iter()
        .filter(|r| r.try_get::<Option<String>, _>("item_id").ok().flatten().is_some())
        .map(line_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    CartRow::read(first)?.into_cart(lines).map(Some)
}

/// Reads a cart for a change. Where the backend has row locks ([`CART_FOR_UPDATE_SQL`], PostgreSQL),
/// the cart row is locked for the rest of the transaction first (a lock cannot be taken through the
/// outer join); SQLite's writer transaction is exclusive already, so it is the plain read
/// ([`read_cart_unlocked`](super::read_cart_unlocked): by column position, the hottest read of a
/// change).
pub(super) async fn get_for_update(conn: &mut Conn, cart_id: &str) -> StoreResult<Option<Cart>> {
    let Some(lock_sql) = CART_FOR_UPDATE_SQL else { return super::read_cart_unlocked(conn, cart_id).await };
    let Some(row) = sql::query(lock_sql).bind(cart_id).fetch_optional(&mut *conn).await.map_err(map_err)?
    else {
        return Ok(None);
    };
    let lines = sql::query(LINES_SQL).bind(cart_id).fetch_all(&mut *conn).await.map_err(map_err)?;
    let lines = lines.iter().map(line_from_row).collect::<StoreResult<Vec<_>>>()?;
    CartRow::read(&row)?.into_cart(lines).map(Some)
}

pub(super) async fn insert(conn: &mut Conn, cart: &NewCart, now: i64) -> StoreResult<()> {
    sql::query(
        "INSERT INTO carts (id, api_key_id, seller_id, status, version, created_at, updated_at) VALUES ($1, $2, $3, 'open', 1, $4, $4)",
    )
    .bind(&cart.id)
    .bind(&cart.api_key_id)
    .bind(&cart.seller_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn insert_line(conn: &mut Conn, line: &NewCartLine, now: i64) -> StoreResult<()> {
    sql::query(
        "INSERT INTO cart_items (id, cart_id, variant_id, quantity, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&line.item_id)
    .bind(&line.cart_id)
    .bind(&line.variant_id)
    .bind(line.quantity)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

fn expect_one(result: QueryResult, what: &str) -> StoreResult<()> {
    if result.rows_affected() == 1 { Ok(()) } else { Err(StoreError::NotFound(what.to_string())) }
}

pub(super) async fn set_line_quantity(
    conn: &mut Conn,
    item_id: &str,
    quantity: i64,
    now: i64,
) -> StoreResult<()> {
    let r = sql::query("UPDATE cart_items SET quantity = $2, updated_at = $3 WHERE id = $1")
        .bind(item_id)
        .bind(quantity)
        .bind(now)
        .execute(conn)
        .await
        .map_err(map_err)?;
    expect_one(r, item_id)
}

pub(super) async fn delete_line(conn: &mut Conn, item_id: &str) -> StoreResult<()> {
    let r = sql::query("DELETE FROM cart_items WHERE id = $1")
        .bind(item_id)
        .execute(conn)
        .await
        .map_err(map_err)?;
    expect_one(r, item_id)
}

pub(super) async fn set_address(
    conn: &mut Conn,
    cart_id: &str,
    address: &ShippingAddress,
    now: i64,
) -> StoreResult<()> {
    let json = serde_json::to_string(address).map_err(json_err)?;
    let r = sql::query("UPDATE carts SET shipping_address = $2, updated_at = $3 WHERE id = $1")
        .bind(cart_id)
        .bind(json)
        .bind(now)
        .execute(conn)
        .await
        .map_err(map_err)?;
    expect_one(r, cart_id)
}

pub(super) async fn touch(conn: &mut Conn, cart_id: &str, now: i64) -> StoreResult<()> {
    let r = sql::query("UPDATE carts SET version = version + 1, updated_at = $2 WHERE id = $1")
        .bind(cart_id)
        .bind(now)
        .execute(conn)
        .await
        .map_err(map_err)?;
    expect_one(r, cart_id)
}
