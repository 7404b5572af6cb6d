//! Buyer accounts over REST: the one-time-code flow and its failure modes, the identical-response
//! property, buyer tokens at checkout, the order history, feedback, and the mail outbox.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse};

/// The code in the newest mail queued for `email`.
async fn mailed_code(t: &TestApp, email: &str) -> String {
    let mails = t.store.list_mail(100).await.expect("outbox");
    let mail = mails.iter().find(|m| m.recipient == email).unwrap_or_else(|| panic!("no mail to {email}"));
    assert!(mail.body.contains(mail.subject.rsplit(' ').next().unwrap()), "the body carries the code too");
    mail.subject.rsplit(' ').next().unwrap().to_string()
}

async fn post(t: &TestApp, path: &str, body: Value) -> TestResponse {
    t.write(Method::POST, path, &t.network_key, body).await
}

/// Registers and verifies `email`; returns the buyer token.
async fn verified_buyer(t: &TestApp, email: &str) -> String {
    post(t, "/api/agent/buyers", json!({"email": email, "name": "Grace Hopper"})).await.assert_ok(200);
    let code = mailed_code(t, email).await;
    let r = post(t, "/api/agent/buyers/verify", json!({"email": email, "code": code})).await;
    r.assert_ok(200)["buyer_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn one_time_codes_expire_count_attempts_and_reveal_no_accounts() {
    let t = TestApp::new().await;
    // Identical answers for a new and an existing address (the id is the address's own).
    let first = post(&t, "/api/agent/buyers", json!({"email": "grace@example.com", "name": "Grace"})).await;
    let second = post(&t, "/api/agent/buyers", json!({"email": " GRACE@example.com ", "name": "G"})).await;
    assert_eq!((first.status, first.json()), (second.status, second.json()));
    let unknown = post(&t, "/api/agent/buyers/code", json!({"email": "nobody@example.com"})).await;
    let known = post(&t, "/api/agent/buyers/code", json!({"email": "grace@example.com"})).await;
    assert_eq!((unknown.status, unknown.json()), (known.status, known.json()));
    assert_eq!(known.json(), json!({"sent": true}));
    let mails = t.store.list_mail(100).await.unwrap();
    assert_eq!(mails.iter().filter(|m| m.recipient == "grace@example.com").count(), 3);
    assert!(mails.iter().all(|m| m.recipient != "nobody@example.com"), "no mail to unknown addresses");

    // Wrong codes count down; the sixth attempt is refused even with the right code.
    let code = mailed_code(&t, "grace@example.com").await;
    let wrong = if code == "999999" { "000000" } else { "999999" };
    for remaining in (0..5).rev() {
        let e = post(&t, "/api/agent/buyers/verify", json!({"email": "grace@example.com", "code": wrong}))
            .await
            .assert_error(400, "invalid_otp");
        assert_eq!(e["details"]["attempts_remaining"], remaining, "{e}");
    }
    post(&t, "/api/agent/buyers/verify", json!({"email": "grace@example.com", "code": code}))
        .await
        .assert_error(400, "invalid_otp");

    // A new code works; an expired one does not.
    post(&t, "/api/agent/buyers/code", json!({"email": "grace@example.com"})).await.assert_ok(200);
    let code = mailed_code(&t, "grace@example.com").await;
    let mut tx = t.store.begin_write().await.unwrap();
    let hash_of_code = {
        // Re-store the same code with a past expiry.
        let rows = tx.attempt_buyer_code("grace@example.com").await.unwrap().unwrap();
        rows.code_hash
    };
    tx.set_buyer_code("grace@example.com", &hash_of_code, 1, 0).await.unwrap();
    tx.commit().await.unwrap();
    let e = post(&t, "/api/agent/buyers/verify", json!({"email": "grace@example.com", "code": code}))
        .await
        .assert_error(400, "invalid_otp");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    post(&t, "/api/agent/buyers/verify", json!({"email": "grace@example.com", "code": "12"}))
        .await
        .assert_error(422, "validation_error");
    post(&t, "/api/agent/buyers", json!({"email": "not-an-email", "name": "X"}))
        .await
        .assert_error(422, "validation_error");

    // Mail per address is limited, whatever key asks.
    let other = t.create_key(None, &kifly_core::scope::Scope::ALL).await;
    let mut limited = false;
    for _ in 0..5 {
        let r = t
            .write(Method::POST, "/api/agent/buyers/code", &other, json!({"email": "grace@example.com"}))
            .await;
        limited |= r.status.as_u16() == 429;
    }
    assert!(limited, "a sixth code mail to one address within 15 minutes is refused");
}

#[tokio::test]
async fn a_buyer_token_prefills_checkout_and_lists_the_buyers_orders() {
    let t = TestApp::serving().await;
    let token = verified_buyer(&t, "grace@example.com").await;
    let key = t.network_key.clone();

    // Profile and address over REST, the token in X-Buyer-Token.
    let headers = [("x-buyer-token", token.as_str())];
    let me = t.send(Method::GET, "/api/agent/buyers/me", Some(&key), &headers, None).await.assert_ok(200);
    assert_eq!(me["email"], "grace@example.com");
    let address = json!({"address": {"name": "Grace Hopper", "line1": "1 Navy Way", "city": "Arlington", "region": "VA", "postal_code": "22202"}});
    let r = t
        .send(
            Method::PUT,
            "/api/agent/buyers/me/address",
            Some(&key),
            &[headers[0], ("idempotency-key", "addr")],
            Some(address.to_string()),
        )
        .await;
    assert_eq!(r.assert_ok(200)["default_shipping_address"]["city"], "Arlington");
    t.send(Method::GET, "/api/agent/buyers/me", Some(&key), &[("x-buyer-token", "kfb_live_nope")], None)
        .await
        .assert_error(401, "invalid_buyer_token");
    // Revocable: an operator revokes a lost token; the buyer verifies again for a new one.
    let spare = verified_buyer(&t, "spare@example.com").await;
    let db = t.app.config.database_url();
    let run = crate::process::kifly_with_env(
        t.dir.path(),
        &["buyers", "revoke-tokens", "Spare@Example.com"],
        &[("KIFLY_DATABASE_URL", db.as_str())],
    )
    .ok();
    assert!(run.stdout.contains("revoked 1"), "{}", run.stdout);
    t.send(Method::GET, "/api/agent/buyers/me", Some(&key), &[("x-buyer-token", spare.as_str())], None)
        .await
        .assert_error(401, "invalid_buyer_token");

    // Two purchases in two carts: a hosted checkout paid on the sandbox page, and an MPP payment.
    let mut orders = Vec::new();
    for _ in 0..2 {
        let cart = t.cart(&key, "trailhead-outfitters").await;
        let variant = t.variant("TH-IB32-SAG").await;
        t.write(Method::POST, &format!("/api/agent/cart/{cart}/items"), &key, json!({"variant_id": variant}))
            .await
            .assert_ok(200);
        t.write(Method::PUT, &format!("/api/agent/cart/{cart}/shipping-address"), &key, me_address())
            .await
            .assert_ok(200);
        let link = t
            .write(
                Method::POST,
                "/api/agent/payment-link",
                &key,
                json!({"cart_id": cart, "buyer_token": token}),
            )
            .await
            .assert_ok(200);
        assert_eq!(link["buyer_token_status"], "resolved");
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        client.post(format!("{}/pay", link["payment_url"].as_str().unwrap())).send().await.unwrap();
        orders.push(link["order_id"].as_str().unwrap().to_string());
    }
    // Paid through webhooks, asynchronously.
    for _ in 0..100 {
        let list = t
            .send(Method::GET, "/api/agent/buyers/me/orders", Some(&key), &headers, None)
            .await
            .assert_ok(200);
        if list["count"] == 2 && list["orders"].as_array().unwrap().iter().all(|o| o["status"] == "paid") {
            let ids: Vec<&str> =
                list["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap()).collect();
            assert_eq!(ids, [orders[1].as_str(), orders[0].as_str()], "newest first");
            let later = list["orders"][0]["updated_at"].as_str().unwrap().to_string();
            let since = t
                .send(
                    Method::GET,
                    &format!("/api/agent/buyers/me/orders?since={later}"),
                    Some(&key),
                    &headers,
                    None,
                )
                .await
                .assert_ok(200);
            assert_eq!(since["count"], 0, "nothing changed after the newest change");
            // Another buyer sees none of them.
            let other = verified_buyer(&t, "ada@example.com").await;
            let theirs = t
                .send(
                    Method::GET,
                    "/api/agent/buyers/me/orders",
                    Some(&key),
                    &[("x-buyer-token", other.as_str())],
                    None,
                )
                .await
                .assert_ok(200);
            assert_eq!(theirs["count"], 0);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the two orders never showed up paid in the buyer's history");
}

fn me_address() -> Value {
    json!({"name": "Grace Hopper", "line1": "1 Navy Way", "city": "Arlington", "region": "VA", "postal_code": "22202"})
}

#[tokio::test]
async fn feedback_and_feature_requests_are_accepted_and_listed_for_operators() {
    let t = TestApp::new().await;
    let r = post(&t, "/api/agent/feedback", json!({"category": "error_handling", "severity": "blocker", "message": "checkout said cart_locked forever", "context": {"tool": "checkout"}})).await;
    let body = r.assert_ok(202);
    assert!(body["feedback_id"].as_str().unwrap().starts_with("fb_"));
    post(&t, "/api/agent/feedback", json!({"category": "vibes", "severity": "blocker", "message": "m"}))
        .await
        .assert_error(422, "validation_error");
    post(&t, "/api/agent/feedback", json!({"category": "other", "severity": "blocker", "message": ""}))
        .await
        .assert_error(422, "validation_error");
    let token = verified_buyer(&t, "grace@example.com").await;
    let r = post(&t, "/api/agent/feature-requests", json!({"buyer_token": token, "problem": "No gift wrap", "impact": "Birthdays", "category": "missing_capability", "severity": "nice_to_have"})).await;
    assert_eq!(r.assert_ok(202)["accepted"], true);
    post(&t, "/api/agent/feature-requests", json!({"buyer_token": "kfb_live_nope", "problem": "p", "impact": "i", "category": "other", "severity": "friction"}))
        .await
        .assert_error(401, "invalid_buyer_token");

    let db = t.app.config.database_url();
    let run = crate::process::kifly_with_env(
        t.dir.path(),
        &["feedback", "list", "--json"],
        &[("KIFLY_DATABASE_URL", db.as_str())],
    )
    .ok();
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(lines[0]["kind"], "feature_request");
    assert_eq!(lines[0]["content"]["problem"], "No gift wrap");
    assert_eq!(lines[1]["content"]["context"]["tool"], "checkout");
}

#[tokio::test]
async fn the_outbox_sends_after_commit_and_records_the_result() {
    let t = TestApp::new().await;
    post(&t, "/api/agent/buyers", json!({"email": "grace@example.com", "name": "Grace"}))
        .await
        .assert_ok(200);
    let pending = t.store.list_mail(10).await.unwrap();
    assert_eq!(pending[0].status, "pending");
    let sent = kifly::outbox::send_due(t.store.as_ref(), &kifly::mail::LogMailer).await;
    assert_eq!(sent, 1);
    let mail = &t.store.list_mail(10).await.unwrap()[0];
    assert_eq!((mail.status.as_str(), mail.attempts), ("sent", 1));
    assert_eq!(kifly::outbox::send_due(t.store.as_ref(), &kifly::mail::LogMailer).await, 0, "sent once");
    let db = t.app.config.database_url();
    let run = crate::process::kifly_with_env(
        t.dir.path(),
        &["mail", "list"],
        &[("KIFLY_DATABASE_URL", db.as_str())],
    )
    .ok();
    assert!(run.stdout.contains("sent") && run.stdout.contains("grace@example.com"), "{}", run.stdout);
}

/// A real SMTP server (PyPI `aiosmtpd`, installed by `scripts/smtpd.sh`) writing to a Maildir.
struct Smtpd {
    child: std::process::Child,
    maildir: tempfile::TempDir,
}

impl Smtpd {
    fn start(port: u16) -> Smtpd {
        let python = std::env::var("KIFLY_TEST_SMTPD_PYTHON")
            .expect("set KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh) to run the SMTP tests");
        let maildir = tempfile::tempdir().expect("maildir");
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("Maildir"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Smtpd { child, maildir }
    }

    /// Every delivered message, raw.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("Maildir/new");
        std::fs::read_dir(new)
            .map(|entries| entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[ignore = "needs aiosmtpd: KIFLY_TEST_SMTPD_PYTHON=$(scripts/smtpd.sh); run by scripts/test.sh"]
async fn smtp_codes_survive_a_mail_server_outage_and_arrive_when_it_returns() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = TestApp::with_config(|config| {
        config.smtp_host = Some("127.0.0.1".into());
        config.smtp_port = port;
        config.smtp_tls = "none".into();
        config.mail_from = "Kifly Test <codes@kifly.test>".into();
    })
    .await;
    // The mail server is down: the request is not slowed or failed by it.
    let started = std::time::Instant::now();
    post(&t, "/api/agent/buyers", json!({"email": "grace@example.com", "name": "Grace"}))
        .await
        .assert_ok(200);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(kifly::outbox::send_due(t.store.as_ref(), t.app.mailer.as_ref()).await, 0);
    let mail = t.store.list_mail(1).await.unwrap().remove(0);
    assert_eq!((mail.status.as_str(), mail.attempts), ("pending", 1));
    assert!(mail.last_error.is_some(), "the failure is recorded for operators");

    // It comes back; the retry (after its backoff) delivers the code.
    let smtpd = Smtpd::start(port);
    tokio::time::sleep(kifly::outbox::backoff(1) + std::time::Duration::from_millis(100)).await;
    assert_eq!(kifly::outbox::send_due(t.store.as_ref(), t.app.mailer.as_ref()).await, 1);
    let code = mailed_code(&t, "grace@example.com").await;
    let messages = smtpd.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("grace@example.com") && messages[0].contains(&code), "{}", messages[0]);
    assert!(messages[0].contains("codes@kifly.test"));
    // And the code works.
    post(&t, "/api/agent/buyers/verify", json!({"email": "grace@example.com", "code": code}))
        .await
        .assert_ok(200);
    assert_eq!(t.store.list_mail(1).await.unwrap()[0].status, "sent");
}

#[tokio::test]
async fn an_agent_paid_checkout_with_x_buyer_token_is_filed_under_the_buyer() {
    let t = TestApp::serving().await;
    let token = verified_buyer(&t, "grace@example.com").await;
    let key = t.network_key.clone();
    let cart = t.cart(&key, "trailhead-outfitters").await;
    let variant = t.variant("TH-IB32-SAG").await;
    t.write(Method::POST, &format!("/api/agent/cart/{cart}/items"), &key, json!({"variant_id": variant}))
        .await
        .assert_ok(200);
    t.write(Method::PUT, &format!("/api/agent/cart/{cart}/shipping-address"), &key, me_address())
        .await
        .assert_ok(200);
    let path = format!("/api/agent/cart/{cart}/checkout");
    let challenge = t.send(Method::POST, &path, Some(&key), &[("idempotency-key", "c")], None).await;
    challenge.assert_error(402, "payment_required");
    let params = crate::support::challenge_params(challenge.header("www-authenticate").unwrap());
    let spt: Value = reqwest::Client::new()
        .post(format!("{}/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens", t.base_url()))
        .basic_auth("sk_test_wallet", None::<&str>)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("payment_method=pm_card_visa&usage_limits%5Bcurrency%5D=usd&usage_limits%5Bmax_amount%5D=100000&usage_limits%5Bexpires_at%5D=4102444800")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auth = crate::support::credential(&params, spt["id"].as_str().unwrap());
    let headers = [
        ("idempotency-key", "c"),
        ("x-api-key", key.as_str()),
        ("authorization", auth.as_str()),
        ("x-buyer-token", token.as_str()),
    ];
    let paid = t.send(Method::POST, &path, None, &headers, None).await.assert_ok(200);
    let list = t
        .send(
            Method::GET,
            "/api/agent/buyers/me/orders",
            Some(&key),
            &[("x-buyer-token", token.as_str())],
            None,
        )
        .await
        .assert_ok(200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["orders"][0]["order_id"], paid["order_id"]);
}
