//! Hosted pay pages, `/sandbox/pay/{id}` for Stripe sessions (`cs_…`) and Coinbase charges (by code):
//! one small self-contained HTML page with the amount, the items and two plain HTML forms, "Pay" and
//! "Decline" (no JavaScript, so any browser or `curl -X POST` can drive it). Both buttons go through
//! the same signed-webhook path a real provider uses; afterwards the buyer is sent (303) to the
//! success or cancel URL when the merchant gave one, or shown a result page.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use kifly_core::money::cents_to_decimal;

use super::{Ledger, Sandbox, coinbase, now_unix, stripe};

/// What a pay page shows.
pub(super) struct PageView {
    pub(super) provider: &'static str,
    pub(super) title: String,
    /// `(name, quantity, unit amount in cents)`.
    pub(super) lines: Vec<(String, i64, i64)>,
    pub(super) amount_cents: i64,
    pub(super) currency: String,
    pub(super) status: String,
    pub(super) payable: bool,
}

/// The result of pressing Pay or Decline.
pub(super) enum Outcome {
    NotFound,
    /// Not open any more (complete, expired…): nothing changes, no webhook.
    NotPayable(String),
    Done {
        paid: bool,
        redirect: Option<String>,
    },
}

fn is_stripe(id: &str) -> bool {
    id.starts_with("cs_")
}

fn view(ledger: &Ledger, id: &str) -> Option<PageView> {
    if is_stripe(id) {
        ledger.sessions.get(id).map(stripe::SessionRecord::view)
    } else {
        ledger.charges.get(id).map(coinbase::ChargeRecord::view)
    }
}

pub(super) async fn show(State(sandbox): State<Sandbox>, Path(id): Path<String>) -> Response {
    match sandbox.with_ledger(|ledger, _| view(ledger, &id)) {
        Some(view) => page(StatusCode::OK, &view.title, &pay_form(&id, &view)),
        None => not_found(),
    }
}

pub(super) async fn pay(State(sandbox): State<Sandbox>, Path(id): Path<String>) -> Response {
    act(&sandbox, &id, true)
}

pub(super) async fn decline(State(sandbox): State<Sandbox>, Path(id): Path<String>) -> Response {
    act(&sandbox, &id, false)
}

fn act(sandbox: &Sandbox, id: &str, paid: bool) -> Response {
    let outcome = sandbox.with_ledger(|ledger, events| {
        if is_stripe(id) {
            stripe::settle_session(ledger, events, id, paid, now_unix())
        } else {
            coinbase::settle_charge(ledger, events, id, paid, now_unix())
        }
    });
    match outcome {
        Outcome::NotFound => not_found(),
        Outcome::NotPayable(status) => page(
            StatusCode::CONFLICT,
            "Cannot be paid",
            &format!(
                "<p>This payment is <strong>{}</strong> and can no longer be paid or declined.</p>",
                escape(&status)
            ),
        ),
        Outcome::Done { paid, redirect } => {
            if let Some(location) = redirect.and_then(|url| HeaderValue::from_str(&url).ok()) {
                return (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            }
            let (title, text) = if paid {
                ("Payment succeeded", "The payment went through. The merchant has been notified.")
            } else {
                ("Payment declined", "The payment was declined. The merchant has been notified.")
            };
            page(StatusCode::OK, title, &format!("<p>{text} You can close this page.</p>"))
        }
    }
}

fn money(cents: i64, currency: &str) -> String {
    format!("{} {}", cents_to_decimal(cents), escape(&currency.to_ascii_uppercase()))
}

fn pay_form(id: &str, view: &PageView) -> String {
    let rows: String = view
        .lines
        .iter()
        .map(|(name, quantity, unit)| {
            format!(
                "<tr><td>{}</td><td>{quantity} × {}</td><td>{}</td></tr>",
                escape(name),
                money(*unit, &view.currency),
                money(unit.saturating_mul(*quantity), &view.currency)
            )
        })
        .collect();
    let total = money(view.amount_cents, &view.currency);
    let actions = if view.payable {
        let id = escape(id);
        format!(
            "<form method=\"post\" action=\"/sandbox/pay/{id}/pay\"><button class=\"pay\">Pay {total}</button></form>\
             <form method=\"post\" action=\"/sandbox/pay/{id}/decline\"><button class=\"decline\">Decline</button></form>"
        )
    } else {
        format!("<p>This payment is <strong>{}</strong>.</p>", escape(&view.status))
    };
    format!(
        "<p class=\"provider\">{}</p><table>{rows}<tr class=\"total\"><td>Total</td><td></td><td>{total}</td></tr></table>{actions}",
        view.provider
    )
}

fn not_found() -> Response {
    page(StatusCode::NOT_FOUND, "Not found", "<p>No such payment.</p>")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = escape(title);
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><main><h1>{title}</h1>{body}\
         <p class=\"note\">Kifly payment sandbox: test mode, no money moves.</p></main></body></html>"
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f6f7f9;margin:0}\
main{max-width:30rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.3rem}table{width:100%;border-collapse:collapse;margin:1rem 0}td{padding:.3rem 0}\
td:last-child{text-align:right}.total td{border-top:1px solid #ddd;font-weight:bold}\
form{display:inline}button{font-size:1rem;padding:.6rem 1.2rem;margin-right:.5rem;border:0;border-radius:6px;cursor:pointer}\
.pay{background:#635bff;color:#fff}.decline{background:#eee}.provider,.note{color:#666;font-size:.85rem}";

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
