//! Orders, stock reservations, webhook de-duplication and tracked links.
//!
//! Every status change is one conditional `UPDATE … WHERE status = <expected>`: of two concurrent
//! moves (a webhook and an expiry sweep, two webhook deliveries) exactly one changes a row, and only
//! that one touches stock and the cart. That is what keeps a paid order paid and stock counted once.
//!
//! Stock: `variants.reserved` counts units held by unpaid orders; a reservation succeeds only while
//! `inventory - reserved` covers it (one atomic `UPDATE`, so concurrent buyers of the last unit cannot
//! both win). Paying turns the reservation into a sale; failing, expiring or cancelling gives it back.

use super::sql::{self, Row};

use super::{Conn, DbPool, DbRow, json_err, map_err};
use crate::model::*;
use crate::{StoreError, StoreResult};

/// `SELECT <every order column> FROM orders <tail>`, as a `&'static str`.
macro_rules! select_orders {
    ($tail:literal) => {
        concat!("SELECT id, cart_id, api_key_id, seller_id, status, payment_rail, session_id, payment_url, payment_reference, lines, subtotal_cents, delivery_fee_cents, total_cents, currency, shipping_address, email, expires_at, paid_at, shipped_at, carrier, tracking_number, tracking_url, delivered_at, closed_at, settlement_credential, buyer_id, created_at, updated_at FROM orders ", $tail)
    };
}

fn order_from_row(r: &DbRow) -> StoreResult<Order> {
    let status: String = r.try_get("status").map_err(map_err)?;
    let lines: String = r.try_get("lines").map_err(map_err)?;
    let address: String = r.try_get("shipping_address").map_err(map_err)?;
    Ok(Order {
        id: r.try_get("id").map_err(map_err)?,
        cart_id: r.try_get("cart_id").map_err(map_err)?,
        api_key_id: r.try_get("api_key_id").map_err(map_err)?,
        seller_id: r.try_get("seller_id").map_err(map_err)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Other(format!("unknown order status {status:?}")))?,
        payment_rail: r.try_get("payment_rail").map_err(map_err)?,
        session_id: r.try_get("session_id").map_err(map_err)?,
        payment_url: r.try_get("payment_url").map_err(map_err)?,
        payment_reference: r.try_get("payment_reference").map_err(map_err)?,
        lines: serde_json::from_str(&lines).map_err(json_err)?,
        subtotal_cents: r.try_get("subtotal_cents").map_err(map_err)?,
        delivery_fee_cents: r.try_get("delivery_fee_cents").map_err(map_err)?,
        total_cents: r.try_get("total_cents").map_err(map_err)?,
        currency: r.try_get("currency").map_err(map_err)?,
        shipping_address: serde_json::from_str(&address).map_err(json_err)?,
        email: r.try_get("email").map_err(map_err)?,
        expires_at: r.try_get("expires_at").map_err(map_err)?,
        paid_at: r.try_get("paid_at").map_err(map_err)?,
        shipped_at: r.try_get("shipped_at").map_err(map_err)?,
        carrier: r.try_get("carrier").map_err(map_err)?,
        tracking_number: r.try_get("tracking_number").map_err(map_err)?,
        tracking_url: r.try_get("tracking_url").map_err(map_err)?,
        delivered_at: r.try_get("delivered_at").map_err(map_err)?,
        closed_at: r.try_get("closed_at").map_err(map_err)?,
        settlement_credential: r
            .try_get::<Option<String>, _>("settlement_credential")
            .map_err(map_err)?
            .map(Credential),
        buyer_id: r.try_get("buyer_id").map_err(map_err)?,
        created_at: r.try_get("created_at").map_err(map_err)?,
        updated_at: r.try_get("updated_at").map_err(map_err)?,
    })
}

/// Reads an order by id or by its provider session id.
pub(super) async fn get<'e, E>(executor: E, id_or_session: &str) -> StoreResult<Option<Order>>
where
    E: sql::Executor<'e>,
{
    let sql = select_orders!("WHERE id = $1 OR session_id = $1 LIMIT 1");
    let row = sql::query(sql).bind(id_or_session).fetch_optional(executor).await.map_err(map_err)?;
    row.as_ref().map(order_from_row).transpose()
}

/// Unpaid orders whose payment window closed before `now`, oldest first.
/// A buyer's orders, newest change first: those made with one of the buyer's tokens and those placed
/// with the buyer's (verified) e-mail address.
pub(super) async fn list_for_buyer(
    pool: &DbPool,
    buyer_id: &str,
    email: &str,
    since: i64,
    limit: i64,
) -> StoreResult<Vec<Order>> {
    let sql = select_orders!(
        "WHERE (buyer_id = $1 OR lower(email) = $2) AND updated_at > $3 ORDER BY updated_at DESC, id DESC LIMIT $4"
    );
    let rows = sql::query(sql)
        .bind(buyer_id)
        .bind(email)
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter().map(order_from_row).collect()
}

pub(super) async fn list_overdue(pool: &DbPool, now: i64, limit: i64) -> StoreResult<Vec<Order>> {
    let sql =
        select_orders!("WHERE status = 'pending_payment' AND expires_at < $1 ORDER BY expires_at LIMIT $2");
    let rows = sql::query(sql).bind(now).bind(limit).fetch_all(pool).await.map_err(map_err)?;
    rows.iter().map(order_from_row).collect()
}

/// Inserts an order `pending_payment`. A session id used before is a [`StoreError::Conflict`].
pub(super) async fn insert(conn: &mut Conn, order: &NewOrder, now: i64) -> StoreResult<()> {
    let lines = serde_json::to_string(&order.lines).map_err(json_err)?;
    let address = serde_json::to_string(&order.shipping_address).map_err(json_err)?;
    let result = sql::query(
        "INSERT INTO orders (id, cart_id, api_key_id, seller_id, status, payment_rail, session_id, payment_url, lines, subtotal_cents, delivery_fee_cents, total_cents, currency, shipping_address, email, expires_at, settlement_credential, buyer_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'pending_payment', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $17, $18, $16, $16)
         ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(&order.id)
    .bind(&order.cart_id)
    .bind(&order.api_key_id)
    .bind(&order.seller_id)
    .bind(&order.payment_rail)
    .bind(&order.session_id)
    .bind(&order.payment_url)
    .bind(lines)
    .bind(order.subtotal_cents)
    .bind(order.delivery_fee_cents)
    .bind(order.total_cents)
    .bind(&order.currency)
    .bind(address)
    .bind(&order.email)
    .bind(order.expires_at)
    .bind(now)
    .bind(order.settlement_credential.as_ref().map(|c| c.0.as_str()))
    .bind(&order.buyer_id)
    .execute(conn)
    .await
    .map_err(map_err)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("session {} already has an order", order.session_id)));
    }
    Ok(())
}

/// Holds stock for every line, or for none: the first line that does not fit is reported and the
/// caller rolls the transaction back.
pub(super) async fn reserve(conn: &mut Conn, lines: &[OrderLine]) -> StoreResult<Result<(), OutOfStock>> {
    for line in lines {
        let held = sql::query(
            "UPDATE variants SET reserved = reserved + $2
             WHERE id = $1 AND (inventory IS NULL OR inventory - reserved >= $2)",
        )
        .bind(&line.variant_id)
        .bind(line.quantity)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
        if held.rows_affected() == 0 {
            let available: Option<i64> =
                sql::query_scalar("SELECT inventory - reserved FROM variants WHERE id = $1")
                    .bind(&line.variant_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(map_err)?
                    .flatten();
            return Ok(Err(OutOfStock {
                variant_id: line.variant_id.clone(),
                requested: line.quantity,
                available: available.unwrap_or(0).max(0),
            }));
        }
    }
    Ok(Ok(()))
}

/// Gives reserved units back (`sold = false`) or turns them into a sale (`sold = true`).
async fn settle_reservation(conn: &mut Conn, lines: &[OrderLine], sold: bool) -> StoreResult<()> {
    let sql = if sold {
        "UPDATE variants SET reserved = CASE WHEN reserved > $2 THEN reserved - $2 ELSE 0 END,
             inventory = CASE WHEN inventory IS NULL THEN NULL WHEN inventory > $2 THEN inventory - $2 ELSE 0 END
         WHERE id = $1"
    } else {
        "UPDATE variants SET reserved = CASE WHEN reserved > $2 THEN reserved - $2 ELSE 0 END WHERE id = $1"
    };
    for line in lines {
        sql::query(sql)
            .bind(&line.variant_id)
            .bind(line.quantity)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

async fn reread(conn: &mut Conn, order_id: &str) -> StoreResult<Order> {
    get(&mut *conn, order_id).await?.ok_or_else(|| StoreError::NotFound(order_id.to_string()))
}

/// `pending_payment → paid`: the reservation becomes a sale and the cart is completed.
pub(super) async fn mark_paid(
    conn: &mut Conn,
    order_id: &str,
    payment_reference: Option<&str>,
    now: i64,
) -> StoreResult<OrderTransition> {
    let moved = sql::query(
        "UPDATE orders SET status = 'paid', settlement_credential = NULL, payment_reference = COALESCE($2, payment_reference), paid_at = $3, updated_at = $3
         WHERE id = $1 AND status = 'pending_payment'",
    )
    .bind(order_id)
    .bind(payment_reference)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    let order = reread(conn, order_id).await?;
    if moved.rows_affected() == 0 {
        return Ok(OrderTransition::Refused(order));
    }
    settle_reservation(conn, &order.lines, true).await?;
    sql::query(
        "UPDATE carts SET status = 'completed', version = version + 1, updated_at = $3 WHERE id = $1 AND order_id = $2",
    )
    .bind(&order.cart_id)
    .bind(order_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(OrderTransition::Applied(order))
}

/// `pending_payment → failed | expired | cancelled`: the stock comes back and the cart reopens.
pub(super) async fn close_unpaid(
    conn: &mut Conn,
    order_id: &str,
    to: OrderStatus,
    now: i64,
) -> StoreResult<OrderTransition> {
    if !to.is_unpaid_end() {
        return Err(StoreError::Other(format!("{} is not an unpaid end state", to.as_str())));
    }
    let moved = sql::query(
        "UPDATE orders SET status = $2, settlement_credential = NULL, closed_at = $3, updated_at = $3 WHERE id = $1 AND status = 'pending_payment'",
    )
    .bind(order_id)
    .bind(to.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    let order = reread(conn, order_id).await?;
    if moved.rows_affected() == 0 {
        return Ok(OrderTransition::Refused(order));
    }
    settle_reservation(conn, &order.lines, false).await?;
    sql::query(
        "UPDATE carts SET status = 'open', order_id = NULL, version = version + 1, updated_at = $3
         WHERE id = $1 AND order_id = $2 AND status = 'checkout_pending'",
    )
    .bind(&order.cart_id)
    .bind(order_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(OrderTransition::Applied(order))
}

/// Records where a hosted payment page lives once the provider made it.
pub(super) async fn set_session(
    conn: &mut Conn,
    order_id: &str,
    session_id: &str,
    payment_url: &str,
    expires_at: Option<i64>,
    now: i64,
) -> StoreResult<Order> {
    sql::query(
        "UPDATE orders SET session_id = $2, payment_url = $3, expires_at = COALESCE($4, expires_at), updated_at = $5 WHERE id = $1",
    )
    .bind(order_id)
    .bind(session_id)
    .bind(payment_url)
    .bind(expires_at)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    reread(conn, order_id).await
}

/// `paid → shipped` (or new tracking for a shipped order).
pub(super) async fn ship(
    conn: &mut Conn,
    order_id: &str,
    shipment: &Shipment,
    now: i64,
) -> StoreResult<OrderTransition> {
    let moved = sql::query(
        "UPDATE orders SET status = 'shipped', shipped_at = COALESCE(shipped_at, $5), carrier = $2, tracking_number = $3, tracking_url = $4, updated_at = $5
         WHERE id = $1 AND status IN ('paid', 'shipped')",
    )
    .bind(order_id)
    .bind(&shipment.carrier)
    .bind(&shipment.tracking_number)
    .bind(&shipment.tracking_url)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    transition_outcome(conn, order_id, moved.rows_affected()).await
}

/// `paid | shipped → delivered`.
pub(super) async fn deliver(conn: &mut Conn, order_id: &str, now: i64) -> StoreResult<OrderTransition> {
    let moved = sql::query(
        "UPDATE orders SET status = 'delivered', delivered_at = $2, shipped_at = COALESCE(shipped_at, $2), updated_at = $2
         WHERE id = $1 AND status IN ('paid', 'shipped')",
    )
    .bind(order_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    transition_outcome(conn, order_id, moved.rows_affected()).await
}

async fn transition_outcome(conn: &mut Conn, order_id: &str, moved: u64) -> StoreResult<OrderTransition> {
    let order = reread(conn, order_id).await?;
    Ok(if moved == 0 { OrderTransition::Refused(order) } else { OrderTransition::Applied(order) })
}

/// Locks the cart for checkout and links it to its order.
pub(super) async fn lock_cart(conn: &mut Conn, cart_id: &str, order_id: &str, now: i64) -> StoreResult<()> {
    let r = sql::query(
        "UPDATE carts SET status = 'checkout_pending', order_id = $2, version = version + 1, updated_at = $3
         WHERE id = $1 AND status = 'open'",
    )
    .bind(cart_id)
    .bind(order_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    if r.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!("cart {cart_id} is not open")))
    }
}

/// Records a provider event; `false` when it was recorded before (a duplicate delivery).
pub(super) async fn record_event(
    conn: &mut Conn,
    source: &str,
    event_id: &str,
    order_id: Option<&str>,
    now: i64,
) -> StoreResult<bool> {
    let r = sql::query(
        "INSERT INTO payment_events (source, event_id, order_id, received_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (source, event_id) DO NOTHING",
    )
    .bind(source)
    .bind(event_id)
    .bind(order_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn insert_link(
    conn: &mut Conn,
    code: &str,
    url: &str,
    cart_id: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    sql::query(
        "INSERT INTO redirect_links (code, url, cart_id, clicks, created_at) VALUES ($1, $2, $3, 0, $4)
         ON CONFLICT (code) DO NOTHING",
    )
    .bind(code)
    .bind(url)
    .bind(cart_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Counts a click and returns the target, or `None` for an unknown code.
pub(super) async fn follow_link(pool: &DbPool, code: &str) -> StoreResult<Option<(String, i64)>> {
    let row =
        sql::query("UPDATE redirect_links SET clicks = clicks + 1 WHERE code = $1 RETURNING url, clicks")
            .bind(code)
            .fetch_optional(pool)
            .await
            .map_err(map_err)?;
    row.map(|r| Ok((r.try_get("url").map_err(map_err)?, r.try_get("clicks").map_err(map_err)?))).transpose()
}
