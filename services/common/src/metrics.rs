//! `GET /metrics` on every service, in the Prometheus text format.
//!
//! Each service instance owns its registry (no process-wide recorder: the tests run many
//! services in one process, and each must report only its own work). What every service reports:
//!
//! - `http_requests_total{method, route, status}` and `http_request_duration_seconds{method,
//!   route}`: every request that matched a route (the route as declared, `/api/v1/orders/{order_id}`,
//!   so ids do not explode the label set);
//! - `messages_total{queue, outcome}` and `message_handling_duration_seconds{queue}`: every delivery
//!   a consumer finished, by what became of it (`handled`, `retried`, `set_aside` to wait,
//!   `dead_lettered`, `handed_back` during an outage or a shutdown);
//! - `outbox_events_pending` and `outbox_oldest_event_age_seconds` (services with an outbox), as the
//!   relay last read them;
//! - `consumer_paused{queue}`: 1 while a consumer waits out an outage of a dependency, else 0;
//! - `ready` (1 or 0) and `ready_check{check}` (each of `/ready`'s checks, 1 passing, 0 failing),
//!   run afresh at each scrape, so that a service that is up but not ready shows as such to
//!   Prometheus, which cannot read `/ready`'s status itself.
//!
//! - `pool_connections{pool, state}` (`in_use`, `idle`), `pool_max_connections{pool}` and, where
//!   the driver tells, `pool_waiting{pool}` (requests waiting for a connection) and
//!   `pool_checkout_failures_total{pool}`: each store's connection pool (`postgres`, `mongodb`),
//!   read at each scrape, so saturation shows as `in_use` at `max` with requests waiting.
//!
//! Services add their own: inventory's reservations and stock-outs, the order service's time from
//! accepted to paid.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds, from a millisecond to ten seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    queue: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: &'static str,
    state: &'static str,
}

/// What a connection pool holds at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections lent out to requests, consumers and relays.
    pub in_use: u64,
    /// Connections open and waiting to be lent.
    pub idle: u64,
    /// The most the pool opens.
    pub max: u64,
    /// Requests waiting for a connection, where the driver tells (MongoDB's does, sqlx's not).
    pub waiting: Option<u64>,
    /// Requests that gave up waiting for a connection or failed to get one, since the start, where
    /// the driver tells.
    pub checkout_failures: Option<u64>,
}

/// Reads a pool's [`PoolUsage`] at a scrape.
pub type PoolProbe = Arc<dyn Fn() -> PoolUsage + Send + Sync>;

/// Labels of one dimension, `reason`, for services' own counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Labels of one dimension, `outcome`, for services' own counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// One service instance's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Mutex<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    messages: Family<MessageLabels, Counter>,
    handling: Family<QueueLabels, Histogram, fn() -> Histogram>,
    outbox_pending: Gauge,
    outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    consumer_paused: Family<QueueLabels, Gauge>,
    ready: Gauge,
    ready_checks: Family<CheckLabels, Gauge>,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
    pool_checkout_failures: Family<PoolLabels, Counter>,
    /// The pools read at each scrape ([`Metrics::watch_pool`]).
    pools: Mutex<Vec<(&'static str, PoolProbe)>>,
    /// The checks behind `/ready`, run at each scrape once [`Metrics::watch_readiness`] gave them.
    readiness: Mutex<Option<(crate::health::Readiness, &'static str)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", http_requests.clone());
        let http_duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_request_duration_seconds", "Time to answer an HTTP request", http_duration.clone());
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register("messages", "Deliveries a consumer finished, by queue and outcome", messages.clone());
        let handling = Family::<QueueLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("message_handling_duration_seconds", "Time to handle a delivery", handling.clone());
        let outbox_pending = Gauge::default();
        registry.register(
            "outbox_events_pending",
            "Events waiting in the outbox at the relay's last read",
            outbox_pending.clone(),
        );
        let outbox_oldest_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "outbox_oldest_event_age_seconds",
            "Age of the oldest event waiting in the outbox at the relay's last read",
            outbox_oldest_age.clone(),
        );
        let consumer_paused = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "consumer_paused",
            "1 while the consumer of a queue is paused, waiting out an outage of a dependency",
            consumer_paused.clone(),
        );
        let pool_connections = Family::<PoolStateLabels, Gauge>::default();
        registry.register(
            "pool_connections",
            "Connections of each store's pool, by state: in_use (lent out) or idle",
            pool_connections.clone(),
        );
        let pool_max = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_max_connections", "The most connections each store's pool opens", pool_max.clone());
        let pool_waiting = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_waiting", "Requests waiting for a connection of the pool", pool_waiting.clone());
        let pool_checkout_failures = Family::<PoolLabels, Counter>::default();
        registry.register(
            "pool_checkout_failures",
            "Requests that gave up waiting for a connection of the pool or failed to get one",
            pool_checkout_failures.clone(),
        );
        Self(Arc::new(Inner {
            registry: Mutex::new(registry),
            http_requests,
            http_duration,
            messages,
            handling,
            outbox_pending,
            outbox_oldest_age,
            consumer_paused,
            pool_connections,
            pool_max,
            pool_waiting,
            pool_checkout_failures,
            pools: Mutex::new(Vec::new()),
            ready: Gauge::default(),
            ready_checks: Family::default(),
            readiness: Mutex::new(None),
        }))
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A service's own counter, by outcome (`reservations_total{outcome="reserved"}`).
    pub fn outcome_counter(&self, name: &str, help: &str) -> Family<OutcomeLabels, Counter> {
        let family = Family::<OutcomeLabels, Counter>::default();
        self.registry().register(name, help, family.clone());
        family
    }

    /// A service's own counter, by reason (`orders_cancelled_total{reason="out_of_stock"}`).
    pub fn reason_counter(&self, name: &str, help: &str) -> Family<ReasonLabels, Counter> {
        let family = Family::<ReasonLabels, Counter>::default();
        self.registry().register(name, help, family.clone());
        family
    }

    /// A service's own counter.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.registry().register(name, help, counter.clone());
        counter
    }

    /// A service's own histogram of durations in seconds, with `buckets`.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let histogram = Histogram::new(buckets.iter().copied());
        self.registry().register(name, help, histogram.clone());
        histogram
    }

    /// A delivery finished with `outcome` after `elapsed`.
    pub fn message(&self, queue: &str, outcome: &'static str, elapsed: Duration) {
        self.0.messages.get_or_create(&MessageLabels { queue: queue.to_owned(), outcome }).inc();
        self.0.handling.get_or_create(&QueueLabels { queue: queue.to_owned() }).observe(elapsed.as_secs_f64());
    }

    /// Shows `messages_total{queue, outcome}` at 0 before its first message, so that an alert on
    /// its increase sees the first one (a series that appears at 1 has no increase).
    pub fn expect_messages(&self, queue: &str, outcome: &'static str) {
        drop(self.0.messages.get_or_create(&MessageLabels { queue: queue.to_owned(), outcome }));
    }

    /// What the outbox relay last read: how many events wait, and how old the oldest is.
    pub fn outbox(&self, pending: usize, oldest: Option<Duration>) {
        self.0.outbox_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.0.outbox_oldest_age.set(oldest.map_or(0.0, |age| age.as_secs_f64()));
    }

    /// Whether the consumer of `queue` is paused for an outage.
    pub fn consumer_paused(&self, queue: &str, paused: bool) {
        self.0.consumer_paused.get_or_create(&QueueLabels { queue: queue.to_owned() }).set(i64::from(paused));
    }

    /// Reports `/ready`'s checks as `ready` and `ready_check{check}`, run at each scrape.
    pub fn watch_readiness(&self, readiness: crate::health::Readiness, service: &'static str) {
        let mut registry = self.registry();
        registry.register(
            "ready",
            "1 when every readiness check passes (what /ready answers 200 for), else 0",
            self.0.ready.clone(),
        );
        registry.register("ready_check", "Each readiness check: 1 passing, 0 failing", self.0.ready_checks.clone());
        drop(registry);
        *self.0.readiness.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((readiness, service));
    }

    /// Runs the readiness checks, if watched, into `ready` and `ready_check`.
    async fn refresh_readiness(&self) {
        let watched = self.0.readiness.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some((readiness, service)) = watched else { return };
        let report = readiness.report(service).await;
        self.0.ready.set(i64::from(report.is_ready()));
        for (check, outcome) in &report.checks {
            self.0.ready_checks.get_or_create(&CheckLabels { check: check.clone() }).set(i64::from(outcome == "ok"));
        }
    }

    /// Reports the connection pool `pool` (`postgres`, `mongodb`) as `probe` reads it at each
    /// scrape.
    pub fn watch_pool(&self, pool: &'static str, probe: PoolProbe) {
        self.0.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((pool, probe));
        self.refresh_pools();
    }

    /// Reads every watched pool into `pool_*`.
    fn refresh_pools(&self) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        for (pool, probe) in self.0.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let pool = *pool;
            let usage = probe();
            self.0.pool_connections.get_or_create(&PoolStateLabels { pool, state: "in_use" }).set(gauge(usage.in_use));
            self.0.pool_connections.get_or_create(&PoolStateLabels { pool, state: "idle" }).set(gauge(usage.idle));
            self.0.pool_max.get_or_create(&PoolLabels { pool }).set(gauge(usage.max));
            if let Some(waiting) = usage.waiting {
                self.0.pool_waiting.get_or_create(&PoolLabels { pool }).set(gauge(waiting));
            }
            if let Some(failures) = usage.checkout_failures {
                let counter = self.0.pool_checkout_failures.get_or_create(&PoolLabels { pool });
                // The probe counts from the start; the counter catches up with it.
                counter.inc_by(failures.saturating_sub(counter.get()));
            }
        }
    }

    /// Every metric in the Prometheus text format, the readiness checks run first. The pools are
    /// read before those checks, so a scrape does not count the connection its own check of the
    /// store borrows.
    pub async fn scrape(&self) -> String {
        self.refresh_pools();
        self.refresh_readiness().await;
        self.render()
    }

    /// Every metric in the Prometheus text format, as last recorded.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry()).expect("writing to a String cannot fail");
        text
    }
}

/// `GET /metrics`.
pub fn router<S: Clone + Send + Sync + 'static>(metrics: Metrics) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.scrape().await) }
        }),
    )
}

/// Route middleware (`Router::route_layer`): counts and times every request that matched a route.
pub async fn track_requests(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await.into_response();
    let status = response.status().as_u16();
    metrics.0.http_requests.get_or_create(&HttpLabels { method: method.clone(), route: route.clone(), status }).inc();
    metrics.0.http_duration.get_or_create(&RouteLabels { method, route }).observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.message("order_created", "handled", Duration::from_millis(3));
        metrics.message("order_created", "dead_lettered", Duration::from_millis(1));
        metrics.outbox(2, Some(Duration::from_millis(1500)));
        metrics.outcome_counter("reservations", "Reservations").get_or_create(&OutcomeLabels { outcome: "reserved" }).inc();
        let text = metrics.render();
        for line in [
            r#"messages_total{queue="order_created",outcome="handled"} 1"#,
            r#"messages_total{queue="order_created",outcome="dead_lettered"} 1"#,
            r#"message_handling_duration_seconds_count{queue="order_created"} 2"#,
            "outbox_events_pending 2",
            "outbox_oldest_event_age_seconds 1.5",
            r#"reservations_total{outcome="reserved"} 1"#,
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "{line:?} is not in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn a_scrape_runs_the_readiness_checks_and_reports_each() {
        let metrics = Metrics::new();
        let readiness = crate::health::Readiness::default();
        let database_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let up = database_up.clone();
        readiness.check("database", move || {
            let answers = up.load(std::sync::atomic::Ordering::SeqCst);
            async move { if answers { Ok(()) } else { Err(anyhow::anyhow!("connection refused")) } }
        });
        readiness.check("broker", || async { Ok(()) });
        // Not watched yet: no readiness figures at all.
        assert!(!metrics.scrape().await.contains("ready"));
        metrics.watch_readiness(readiness, "inventory");
        let ready = metrics.scrape().await;
        for line in ["ready 1", r#"ready_check{check="database"} 1"#, r#"ready_check{check="broker"} 1"#] {
            assert!(ready.lines().any(|rendered| rendered == line), "{line:?} is not in:\n{ready}");
        }
        database_up.store(false, std::sync::atomic::Ordering::SeqCst);
        let not_ready = metrics.scrape().await;
        for line in ["ready 0", r#"ready_check{check="database"} 0"#, r#"ready_check{check="broker"} 1"#] {
            assert!(not_ready.lines().any(|rendered| rendered == line), "{line:?} is not in:\n{not_ready}");
        }
    }

    #[test]
    fn a_paused_consumer_and_reasons_are_reported() {
        let metrics = Metrics::new();
        let cancelled = metrics.reason_counter("orders_cancelled", "Orders cancelled");
        cancelled.get_or_create(&ReasonLabels { reason: "out_of_stock" }).inc();
        metrics.consumer_paused("order_created", true);
        metrics.consumer_paused("inventory_release", true);
        metrics.consumer_paused("inventory_release", false);
        let text = metrics.render();
        for line in [
            r#"consumer_paused{queue="order_created"} 1"#,
            r#"consumer_paused{queue="inventory_release"} 0"#,
            r#"orders_cancelled_total{reason="out_of_stock"} 1"#,
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "{line:?} is not in:\n{text}");
        }
    }

    #[tokio::test]
    async fn each_watched_pool_is_read_at_each_scrape() {
        let metrics = Metrics::new();
        let usage = Arc::new(Mutex::new(PoolUsage { in_use: 1, idle: 2, max: 10, waiting: None, checkout_failures: None }));
        let read = usage.clone();
        metrics.watch_pool("postgres", Arc::new(move || *read.lock().unwrap()));
        let counted =
            Arc::new(Mutex::new(PoolUsage { in_use: 4, idle: 0, max: 4, waiting: Some(3), checkout_failures: Some(2) }));
        let read = counted.clone();
        metrics.watch_pool("mongodb", Arc::new(move || *read.lock().unwrap()));
        *usage.lock().unwrap() = PoolUsage { in_use: 10, idle: 0, max: 10, waiting: None, checkout_failures: None };
        counted.lock().unwrap().checkout_failures = Some(5);
        let text = metrics.scrape().await;
        for line in [
            r#"pool_connections{pool="postgres",state="in_use"} 10"#,
            r#"pool_connections{pool="postgres",state="idle"} 0"#,
            r#"pool_max_connections{pool="postgres"} 10"#,
            r#"pool_connections{pool="mongodb",state="in_use"} 4"#,
            r#"pool_max_connections{pool="mongodb"} 4"#,
            r#"pool_waiting{pool="mongodb"} 3"#,
            r#"pool_checkout_failures_total{pool="mongodb"} 5"#,
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "{line:?} is not in:\n{text}");
        }
        assert!(!text.contains(r#"pool_waiting{pool="postgres"}"#), "sqlx does not tell who waits: {text}");
    }

    #[test]
    fn two_instances_report_only_their_own() {
        let (one, other) = (Metrics::new(), Metrics::new());
        one.message("order_created", "handled", Duration::ZERO);
        assert!(one.render().contains(r#"messages_total{queue="order_created",outcome="handled"} 1"#));
        assert!(!other.render().contains("order_created"));
    }
}
