//! Start-up: `build` prepares the database (created if missing, migrated), loads
//! or generates the signing key and binds (port 0 works; read the port back with `port()`);
//! `run_until_stopped` serves until the shutdown future resolves, then drains and closes the pool
//! (see `common::runtime`). The binary and the test harness both start the service through these
//! two calls.
//!
//! It publishes and consumes no messages; its one background task, with a key directory, reads
//! the directory again every `JWT_KEY_RELOAD_SECONDS` (see `crate::keys`).

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use common::auth::TokenVerifier;
use common::runtime::Service;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{Config, SigningKeySource};
use crate::openapi::ApiDocument;
use crate::passwords::PasswordHasher;
use crate::state::AppState;
use crate::tokens::load_issuer;

pub const SERVICE_NAME: &str = "user-service";

/// The user service, ready to run (see [`common::runtime`]): read its `port()`, then
/// `run_until_stopped(shutdown)`.
pub type Application = Service;

/// Prepares the service's store and puts the service together (binds; port 0 works).
pub async fn build(config: Config) -> anyhow::Result<Application> {
    common::postgres::ensure_database(&config.database_url).await?;
    let pool = common::postgres::pool(&config.database_url, config.database_max_connections).await?;
    common::postgres::check_role(&pool, config.profile).await?;
    sqlx::migrate!().run(&pool).await.context("failed to run the user service's migrations")?;

    let tokens = Arc::new(load_issuer(&config.signing_key, config.access_token_ttl, config.refresh_token_ttl).await?);
    let verifier = Arc::new(TokenVerifier::from_jwk_set(&tokens.key_set()).context("failed to build the token verifier")?);
    tracing::info!(key_id = tokens.signing_key()?.key_id, keys = ?tokens.key_ids(), "token signing keys loaded");
    let passwords = PasswordHasher::new(config.password_hashing).await?;
    if !config.staff_emails.is_empty() {
        tracing::warn!(
            accounts = config.staff_emails.len(),
            "STAFF_EMAILS makes staff of whoever registers one of its addresses first (emails are not verified): \
             a development convenience; in production grant staff with `user-service staff grant EMAIL`"
        );
    }

    let mut service = Service::bind(SERVICE_NAME, &config.http).await?;
    if let SigningKeySource::Directory(directory) = &config.signing_key {
        let (directory, every, tokens, verifier) =
            (directory.clone(), config.key_reload, Arc::clone(&tokens), Arc::clone(&verifier));
        service.spawn(move |cancel| crate::keys::follow_directory(directory, every, tokens, verifier, cancel));
    }
    // Closed once the server has stopped, so a test can drop its database at once.
    service.postgres(pool.clone());
    let login_throttle = Arc::new(crate::throttle::LoginThrottle::new(pool.clone()));
    let state = AppState {
        pool,
        tokens,
        verifier,
        passwords: Arc::new(passwords),
        login_throttle,
        staff_emails: config.staff_emails.clone().into(),
    };
    service.route(router(state, service.readiness(), service.metrics()));
    Ok(service)
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
        api.with_state(state).merge(common::health::router(SERVICE_NAME, readiness)).merge(common::openapi::router(document)),
        metrics,
    )
}
