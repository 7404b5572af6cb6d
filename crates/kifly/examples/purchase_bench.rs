//! Complete purchases per second through the MPP rail against a running server with the built-in
//! sandbox (`kifly serve --demo`, rate limits off). Each purchase is what an agent does: create a
//! cart, add an item, set the address, get the 402 challenge, mint a shared payment token in the
//! sandbox (the agent's wallet step), and send the paid retry.
//!
//! ```text
//! cargo run --release -p kifly --example purchase_bench -- URL NETWORK_KEY [WORKERS] [SECONDS]
//! ```
//!
//! Prints purchases/s and the p50/p99 of the paid retry. Not a test: see `scripts/purchase_bench.sh`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// An untracked-inventory variant of the demo catalog, so the run never sells out.
const SKU_VARIANT_QUERY: &str = "TH-IB32-SAG";

struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("idempotency-key", ulid_like())
            .header("x-api-key", &self.key);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

fn ulid_like() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The auth-params of a `WWW-Authenticate: Payment …` header.
fn challenge_params(header: &str) -> serde_json::Map<String, Value> {
    let mut params = serde_json::Map::new();
    let mut rest = header.trim_start_matches("Payment ");
    while let Some((name, after)) = rest.split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else { break };
        params.insert(name.trim_start_matches([',', ' ']).to_string(), json!(value));
        rest = tail;
    }
    params
}

async fn variant_id(client: &Client) -> String {
    let path = format!("/api/agent/products?q={SKU_VARIANT_QUERY}&seller_handle=trailhead-outfitters");
    let (_, _, body) = client.send(reqwest::Method::GET, &path, None, &[]).await;
    /// The `var_…` value of the object that also holds the SKU.
    fn find(value: &Value) -> Option<String> {
        match value {
            Value::Object(map) => {
                let here = map.values().any(|v| v.as_str() == Some(SKU_VARIANT_QUERY));
                let id = map.values().filter_map(Value::as_str).find(|v| v.starts_with("var_"));
                match (here, id) {
                    (true, Some(id)) => Some(id.to_string()),
                    _ => map.values().find_map(find),
                }
            }
            Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    find(&body).unwrap_or_else(|| panic!("{SKU_VARIANT_QUERY} not found in {body}"))
}

async fn purchase(client: &Client, variant: &str) -> Duration {
    let (status, _, cart) = client
        .send(
            reqwest::Method::POST,
            "/api/agent/cart",
            Some(json!({"seller_handle": "trailhead-outfitters"})),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{cart}");
    let cart = cart["cart_id"].as_str().expect("cart id").to_string();
    let (status, _, body) = client
        .send(
            reqwest::Method::POST,
            &format!("/api/agent/cart/{cart}/items"),
            Some(json!({"variant_id": variant})),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let address = json!({"name": "Bench Buyer", "line1": "1 Main St", "city": "Denver", "region": "CO", "postal_code": "80202", "country": "US"});
    let (status, _, body) = client
        .send(reqwest::Method::PUT, &format!("/api/agent/cart/{cart}/shipping-address"), Some(address), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/api/agent/cart/{cart}/checkout");
    let (status, headers, body) = client.send(reqwest::Method::POST, &path, None, &[]).await;
    assert_eq!(status, 402, "{body}");
    let params = challenge_params(headers["www-authenticate"].to_str().expect("header"));
    let amount = body["details"]["amount_cents"].as_i64().expect("amount");
    let expires =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 3600;
    let form = format!(
        "payment_method=pm_card_visa&usage_limits%5Bcurrency%5D=usd&usage_limits%5Bmax_amount%5D={amount}&usage_limits%5Bexpires_at%5D={expires}"
    );
    let spt: Value = client
        .http
        .post(format!("{}/sandbox/stripe/v1/test_helpers/shared_payment/granted_tokens", client.url))
        .basic_auth("sk_test_bench_wallet", None::<&str>)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("spt");
    let credential = json!({"challenge": params, "payload": {"spt": spt["id"]}});
    let auth = format!(
        "Payment {}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(credential.to_string())
    );
    let started = Instant::now();
    let (status, _, body) =
        client.send(reqwest::Method::POST, &path, None, &[("authorization", &auth)]).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    elapsed
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, key) = (args.get(1).expect("URL").clone(), args.get(2).expect("KEY").clone());
    let workers: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(10);
    let http = reqwest::Client::builder().pool_max_idle_per_host(workers * 2).build().expect("client");
    let client = std::sync::Arc::new(Client { http, url, key });
    let variant = variant_id(&client).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, variant) = (client.clone(), variant.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                latencies.push(purchase(&client, &variant).await);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "purchases: {} in {elapsed:.1} s = {:.0}/s with {workers} workers; paid retry p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pick(0.50).as_secs_f64() * 1000.0,
        pick(0.99).as_secs_f64() * 1000.0,
    );
}
