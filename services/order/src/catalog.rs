//! The product service as the order service sees it: "does this product exist, and what does it
//! cost?", asked over HTTP at `GET /api/v1/products/{id}` (public, no token needed).
//!
//! It deliberately caches nothing: a price is checked against the catalog as it is when the
//! order is placed.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use common::money::Cents;
use serde::Deserialize;

/// What the catalog says about one product id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEntry {
    Found {
        price: Cents,
    },
    /// The product service does not know the id (404, or 422 for an id that is not an ObjectId).
    Missing,
}

/// Why the catalog could not be asked: the product service is down or answered nonsense. The
/// order service answers 503 for this, never 500, and never a 4xx that blames the caller.
#[derive(Debug, thiserror::Error)]
#[error("the product service is unavailable: {0:#}")]
pub struct CatalogUnavailable(anyhow::Error);

#[derive(Clone)]
pub struct CatalogClient {
    base_url: String,
    /// One pooled client for every lookup, with a timeout so that a hung product service turns
    /// into a 503 instead of a hung order request.
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ProductBody {
    price: Cents,
}

impl CatalogClient {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).build().context("failed to build the product service client")?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), http })
    }

    /// Looks every distinct id up concurrently.
    pub async fn look_up_all(&self, product_ids: &[String]) -> Result<HashMap<String, CatalogEntry>, CatalogUnavailable> {
        let mut distinct: Vec<&String> = product_ids.iter().collect();
        distinct.sort();
        distinct.dedup();
        let lookups = distinct.into_iter().map(|product_id| async move {
            let entry = self.look_up(product_id).await?;
            Ok::<_, CatalogUnavailable>((product_id.clone(), entry))
        });
        futures::future::try_join_all(lookups).await.map(|entries| entries.into_iter().collect())
    }

    pub async fn look_up(&self, product_id: &str) -> Result<CatalogEntry, CatalogUnavailable> {
        // Anything but a plain id in the path could address another endpoint: such an id cannot
        // name a product, so it is missing without asking.
        if product_id.is_empty() || !product_id.chars().all(|character| character.is_ascii_alphanumeric()) {
            return Ok(CatalogEntry::Missing);
        }
        let url = format!("{}/api/v1/products/{product_id}", self.base_url);
        let response =
            self.http.get(&url).send().await.with_context(|| format!("GET {url} failed")).map_err(CatalogUnavailable)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
            || status == reqwest::StatusCode::BAD_REQUEST
        {
            return Ok(CatalogEntry::Missing);
        }
        if !status.is_success() {
            return Err(CatalogUnavailable(anyhow::anyhow!("GET {url} answered {status}")));
        }
        let product: ProductBody = response
            .json()
            .await
            .with_context(|| format!("GET {url} answered a body without a valid price"))
            .map_err(CatalogUnavailable)?;
        Ok(CatalogEntry::Found { price: product.price })
    }
}
