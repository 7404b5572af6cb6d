//! Cluster mode: three real `kifly serve` processes on one PostgreSQL database and one Redis, and a
//! PostgreSQL outage under load. They need the machine's PostgreSQL and Redis (and the outage test
//! stops PostgreSQL), so they are `#[ignore]`d here and run by `scripts/test.sh` in steps of their own:
//! `cargo test -p kifly --test it -- --ignored cluster::` (and `--test-threads=1` for the outage).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kifly_store::Store;
use kifly_store::testing::TempPostgres;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::process::{Server, http_client, kifly_with_env, poll_until};

const SECRET: &str = "cluster-test-secret-0123456789abcdef0123456789";
const DEMO_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/catalog.json");

fn postgres_url() -> String {
    std::env::var("KIFLY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("KIFLY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// N nodes sharing one fresh database, Redis and server secret.
struct Cluster {
    /// Base URLs of the nodes.
    urls: Vec<String>,
    /// The node processes, killed when the cluster is dropped.
    _nodes: std::sync::Mutex<Vec<Server>>,
    store: Arc<dyn Store>,
    dir: TempDir,
    env: Vec<(&'static str, String)>,
    client: reqwest::Client,
    _db: TempPostgres,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Self::start_with(n, false).await
    }

    /// `share_stripe`: node 0 starts first, and the other nodes use its built-in Stripe sandbox as
    /// their (configured) Stripe, as a real cluster shares one Stripe account.
    async fn start_with(n: usize, share_stripe: bool) -> Cluster {
        let db = TempPostgres::create(&postgres_url()).await.expect("test database");
        let dir = tempfile::tempdir().expect("temp dir");
        let env = vec![
            ("KIFLY_DATABASE_URL", db.url.clone()),
            ("KIFLY_REDIS_URL", redis_url()),
            ("KIFLY_SECRET_KEY", SECRET.to_string()),
        ];
        let start_nodes = |count: usize, env: &[(&'static str, String)]| {
            // Nodes start together: their migrations race and must not collide.
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..count)
                    .map(|_| {
                        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        let dir = dir.path();
                        scope.spawn(move || Server::start_with_env(dir, &["--bind", "127.0.0.1:0"], &env))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("node started")).collect::<Vec<_>>()
            })
        };
        let nodes = if share_stripe {
            let mut nodes = start_nodes(1, &env);
            let sandbox = kifly::payments::sandbox_config(&kifly::config::Config::default(), SECRET);
            let mut shared = env.clone();
            shared.push(("KIFLY_STRIPE_SECRET_KEY", sandbox.stripe_secret_key));
            shared.push(("KIFLY_STRIPE_WEBHOOK_SECRET", sandbox.stripe_webhook_secret));
            shared.push(("KIFLY_STRIPE_BASE_URL", format!("{}/sandbox/stripe", nodes[0].base)));
            nodes.extend(start_nodes(n - 1, &shared));
            nodes
        } else {
            start_nodes(n, &env)
        };
        let cluster_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        kifly_with_env(dir.path(), &["catalog", "import", DEMO_CATALOG], &cluster_env).ok();
        let store = kifly_store::connect(&db.url).await.expect("store");
        let urls = nodes.iter().map(|n| n.base.clone()).collect();
        Cluster {
            urls,
            _nodes: std::sync::Mutex::new(nodes),
            store,
            dir,
            env,
            client: http_client(),
            _db: db,
        }
    }

    /// A fresh network key with every scope (its own rate-limit bucket).
    async fn key(&self) -> String {
        kifly::service::keys::create_key(
            self.store.as_ref(),
            SECRET,
            "cluster",
            None,
            kifly_core::scope::Scope::ALL.to_vec(),
        )
        .await
        .expect("key")
        .1
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.urls[i % self.urls.len()])
    }

    async fn send(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        key: &str,
        idem: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, self.url(i, path)).bearer_auth(key);
        if let Some(idem) = idem {
            request = request.header("idempotency-key", idem);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// A cart with one line and an address, its 402 challenge answered with a freshly minted token:
    /// `(checkout path, Authorization value, Idempotency-Key)` for the paid request.
    async fn ready_mpp_payment(&self, i: usize, key: &str, idem: &str) -> (String, String, String) {
        let post = reqwest::Method::POST;
        let (_, _, cart) = self
            .send(
                i,
                post.clone(),
                "/api/agent/cart",
                key,
                Some(&format!("{idem}-c")),
                Some(json!({"seller_handle": "trailhead-outfitters"})),
            )
            .await;
        let cart = cart["cart_id"].as_str().expect("cart").to_string();
        let products = self.store.list_products(&Default::default()).await.expect("products");
        let variant = products
            .iter()
            .flat_map(|p| p.variants.clone())
            .find(|v| v.sku == "TH-IB32-SAG")
            .expect("sku")
            .id;
        self.send(
            i,
            post.clone(),
            &format!("/api/agent/cart/{cart}/items"),
            key,
            Some(&format!("{idem}-i")),
            Some(json!({"variant_id": variant})),
        )
        .await;
        let address = json!({"name": "Ada", "line1": "1 Main St", "city": "Denver", "region": "CO", "postal_code": "80202"});
        self.send(
            i,
            reqwest::Method::PUT,
            &format!("/api/agent/cart/{cart}/shipping-address"),
            key,
            Some(&format!("{idem}-a")),
            Some(address),
        )
        .await;
        let path = format!("/api/agent/cart/{cart}/checkout");
        let (status, headers, body) = self.send(i, post, &path, key, Some(idem), None).await;
        assert_eq!(status, 402, "{body}");
        let params = crate::support::challenge_params(headers["www-authenticate"].to_str().unwrap());
        let amount = body["details"]["amount_cents"].as_i64().unwrap();
        let spt: Value = self
            .client
            .post(self.url(i, "/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens"))
            .basic_auth("sk_test_wallet", None::<&str>)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("payment_method=pm_card_visa&usage_limits%5Bcurrency%5D=usd&usage_limits%5Bmax_amount%5D={amount}&usage_limits%5Bexpires_at%5D=4102444800"))
            .send()
            .await
            .expect("mint")
            .json()
            .await
            .expect("spt");
        (path, crate::support::credential(&params, spt["id"].as_str().unwrap()), idem.to_string())
    }

    async fn audit_count(&self, action: &str) -> usize {
        // Change actions are written in their own transaction, so the count is exact.
        self.store.recent_audit(10_000).await.expect("audit").iter().filter(|a| a.action == action).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis; run by scripts/test.sh"]
async fn cluster_one_idempotency_key_sent_to_three_nodes_has_one_effect() {
    let c = Arc::new(Cluster::start(3).await);
    let key = c.key().await;
    let body = json!({"seller_handle": "trailhead-outfitters"});
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (c, key, body) = (c.clone(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            c.send(i, reqwest::Method::POST, "/api/agent/cart", &key, Some("one-key"), Some(body)).await
        }));
    }
    let mut carts = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, _, body) = task.await.expect("task");
        match status {
            201 => {
                carts.insert(body["cart_id"].as_str().expect("cart_id").to_string());
            }
            409 => assert_eq!(body["error"], "idempotency_in_progress", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(carts.len(), 1, "every success names the same cart: {carts:?}");
    let (status, headers, replay) =
        c.send(1, reqwest::Method::POST, "/api/agent/cart", &key, Some("one-key"), Some(body)).await;
    assert_eq!(status, 201);
    assert_eq!(headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert!(carts.contains(replay["cart_id"].as_str().unwrap()));
    assert_eq!(c.audit_count("cart.create").await, 1, "exactly one cart was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis; run by scripts/test.sh"]
async fn cluster_concurrent_paid_checkouts_through_three_nodes_make_one_charge_and_one_order() {
    let c = Arc::new(Cluster::start_with(3, true).await);
    let key = c.key().await;
    let post = reqwest::Method::POST;
    let (_, _, cart) = c
        .send(
            0,
            post.clone(),
            "/api/agent/cart",
            &key,
            Some("c"),
            Some(json!({"seller_handle": "trailhead-outfitters"})),
        )
        .await;
    let cart = cart["cart_id"].as_str().expect("cart").to_string();
    let variant = c
        .store
        .list_products(&Default::default())
        .await
        .expect("products")
        .iter()
        .flat_map(|p| p.variants.clone())
        .find(|v| v.sku == "TH-ADJ-S-BLK")
        .expect("sku")
        .id;
    c.send(
        1,
        post.clone(),
        &format!("/api/agent/cart/{cart}/items"),
        &key,
        Some("i"),
        Some(json!({"variant_id": variant})),
    )
    .await;
    let address = json!({"name": "Ada", "line1": "1 Main St", "city": "Denver", "region": "CO", "postal_code": "80202"});
    c.send(
        2,
        reqwest::Method::PUT,
        &format!("/api/agent/cart/{cart}/shipping-address"),
        &key,
        Some("a"),
        Some(address),
    )
    .await;
    let path = format!("/api/agent/cart/{cart}/checkout");
    let (status, headers, body) = c.send(1, post.clone(), &path, &key, Some("unpaid"), None).await;
    assert_eq!(status, 402, "{body}");
    // The wallet step: mint a shared payment token at the Stripe every node uses (node 0's sandbox).
    let params = crate::support::challenge_params(headers["www-authenticate"].to_str().unwrap());
    let amount = body["details"]["amount_cents"].as_i64().unwrap();
    let spt: Value = c.client
        .post(c.url(0, "/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens"))
        .basic_auth("sk_test_wallet", None::<&str>)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("payment_method=pm_card_visa&usage_limits%5Bcurrency%5D=usd&usage_limits%5Bmax_amount%5D={amount}&usage_limits%5Bexpires_at%5D=4102444800"))
        .send().await.unwrap().json().await.unwrap();
    let auth = crate::support::credential(&params, spt["id"].as_str().unwrap());

    let mut tasks = Vec::new();
    for i in 0..15 {
        let (c, key, path, auth) = (c.clone(), key.clone(), path.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let response = c
                .client
                .post(c.url(i, &path))
                .header("x-api-key", key)
                .header("authorization", auth)
                .header("idempotency-key", format!("pay-{}", i % 2))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let (mut intents, mut orders) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for task in tasks {
        let (status, body) = task.await.expect("task");
        match status {
            200 => {
                intents.insert(body["payment_intent_id"].as_str().unwrap().to_string());
                orders.insert(body["order_id"].as_str().unwrap().to_string());
            }
            409 => assert!(
                ["cart_locked", "idempotency_in_progress", "cart_already_completed"]
                    .contains(&body["error"].as_str().unwrap()),
                "{body}"
            ),
            other => {
                let logs: Vec<String> = c._nodes.lock().unwrap().iter().map(|n| n.stderr()).collect();
                let errors: Vec<&str> = logs
                    .iter()
                    .flat_map(|l| l.lines())
                    .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                    .collect();
                panic!("unexpected {other}: {body}\n{}", errors.join("\n"))
            }
        }
    }
    assert_eq!((intents.len(), orders.len()), (1, 1), "{intents:?} {orders:?}");
    let order = c.store.get_order(orders.first().unwrap()).await.unwrap().unwrap();
    assert_eq!(order.status, kifly_store::OrderStatus::Paid);
    assert_eq!(order.payment_reference.as_ref(), intents.first());
    assert_eq!(c.audit_count("checkout.mpp").await, 1, "one order was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis; run by scripts/test.sh"]
async fn cluster_rate_limit_holds_across_nodes() {
    let c = Cluster::start(3).await;
    let key = c.key().await;
    for i in 0..60 {
        let (status, headers, body) =
            c.send(i, reqwest::Method::GET, "/api/agent/products?limit=1", &key, None, None).await;
        assert_eq!(status, 200, "request {} on node {}: {body}", i + 1, i % 3);
        let remaining: u32 = headers["x-ratelimit-remaining"].to_str().unwrap().parse().unwrap();
        assert_eq!(remaining, 59 - i as u32, "request {}", i + 1);
    }
    let (status, headers, body) =
        c.send(60, reqwest::Method::GET, "/api/agent/products?limit=1", &key, None, None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis; run by scripts/test.sh"]
async fn cluster_concurrent_changes_to_one_cart_through_three_nodes_are_all_kept() {
    let c = Arc::new(Cluster::start(3).await);
    let key = c.key().await;
    let (_, _, cart) = c
        .send(
            0,
            reqwest::Method::POST,
            "/api/agent/cart",
            &key,
            Some("cart"),
            Some(json!({"seller_handle": "trailhead-outfitters"})),
        )
        .await;
    let cart_id = cart["cart_id"].as_str().expect("cart").to_string();
    let seller = c.store.get_seller_by_handle("trailhead-outfitters").await.unwrap().unwrap();
    let filter = kifly_store::ProductFilter { seller_id: Some(seller.id), category: None };
    let variant = c.store.list_products(&filter).await.unwrap()[0].variants[0].id.clone();
    let mut tasks = Vec::new();
    for i in 0..15 {
        let (c, key, cart_id, variant) = (c.clone(), key.clone(), cart_id.clone(), variant.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/api/agent/cart/{cart_id}/items");
            c.send(
                i,
                reqwest::Method::POST,
                &path,
                &key,
                Some(&format!("add-{i}")),
                Some(json!({"variant_id": variant})),
            )
            .await
        }));
    }
    for task in tasks {
        let (status, _, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
    }
    let (_, _, cart) =
        c.send(2, reqwest::Method::GET, &format!("/api/agent/cart/{cart_id}"), &key, None, None).await;
    assert_eq!(cart["items"][0]["quantity"], 15, "no add was lost: {cart}");
    assert_eq!(c.audit_count("cart.add_item").await, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Redis; run by scripts/test.sh"]
async fn cluster_revocation_and_limits_reach_every_node_within_five_seconds() {
    let c = Cluster::start(3).await;
    let key = c.key().await;
    for i in 0..3 {
        let (status, _, _) =
            c.send(i, reqwest::Method::GET, "/api/agent/products?limit=1", &key, None, None).await;
        assert_eq!(status, 200);
    }
    let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let id = c.store.list_api_keys().await.unwrap().into_iter().find(|k| k.name == "cluster").unwrap().id;
    kifly_with_env(c.dir.path(), &["keys", "revoke", &id], &env).ok();
    kifly_with_env(c.dir.path(), &["limits", "set", "max_item_quantity=7"], &env).ok();
    let started = Instant::now();
    for i in 0..3 {
        let revoked = poll_until(Duration::from_secs(5), || async {
            let (status, _, body) =
                c.send(i, reqwest::Method::GET, "/api/agent/products?limit=1", &key, None, None).await;
            status == 401 && body["error"] == "api_key_revoked"
        })
        .await;
        assert!(revoked.is_some(), "node {i} still accepts the revoked key");
        let limits = poll_until(Duration::from_secs(5), || async {
            let r = c.client.get(c.url(i, "/api/agent/platform/limits")).send().await.unwrap();
            r.json::<Value>().await.unwrap()["max_item_quantity"] == 7
        })
        .await;
        assert!(limits.is_some(), "node {i} still shows the old limits");
    }
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// Stops the machine's PostgreSQL cluster on creation of the outage, and always starts it again.
struct Outage;

impl Outage {
    fn pg_ctl(action: &str) -> std::process::ExitStatus {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .expect("a PostgreSQL cluster under /etc/postgresql");
        let mut cmd = std::process::Command::new("pg_ctlcluster");
        cmd.arg("--skip-systemctl-redirect");
        if action == "stop" {
            cmd.args(["--mode", "fast"]);
        }
        cmd.args([version.as_str(), "main", action]).status().expect("pg_ctlcluster")
    }

    fn begin() -> Outage {
        assert!(Self::pg_ctl("stop").success(), "could not stop PostgreSQL");
        Outage
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let _ = Self::pg_ctl("start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the machine's PostgreSQL; run alone by scripts/test.sh"]
async fn fault_postgres_outage_answers_503_and_recovers_without_restart() {
    let c = Cluster::start(1).await;
    let key = c.key().await;
    let body = json!({"seller_handle": "trailhead-outfitters"});
    let create = |idem: String| {
        let (c, key, body) = (&c, key.clone(), body.clone());
        async move {
            let started = Instant::now();
            let outcome =
                c.send(0, reqwest::Method::POST, "/api/agent/cart", &key, Some(&idem), Some(body)).await;
            (idem, outcome, started.elapsed())
        }
    };
    let mut keys = Vec::new();
    for i in 0..10 {
        let (idem, (status, _, _), _) = create(format!("before-{i}")).await;
        assert_eq!(status, 201);
        keys.push(idem);
    }
    // Five carts ready to pay (challenge answered with a minted token), paid during the outage.
    let pay_key = c.key().await; // its own rate-limit bucket
    let mut payments = Vec::new();
    for i in 0..5 {
        payments.push(c.ready_mpp_payment(0, &pay_key, &format!("pay-{i}")).await);
    }

    let outage = Outage::begin();
    for (path, auth, idem) in &payments {
        let response = c
            .client
            .post(c.url(0, path))
            .header("x-api-key", &pay_key)
            .header("authorization", auth)
            .header("idempotency-key", idem)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        assert!(status == 503 || status == 200, "a payment during the outage: {status}");
    }
    let mut saw_503 = false;
    for i in 0..10 {
        let (idem, (status, headers, body), took) = create(format!("during-{i}")).await;
        assert!(status == 503 || status == 201, "during the outage: {status} {body}");
        if status == 503 {
            saw_503 = true;
            assert_eq!(body["error"], "upstream_unavailable", "{body}");
            assert!(body["retry_after_seconds"].as_u64().is_some() && body["retryable"] == true, "{body}");
            assert!(headers.contains_key("retry-after"));
        }
        assert!(took < Duration::from_secs(10), "a request hung for {took:?}");
        keys.push(idem);
    }
    assert!(saw_503, "no request failed while PostgreSQL was down");
    drop(outage);

    // The node recovers by itself: no restart.
    let ready = poll_until(Duration::from_secs(60), || async {
        c.client.get(c.url(0, "/readyz")).send().await.is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
    assert!(ready.is_some(), "the node did not recover after PostgreSQL came back");

    // Every request is retried with its own key until it succeeds: one cart per key, none lost.
    let mut carts = std::collections::BTreeSet::new();
    for idem in &keys {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, (status, _, body), _) = create(idem.clone()).await;
            if status == 201 {
                carts.insert(body["cart_id"].as_str().unwrap_or_default().to_string());
                break;
            }
            assert!(Instant::now() < deadline, "{idem} never succeeded after the outage: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(carts.len(), keys.len(), "one cart per key");
    // (The carts paid below were created before the outage, one each.)
    assert_eq!(
        c.audit_count("cart.create").await,
        keys.len() + payments.len(),
        "no lost or duplicated carts"
    );

    // Every payment retried with its key after the outage ends paid, once: one order and one
    // PaymentIntent per cart.
    let mut intents = std::collections::BTreeSet::new();
    for (path, auth, idem) in &payments {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = c
                .client
                .post(c.url(0, path))
                .header("x-api-key", &pay_key)
                .header("authorization", auth)
                .header("idempotency-key", idem)
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == 200 {
                intents.insert(body["payment_intent_id"].as_str().unwrap_or_default().to_string());
                let order = c.store.get_order(body["order_id"].as_str().unwrap()).await.unwrap().unwrap();
                assert_eq!(order.status, kifly_store::OrderStatus::Paid);
                break;
            }
            assert!(Instant::now() < deadline, "{path} never paid after the outage: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(intents.len(), payments.len(), "one PaymentIntent per cart");
    assert_eq!(c.audit_count("checkout.mpp").await, payments.len(), "no lost or duplicated orders");
}
