//! What each scenario's services log and are doing, attributed to the scenario through tracing
//! spans: every service of a scenario is built and run inside a span named [`SYSTEM_SPAN`] whose
//! `system` field is the scenario's system id, and the services keep that span as the parent of
//! their request spans and background tasks.
//!
//! Two things are recorded per system:
//! - its ERROR and WARN events ([`LogLine`]), each with the delivery it was logged while handling
//!   (queue and correlation id, when it was logged inside a consumer's message span). The
//!   teardown fails on an ERROR unless the scenario expected that message's dead-lettering, and
//!   on a WARN of a failing [`WarningKind`] in a scenario that injected no fault; it reports the
//!   others;
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
    // The services' traces go to the harness's own OTLP receiver (crate::traces), as a service's
    // would go to a collector: over OTLP/HTTP, in batches.
    let exporter = crate::traces::endpoint()
        .and_then(|endpoint| common::telemetry::exporter_to(&endpoint))
        .unwrap_or_else(|error| panic!("the harness's OTLP receiver: {error:#}"));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(tracing_subscriber::EnvFilter::new(log_filter)))
        .with(CaptureLayer.with_filter(tracing_subscriber::filter::filter_fn(CaptureLayer::interested_in)))
        .with(common::telemetry::trace_layer("shop-e2e", Some(exporter)))
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

/// One ERROR or WARN event of a system's services.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: Level,
    /// The event's target (module path), e.g. `common::messaging::consumer::delivery`.
    pub target: String,
    /// The event's message alone, without its fields: what [`classify_warning`] reads.
    pub message: String,
    /// `target: message field=value ...`, as reported.
    pub text: String,
    /// The delivery a consumer was handling when it logged this, if it was handling one.
    pub delivery: Option<DeliveryContext>,
}

/// Which message a line was logged for: the consumer's message span's queue and correlation id
/// (the order or product id the message carries, or the id its publisher gave it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryContext {
    pub queue: String,
    pub correlation_id: String,
}

/// What a WARN line is about, decided by its message (the services' exact wording), so that the
/// teardown can tell a dependency's trouble from a client's doing. A new warning in the services
/// is [`WarningKind::Unclassified`] until it is added here, and fails a fault-free scenario: it
/// must be looked at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WarningKind {
    /// A database, the broker or another service did not answer: a consumer pausing, probing or
    /// reconnecting, an outbox relay or a re-publish retrying, an ack or reject lost, a request
    /// answered 503, a key set that could not be fetched. Fails a scenario that injected no
    /// fault: without a fault, nothing should have been unavailable.
    DependencyTrouble,
    /// A handler failed other than by an outage and its message is tried again: a bug or a poison
    /// message. Fails a fault-free scenario unless the scenario expected that message's
    /// dead-lettering.
    MessageRetry,
    /// A service still busy when its drain limit ran out at a stop (requests or background tasks
    /// abandoned), or an outbox hand-over that never came: something hung. Fails a fault-free
    /// scenario.
    Stuck,
    /// The client's own doing: too many wrong passwords, a refresh token presented twice or
    /// revoked. Legitimate in any scenario (throttling and token reuse are features under
    /// test); reported only.
    ClientBehaviour,
    /// The HTTP trace layer's echo of a 5xx answer (`response failed`). Its cause is logged on a
    /// line of its own (a 500 as an ERROR, a dependency's 503 as [`WarningKind::DependencyTrouble`]),
    /// and `GET /ready` answers 503 while a system starts, which is no fault; reported only.
    ServerErrorEcho,
    /// A WARN of a crate we do not own (a driver, the HTTP server): its wording is not ours to
    /// classify; reported only.
    ThirdParty,
    /// A WARN of our own crates that this table does not know yet. Fails a fault-free scenario.
    Unclassified,
}

impl WarningKind {
    /// Whether a scenario that injected no fault fails on a warning of this kind.
    pub fn fails_a_fault_free_scenario(self) -> bool {
        matches!(
            self,
            WarningKind::DependencyTrouble | WarningKind::MessageRetry | WarningKind::Stuck | WarningKind::Unclassified
        )
    }
}

/// The kind of a WARN line, by its message (see [`WarningKind`]).
pub fn classify_warning(line: &LogLine) -> WarningKind {
    const DEPENDENCY_TROUBLE: [&str; 12] = [
        // common::messaging::consumer::outage
        "a dependency is unavailable; pausing the consumer until it answers (the message is kept)",
        "a dependency is still unavailable; the consumer stays paused",
        // common::messaging::consumer
        "consumer stream ended; reconnecting",
        "consumer is disconnected; retrying",
        // common::messaging::consumer::delivery
        "failed to acknowledge; the message will be redelivered",
        "failed to reject a message; it will be redelivered",
        "failed to acknowledge a re-published message; it may run twice",
        "failed to re-publish a message; requeueing it",
        // common::messaging::outbox and document_outbox
        "outbox relay cannot publish yet; will retry",
        "failed to set an undecodable outbox event aside; it is skipped for now",
        // common::error (a 503)
        "request failed because a dependency is unavailable",
        // common::auth
        "failed to fetch the token signing keys; known keys stay in use",
    ];
    const CLIENT_BEHAVIOUR: [&str; 3] = [
        "login refused: too many wrong passwords for this account",
        "a refresh token was presented twice; its whole family is revoked",
        "refresh refused: token revoked or never issued",
    ];
    const STUCK: [&str; 3] = [
        "requests still in flight at the end of the drain; closing their connections",
        "background tasks still running at the end of the drain; aborting them",
        "closing took too long; left behind",
    ];
    let message = line.message.as_str();
    let ours = OUR_TARGETS.iter().any(|target| line.target == *target || line.target.starts_with(&format!("{target}::")));
    if line.target.starts_with("tower_http::trace") && message == "response failed" {
        WarningKind::ServerErrorEcho
    } else if !ours {
        WarningKind::ThirdParty
    } else if DEPENDENCY_TROUBLE.contains(&message) {
        WarningKind::DependencyTrouble
    } else if message == "handler failed; retrying later" {
        WarningKind::MessageRetry
    } else if CLIENT_BEHAVIOUR.contains(&message) {
        WarningKind::ClientBehaviour
    } else if STUCK.contains(&message) || message.starts_with("outbox hand-overs announced") {
        WarningKind::Stuck
    } else {
        WarningKind::Unclassified
    }
}

/// A request or message span of a system's service: where a request id (and its trace) reached.
#[derive(Debug, Clone)]
pub struct Reached {
    pub service: String,
    /// `METHOD /path` for an HTTP request, the queue for a message.
    pub what: String,
    pub request_id: String,
    /// The trace id the span recorded (see `common::telemetry`), once it did.
    pub trace_id: Option<String>,
}

#[derive(Debug, Default)]
struct SystemRecord {
    /// ERROR and WARN events, in the order they were logged.
    lines: Vec<LogLine>,
    /// What each request id reached, in order.
    reached: Vec<Reached>,
    /// Open message spans by queue.
    in_flight: BTreeMap<String, usize>,
}

static RECORDS: LazyLock<Mutex<HashMap<String, SystemRecord>>> = LazyLock::new(Mutex::default);

fn records() -> MutexGuard<'static, HashMap<String, SystemRecord>> {
    RECORDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ERROR and WARN events logged so far by `system`'s services, removed from the record.
pub fn take_lines(system: &str) -> Vec<LogLine> {
    records().get_mut(system).map(|record| std::mem::take(&mut record.lines)).unwrap_or_default()
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
                .filter(|reached| reached.request_id == request_id)
                .map(|reached| (reached.service.clone(), reached.what.clone()))
                .collect()
        })
        .unwrap_or_default();
    reached.sort();
    reached
}

/// Every request and message span of `system`'s services that carried `request_id`, with the
/// trace id each recorded beside it.
pub fn reached_with_traces(system: &str, request_id: &str) -> Vec<Reached> {
    records()
        .get(system)
        .map(|record| record.reached.iter().filter(|reached| reached.request_id == request_id).cloned().collect())
        .unwrap_or_default()
}

/// Forgets `system` once its scenario is over.
pub fn forget(system: &str) {
    records().remove(system);
}

/// The layer that records; install it with [`CaptureLayer::filter`] as its per-layer filter.
pub struct CaptureLayer;

impl CaptureLayer {
    /// Spans of our own crates (to follow the context), and ERROR and WARN events of any crate
    /// (only those logged inside a system's span are kept).
    pub fn interested_in(metadata: &Metadata<'_>) -> bool {
        if metadata.is_span() {
            OUR_TARGETS.iter().any(|target| metadata.target() == *target || metadata.target().starts_with(&format!("{target}::")))
        } else {
            captured_level(metadata.level())
        }
    }
}

/// The system id a span belongs to, and the service it runs, stored in the system span's
/// extensions.
struct SystemId(String, String);
/// Marks a request or message span: its entry in its system's `reached`.
struct ReachedAt {
    system: String,
    index: usize,
}
/// Marks an open message span: which system's consumer, on which queue, handling which message.
struct InFlight {
    system: String,
    queue: String,
    correlation_id: String,
}

fn captured_level(level: &Level) -> bool {
    *level == Level::ERROR || *level == Level::WARN
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
                let index = reach(&system, Reached { service, what, request_id, trace_id: fields.get("trace_id") });
                span.extensions_mut().insert(ReachedAt { system, index });
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
                let correlation_id = fields.get("correlation_id").unwrap_or_default();
                if let Some(request_id) = fields.get("request_id") {
                    let reached = Reached { service, what: queue.clone(), request_id, trace_id: fields.get("trace_id") };
                    let index = reach(&system, reached);
                    span.extensions_mut().insert(ReachedAt { system: system.clone(), index });
                }
                *records().entry(system.clone()).or_default().in_flight.entry(queue.clone()).or_default() += 1;
                span.extensions_mut().insert(InFlight { system, queue, correlation_id });
            }
        }
    }

    /// The trace id a request or message span records once it knows it.
    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let extensions = span.extensions();
        let Some(at) = extensions.get::<ReachedAt>() else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(trace_id) = fields.get("trace_id")
            && let Some(reached) = records().get_mut(&at.system).and_then(|record| record.reached.get_mut(at.index))
        {
            reached.trace_id = Some(trace_id);
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else { return };
        if let Some(in_flight) = span.extensions().get::<InFlight>()
            && let Some(count) =
                records().get_mut(&in_flight.system).and_then(|record| record.in_flight.get_mut(&in_flight.queue))
        {
            *count = count.saturating_sub(1);
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        if !captured_level(event.metadata().level()) {
            return;
        }
        let Some(scope) = context.event_scope(event) else { return };
        let mut system = None;
        let mut delivery = None;
        // From the event's own span outwards: the innermost message span is the delivery.
        for span in scope {
            let extensions = span.extensions();
            if delivery.is_none()
                && let Some(in_flight) = extensions.get::<InFlight>()
            {
                delivery =
                    Some(DeliveryContext { queue: in_flight.queue.clone(), correlation_id: in_flight.correlation_id.clone() });
            }
            if let Some(id) = extensions.get::<SystemId>() {
                system = Some(id.0.clone());
                break;
            }
        }
        let Some(system) = system else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let target = event.metadata().target();
        let line = LogLine {
            level: *event.metadata().level(),
            target: target.to_owned(),
            message: fields.get("message").unwrap_or_default(),
            text: fields.describe(target),
            delivery,
        };
        records().entry(system).or_default().lines.push(line);
    }
}

/// Adds `reached` to `system`'s record; its index there.
fn reach(system: &str, reached: Reached) -> usize {
    let mut records = records();
    let record = records.entry(system.to_owned()).or_default();
    record.reached.push(reached);
    record.reached.len() - 1
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
