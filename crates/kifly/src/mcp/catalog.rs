//! `search_products` and `get_seller`: the same service calls as `GET /api/agent/products` and
//! `GET /api/agent/sellers/{handle}`.

use serde_json::{Value, json};

use super::schema::{cents, object, seller, string};
use super::tools::{READ_ONLY, Reply, ToolDef, arg, parse};
use crate::app::App;
use crate::auth::Caller;
use crate::service::catalog::{self as service, MAX_LIMIT, SearchParams};

const HANDLE_PATTERN: &str = "^[a-z0-9][a-z0-9-]{1,62}$";

pub fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "search_products",
            title: "Search products",
            description: "Search or browse the Kifly catalog (leave out q to browse). Returns a schema.org JSON-LD ItemList. \
Each item carries kifly:variantId (its default variant: pass it to add_to_cart), kifly:hasVariant (up to 20 variants, each with its own kifly:variantId; kifly:variantCount when there are more), \
offers (price, availability, kifly:purchasable) and kifly:seller (the seller handle; full seller records, with delivery fee and coverage, are in the list-level kifly:sellers map, or in kifly:seller for seller-scoped keys). \
kifly:relevanceScore is 0 to 1 and results under a similarity floor are dropped. If kifly:emptyReason is no_matches_for_query, tell the buyer nothing matched instead of guessing: \
kifly:suggestions are related products, not matches, and kifly:availableCategories lists what the catalog carries. Page with limit and offset (kifly:totalMatches counts all matches). \
offers.kifly:purchasable false means a directory seller: checkout hands off to the seller's own site. \
Next: create_cart with the item's seller handle, then add_to_cart with a variant id.",
            properties: json!({
                "q": {"type": "string", "maxLength": 500, "description": "What the buyer is looking for, in any words. Leave out to browse."},
                "seller_handle": {"type": "string", "pattern": HANDLE_PATTERN, "description": "Only this seller's products (network keys; seller-scoped keys always see their own seller)."},
                "category": {"type": "string", "minLength": 1, "maxLength": 100, "description": "Only this category (case-insensitive), e.g. one of kifly:availableCategories."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": service::DEFAULT_LIMIT, "description": "Page size."},
                "offset": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 0, "description": "Results to skip, for the next page."}
            }),
            required: &[],
            output: item_list(),
            hints: READ_ONLY,
            mutating: false,
        },
        ToolDef {
            name: "get_seller",
            title: "Get seller",
            description: "The full record of one seller: flat delivery fee, delivery coverage (every state and city: search results cap the cities at 25, so call this when cities.length < city_count), \
tier, kifly_purchasable and fulfillment. Use it to tell the buyer whether and for how much the seller delivers to them before building a cart. \
kifly_purchasable false (fulfillment external) means a directory seller: checkout hands off to the seller's site. Next: create_cart with this handle.",
            properties: json!({
                "handle": {"type": "string", "pattern": HANDLE_PATTERN, "description": "Seller handle, from kifly:seller in search_products results."}
            }),
            required: &["handle"],
            output: seller(),
            hints: READ_ONLY,
            mutating: false,
        },
    ]
}

pub async fn search_products(app: &App, caller: &Caller, args: Value) -> Reply {
    let params: SearchParams = match parse(args) {
        Ok(p) => p,
        Err(e) => return Reply::error(&e),
    };
    service::search_products(app, caller, params).await.into()
}

pub async fn get_seller(app: &App, caller: &Caller, args: Value) -> Reply {
    service::get_seller(app, caller, arg(&args, "handle")).await.into()
}

fn offer() -> Value {
    object(
        json!({
            "@type": {"type": "string", "const": "Offer"},
            "price": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$", "description": "US dollars, e.g. 49.99."},
            "priceCurrency": {"type": "string", "const": "USD"},
            "kifly:priceCents": cents("The price in US cents."),
            "availability": {"type": "string", "enum": ["https://schema.org/InStock", "https://schema.org/OutOfStock"]},
            "kifly:purchasable": {"type": "boolean", "description": "false: directory seller, checkout hands off to the seller's site."}
        }),
        &["@type", "price", "priceCurrency", "kifly:priceCents", "availability", "kifly:purchasable"],
    )
}

fn product() -> Value {
    object(
        json!({
            "@type": {"type": "string", "const": "Product"},
            "productID": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "category": {"type": "string"},
            "brand": object(json!({"@type": {"type": "string", "const": "Brand"}, "name": {"type": "string"}}), &["@type", "name"]),
            "url": {"type": ["string", "null"], "description": "The product page on the seller's site."},
            "image": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "kifly:imageCount": {"type": "integer", "minimum": 3, "description": "Total images when more than the 2 shown (the rest cannot be fetched)."},
            "kifly:relevanceScore": {"type": "number", "minimum": 0, "maximum": 1},
            "kifly:seller": string("Seller handle (network keys)."),
            "sku": {"type": "string"},
            "kifly:variantId": {"type": "string", "description": "The default variant: pass it to add_to_cart."},
            "offers": offer(),
            "kifly:hasVariant": {
                "type": "array", "maxItems": 20,
                "items": object(json!({
                    "@type": {"type": "string", "const": "ProductModel"},
                    "kifly:variantId": {"type": "string"},
                    "name": {"type": "string"},
                    "sku": {"type": "string"},
                    "kifly:options": {"type": "object", "additionalProperties": {"type": "string"}, "description": "e.g. {size: M, color: black}."},
                    "offers": offer()
                }), &["@type", "kifly:variantId", "name", "sku", "kifly:options", "offers"])
            },
            "kifly:variantCount": {"type": "integer", "minimum": 21, "description": "Total variants when more than the 20 listed."}
        }),
        &[
            "@type",
            "productID",
            "name",
            "description",
            "category",
            "brand",
            "url",
            "image",
            "kifly:relevanceScore",
        ],
    )
}

/// The JSON-LD `ItemList` of `search_products`.
fn item_list() -> Value {
    object(
        json!({
            "@context": {"type": "object"},
            "@type": {"type": "string", "const": "ItemList"},
            "numberOfItems": {"type": "integer", "minimum": 0},
            "kifly:totalCatalogSize": {"type": "integer", "minimum": 0, "description": "Products in the catalog this key can see."},
            "kifly:totalMatches": {"type": "integer", "minimum": 0, "description": "Matches in all pages."},
            "kifly:offset": {"type": "integer", "minimum": 0},
            "kifly:limit": {"type": "integer", "minimum": 1},
            "kifly:query": {"type": "string"},
            "itemListElement": {"type": "array", "items": product()},
            "kifly:seller": seller(),
            "kifly:sellers": {"type": "object", "additionalProperties": seller(), "description": "Seller records keyed by handle (network keys)."},
            "kifly:emptyReason": {"type": "string", "enum": ["empty_catalog", "no_matches_for_query"]},
            "kifly:suggestions": {"type": "array", "items": product(), "description": "Related products, NOT matches."},
            "kifly:availableCategories": {"type": "array", "items": {"type": "string"}}
        }),
        &[
            "@context",
            "@type",
            "numberOfItems",
            "kifly:totalCatalogSize",
            "kifly:totalMatches",
            "kifly:offset",
            "kifly:limit",
            "itemListElement",
        ],
    )
}
