//! Checkout end to end: the contract's checks and codes, the four rails through the built-in
//! sandbox (real provider clients over loopback HTTP, signed webhooks back), orders, and the
//! exactly-once cases (retries, duplicates, concurrency, a provider failing mid-payment).

use std::collections::HashSet;

use axum::http::Method;
use base64::Engine as _;
use kifly_payments::x402::{self, PaymentRequired};
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse, address, challenge_params, credential};

const SELLER: &str = "trailhead-outfitters";

/// A cart of `seller` with `quantity` × `sku` and a Denver address.
async fn ready_cart(t: &TestApp, key: &str, seller: &str, sku: &str, quantity: i64) -> String {
    let cart = t.cart(key, seller).await;
    let variant = t.variant(sku).await;
    t.write(
        Method::POST,
        &format!("/api/agent/cart/{cart}/items"),
        key,
        json!({"variant_id": variant, "quantity": quantity}),
    )
    .await
    .assert_ok(200);
    t.write(Method::PUT, &format!("/api/agent/cart/{cart}/shipping-address"), key, address("Denver", "CO"))
        .await
        .assert_ok(200);
    cart
}

/// `POST /api/agent/cart/{cart}/checkout` with extra headers and a given Idempotency-Key.
/// With an MPP credential the key travels in `X-Api-Key`, as mppx sends it.
async fn agent_checkout(
    t: &TestApp,
    key: &str,
    cart: &str,
    idem: &str,
    extra: &[(&str, &str)],
) -> TestResponse {
    let mut headers = vec![("idempotency-key", idem)];
    headers.extend_from_slice(extra);
    let bearer = if extra.iter().any(|(name, _)| *name == "authorization") {
        headers.push(("x-api-key", key));
        None
    } else {
        Some(key)
    };
    t.send(Method::POST, &format!("/api/agent/cart/{cart}/checkout"), bearer, &headers, None).await
}

/// Mints a shared payment token in the sandbox, as an agent's wallet (mppx) would.
async fn mint_spt(t: &TestApp, payment_method: &str, max_amount: i64) -> String {
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let response = reqwest::Client::new()
        .post(format!("{}/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens", t.base_url()))
        .basic_auth("sk_test_agent_wallet", None::<&str>)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("payment_method", payment_method.to_string()),
                ("usage_limits[currency]", "usd".to_string()),
                ("usage_limits[max_amount]", max_amount.to_string()),
                ("usage_limits[expires_at]", expires.to_string()),
                ("seller_details[network_id]", "profile_kifly_sandbox".to_string()),
            ])
            .expect("form"),
        )
        .send()
        .await
        .expect("mint");
    let body: Value = response.json().await.expect("json");
    body["id"].as_str().unwrap_or_else(|| panic!("no spt: {body}")).to_string()
}

/// Gets a challenge for `cart` and answers it with a token for `payment_method`.
async fn mpp_credential(t: &TestApp, key: &str, cart: &str, payment_method: &str) -> String {
    let r = agent_checkout(t, key, cart, &ulid::Ulid::new().to_string(), &[]).await;
    let body = r.assert_error(402, "payment_required");
    let params = challenge_params(r.header("www-authenticate").expect("challenge"));
    let spt = mint_spt(t, payment_method, body["details"]["amount_cents"].as_i64().expect("amount")).await;
    credential(&params, &spt)
}

async fn order(t: &TestApp, key: &str, id: &str) -> Value {
    t.get(&format!("/api/agent/orders/{id}"), key).await.assert_ok(200)
}

async fn cart_json(t: &TestApp, key: &str, cart: &str) -> Value {
    t.get(&format!("/api/agent/cart/{cart}"), key).await.assert_ok(200)
}

async fn stock(t: &TestApp, sku: &str) -> Option<i64> {
    let products = t.store.list_products(&Default::default()).await.expect("products");
    products.iter().flat_map(|p| p.variants.iter()).find(|v| v.sku == sku).expect("sku").inventory
}

/// Polls an order until `status` (webhooks arrive asynchronously).
async fn wait_for_status(t: &TestApp, key: &str, id: &str, status: &str) -> Value {
    for _ in 0..100 {
        let o = order(t, key, id).await;
        if o["status"] == status {
            return o;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("order {id} never became {status}: {}", order(t, key, id).await);
}

// --- The checks, in the contract's order ------------------------------------------------------

#[tokio::test]
async fn checkout_checks_come_in_the_contract_order_with_their_codes() {
    let t = TestApp::new().await;
    let key = &t.network_key;
    let other = t.create_key(None, &kifly_core::scope::Scope::ALL).await;
    let cart = t.cart(key, SELLER).await;
    let fresh = || ulid::Ulid::new().to_string();

    // Not the caller's cart: reported like a missing one.
    agent_checkout(&t, &other, &cart, &fresh(), &[]).await.assert_error(404, "cart_not_found");
    agent_checkout(&t, key, &cart, &fresh(), &[]).await.assert_error(400, "cart_empty");
    let jacket = t.variant("TH-BCX4").await; // $599 tent, 3 in stock
    t.write(
        Method::POST,
        &format!("/api/agent/cart/{cart}/items"),
        key,
        json!({"variant_id": jacket, "quantity": 2}),
    )
    .await
    .assert_ok(200);
    agent_checkout(&t, key, &cart, &fresh(), &[]).await.assert_error(400, "shipping_address_required");

    // Coverage: a bay-area seller does not deliver to Texas.
    let bay = ready_cart(&t, key, "bay-clothing-district", "BCD-CCT-XS-WHT", 1).await;
    t.write(Method::PUT, &format!("/api/agent/cart/{bay}/shipping-address"), key, address("Austin", "TX"))
        .await
        .assert_ok(200);
    let e = agent_checkout(&t, key, &bay, &fresh(), &[]).await.assert_error(400, "delivery_not_available");
    assert_eq!(e["details"]["coverage"]["states"], json!(["CA", "OR", "WA"]), "{e}");
    assert_eq!(e["details"]["address"]["region"], "TX");

    // The cap: 2 × $599 + delivery > $1,000.
    t.write(Method::PUT, &format!("/api/agent/cart/{cart}/shipping-address"), key, address("Denver", "CO"))
        .await
        .assert_ok(200);
    let e = agent_checkout(&t, key, &cart, &fresh(), &[]).await.assert_error(400, "cart_total_exceeds_limit");
    assert_eq!(e["details"]["max_cents"], 100_000);
    assert_eq!(e["details"]["total_cents"], 2 * 59_900 + 599);
    assert_eq!(e["max_cents"], 100_000);

    // Stock: 1 left of this variant, 2 asked.
    let shoe = ready_cart(&t, key, SELLER, "TH-RTR-12-MOS", 2).await;
    let e = agent_checkout(&t, key, &shoe, &fresh(), &[]).await.assert_error(409, "out_of_stock");
    assert_eq!(e["details"]["available"], 1);

    // The same checks on the hosted rail.
    let link = |cart: &str| json!({"cart_id": cart});
    t.write(Method::POST, "/api/agent/payment-link", key, link(&shoe))
        .await
        .assert_error(409, "out_of_stock");
    t.write(Method::POST, "/api/agent/payment-link", key, link(&bay))
        .await
        .assert_error(400, "delivery_not_available");
    t.write(Method::POST, "/api/agent/payment-link", &other, link(&cart))
        .await
        .assert_error(404, "cart_not_found");
    t.write(Method::POST, "/api/agent/payment-link", key, json!({"cart_id": cart, "rail": "paypal"}))
        .await
        .assert_error(422, "validation_error");
    t.get("/api/agent/orders/order_01JXXXXXXXXXXXXXXXXXXXXXXX", key)
        .await
        .assert_error(404, "order_not_found");
}

// --- Rail 3: MPP ----------------------------------------------------------------------------

#[tokio::test]
async fn mpp_challenge_has_no_side_effect_and_the_paid_retry_charges_once() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 2).await;
    let before = cart_json(&t, &key, &cart).await;
    let stock_before = stock(&t, "TH-ADJ-S-BLK").await.expect("tracked");

    let r = agent_checkout(&t, &key, &cart, "unpaid", &[]).await;
    let body = r.assert_error(402, "payment_required");
    assert_eq!(body["details"]["amount_cents"], 2 * 18_900 + 599);
    assert_eq!(body["details"]["cart_id"], cart);
    assert_eq!(body["details"]["rails"], json!(["stripe-mpp", "x402"]));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let params = challenge_params(r.header("www-authenticate").expect("challenge"));
    assert_eq!(params["method"], "stripe");
    assert_eq!(params["intent"], "charge");
    for field in ["id", "realm", "request", "expires", "opaque"] {
        assert!(params.contains_key(field), "{field} missing: {params:?}");
    }
    let required: PaymentRequired =
        x402::decode_header(r.header("payment-required").expect("x402")).expect("v2");
    assert_eq!(required.accepts[0].amount, ((2 * 18_900 + 599) * 10_000).to_string());
    // Nothing changed: no order, no lock, no stock held.
    let after = cart_json(&t, &key, &cart).await;
    assert_eq!(after["status"], "open");
    assert_eq!(after["updated_at"], before["updated_at"]);

    // The paid retry, as mppx sends it: the API key moves to X-Api-Key.
    let spt = mint_spt(&t, "pm_card_visa", 2 * 18_900 + 599).await;
    let auth = credential(&params, &spt);
    let paid = t
        .send(
            Method::POST,
            &format!("/api/agent/cart/{cart}/checkout"),
            None,
            &[("idempotency-key", "pay-1"), ("x-api-key", &key), ("authorization", &auth)],
            None,
        )
        .await;
    let body = paid.assert_ok(200);
    assert_eq!(body["payment_rail"], "stripe-mpp");
    assert_eq!(body["status"], "paid");
    assert_eq!(body["amount"], 2 * 18_900 + 599);
    let pi = body["payment_intent_id"].as_str().expect("pi").to_string();
    assert!(pi.starts_with("pi_"), "{body}");
    let receipt = paid.header("payment-receipt").expect("receipt");
    let receipt = kifly_payments::mpp::Receipt::from_header_value(receipt).expect("receipt decodes");
    assert_eq!(receipt.reference, pi);
    assert_eq!(receipt.challenge_id, params["id"].as_str().unwrap());

    let order_id = body["order_id"].as_str().unwrap();
    let o = order(&t, &key, order_id).await;
    assert_eq!(o["status"], "paid");
    assert_eq!(o["payment_reference"], pi);
    assert_eq!(o["items"][0]["quantity"], 2);
    assert!(o["paid_at"].is_string());
    assert_eq!(cart_json(&t, &key, &cart).await["status"], "completed");
    assert_eq!(stock(&t, "TH-ADJ-S-BLK").await, Some(stock_before - 2));

    // Same key: replayed, receipt included. Another key, same credential: the same order, no new charge.
    let again = agent_checkout(&t, &key, &cart, "pay-1", &[("authorization", &auth)]).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.assert_ok(200)["order_id"], order_id);
    assert!(again.header("payment-receipt").is_some());
    // The challenge is spent: under another key the same credential is refused, without a charge.
    agent_checkout(&t, &key, &cart, "pay-2", &[("authorization", &auth)])
        .await
        .assert_error(409, "cart_already_completed");
    // The unpaid first call, retried with the key the payment used, replays the payment too.
    let replay = agent_checkout(&t, &key, &cart, "pay-1", &[]).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.assert_ok(200)["payment_intent_id"], pi);
    assert_eq!(stock(&t, "TH-ADJ-S-BLK").await, Some(stock_before - 2));

    // The cart is done; more changes are refused.
    t.write(
        Method::POST,
        &format!("/api/agent/cart/{cart}/items"),
        &key,
        json!({"variant_id": t.variant("TH-ADJ-S-BLK").await}),
    )
    .await
    .assert_error(409, "cart_already_completed");
    agent_checkout(&t, &key, &cart, "pay-3", &[]).await.assert_error(409, "cart_already_completed");
}

#[tokio::test]
async fn mpp_rejects_tampered_and_stale_challenges_with_a_fresh_one() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let auth = mpp_credential(&t, &key, &cart, "pm_card_visa").await;

    // The cart changed after the challenge: its version no longer matches.
    t.write(
        Method::POST,
        &format!("/api/agent/cart/{cart}/items"),
        &key,
        json!({"variant_id": t.variant("TH-ADJ-S-GLB").await}),
    )
    .await
    .assert_ok(200);
    let r = agent_checkout(&t, &key, &cart, "stale", &[("authorization", &auth)]).await;
    let e = r.assert_error(402, "payment_failed");
    assert!(e["details"]["reason"].as_str().unwrap().contains("cart"), "{e}");
    assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Payment ")));

    // A forged challenge id.
    let auth = mpp_credential(&t, &key, &cart, "pm_card_visa").await;
    let encoded = auth.strip_prefix("Payment ").unwrap();
    let mut credential: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).unwrap())
            .unwrap();
    credential["challenge"]["id"] = json!("AAAA");
    let forged = format!(
        "Payment {}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(credential.to_string())
    );
    agent_checkout(&t, &key, &cart, "forged", &[("authorization", &forged)])
        .await
        .assert_error(402, "payment_failed");
    // Garbage.
    agent_checkout(&t, &key, &cart, "garbage", &[("authorization", "Payment !!!")])
        .await
        .assert_error(402, "payment_failed");
    assert_eq!(cart_json(&t, &key, &cart).await["status"], "open");
}

#[tokio::test]
async fn mpp_decline_fails_the_order_and_reopens_the_cart() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-BFAK", 1).await; // the last unit
    let auth = mpp_credential(&t, &key, &cart, "pm_card_chargeDeclined").await;
    let r = agent_checkout(&t, &key, &cart, "declined", &[("authorization", &auth)]).await;
    let e = r.assert_error(402, "payment_failed");
    assert_eq!(e["details"]["reason"], "generic_decline");
    assert!(r.header("www-authenticate").is_some(), "a fresh challenge comes with the failure");
    let c = cart_json(&t, &key, &cart).await;
    assert_eq!(c["status"], "open");
    assert!(c["order_id"].is_null());
    assert_eq!(stock(&t, "TH-BFAK").await, Some(1), "the reserved unit is back");

    // The declined challenge is spent (the reopened cart has a new version); a new one pays.
    let again = agent_checkout(&t, &key, &cart, "declined-again", &[("authorization", &auth)]).await;
    again.assert_error(402, "payment_failed");
    assert_eq!(stock(&t, "TH-BFAK").await, Some(1));
    let auth = mpp_credential(&t, &key, &cart, "pm_card_visa").await;
    agent_checkout(&t, &key, &cart, "visa", &[("authorization", &auth)]).await.assert_ok(200);
    assert_eq!(stock(&t, "TH-BFAK").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_paid_retries_make_one_payment_intent_and_one_order() {
    let t = std::sync::Arc::new(TestApp::serving().await);
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let auth = mpp_credential(&t, &key, &cart, "pm_card_visa").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (t, key, cart, auth) = (t.clone(), key.clone(), cart.clone(), auth.clone());
        // Half retry with one Idempotency-Key, half each with its own.
        let idem = if i % 2 == 0 { "shared".to_string() } else { format!("own-{i}") };
        tasks.push(tokio::spawn(async move {
            let r = agent_checkout(&t, &key, &cart, &idem, &[("authorization", &auth)]).await;
            (idem, r.status.as_u16(), r.json())
        }));
    }
    let mut intents = HashSet::new();
    let mut orders = HashSet::new();
    let mut winning_keys = HashSet::new();
    for task in tasks {
        let (idem, status, body) = task.await.expect("task");
        match status {
            200 => {
                winning_keys.insert(idem);
                intents.insert(body["payment_intent_id"].as_str().unwrap().to_string());
                orders.insert(body["order_id"].as_str().unwrap().to_string());
            }
            // A concurrent attempt finds the cart locked, the key in flight, or (under its own key,
            // after the payment) the challenge spent: none of them is a charge.
            409 => assert!(
                ["cart_locked", "idempotency_in_progress", "cart_already_completed"]
                    .contains(&body["error"].as_str().unwrap()),
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(orders.len(), 1, "{orders:?}");
    // The key that paid replays that one order; a new key finds the challenge spent.
    let winner = winning_keys.iter().next().expect("a winner");
    let r = agent_checkout(&t, &key, &cart, winner, &[("authorization", &auth)]).await;
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert!(orders.contains(r.assert_ok(200)["order_id"].as_str().unwrap()));
    agent_checkout(&t, &key, &cart, "late", &[("authorization", &auth)])
        .await
        .assert_error(409, "cart_already_completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_buyers_of_the_last_unit_make_one_order() {
    let t = std::sync::Arc::new(TestApp::serving().await);
    let mut tasks = Vec::new();
    let mut prepared = Vec::new();
    for _ in 0..10 {
        let key = t.create_key(None, &kifly_core::scope::Scope::ALL).await;
        let cart = ready_cart(&t, &key, SELLER, "TH-BFAK", 1).await;
        let auth = mpp_credential(&t, &key, &cart, "pm_card_visa").await;
        prepared.push((key, cart, auth));
    }
    for (key, cart, auth) in prepared {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let r = agent_checkout(&t, &key, &cart, "buy", &[("authorization", &auth)]).await;
            (r.status.as_u16(), r.json())
        }));
    }
    let mut paid = 0;
    for task in tasks {
        let (status, body) = task.await.expect("task");
        match status {
            200 => paid += 1,
            409 => assert_eq!(body["error"], "out_of_stock", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(paid, 1);
    assert_eq!(stock(&t, "TH-BFAK").await, Some(0));
}

// --- Rail 4: x402 ---------------------------------------------------------------------------

/// Signs the x402 offer of a 402 answer with a fresh key.
fn sign_x402(r: &TestResponse) -> (String, kifly_payments::x402::PaymentPayload) {
    let required: PaymentRequired =
        x402::decode_header(r.header("payment-required").expect("offer")).expect("v2");
    let key = k256::ecdsa::SigningKey::from_slice(&x402::random_nonce()).expect("key");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let payload = x402::sign_exact_payment(
        &key,
        &required.accepts[0],
        Some(required.resource.clone()),
        now - 60,
        now + 300,
        x402::random_nonce(),
    )
    .expect("sign");
    (x402::encode_header(&payload), payload)
}

#[tokio::test]
async fn x402_pays_once_per_signed_authorization() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let challenge = agent_checkout(&t, &key, &cart, "x-unpaid", &[]).await;
    challenge.assert_error(402, "payment_required");
    let (header, payload) = sign_x402(&challenge);

    // A tampered signature is refused with a fresh offer.
    let mut tampered = payload.clone();
    tampered.payload.authorization.value = "1".into();
    let r =
        agent_checkout(&t, &key, &cart, "x-bad", &[("payment-signature", &x402::encode_header(&tampered))])
            .await;
    r.assert_error(402, "payment_failed");
    assert!(r.header("payment-required").is_some());

    let r = agent_checkout(&t, &key, &cart, "x-pay", &[("payment-signature", &header)]).await;
    let body = r.assert_ok(200);
    assert_eq!(body["payment_rail"], "x402");
    assert!(body["transaction"].as_str().unwrap().starts_with("0x"), "{body}");
    assert_eq!(body["network"], "eip155:84532");
    let settled: x402::SettleResponse =
        x402::decode_header(r.header("payment-response").expect("response")).unwrap();
    assert!(settled.success);
    assert_eq!(order(&t, &key, body["order_id"].as_str().unwrap()).await["status"], "paid");

    // The same authorization cannot pay a second cart.
    let second = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let r = agent_checkout(&t, &key, &second, "x-reuse", &[("payment-signature", &header)]).await;
    assert_eq!(r.status.as_u16(), 402, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(cart_json(&t, &key, &second).await["status"], "open");
}

#[tokio::test]
async fn x402_v1_clients_pay_with_x_payment() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-GLB", 1).await;
    let challenge = agent_checkout(&t, &key, &cart, "v1-unpaid", &[]).await;
    // v1 clients read the requirements from the body.
    let body = challenge.assert_error(402, "payment_required");
    assert_eq!(body["x402Version"], 1);
    assert_eq!(body["accepts"][0]["network"], "base-sepolia");
    assert_eq!(body["accepts"][0]["maxAmountRequired"], ((18_900 + 599) * 10_000).to_string());
    let (_, v2) = sign_x402(&challenge);
    let v1 = kifly_payments::x402::PaymentPayloadV1 {
        x402_version: 1,
        scheme: "exact".into(),
        network: "base-sepolia".into(),
        payload: v2.payload,
    };
    let r = agent_checkout(&t, &key, &cart, "v1-pay", &[("x-payment", &x402::encode_header(&v1))]).await;
    assert_eq!(r.assert_ok(200)["payment_rail"], "x402");
    assert!(r.header("x-payment-response").is_some());
}

#[tokio::test]
async fn x402_payment_while_x402_is_off_is_refused() {
    let t = TestApp::new().await; // no sandbox, no payee: x402 off
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let r = agent_checkout(&t, &key, &cart, "x-off", &[]).await;
    assert_eq!(r.assert_error(402, "payment_required")["details"]["rails"], json!(["stripe-mpp"]));
    assert!(r.header("payment-required").is_none());
    agent_checkout(&t, &key, &cart, "x-off-2", &[("payment-signature", "e30=")])
        .await
        .assert_error(400, "x402_not_configured");
}

// --- Rails 1 and 2: hosted pages and webhooks ------------------------------------------------

#[tokio::test]
async fn stripe_checkout_locks_the_cart_until_the_verified_webhook_marks_it_paid() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let body = json!({"cart_id": cart, "email": "ada@example.com"});
    let link = t.write(Method::POST, "/api/agent/payment-link", &key, body.clone()).await.assert_ok(200);
    assert_eq!(link["payment_rail"], "stripe-checkout");
    assert_eq!(link["amount"], 18_900 + 599);
    assert_eq!(link["subtotal_cents"], 18_900);
    assert_eq!(link["delivery_fee_cents"], 599);
    assert_eq!(link["currency"], "usd");
    assert_eq!(link["buyer_token_status"], "none");
    let session = link["session_id"].as_str().unwrap().to_string();
    assert!(session.starts_with("cs_test_"), "{link}");
    let pay_url = link["payment_url"].as_str().unwrap().to_string();

    // Locked while pending; asking again returns the same session.
    let c = cart_json(&t, &key, &cart).await;
    assert_eq!(c["status"], "checkout_pending");
    assert_eq!(c["checkout"]["session_id"], session);
    t.write(
        Method::POST,
        &format!("/api/agent/cart/{cart}/items"),
        &key,
        json!({"variant_id": t.variant("TH-ADJ-S-GLB").await}),
    )
    .await
    .assert_error(409, "cart_locked");
    let again = t
        .write(
            Method::POST,
            "/api/agent/payment-link",
            &key,
            json!({"cart_id": cart, "buyer_token": "kfb_live_x"}),
        )
        .await;
    assert_eq!(again.assert_ok(200)["session_id"], session);
    assert_eq!(again.json()["buyer_token_status"], "invalid");
    assert_eq!(order(&t, &key, &session).await["status"], "pending_payment");

    // The buyer pays on the sandbox page; the signed webhook marks the order paid.
    let paid = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = paid.post(format!("{pay_url}/pay")).send().await.unwrap();
    assert!(r.status().as_u16() < 400, "{}", r.status());
    let o = wait_for_status(&t, &key, &session, "paid").await;
    assert!(o["payment_reference"].as_str().is_some_and(|p| p.starts_with("pi_")), "{o}");
    assert_eq!(cart_json(&t, &key, &cart).await["status"], "completed");

    // Fulfilment through the CLI, on the same database: ship with tracking, then deliver.
    let order_id = o["order_id"].as_str().unwrap();
    let db = t.app.config.database_url();
    let env = [("KIFLY_DATABASE_URL", db.as_str())];
    let cli = |args: &[&str]| crate::process::kifly_with_env(t.dir.path(), args, &env);
    let err = cli(&["orders", "deliver", "order_01JXXXXXXXXXXXXXXXXXXXXXXX"]).fails();
    assert!(err.contains("no order"), "{err}");
    let args = [
        "orders",
        "ship",
        order_id,
        "--carrier",
        "UPS",
        "--tracking-number",
        "1Z999",
        "--tracking-url",
        "https://ups.example/1Z999",
    ];
    assert!(cli(&args).ok().stdout.contains("is shipped"));
    let o = order(&t, &key, order_id).await;
    assert_eq!(
        (
            o["status"].as_str(),
            o["carrier"].as_str(),
            o["tracking_number"].as_str(),
            o["tracking_url"].as_str()
        ),
        (Some("shipped"), Some("UPS"), Some("1Z999"), Some("https://ups.example/1Z999"))
    );
    cli(&["orders", "deliver", order_id]).ok();
    let o = order(&t, &key, order_id).await;
    assert_eq!(o["status"], "delivered");
    assert!(o["delivered_at"].is_string() && o["shipped_at"].is_string());
    // Delivered is final.
    let err = cli(&["orders", "ship", order_id]).fails();
    assert!(err.contains("delivered"), "{err}");
}

#[tokio::test]
async fn webhooks_are_verified_deduplicated_and_never_move_a_paid_order_back() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let link =
        t.write(Method::POST, "/api/agent/payment-link", &key, json!({"cart_id": cart})).await.assert_ok(200);
    let session_id = link["session_id"].as_str().unwrap().to_string();
    let secret = t.app.payments.stripe_webhook_secret.expose().to_string();

    let event = |id: &str, kind: &str, payment_status: &str| {
        let session = json!({"id": session_id, "object": "checkout.session", "payment_status": payment_status,
                             "status": "complete", "payment_intent": "pi_test_webhook", "livemode": false});
        kifly_payments::stripe::event_body(id, kind, 0, &session).unwrap()
    };
    let post = |body: Vec<u8>, signature: String| {
        let url = format!("{}/api/webhooks/stripe", t.base_url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("stripe-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let paid = event("evt_paid_1", "checkout.session.completed", "paid");
    let signature = kifly_payments::stripe::sign_webhook(&paid, &secret, now);

    // Tampered: the body no longer matches the signature.
    let mut tampered = paid.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let (status, body) = post(tampered, signature.clone()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    // An old timestamp is refused too.
    let (status, _) =
        post(paid.clone(), kifly_payments::stripe::sign_webhook(&paid, &secret, now - 3600)).await;
    assert_eq!(status, 400);
    assert_eq!(order(&t, &key, &session_id).await["status"], "pending_payment");

    // Delivered twice: applied once.
    let (status, body) = post(paid.clone(), signature.clone()).await;
    assert_eq!((status, &body["applied"]), (200, &json!(true)), "{body}");
    let (status, body) = post(paid, signature).await;
    assert_eq!((status, &body["duplicate"]), (200, &json!(true)), "{body}");
    let o = order(&t, &key, &session_id).await;
    assert_eq!(o["status"], "paid");
    let paid_at = o["paid_at"].clone();

    // A late expiry cannot undo the payment.
    let expired = event("evt_expired_1", "checkout.session.expired", "unpaid");
    let (status, body) =
        post(expired.clone(), kifly_payments::stripe::sign_webhook(&expired, &secret, now)).await;
    assert_eq!((status, &body["applied"]), (200, &json!(false)), "{body}");
    let o = order(&t, &key, &session_id).await;
    assert_eq!((o["status"].clone(), o["paid_at"].clone()), (json!("paid"), paid_at));
    assert_eq!(cart_json(&t, &key, &cart).await["status"], "completed");
}

#[tokio::test]
async fn cancelling_a_hosted_checkout_reopens_the_cart_and_releases_stock() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-BFAK", 1).await;
    let link =
        t.write(Method::POST, "/api/agent/payment-link", &key, json!({"cart_id": cart})).await.assert_ok(200);
    // The last unit is held: another buyer cannot reserve it.
    let other = ready_cart(&t, &key, SELLER, "TH-BFAK", 1).await;
    t.write(Method::POST, "/api/agent/payment-link", &key, json!({"cart_id": other}))
        .await
        .assert_error(409, "out_of_stock");

    let c = t
        .write(Method::DELETE, &format!("/api/agent/cart/{cart}/checkout"), &key, Value::Null)
        .await
        .assert_ok(200);
    assert_eq!(c["status"], "open");
    assert!(c["order_id"].is_null());
    assert_eq!(order(&t, &key, link["session_id"].as_str().unwrap()).await["status"], "cancelled");
    // Now the other buyer can have it.
    t.write(Method::POST, "/api/agent/payment-link", &key, json!({"cart_id": other})).await.assert_ok(200);
}

#[tokio::test]
async fn coinbase_commerce_charge_is_paid_through_its_webhook() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, "casa-verde-home", "CVH-CIS-08", 2).await;
    let link = t
        .write(
            Method::POST,
            "/api/agent/payment-link",
            &key,
            json!({"cart_id": cart, "rail": "coinbase-commerce"}),
        )
        .await
        .assert_ok(200);
    assert_eq!(link["payment_rail"], "coinbase-commerce");
    assert_eq!(link["amount"], 2 * 3_200);
    let code = link["session_id"].as_str().unwrap().to_string();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/pay", link["payment_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() < 400);
    wait_for_status(&t, &key, &code, "paid").await;
    // A Stripe checkout on a cart locked by Coinbase is refused with a hint.
    let other = ready_cart(&t, &key, "casa-verde-home", "CVH-CIS-08", 1).await;
    t.write(
        Method::POST,
        "/api/agent/payment-link",
        &key,
        json!({"cart_id": other, "rail": "coinbase-commerce"}),
    )
    .await
    .assert_ok(200);
    t.write(Method::POST, "/api/agent/payment-link", &key, json!({"cart_id": other}))
        .await
        .assert_error(409, "cart_locked");
}

// --- Directory handoff --------------------------------------------------------------------------

#[tokio::test]
async fn directory_sellers_hand_off_with_tracked_links_and_no_charge() {
    let t = TestApp::serving().await;
    let key = t.network_key.clone();
    let cart = t.cart(&key, "atelier-lumiere").await;
    let variant = t.any_variant_of("atelier-lumiere").await;
    t.write(Method::POST, &format!("/api/agent/cart/{cart}/items"), &key, json!({"variant_id": variant}))
        .await
        .assert_ok(200);
    // No address needed: nothing is bought here.
    let h =
        t.write(Method::POST, "/api/agent/payment-link", &key, json!({"cart_id": cart})).await.assert_ok(200);
    assert_eq!(h["payment_rail"], "directory-handoff");
    assert!(h.get("payment_url").is_none() && h.get("session_id").is_none());
    assert_eq!(h["handoff"]["seller"]["handle"], "atelier-lumiere");
    assert!(h["handoff"]["disclaimer"].as_str().unwrap().len() > 40);
    let link = h["handoff"]["items"][0]["link"].as_str().expect("tracked link").to_string();
    assert!(link.contains("/r/"), "{link}");
    // The agent-paid path answers the same handoff.
    let r = agent_checkout(&t, &key, &cart, "handoff", &[]).await;
    assert_eq!(r.assert_ok(200)["handoff"]["items"][0]["link"], link);
    assert_eq!(cart_json(&t, &key, &cart).await["status"], "open");

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let path = link.split_once("/r/").unwrap().1;
    for _ in 0..2 {
        let r = client.get(format!("{}/r/{path}", t.base_url())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302);
        assert!(r.headers()["location"].to_str().unwrap().starts_with("https://atelier-lumiere.example/"));
    }
    let clicks = t.store.follow_link(path).await.unwrap().unwrap().1;
    assert_eq!(clicks, 3, "two redirects and this read");
    assert_eq!(client.get(format!("{}/r/nope", t.base_url())).send().await.unwrap().status().as_u16(), 404);
}

// --- A provider failing mid-payment -------------------------------------------------------------

/// A Stripe stand-in in front of the sandbox that forwards every request but answers the first
/// `fail_first` of them with 500 *after* the sandbox has processed them: the worst case, where the
/// payment happened and we did not hear about it.
async fn flaky_stripe(sandbox_base: String, sandbox_key: String, fail_first: usize) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (seen, base, sandbox_key) = (seen.clone(), sandbox_base.clone(), sandbox_key.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut forward = reqwest::Client::new()
                .request(parts.method.clone(), format!("{base}{}", parts.uri))
                .basic_auth(sandbox_key, None::<&str>)
                .body(body.to_vec());
            for name in ["idempotency-key", "content-type", "stripe-version"] {
                if let Some(v) = parts.headers.get(name) {
                    forward = forward.header(name, v.to_str().unwrap());
                }
            }
            let response = forward.send().await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "upstream hiccup".to_string());
            }
            (axum::http::StatusCode::from_u16(status).unwrap(), String::from_utf8_lossy(&bytes).to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn provider_failure_after_charging_is_recovered_by_the_retry_without_a_second_charge() {
    // Stripe is "real" (configured credentials) but flaky; Coinbase stays on the sandbox, which
    // therefore serves the Stripe subset the flaky proxy forwards to.
    let t = TestApp::serving_with(|config| config.payments_sandbox = false).await;
    let sandbox = kifly::payments::sandbox_config(&t.app.config, &t.app.secret);
    let flaky =
        flaky_stripe(format!("{}/sandbox/stripe", t.base_url()), sandbox.stripe_secret_key.clone(), 1).await;
    // A second app on the same database and secret, whose Stripe is the flaky proxy.
    let mut config = t.app.config.clone();
    config.stripe_secret_key = Some("sk_test_configured".into());
    config.stripe_webhook_secret = Some(sandbox.stripe_webhook_secret.clone());
    config.stripe_base_url = flaky;
    config.x402_pay_to = None;
    let app = kifly::app::App::new(t.store.clone(), config, t.app.secret.clone()).expect("app");
    let router = kifly::http::router(app);

    let key = t.network_key.clone();
    let cart = ready_cart(&t, &key, SELLER, "TH-ADJ-S-BLK", 1).await;
    let send = |idem: &'static str, auth: Option<String>| {
        let router = router.clone();
        let (key, cart) = (key.clone(), cart.clone());
        async move {
            use tower::ServiceExt;
            let mut b = axum::http::Request::builder()
                .method("POST")
                .uri(format!("/api/agent/cart/{cart}/checkout"))
                .header("x-api-key", key)
                .header("idempotency-key", idem);
            if let Some(auth) = auth {
                b = b.header("authorization", auth);
            }
            let mut request = b.body(axum::body::Body::empty()).unwrap();
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 9, 9, 9], 1))));
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, headers, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, headers, _) = send("first", None).await;
    assert_eq!(status, 402);
    let params = challenge_params(headers["www-authenticate"].to_str().unwrap());
    let spt = mint_spt(&t, "pm_card_visa", 18_900 + 599).await;
    let auth = credential(&params, &spt);

    // The charge happens, but we hear 500: the cart stays safe (locked) and the answer says retry.
    let (status, headers, body) = send("pay", Some(auth.clone())).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("checkout_engine_unavailable")), "{body}");
    assert_eq!(body["retryable"], true);
    assert!(headers.get("retry-after").is_some());
    assert_eq!(cart_json(&t, &key, &cart).await["status"], "checkout_pending");

    // The retry with the same key settles the same PaymentIntent (Stripe replays it).
    let (status, _, body) = send("pay", Some(auth)).await;
    assert_eq!(status, 200, "{body}");
    let pi = body["payment_intent_id"].as_str().unwrap();
    let intent = t.app.payments.stripe.retrieve_payment_intent(pi).await;
    // The sandbox is reachable with the sandbox client of the first app.
    assert!(intent.is_ok(), "{intent:?}");
    assert_eq!(order(&t, &key, body["order_id"].as_str().unwrap()).await["status"], "paid");
    // The same key replays; the challenge is spent for any other.
    let (status, _, again) = send("pay", Some(credential(&params, &spt))).await;
    assert_eq!((status, &again["payment_intent_id"]), (200, &json!(pi)));
    let (status, _, again) = send("pay-other-key", Some(credential(&params, &spt))).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("cart_already_completed")));
}
