//! The sandbox served on 127.0.0.1:0 and driven by the real clients of `kifly-payments`, with a tiny
//! webhook receiver standing in for Kifly's own webhook endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use k256::ecdsa::SigningKey;
use kifly_payments::coinbase::{self, CoinbaseClient, CoinbaseConfig, CoinbaseEventKind, CreateCharge};
use kifly_payments::stripe::{
    self, CheckoutLineItem, CheckoutPaymentStatus, CheckoutSessionStatus, CreateCheckoutSession,
    CreateSptPaymentIntent, GrantTestToken, PaymentIntentStatus, SptParameter, StripeClient, StripeConfig,
    StripeEventKind,
};
use kifly_payments::x402::{
    self, BASE_SEPOLIA, ExactOffer, FacilitatorClient, FacilitatorConfig, FacilitatorRequest,
};
use kifly_payments::{Idempotent, ProviderError};
use serde_json::Value;
use tokio::sync::mpsc;

use super::*;

const SECRET_KEY: &str = "sk_test_kifly_sandbox";
const WEBHOOK_SECRET: &str = "whsec_kifly_sandbox";
const COINBASE_KEY: &str = "cc_kifly_sandbox";
const COINBASE_SECRET: &str = "cc_whsec_kifly_sandbox";

struct Hook {
    provider: String,
    headers: HeaderMap,
    body: Bytes,
}

struct Harness {
    base: String,
    sandbox: Sandbox,
    hooks: mpsc::UnboundedReceiver<Hook>,
}

impl Harness {
    /// A sandbox whose webhook receiver answers 500 to its first `failures` deliveries.
    async fn start(failures: usize) -> Self {
        let (sender, hooks) = mpsc::unbounded_channel();
        let seen = Arc::new(AtomicUsize::new(0));
        let receiver = Router::new().route(
            "/api/webhooks/{provider}",
            post(move |Path(provider): Path<String>, headers: HeaderMap, body: Bytes| {
                let (sender, seen) = (sender.clone(), seen.clone());
                async move {
                    sender.send(Hook { provider, headers, body }).unwrap();
                    if seen.fetch_add(1, Ordering::SeqCst) < failures {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let (hooks_base, listener) = bind().await;
        tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
        let (base, listener) = bind().await;
        let sandbox = Sandbox::new(SandboxConfig {
            stripe_secret_key: SECRET_KEY.into(),
            stripe_webhook_secret: WEBHOOK_SECRET.into(),
            coinbase_api_key: COINBASE_KEY.into(),
            coinbase_webhook_secret: COINBASE_SECRET.into(),
            webhook_base_url: hooks_base,
            public_base_url: base.clone(),
        });
        let router = sandbox.router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { base, sandbox, hooks }
    }

    fn stripe(&self) -> StripeClient {
        self.stripe_with(StripeConfig::new(SECRET_KEY))
    }

    fn stripe_with(&self, config: StripeConfig) -> StripeClient {
        StripeClient::new(config.with_base_url(format!("{}/sandbox/stripe", self.base))).unwrap()
    }

    fn coinbase(&self, key: &str) -> CoinbaseClient {
        CoinbaseClient::new(CoinbaseConfig::new(key).with_base_url(format!("{}/sandbox/coinbase", self.base)))
            .unwrap()
    }

    async fn next_hook(&mut self) -> Hook {
        tokio::time::timeout(Duration::from_secs(10), self.hooks.recv()).await.unwrap().unwrap()
    }

    /// Presses a button on a pay page, without following the redirect.
    async fn press(&self, id: &str, button: &str) -> reqwest::Response {
        browser().post(format!("{}/sandbox/pay/{id}/{button}", self.base)).send().await.unwrap()
    }
}

async fn bind() -> (String, tokio::net::TcpListener) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (format!("http://{}", listener.local_addr().unwrap()), listener)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn session_request() -> CreateCheckoutSession {
    CreateCheckoutSession {
        line_items: vec![
            CheckoutLineItem { name: "Enamel <Mug>".into(), unit_amount_cents: 1250, quantity: 2 },
            CheckoutLineItem { name: "Delivery".into(), unit_amount_cents: 500, quantity: 1 },
        ],
        currency: "usd".into(),
        customer_email: Some("ada@example.com".into()),
        shipping: None,
        collect_shipping_countries: Vec::new(),
        client_reference_id: Some("ord_1".into()),
        metadata: BTreeMap::from([("order_id".to_string(), "ord_1".to_string())]),
        expires_at: now_unix() + 3600,
        success_url: "https://shop.example/ok?session={CHECKOUT_SESSION_ID}".into(),
        cancel_url: Some("https://shop.example/cancel".into()),
    }
}

fn grant(payment_method: &str, max_amount_cents: i64) -> GrantTestToken {
    GrantTestToken {
        payment_method: payment_method.into(),
        currency: "usd".into(),
        max_amount_cents,
        expires_at: now_unix() + 600,
        network_id: Some("profile_kifly_sandbox".into()),
    }
}

fn spt_intent(token: &str, amount_cents: i64) -> CreateSptPaymentIntent {
    CreateSptPaymentIntent {
        amount_cents,
        currency: "usd".into(),
        shared_payment_token: token.into(),
        description: None,
        metadata: BTreeMap::from([("challenge_id".to_string(), "ch_1".to_string())]),
        shipping: None,
    }
}

fn invalid_code(error: ProviderError) -> (u16, Option<String>) {
    match error {
        ProviderError::InvalidRequest { status, code, .. } => (status, code),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

fn stripe_event(hook: &Hook) -> stripe::StripeEvent {
    assert_eq!(hook.provider, "stripe");
    let header = hook.headers.get(stripe::SIGNATURE_HEADER).unwrap().to_str().unwrap();
    stripe::construct_event(&hook.body, header, WEBHOOK_SECRET, stripe::WEBHOOK_TOLERANCE, now_unix())
        .unwrap()
}

#[tokio::test]
async fn checkout_session_create_retrieve_replay_conflict_expire() {
    let mut harness = Harness::start(0).await;
    let client = harness.stripe();
    let request = session_request();
    let Idempotent { value: session, replayed } =
        client.create_checkout_session(&request, "checkout:ord_1").await.unwrap();
    assert!(!replayed && session.id.starts_with("cs_test_") && !session.livemode);
    assert_eq!(session.status, Some(CheckoutSessionStatus::Open));
    assert_eq!(session.payment_status, CheckoutPaymentStatus::Unpaid);
    assert_eq!(session.amount_total, Some(3000));
    assert_eq!(session.url, Some(format!("{}/sandbox/pay/{}", harness.base, session.id)));
    assert_eq!(session.metadata["order_id"], "ord_1");
    assert_eq!(session.client_reference_id.as_deref(), Some("ord_1"));

    let again = client.create_checkout_session(&request, "checkout:ord_1").await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.value, session);

    let mut changed = request.clone();
    changed.line_items[0].quantity = 3;
    let conflict = client.create_checkout_session(&changed, "checkout:ord_1").await.unwrap_err();
    assert_eq!(invalid_code(conflict), (400, Some("idempotency_error".into())));

    assert_eq!(client.retrieve_checkout_session(&session.id).await.unwrap(), session);
    let url = format!("{}/sandbox/stripe/v1/checkout/sessions/{}", harness.base, session.id);
    let bearer = reqwest::Client::new().get(url).bearer_auth(SECRET_KEY).send().await.unwrap();
    assert_eq!(bearer.status(), 200, "Bearer works as well as Basic");
    let missing = client.retrieve_checkout_session("cs_test_nope").await.unwrap_err();
    assert_eq!(invalid_code(missing), (404, Some("resource_missing".into())));

    let expired = client.expire_checkout_session(&session.id, "expire:1").await.unwrap().value;
    assert_eq!((expired.status, expired.url), (Some(CheckoutSessionStatus::Expired), None));
    let event = stripe_event(&harness.next_hook().await);
    assert_eq!(event.event_type, "checkout.session.expired");
    assert!(event.id.starts_with("evt_test_") && !event.livemode);
    let again = client.expire_checkout_session(&session.id, "expire:2").await.unwrap_err();
    assert_eq!(invalid_code(again).0, 400);

    let stranger = harness.stripe_with(StripeConfig::new("sk_test_wrong"));
    assert_eq!(invalid_code(stranger.retrieve_checkout_session(&session.id).await.unwrap_err()).0, 401);
    let mut bad = request.clone();
    bad.expires_at = now_unix() + 60;
    let too_soon = client.create_checkout_session(&bad, "checkout:bad").await.unwrap_err();
    assert!(
        matches!(too_soon, ProviderError::InvalidRequest { status: 400, param: Some(p), .. } if p == "expires_at")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_with_one_key_make_one_session() {
    let harness = Harness::start(0).await;
    let request = session_request();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, request) = (harness.stripe(), request.clone());
            tokio::spawn(async move { client.create_checkout_session(&request, "same-key").await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut fresh = 0;
    for task in tasks {
        let Idempotent { value, replayed } = task.await.unwrap().unwrap();
        ids.push(value.id);
        fresh += usize::from(!replayed);
    }
    assert_eq!(fresh, 1);
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(harness.sandbox.with_ledger(|ledger, _| ledger.sessions.len()), 1);
}

#[tokio::test]
async fn spt_payment_intents_succeed_once_within_limits() {
    let harness = Harness::start(0).await;
    let client = harness.stripe();
    let token =
        client.create_test_granted_token(&grant("pm_card_visa", 5000), "grant:1").await.unwrap().value;
    assert!(token.id.starts_with("spt_test_") && !token.livemode);
    assert_eq!(token.usage_limits.as_ref().map(|l| l.max_amount), Some(5000));

    let Idempotent { value: intent, replayed } =
        client.create_payment_intent_with_spt(&spt_intent(&token.id, 4199), "mpp:c1").await.unwrap();
    assert!(!replayed && intent.id.starts_with("pi_test_") && !intent.livemode);
    assert_eq!((intent.status, intent.amount), (PaymentIntentStatus::Succeeded, 4199));
    assert_eq!(intent.metadata["challenge_id"], "ch_1");
    assert!(intent.latest_charge.is_some());
    assert_eq!(client.retrieve_payment_intent(&intent.id).await.unwrap(), intent);
    let replay = client.create_payment_intent_with_spt(&spt_intent(&token.id, 4199), "mpp:c1").await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.value.id, intent.id);

    let reused =
        client.create_payment_intent_with_spt(&spt_intent(&token.id, 4199), "mpp:c2").await.unwrap_err();
    assert_eq!(invalid_code(reused), (400, Some("shared_payment_granted_token_used".into())));
    let small =
        client.create_test_granted_token(&grant("pm_card_visa", 1000), "grant:2").await.unwrap().value;
    let over =
        client.create_payment_intent_with_spt(&spt_intent(&small.id, 4199), "mpp:c3").await.unwrap_err();
    assert_eq!(invalid_code(over), (400, Some("shared_payment_granted_token_max_amount_exceeded".into())));
    let unknown =
        client.create_payment_intent_with_spt(&spt_intent("spt_nope", 100), "mpp:c4").await.unwrap_err();
    assert_eq!(invalid_code(unknown), (400, Some("resource_missing".into())));

    // The other documented placement of the token works too.
    let nested = harness.stripe_with(StripeConfig {
        spt_parameter: SptParameter::PaymentMethodData,
        ..StripeConfig::new(SECRET_KEY)
    });
    let intent = nested.create_payment_intent_with_spt(&spt_intent(&small.id, 999), "mpp:c5").await.unwrap();
    assert_eq!(intent.value.status, PaymentIntentStatus::Succeeded);
}

#[tokio::test]
async fn declined_card_is_a_decline_with_the_payment_intent() {
    let harness = Harness::start(0).await;
    let client = harness.stripe();
    let token = client.create_test_granted_token(&grant("pm_card_chargeDeclined", 5000), "g").await.unwrap();
    let error = client.create_payment_intent_with_spt(&spt_intent(&token.value.id, 4199), "mpp:d1").await;
    let Err(ProviderError::Declined { code, decline_code, payment_intent_id: Some(id), .. }) = error else {
        panic!("expected a decline, got {error:?}");
    };
    assert_eq!((code.as_str(), decline_code.as_deref()), ("card_declined", Some("generic_decline")));
    let intent = client.retrieve_payment_intent(&id).await.unwrap();
    assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(intent.last_payment_error.and_then(|e| e.decline_code).as_deref(), Some("generic_decline"));
}

#[tokio::test]
async fn spt_helper_accepts_the_mppx_request() {
    let harness = Harness::start(0).await;
    let url = format!("{}/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens", harness.base);
    // Exactly what mppx 0.11.0 sends: its own test key as basic user, the preview version, this form.
    let expires_at = (now_unix() + 300).to_string();
    let form = [
        ("payment_method", "pm_card_visa"),
        ("usage_limits[currency]", "usd"),
        ("usage_limits[max_amount]", "4199"),
        ("usage_limits[expires_at]", expires_at.as_str()),
        ("seller_details[network_id]", "profile_kifly_sandbox"),
        ("metadata[cart_id]", "cart_1"),
    ];
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let send = |authorization: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Stripe-Version", "2026-07-29.preview")
            .body(body.clone());
        match authorization {
            // reqwest sends `Basic base64("key:")`, exactly mppx's `btoa(`${key}:`)`.
            Some(key) if key.starts_with("sk_test_") => request = request.basic_auth(key, None::<&str>),
            Some(key) => request = request.bearer_auth(key),
            None => {}
        }
        request.send()
    };
    let answer = send(Some("sk_test_the_agents_own_key")).await.unwrap();
    assert_eq!(answer.status(), 200);
    let token: Value = answer.json().await.unwrap();
    let id = token["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("spt_test_"));
    assert_eq!(token["metadata"]["cart_id"], "cart_1");

    for authorization in [None, Some("sk_live_not_a_test_key")] {
        let refused = send(authorization).await.unwrap();
        assert_eq!(refused.status(), 401);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["message"], "Invalid API Key provided");
    }
    // The merchant side then spends it with its own key.
    let intent =
        harness.stripe().create_payment_intent_with_spt(&spt_intent(&id, 4199), "mpp:x").await.unwrap();
    assert_eq!(intent.value.status, PaymentIntentStatus::Succeeded);
}

#[tokio::test]
async fn stripe_pay_page_pays_and_declines_through_signed_webhooks() {
    let mut harness = Harness::start(0).await;
    let client = harness.stripe();
    let session = client.create_checkout_session(&session_request(), "k1").await.unwrap().value;
    let page = browser().get(session.url.clone().unwrap()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("30.00 USD") && html.contains("Enamel &lt;Mug&gt;"));
    assert!(html.contains(&format!("action=\"/sandbox/pay/{}/pay\"", session.id)));

    let paid = harness.press(&session.id, "pay").await;
    assert_eq!(paid.status(), 303);
    assert_eq!(
        paid.headers()["location"],
        format!("https://shop.example/ok?session={}", session.id).as_str()
    );
    let event = stripe_event(&harness.next_hook().await);
    let StripeEventKind::CheckoutSessionCompleted(completed) = event.kind else { panic!("{event:?}") };
    assert_eq!(completed.payment_status, CheckoutPaymentStatus::Paid);
    let intent = client.retrieve_payment_intent(completed.payment_intent.as_deref().unwrap()).await.unwrap();
    assert_eq!((intent.status, intent.amount), (PaymentIntentStatus::Succeeded, 3000));
    assert_eq!(intent.metadata["order_id"], "ord_1");
    assert_eq!(client.retrieve_checkout_session(&session.id).await.unwrap(), completed);

    // Paying again changes nothing and sends nothing.
    assert_eq!(harness.press(&session.id, "pay").await.status(), 409);
    assert_eq!(harness.press("cs_test_unknown", "pay").await.status(), 404);

    let other = client.create_checkout_session(&session_request(), "k2").await.unwrap().value;
    let declined = harness.press(&other.id, "decline").await;
    assert_eq!(declined.headers()["location"], "https://shop.example/cancel");
    let event = stripe_event(&harness.next_hook().await);
    let StripeEventKind::CheckoutSessionAsyncPaymentFailed(failed) = event.kind else { panic!("{event:?}") };
    assert_eq!(
        (failed.id.as_str(), failed.payment_status),
        (other.id.as_str(), CheckoutPaymentStatus::Unpaid)
    );
    assert!(harness.hooks.try_recv().is_err(), "no webhook for the refused second payment");

    // A session past its expiry is expired (with its webhook) by the next request, and cannot be paid.
    let late = client.create_checkout_session(&session_request(), "k3").await.unwrap().value;
    harness
        .sandbox
        .with_ledger(|ledger, _| ledger.sessions.get_mut(&late.id).unwrap().session.expires_at = 0);
    assert_eq!(harness.press(&late.id, "pay").await.status(), 409);
    let event = stripe_event(&harness.next_hook().await);
    assert_eq!(event.event_type, "checkout.session.expired");
}

#[tokio::test]
async fn webhooks_are_retried_with_the_same_event_and_a_fresh_signature() {
    let mut harness = Harness::start(1).await;
    let session = harness.stripe().create_checkout_session(&session_request(), "k").await.unwrap().value;
    harness.press(&session.id, "pay").await;
    let first = harness.next_hook().await;
    let second = harness.next_hook().await;
    assert_eq!(first.body, second.body);
    assert_eq!(stripe_event(&second).event_type, "checkout.session.completed");
}

#[tokio::test]
async fn coinbase_charges_and_their_pay_page() {
    let mut harness = Harness::start(0).await;
    let client = harness.coinbase(COINBASE_KEY);
    let request = CreateCharge {
        name: "Trailhead Outfitters".into(),
        description: "2 × Mug".into(),
        amount_cents: 2500,
        currency: "usd".into(),
        metadata: BTreeMap::from([("order_id".to_string(), "ord_2".to_string())]),
        redirect_url: Some("https://shop.example/ok".into()),
        cancel_url: None,
    };
    let Idempotent { value: charge, replayed } =
        client.create_charge(&request, "charge:ord_2").await.unwrap();
    assert!(!replayed);
    assert_eq!(charge.hosted_url, format!("{}/sandbox/pay/{}", harness.base, charge.code));
    assert_eq!(
        charge.pricing.as_ref().map(|p| (p.local.amount.as_str(), p.local.currency.as_str())),
        Some(("25.00", "USD"))
    );
    assert_eq!((charge.latest_status(), charge.metadata["order_id"].as_str()), (Some("NEW"), "ord_2"));
    assert!(charge.expires_at.is_some());
    let again = client.create_charge(&request, "charge:ord_2").await.unwrap();
    assert!(again.replayed && again.value == charge);
    assert_eq!(client.retrieve_charge(&charge.code).await.unwrap(), charge);
    assert_eq!(client.retrieve_charge(&charge.id).await.unwrap(), charge);
    assert_eq!(invalid_code(client.retrieve_charge("NOPE1234").await.unwrap_err()).0, 404);
    let stranger = harness.coinbase("wrong");
    assert_eq!(invalid_code(stranger.retrieve_charge(&charge.code).await.unwrap_err()).0, 401);

    let html = browser().get(&charge.hosted_url).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("25.00 USD") && html.contains("Trailhead Outfitters"));
    let paid = harness.press(&charge.code, "pay").await;
    assert_eq!(paid.status(), 303);
    assert_eq!(paid.headers()["location"], "https://shop.example/ok");
    let hook = harness.next_hook().await;
    assert_eq!(hook.provider, "coinbase");
    let signature = hook.headers.get(coinbase::SIGNATURE_HEADER).unwrap().to_str().unwrap();
    let event = coinbase::construct_event(&hook.body, signature, COINBASE_SECRET).unwrap();
    assert_eq!(event.kind, CoinbaseEventKind::Confirmed);
    assert_eq!(event.charge.latest_status(), Some("COMPLETED"));
    assert_eq!(harness.press(&charge.code, "decline").await.status(), 409);

    let other = client.create_charge(&request, "charge:ord_3").await.unwrap().value;
    let declined = harness.press(&other.code, "decline").await;
    assert_eq!(declined.status(), 200, "no cancel_url: a result page");
    let hook = harness.next_hook().await;
    let signature = hook.headers.get(coinbase::SIGNATURE_HEADER).unwrap().to_str().unwrap();
    let event = coinbase::construct_event(&hook.body, signature, COINBASE_SECRET).unwrap();
    assert_eq!((event.kind, event.charge.code), (CoinbaseEventKind::Failed, other.code));
}

#[tokio::test]
async fn x402_facilitator_verifies_settles_once_and_rejects_tampering() {
    let harness = Harness::start(0).await;
    let client =
        FacilitatorClient::new(FacilitatorConfig::new(format!("{}/sandbox/x402", harness.base))).unwrap();
    let supported = client.supported().await.unwrap();
    let kinds: Vec<(u32, &str)> =
        supported.kinds.iter().map(|k| (k.x402_version, k.network.as_str())).collect();
    assert!(kinds.contains(&(2, "eip155:84532")) && kinds.contains(&(1, "base-sepolia")));
    assert!(supported.signers.contains_key("eip155:*"));

    let offer = ExactOffer {
        network: BASE_SEPOLIA,
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(),
        amount_cents: 4199,
        max_timeout_seconds: 120,
    }
    .requirements()
    .unwrap();
    let key = SigningKey::from_slice(&x402::random_nonce()).unwrap();
    let payer = x402::Address::from_signing_key(&key).to_string();
    let now = u64::try_from(now_unix()).unwrap();
    let payment =
        x402::sign_exact_payment(&key, &offer, None, now - 60, now + 120, x402::random_nonce()).unwrap();
    let request =
        FacilitatorRequest { x402_version: 2, payment_payload: payment, payment_requirements: offer.clone() };

    for _ in 0..2 {
        // Verifying does not spend the nonce.
        let verified = client.verify(&request).await.unwrap();
        assert_eq!((verified.is_valid, verified.payer.as_deref()), (true, Some(payer.as_str())));
    }
    let settled = client.settle(&request).await.unwrap();
    assert!(settled.success && settled.transaction.starts_with("0x") && settled.transaction.len() == 66);
    assert_eq!((settled.network.as_str(), settled.amount.as_deref()), ("eip155:84532", Some("41990000")));
    let again = client.settle(&request).await.unwrap();
    assert_eq!(
        (again.success, again.error_reason.as_deref()),
        (false, Some("invalid_exact_evm_nonce_already_used"))
    );
    let verified = client.verify(&request).await.unwrap();
    assert_eq!(verified.invalid_reason.as_deref(), Some("invalid_exact_evm_nonce_already_used"));

    let fresh =
        x402::sign_exact_payment(&key, &offer, None, now - 60, now + 120, x402::random_nonce()).unwrap();
    let mut tampered = FacilitatorRequest { payment_payload: fresh, ..request.clone() };
    tampered.payment_payload.payload.authorization.valid_before = (now + 999).to_string();
    let refused = client.verify(&tampered).await.unwrap();
    assert_eq!(
        (refused.is_valid, refused.invalid_reason.as_deref()),
        (false, Some("invalid_exact_evm_payload_signature"))
    );
    let refused = client.settle(&tampered).await.unwrap();
    assert_eq!(refused.error_reason.as_deref(), Some("invalid_exact_evm_payload_signature"));

    let mut elsewhere = request.clone();
    elsewhere.payment_requirements.pay_to = payer.clone();
    let refused = client.verify(&elsewhere).await.unwrap();
    assert_eq!(refused.invalid_reason.as_deref(), Some("invalid_exact_evm_payload_recipient_mismatch"));
    let garbage = reqwest::Client::new()
        .post(format!("{}/sandbox/x402/settle", harness.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
}
