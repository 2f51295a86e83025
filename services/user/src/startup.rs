//! Start-up: `Application::build` prepares the database (created if missing, migrated), loads
//! or generates the signing key and binds (port 0 works; read the port back with `port()`);
//! `run_until_stopped` serves until the shutdown future resolves, then closes the pool. The
//! binary and the test harness both start the service through these two calls.
//!
//! The service has no background tasks: it publishes and consumes no messages.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use common::auth::TokenVerifier;
use sqlx::PgPool;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::Config;
use crate::openapi::ApiDocument;
use crate::passwords::PasswordHasher;
use crate::state::AppState;
use crate::tokens::{TokenIssuer, load_signing_key};

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    /// Kept to close it once the server has stopped, so a test can drop its database at once.
    pool: PgPool,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        common::postgres::ensure_database(&config.database_url).await?;
        let pool = common::postgres::pool(&config.database_url, config.database_max_connections).await?;
        sqlx::migrate!().run(&pool).await.context("failed to run the user service's migrations")?;

        let private_key_pem = load_signing_key(&config.signing_key).await?;
        let tokens = TokenIssuer::from_private_key_pem(&private_key_pem, config.access_token_ttl, config.refresh_token_ttl)?;
        let verifier = TokenVerifier::from_jwk_set(tokens.key_set()).context("failed to build the token verifier")?;
        tracing::info!(key_id = tokens.key_id(), "token signing key loaded");
        let passwords = PasswordHasher::new(config.password_hashing).await?;

        let state = AppState {
            pool: pool.clone(),
            tokens: Arc::new(tokens),
            verifier: Arc::new(verifier),
            passwords: Arc::new(passwords),
            login_throttle: Arc::default(),
            staff_emails: config.staff_emails.clone().into(),
        };
        let listener = common::http::bind(&config.http).await?;
        let port = listener.local_addr().context("failed to read the bound address")?.port();
        let readiness = common::health::Readiness::default();
        readiness.postgres(pool.clone());
        let metrics = common::metrics::Metrics::new();
        Ok(Self { port, listener, router: router(state, readiness, &metrics), pool })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let served = common::http::serve(self.listener, self.router, shutdown).await;
        self.pool.close().await;
        served
    }
}

/// Every route of the service, with its OpenAPI document. Pure: a test can call it without a
/// socket.
pub fn router(state: AppState, readiness: common::health::Readiness, metrics: &common::metrics::Metrics) -> Router {
    let (api, document) = OpenApiRouter::with_openapi(ApiDocument::openapi())
        .merge(crate::auth::router())
        .merge(crate::users::router())
        .merge(crate::addresses::router())
        .split_for_parts();
    common::http::finish(
        api.with_state(state).merge(common::health::router("user-service", readiness)).merge(common::openapi::router(document)),
        metrics,
    )
}
