//! Start-up: `build` connects to MongoDB, creates the indexes and binds (port 0
//! works; read the port back with `port()`); `run_until_stopped` serves HTTP and runs the outbox
//! relay until the shutdown future resolves, then drains (see `common::runtime`). The binary and
//! the test harness both start the service through these two calls.
//!
//! Only MongoDB must be reachable at start-up: RabbitMQ is reached by the relay, which retries in
//! the background, and the user service's keys are fetched on the first authenticated request.

use std::sync::Arc;

use axum::Router;
use common::auth::TokenVerifier;
use common::messaging::OutboxRelay;
use common::openapi::BearerSecurity;
use common::runtime::Service;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
use crate::products::store::ProductStore;
use crate::state::AppState;

pub const SERVICE_NAME: &str = "product-service";

#[derive(OpenApi)]
#[openapi(
    info(title = "Product service", description = "The shop's catalog."),
    modifiers(&BearerSecurity),
)]
struct ApiDocumentation;

/// The product service, ready to run (see [`common::runtime`]): read its `port()`, then
/// `run_until_stopped(shutdown)`.
pub type Application = Service;

/// Prepares the service's store and puts the service together (binds; port 0 works).
pub async fn build(config: Config) -> anyhow::Result<Application> {
    let mongodb = common::mongo::connect(&config.mongodb_url, SERVICE_NAME, config.mongodb_max_pool_size).await?;
    let products = ProductStore::new(&mongodb.client.database(&config.mongodb_database));
    products.create_indexes().await?;

    let mut service = Service::bind(SERVICE_NAME, &config.http).await?;
    service.mongodb(mongodb);
    // Publishes the events stored in product documents.
    let publisher = service.publisher(&config.rabbitmq_url, common::messaging::topology::Service::Product);
    service.relay(OutboxRelay::new(products.outbox(), publisher, products.outbox().wake()));

    let state = AppState {
        products,
        token_verifier: Arc::new(TokenVerifier::from_jwks_url_with(config.jwks_url.clone(), config.key_fetching)),
        staff_policy: config.staff_policy,
    };
    service.route(router(state, service.readiness(), service.metrics()));
    Ok(service)
}

/// The whole HTTP surface: health, documentation and the catalog. Pure, so tests can call it
/// without a socket.
pub fn router(state: AppState, readiness: common::health::Readiness, metrics: &common::metrics::Metrics) -> Router {
    let (api, openapi) =
        OpenApiRouter::with_openapi(ApiDocumentation::openapi()).merge(crate::products::router()).split_for_parts();
    let api = api.with_state(state);
    common::http::finish(
        Router::new().merge(common::health::router(SERVICE_NAME, readiness)).merge(common::openapi::router(openapi)).merge(api),
        metrics,
    )
}
