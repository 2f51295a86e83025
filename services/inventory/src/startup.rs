//! Start-up: `build` creates the database if needed, runs the migrations, binds
//! (port 0 works; read the port back with `port()`) and registers the four consumers;
//! `run_until_stopped` serves HTTP and runs them until the shutdown future resolves, then drains
//! (see `common::runtime`). The binary and the test harness both start the service through these
//! two calls.
//!
//! Only PostgreSQL must be reachable at start-up: the consumers connect to RabbitMQ in the
//! background and keep retrying, and the user service's keys are fetched on first use.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use common::auth::TokenVerifier;
use common::messaging::ConsumerSettings;
use common::messaging::events::{InventoryRelease, OrderCreated, ProductCreated, ProductDeleted};
use common::openapi::BearerSecurity;
use common::runtime::Service;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
use crate::reservations::ReservationMetrics;
use crate::state::AppState;

pub const SERVICE_NAME: &str = "inventory-service";

/// Catalog events are handled one at a time, so stock records are created in the order the
/// products were created (their ids follow the catalog's order) and a burst of events after an
/// outage cannot take every pooled connection. Each one is a single short statement.
const PRODUCT_EVENT_PREFETCH: u16 = 1;

/// How often an order waiting for a product's stock record is looked at again. A `product_created`
/// normally follows within a second, so the first re-check usually succeeds; short enough that
/// the customer barely waits, long enough that a held-up event costs a few checks per minute.
const ORDER_RECHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(OpenApi)]
#[openapi(
    info(title = "Inventory service", description = "Stock per product, its history, and reservations for orders."),
    modifiers(&BearerSecurity),
)]
struct ApiDocumentation;

/// The inventory service, ready to run (see [`common::runtime`]): read its `port()`, then
/// `run_until_stopped(shutdown)`.
pub type Application = Service;

/// Prepares the service's store and puts the service together (binds; port 0 works).
pub async fn build(config: Config) -> anyhow::Result<Application> {
    common::postgres::ensure_database(&config.database_url).await?;
    let pool = common::postgres::pool(&config.database_url, config.database_max_connections).await?;
    common::postgres::check_role(&pool, config.profile).await?;
    crate::MIGRATOR.run(&pool).await.context("failed to run the inventory migrations")?;

    let mut service = Service::bind(SERVICE_NAME, &config.http).await?;
    service.postgres(pool.clone());
    // Announces reservation outcomes.
    let publisher = service.publisher(&config.rabbitmq_url, common::messaging::topology::Service::Inventory);
    register_consumers(&mut service, &config, &pool, &publisher);

    let state = AppState {
        pool,
        token_verifier: Arc::new(TokenVerifier::from_jwks_url_with(config.jwks_url.clone(), config.key_fetching)),
        staff_policy: config.staff_policy,
    };
    service.route(router(state, service.readiness(), service.metrics()));
    Ok(service)
}

/// One supervised consumer per queue inventory listens to.
fn register_consumers(
    service: &mut Service,
    config: &Config,
    pool: &sqlx::PgPool,
    publisher: &Arc<common::messaging::Publisher>,
) {
    let url = &config.rabbitmq_url;
    let product_event_settings =
        |queue: &str| ConsumerSettings { prefetch: PRODUCT_EVENT_PREFETCH, ..service.consumer_settings(queue) };
    let (created, deleted) = (product_event_settings("product_created"), product_event_settings("product_deleted"));

    let handler_pool = pool.clone();
    service.consume::<ProductCreated, _, _>(url, created, move |event, _| {
        let pool = handler_pool.clone();
        async move { crate::inventory::on_product_created(&pool, event).await }
    });
    let handler_pool = pool.clone();
    service.consume::<ProductDeleted, _, _>(url, deleted, move |event, _| {
        let pool = handler_pool.clone();
        async move { crate::inventory::on_product_deleted(&pool, event).await }
    });

    // Orders use the default prefetch: reservations for different orders run concurrently, and
    // their row locks keep them correct. An order whose products have no stock record yet is
    // re-checked every few seconds from the delay queue (holding no prefetch slot meanwhile) for
    // up to `product_stock_record_wait`, then fails.
    let order_settings = ConsumerSettings {
        not_yet_recheck_interval: ORDER_RECHECK_INTERVAL,
        not_yet_give_up_after: config.product_stock_record_wait,
        ..service.consumer_settings("order_created")
    };
    let metrics = ReservationMetrics::register(service.metrics());
    let (handler_pool, handler_publisher, order_metrics) = (pool.clone(), Arc::clone(publisher), metrics.clone());
    service.consume::<OrderCreated, _, _>(url, order_settings, move |order, attempt| {
        let (pool, publisher, metrics) = (handler_pool.clone(), Arc::clone(&handler_publisher), order_metrics.clone());
        async move { crate::reservations::on_order_created(&pool, &publisher, &metrics, order, attempt).await }
    });

    let release_settings = service.consumer_settings("inventory_release");
    let handler_pool = pool.clone();
    service.consume::<InventoryRelease, _, _>(url, release_settings, move |release, _| {
        let (pool, metrics) = (handler_pool.clone(), metrics.clone());
        async move { crate::reservations::on_inventory_release(&pool, &metrics, release).await }
    });
}

/// The whole HTTP surface: health, documentation and the inventory resource. Pure, so tests can
/// call it without a socket.
pub fn router(state: AppState, readiness: common::health::Readiness, metrics: &common::metrics::Metrics) -> Router {
    let (api, openapi) =
        OpenApiRouter::with_openapi(ApiDocumentation::openapi()).merge(crate::inventory::router()).split_for_parts();
    let api = api.with_state(state);
    common::http::finish(
        Router::new().merge(common::health::router(SERVICE_NAME, readiness)).merge(common::openapi::router(openapi)).merge(api),
        metrics,
    )
}
