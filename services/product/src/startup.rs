//! Start-up: `Application::build` connects to MongoDB, creates the indexes and binds (port 0
//! works; read the port back with `port()`); `run_until_stopped` serves HTTP and runs the outbox
//! relay until the shutdown future resolves, then stops both and closes the connections. The
//! binary and the test harness both start the service through these two calls.
//!
//! Only MongoDB must be reachable at start-up: RabbitMQ is reached by the relay, which retries in
//! the background, and the user service's keys are fetched on the first authenticated request.

use common::openapi::BearerSecurity;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use common::auth::TokenVerifier;
use common::messaging::document_outbox::DocumentOutboxStore;
use common::messaging::{OutboxRelay, Publisher};
use mongodb::options::ClientOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
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

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    /// Kept to close its connections on shutdown.
    mongodb_client: mongodb::Client,
    /// Publishes the events stored in product documents; started by `run_until_stopped`.
    outbox_relay: OutboxRelay<DocumentOutboxStore>,
    /// The relay's broker connection, closed on shutdown.
    publisher: Arc<Publisher>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut client_options = ClientOptions::parse(&config.mongodb_url)
            .await
            .with_context(|| format!("invalid MongoDB URL {}", config.mongodb_url))?;
        client_options.app_name = Some(SERVICE_NAME.to_owned());
        client_options.server_selection_timeout = Some(common::config::MONGODB_SERVER_SELECTION_TIMEOUT);
        let mongodb_client = mongodb::Client::with_options(client_options).context("failed to create the MongoDB client")?;
        let database = mongodb_client.database(&config.mongodb_database);

        let products = ProductStore::new(&database);
        products.create_indexes().await?;

        let publisher = Arc::new(Publisher::new(config.rabbitmq_url.clone(), SERVICE_NAME));
        let metrics = common::metrics::Metrics::new();
        let outbox_relay =
            OutboxRelay::new(products.outbox(), Arc::clone(&publisher), products.outbox().wake()).with_metrics(metrics.clone());

        let state = AppState {
            products,
            token_verifier: Arc::new(TokenVerifier::from_jwks_url(config.jwks_url.clone())),
            staff_policy: config.staff_policy,
        };
        let readiness = common::health::Readiness::default();
        readiness.mongodb(mongodb_client.clone());
        readiness.broker(Arc::clone(&publisher));
        let router = router(state, readiness, &metrics);

        let listener = common::http::bind(&config.http).await?;
        let port = listener.local_addr()?.port();
        Ok(Self { port, listener, router, mongodb_client, outbox_relay, publisher })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let background = CancellationToken::new();
        // The relay runs in the span the service was started in, so its logs keep that context.
        let relay = tokio::spawn(self.outbox_relay.run(background.clone()).in_current_span());

        let served = common::http::serve(self.listener, self.router, shutdown).await;

        background.cancel();
        if let Err(error) = relay.await {
            tracing::error!(%error, "the outbox relay task failed");
        }
        self.publisher.close().await;
        // Immediate: every request has finished and the relay has stopped, so nothing still
        // needs the connections.
        self.mongodb_client.shutdown().immediate(true).await;
        served
    }
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
