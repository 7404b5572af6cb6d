//! Test fixtures: a [`TestApp`] on a fresh SQLite file with the demo catalog and two keys.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use kifly::app::App;
use kifly::config::Config;
use kifly_core::scope::Scope;
use kifly_store::Store;
use kifly_store::testing::TempPostgres;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

pub struct TestApp {
    pub app: App,
    pub router: Router,
    pub store: Arc<dyn Store>,
    /// A network key with every scope.
    pub network_key: String,
    /// A key scoped to `trailhead-outfitters`, every scope.
    pub seller_key: String,
    pub dir: TempDir,
    /// The client address requests come from: unique per app, so the per-IP anonymous bucket is
    /// this test's own even when the limiter is shared (Redis) by tests running in parallel.
    pub client_addr: std::net::SocketAddr,
    /// The PostgreSQL database of this test, when the suite runs on PostgreSQL.
    #[expect(dead_code, reason = "held for its Drop, which drops the database")]
    pub postgres: Option<TempPostgres>,
}

/// A response, fully read.
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the error code of an error envelope, and returns the body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "body: {body}");
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "message missing: {body}");
        assert!(body["details"].is_object(), "details missing: {body}");
        body
    }

    #[track_caller]
    pub fn assert_ok(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.bytes));
        self.json()
    }
}

/// A default test configuration rooted in `dir`.
pub fn config_in(dir: &TempDir) -> Config {
    Config { data_dir: dir.path().to_path_buf(), ..Config::default() }
}

/// The backend matrix: `KIFLY_TEST_DATABASE_URL=postgres://…` runs every test on a PostgreSQL
/// database of its own (default: a SQLite file in the test's temp dir), and `KIFLY_TEST_REDIS_URL`
/// puts the rate limiter in Redis.
async fn apply_matrix(config: &mut Config) -> Option<TempPostgres> {
    if let Ok(url) = std::env::var("KIFLY_TEST_REDIS_URL") {
        config.redis_url = Some(url);
    }
    match std::env::var("KIFLY_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let db = TempPostgres::create(&url).await.expect("test database");
            config.database_url = Some(db.url.clone());
            Some(db)
        }
        _ => None,
    }
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    /// A test app that also listens on a loopback port, so the payment clients reach the built-in
    /// sandbox over real HTTP and the sandbox's signed webhooks come back to the real endpoints.
    pub async fn serving() -> TestApp {
        Self::serving_with(|_| {}).await
    }

    pub async fn serving_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let t = Self::with_config(|config| {
            config.bind = addr.to_string();
            config.payments_sandbox = true;
            config.rate_limit_anon = "off".into();
            config.rate_limit_agent = "off".into();
            tweak(config);
        })
        .await;
        let router = t.router.clone();
        tokio::spawn(async move {
            let _ =
                axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                    .await;
        });
        t
    }

    /// The base URL of a [`TestApp::serving`] app.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.app.config.bind)
    }

    /// A test app whose config `tweak` adjusts (e.g. rate limits off).
    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config_in(&dir);
        let postgres = apply_matrix(&mut config).await;
        tweak(&mut config);
        let store = kifly::app::open_store(&config).await.expect("store");
        let secret = kifly::app::load_or_create_secret(&config).expect("secret");
        let lines = kifly::demo::seed(store.as_ref(), &secret).await.expect("seed").expect("fresh store");
        let key_of = |needle: &str| {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .and_then(|l| l.split_whitespace().last())
                .expect("key line")
                .to_string()
        };
        let (network_key, seller_key) = (key_of("network key"), key_of("seller key"));
        let app = App::new(store.clone(), config, secret).expect("app");
        let router = kifly::http::router(app.clone());
        let [a, b, c, _] = ulid::Ulid::new().to_bytes()[10..14].try_into().expect("4 bytes");
        let client_addr = std::net::SocketAddr::from(([127, a, b, c.max(1)], 40000));
        TestApp { app, router, store, network_key, seller_key, dir, postgres, client_addr }
    }

    /// Creates another key.
    pub async fn create_key(&self, seller: Option<&str>, scopes: &[Scope]) -> String {
        kifly::service::keys::create_key(
            self.store.as_ref(),
            &self.app.secret,
            "test",
            seller,
            scopes.to_vec(),
        )
        .await
        .expect("create key")
        .1
    }

    /// Sends a request. `key` goes in `Authorization: Bearer`; `body` is sent verbatim.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request");
        request.extensions_mut().insert(axum::extract::ConnectInfo(self.client_addr));
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes().to_vec();
        TestResponse { status, headers, bytes }
    }

    pub async fn get(&self, path: &str, key: &str) -> TestResponse {
        self.send(Method::GET, path, Some(key), &[], None).await
    }

    /// A mutating request with a fresh Idempotency-Key.
    pub async fn write(&self, method: Method, path: &str, key: &str, body: Value) -> TestResponse {
        let idem = ulid::Ulid::new().to_string();
        self.write_with_key(method, path, key, &idem, body).await
    }

    pub async fn write_with_key(
        &self,
        method: Method,
        path: &str,
        key: &str,
        idem: &str,
        body: Value,
    ) -> TestResponse {
        let body = if body.is_null() { None } else { Some(body.to_string()) };
        self.send(method, path, Some(key), &[("idempotency-key", idem)], body).await
    }

    /// Creates a cart for `seller` with `key` and returns its id.
    pub async fn cart(&self, key: &str, seller: &str) -> String {
        let r = self
            .write(Method::POST, "/api/agent/cart", key, serde_json::json!({"seller_handle": seller}))
            .await;
        r.assert_ok(201)["cart_id"].as_str().expect("cart_id").to_string()
    }

    /// The id of a variant of `seller`, by SKU.
    pub async fn variant(&self, sku: &str) -> String {
        let products = self.store.list_products(&Default::default()).await.expect("products");
        products
            .iter()
            .flat_map(|p| p.variants.iter())
            .find(|v| v.sku == sku)
            .unwrap_or_else(|| panic!("no variant {sku}"))
            .id
            .clone()
    }

    /// The first variant (SKU and id) of the first product of a seller.
    pub async fn any_variant_of(&self, seller: &str) -> String {
        let seller = self.store.get_seller_by_handle(seller).await.expect("seller").expect("seller exists");
        let products = self
            .store
            .list_products(&kifly_store::ProductFilter { seller_id: Some(seller.id), category: None })
            .await
            .expect("products");
        products[0].variants[0].id.clone()
    }
}

/// A valid address in `region`.
pub fn address(city: &str, region: &str) -> Value {
    serde_json::json!({
        "name": "Ada Lovelace", "line1": "1 Main St", "city": city, "region": region, "postal_code": "94105"
    })
}

/// The auth-params of a `WWW-Authenticate: Payment …` header (every value is a quoted string).
pub fn challenge_params(header: &str) -> serde_json::Map<String, Value> {
    let rest = header.strip_prefix("Payment ").expect("Payment scheme");
    let mut params = serde_json::Map::new();
    let mut chars = rest;
    while let Some((name, after)) = chars.split_once("=\"") {
        let (value, tail) = after.split_once('"').expect("closing quote");
        params.insert(name.trim_start_matches([',', ' ']).to_string(), serde_json::json!(value));
        chars = tail;
    }
    params
}

/// `Authorization: Payment <credential>` answering `challenge` with `spt`.
pub fn credential(challenge: &serde_json::Map<String, Value>, spt: &str) -> String {
    let credential = serde_json::json!({"challenge": challenge, "payload": {"spt": spt}});
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(credential.to_string());
    format!("Payment {encoded}")
}
