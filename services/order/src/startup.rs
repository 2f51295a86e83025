//! Start-up: `Application::build` binds (port 0 works; read the port back with `port()`),
//! `run_until_stopped` serves until the shutdown future resolves. The binary and the test
//! harness both start the service through these two calls.
//!
//! Only MongoDB must be reachable at start-up (the indexes are created then). RabbitMQ and the
//! user service may be down: the consumers and the outbox relay retry in the background, and the
//! token verifier fetches its keys on first use.

use common::openapi::BearerSecurity;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use common::auth::TokenVerifier;
use common::messaging::{ConsumerSettings, OutboxRelay, Publisher};
use mongodb::options::ClientOptions;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
use crate::catalog::CatalogClient;
use crate::consumers::{self, ConsumerContext};
use crate::orders::store::OrderStore;
use crate::orders::{self, OrdersState};

/// How long the consumers and the relay get to finish what they hold once asked to stop.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The name the service gives itself in logs, health answers and broker connections.
pub const SERVICE_NAME: &str = "order-service";

#[derive(OpenApi)]
#[openapi(info(title = "Order service", description = "Orders and their status"), modifiers(&BearerSecurity))]
struct ApiDocumentation;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    config: Config,
    mongodb: mongodb::Client,
    store: OrderStore,
    /// The outbox relay's broker connection: every event the order service sends goes through
    /// the outbox, so this is its only publisher. Closed on shutdown.
    publisher: Arc<Publisher>,
    /// Handed to the HTTP handlers and the consumers: they notify it after storing an event.
    /// Where the consumers report whether they consume (`/ready`).
    readiness: common::health::Readiness,
    /// `/metrics`: the relay, the consumers and the HTTP routes record into it.
    metrics: common::metrics::Metrics,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut mongodb_options = ClientOptions::parse(&config.mongodb_url).await.context("failed to parse MONGODB_URL")?;
        mongodb_options.app_name = Some(SERVICE_NAME.to_owned());
        mongodb_options.max_pool_size = Some(config.mongodb_max_pool_size);
        mongodb_options.server_selection_timeout = Some(common::config::MONGODB_SERVER_SELECTION_TIMEOUT);
        let mongodb = mongodb::Client::with_options(mongodb_options).context("failed to create the MongoDB client")?;
        let store = OrderStore::new(&mongodb.database(&config.mongodb_database));
        store.create_indexes().await?;

        let publisher = Arc::new(Publisher::new(&config.rabbitmq_url, format!("{SERVICE_NAME} publisher")));
        let state = OrdersState {
            store: store.clone(),
            catalog: CatalogClient::new(&config.product_service_url, config.product_lookup_timeout)?,
            verifier: Arc::new(TokenVerifier::from_jwks_url(&config.jwks_url)),
            staff_policy: config.staff_policy,
        };
        let readiness = common::health::Readiness::default();
        readiness.mongodb(mongodb.clone());
        readiness.broker(Arc::clone(&publisher));
        let metrics = common::metrics::Metrics::new();
        let router = router(state, readiness.clone(), &metrics);

        let listener = common::http::bind(&config.http).await?;
        let port = listener.local_addr()?.port();
        Ok(Self { port, listener, router, config, mongodb, store, publisher, readiness, metrics })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let mut background = JoinSet::new();
        let outbox = self.store.outbox();
        let relay =
            OutboxRelay::new(outbox.clone(), Arc::clone(&self.publisher), outbox.wake()).with_metrics(self.metrics.clone());
        // Background tasks run in the span the service was started in, so their logs keep its context.
        background.spawn(relay.run(cancel.clone()).in_current_span());
        let mut settings = ConsumerSettings::new(SERVICE_NAME);
        settings.prefetch = self.config.consumer_prefetch;
        settings.readiness = Some(self.readiness.clone());
        settings.metrics = Some(self.metrics.clone());
        let accepted_to_paid = self.metrics.histogram(
            "order_accepted_to_paid_seconds",
            "Time from an order's acceptance to its payment",
            &consumers::ACCEPTED_TO_PAID_BUCKETS,
        );
        let context = ConsumerContext { store: self.store.clone(), accepted_to_paid };
        consumers::spawn_all(&self.config.rabbitmq_url, &settings, context, &cancel, &mut background);

        let served = common::http::serve(self.listener, self.router, shutdown).await;

        // HTTP has stopped: stop the consumers and the relay, let them finish what they hold,
        // then close the broker and database connections.
        cancel.cancel();
        let drained = tokio::time::timeout(BACKGROUND_STOP_TIMEOUT, async {
            while let Some(finished) = background.join_next().await {
                if let Err(error) = finished {
                    tracing::error!(%error, "a background task of the order service failed");
                }
            }
        })
        .await;
        if drained.is_err() {
            // A task stuck in a network call (a broker that stopped answering without closing
            // the connection) must not keep the process from stopping. Whatever it held is
            // unacknowledged or still in an outbox, so it is redelivered or republished later.
            tracing::warn!(timeout = ?BACKGROUND_STOP_TIMEOUT, "background tasks did not stop in time; aborting them");
            background.abort_all();
            while background.join_next().await.is_some() {}
        }
        self.publisher.close().await;
        self.mongodb.shutdown().await;
        served
    }
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
