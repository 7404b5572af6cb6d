//! Catalog queries: sellers, products, variants, and the atomic import.

use std::collections::HashMap;

use super::sql::{self, Row};
use kifly_core::catalog::{CatalogFile, Tier};
use kifly_core::coverage::{Coverage, CoverageSpec};
use kifly_core::ids::{IdKind, new_id};

use super::{Conn, DbPool, DbRow, json_err, map_err};
use crate::model::*;
use crate::{StoreError, StoreResult};

/// The `sellers` columns as stored, before parsing; also filled by SQLite's direct reads.
pub(super) struct SellerRow {
    pub id: String,
    pub handle: String,
    pub name: String,
    pub description: String,
    pub storefront_url: Option<String>,
    pub tier: String,
    pub delivery_fee_cents: i64,
    pub coverage: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The column list every seller query selects, in [`SellerRow`]'s order.
macro_rules! seller_columns {
    () => {
        "id, handle, name, description, storefront_url, tier, delivery_fee_cents, coverage, created_at, updated_at"
    };
}

impl SellerRow {
    pub(super) fn into_seller(self) -> StoreResult<Seller> {
        let coverage = match self.coverage {
            None => Coverage::NotConfigured,
            Some(json) => {
                Coverage::from(Some(serde_json::from_str::<CoverageSpec>(&json).map_err(json_err)?))
            }
        };
        Ok(Seller {
            tier: Tier::parse(&self.tier)
                .ok_or_else(|| StoreError::Other(format!("unknown tier {:?}", self.tier)))?,
            id: self.id,
            handle: self.handle,
            name: self.name,
            description: self.description,
            storefront_url: self.storefront_url,
            delivery_fee_cents: self.delivery_fee_cents,
            coverage,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn seller_from_row(row: &DbRow) -> StoreResult<Seller> {
    SellerRow {
        id: row.try_get("id").map_err(map_err)?,
        handle: row.try_get("handle").map_err(map_err)?,
        name: row.try_get("name").map_err(map_err)?,
        description: row.try_get("description").map_err(map_err)?,
        storefront_url: row.try_get("storefront_url").map_err(map_err)?,
        tier: row.try_get("tier").map_err(map_err)?,
        delivery_fee_cents: row.try_get("delivery_fee_cents").map_err(map_err)?,
        coverage: row.try_get("coverage").map_err(map_err)?,
        created_at: row.try_get("created_at").map_err(map_err)?,
        updated_at: row.try_get("updated_at").map_err(map_err)?,
    }
    .into_seller()
}

/// How a seller is looked up.
#[derive(Clone, Copy)]
pub(super) enum SellerKey {
    Id,
    Handle,
}

impl SellerKey {
    pub(super) fn sql(self) -> &'static str {
        match self {
            SellerKey::Id => concat!("SELECT ", seller_columns!(), " FROM sellers WHERE id = $1"),
            SellerKey::Handle => concat!("SELECT ", seller_columns!(), " FROM sellers WHERE handle = $1"),
        }
    }
}

/// Works on the pool or inside a transaction (any executor).
pub(super) async fn seller_by<'e>(
    pool: impl sql::Executor<'e>,
    key: SellerKey,
    value: &str,
) -> StoreResult<Option<Seller>> {
    let row = sql::query(key.sql()).bind(value).fetch_optional(pool).await.map_err(map_err)?;
    row.as_ref().map(seller_from_row).transpose()
}

pub(super) async fn list_sellers(pool: &DbPool) -> StoreResult<Vec<Seller>> {
    let rows = sql::query(concat!("SELECT ", seller_columns!(), " FROM sellers ORDER BY handle"))
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter().map(seller_from_row).collect()
}

fn variant_from_row(row: &DbRow) -> StoreResult<Variant> {
    let options: String = row.try_get("options").map_err(map_err)?;
    Ok(Variant {
        id: row.try_get("id").map_err(map_err)?,
        product_id: row.try_get("product_id").map_err(map_err)?,
        sku: row.try_get("sku").map_err(map_err)?,
        name: row.try_get("name").map_err(map_err)?,
        options: serde_json::from_str(&options).map_err(json_err)?,
        price_cents: row.try_get("price_cents").map_err(map_err)?,
        inventory: row.try_get("inventory").map_err(map_err)?,
    })
}

pub(super) async fn list_products(pool: &DbPool, filter: &ProductFilter) -> StoreResult<Vec<Product>> {
    // Empty strings mean "no filter", so one statement serves every combination.
    let seller = filter.seller_id.clone().unwrap_or_default();
    // Categories are stored lower-cased (Unicode-aware, in Rust), so compare against the same folding.
    let category = filter.category.as_deref().unwrap_or_default().to_lowercase();
    let rows = sql::query(
        "SELECT p.id, p.seller_id, p.handle, p.title, p.description, p.category, p.brand, p.url, p.images
         FROM products p JOIN sellers s ON s.id = p.seller_id
         WHERE ($1 = '' OR p.seller_id = $1) AND ($2 = '' OR p.category = $2)
         ORDER BY s.handle, p.position",
    )
    .bind(&seller)
    .bind(&category)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    let variant_rows = sql::query(
        "SELECT v.id, v.product_id, v.sku, v.name, v.options, v.price_cents, v.inventory
         FROM variants v JOIN products p ON p.id = v.product_id
         WHERE ($1 = '' OR p.seller_id = $1) AND ($2 = '' OR p.category = $2)
         ORDER BY v.product_id, v.position",
    )
    .bind(&seller)
    .bind(&category)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    let mut variants: HashMap<String, Vec<Variant>> = HashMap::new();
    for row in &variant_rows {
        let v = variant_from_row(row)?;
        variants.entry(v.product_id.clone()).or_default().push(v);
    }
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id").map_err(map_err)?;
            let images: String = row.try_get("images").map_err(map_err)?;
            Ok(Product {
                variants: variants.remove(&id).unwrap_or_default(),
                id,
                seller_id: row.try_get("seller_id").map_err(map_err)?,
                handle: row.try_get("handle").map_err(map_err)?,
                title: row.try_get("title").map_err(map_err)?,
                description: row.try_get("description").map_err(map_err)?,
                category: row.try_get("category").map_err(map_err)?,
                brand: row.try_get("brand").map_err(map_err)?,
                url: row.try_get("url").map_err(map_err)?,
                images: serde_json::from_str(&images).map_err(json_err)?,
            })
        })
        .collect()
}

pub(super) async fn count_products(pool: &DbPool, seller_id: Option<&str>) -> StoreResult<i64> {
    sql::query_scalar("SELECT COUNT(*) FROM products WHERE ($1 = '' OR seller_id = $1)")
        .bind(seller_id.unwrap_or_default())
        .fetch_one(pool)
        .await
        .map_err(map_err)
}

pub(super) async fn list_categories(pool: &DbPool, seller_id: Option<&str>) -> StoreResult<Vec<String>> {
    sql::query_scalar(
        "SELECT DISTINCT category FROM products WHERE category <> '' AND ($1 = '' OR seller_id = $1) ORDER BY category",
    )
    .bind(seller_id.unwrap_or_default())
    .fetch_all(pool)
    .await
    .map_err(map_err)
}

pub(super) async fn get_variant<'e>(
    pool: impl sql::Executor<'e>,
    variant_id: &str,
) -> StoreResult<Option<VariantRef>> {
    let row = sql::query(
        "SELECT v.id, v.product_id, v.sku, v.name, v.options, v.price_cents, v.inventory, p.title, p.seller_id
         FROM variants v JOIN products p ON p.id = v.product_id WHERE v.id = $1",
    )
    .bind(variant_id)
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    row.map(|row| {
        Ok(VariantRef {
            variant: variant_from_row(&row)?,
            product_title: row.try_get("title").map_err(map_err)?,
            seller_id: row.try_get("seller_id").map_err(map_err)?,
        })
    })
    .transpose()
}

pub(super) async fn catalog_version(pool: &DbPool) -> StoreResult<CatalogVersion> {
    // One round trip; the same SQL on both backends (the CASTs keep PostgreSQL's SUM, a NUMERIC,
    // an integer).
    let row = sql::query(
        "SELECT
           (SELECT COUNT(*) FROM sellers), (SELECT COUNT(*) FROM products), (SELECT COUNT(*) FROM variants),
           (SELECT CAST(COALESCE(MAX(updated_at), 0) AS BIGINT) FROM sellers),
           (SELECT CAST(COALESCE(MAX(updated_at), 0) AS BIGINT) FROM products),
           (SELECT CAST(COALESCE(MAX(updated_at), 0) AS BIGINT) FROM variants),
           (SELECT CAST(COALESCE(SUM(updated_at % 1000003), 0) AS BIGINT) FROM sellers),
           (SELECT CAST(COALESCE(SUM(updated_at % 1000003), 0) AS BIGINT) FROM products),
           (SELECT CAST(COALESCE(SUM(updated_at % 1000003), 0) AS BIGINT) FROM variants)",
    )
    .fetch_one(pool)
    .await
    .map_err(map_err)?;
    let get = |i: usize| -> StoreResult<i64> { row.try_get::<i64, _>(i).map_err(map_err) };
    Ok(CatalogVersion {
        rows: [get(0)?, get(1)?, get(2)?],
        max_updated_at: [get(3)?, get(4)?, get(5)?],
        checksum: [get(6)?, get(7)?, get(8)?],
    })
}

/// Upserts a validated file inside the caller's transaction.
pub(super) async fn import(conn: &mut Conn, file: &CatalogFile, now: i64) -> StoreResult<ImportSummary> {
    let mut summary = ImportSummary::default();
    for seller in &file.sellers {
        let coverage = seller
            .coverage()
            .to_spec()
            .map(|spec| serde_json::to_string(&spec))
            .transpose()
            .map_err(json_err)?;
        let seller_id: String = sql::query_scalar(
            "INSERT INTO sellers (id, handle, name, description, storefront_url, tier, delivery_fee_cents, coverage, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (handle) DO UPDATE SET name = excluded.name, description = excluded.description,
               storefront_url = excluded.storefront_url, tier = excluded.tier,
               delivery_fee_cents = excluded.delivery_fee_cents, coverage = excluded.coverage, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(new_id(IdKind::Seller))
        .bind(&seller.handle)
        .bind(&seller.name)
        .bind(&seller.description)
        .bind(&seller.storefront_url)
        .bind(seller.tier.as_str())
        .bind(seller.delivery_fee_cents)
        .bind(coverage)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        summary.sellers += 1;
        for (position, product) in seller.products.iter().enumerate() {
            let images = serde_json::to_string(&product.images).map_err(json_err)?;
            let product_id: String = sql::query_scalar(
                "INSERT INTO products (id, seller_id, handle, title, description, category, brand, url, images, position, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
                 ON CONFLICT (seller_id, handle) DO UPDATE SET title = excluded.title, description = excluded.description,
                   category = excluded.category, brand = excluded.brand, url = excluded.url, images = excluded.images,
                   position = excluded.position, updated_at = excluded.updated_at
                 RETURNING id",
            )
            .bind(new_id(IdKind::Product))
            .bind(&seller_id)
            .bind(&product.handle)
            .bind(&product.title)
            .bind(&product.description)
            .bind(product.category.to_lowercase())
            .bind(&product.brand)
            .bind(&product.url)
            .bind(images)
            .bind(position as i64)
            .bind(now)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
            summary.products += 1;
            for (vposition, variant) in product.variants.iter().enumerate() {
                // A SKU identifies one seller's variant; moving it to another seller by import would
                // silently rewrite that seller's catalog (and carts holding it).
                let owner: Option<String> = sql::query_scalar(
                    "SELECT p.seller_id FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = $1",
                )
                .bind(&variant.sku)
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)?;
                if owner.is_some_and(|owner| owner != seller_id) {
                    return Err(StoreError::Conflict(format!(
                        "sku {:?} already belongs to another seller; SKUs cannot move between sellers",
                        variant.sku
                    )));
                }
                let options = serde_json::to_string(&variant.options).map_err(json_err)?;
                sql::query(
                    "INSERT INTO variants (id, product_id, sku, name, options, price_cents, inventory, position, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                     ON CONFLICT (sku) DO UPDATE SET product_id = excluded.product_id, name = excluded.name,
                       options = excluded.options, price_cents = excluded.price_cents, inventory = excluded.inventory,
                       position = excluded.position, updated_at = excluded.updated_at",
                )
                .bind(new_id(IdKind::Variant))
                .bind(&product_id)
                .bind(&variant.sku)
                .bind(&variant.name)
                .bind(options)
                .bind(variant.price_cents)
                .bind(variant.inventory)
                .bind(vposition as i64)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
                summary.variants += 1;
            }
        }
    }
    Ok(summary)
}
