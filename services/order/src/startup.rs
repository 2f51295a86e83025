//! Start-up: `build` binds (port 0 works; read the port back with `port()`),
//! `run_until_stopped` serves until the shutdown future resolves. The binary and the test
//! harness both start the service through these two calls.
//!
//! Only MongoDB must be reachable at start-up (the indexes are created then). RabbitMQ and the
//! user service may be down: the consumers and the outbox relay retry in the background, and the
//! token verifier fetches its keys on first use.

use std::sync::Arc;

use axum::Router;
use common::auth::TokenVerifier;
use common::messaging::OutboxRelay;
use common::openapi::BearerSecurity;
use common::runtime::Service;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
use crate::catalog::CatalogClient;
use crate::consumers::{self, ConsumerContext};
use crate::metrics::OrderMetrics;
use crate::orders::store::OrderStore;
use crate::orders::{self, OrdersState};

/// The name the service gives itself in logs, health answers and broker connections.
pub const SERVICE_NAME: &str = "order-service";

#[derive(OpenApi)]
#[openapi(info(title = "Order service", description = "Orders and their status"), modifiers(&BearerSecurity))]
struct ApiDocumentation;

/// The order service, ready to run (see [`common::runtime`]): read its `port()`, then
/// `run_until_stopped(shutdown)`.
pub type Application = Service;

/// Prepares the service's store and puts the service together (binds; port 0 works).
pub async fn build(config: Config) -> anyhow::Result<Application> {
    let mongodb = common::mongo::connect(&config.mongodb_url, SERVICE_NAME, config.mongodb_max_pool_size).await?;
    let store = OrderStore::new(&mongodb.client.database(&config.mongodb_database));
    store.create_indexes().await?;

    let mut service = Service::bind(SERVICE_NAME, &config.http).await?;
    service.mongodb(mongodb);
    // Every event the order service sends goes through the outbox: the relay is the only
    // publisher.
    let publisher = service.publisher(&config.rabbitmq_url, common::messaging::topology::Service::Order);
    let outbox = store.outbox();
    service.relay(OutboxRelay::new(outbox.clone(), publisher, outbox.wake()));

    let metrics = OrderMetrics::register(service.metrics());
    let context = ConsumerContext { store: store.clone(), metrics: metrics.clone() };
    consumers::register(&mut service, &config, &context);

    let state = OrdersState {
        store,
        catalog: CatalogClient::new(&config.product_service_url, config.product_lookup_timeout)?,
        verifier: Arc::new(TokenVerifier::from_jwks_url_with(&config.jwks_url, config.key_fetching)),
        staff_policy: config.staff_policy,
        metrics,
    };
    service.route(router(state, service.readiness(), service.metrics()));
    Ok(service)
}

/// Every route of the service, with health, the OpenAPI document and Swagger UI.
pub fn router(state: OrdersState, readiness: common::health::Readiness, metrics: &common::metrics::Metrics) -> Router {
    let (api, specification) =
        OpenApiRouter::with_openapi(ApiDocumentation::openapi()).merge(orders::router(state)).split_for_parts();
    common::http::finish(
        api.merge(common::health::router(SERVICE_NAME, readiness)).merge(common::openapi::router(specification)),
        metrics,
    )
}
