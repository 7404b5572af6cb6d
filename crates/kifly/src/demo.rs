//! `serve --demo`: a fresh data dir gets the demo catalog and two API keys, printed once.

use kifly_core::catalog::CatalogFile;
use kifly_core::scope::Scope;
use kifly_store::Store;

use crate::app::now_ms;
use crate::service::keys::create_key;

/// The demo catalog shipped in the repository.
pub const DEMO_CATALOG: &str = include_str!("../demo/catalog.json");
/// The seller whose scoped demo key is printed.
pub const DEMO_SELLER: &str = "trailhead-outfitters";

/// Seeds an empty store. Returns the lines to print, or `None` if the store already had a catalog
/// (keys are shown only once, when they are created).
pub async fn seed(store: &dyn Store, secret: &str) -> Result<Option<Vec<String>>, String> {
    if store.count_products(None).await.map_err(|e| e.to_string())? > 0 {
        return Ok(None);
    }
    let file = CatalogFile::parse(DEMO_CATALOG).map_err(|e| format!("demo catalog is invalid: {e}"))?;
    let summary = store.import_catalog(&file, now_ms()).await.map_err(|e| e.to_string())?;
    let (_, network) = create_key(store, secret, "demo network key", None, Scope::ALL.to_vec()).await?;
    let (_, seller) =
        create_key(store, secret, "demo seller key", Some(DEMO_SELLER), Scope::ALL.to_vec()).await?;
    Ok(Some(vec![
        format!(
            "demo catalog loaded: {} sellers, {} products, {} variants",
            summary.sellers, summary.products, summary.variants
        ),
        "demo API keys (shown once; store them now):".to_string(),
        format!("  network key (all sellers):        {network}"),
        format!("  seller key ({DEMO_SELLER}): {seller}"),
    ]))
}
