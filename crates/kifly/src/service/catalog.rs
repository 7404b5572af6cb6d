//! Sellers and the product listing (`search_products`), rendered as a schema.org JSON-LD `ItemList`
//! with the `kifly:*` fields agents rely on.
//!
//! Matching and ranking are the search engine's ([`crate::search`]): this module applies the
//! similarity floor, paging and filters, and renders the contract.

use std::sync::Arc;

use kifly_core::coverage::CoverageRecord;
use kifly_core::money::cents_to_decimal;
use kifly_core::scope::Scope;
use kifly_store::{Product, Seller, Variant};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::search::{Hit, Index, SearchQuery};

/// Cities listed in a seller record inside search results; `get_seller` lists them all.
pub const CITY_CAP_IN_RESULTS: usize = 25;
const MAX_VARIANTS_SHOWN: usize = 20;
const MAX_IMAGES_SHOWN: usize = 2;
/// Results scoring under this are not matches (they may still be offered as suggestions).
pub const RELEVANCE_FLOOR: f64 = 0.2;
/// Suggestions offered when nothing matched.
const SUGGESTIONS: usize = 3;
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
    pub delivery_coverage: CoverageRecord,
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
        kifly_purchasable: seller.tier.is_purchasable(),
        fulfillment: seller.tier.fulfillment(),
    }
}

/// A seller record rendered to JSON once. Every cart view repeats its seller's record (with the
/// coverage lists); the seller cache keeps each seller's record rendered ([`crate::app::CachedSeller`]),
/// so a cart read copies these bytes instead of serialising the record again.
#[derive(Debug, Clone)]
pub struct RenderedSellerRecord(Arc<RawValue>);

impl RenderedSellerRecord {
    /// The record as shown inside carts and search results (cities capped).
    pub fn for_carts(seller: &Seller) -> Self {
        let record = seller_record(seller, CITY_CAP_IN_RESULTS);
        // A struct of strings, numbers and lists always serialises.
        let json = serde_json::value::to_raw_value(&record).unwrap_or_else(|_| RawValue::NULL.to_owned());
        RenderedSellerRecord(Arc::from(json))
    }
}

impl Serialize for RenderedSellerRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
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
    // One snapshot of the catalog answers the whole request, so counts, matches and suggestions agree.
    let index = app.search.index().await?;
    let catalog_size = index.count(if seller_scoped_key { caller.seller_id() } else { None });
    let category = params.category.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let query = SearchQuery { text: q, seller_id: scope_seller_id.as_deref(), category };
    let floor = if q.is_some() { RELEVANCE_FLOOR as f32 } else { 0.0 };
    let ranked = index.search(&query, floor, (offset as usize).saturating_add(limit as usize));
    let matched = ranked.matches;
    let page: Vec<Hit> = ranked.top.iter().skip(offset as usize).copied().collect();

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
    let item = |hit: &Hit| {
        let p = &index.products[hit.doc];
        product_item(p, index.sellers.get(&p.seller_id), f64::from(hit.score))
    };
    list.insert("itemListElement".into(), Value::Array(page.iter().map(item).collect()));

    if seller_scoped_key {
        if let Some(seller) = &scope_seller {
            list.insert("kifly:seller".into(), json!(seller_record(seller, CITY_CAP_IN_RESULTS)));
        }
    } else {
        let map: Map<String, Value> = index
            .sellers
            .values()
            .filter(|s| page.iter().any(|h| index.products[h.doc].seller_id == s.id))
            .map(|s| (s.handle.clone(), json!(seller_record(s, CITY_CAP_IN_RESULTS))))
            .collect();
        list.insert("kifly:sellers".into(), Value::Object(map));
    }

    if matched == 0 {
        let (reason, suggestions) = if catalog_size == 0 {
            ("empty_catalog", Vec::new())
        } else {
            let suggestions = suggestions(&index, &query, &ranked.near);
            ("no_matches_for_query", suggestions.iter().map(item).collect())
        };
        list.insert("kifly:emptyReason".into(), json!(reason));
        list.insert("kifly:suggestions".into(), Value::Array(suggestions));
        let categories = app.store.list_categories(scope_seller_id.as_deref()).await?;
        list.insert("kifly:availableCategories".into(), json!(categories));
    }
    app.audit.record(super::audit(caller, "catalog.search", None));
    Ok(Value::Object(list))
}

/// What to show when nothing matched: the closest sub-floor hits (partial matches, with their low
/// scores), then products of their categories, then one product per category of the seller's (or
/// whole) catalog — related where anything is, never presented as a match.
fn suggestions(index: &Index, query: &SearchQuery<'_>, near: &[Hit]) -> Vec<Hit> {
    let mut out: Vec<Hit> = near.iter().filter(|h| h.score > 0.0).take(SUGGESTIONS).copied().collect();
    if out.len() < SUGGESTIONS && query.category.is_some() {
        // The category filter may be what excluded everything: look for partial matches outside it.
        let wider = index.search(&SearchQuery { category: None, ..query.clone() }, 0.0, SUGGESTIONS);
        for hit in wider.top {
            if out.len() == SUGGESTIONS {
                break;
            }
            if !out.iter().any(|o| o.doc == hit.doc) {
                out.push(Hit { score: hit.score.min(RELEVANCE_FLOOR as f32 / 2.0), ..hit });
            }
        }
    }
    let browse = index.browse(&SearchQuery { text: None, category: None, ..query.clone() });
    let categories: Vec<&str> =
        out.iter().map(|h| index.products[h.doc].category.as_str()).collect::<Vec<_>>();
    let same_category = browse.iter().filter(|&&d| categories.contains(&index.products[d].category.as_str()));
    let mut seen_categories: Vec<&str> = Vec::new();
    let one_per_category = browse.iter().filter(|&&d| {
        let c = index.products[d].category.as_str();
        let new = !seen_categories.contains(&c);
        seen_categories.push(c);
        new
    });
    for &doc in same_category.chain(one_per_category) {
        if out.len() == SUGGESTIONS {
            break;
        }
        if !out.iter().any(|o| o.doc == doc) {
            out.push(Hit { doc, score: 0.0 });
        }
    }
    out
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
    let purchasable = seller.is_some_and(|s| s.tier.is_purchasable());
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

#[cfg(test)]
mod tests {
    use kifly_core::catalog::Tier;
    use kifly_core::coverage::{City, Coverage};

    use super::*;

    #[test]
    fn a_rendered_seller_record_is_the_record_s_json() {
        let seller = Seller {
            id: "sel_1".into(),
            handle: "north-\"quoted\"-shop".into(),
            name: "North Shop".into(),
            description: "Tents — and more".into(),
            storefront_url: None,
            tier: Tier::Purchasable,
            delivery_fee_cents: 599,
            coverage: Coverage::Areas {
                states: vec!["CA".into(), "OR".into()],
                cities: vec![City { city: "Austin".into(), state: "TX".into() }],
            },
            created_at: 1,
            updated_at: 2,
        };
        let record = seller_record(&seller, CITY_CAP_IN_RESULTS);
        let rendered = RenderedSellerRecord::for_carts(&seller);
        assert_eq!(
            serde_json::to_string(&rendered).expect("rendered"),
            serde_json::to_string(&record).expect("record")
        );
        // Inside a `Value` (MCP tool results, idempotent outcomes) it is the same object, keys in order.
        assert_eq!(
            serde_json::to_string(&json!({ "seller": rendered })).expect("value"),
            serde_json::to_string(&json!({ "seller": record })).expect("value")
        );
    }
}
