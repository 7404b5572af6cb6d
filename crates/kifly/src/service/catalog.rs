//! Sellers and the product listing (`search_products`), rendered as a schema.org JSON-LD `ItemList`
//! with the `kifly:*` fields agents rely on.
//!
//! Matching here is deliberately simple (accent- and case-folded token overlap with prefix matching,
//! weighted by field); a proper multilingual search engine replaces [`score`] without changing the
//! output contract.

use std::collections::BTreeMap;

use kifly_core::money::cents_to_decimal;
use kifly_core::scope::Scope;
use kifly_store::{Product, ProductFilter, Seller, Variant};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Cities listed in a seller record inside search results; `get_seller` lists them all.
pub const CITY_CAP_IN_RESULTS: usize = 25;
const MAX_VARIANTS_SHOWN: usize = 20;
const MAX_IMAGES_SHOWN: usize = 2;
/// Results scoring under this are not matches.
const RELEVANCE_FLOOR: f64 = 0.15;
pub const DEFAULT_LIMIT: i64 = 10;
pub const MAX_LIMIT: i64 = 50;

/// A seller as agents see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SellerRecord {
    pub handle: String,
    pub name: String,
    pub description: String,
    pub storefront_url: Option<String>,
    /// `purchasable` or `directory`.
    pub tier: &'static str,
    pub delivery_fee_cents: i64,
    /// `{nationwide, states, cities, city_count, coverage_configured}`.
    #[schema(value_type = Object)]
    pub delivery_coverage: Value,
    pub kifly_purchasable: bool,
    /// `kifly` (Kifly takes the order) or `external` (hand-off to the seller's site).
    pub fulfillment: &'static str,
}

pub fn seller_record(seller: &Seller, city_cap: usize) -> SellerRecord {
    SellerRecord {
        handle: seller.handle.clone(),
        name: seller.name.clone(),
        description: seller.description.clone(),
        storefront_url: seller.storefront_url.clone(),
        tier: seller.tier.as_str(),
        delivery_fee_cents: seller.delivery_fee_cents,
        delivery_coverage: seller.coverage.record(city_cap),
        kifly_purchasable: seller.tier == kifly_core::catalog::Tier::Purchasable,
        fulfillment: seller.tier.fulfillment(),
    }
}

/// The seller a caller may see under `handle`; a seller-scoped key sees only its own.
pub async fn visible_seller(app: &App, caller: &Caller, handle: &str) -> ApiResult<Seller> {
    let seller =
        app.store.get_seller_by_handle(handle).await?.ok_or_else(|| ApiError::seller_not_found(handle))?;
    match caller.seller_id() {
        Some(own) if own != seller.id => Err(ApiError::seller_not_found(handle)),
        _ => Ok(seller),
    }
}

/// `get_seller`: the full record, every city included.
pub async fn get_seller(app: &App, caller: &Caller, handle: &str) -> ApiResult<SellerRecord> {
    caller.require(Scope::CatalogRead)?;
    let seller = visible_seller(app, caller, handle).await?;
    app.audit.record(super::audit(caller, "seller.get", Some(&seller.id)));
    Ok(seller_record(&seller, usize::MAX))
}

/// Query parameters of the product listing.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Search text; leave out to browse.
    pub q: Option<String>,
    /// Only this seller (network keys; ignored for seller-scoped keys).
    pub seller_handle: Option<String>,
    /// Only this category (case-insensitive).
    pub category: Option<String>,
    /// Page size, 1 to 50 (default 10).
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    pub offset: Option<i64>,
}

/// `search_products`: the JSON-LD ItemList.
pub async fn search_products(app: &App, caller: &Caller, params: SearchParams) -> ApiResult<Value> {
    caller.require(Scope::CatalogRead)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let offset = params.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::validation("offset", "must be 0 or more"));
    }
    let q = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 500) {
        return Err(ApiError::validation("q", "must be at most 500 characters"));
    }

    let scope_seller = match (caller.seller_id(), params.seller_handle.as_deref()) {
        (Some(own), _) => app.store.get_seller(own).await?,
        (None, Some(handle)) => Some(visible_seller(app, caller, handle).await?),
        (None, None) => None,
    };
    let scope_seller_id = scope_seller.as_ref().map(|s| s.id.clone());
    let seller_scoped_key = caller.seller_id().is_some();
    let catalog_size =
        app.store.count_products(if seller_scoped_key { caller.seller_id() } else { None }).await?;
    let filter = ProductFilter {
        seller_id: scope_seller_id.clone(),
        category: params.category.clone().filter(|c| !c.trim().is_empty()),
    };
    let products = app.store.list_products(&filter).await?;

    let mut ranked: Vec<(f64, &Product)> = match q {
        None => products.iter().map(|p| (1.0, p)).collect(),
        Some(q) => {
            let query = tokens(q);
            let mut scored: Vec<(f64, &Product)> = products
                .iter()
                .map(|p| (score(&query, p), p))
                .filter(|(s, _)| *s >= RELEVANCE_FLOOR)
                .collect();
            // Stable sort: equal scores keep catalog order, so paging is deterministic.
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored
        }
    };
    let matched = ranked.len();
    let page: Vec<(f64, &Product)> = ranked.drain(..).skip(offset as usize).take(limit as usize).collect();

    let sellers: BTreeMap<String, Seller> = app
        .store
        .list_sellers()
        .await?
        .into_iter()
        .filter(|s| page.iter().any(|(_, p)| p.seller_id == s.id) || Some(&s.id) == scope_seller_id.as_ref())
        .map(|s| (s.id.clone(), s))
        .collect();

    let mut list = Map::new();
    list.insert(
        "@context".into(),
        json!({"@vocab": "https://schema.org/", "kifly": "https://kifly.dev/ns#"}),
    );
    list.insert("@type".into(), json!("ItemList"));
    list.insert("numberOfItems".into(), json!(page.len()));
    list.insert("kifly:totalCatalogSize".into(), json!(catalog_size));
    list.insert("kifly:totalMatches".into(), json!(matched));
    list.insert("kifly:offset".into(), json!(offset));
    list.insert("kifly:limit".into(), json!(limit));
    if let Some(q) = q {
        list.insert("kifly:query".into(), json!(q));
    }
    let items: Vec<Value> =
        page.iter().map(|(score, p)| product_item(p, sellers.get(&p.seller_id), *score)).collect();
    list.insert("itemListElement".into(), Value::Array(items));

    if seller_scoped_key {
        if let Some(seller) = &scope_seller {
            list.insert("kifly:seller".into(), json!(seller_record(seller, CITY_CAP_IN_RESULTS)));
        }
    } else {
        let map: Map<String, Value> = sellers
            .values()
            .filter(|s| page.iter().any(|(_, p)| p.seller_id == s.id))
            .map(|s| (s.handle.clone(), json!(seller_record(s, CITY_CAP_IN_RESULTS))))
            .collect();
        list.insert("kifly:sellers".into(), Value::Object(map));
    }

    if matched == 0 {
        let (reason, suggestions) = if catalog_size == 0 {
            ("empty_catalog", Vec::new())
        } else {
            let browse = app
                .store
                .list_products(&ProductFilter { seller_id: filter.seller_id.clone(), category: None })
                .await?;
            let all_sellers: BTreeMap<String, Seller> =
                app.store.list_sellers().await?.into_iter().map(|s| (s.id.clone(), s)).collect();
            let suggestions =
                browse.iter().take(3).map(|p| product_item(p, all_sellers.get(&p.seller_id), 0.0)).collect();
            ("no_matches_for_query", suggestions)
        };
        list.insert("kifly:emptyReason".into(), json!(reason));
        list.insert("kifly:suggestions".into(), Value::Array(suggestions));
        let categories = app.store.list_categories(scope_seller_id.as_deref()).await?;
        list.insert("kifly:availableCategories".into(), json!(categories));
    }
    app.audit.record(super::audit(caller, "catalog.search", None));
    Ok(Value::Object(list))
}

fn in_stock(v: &Variant) -> bool {
    v.inventory.is_none_or(|n| n > 0)
}

fn offer(v: &Variant, purchasable: bool) -> Value {
    json!({
        "@type": "Offer",
        "price": cents_to_decimal(v.price_cents),
        "priceCurrency": "USD",
        "kifly:priceCents": v.price_cents,
        "availability": if in_stock(v) { "https://schema.org/InStock" } else { "https://schema.org/OutOfStock" },
        "kifly:purchasable": purchasable,
    })
}

/// One product as a JSON-LD `Product` with the `kifly:*` extensions.
fn product_item(p: &Product, seller: Option<&Seller>, score: f64) -> Value {
    let purchasable = seller.is_some_and(|s| s.tier == kifly_core::catalog::Tier::Purchasable);
    let default = p.variants.iter().find(|v| in_stock(v)).or(p.variants.first());
    let mut item = Map::new();
    item.insert("@type".into(), json!("Product"));
    item.insert("productID".into(), json!(p.id));
    item.insert("name".into(), json!(p.title));
    item.insert("description".into(), json!(p.description));
    item.insert("category".into(), json!(p.category));
    item.insert("brand".into(), json!({"@type": "Brand", "name": p.brand}));
    item.insert("url".into(), json!(p.url));
    item.insert("image".into(), json!(p.images.iter().take(MAX_IMAGES_SHOWN).collect::<Vec<_>>()));
    if p.images.len() > MAX_IMAGES_SHOWN {
        item.insert("kifly:imageCount".into(), json!(p.images.len()));
    }
    item.insert("kifly:relevanceScore".into(), json!((score.clamp(0.0, 1.0) * 1000.0).round() / 1000.0));
    if let Some(seller) = seller {
        item.insert("kifly:seller".into(), json!(seller.handle));
    }
    if let Some(v) = default {
        item.insert("sku".into(), json!(v.sku));
        item.insert("kifly:variantId".into(), json!(v.id));
        item.insert("offers".into(), offer(v, purchasable));
    }
    if p.variants.len() >= 2 {
        let variants: Vec<Value> = p
            .variants
            .iter()
            .take(MAX_VARIANTS_SHOWN)
            .map(|v| {
                json!({
                    "@type": "ProductModel",
                    "kifly:variantId": v.id,
                    "name": v.name,
                    "sku": v.sku,
                    "kifly:options": v.options,
                    "offers": offer(v, purchasable),
                })
            })
            .collect();
        item.insert("kifly:hasVariant".into(), Value::Array(variants));
        if p.variants.len() > MAX_VARIANTS_SHOWN {
            item.insert("kifly:variantCount".into(), json!(p.variants.len()));
        }
    }
    Value::Object(item)
}

/// Lower-cases, strips common Latin accents and splits on anything that is not a letter or digit.
pub fn tokens(text: &str) -> Vec<String> {
    let folded: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ß' => 's',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect();
    folded.split_whitespace().map(str::to_string).collect()
}

fn token_matches(query: &str, doc: &str) -> bool {
    query == doc
        || (query.chars().count() >= 3 && doc.starts_with(query))
        || (doc.chars().count() >= 4 && query.starts_with(doc))
}

/// Share of query tokens found in the product, weighted by where (title 1.0, brand/category 0.7,
/// description/variants 0.5).
fn score(query: &[String], p: &Product) -> f64 {
    if query.is_empty() {
        return 0.0;
    }
    let title = tokens(&p.title);
    let tags = tokens(&format!("{} {}", p.brand, p.category));
    let variant_text: String = p.variants.iter().map(|v| format!("{} {} ", v.name, v.sku)).collect();
    let body = tokens(&format!("{} {}", p.description, variant_text));
    let total: f64 = query
        .iter()
        .map(|q| {
            if title.iter().any(|d| token_matches(q, d)) {
                1.0
            } else if tags.iter().any(|d| token_matches(q, d)) {
                0.7
            } else if body.iter().any(|d| token_matches(q, d)) {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    total / query.len() as f64
}
