//! `GET /health` and `GET /ready` on every service.
//!
//! - `/health` is liveness: `{"status": "healthy", "service": "<name>"}` whenever the process
//!   serves HTTP. It deliberately probes nothing, so that an orchestrator does not restart a
//!   healthy process during a database outage that a restart cannot fix.
//! - `/ready` is readiness: every check the service registered (its store, the broker, each of
//!   its consumers) runs at once, each within [`CHECK_TIMEOUT`]. All pass: 200 with
//!   `{"status": "ready", "service": ..., "checks": {"database": "ok", ...}}`. Any fails: 503 with
//!   `"status": "not ready"`, a `detail` naming every failing check and why, and the same
//!   `checks` map. A load balancer or compose healthcheck sends traffic only to a ready process.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde::Serialize;

/// How long one check may take before it counts as failed: a dependency that hangs is not ready.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub service: &'static str,
}

type Check = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// The checks behind `/ready`. Cheap to clone; checks registered on any clone count for all.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<(String, Check)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let checks = self.checks.lock().expect("the readiness checks are never poisoned");
        formatter.debug_list().entries(checks.iter().map(|(name, _)| name)).finish()
    }
}

/// What `/ready` answers.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReadinessReport {
    pub status: &'static str,
    pub service: &'static str,
    /// The failing checks and why, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every check: "ok" or what is wrong.
    pub checks: BTreeMap<String, String>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.detail.is_none()
    }
}

impl Readiness {
    /// Registers a check named `name` ("database", "broker"): ready when it returns `Ok`.
    pub fn check<F, Fut>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        self.checks.lock().expect("the readiness checks are never poisoned").push((name.into(), check));
    }

    /// Registers the consumer of `queue` ("consumer order_created"), ready while it consumes;
    /// the consumer reports through the returned status.
    pub fn consumer(&self, queue: &str) -> ConsumerStatus {
        let status = ConsumerStatus::default();
        let watched = status.clone();
        self.check(format!("consumer {queue}"), move || {
            let consuming = watched.is_consuming();
            async move {
                if consuming { Ok(()) } else { Err(anyhow::anyhow!("not consuming: no working connection to the broker")) }
            }
        });
        status
    }

    /// Registers "database": the PostgreSQL pool answers `SELECT 1`.
    #[cfg(feature = "postgres")]
    pub fn postgres(&self, pool: sqlx::PgPool) {
        self.check("database", move || {
            let pool = pool.clone();
            async move { sqlx::query("SELECT 1").execute(&pool).await.map(drop).map_err(anyhow::Error::from) }
        });
    }

    /// Registers "database": the MongoDB server answers `ping`.
    #[cfg(feature = "mongodb")]
    pub fn mongodb(&self, client: mongodb::Client) {
        self.check("database", move || {
            let client = client.clone();
            async move { client.database("admin").run_command(bson::doc! { "ping": 1 }).await.map(drop).map_err(anyhow::Error::from) }
        });
    }

    /// Runs every check at once, each within [`CHECK_TIMEOUT`].
    pub async fn report(&self, service: &'static str) -> ReadinessReport {
        let checks: Vec<(String, Check)> = self.checks.lock().expect("the readiness checks are never poisoned").clone();
        let outcomes = futures::future::join_all(checks.into_iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(format!("{error:#}")),
                Err(_elapsed) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
            };
            (name, outcome)
        }))
        .await;
        let failures: Vec<String> =
            outcomes.iter().filter_map(|(name, outcome)| outcome.as_ref().err().map(|why| format!("{name}: {why}"))).collect();
        let checks =
            outcomes.into_iter().map(|(name, outcome)| (name, outcome.err().unwrap_or_else(|| "ok".to_owned()))).collect();
        if failures.is_empty() {
            ReadinessReport { status: "ready", service, detail: None, checks }
        } else {
            ReadinessReport { status: "not ready", service, detail: Some(failures.join("; ")), checks }
        }
    }
}

/// Whether one consumer is consuming: set once its subscription is in place, cleared when its
/// connection is lost, until it is back.
#[derive(Debug, Clone, Default)]
pub struct ConsumerStatus(Arc<AtomicBool>);

impl ConsumerStatus {
    pub fn set_consuming(&self, consuming: bool) {
        self.0.store(consuming, Ordering::Release);
    }

    pub fn is_consuming(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A router answering `GET /health` (liveness) and `GET /ready` (readiness, from `readiness`).
pub fn router<S: Clone + Send + Sync + 'static>(service: &'static str, readiness: Readiness) -> Router<S> {
    Router::new().route("/health", get(move || async move { axum::Json(Health { status: "healthy", service }) })).route(
        "/ready",
        get(move || {
            let readiness = readiness.clone();
            async move { ready(readiness.report(service).await) }
        }),
    )
}

fn ready(report: ReadinessReport) -> Response {
    let status = if report.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_when_every_check_passes() {
        let readiness = Readiness::default();
        readiness.check("database", || async { Ok(()) });
        let consumer = readiness.consumer("order_created");
        consumer.set_consuming(true);
        let report = readiness.report("order").await;
        assert!(report.is_ready(), "{report:?}");
        assert_eq!(report.checks["database"], "ok");
        assert_eq!(report.checks["consumer order_created"], "ok");
    }

    #[tokio::test]
    async fn not_ready_names_every_failing_check_and_why() {
        let readiness = Readiness::default();
        readiness.check("database", || async { Err(anyhow::anyhow!("connection refused")) });
        readiness.check("broker", || async { Ok(()) });
        let consumer = readiness.consumer("order_created");
        let report = readiness.report("order").await;
        assert_eq!(report.status, "not ready");
        assert_eq!(
            report.detail.as_deref(),
            Some("database: connection refused; consumer order_created: not consuming: no working connection to the broker")
        );
        assert_eq!(report.checks["broker"], "ok");
        consumer.set_consuming(true);
        assert_eq!(readiness.report("order").await.detail.as_deref(), Some("database: connection refused"));
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_after_the_timeout() {
        let readiness = Readiness::default();
        readiness.check("broker", std::future::pending);
        let report = readiness.report("order").await;
        assert_eq!(report.detail.as_deref(), Some("broker: no answer within 2 s"));
    }
}
