//! What each scenario's services log and are doing, attributed to the scenario through tracing
//! spans: every service of a scenario is built and run inside a span named [`SYSTEM_SPAN`] whose
//! `system` field is the scenario's system id, and the services keep that span as the parent of
//! their request spans and background tasks.
//!
//! Two things are recorded per system:
//! - its ERROR events, which the teardown fails on unless the scenario expected them (a
//!   dead-lettered message is logged as an error on purpose);
//! - the messages its consumers are handling right now: the consumer opens a span named
//!   [`MESSAGE_SPAN`] for each delivery and closes it after the delivery was acknowledged,
//!   rejected or retried, so an open one is a message in flight (which the broker counts neither
//!   as ready nor as gone).
//!
//! This observes the real services' real work; it replaces nothing and fakes nothing.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Installs the process's subscriber: the services' log lines (filtered by `E2E_LOG`, default
/// `warn,lapin=off,sqlx=error`: lapin logs every expected channel close) on the test output, and
/// the [`CaptureLayer`].
pub fn install() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let log_filter = std::env::var("E2E_LOG").unwrap_or_else(|_| "warn,lapin=off,sqlx=error".into());
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(tracing_subscriber::EnvFilter::new(log_filter)))
        .with(CaptureLayer.with_filter(tracing_subscriber::filter::filter_fn(CaptureLayer::interested_in)))
        .try_init();
}

/// The span the harness starts a scenario's services in.
pub const SYSTEM_SPAN: &str = "e2e_system";
/// The span the consumer keeps open while it handles one delivery (common::messaging::consumer).
const MESSAGE_SPAN: &str = "message";
/// The span of one HTTP request (common::http).
const REQUEST_SPAN: &str = "request";

/// Crates whose spans carry the context we follow. Third-party spans (sqlx, mongodb, hyper) are
/// left out: we need none of them, and following them would cost every query a span.
/// `shop_testkit` makes the system spans (system/lifecycle.rs); `features` and `chaos` are the
/// test binaries, whose own spans follow the context too.
const OUR_TARGETS: [&str; 8] =
    ["common", "shop_testkit", "features", "chaos", "user_service", "product_service", "inventory_service", "order_service"];

#[derive(Debug, Default)]
struct SystemRecord {
    errors: Vec<String>,
    /// What each request id reached: `(service, "METHOD /path" or queue)`, in order.
    reached: Vec<(String, String, String)>,
    /// Open message spans by queue.
    in_flight: BTreeMap<String, usize>,
}

static RECORDS: LazyLock<Mutex<HashMap<String, SystemRecord>>> = LazyLock::new(Mutex::default);

fn records() -> MutexGuard<'static, HashMap<String, SystemRecord>> {
    RECORDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ERROR events logged so far by `system`'s services, each as `message {fields}`, removed
/// from the record.
pub fn take_errors(system: &str) -> Vec<String> {
    records().get_mut(system).map(|record| std::mem::take(&mut record.errors)).unwrap_or_default()
}

/// The queues on which `system`'s consumers hold a message right now, with how many.
pub fn messages_in_flight(system: &str) -> BTreeMap<String, usize> {
    records()
        .get(system)
        .map(|record| {
            record.in_flight.iter().filter(|(_, count)| **count > 0).map(|(queue, count)| (queue.clone(), *count)).collect()
        })
        .unwrap_or_default()
}

/// Where `system`'s services handled something under `request_id`: `(service, what)`, where
/// what is `METHOD /path` for an HTTP request and the queue for a message, sorted.
pub fn reached_by(system: &str, request_id: &str) -> Vec<(String, String)> {
    let mut reached: Vec<(String, String)> = records()
        .get(system)
        .map(|record| {
            record
                .reached
                .iter()
                .filter(|(_, _, id)| id == request_id)
                .map(|(service, what, _)| (service.clone(), what.clone()))
                .collect()
        })
        .unwrap_or_default();
    reached.sort();
    reached
}

/// Forgets `system` once its scenario is over.
pub fn forget(system: &str) {
    records().remove(system);
}

/// The layer that records; install it with [`CaptureLayer::filter`] as its per-layer filter.
pub struct CaptureLayer;

impl CaptureLayer {
    /// Spans of our own crates (to follow the context) and ERROR events.
    pub fn interested_in(metadata: &Metadata<'_>) -> bool {
        if metadata.is_span() {
            OUR_TARGETS.iter().any(|target| metadata.target() == *target || metadata.target().starts_with(&format!("{target}::")))
        } else {
            *metadata.level() == Level::ERROR
        }
    }
}

/// The system id a span belongs to, and the service it runs, stored in the system span's
/// extensions.
struct SystemId(String, String);
/// Marks an open message span: which system's consumer, on which queue.
struct InFlight {
    system: String,
    queue: String,
}

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let name = attributes.metadata().name();
        if name == SYSTEM_SPAN {
            let mut fields = Fields::default();
            attributes.record(&mut fields);
            if let Some(system) = fields.get("system") {
                let service = fields.get("service").unwrap_or_default().to_lowercase();
                span.extensions_mut().insert(SystemId(system, service));
            }
        } else if name == REQUEST_SPAN {
            let owner = span
                .scope()
                .skip(1)
                .find_map(|ancestor| ancestor.extensions().get::<SystemId>().map(|id| (id.0.clone(), id.1.clone())));
            let mut fields = Fields::default();
            attributes.record(&mut fields);
            if let (Some((system, service)), Some(request_id)) = (owner, fields.get("request_id")) {
                let what = format!("{} {}", fields.get("method").unwrap_or_default(), fields.get("path").unwrap_or_default());
                records().entry(system).or_default().reached.push((service, what, request_id));
            }
        } else if name == MESSAGE_SPAN {
            let owner = span
                .scope()
                .skip(1)
                .find_map(|ancestor| ancestor.extensions().get::<SystemId>().map(|id| (id.0.clone(), id.1.clone())));
            if let Some((system, service)) = owner {
                let mut fields = Fields::default();
                attributes.record(&mut fields);
                let queue = fields.get("queue").unwrap_or_else(|| "(unknown queue)".into());
                if let Some(request_id) = fields.get("request_id") {
                    records().entry(system.clone()).or_default().reached.push((service, queue.clone(), request_id));
                }
                *records().entry(system.clone()).or_default().in_flight.entry(queue.clone()).or_default() += 1;
                span.extensions_mut().insert(InFlight { system, queue });
            }
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else { return };
        if let Some(in_flight) = span.extensions().get::<InFlight>() {
            if let Some(count) =
                records().get_mut(&in_flight.system).and_then(|record| record.in_flight.get_mut(&in_flight.queue))
            {
                *count = count.saturating_sub(1);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let Some(scope) = context.event_scope(event) else { return };
        let Some(system) = scope.into_iter().find_map(|span| span.extensions().get::<SystemId>().map(|id| id.0.clone())) else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let text = fields.describe(event.metadata().target());
        records().entry(system).or_default().errors.push(text);
    }
}

/// An event's or span's fields, as text.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(field, _)| field == name).map(|(_, value)| value.clone())
    }

    fn describe(&self, target: &str) -> String {
        let mut text = format!("{target}: {}", self.get("message").unwrap_or_default());
        for (name, value) in self.0.iter().filter(|(name, _)| name != "message") {
            let _ = write!(text, " {name}={value}");
        }
        text
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}
