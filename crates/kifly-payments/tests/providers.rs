//! The provider clients against loopback fakes of Stripe, Coinbase Commerce and an x402 facilitator,
//! served by axum on 127.0.0.1:0 inside the test. The fakes keep Stripe's idempotency semantics (same key
//! → same stored answer + `Idempotent-Replayed: true`) and can be told to be slow or to fail, so timeouts,
//! 5xx/429, declines, replays after a lost response and webhook delivery are exercised over real HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k256::ecdsa::SigningKey;
use kifly_payments::coinbase::{self, CoinbaseClient, CoinbaseConfig, CreateCharge};
use kifly_payments::mpp::{self, CartBinding, ChallengeParams, ChallengeSigner, StripeMethodDetails};
use kifly_payments::provider::{HostedCheckoutClient, HostedCheckoutRequest, Rail};
use kifly_payments::stripe::{
    self, CheckoutLineItem, CheckoutSessionStatus, CreateCheckoutSession, CreateSptPaymentIntent, Form,
    GrantTestToken, PaymentIntentStatus, SharedPaymentGrantedToken, StripeClient, StripeConfig,
    StripeEventKind, UsageLimits,
};
use kifly_payments::x402::{
    self, BASE_SEPOLIA, ExactOffer, FacilitatorClient, FacilitatorConfig, FacilitatorRequest, SettleResponse,
    SupportedKind, SupportedResponse, VerifyResponse, X402Rejection,
};
use kifly_payments::{ProviderError, Timeouts};
use serde_json::{Value, json};
use time::OffsetDateTime;

// ---------------------------------------------------------------------------------------------------
// A generic fake: behaviour switch, request log, idempotency store.

#[derive(Clone, Copy, Debug)]
enum Behavior {
    Normal,
    /// Store the answer, then wait before sending it (a response lost to a client timeout).
    SlowAfterCommit(Duration),
    /// Answer with this status before doing anything.
    Fail(u16),
}

#[derive(Debug)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

struct FakeState {
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<Recorded>>,
    /// Idempotency-Key → (status, body).
    idempotent: Mutex<HashMap<String, (u16, Value)>>,
    /// id → object.
    objects: Mutex<HashMap<String, Value>>,
    created: AtomicUsize,
    /// Facilitator: settled nonces.
    nonces: Mutex<HashSet<String>>,
}

type Shared = Arc<FakeState>;

impl FakeState {
    fn new() -> Shared {
        Arc::new(Self {
            behavior: Mutex::new(Behavior::Normal),
            requests: Mutex::new(Vec::new()),
            idempotent: Mutex::new(HashMap::new()),
            objects: Mutex::new(HashMap::new()),
            created: AtomicUsize::new(0),
            nonces: Mutex::new(HashSet::new()),
        })
    }

    fn set(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap() = behavior;
    }

    fn record(&self, path: &str, headers: &HeaderMap, body: &Bytes) {
        self.requests.lock().unwrap().push(Recorded {
            path: path.into(),
            headers: headers.clone(),
            body: body.clone(),
        });
    }

    fn last(&self) -> (String, HeaderMap, Bytes) {
        let requests = self.requests.lock().unwrap();
        let last = requests.last().expect("a request was made");
        (last.path.clone(), last.headers.clone(), last.body.clone())
    }

    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn failure(&self) -> Option<Response> {
        match *self.behavior.lock().unwrap() {
            Behavior::Fail(status) => {
                let status = StatusCode::from_u16(status).unwrap();
                let mut response =
                    (status, axum::Json(json!({"error": {"type": "api_error", "message": "fake failure"}})))
                        .into_response();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    response.headers_mut().insert("retry-after", "3".parse().unwrap());
                }
                Some(response)
            }
            _ => None,
        }
    }

    fn delay(&self) -> Option<Duration> {
        match *self.behavior.lock().unwrap() {
            Behavior::SlowAfterCommit(delay) => Some(delay),
            _ => None,
        }
    }

    /// Stripe-style idempotent create: replays the stored answer for a known key, otherwise runs
    /// `create` under the lock (so concurrent requests with one key create one object).
    async fn idempotent(&self, headers: &HeaderMap, create: impl FnOnce(usize) -> (u16, Value)) -> Response {
        let key =
            headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let (status, body, replayed) = {
            let mut store = self.idempotent.lock().unwrap();
            match store.get(&key) {
                Some((status, body)) => (*status, body.clone(), true),
                None => {
                    let n = self.created.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = create(n);
                    if let Some(id) = body.get("id").and_then(Value::as_str) {
                        self.objects.lock().unwrap().insert(id.to_string(), body.clone());
                    }
                    if !key.is_empty() {
                        store.insert(key, (status, body.clone()));
                    }
                    (status, body, false)
                }
            }
        };
        if let Some(delay) = self.delay() {
            tokio::time::sleep(delay).await;
        }
        let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        if replayed {
            response.headers_mut().insert("idempotent-replayed", "true".parse().unwrap());
        }
        response
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

fn short_timeouts() -> Timeouts {
    Timeouts { connect: Duration::from_millis(500), total: Duration::from_millis(400) }
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn https_clients_build_without_any_process_wide_setup() {
    // reqwest's features are unified across the workspace: the TLS backend this crate enables must not
    // make other crates' plain clients depend on a globally installed crypto provider (see src/http.rs).
    reqwest::Client::builder().build().unwrap();
    let client = StripeClient::new(StripeConfig::new("sk_test_fake")).unwrap();
    assert_eq!(client.base_url(), "https://api.stripe.com");
}

// ---------------------------------------------------------------------------------------------------
// Fake Stripe.

async fn fake_stripe() -> (String, Shared) {
    async fn create_session(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        state.record("/v1/checkout/sessions", &headers, &body);
        if let Some(failure) = state.failure() {
            return failure;
        }
        let form = Form::decode(&body);
        state
            .idempotent(&headers, |n| {
                let mut total = 0i64;
                let mut index = 0;
                while let Some(amount) = form.get(&format!("line_items[{index}][price_data][unit_amount]")) {
                    let quantity: i64 = form.get(&format!("line_items[{index}][quantity]")).unwrap().parse().unwrap();
                    total += amount.parse::<i64>().unwrap() * quantity;
                    index += 1;
                }
                let metadata: BTreeMap<String, String> = form
                    .fields()
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_string(), v.clone())))
                    .collect();
                let id = format!("cs_test_{n}");
                (
                    200,
                    json!({
                        "id": id, "object": "checkout.session", "url": format!("https://checkout.stripe.test/c/pay/{id}"),
                        "status": "open", "payment_status": "unpaid", "amount_total": total, "currency": form.get("line_items[0][price_data][currency]"),
                        "customer_email": form.get("customer_email"), "client_reference_id": form.get("client_reference_id"),
                        "metadata": metadata, "expires_at": form.get("expires_at").unwrap().parse::<i64>().unwrap(),
                        "payment_intent": null, "livemode": false, "created": 1
                    }),
                )
            })
            .await
    }

    async fn get_session(
        State(state): State<Shared>,
        Path(id): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        state.record(&format!("/v1/checkout/sessions/{id}"), &headers, &Bytes::new());
        match state.objects.lock().unwrap().get(&id) {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such checkout.session", "param": "session"}}))).into_response(),
        }
    }

    async fn expire_session(
        State(state): State<Shared>,
        Path(id): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        state.record(&format!("/v1/checkout/sessions/{id}/expire"), &headers, &Bytes::new());
        let Some(mut object) = state.objects.lock().unwrap().get(&id).cloned() else {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"type": "invalid_request_error", "message": "No such session"}})),
            )
                .into_response();
        };
        object["status"] = json!("expired");
        object["url"] = Value::Null;
        state.objects.lock().unwrap().insert(id, object.clone());
        state.idempotent(&headers, |_| (200, object)).await
    }

    async fn create_intent(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        state.record("/v1/payment_intents", &headers, &body);
        if let Some(failure) = state.failure() {
            return failure;
        }
        let form = Form::decode(&body);
        state
            .idempotent(&headers, |n| {
                let id = format!("pi_test_{n}");
                let token = form.get("shared_payment_granted_token").unwrap_or_default();
                if token == "spt_declined" {
                    return (
                        402,
                        json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                                         "message": "Your card was declined.", "payment_intent": {"id": id, "status": "requires_payment_method"}}}),
                    );
                }
                if token.is_empty() {
                    return (400, json!({"error": {"type": "invalid_request_error", "message": "Missing token", "param": "shared_payment_granted_token"}}));
                }
                let metadata: BTreeMap<String, String> = form
                    .fields()
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_string(), v.clone())))
                    .collect();
                (
                    200,
                    json!({"id": id, "object": "payment_intent", "amount": form.get("amount").unwrap().parse::<i64>().unwrap(),
                           "currency": form.get("currency"), "status": "succeeded", "metadata": metadata, "livemode": false,
                           "latest_charge": format!("ch_test_{n}")}),
                )
            })
            .await
    }

    async fn get_intent(State(state): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
        state.record(&format!("/v1/payment_intents/{id}"), &headers, &Bytes::new());
        if let Some(failure) = state.failure() {
            return failure;
        }
        match state.objects.lock().unwrap().get(&id) {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn grant_token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        state.record("/v1/test_helpers/shared_payment/granted_tokens", &headers, &body);
        let Some(request) = GrantTestToken::from_form(&Form::decode(&body)) else {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"message": "missing usage_limits"}})),
            )
                .into_response();
        };
        state
            .idempotent(&headers, |n| {
                let token = SharedPaymentGrantedToken {
                    id: format!("spt_test_{n}"),
                    object: "shared_payment.granted_token".into(),
                    created: 1,
                    livemode: false,
                    usage_limits: Some(UsageLimits {
                        currency: request.currency,
                        max_amount: request.max_amount_cents,
                        expires_at: request.expires_at,
                    }),
                };
                (200, serde_json::to_value(token).unwrap())
            })
            .await
    }

    let state = FakeState::new();
    let router = Router::new()
        .route("/v1/test_helpers/shared_payment/granted_tokens", post(grant_token))
        .route("/v1/checkout/sessions", post(create_session))
        .route("/v1/checkout/sessions/{id}", get(get_session))
        .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
        .route("/v1/payment_intents", post(create_intent))
        .route("/v1/payment_intents/{id}", get(get_intent))
        .with_state(state.clone());
    (serve(router).await, state)
}

fn stripe_client(base_url: &str, timeouts: Timeouts) -> StripeClient {
    StripeClient::new(StripeConfig::new("sk_test_fake").with_base_url(base_url).with_timeouts(timeouts))
        .unwrap()
}

fn session_request() -> CreateCheckoutSession {
    CreateCheckoutSession {
        line_items: vec![
            CheckoutLineItem { name: "Trail mug".into(), unit_amount_cents: 1800, quantity: 2 },
            CheckoutLineItem { name: "Delivery".into(), unit_amount_cents: 599, quantity: 1 },
        ],
        currency: "usd".into(),
        customer_email: Some("ada@example.com".into()),
        shipping: None,
        collect_shipping_countries: vec!["US".into()],
        client_reference_id: Some("ord_1".into()),
        metadata: BTreeMap::from([("order_id".into(), "ord_1".into()), ("cart_id".into(), "cart_1".into())]),
        expires_at: now_unix() + 3600,
        success_url: "http://127.0.0.1/paid".into(),
        cancel_url: Some("http://127.0.0.1/cancelled".into()),
    }
}

#[tokio::test]
async fn stripe_checkout_session_create_retrieve_expire() {
    let (base_url, fake) = fake_stripe().await;
    let client = stripe_client(&base_url, Timeouts::default());

    let created = client.create_checkout_session(&session_request(), "checkout:ord_1").await.unwrap();
    assert!(!created.replayed);
    let session = created.value;
    assert_eq!(session.amount_total, Some(4199));
    assert_eq!(session.metadata["order_id"], "ord_1");
    assert!(session.url.as_deref().unwrap().ends_with(&session.id));

    let (path, headers, body) = fake.last();
    assert_eq!(path, "/v1/checkout/sessions");
    // Basic auth with the secret key as user, the pinned version, the idempotency key, a form body.
    assert_eq!(headers["authorization"], "Basic c2tfdGVzdF9mYWtlOg==");
    assert_eq!(headers["stripe-version"], stripe::DEFAULT_API_VERSION);
    assert_eq!(headers["idempotency-key"], "checkout:ord_1");
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    let form = Form::decode(&body);
    assert_eq!(form.get("customer_email"), Some("ada@example.com"));
    assert_eq!(form.get("shipping_address_collection[allowed_countries][0]"), Some("US"));
    assert_eq!(form.get("payment_intent_data[metadata][cart_id]"), Some("cart_1"));

    let fetched = client.retrieve_checkout_session(&session.id).await.unwrap();
    assert_eq!(fetched, session);
    assert!(fake.last().1.get("idempotency-key").is_none(), "GETs carry no idempotency key");

    let expired = client.expire_checkout_session(&session.id, "expire:ord_1").await.unwrap().value;
    assert_eq!(expired.status, Some(CheckoutSessionStatus::Expired));
    assert_eq!(expired.url, None);

    let missing = client.retrieve_checkout_session("cs_missing").await.unwrap_err();
    assert!(
        matches!(missing, ProviderError::InvalidRequest { status: 404, ref code, .. } if code.as_deref() == Some("resource_missing"))
    );
    assert!(matches!(
        client.retrieve_checkout_session("../../v1/charges").await,
        Err(ProviderError::InvalidRequest { status: 400, .. })
    ));
}

#[tokio::test]
async fn stripe_same_idempotency_key_returns_the_same_session() {
    let (base_url, fake) = fake_stripe().await;
    let client = stripe_client(&base_url, Timeouts::default());
    let first = client.create_checkout_session(&session_request(), "checkout:ord_2").await.unwrap();
    let again = client.create_checkout_session(&session_request(), "checkout:ord_2").await.unwrap();
    assert_eq!(first.value.id, again.value.id);
    assert!(!first.replayed);
    assert!(again.replayed, "the provider's replay is visible to the caller");
    let other = client.create_checkout_session(&session_request(), "checkout:ord_3").await.unwrap();
    assert_ne!(other.value.id, first.value.id);
    assert_eq!(fake.created.load(Ordering::SeqCst), 2);
    assert!(matches!(
        client.create_checkout_session(&session_request(), "bad key").await,
        Err(ProviderError::InvalidRequest { .. })
    ));
    assert_eq!(fake.request_count(), 3, "an invalid key is refused before any request");
}

#[tokio::test]
async fn stripe_timeouts_and_failures_are_unavailable_and_a_retry_recovers_the_outcome() {
    let (base_url, fake) = fake_stripe().await;
    let client = stripe_client(&base_url, short_timeouts());

    // Stripe created the session but the answer came too late: unknown outcome.
    fake.set(Behavior::SlowAfterCommit(Duration::from_secs(2)));
    let timed_out = client.create_checkout_session(&session_request(), "checkout:ord_9").await.unwrap_err();
    assert_eq!(
        timed_out,
        ProviderError::Unavailable { reason: "stripe: timed out".into(), retry_after_seconds: None }
    );
    assert!(timed_out.is_retryable());
    // The retry with the same key gets the session that was created, not a second one.
    fake.set(Behavior::Normal);
    let recovered = client.create_checkout_session(&session_request(), "checkout:ord_9").await.unwrap();
    assert!(recovered.replayed);
    assert_eq!(fake.created.load(Ordering::SeqCst), 1);

    fake.set(Behavior::Fail(500));
    assert!(matches!(
        client.create_checkout_session(&session_request(), "k1").await,
        Err(ProviderError::Unavailable { .. })
    ));
    fake.set(Behavior::Fail(503));
    assert!(matches!(client.retrieve_payment_intent("pi_1").await, Err(ProviderError::Unavailable { .. })));
    fake.set(Behavior::Fail(429));
    assert_eq!(
        client.create_checkout_session(&session_request(), "k2").await.unwrap_err(),
        ProviderError::Unavailable { reason: "stripe: HTTP 429".into(), retry_after_seconds: Some(3) }
    );

    // Nothing listening at all.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let unreachable =
        stripe_client(&closed, short_timeouts()).retrieve_checkout_session("cs_1").await.unwrap_err();
    assert_eq!(
        unreachable,
        ProviderError::Unavailable { reason: "stripe: connection failed".into(), retry_after_seconds: None }
    );
}

// ---------------------------------------------------------------------------------------------------
// MPP challenge → credential → PaymentIntent with the SPT, the way the checkout will use them.

fn binding() -> CartBinding {
    CartBinding {
        key_id: "key_1".into(),
        cart_id: "cart_1".into(),
        cart_version: 7,
        amount_cents: 4199,
        currency: "usd".into(),
    }
}

fn challenge_params() -> ChallengeParams {
    ChallengeParams {
        binding: binding(),
        stripe: StripeMethodDetails {
            network_id: "profile_kifly_sandbox".into(),
            payment_method_types: vec!["card".into()],
            metadata: BTreeMap::new(),
        },
        expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(5),
        description: Some("Kifly order".into()),
        external_id: Some("cart_1".into()),
        body_digest: None,
    }
}

/// The credential exactly as mppx 0.11 builds it (`src/Credential.ts` `serialize` after
/// `src/stripe/client/Charge.ts` `createCredential`): the parsed challenge with `request` re-serialized
/// (JCS, base64url), `opaque` as the parsed object, `payload: {spt}`, JSON.stringify, base64url no pad.
fn mppx_authorization(challenge: &mpp::Challenge, spt: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let opaque: Value = serde_json::from_slice(&b64.decode(&challenge.opaque).unwrap()).unwrap();
    let wire = json!({
        "challenge": {"id": challenge.id, "realm": challenge.realm, "method": challenge.method, "intent": challenge.intent,
                      "request": challenge.request, "description": challenge.description, "expires": challenge.expires, "opaque": opaque},
        "payload": {"spt": spt},
    });
    format!("Payment {}", b64.encode(serde_json::to_string(&wire).unwrap()))
}

fn spt_intent(verified: &mpp::VerifiedPayment) -> CreateSptPaymentIntent {
    CreateSptPaymentIntent {
        amount_cents: verified.binding.amount_cents,
        currency: verified.binding.currency.clone(),
        shared_payment_token: verified.shared_payment_token.clone(),
        description: None,
        metadata: BTreeMap::from([
            ("mpp_challenge_id".into(), verified.challenge_id.clone()),
            ("cart_id".into(), verified.binding.cart_id.clone()),
        ]),
        shipping: None,
    }
}

#[tokio::test]
async fn mpp_paid_retry_charges_once_even_when_retried_concurrently() {
    let (base_url, fake) = fake_stripe().await;
    let client = stripe_client(&base_url, Timeouts::default());
    let signer = ChallengeSigner::new("127.0.0.1", "mpp-secret");

    let challenge = signer.issue(&challenge_params());
    let header = challenge.to_header_value();
    assert!(header.starts_with("Payment id=\""));

    // The client mints an SPT limited to the challenge's amount (mppx does this through
    // MPPX_STRIPE_SPT_URL, which the sandbox serves with the same shapes).
    let request = challenge.request_json();
    let grant = GrantTestToken {
        payment_method: "pm_card_visa".into(),
        currency: request["currency"].as_str().unwrap().into(),
        max_amount_cents: request["amount"].as_str().unwrap().parse().unwrap(),
        expires_at: now_unix() + 300,
        network_id: request["methodDetails"]["networkId"].as_str().map(str::to_string),
    };
    let spt = client.create_test_granted_token(&grant, "grant-1").await.unwrap().value;
    assert_eq!(spt.usage_limits.as_ref().unwrap().max_amount, 4199);
    assert_eq!(Form::decode(&fake.last().2).get("seller_details[network_id]"), Some("profile_kifly_sandbox"));
    let authorization = mppx_authorization(&challenge, &spt.id);
    let credential = mpp::parse_authorization(&authorization).unwrap();
    let verified = signer.verify(&credential, &binding(), None, OffsetDateTime::now_utc()).unwrap();

    // 20 paid retries of the same challenge at once: Stripe idempotency keyed on the challenge id.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        let request = spt_intent(&verified);
        let key = verified.challenge_id.clone();
        tasks.push(tokio::spawn(async move { client.create_payment_intent_with_spt(&request, &key).await }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        let intent = task.await.unwrap().unwrap().value;
        assert_eq!(intent.status, PaymentIntentStatus::Succeeded);
        ids.insert(intent.id);
    }
    assert_eq!(ids.len(), 1, "one PaymentIntent");
    assert_eq!(fake.created.load(Ordering::SeqCst), 2, "one granted token, one PaymentIntent");
    let (_, headers, body) = fake.last();
    assert_eq!(headers["idempotency-key"], verified.challenge_id.as_str());
    let form = Form::decode(&body);
    assert_eq!(form.get("shared_payment_granted_token"), Some(spt.id.as_str()));
    assert_eq!(form.get("amount"), Some("4199"));
    assert_eq!(form.get("confirm"), Some("true"));

    let intent_id = ids.into_iter().next().unwrap();
    let receipt = mpp::Receipt::success(&verified, &intent_id, OffsetDateTime::now_utc());
    let decoded = mpp::Receipt::from_header_value(&receipt.to_header_value()).unwrap();
    assert_eq!(decoded.reference, intent_id);
    assert_eq!(client.retrieve_payment_intent(&intent_id).await.unwrap().id, intent_id);
}

#[tokio::test]
async fn mpp_decline_and_tampered_challenges() {
    let (base_url, _fake) = fake_stripe().await;
    let client = stripe_client(&base_url, Timeouts::default());
    let signer = ChallengeSigner::new("127.0.0.1", "mpp-secret");
    let challenge = signer.issue(&challenge_params());

    let declined = signer
        .verify(
            &mpp::parse_authorization(&mppx_authorization(&challenge, "spt_declined")).unwrap(),
            &binding(),
            None,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let error = client
        .create_payment_intent_with_spt(&spt_intent(&declined), &declined.challenge_id)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        ProviderError::Declined { ref code, ref decline_code, payment_intent_id: Some(_), .. }
            if code == "card_declined" && decline_code.as_deref() == Some("generic_decline")
    ));

    let credential = mpp::parse_authorization(&mppx_authorization(&challenge, "spt_1")).unwrap();
    let now = OffsetDateTime::now_utc();
    for (expected, error) in [
        (CartBinding { amount_cents: 4198, ..binding() }, mpp::MppError::BindingMismatch("amount")),
        (CartBinding { cart_version: 8, ..binding() }, mpp::MppError::BindingMismatch("cart version")),
        (CartBinding { key_id: "key_2".into(), ..binding() }, mpp::MppError::BindingMismatch("api key")),
    ] {
        assert_eq!(signer.verify(&credential, &expected, None, now), Err(error));
    }
    assert_eq!(
        signer.verify(&credential, &binding(), None, now + time::Duration::minutes(6)),
        Err(mpp::MppError::Expired)
    );
}

// ---------------------------------------------------------------------------------------------------
// Webhook delivery over HTTP to a receiver that verifies the raw body and de-duplicates by event id.

#[tokio::test]
async fn stripe_webhooks_good_duplicate_tampered_expired() {
    const SECRET: &str = "whsec_fake";
    async fn receive(
        State(seen): State<Arc<Mutex<HashSet<String>>>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        let header = headers.get(stripe::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        match stripe::construct_event(&body, header, SECRET, stripe::WEBHOOK_TOLERANCE, now_unix()) {
            Ok(event) if seen.lock().unwrap().insert(event.id.clone()) => {
                assert!(matches!(event.kind, StripeEventKind::CheckoutSessionCompleted(_)));
                (StatusCode::OK, "processed")
            }
            Ok(_) => (StatusCode::OK, "duplicate"),
            Err(_) => (StatusCode::BAD_REQUEST, "rejected"),
        }
    }
    let base_url = serve(
        Router::new()
            .route("/api/webhooks/stripe", post(receive))
            .with_state(Arc::new(Mutex::new(HashSet::new()))),
    )
    .await;
    let url = format!("{base_url}/api/webhooks/stripe");
    let http = reqwest::Client::new();
    let session = json!({"id": "cs_1", "object": "checkout.session", "payment_status": "paid", "status": "complete", "metadata": {"order_id": "ord_1"}, "expires_at": 0});
    let body = stripe::event_body("evt_1", "checkout.session.completed", now_unix(), &session).unwrap();
    let deliver = |body: Vec<u8>, signature: String| {
        let request = http.post(&url).header("Stripe-Signature", signature).body(body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let signature = stripe::sign_webhook(&body, SECRET, now_unix());
    assert_eq!(deliver(body.clone(), signature.clone()).await, (200, "processed".into()));
    assert_eq!(deliver(body.clone(), signature.clone()).await, (200, "duplicate".into()));
    let tampered = String::from_utf8(body.clone()).unwrap().replace("ord_1", "ord_2").into_bytes();
    assert_eq!(deliver(tampered, signature).await, (400, "rejected".into()));
    let stale = stripe::sign_webhook(&body, SECRET, now_unix() - 301);
    assert_eq!(deliver(body, stale).await, (400, "rejected".into()));
}

// ---------------------------------------------------------------------------------------------------
// Fake Coinbase Commerce.

async fn fake_coinbase() -> (String, Shared) {
    async fn create_charge(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        state.record("/charges", &headers, &body);
        if let Some(failure) = state.failure() {
            return failure;
        }
        if headers.get("x-cc-api-key").is_none_or(|key| key != "cc_key") {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {"type": "authorization_error", "message": "invalid api key"}})),
            )
                .into_response();
        }
        let request: Value = serde_json::from_slice(&body).unwrap();
        if request["local_price"]["amount"].as_str().is_none_or(|amount| amount.starts_with('-')) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"type": "invalid_request", "message": "bad amount"}})),
            )
                .into_response();
        }
        let response = state
            .idempotent(&headers, |n| {
                let code = format!("CODE{n:04}");
                let charge = json!({
                    "id": format!("uuid-{n}"), "code": code, "hosted_url": format!("https://commerce.coinbase.test/pay/{code}"),
                    "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z",
                    "pricing": {"local": request["local_price"]}, "timeline": [{"status": "NEW", "time": "2026-01-01T00:00:00Z"}],
                    "metadata": request["metadata"], "id_for_lookup": code,
                });
                (201, charge)
            })
            .await;
        // Commerce wraps objects in {"data": …}.
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let charge: Value = serde_json::from_slice(&bytes).unwrap();
        (parts, axum::Json(json!({"data": charge}))).into_response()
    }

    async fn get_charge(
        State(state): State<Shared>,
        Path(code): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        state.record(&format!("/charges/{code}"), &headers, &Bytes::new());
        let objects = state.objects.lock().unwrap();
        match objects.values().find(|charge| charge["code"] == code.as_str() || charge["id"] == code.as_str())
        {
            Some(charge) => axum::Json(json!({"data": charge})).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"type": "not_found", "message": "charge not found"}})),
            )
                .into_response(),
        }
    }

    let state = FakeState::new();
    let router = Router::new()
        .route("/charges", post(create_charge))
        .route("/charges/{code}", get(get_charge))
        .with_state(state.clone());
    (serve(router).await, state)
}

fn charge_request() -> CreateCharge {
    CreateCharge {
        name: "Demo Outfitters".into(),
        description: "2 × Trail mug".into(),
        amount_cents: 4199,
        currency: "usd".into(),
        metadata: BTreeMap::from([("order_id".into(), "ord_5".into())]),
        redirect_url: Some("http://127.0.0.1/paid".into()),
        cancel_url: None,
    }
}

#[tokio::test]
async fn coinbase_charge_create_retrieve_replay_and_failures() {
    let (base_url, fake) = fake_coinbase().await;
    let client = CoinbaseClient::new(
        CoinbaseConfig::new("cc_key").with_base_url(&base_url).with_timeouts(short_timeouts()),
    )
    .unwrap();

    let created = client.create_charge(&charge_request(), "charge:ord_5").await.unwrap();
    assert!(!created.replayed);
    let charge = created.value;
    assert!(charge.hosted_url.ends_with(&charge.code));
    assert_eq!(charge.pricing.as_ref().unwrap().local.to_cents(), Some(4199));
    let (_, headers, body) = fake.last();
    assert_eq!(headers["x-cc-api-key"], "cc_key");
    assert_eq!(headers["x-cc-version"], coinbase::API_VERSION);
    assert_eq!(headers["idempotency-key"], "charge:ord_5");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["pricing_type"], "fixed_price");
    assert_eq!(sent["local_price"], json!({"amount": "41.99", "currency": "USD"}));
    assert_eq!(sent["metadata"]["order_id"], "ord_5");

    let again = client.create_charge(&charge_request(), "charge:ord_5").await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.value.code, charge.code);
    assert_eq!(client.retrieve_charge(&charge.code).await.unwrap().code, charge.code);
    assert!(matches!(
        client.retrieve_charge("NOPE").await,
        Err(ProviderError::InvalidRequest { status: 404, .. })
    ));

    fake.set(Behavior::SlowAfterCommit(Duration::from_secs(2)));
    assert_eq!(
        client.create_charge(&charge_request(), "charge:ord_6").await.unwrap_err(),
        ProviderError::Unavailable { reason: "coinbase: timed out".into(), retry_after_seconds: None }
    );
    fake.set(Behavior::Normal);
    assert!(
        client.create_charge(&charge_request(), "charge:ord_6").await.unwrap().replayed,
        "the lost charge is found again"
    );
    fake.set(Behavior::Fail(502));
    assert!(client.create_charge(&charge_request(), "charge:ord_7").await.unwrap_err().is_retryable());
    fake.set(Behavior::Normal);
    let bad_key = CoinbaseClient::new(CoinbaseConfig::new("wrong").with_base_url(&base_url)).unwrap();
    assert!(matches!(
        bad_key.create_charge(&charge_request(), "k").await,
        Err(ProviderError::InvalidRequest { status: 401, .. })
    ));
    assert_eq!(fake.created.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn coinbase_webhooks_good_duplicate_tampered() {
    const SECRET: &str = "cc_shared_secret";
    async fn receive(
        State(seen): State<Arc<Mutex<HashSet<String>>>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        let signature =
            headers.get(coinbase::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        match coinbase::construct_event(&body, signature, SECRET) {
            Ok(event) if seen.lock().unwrap().insert(event.id.clone()) => {
                assert!(event.kind.is_paid());
                (StatusCode::OK, "processed")
            }
            Ok(_) => (StatusCode::OK, "duplicate"),
            Err(_) => (StatusCode::BAD_REQUEST, "rejected"),
        }
    }
    let base_url = serve(
        Router::new()
            .route("/api/webhooks/coinbase", post(receive))
            .with_state(Arc::new(Mutex::new(HashSet::new()))),
    )
    .await;
    let url = format!("{base_url}/api/webhooks/coinbase");
    let charge: coinbase::Charge = serde_json::from_value(json!({
        "id": "uuid-1", "code": "CODE0001", "hosted_url": "https://commerce.coinbase.test/pay/CODE0001",
        "timeline": [{"status": "NEW"}, {"status": "COMPLETED"}], "metadata": {"order_id": "ord_5"}
    }))
    .unwrap();
    let body =
        coinbase::event_body("delivery-1", "evt-cc-1", "charge:confirmed", "2026-01-01T00:05:00Z", &charge)
            .unwrap();
    let http = reqwest::Client::new();
    let deliver = |body: Vec<u8>, signature: String| {
        let request = http.post(&url).header("X-CC-Webhook-Signature", signature).body(body);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let signature = coinbase::sign_webhook(&body, SECRET);
    assert_eq!(deliver(body.clone(), signature.clone()).await, "processed");
    assert_eq!(deliver(body.clone(), signature.clone()).await, "duplicate");
    let tampered = String::from_utf8(body).unwrap().replace("ord_5", "ord_6").into_bytes();
    assert_eq!(deliver(tampered, signature).await, "rejected");
}

// ---------------------------------------------------------------------------------------------------
// Hosted checkout through either provider.

#[tokio::test]
async fn hosted_checkout_works_through_both_providers() {
    let (stripe_url, _) = fake_stripe().await;
    let (coinbase_url, _) = fake_coinbase().await;
    let request = HostedCheckoutRequest {
        order_id: "ord_8".into(),
        seller_name: "Demo Outfitters".into(),
        lines: session_request().line_items,
        currency: "usd".into(),
        customer_email: None,
        shipping: None,
        metadata: BTreeMap::new(),
        expires_at: now_unix() + 3600,
        success_url: "http://127.0.0.1/paid".into(),
        cancel_url: None,
    };
    let stripe = HostedCheckoutClient::Stripe(stripe_client(&stripe_url, Timeouts::default()));
    let page = stripe.create(&request, "checkout:ord_8").await.unwrap();
    assert_eq!((page.rail, page.rail.as_str()), (Rail::StripeCheckout, "stripe-checkout"));
    assert!(page.provider_reference.starts_with("cs_"));
    assert_eq!(page.amount_cents, 4199);
    let coinbase = HostedCheckoutClient::Coinbase(
        CoinbaseClient::new(CoinbaseConfig::new("cc_key").with_base_url(&coinbase_url)).unwrap(),
    );
    let page = coinbase.create(&request, "checkout:ord_8").await.unwrap();
    assert_eq!(page.rail, Rail::CoinbaseCommerce);
    assert_eq!(page.amount_cents, 4199);
    assert!(page.payment_url.ends_with(&page.provider_reference));
    assert_eq!(page.expires_at, Some(1_767_229_200));
}

// ---------------------------------------------------------------------------------------------------
// Fake x402 facilitator built on the crate's own verification (as the sandbox facilitator will be).

async fn fake_facilitator() -> (String, Shared) {
    async fn verify(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        state.record("/verify", &headers, &body);
        if let Some(failure) = state.failure() {
            return failure;
        }
        let request: FacilitatorRequest = serde_json::from_slice(&body).unwrap();
        let now = u64::try_from(now_unix()).unwrap();
        let payload = &request.payment_payload;
        match x402::verify_exact(&payload.accepted, &payload.payload, &request.payment_requirements, now) {
            Ok(verified) => axum::Json(VerifyResponse {
                is_valid: true,
                invalid_reason: None,
                payer: Some(verified.payer.to_string()),
            })
            .into_response(),
            Err(rejection) => (
                StatusCode::BAD_REQUEST,
                axum::Json(VerifyResponse {
                    is_valid: false,
                    invalid_reason: Some(rejection.reason_code().into()),
                    payer: Some(payload.payload.authorization.from.clone()),
                }),
            )
                .into_response(),
        }
    }

    async fn settle(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        state.record("/settle", &headers, &body);
        if let Some(failure) = state.failure() {
            return failure;
        }
        if let Some(delay) = state.delay() {
            tokio::time::sleep(delay).await;
        }
        let request: FacilitatorRequest = serde_json::from_slice(&body).unwrap();
        let now = u64::try_from(now_unix()).unwrap();
        let payload = &request.payment_payload;
        let network = request.payment_requirements.network.clone();
        let failed = |reason: &str| SettleResponse {
            success: false,
            error_reason: Some(reason.into()),
            payer: None,
            transaction: String::new(),
            network: network.clone(),
            amount: None,
        };
        let response =
            match x402::verify_exact(&payload.accepted, &payload.payload, &request.payment_requirements, now)
            {
                Err(rejection) => failed(rejection.reason_code()),
                Ok(verified) => {
                    let key = format!("{}:{}", verified.payer, verified.nonce_hex());
                    if state.nonces.lock().unwrap().insert(key) {
                        SettleResponse {
                            success: true,
                            error_reason: None,
                            payer: Some(verified.payer.to_string()),
                            transaction: format!(
                                "0x{}",
                                hex::encode(x402::eip712::keccak256(&verified.nonce))
                            ),
                            network: network.clone(),
                            amount: Some(verified.value),
                        }
                    } else {
                        failed(X402Rejection::NonceAlreadyUsed.reason_code())
                    }
                }
            };
        axum::Json(response).into_response()
    }

    async fn supported(State(state): State<Shared>, headers: HeaderMap) -> Response {
        state.record("/supported", &headers, &Bytes::new());
        axum::Json(SupportedResponse {
            kinds: vec![SupportedKind {
                x402_version: 2,
                scheme: "exact".into(),
                network: BASE_SEPOLIA.caip2.into(),
                extra: None,
            }],
            extensions: vec![],
            signers: serde_json::Map::new(),
        })
        .into_response()
    }

    let state = FakeState::new();
    let router = Router::new()
        .route("/x402/verify", post(verify))
        .route("/x402/settle", post(settle))
        .route("/x402/supported", get(supported))
        .with_state(state.clone());
    (format!("{}/x402", serve(router).await), state)
}

#[tokio::test]
async fn x402_sign_verify_settle_through_a_facilitator() {
    let (base_url, fake) = fake_facilitator().await;
    let client = FacilitatorClient::new(FacilitatorConfig {
        timeouts: short_timeouts(),
        ..FacilitatorConfig::new(format!("{base_url}/"))
    })
    .unwrap();
    let supported = client.supported().await.unwrap();
    assert_eq!(supported.kinds[0].network, "eip155:84532");

    let offer = ExactOffer {
        network: BASE_SEPOLIA,
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(),
        amount_cents: 4199,
        max_timeout_seconds: 120,
    }
    .requirements()
    .unwrap();
    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let now = u64::try_from(now_unix()).unwrap();
    let payment =
        x402::sign_exact_payment(&key, &offer, None, now - 60, now + 120, x402::random_nonce()).unwrap();

    // The client sends it as a header; the server parses, checks locally, then asks the facilitator.
    let incoming = x402::parse_payment_headers(Some(&x402::encode_header(&payment)), None).unwrap().unwrap();
    let verified = incoming.verify(&offer, now).unwrap();
    let request = incoming.facilitator_request(&offer).unwrap();
    assert_eq!(
        client.verify(&request).await.unwrap(),
        VerifyResponse { is_valid: true, invalid_reason: None, payer: Some(verified.payer.to_string()) }
    );
    let settled = client.settle(&request).await.unwrap();
    assert!(settled.success);
    assert_eq!(settled.amount.as_deref(), Some("41990000"));
    let header = x402::encode_header(&settled);
    assert_eq!(x402::decode_header::<SettleResponse>(&header).unwrap(), settled);
    // Settling the same authorization again fails: the nonce is spent.
    let again = client.settle(&request).await.unwrap();
    assert_eq!(
        (again.success, again.error_reason.as_deref()),
        (false, Some("invalid_exact_evm_nonce_already_used"))
    );

    // A tampered payment: the facilitator answers 400 with the refusal, which is not an error.
    let mut tampered = request.clone();
    tampered.payment_payload.payload.authorization.valid_before = (now + 999).to_string();
    let refused = client.verify(&tampered).await.unwrap();
    assert_eq!(
        (refused.is_valid, refused.invalid_reason.as_deref()),
        (false, Some("invalid_exact_evm_payload_signature"))
    );

    // The facilitator down or slow: unknown outcome.
    fake.set(Behavior::Fail(500));
    assert!(matches!(client.settle(&request).await, Err(ProviderError::Unavailable { .. })));
    fake.set(Behavior::SlowAfterCommit(Duration::from_secs(2)));
    assert_eq!(
        client.settle(&request).await.unwrap_err(),
        ProviderError::Unavailable {
            reason: "x402 facilitator: timed out".into(),
            retry_after_seconds: None
        }
    );
}
