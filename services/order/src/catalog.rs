//! The product service as the order service sees it: "do these products exist, and what do they
//! cost?", asked over HTTP with one `GET /api/v1/products/?ids=...` per order (public, no token
//! needed).
//!
//! It deliberately caches nothing: a price is checked against the catalog as it is when the
//! order is placed.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use common::money::Cents;
use serde::Deserialize;
use tracing::Instrument as _;

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
    #[serde(rename = "_id")]
    id: String,
    price: Cents,
}

/// The most ids the product service takes in one `ids` filter (its page size).
const IDS_PER_REQUEST: usize = 100;

impl CatalogClient {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).build().context("failed to build the product service client")?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), http })
    }

    /// Looks every id up with one request per hundred distinct ids (one for any order, whose
    /// lines are at most a hundred): `GET /api/v1/products/?ids=...`, which answers the products
    /// that exist. An id that is not a well-formed product id is missing without asking.
    ///
    /// The look-up is a `product_lookup` span of the current trace, whose context goes to the
    /// product service with the request id (see `common::telemetry`).
    pub async fn look_up_all(&self, product_ids: &[String]) -> Result<HashMap<String, CatalogEntry>, CatalogUnavailable> {
        let span = tracing::info_span!(
            "product_lookup",
            products = product_ids.len(),
            trace_id = tracing::field::Empty,
            otel.name = "GET /api/v1/products/",
            otel.kind = "client",
        );
        common::telemetry::continue_trace(&span, common::telemetry::current_traceparent().as_deref());
        let headers = context_headers(common::telemetry::traceparent_of(&span).as_deref());
        self.look_up(product_ids, headers).instrument(span).await
    }

    async fn look_up(
        &self,
        product_ids: &[String],
        headers: reqwest::header::HeaderMap,
    ) -> Result<HashMap<String, CatalogEntry>, CatalogUnavailable> {
        let mut entries: HashMap<String, CatalogEntry> =
            product_ids.iter().map(|product_id| (product_id.clone(), CatalogEntry::Missing)).collect();
        let mut asked: Vec<&str> = product_ids.iter().map(String::as_str).filter(|id| is_product_id(id)).collect();
        asked.sort_unstable();
        asked.dedup();
        for chunk in asked.chunks(IDS_PER_REQUEST) {
            // Hexadecimal ids and commas: nothing in the query needs escaping.
            let url = format!("{}/api/v1/products/?ids={}&limit={}", self.base_url, chunk.join(","), chunk.len());
            let response = self
                .http
                .get(&url)
                .headers(headers.clone())
                .send()
                .await
                .with_context(|| format!("GET {url} failed"))
                .map_err(CatalogUnavailable)?;
            let status = response.status();
            if !status.is_success() {
                return Err(CatalogUnavailable(anyhow::anyhow!("GET {url} answered {status}")));
            }
            let products: Vec<ProductBody> = response
                .json()
                .await
                .with_context(|| format!("GET {url} answered something else than a list of products with prices"))
                .map_err(CatalogUnavailable)?;
            for product in products {
                if let Some(entry) = entries.get_mut(&product.id) {
                    *entry = CatalogEntry::Found { price: product.price };
                }
            }
        }
        Ok(entries)
    }
}

/// 24 lowercase hexadecimal digits: the form product ids are stored and answered in.
fn is_product_id(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The current request's id (see `common::request_id`) and the look-up's trace context,
/// passed on to the product service.
fn context_headers(traceparent: Option<&str>) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in [
        (common::request_id::HEADER, common::request_id::current()),
        (common::telemetry::TRACEPARENT, traceparent.map(str::to_owned)),
    ] {
        if let Some(value) = value.and_then(|value| reqwest::header::HeaderValue::from_str(&value).ok()) {
            headers.insert(name, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::get;

    use super::*;

    /// What the fake product service was asked: each request's query and `X-Request-Id`.
    type Asked = Arc<Mutex<Vec<(String, Option<String>)>>>;

    /// A product service that records what it is asked and answers with `answer`: (status, body).
    async fn product_service(answer: (StatusCode, &'static str)) -> (CatalogClient, Asked) {
        let asked: Asked = Arc::default();
        let recorded = asked.clone();
        let app = Router::new().route(
            "/api/v1/products/",
            get(move |uri: Uri, headers: HeaderMap| {
                let recorded = recorded.clone();
                async move {
                    let request_id =
                        headers.get(common::request_id::HEADER).and_then(|value| value.to_str().ok()).map(str::to_owned);
                    recorded.lock().unwrap().push((uri.query().unwrap_or_default().to_owned(), request_id));
                    (answer.0, [("content-type", "application/json")], answer.1)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (CatalogClient::new(&format!("http://{address}"), Duration::from_secs(5)).unwrap(), asked)
    }

    #[tokio::test]
    async fn an_id_that_is_not_a_product_id_is_missing_without_asking_the_product_service() {
        // The real product service answers 422 for a malformed id in `ids`: asked, the lookup
        // would fail as an outage (503) instead of naming the id as missing (400).
        let (catalog, asked) = product_service((StatusCode::UNPROCESSABLE_ENTITY, r#"{"detail": "invalid id"}"#)).await;
        let ids = ["abc123".to_owned(), "not-a-product-id-but-24!".to_owned(), "65F0A0000000000000000001".to_owned()];
        assert_eq!(ids[1].len(), 24);
        let entries = catalog.look_up_all(&ids).await.expect("nothing asked, nothing failed");
        for id in &ids {
            assert_eq!(entries[id], CatalogEntry::Missing, "{id}");
        }
        assert!(asked.lock().unwrap().is_empty(), "asked {:?}", asked.lock().unwrap());
    }

    #[tokio::test]
    async fn the_lookup_carries_the_request_s_id_and_reads_the_prices_of_what_exists() {
        let (catalog, asked) =
            product_service((StatusCode::OK, r#"[{"_id": "65f0a0000000000000000001", "price": 19.99}]"#)).await;
        let ids = ["65f0a0000000000000000001".to_owned(), "65f0a0000000000000000002".to_owned()];
        let entries = common::request_id::scope("order-request-7".to_owned(), catalog.look_up_all(&ids)).await.unwrap();
        assert_eq!(entries[&ids[0]], CatalogEntry::Found { price: Cents::from_decimal(19.99).unwrap() });
        assert_eq!(entries[&ids[1]], CatalogEntry::Missing);
        let asked = asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            [("ids=65f0a0000000000000000001,65f0a0000000000000000002&limit=2".to_owned(), Some("order-request-7".to_owned()))]
        );
    }
}
