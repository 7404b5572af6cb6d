//! Provider webhooks: the only way a hosted payment page (Stripe Checkout, Coinbase Commerce) marks
//! an order paid.
//!
//! Each delivery is verified (signature over the raw body; Stripe also within 300 s), then applied in
//! one transaction that first records the event id: a duplicate delivery finds the id taken and
//! changes nothing. Transitions are the store's conditional updates, so an order only ever moves
//! forward — a late `expired` cannot undo `paid`, and `paid` after `cancelled` is logged for a human
//! (the provider has the money; refunding is an operator decision) instead of reviving the order.

use std::time::Duration;

use kifly_payments::coinbase::{self, CoinbaseEventKind};
use kifly_payments::stripe::{self, CheckoutPaymentStatus, CheckoutSessionStatus, StripeEventKind};
use kifly_store::{OrderStatus, OrderTransition};
use serde_json::{Value, json};

use crate::app::{App, now_ms};
use crate::error::{ApiError, ApiResult};

/// What a verified event asks of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Paid,
    Close(OrderStatus),
    Nothing,
}

/// `POST /api/webhooks/stripe`.
pub async fn stripe_webhook(app: &App, payload: &[u8], signature: Option<&str>) -> ApiResult<Value> {
    let signature = signature.ok_or_else(|| bad_signature("Stripe-Signature", "missing"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let event = stripe::construct_event(
        payload,
        signature,
        app.payments.stripe_webhook_secret.expose(),
        Duration::from_secs(300),
        now,
    )
    .map_err(|e| bad_signature("Stripe-Signature", &e.to_string()))?;
    let (session, effect, reference) = match &event.kind {
        StripeEventKind::CheckoutSessionCompleted(s) if s.payment_status != CheckoutPaymentStatus::Unpaid => {
            (Some(s.id.clone()), Effect::Paid, s.payment_intent.clone())
        }
        StripeEventKind::CheckoutSessionAsyncPaymentSucceeded(s) => {
            (Some(s.id.clone()), Effect::Paid, s.payment_intent.clone())
        }
        StripeEventKind::CheckoutSessionAsyncPaymentFailed(s) => {
            (Some(s.id.clone()), Effect::Close(OrderStatus::Failed), None)
        }
        StripeEventKind::CheckoutSessionExpired(s) => {
            (Some(s.id.clone()), Effect::Close(OrderStatus::Expired), None)
        }
        _ => (None, Effect::Nothing, None),
    };
    apply(app, "stripe", &event.id, session.as_deref(), effect, reference.as_deref()).await
}

/// `POST /api/webhooks/coinbase`.
pub async fn coinbase_webhook(app: &App, payload: &[u8], signature: Option<&str>) -> ApiResult<Value> {
    let signature = signature.ok_or_else(|| bad_signature("X-CC-Webhook-Signature", "missing"))?;
    let event = coinbase::construct_event(payload, signature, app.payments.coinbase_webhook_secret.expose())
        .map_err(|e| bad_signature("X-CC-Webhook-Signature", &e.to_string()))?;
    let effect = match event.kind {
        ref kind if kind.is_paid() => Effect::Paid,
        CoinbaseEventKind::Failed => Effect::Close(OrderStatus::Failed),
        CoinbaseEventKind::Expired => Effect::Close(OrderStatus::Expired),
        _ => Effect::Nothing,
    };
    let code = event.charge.code.clone();
    let reference = event.charge.id.clone();
    apply(app, "coinbase", &event.id, Some(&code), effect, Some(&reference)).await
}

fn bad_signature(header: &str, why: &str) -> ApiError {
    tracing::warn!(header, reason = why, "webhook rejected");
    ApiError::invalid_request(header, format!("{header} does not verify ({why})"))
}

/// Records the event and applies its effect, in one transaction.
async fn apply(
    app: &App,
    source: &str,
    event_id: &str,
    session: Option<&str>,
    effect: Effect,
    reference: Option<&str>,
) -> ApiResult<Value> {
    let mut tx = app.store.begin_write().await?;
    let order = match session {
        Some(session) => tx.get_order(session).await?,
        None => None,
    };
    let order_id = order.as_ref().map(|o| o.id.clone());
    if !tx.record_payment_event(source, event_id, order_id.as_deref(), now_ms()).await? {
        return Ok(json!({"received": true, "duplicate": true}));
    }
    let applied = match (order, effect) {
        (Some(order), Effect::Paid) => match tx.mark_order_paid(&order.id, reference, now_ms()).await? {
            OrderTransition::Applied(_) => {
                metrics::counter!("kifly_orders_paid_total", "rail" => order.payment_rail.clone())
                    .increment(1);
                true
            }
            OrderTransition::Refused(current) => {
                if current.status.is_unpaid_end() {
                    tracing::error!(
                        order_id = %current.id, status = current.status.as_str(), source,
                        "payment received for an order that is no longer payable; refund or fulfil by hand"
                    );
                }
                false
            }
        },
        (Some(order), Effect::Close(to)) => {
            matches!(tx.close_unpaid_order(&order.id, to, now_ms()).await?, OrderTransition::Applied(_))
        }
        _ => false,
    };
    tx.commit().await?;
    Ok(json!({"received": true, "applied": applied}))
}

/// Asks the provider what became of an overdue hosted page (the webhook may have been lost) and
/// applies the answer; a page still open past its expiry is expired.
pub async fn reconcile_hosted(app: &App, order: &kifly_store::Order) -> ApiResult<()> {
    let unavailable = |e: kifly_payments::ProviderError| {
        tracing::warn!(order_id = %order.id, error = %e, "could not reconcile an overdue order");
        ApiError::checkout_engine_unavailable(30)
    };
    let effect = if order.session_id.starts_with("unset:") {
        // The page was never made (the provider was down and nobody retried).
        (Effect::Close(OrderStatus::Expired), None)
    } else if order.payment_rail == "coinbase-commerce" {
        let charge = app.payments.coinbase.retrieve_charge(&order.session_id).await.map_err(unavailable)?;
        match charge.latest_status() {
            Some("COMPLETED" | "RESOLVED") => (Effect::Paid, Some(charge.id)),
            _ => (Effect::Close(OrderStatus::Expired), None),
        }
    } else {
        let session =
            app.payments.stripe.retrieve_checkout_session(&order.session_id).await.map_err(unavailable)?;
        match (session.status, session.payment_status) {
            (_, CheckoutPaymentStatus::Paid | CheckoutPaymentStatus::NoPaymentRequired) => {
                (Effect::Paid, session.payment_intent)
            }
            (Some(CheckoutSessionStatus::Open), _) => {
                // Past its expiry but still open: ask Stripe to expire it, then expire ours.
                let key = format!("expire:{}", session.id);
                app.payments.stripe.expire_checkout_session(&session.id, &key).await.map_err(unavailable)?;
                (Effect::Close(OrderStatus::Expired), None)
            }
            _ => (Effect::Close(OrderStatus::Expired), None),
        }
    };
    let event_id = format!("reconcile:{}", order.id);
    apply(app, "sweep", &event_id, Some(&order.session_id), effect.0, effect.1.as_deref()).await.map(|_| ())
}
