//! Logs and traces.
//!
//! - Logs: one line per event, human-readable by default, JSON with `LOG_FORMAT=json`.
//! - Traces: OpenTelemetry, through the `tracing` spans the services already make. Four of them
//!   become OpenTelemetry spans ([`TRACED_SPANS`]): an HTTP request (`request`, server), a
//!   delivery handled (`message`, consumer), an event published (`publish`, producer) and the
//!   order service's product look-up (`product_lookup`, client). W3C trace context
//!   (`traceparent`) comes in on HTTP requests and goes out on the services' own HTTP calls; an
//!   event carries the context it was made in, stored with it in the outbox and then sent as an
//!   AMQP header, and the consumer continues it ([`continue_trace`]). So one order's trace holds
//!   its POST, the product look-up, each publish and each delivery it caused, with the right
//!   parents, across every service.
//! - Every traced span records its `trace_id`, so a request's log lines carry it beside the
//!   request id.
//! - Export: OTLP over HTTP (protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, in batches, from a thread of its own. Without
//!   it, spans are still made (trace ids in the logs, context passed on), and dropped.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The W3C header (HTTP) and AMQP header that carry a trace's context.
pub const TRACEPARENT: &str = "traceparent";

/// The names of the spans that become OpenTelemetry spans; every other span (the test harness's,
/// the runtime's, a library's) stays a `tracing` span only, so it neither appears in traces nor
/// becomes a parent of the ones that do.
pub const TRACED_SPANS: [&str; 4] = ["request", "message", "publish", "product_lookup"];

/// The provider of this process, for [`flush`] and [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber once (logs, and traces as described in the module doc); later
/// calls (several services in one test process) are harmless no-ops.
pub fn init(service: &'static str, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour only on a terminal: a log file or a container's log gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let lines = tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi);
    let lines = if json { lines.json().flatten_event(true).boxed() } else { lines.boxed() };
    let traces = match exporter_from_environment() {
        Ok(exporter) => Some(trace_layer(service, exporter)),
        Err(error) => {
            eprintln!("traces are not exported: {error:#}");
            Some(trace_layer(service, None))
        }
    };
    // Err only means a subscriber is installed already, which is what we want.
    // The level filter is the log lines' only: the traced spans are made whatever is logged.
    let _ = tracing_subscriber::registry().with(lines.with_filter(filter)).with(traces).try_init();
}

/// The OpenTelemetry layer: the spans named in [`TRACED_SPANS`] become spans of the process's
/// tracer provider, exported to `exporter` when there is one. The first call makes the provider;
/// a process has one.
pub fn trace_layer<S>(service: &str, exporter: Option<opentelemetry_otlp::SpanExporter>) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let provider = PROVIDER.get_or_init(|| {
        let resource = Resource::builder().with_service_name(service.to_owned()).build();
        let builder = SdkTracerProvider::builder().with_resource(resource);
        match exporter {
            Some(exporter) => builder.with_batch_exporter(exporter),
            None => builder,
        }
        .build()
    });
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("shop"))
        // Only our spans carry the context we follow (see `TRACED_SPANS`).
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.is_span() && TRACED_SPANS.contains(&metadata.name())
        }))
}

/// The OTLP/HTTP exporter the environment asks for (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), or `None`.
fn exporter_from_environment() -> anyhow::Result<Option<opentelemetry_otlp::SpanExporter>> {
    let wanted = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()));
    if !wanted {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient::new()?)
        .build()
        .context("failed to make the OTLP exporter")?;
    Ok(Some(exporter))
}

/// An OTLP/HTTP exporter sending to `endpoint` (the full URL, `.../v1/traces`).
pub fn exporter_to(endpoint: &str) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient::new()?)
        .with_endpoint(endpoint)
        .build()
        .context("failed to make the OTLP exporter")
}

/// Sends what has ended so far (the batch exporter otherwise waits up to 5 s).
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.force_flush()
    {
        tracing::warn!(%error, "failed to flush traces");
    }
}

/// Sends what is left and stops the exporter: the last thing a service does.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        eprintln!("failed to shut the trace exporter down: {error}");
    }
}

/// The `traceparent` of `span` (the current one, usually), or `None` when it is not traced.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the current span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Makes `span` continue the trace of `traceparent` (from a request's or a message's headers,
/// or an outbox event); without a valid one, `span` starts a trace of its own. Then records the
/// trace's id on `span` (its `trace_id` field), for its log lines. Call before `span` is first
/// entered.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let carrier: HashMap<String, String> =
        traceparent.map(|value| HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())])).unwrap_or_default();
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Always set, even to an empty context: a traced span is a root unless its caller's context
    // says otherwise, never the child of whatever span happened to be current.
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// The exporter's HTTP client: the workspace's reqwest, run on a one-thread runtime of its own
/// (the batch exporter calls it from its own thread, outside any runtime).
#[derive(Debug)]
struct OtlpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl OtlpClient {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .context("failed to start the OTLP exporter's runtime")?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Self { http, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let answer = http.execute(request).await?;
            let mut response = Response::builder().status(answer.status());
            if let Some(headers) = response.headers_mut() {
                *headers = answer.headers().clone();
            }
            Ok::<_, HttpError>(response.body(answer.bytes().await?)?)
        });
        sent.await?
    }
}
