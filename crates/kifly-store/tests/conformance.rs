//! The storage conformance suite: every [`Store`] backend must pass it unchanged.
//!
//! Each test opens a fresh, migrated database, tells one short story through the public traits only,
//! and checks what a caller can observe. The backend is SQLite in a temporary directory unless
//! `KIFLY_TEST_DATABASE_URL` names another one.
//!
//! Tests never keep a [`StoreTx`] open while calling a write method on the [`Store`] itself (on SQLite
//! that would wait for the single writer connection), and never reuse a transaction after one of its
//! statements failed (PostgreSQL aborts such a transaction).

use std::path::Path;
use std::sync::Arc;

use kifly_core::address::{AddressInput, ShippingAddress};
use kifly_core::catalog::{CatalogFile, Tier};
use kifly_core::coverage::{City, Coverage};
use kifly_core::limits::PlatformLimits;
use kifly_core::scope::Scope;
use kifly_store::testing::TempPostgres;
use kifly_store::*;
use tempfile::TempDir;

// --- harness -----------------------------------------------------------------------------------

/// Keeps one test's private database alive; dropping it throws the database away.
#[allow(dead_code)] // held only for its Drop
enum Guard {
    /// A SQLite file inside this directory.
    Sqlite(TempDir),
    /// A PostgreSQL database of its own, dropped with the guard.
    Postgres(TempPostgres),
}

/// A fresh, migrated store private to the calling test, so tests can run in parallel.
async fn open_store() -> (Arc<dyn Store>, Guard) {
    let (url, guard) = match std::env::var("KIFLY_TEST_DATABASE_URL").ok().as_deref() {
        None => sqlite_in(std::env::temp_dir().as_path()),
        // The URL says where the databases go: each test gets its own file next to the named one.
        Some(url) if url.starts_with("sqlite:") => {
            let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let path = Path::new(path.split('?').next().unwrap_or_default());
            sqlite_in(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        }
        // The URL names a server: each test gets its own database there.
        Some(url) if url.starts_with("postgres") => {
            let db = TempPostgres::create(url).await.expect("create test database");
            (db.url.clone(), Guard::Postgres(db))
        }
        Some(url) => panic!("KIFLY_TEST_DATABASE_URL: no test harness for {url:?}"),
    };
    let store = connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, guard)
}

fn sqlite_in(parent: &Path) -> (String, Guard) {
    let dir = tempfile::Builder::new().prefix("kifly-conformance-").tempdir_in(parent).expect("temp dir");
    (format!("sqlite://{}/kifly.db", dir.path().display()), Guard::Sqlite(dir))
}

// --- fixtures ----------------------------------------------------------------------------------

/// Three sellers, one per coverage form. Categories differ only in case on purpose.
const CATALOG: &str = r#"{"sellers": [
  {"handle": "acme", "name": "Acme", "tier": "purchasable", "delivery_fee_cents": 500,
   "coverage": {"nationwide": true},
   "products": [
     {"handle": "rocket", "title": "Rocket", "category": "Toys", "brand": "Acme",
      "images": ["https://img.example/rocket.png"],
      "variants": [
        {"sku": "R-RED", "name": "Red", "options": {"color": "red"}, "price_cents": 1000, "inventory": 5},
        {"sku": "R-BLUE", "name": "Blue", "options": {"color": "blue"}, "price_cents": 1200}]},
     {"handle": "anvil", "title": "Anvil", "category": "Hardware",
      "variants": [{"sku": "ANVIL", "name": "Default", "price_cents": 5000, "inventory": 2}]}]},
  {"handle": "bean", "name": "Bean Co", "tier": "directory", "storefront_url": "https://bean.example",
   "coverage": {"states": ["CA"], "cities": [{"city": "Reno", "state": "NV"}]},
   "products": [
     {"handle": "kite", "title": "Kite", "category": "TOYS",
      "variants": [{"sku": "KITE", "name": "Default", "price_cents": 800}]}]},
  {"handle": "cove", "name": "Cove", "tier": "purchasable",
   "products": [
     {"handle": "mystery-box", "title": "Mystery Box",
      "variants": [{"sku": "BOX", "name": "Default", "price_cents": 300}]}]}
]}"#;

const T0: i64 = 1_000;

/// [`CATALOG`] with the rocket renamed and its red variant repriced.
fn catalog_with(rocket_title: &str, red_price_cents: i64) -> CatalogFile {
    let json = CATALOG
        .replace(r#""title": "Rocket""#, &format!(r#""title": "{rocket_title}""#))
        .replace(r#""price_cents": 1000"#, &format!(r#""price_cents": {red_price_cents}"#));
    CatalogFile::parse(&json).expect("catalog fixture parses")
}

fn catalog() -> CatalogFile {
    catalog_with("Rocket", 1000)
}

async fn seeded_store() -> (Arc<dyn Store>, Guard) {
    let (store, guard) = open_store().await;
    store.import_catalog(&catalog(), T0).await.expect("import");
    (store, guard)
}

async fn seller(store: &Arc<dyn Store>, handle: &str) -> Seller {
    store.get_seller_by_handle(handle).await.unwrap().unwrap_or_else(|| panic!("no seller {handle}"))
}

async fn all_products(store: &Arc<dyn Store>) -> Vec<Product> {
    store.list_products(&ProductFilter::default()).await.unwrap()
}

async fn variant_id(store: &Arc<dyn Store>, sku: &str) -> String {
    all_products(store)
        .await
        .into_iter()
        .flat_map(|p| p.variants)
        .find(|v| v.sku == sku)
        .unwrap_or_else(|| panic!("no variant {sku}"))
        .id
}

async fn product_handles(
    store: &Arc<dyn Store>,
    seller_id: Option<&str>,
    category: Option<&str>,
) -> Vec<String> {
    let filter = ProductFilter { seller_id: seller_id.map(Into::into), category: category.map(Into::into) };
    store.list_products(&filter).await.unwrap().into_iter().map(|p| p.handle).collect()
}

fn address() -> ShippingAddress {
    AddressInput {
        name: Some("Ada Lovelace".into()),
        line1: Some("1 Market St".into()),
        city: Some("San Francisco".into()),
        region: Some("CA".into()),
        postal_code: Some("94105-1234".into()),
        phone: Some("+1 415 555 0100".into()),
        ..Default::default()
    }
    .validate()
    .unwrap()
}

fn new_key(id: &str, key_hash: &str, seller_id: Option<&str>, scopes: &[Scope]) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        name: format!("{id} name"),
        key_hash: key_hash.into(),
        display_prefix: format!("kf_{id}"),
        seller_id: seller_id.map(Into::into),
        scopes: scopes.to_vec(),
    }
}

fn audit(id: &str, created_at: i64, resource_id: Option<&str>) -> AuditEntry {
    AuditEntry {
        id: id.into(),
        api_key_id: "key_agent".into(),
        action: format!("action.{id}"),
        resource_id: resource_id.map(Into::into),
        metadata: resource_id.map(|r| format!(r#"{{"resource":"{r}"}}"#)),
        created_at,
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: StoreResult<T>, what: &str) {
    assert!(matches!(result, Err(StoreError::NotFound(_))), "{what}: expected NotFound, got {result:?}");
}

// --- carts -------------------------------------------------------------------------------------

/// Creates and commits a cart for `acme` with one line per `(item_id, sku, quantity)`, each line
/// inserted one millisecond after the previous one so their order is defined.
async fn create_cart(store: &Arc<dyn Store>, cart_id: &str, lines: &[(&str, &str, i64)]) {
    let seller_id = seller(store, "acme").await.id;
    let mut variants = Vec::new();
    for (_, sku, _) in lines {
        variants.push(variant_id(store, sku).await);
    }
    let mut tx = store.begin_write().await.unwrap();
    let cart = NewCart { id: cart_id.into(), api_key_id: "key_agent".into(), seller_id };
    tx.insert_cart(&cart, T0).await.unwrap();
    for (i, ((item_id, _, quantity), variant_id)) in lines.iter().zip(variants).enumerate() {
        let line = NewCartLine {
            item_id: (*item_id).into(),
            cart_id: cart_id.into(),
            variant_id,
            quantity: *quantity,
        };
        tx.insert_cart_line(&line, T0 + i as i64).await.unwrap();
    }
    tx.touch_cart(cart_id, T0).await.unwrap();
    tx.commit().await.unwrap();
}

async fn cart(store: &Arc<dyn Store>, cart_id: &str) -> Cart {
    store.get_cart(cart_id).await.unwrap().unwrap_or_else(|| panic!("no cart {cart_id}"))
}

/// `(item_id, sku, quantity)` of each line, in order.
fn line_summary(cart: &Cart) -> Vec<(&str, &str, i64)> {
    cart.lines.iter().map(|l| (l.item_id.as_str(), l.sku.as_str(), l.quantity)).collect()
}

// --- idempotency -------------------------------------------------------------------------------

const LEASE: i64 = 60_000;

fn scope(key: &str) -> IdempotencyScope {
    IdempotencyScope {
        principal: "key_agent".into(),
        method: "POST".into(),
        path: "/v1/carts".into(),
        key: key.into(),
    }
}

async fn claim_at(
    store: &Arc<dyn Store>,
    scope: &IdempotencyScope,
    fingerprint: &str,
    now: i64,
) -> ClaimOutcome {
    store.claim_idempotency(scope, fingerprint, now, LEASE).await.unwrap()
}

fn expect_claimed(outcome: ClaimOutcome) -> IdempotencyClaim {
    match outcome {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

fn response(status: u16, body: &str) -> StoredResponse {
    StoredResponse { status, body: body.as_bytes().to_vec() }
}

/// Stores `response` for `claim` in its own transaction and commits.
async fn complete(store: &Arc<dyn Store>, claim: &IdempotencyClaim, response: &StoredResponse, now: i64) {
    let mut tx = store.begin_write().await.unwrap();
    tx.complete_idempotency(claim, response, now).await.unwrap();
    tx.commit().await.unwrap();
}

// --- tests: catalog ----------------------------------------------------------------------------

#[tokio::test]
async fn migrations_are_idempotent_and_the_store_answers_pings() {
    let (store, _guard) = open_store().await;
    store.migrate().await.expect("second migrate is a no-op");
    store.ping().await.unwrap();
    assert!(!store.backend().is_empty());
}

#[tokio::test]
async fn catalog_import_stores_sellers_with_their_coverage_and_tier() {
    let (store, _guard) = open_store().await;
    let summary = store.import_catalog(&catalog(), T0).await.unwrap();
    assert_eq!(summary, ImportSummary { sellers: 3, products: 4, variants: 5 });

    let acme = seller(&store, "acme").await;
    assert_eq!((acme.name.as_str(), acme.tier, acme.delivery_fee_cents), ("Acme", Tier::Purchasable, 500));
    assert_eq!(acme.coverage, Coverage::Nationwide);
    assert_eq!((acme.created_at, acme.updated_at), (T0, T0));

    let bean = seller(&store, "bean").await;
    assert_eq!(bean.tier, Tier::Directory);
    assert_eq!(bean.storefront_url.as_deref(), Some("https://bean.example"));
    let reno = City { city: "Reno".into(), state: "NV".into() };
    assert_eq!(bean.coverage, Coverage::Areas { states: vec!["CA".into()], cities: vec![reno] });

    assert_eq!(seller(&store, "cove").await.coverage, Coverage::NotConfigured);
    assert_eq!(store.get_seller_by_handle("nobody").await.unwrap(), None);
    assert_eq!(store.get_seller(&acme.id).await.unwrap(), Some(acme));
    assert_eq!(store.get_seller("sel_nope").await.unwrap(), None);
    let handles: Vec<_> = store.list_sellers().await.unwrap().into_iter().map(|s| s.handle).collect();
    assert_eq!(handles, ["acme", "bean", "cove"]);
}

#[tokio::test]
async fn catalog_lists_products_with_variants_and_filters() {
    let (store, _guard) = seeded_store().await;
    let (acme, bean) = (seller(&store, "acme").await.id, seller(&store, "bean").await.id);

    let products = all_products(&store).await;
    let handles: Vec<_> = products.iter().map(|p| p.handle.as_str()).collect();
    assert_eq!(handles, ["rocket", "anvil", "kite", "mystery-box"]);
    let rocket = &products[0];
    assert_eq!(
        (rocket.seller_id.as_str(), rocket.title.as_str(), rocket.brand.as_str()),
        (acme.as_str(), "Rocket", "Acme")
    );
    assert_eq!(rocket.images, ["https://img.example/rocket.png"]);
    let variants: Vec<_> =
        rocket.variants.iter().map(|v| (v.sku.as_str(), v.price_cents, v.inventory)).collect();
    assert_eq!(variants, [("R-RED", 1000, Some(5)), ("R-BLUE", 1200, None)]);
    assert_eq!(rocket.variants[0].options.get("color").map(String::as_str), Some("red"));
    assert!(rocket.variants.iter().all(|v| v.product_id == rocket.id));

    assert_eq!(product_handles(&store, Some(&acme), None).await, ["rocket", "anvil"]);
    for spelling in ["toys", "TOYS", "Toys"] {
        assert_eq!(product_handles(&store, None, Some(spelling)).await, ["rocket", "kite"], "{spelling}");
    }
    assert_eq!(product_handles(&store, Some(&bean), Some("toys")).await, ["kite"]);
    assert!(product_handles(&store, None, Some("garden")).await.is_empty());
    assert!(product_handles(&store, Some("sel_nope"), None).await.is_empty());
}

#[tokio::test]
async fn catalog_category_filter_is_case_insensitive_beyond_ascii() {
    let (store, _guard) = open_store().await;
    let file = CATALOG.replace(r#""category": "Hardware""#, r#""category": "Éclairs""#);
    store.import_catalog(&CatalogFile::parse(&file).unwrap(), T0).await.unwrap();
    for spelling in ["Éclairs", "éclairs", "ÉCLAIRS"] {
        assert_eq!(product_handles(&store, None, Some(spelling)).await, ["anvil"], "{spelling}");
    }
}

#[tokio::test]
async fn catalog_counts_and_categories() {
    let (store, _guard) = seeded_store().await;
    let (acme, cove) = (seller(&store, "acme").await.id, seller(&store, "cove").await.id);

    assert_eq!(store.count_products(None).await.unwrap(), 4);
    assert_eq!(store.count_products(Some(&acme)).await.unwrap(), 2);
    assert_eq!(store.count_products(Some(&cove)).await.unwrap(), 1);
    assert_eq!(store.count_products(Some("sel_nope")).await.unwrap(), 0);

    // Categories are stored lower-cased, so "Toys" and "TOYS" are one; empty ones are not listed.
    assert_eq!(store.list_categories(None).await.unwrap(), ["hardware", "toys"]);
    assert_eq!(store.list_categories(Some(&acme)).await.unwrap(), ["hardware", "toys"]);
    assert!(store.list_categories(Some(&cove)).await.unwrap().is_empty());
}

#[tokio::test]
async fn catalog_variant_lookup_carries_product_and_seller() {
    let (store, _guard) = seeded_store().await;
    let blue = variant_id(&store, "R-BLUE").await;
    let found = store.get_variant(&blue).await.unwrap().expect("variant");
    assert_eq!((found.variant.sku.as_str(), found.variant.name.as_str()), ("R-BLUE", "Blue"));
    assert_eq!(found.variant.price_cents, 1200);
    assert_eq!(found.product_title, "Rocket");
    assert_eq!(found.seller_id, seller(&store, "acme").await.id);
    assert_eq!(store.get_variant("var_nope").await.unwrap(), None);
}

#[tokio::test]
async fn catalog_version_moves_with_every_import_and_only_then() {
    let (store, _guard) = open_store().await;
    let empty = store.catalog_version().await.unwrap();
    assert_eq!(empty, store.catalog_version().await.unwrap(), "stable without writes");
    store.import_catalog(&catalog(), T0).await.unwrap();
    let first = store.catalog_version().await.unwrap();
    assert_ne!(first, empty);
    assert_eq!(first.rows, [3, 4, 5]);
    assert_eq!(first, store.catalog_version().await.unwrap(), "reads do not move it");
    // Same rows, a later import: the timestamps move it.
    store.import_catalog(&catalog_with("Rocket Mk II", 1500), T0 + 1_000).await.unwrap();
    let second = store.catalog_version().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(second.rows, first.rows);
    // An edit stamped with an older clock (another node's) still moves it.
    store.import_catalog(&catalog_with("Rocket Mk III", 1600), T0 + 500).await.unwrap();
    assert_ne!(store.catalog_version().await.unwrap(), second);
}

#[tokio::test]
async fn catalog_reimport_updates_rows_in_place() {
    let (store, _guard) = seeded_store().await;
    let ids = |products: &[Product]| -> Vec<(String, Vec<String>)> {
        products.iter().map(|p| (p.id.clone(), p.variants.iter().map(|v| v.id.clone()).collect())).collect()
    };
    let before = all_products(&store).await;
    let acme_before = seller(&store, "acme").await;

    let summary = store.import_catalog(&catalog_with("Rocket Mk II", 1500), T0 + 1_000).await.unwrap();
    assert_eq!(summary, ImportSummary { sellers: 3, products: 4, variants: 5 });

    let after = all_products(&store).await;
    assert_eq!(ids(&after), ids(&before), "products and variants keep their ids");
    assert_eq!(store.count_products(None).await.unwrap(), 4);
    assert_eq!(store.list_sellers().await.unwrap().len(), 3);
    assert_eq!(after[0].title, "Rocket Mk II");
    assert_eq!(after[0].variants[0].price_cents, 1500);
    assert_eq!(after[0].variants[1].price_cents, 1200, "untouched variant unchanged");

    let acme_after = seller(&store, "acme").await;
    assert_eq!(acme_after.id, acme_before.id);
    assert_eq!((acme_after.created_at, acme_after.updated_at), (T0, T0 + 1_000));
    let red = store.get_variant(&after[0].variants[0].id).await.unwrap().unwrap();
    assert_eq!((red.product_title.as_str(), red.variant.price_cents), ("Rocket Mk II", 1500));
}

// --- tests: api keys and limits ----------------------------------------------------------------

#[tokio::test]
async fn api_keys_are_created_found_listed_and_revoked() {
    let (store, _guard) = seeded_store().await;
    let acme = seller(&store, "acme").await.id;
    let admin =
        store.create_api_key(&new_key("key_admin", "hash-admin", None, &Scope::ALL), T0).await.unwrap();
    assert_eq!((&admin.seller_id, &admin.seller_handle, admin.revoked_at), (&None, &None, None));
    assert_eq!((admin.created_at, admin.scopes.as_slice()), (T0, Scope::ALL.as_slice()));
    let shop = new_key("key_shop", "hash-shop", Some(&acme), &[Scope::CatalogRead, Scope::CheckoutWrite]);
    let shop = store.create_api_key(&shop, T0 + 1).await.unwrap();
    assert_eq!(
        (shop.seller_id.as_deref(), shop.seller_handle.as_deref()),
        (Some(acme.as_str()), Some("acme"))
    );
    assert_eq!(shop.display_prefix, "kf_key_shop");

    let dup = store.create_api_key(&new_key("key_dup", "hash-shop", None, &Scope::ALL), T0).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "duplicate hash: {dup:?}");

    assert_eq!(store.find_api_key_by_hash("hash-shop").await.unwrap().as_ref(), Some(&shop));
    assert_eq!(store.find_api_key_by_hash("hash-nope").await.unwrap(), None);
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(listed, [admin, shop]);
    assert!(!format!("{listed:?}").contains("hash-"), "listing must not expose key hashes");

    assert!(store.revoke_api_key("key_admin", T0 + 10).await.unwrap());
    store.revoke_api_key("key_admin", T0 + 20).await.unwrap();
    let revoked = store.find_api_key_by_hash("hash-admin").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 10), "a second revoke keeps the first time");
    assert_eq!(store.find_api_key_by_hash("hash-shop").await.unwrap().unwrap().revoked_at, None);
    assert!(!store.revoke_api_key("key_nope", T0).await.unwrap());
}

#[tokio::test]
async fn limits_have_defaults_and_can_be_changed() {
    let (store, _guard) = open_store().await;
    let defaults = store.get_limits().await.unwrap();
    assert_eq!(defaults, PlatformLimits { max_item_quantity: 20, max_cart_total_cents: 100_000 });
    assert_eq!(defaults, PlatformLimits::default());
    let tighter = PlatformLimits { max_item_quantity: 3, max_cart_total_cents: 25_000 };
    store.set_limits(&tighter, T0).await.unwrap();
    assert_eq!(store.get_limits().await.unwrap(), tighter);
}

#[tokio::test]
async fn a_write_transaction_reads_the_same_sellers_and_limits_as_the_pool() {
    // SQLite serves these reads inside a transaction from its direct read path (not the transaction's
    // own connection); they must match the pool and see what was committed just before.
    let (store, _guard) = seeded_store().await;
    let tighter = PlatformLimits { max_item_quantity: 7, max_cart_total_cents: 12_345 };
    store.set_limits(&tighter, T0).await.unwrap();
    let acme = seller(&store, "acme").await;
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.get_limits().await.unwrap(), tighter);
    assert_eq!(tx.get_seller(&acme.id).await.unwrap(), Some(acme.clone()));
    assert_eq!(tx.get_seller_by_handle("acme").await.unwrap(), Some(acme.clone()));
    assert_eq!(
        tx.get_seller_by_handle("bean").await.unwrap(),
        store.get_seller_by_handle("bean").await.unwrap()
    );
    assert_eq!(tx.get_seller("sel_nope").await.unwrap(), None);
    assert_eq!(tx.get_seller_by_handle("nobody").await.unwrap(), None);
    drop(tx);
    // A re-import that renames a seller is seen by the next transaction at once.
    let mut renamed = catalog();
    renamed.sellers[0].name = "Acme Renamed".into();
    store.import_catalog(&renamed, T0 + 1).await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.get_seller(&acme.id).await.unwrap().map(|s| s.name), Some("Acme Renamed".to_string()));
}

// --- tests: carts ------------------------------------------------------------------------------

#[tokio::test]
async fn cart_lines_are_read_with_live_variant_data() {
    let (store, _guard) = seeded_store().await;
    let red = variant_id(&store, "R-RED").await;

    let mut tx = store.begin_write().await.unwrap();
    let new_cart = NewCart {
        id: "cart_1".into(),
        api_key_id: "key_agent".into(),
        seller_id: seller(&store, "acme").await.id,
    };
    tx.insert_cart(&new_cart, T0).await.unwrap();
    let line = NewCartLine {
        item_id: "item_red".into(),
        cart_id: "cart_1".into(),
        variant_id: red.clone(),
        quantity: 2,
    };
    tx.insert_cart_line(&line, T0).await.unwrap();
    tx.touch_cart("cart_1", T0 + 5).await.unwrap();
    let inside = tx.get_cart("cart_1").await.unwrap().expect("a transaction sees its own writes");
    assert_eq!(line_summary(&inside), [("item_red", "R-RED", 2)]);
    assert_eq!(store.get_cart("cart_1").await.unwrap(), None, "uncommitted cart is invisible outside");
    tx.commit().await.unwrap();

    let c = cart(&store, "cart_1").await;
    assert_eq!((c.api_key_id.as_str(), c.seller_id.as_str()), ("key_agent", new_cart.seller_id.as_str()));
    assert_eq!(
        (c.status, c.version, c.order_id.as_deref(), c.shipping_address.as_ref()),
        (CartStatus::Open, 2, None, None)
    );
    assert_eq!((c.created_at, c.updated_at), (T0, T0 + 5));
    let l = &c.lines[0];
    assert_eq!(
        (l.variant_id.as_str(), l.product_title.as_str(), l.variant_name.as_str()),
        (red.as_str(), "Rocket", "Red")
    );
    assert_eq!((l.unit_price_cents, l.inventory), (1000, Some(5)));

    store.import_catalog(&catalog_with("Rocket Mk II", 1500), T0 + 10).await.unwrap();
    let l = cart(&store, "cart_1").await.lines.remove(0);
    assert_eq!((l.product_title.as_str(), l.unit_price_cents), ("Rocket Mk II", 1500));
}

/// `get_cart_cached` may serve a cart from memory, but never one older than the store's own writes:
/// line changes, a rolled-back change (nothing to see), a catalog import, a cart created after a miss.
#[tokio::test]
async fn cached_cart_reads_follow_every_write_of_the_store() {
    let (store, _guard) = seeded_store().await;
    create_cart(&store, "cart_1", &[("item_a", "R-RED", 1)]).await;
    let cached = |store: Arc<dyn Store>| async move {
        Cart::clone(&store.get_cart_cached("cart_1").await.unwrap().expect("cart_1 exists"))
    };
    assert_eq!(cached(store.clone()).await, cart(&store, "cart_1").await);
    assert_eq!(cached(store.clone()).await, cart(&store, "cart_1").await, "read twice");

    let mut tx = store.begin_write().await.unwrap();
    tx.set_cart_line_quantity("item_a", 3, T0 + 1).await.unwrap();
    tx.touch_cart("cart_1", T0 + 1).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(line_summary(&cached(store.clone()).await), [("item_a", "R-RED", 3)]);

    let mut tx = store.begin_write().await.unwrap();
    tx.set_cart_line_quantity("item_a", 9, T0 + 2).await.unwrap();
    drop(tx);
    assert_eq!(line_summary(&cached(store.clone()).await), [("item_a", "R-RED", 3)], "rolled back");

    store.import_catalog(&catalog_with("Rocket Mk II", 1500), T0 + 3).await.unwrap();
    let line = cached(store.clone()).await.lines.remove(0);
    assert_eq!((line.product_title.as_str(), line.unit_price_cents), ("Rocket Mk II", 1500));

    assert_eq!(store.get_cart_cached("cart_none").await.unwrap(), None);
    create_cart(&store, "cart_none", &[]).await;
    assert!(store.get_cart_cached("cart_none").await.unwrap().is_some(), "a cart created after a miss");
}

#[tokio::test]
async fn cart_lines_can_be_changed_and_removed() {
    let (store, _guard) = seeded_store().await;
    create_cart(&store, "cart_1", &[("item_a", "R-RED", 1), ("item_b", "ANVIL", 1), ("item_c", "R-BLUE", 4)])
        .await;
    create_cart(&store, "cart_2", &[("item_z", "R-RED", 7)]).await;
    assert_eq!(cart(&store, "cart_1").await.version, 2);

    let mut tx = store.begin_write().await.unwrap();
    tx.set_cart_line_quantity("item_a", 3, T0 + 10).await.unwrap();
    tx.delete_cart_line("item_b").await.unwrap();
    tx.touch_cart("cart_1", T0 + 10).await.unwrap();
    tx.commit().await.unwrap();

    let changed = cart(&store, "cart_1").await;
    assert_eq!(line_summary(&changed), [("item_a", "R-RED", 3), ("item_c", "R-BLUE", 4)]);
    assert_eq!((changed.version, changed.updated_at), (3, T0 + 10));
    let other = cart(&store, "cart_2").await;
    assert_eq!(
        (line_summary(&other), other.version),
        (vec![("item_z", "R-RED", 7)], 2),
        "other cart untouched"
    );
}

#[tokio::test]
async fn cart_writes_to_missing_rows_are_not_found() {
    let (store, _guard) = seeded_store().await;
    create_cart(&store, "cart_1", &[("item_a", "R-RED", 1)]).await;
    // One transaction per failure: a failed statement may poison the transaction on some backends.
    let mut tx = store.begin_write().await.unwrap();
    assert_not_found(tx.delete_cart_line("item_nope").await, "delete unknown line");
    drop(tx);
    let mut tx = store.begin_write().await.unwrap();
    assert_not_found(tx.set_cart_line_quantity("item_nope", 2, T0).await, "set quantity of unknown line");
    drop(tx);
    let mut tx = store.begin_write().await.unwrap();
    assert_not_found(tx.touch_cart("cart_nope", T0).await, "touch unknown cart");
    drop(tx);
    let mut tx = store.begin_write().await.unwrap();
    assert_not_found(
        tx.set_cart_shipping_address("cart_nope", &address(), T0).await,
        "address on unknown cart",
    );
    drop(tx);
    assert_eq!(line_summary(&cart(&store, "cart_1").await), [("item_a", "R-RED", 1)]);
}

#[tokio::test]
async fn cart_shipping_address_round_trips() {
    let (store, _guard) = seeded_store().await;
    create_cart(&store, "cart_1", &[]).await;
    let mut tx = store.begin_write().await.unwrap();
    tx.set_cart_shipping_address("cart_1", &address(), T0 + 7).await.unwrap();
    tx.touch_cart("cart_1", T0 + 7).await.unwrap();
    tx.commit().await.unwrap();
    let cart = cart(&store, "cart_1").await;
    assert_eq!(cart.shipping_address, Some(address()));
    assert_eq!((cart.version, cart.updated_at), (3, T0 + 7));
}

#[tokio::test]
async fn dropping_a_transaction_rolls_it_back() {
    let (store, _guard) = seeded_store().await;
    let seller_id = seller(&store, "acme").await.id;
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_cart(&NewCart { id: "cart_gone".into(), api_key_id: "key_agent".into(), seller_id }, T0)
        .await
        .unwrap();
    tx.insert_audit(&audit("aud_gone", T0, None)).await.unwrap();
    drop(tx);

    assert_eq!(store.get_cart("cart_gone").await.unwrap(), None);
    assert!(store.recent_audit(10).await.unwrap().is_empty());
    // The writer is usable again afterwards.
    create_cart(&store, "cart_kept", &[("item_a", "KITE", 1)]).await;
    assert_eq!(line_summary(&cart(&store, "cart_kept").await), [("item_a", "KITE", 1)]);
}

/// A write job that inserts the audit row `id` and ends with `end`.
fn audit_job(id: String, end: WriteEnd) -> WriteJob {
    Box::new(move |tx| {
        Box::pin(async move {
            tx.insert_audit(&audit(&id, T0, None)).await.unwrap();
            end
        })
    })
}

#[tokio::test]
async fn write_jobs_commit_or_roll_back_alone_and_together() {
    let (store, _guard) = open_store().await;
    store.run_write(audit_job("aud_kept".into(), WriteEnd::Commit)).await.unwrap();
    store.run_write(audit_job("aud_undone".into(), WriteEnd::RollBack)).await.unwrap();
    let ids = |entries: Vec<AuditEntry>| entries.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(store.recent_audit(10).await.unwrap()), ["aud_kept"]);

    // Many at once, some rolling back, while a plain transaction holds the writer (on SQLite they
    // queue behind it and then run together): each job's outcome is its own.
    let held = store.begin_write().await.unwrap();
    let jobs: Vec<_> = (0..20)
        .map(|n| {
            let store = Arc::clone(&store);
            let end = if n % 4 == 0 { WriteEnd::RollBack } else { WriteEnd::Commit };
            tokio::spawn(async move { store.run_write(audit_job(format!("aud_{n:02}"), end)).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    held.commit().await.unwrap();
    for job in jobs {
        job.await.unwrap().unwrap();
    }
    let mut kept = ids(store.recent_audit(100).await.unwrap());
    kept.sort();
    let mut expected: Vec<String> = (0..20).filter(|n| n % 4 != 0).map(|n| format!("aud_{n:02}")).collect();
    expected.push("aud_kept".into());
    expected.sort();
    assert_eq!(kept, expected);
}

// --- tests: idempotency ------------------------------------------------------------------------

#[tokio::test]
async fn idempotency_claim_then_in_progress_conflict_and_replay() {
    let (store, _guard) = open_store().await;
    let key = scope("k1");
    let claim = expect_claimed(claim_at(&store, &key, "fp-a", T0).await);
    assert_eq!(claim.scope, key);
    assert_eq!(claim_at(&store, &key, "fp-a", T0 + 1).await, ClaimOutcome::InProgress);
    assert_eq!(claim_at(&store, &key, "fp-b", T0 + 1).await, ClaimOutcome::Conflict);
    let other_path = IdempotencyScope { path: "/v1/other".into(), ..key.clone() };
    expect_claimed(claim_at(&store, &other_path, "fp-a", T0 + 1).await);

    let stored = StoredResponse { status: 201, body: vec![b'{', 0, 0xff, b'}'] };
    complete(&store, &claim, &stored, T0 + 2).await;
    assert_eq!(claim_at(&store, &key, "fp-a", T0 + 3).await, ClaimOutcome::Replay(stored.clone()));
    assert_eq!(claim_at(&store, &key, "fp-a", T0 + 10 * LEASE).await, ClaimOutcome::Replay(stored));
    assert_eq!(claim_at(&store, &key, "fp-b", T0 + 3).await, ClaimOutcome::Conflict);
}

#[tokio::test]
async fn idempotency_expired_lease_is_taken_over() {
    let (store, _guard) = open_store().await;
    let key = scope("k1");
    let first = expect_claimed(store.claim_idempotency(&key, "fp", 100, 50).await.unwrap());
    assert_eq!(store.claim_idempotency(&key, "fp", 120, 50).await.unwrap(), ClaimOutcome::InProgress);
    let second = expect_claimed(store.claim_idempotency(&key, "fp", 200, 50).await.unwrap());
    assert_ne!(first.claim_token, second.claim_token);

    // The first request comes back late: it may neither store its outcome nor free the key.
    let mut tx = store.begin_write().await.unwrap();
    let lost = tx.complete_idempotency(&first, &response(200, "late"), 210).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "late completion: {lost:?}");
    drop(tx);
    store.release_idempotency(&first).await.unwrap();
    assert_eq!(store.claim_idempotency(&key, "fp", 220, 50).await.unwrap(), ClaimOutcome::InProgress);

    complete(&store, &second, &response(201, "winner"), 230).await;
    assert_eq!(claim_at(&store, &key, "fp", 240).await, ClaimOutcome::Replay(response(201, "winner")));
}

#[tokio::test]
async fn idempotency_release_lets_the_next_request_run() {
    let (store, _guard) = open_store().await;
    let key = scope("k1");
    let claim = expect_claimed(claim_at(&store, &key, "fp-a", T0).await);
    store.release_idempotency(&claim).await.unwrap();
    let retry = expect_claimed(claim_at(&store, &key, "fp-b", T0 + 1).await);
    assert_ne!(retry.claim_token, claim.claim_token);
}

#[tokio::test]
async fn idempotency_record_commits_with_the_business_write_or_not_at_all() {
    let (store, _guard) = seeded_store().await;
    let key = scope("k1");
    let claim = expect_claimed(claim_at(&store, &key, "fp", T0).await);
    let seller_id = seller(&store, "acme").await.id;

    let mut tx = store.begin_write().await.unwrap();
    tx.insert_cart(&NewCart { id: "cart_1".into(), api_key_id: "key_agent".into(), seller_id }, T0)
        .await
        .unwrap();
    tx.complete_idempotency(&claim, &response(201, "cart_1"), T0).await.unwrap();
    drop(tx);
    assert_eq!(store.get_cart("cart_1").await.unwrap(), None);
    assert_eq!(claim_at(&store, &key, "fp", T0 + 1).await, ClaimOutcome::InProgress, "claim still in flight");

    complete(&store, &claim, &response(201, "again"), T0 + 2).await;
    assert_eq!(claim_at(&store, &key, "fp", T0 + 3).await, ClaimOutcome::Replay(response(201, "again")));
}

/// Claims made inside the business transaction (every cart change): whatever a backend writes for
/// the claim, and when, the outcome commits with the transaction or not at all, and the claim answers
/// like a claim on its own against records of either kind.
#[tokio::test]
async fn idempotency_claims_inside_a_transaction() {
    let (store, _guard) = open_store().await;
    let in_tx = |key: &'static str, fingerprint: &'static str, now: i64| {
        let store = Arc::clone(&store);
        async move {
            let mut tx = store.begin_write().await.unwrap();
            let outcome = tx.claim_idempotency(&scope(key), fingerprint, now, LEASE).await.unwrap();
            (tx, outcome)
        }
    };

    // Claimed, completed and committed: replayed afterwards, by either kind of claim.
    let (mut tx, outcome) = in_tx("k1", "fp-a", T0).await;
    let claim = expect_claimed(outcome);
    tx.complete_idempotency(&claim, &response(200, "done"), T0 + 1).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        claim_at(&store, &scope("k1"), "fp-a", T0 + 2).await,
        ClaimOutcome::Replay(response(200, "done"))
    );
    assert_eq!(in_tx("k1", "fp-a", T0 + 2).await.1, ClaimOutcome::Replay(response(200, "done")));
    assert_eq!(in_tx("k1", "fp-b", T0 + 2).await.1, ClaimOutcome::Conflict);

    // Claimed and rolled back: nothing is left to block the key.
    let (tx, outcome) = in_tx("k2", "fp-a", T0).await;
    expect_claimed(outcome);
    drop(tx);
    expect_claimed(claim_at(&store, &scope("k2"), "fp-b", T0).await);

    // Against a claim in flight (a payment's lease): in progress, or a conflict.
    expect_claimed(claim_at(&store, &scope("k3"), "fp-a", T0).await);
    assert_eq!(in_tx("k3", "fp-a", T0 + 1).await.1, ClaimOutcome::InProgress);
    assert_eq!(in_tx("k3", "fp-b", T0 + 1).await.1, ClaimOutcome::Conflict);

    // After that lease ran out, the transaction takes the key over; the stalled holder cannot finish.
    let stalled = expect_claimed(claim_at(&store, &scope("k4"), "fp-a", T0).await);
    let (mut tx, outcome) = in_tx("k4", "fp-a", T0 + LEASE + 1).await;
    let taken = expect_claimed(outcome);
    tx.complete_idempotency(&taken, &response(201, "taken"), T0 + LEASE + 2).await.unwrap();
    tx.commit().await.unwrap();
    let mut late = store.begin_write().await.unwrap();
    let lost = late.complete_idempotency(&stalled, &response(200, "late"), T0 + LEASE + 3).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "late completion: {lost:?}");
    drop(late);
    assert_eq!(
        claim_at(&store, &scope("k4"), "fp-a", T0 + LEASE + 4).await,
        ClaimOutcome::Replay(response(201, "taken"))
    );

    // A claim made in the transaction keeps its time: purged with the records of that time.
    assert_eq!(store.purge_idempotency(T0 + 1).await.unwrap(), 2, "k1 and k4, both claimed at T0");
    expect_claimed(claim_at(&store, &scope("k1"), "fp-b", T0 + 5).await);
}

#[tokio::test]
async fn idempotency_purge_deletes_only_old_finished_records() {
    let (store, _guard) = open_store().await;
    let (old_done, new_done, old_running) = (scope("old-done"), scope("new-done"), scope("old-running"));
    let claim = expect_claimed(claim_at(&store, &old_done, "fp", 1_000).await);
    complete(&store, &claim, &response(200, "old"), 1_000).await;
    expect_claimed(store.claim_idempotency(&old_running, "fp", 1_000, 1_000_000).await.unwrap());
    let claim = expect_claimed(claim_at(&store, &new_done, "fp", 5_000).await);
    complete(&store, &claim, &response(200, "new"), 5_000).await;

    assert_eq!(store.purge_idempotency(3_000).await.unwrap(), 1);
    expect_claimed(claim_at(&store, &old_done, "fp", 6_000).await);
    assert_eq!(claim_at(&store, &new_done, "fp", 6_000).await, ClaimOutcome::Replay(response(200, "new")));
    assert_eq!(claim_at(&store, &old_running, "fp", 6_000).await, ClaimOutcome::InProgress);
    assert_eq!(store.purge_idempotency(3_000).await.unwrap(), 0);
}

/// Starts `racers` claims of one key at once and returns their outcomes.
async fn race_claims(store: &Arc<dyn Store>, key: &str, racers: usize) -> Vec<ClaimOutcome> {
    let start = Arc::new(tokio::sync::Barrier::new(racers));
    let tasks: Vec<_> = (0..racers)
        .map(|_| {
            let (store, start, scope) = (Arc::clone(store), Arc::clone(&start), scope(key));
            tokio::spawn(async move {
                start.wait().await;
                claim_at(&store, &scope, "fp", T0).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("racer panicked"));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_have_exactly_one_winner() {
    const RACERS: usize = 20;
    let (store, _guard) = open_store().await;
    // Several rounds, since a lost race only shows up under some interleavings.
    for round in 0..10 {
        let outcomes = race_claims(&store, &format!("race-{round}"), RACERS).await;
        let winners = outcomes.iter().filter(|o| matches!(o, ClaimOutcome::Claimed(_))).count();
        let waiting = outcomes.iter().filter(|o| **o == ClaimOutcome::InProgress).count();
        assert_eq!((winners, waiting), (1, RACERS - 1), "round {round}: {outcomes:?}");
    }
}

// --- tests: audit ------------------------------------------------------------------------------

#[tokio::test]
async fn audit_batch_is_read_back_newest_first() {
    let (store, _guard) = open_store().await;
    let entries =
        [audit("aud_b", 20, Some("cart_1")), audit("aud_a", 10, None), audit("aud_c", 30, Some("cart_2"))];
    store.insert_audit_batch(&entries).await.unwrap();
    let [b, a, c] = entries;
    assert_eq!(store.recent_audit(10).await.unwrap(), [c.clone(), b.clone(), a]);
    assert_eq!(store.recent_audit(2).await.unwrap(), [c, b]);
    store.insert_audit_batch(&[]).await.unwrap();
    assert_eq!(store.recent_audit(10).await.unwrap().len(), 3, "an empty batch is a no-op");
}

#[tokio::test]
async fn large_audit_batches_keep_every_row_and_repeat_cleanly() {
    let (store, _guard) = open_store().await;
    // More than two full chunks on either backend (16 rows a statement on SQLite, 100 on PostgreSQL)
    // plus a remainder of several rows; the second batch reuses the prepared statements.
    let batch = |from: i64| -> Vec<AuditEntry> {
        (from..from + 203)
            .map(|n| audit(&format!("aud_{n:05}"), n, (n % 2 == 0).then_some("cart_1")))
            .collect()
    };
    let (first, second) = (batch(0), batch(203));
    store.insert_audit_batch(&first).await.unwrap();
    store.insert_audit_batch(&second).await.unwrap();
    let newest_first: Vec<AuditEntry> = first.into_iter().chain(second).rev().collect();
    assert_eq!(store.recent_audit(1000).await.unwrap(), newest_first);
}

#[tokio::test]
async fn audit_in_a_transaction_appears_on_commit() {
    let (store, _guard) = open_store().await;
    let entry = audit("aud_tx", T0, Some("cart_1"));
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_audit(&entry).await.unwrap();
    assert!(store.recent_audit(10).await.unwrap().is_empty(), "not visible before commit");
    tx.commit().await.unwrap();
    assert_eq!(store.recent_audit(10).await.unwrap(), [entry]);
}

// --- orders ------------------------------------------------------------------------------------

/// An order for cart `cart_id` with one line of `quantity` × `sku`, under `session`.
async fn new_order(
    store: &Arc<dyn Store>,
    order_id: &str,
    cart_id: &str,
    session: &str,
    sku: &str,
    quantity: i64,
) -> NewOrder {
    NewOrder {
        id: order_id.into(),
        cart_id: cart_id.into(),
        api_key_id: "key_agent".into(),
        seller_id: seller(store, "acme").await.id,
        payment_rail: "stripe-mpp".into(),
        session_id: session.into(),
        payment_url: None,
        lines: vec![OrderLine {
            item_id: "item_1".into(),
            variant_id: variant_id(store, sku).await,
            product_id: "prod_x".into(),
            name: "Anvil".into(),
            variant_name: "Default".into(),
            sku: sku.into(),
            unit_price_cents: 5000,
            quantity,
        }],
        subtotal_cents: 5000 * quantity,
        delivery_fee_cents: 500,
        total_cents: 5000 * quantity + 500,
        currency: "usd".into(),
        shipping_address: address(),
        email: None,
        expires_at: Some(T0 + 1000),
        settlement_credential: Some(Credential("spt_secret".into())),
        buyer_id: None,
    }
}

/// Reserves and locks in one transaction, as checkout does; `Err` carries what did not fit.
async fn start_checkout(store: &Arc<dyn Store>, order: &NewOrder) -> Result<(), OutOfStock> {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_order(order, T0).await.unwrap();
    tx.reserve_stock(&order.lines).await.unwrap()?;
    tx.lock_cart_for_checkout(&order.cart_id, &order.id, T0).await.unwrap();
    tx.commit().await.unwrap();
    Ok(())
}

async fn inventory(store: &Arc<dyn Store>, sku: &str) -> Option<i64> {
    all_products(store)
        .await
        .iter()
        .flat_map(|p| p.variants.clone())
        .find(|v| v.sku == sku)
        .unwrap()
        .inventory
}

#[tokio::test]
async fn orders_reserve_stock_and_paying_turns_it_into_a_sale_once() {
    let (store, _guard) = seeded_store().await;
    create_cart(&store, "cart_1", &[("item_1", "ANVIL", 2)]).await;
    create_cart(&store, "cart_2", &[("item_2", "ANVIL", 1)]).await;
    let first = new_order(&store, "order_1", "cart_1", "mpp:one", "ANVIL", 2).await;
    start_checkout(&store, &first).await.unwrap();
    let c = cart(&store, "cart_1").await;
    assert_eq!((c.status, c.order_id.as_deref()), (CartStatus::CheckoutPending, Some("order_1")));

    // Both units are held: the second buyer is told how many are left.
    let second = new_order(&store, "order_2", "cart_2", "mpp:two", "ANVIL", 1).await;
    let short = start_checkout(&store, &second).await.unwrap_err();
    assert_eq!((short.requested, short.available), (1, 0));
    assert!(store.get_order("order_2").await.unwrap().is_none(), "rolled back");

    // A session id makes one order only.
    let mut tx = store.begin_write().await.unwrap();
    let again = NewOrder { id: "order_3".into(), ..first.clone() };
    assert!(matches!(tx.insert_order(&again, T0).await, Err(StoreError::Conflict(_))));
    drop(tx);

    let mut tx = store.begin_write().await.unwrap();
    let paid = tx.mark_order_paid("order_1", Some("pi_1"), T0 + 5).await.unwrap();
    tx.commit().await.unwrap();
    let OrderTransition::Applied(_) = paid else { panic!("not applied: {paid:?}") };
    let order = store.get_order("mpp:one").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid_at, order.payment_reference.as_deref()),
        (OrderStatus::Paid, Some(T0 + 5), Some("pi_1"))
    );
    assert_eq!(order.settlement_credential, None, "the credential is dropped once settled");
    assert_eq!(cart(&store, "cart_1").await.status, CartStatus::Completed);
    assert_eq!(inventory(&store, "ANVIL").await, Some(0));

    // Paying again, or expiring, changes nothing.
    let mut tx = store.begin_write().await.unwrap();
    assert!(matches!(
        tx.mark_order_paid("order_1", Some("pi_2"), T0 + 9).await.unwrap(),
        OrderTransition::Refused(_)
    ));
    assert!(matches!(
        tx.close_unpaid_order("order_1", OrderStatus::Expired, T0 + 9).await.unwrap(),
        OrderTransition::Refused(_)
    ));
    tx.commit().await.unwrap();
    let order = store.get_order("order_1").await.unwrap().unwrap();
    assert_eq!((order.status, order.payment_reference.as_deref()), (OrderStatus::Paid, Some("pi_1")));
    assert_eq!(inventory(&store, "ANVIL").await, Some(0));

    // Fulfilment moves forward only.
    let mut tx = store.begin_write().await.unwrap();
    let shipment =
        Shipment { carrier: Some("UPS".into()), tracking_number: Some("1Z".into()), tracking_url: None };
    assert!(matches!(
        tx.ship_order("order_1", &shipment, T0 + 20).await.unwrap(),
        OrderTransition::Applied(_)
    ));
    assert!(matches!(tx.deliver_order("order_1", T0 + 30).await.unwrap(), OrderTransition::Applied(_)));
    assert!(matches!(
        tx.ship_order("order_1", &shipment, T0 + 40).await.unwrap(),
        OrderTransition::Refused(_)
    ));
    tx.commit().await.unwrap();
    let order = store.get_order("order_1").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.shipped_at, order.delivered_at),
        (OrderStatus::Delivered, Some(T0 + 20), Some(T0 + 30))
    );
    assert_eq!(order.carrier.as_deref(), Some("UPS"));
}

#[tokio::test]
async fn closing_an_unpaid_order_releases_stock_and_reopens_the_cart() {
    let (store, _guard) = seeded_store().await;
    create_cart(&store, "cart_1", &[("item_1", "ANVIL", 2)]).await;
    let order = new_order(&store, "order_1", "cart_1", "cs_test_1", "ANVIL", 2).await;
    start_checkout(&store, &order).await.unwrap();
    let version = cart(&store, "cart_1").await.version;
    let mut tx = store.begin_write().await.unwrap();
    let closed = tx.close_unpaid_order("order_1", OrderStatus::Cancelled, T0 + 3).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(closed, OrderTransition::Applied(_)));
    let c = cart(&store, "cart_1").await;
    assert_eq!((c.status, c.order_id.clone()), (CartStatus::Open, None));
    assert!(c.version > version, "old payment challenges stop matching");
    assert_eq!(inventory(&store, "ANVIL").await, Some(2), "inventory untouched by an unpaid order");
    // The units can be reserved again.
    create_cart(&store, "cart_2", &[("item_2", "ANVIL", 2)]).await;
    start_checkout(&store, &new_order(&store, "order_2", "cart_2", "cs_test_2", "ANVIL", 2).await)
        .await
        .unwrap();
    let overdue = store.list_overdue_orders(T0 + 2000, 10).await.unwrap();
    assert_eq!(overdue.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["order_2"]);
}

#[tokio::test]
async fn payment_events_are_recorded_once_and_links_count_clicks() {
    let (store, _guard) = seeded_store().await;
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.record_payment_event("stripe", "evt_1", None, T0).await.unwrap());
    assert!(!tx.record_payment_event("stripe", "evt_1", None, T0).await.unwrap());
    assert!(tx.record_payment_event("coinbase", "evt_1", None, T0).await.unwrap());
    tx.insert_link("abc123", "https://bean.example/kite", None, T0).await.unwrap();
    tx.insert_link("abc123", "https://elsewhere.example", None, T0).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.follow_link("abc123").await.unwrap(), Some(("https://bean.example/kite".into(), 1)));
    assert_eq!(store.follow_link("abc123").await.unwrap().map(|l| l.1), Some(2));
    assert_eq!(store.follow_link("nope").await.unwrap(), None);
}

// --- buyers, mail, feedback ----------------------------------------------------------------------

#[tokio::test]
async fn buyers_are_unique_per_email_and_codes_count_attempts() {
    let (store, _guard) = open_store().await;
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.insert_buyer("buyer_1", "ada@example.com", "Ada", T0).await.unwrap());
    assert!(
        !tx.insert_buyer("buyer_2", "ada@example.com", "Eve", T0).await.unwrap(),
        "one account per address"
    );
    tx.set_buyer_code("ada@example.com", "hash1", T0 + 600, T0).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.attempt_buyer_code("ada@example.com").await.unwrap().unwrap().attempts, 1);
    assert_eq!(tx.attempt_buyer_code("ada@example.com").await.unwrap().unwrap().attempts, 2);
    assert!(tx.attempt_buyer_code("bob@example.com").await.unwrap().is_none());
    // A new code starts over.
    tx.set_buyer_code("ada@example.com", "hash2", T0 + 900, T0 + 1).await.unwrap();
    let code = tx.attempt_buyer_code("ada@example.com").await.unwrap().unwrap();
    assert_eq!((code.code_hash.as_str(), code.attempts, code.expires_at), ("hash2", 1, T0 + 900));
    tx.insert_buyer_token("btok_1", "tokhash", "buyer_1", "key_agent", T0).await.unwrap();
    tx.set_buyer_address("buyer_1", &address(), T0 + 2).await.unwrap();
    tx.commit().await.unwrap();
    let buyer = store.get_buyer_by_token("tokhash").await.unwrap().unwrap();
    assert_eq!((buyer.name.as_str(), buyer.default_address), ("Ada", Some(address())));
    assert_eq!(store.revoke_buyer_tokens("ada@example.com", T0 + 3).await.unwrap(), 1);
    assert!(store.get_buyer_by_token("tokhash").await.unwrap().is_none(), "revoked");
}

#[tokio::test]
async fn outbox_mail_is_claimed_once_retried_and_finished() {
    let (store, _guard) = open_store().await;
    let mut tx = store.begin_write().await.unwrap();
    for i in 0..3 {
        let mail = NewMail {
            id: format!("mail_{i}"),
            recipient: "ada@example.com".into(),
            subject: "s".into(),
            body: "b".into(),
        };
        tx.enqueue_mail(&mail, T0 + i).await.unwrap();
    }
    tx.commit().await.unwrap();
    let first = store.claim_mail(T0 + 10, 60_000, 2).await.unwrap();
    let mut ids: Vec<&str> = first.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["mail_0", "mail_1"], "the two that were due first");
    let second = store.claim_mail(T0 + 10, 60_000, 10).await.unwrap();
    assert_eq!(
        second.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["mail_2"],
        "leased mail is not claimed twice"
    );
    store.finish_mail("mail_0", true, None, None, T0 + 11).await.unwrap();
    store.finish_mail("mail_1", false, Some(T0 + 1000), Some("connection refused"), T0 + 11).await.unwrap();
    store.finish_mail("mail_2", false, None, Some("550 no such user"), T0 + 11).await.unwrap();
    assert!(store.claim_mail(T0 + 500, 60_000, 10).await.unwrap().is_empty(), "not due yet");
    let retried = store.claim_mail(T0 + 1000, 60_000, 10).await.unwrap();
    assert_eq!((retried[0].id.as_str(), retried[0].attempts), ("mail_1", 2));
    // An expired lease lets another worker take the mail over.
    let taken_over = store.claim_mail(T0 + 1000 + 60_001, 60_000, 10).await.unwrap();
    assert_eq!(taken_over.len(), 1);
    let all = store.list_mail(10).await.unwrap();
    let status = |id: &str| all.iter().find(|m| m.id == id).unwrap().status.clone();
    assert_eq!((status("mail_0"), status("mail_2")), ("sent".to_string(), "failed".to_string()));
}

#[tokio::test]
async fn feedback_is_listed_newest_first() {
    let (store, _guard) = open_store().await;
    let mut tx = store.begin_write().await.unwrap();
    for (i, kind) in ["feedback", "feature_request"].iter().enumerate() {
        tx.insert_feedback(&FeedbackEntry {
            id: format!("fb_{i}"),
            kind: (*kind).into(),
            api_key_id: "key_agent".into(),
            buyer_id: None,
            category: "other".into(),
            severity: "friction".into(),
            content: "{}".into(),
            created_at: T0 + i as i64,
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let listed = store.list_feedback(10).await.unwrap();
    assert_eq!(listed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["fb_1", "fb_0"]);
}
