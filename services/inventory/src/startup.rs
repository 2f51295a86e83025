//! Start-up: `Application::build` creates the database if needed, runs the migrations and binds
//! (port 0 works; read the port back with `port()`); `run_until_stopped` serves HTTP and runs the
//! four consumers until the shutdown future resolves, then stops them (each finishes the message
//! in hand), waits for them and closes the broker connection and the pool. The binary and the
//! test harness both start the service through these two calls.
//!
//! Only PostgreSQL must be reachable at start-up: the consumers connect to RabbitMQ in the
//! background and keep retrying, and the user service's keys are fetched on first use.

use common::openapi::BearerSecurity;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use common::auth::TokenVerifier;
use common::messaging::events::{InventoryRelease, OrderCreated, ProductCreated, ProductDeleted};
use common::messaging::{ConsumerSettings, Publisher, consume, consume_with_attempts};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
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

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    /// The database, shared by handlers and consumers; closed on shutdown.
    pool: PgPool,
    rabbitmq_url: String,
    /// How long an order waits for a product's stock record (see `Config`).
    product_stock_record_wait: std::time::Duration,
    /// Announces reservation outcomes; its connection is closed on shutdown.
    publisher: Arc<Publisher>,
    /// Where the consumers report whether they consume (`/ready`).
    readiness: common::health::Readiness,
    /// `/metrics`: the consumers and the HTTP routes record into it.
    metrics: common::metrics::Metrics,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        common::postgres::ensure_database(&config.database_url).await?;
        let pool = common::postgres::pool(&config.database_url, config.database_max_connections).await?;
        crate::MIGRATOR.run(&pool).await.context("failed to run the inventory migrations")?;

        let state = AppState {
            pool: pool.clone(),
            token_verifier: Arc::new(TokenVerifier::from_jwks_url(config.jwks_url.clone())),
            staff_policy: config.staff_policy,
        };
        let publisher = Arc::new(Publisher::new(config.rabbitmq_url.clone(), SERVICE_NAME));
        let readiness = common::health::Readiness::default();
        readiness.postgres(pool.clone());
        readiness.broker(Arc::clone(&publisher));
        let metrics = common::metrics::Metrics::new();
        let router = router(state, readiness.clone(), &metrics);
        let listener = common::http::bind(&config.http).await?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            port,
            listener,
            router,
            pool,
            rabbitmq_url: config.rabbitmq_url,
            product_stock_record_wait: config.product_stock_record_wait,
            publisher,
            readiness,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let background = CancellationToken::new();
        let mut consumers = start_consumers(
            &self.pool,
            &self.publisher,
            &self.rabbitmq_url,
            self.product_stock_record_wait,
            &self.readiness,
            &self.metrics,
            &background,
        );

        let served = common::http::serve(self.listener, self.router, shutdown).await;

        background.cancel();
        while let Some(finished) = consumers.join_next().await {
            if let Err(error) = finished {
                tracing::error!(%error, "a consumer task failed");
            }
        }
        self.publisher.close().await;
        self.pool.close().await;
        served
    }
}

/// Starts one supervised consumer per queue inventory listens to.
fn start_consumers(
    pool: &PgPool,
    publisher: &Arc<Publisher>,
    rabbitmq_url: &str,
    product_stock_record_wait: std::time::Duration,
    readiness: &common::health::Readiness,
    metrics: &common::metrics::Metrics,
    cancel: &CancellationToken,
) -> JoinSet<()> {
    let mut consumers = JoinSet::new();
    let settings = |queue: &str| ConsumerSettings {
        readiness: Some(readiness.clone()),
        metrics: Some(metrics.clone()),
        ..ConsumerSettings::new(format!("{SERVICE_NAME}.{queue}"))
    };
    let product_event_settings = |queue: &str| ConsumerSettings { prefetch: PRODUCT_EVENT_PREFETCH, ..settings(queue) };

    let handler_pool = pool.clone();
    consumers.spawn(
        consume::<ProductCreated, _, _>(
            rabbitmq_url.to_owned(),
            product_event_settings("product_created"),
            move |event| {
                let pool = handler_pool.clone();
                async move { crate::inventory::on_product_created(&pool, event).await }
            },
            cancel.clone(),
        )
        .in_current_span(),
    );

    let handler_pool = pool.clone();
    consumers.spawn(
        consume::<ProductDeleted, _, _>(
            rabbitmq_url.to_owned(),
            product_event_settings("product_deleted"),
            move |event| {
                let pool = handler_pool.clone();
                async move { crate::inventory::on_product_deleted(&pool, event).await }
            },
            cancel.clone(),
        )
        .in_current_span(),
    );

    // Orders use the default prefetch: reservations for different orders run concurrently, and
    // their row locks keep them correct. An order whose products have no stock record yet is
    // re-checked every few seconds from the delay queue (holding no prefetch slot meanwhile) for
    // up to `product_stock_record_wait`, then fails.
    let order_settings = ConsumerSettings {
        not_yet_recheck_interval: ORDER_RECHECK_INTERVAL,
        not_yet_give_up_after: product_stock_record_wait,
        ..settings("order_created")
    };
    let handler_pool = pool.clone();
    let handler_publisher = Arc::clone(publisher);
    let reservation_metrics = crate::reservations::ReservationMetrics::register(metrics);
    let order_metrics = reservation_metrics.clone();
    consumers.spawn(
        consume_with_attempts::<OrderCreated, _, _>(
            rabbitmq_url.to_owned(),
            order_settings,
            move |order, attempt| {
                let pool = handler_pool.clone();
                let publisher = Arc::clone(&handler_publisher);
                let metrics = order_metrics.clone();
                async move { crate::reservations::on_order_created(&pool, &publisher, &metrics, order, attempt).await }
            },
            cancel.clone(),
        )
        .in_current_span(),
    );

    let handler_pool = pool.clone();
    let release_metrics = reservation_metrics.clone();
    consumers.spawn(
        consume::<InventoryRelease, _, _>(
            rabbitmq_url.to_owned(),
            settings("inventory_release"),
            move |release| {
                let pool = handler_pool.clone();
                let metrics = release_metrics.clone();
                async move { crate::reservations::on_inventory_release(&pool, &metrics, release).await }
            },
            cancel.clone(),
        )
        .in_current_span(),
    );
    consumers
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
