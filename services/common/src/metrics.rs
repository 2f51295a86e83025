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
        Self(Arc::new(Inner {
            registry: Mutex::new(registry),
            http_requests,
            http_duration,
            messages,
            handling,
            outbox_pending,
            outbox_oldest_age,
            consumer_paused,
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

    /// Every metric in the Prometheus text format, the readiness checks run first.
    pub async fn scrape(&self) -> String {
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

    #[test]
    fn two_instances_report_only_their_own() {
        let (one, other) = (Metrics::new(), Metrics::new());
        one.message("order_created", "handled", Duration::ZERO);
        assert!(one.render().contains(r#"messages_total{queue="order_created",outcome="handled"} 1"#));
        assert!(!other.render().contains("order_created"));
    }
}
