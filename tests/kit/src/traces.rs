//! An OpenTelemetry receiver inside the harness (no collector installs here): OTLP over HTTP
//! with protobuf bodies, the protocol the services export with, on a port of 127.0.0.1 of its
//! own, served from a thread of its own. The harness's process exports its traced spans to it
//! (see [`crate::logs::install`]); a step watches a trace id before it starts the trace, and
//! reads what arrived for it.
//!
//! Only watched traces are kept: every scenario's requests and messages are traced, and nobody
//! asks about most of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{LazyLock, Mutex, MutexGuard, OnceLock};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

/// One span as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// 32 hexadecimal digits.
    pub trace_id: String,
    /// 16 hexadecimal digits.
    pub span_id: String,
    /// 16 hexadecimal digits, empty for a root.
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `producer`, `consumer` or `internal`.
    pub kind: &'static str,
    /// The attributes whose values are strings, integers or booleans, as text.
    pub attributes: BTreeMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
}

#[derive(Default)]
struct Received {
    watched: HashSet<String>,
    spans: HashMap<String, Vec<ReceivedSpan>>,
}

static RECEIVED: LazyLock<Mutex<Received>> = LazyLock::new(Mutex::default);
static ENDPOINT: OnceLock<String> = OnceLock::new();

fn received() -> MutexGuard<'static, Received> {
    RECEIVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The receiver's traces endpoint (`http://127.0.0.1:PORT/v1/traces`), starting it on first use.
pub fn endpoint() -> anyhow::Result<String> {
    if let Some(endpoint) = ENDPOINT.get() {
        return Ok(endpoint.clone());
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("failed to bind the OTLP receiver")?;
    listener.set_nonblocking(true)?;
    let endpoint = format!("http://{}/v1/traces", listener.local_addr()?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("otlp-receiver".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener from a bound one");
            let router = axum::Router::new().route("/v1/traces", axum::routing::post(export));
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("the OTLP receiver stopped: {error}");
            }
        });
    })?;
    Ok(ENDPOINT.get_or_init(|| endpoint).clone())
}

/// Keeps the spans of `trace_id` (32 hexadecimal digits) from now on.
pub fn watch(trace_id: &str) {
    received().watched.insert(trace_id.to_owned());
}

/// What arrived so far of a watched trace.
pub fn spans_of(trace_id: &str) -> Vec<ReceivedSpan> {
    received().spans.get(trace_id).cloned().unwrap_or_default()
}

async fn export(body: Bytes) -> impl IntoResponse {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("not an OTLP export request: {error}")).into_response(),
    };
    let mut received = received();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| text(attribute.value.as_ref()?.value.as_ref()?))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            let trace_id = hex(&span.trace_id);
            if !received.watched.contains(&trace_id) {
                continue;
            }
            let attributes = span
                .attributes
                .iter()
                .filter_map(|attribute| Some((attribute.key.clone(), text(attribute.value.as_ref()?.value.as_ref()?)?)))
                .collect();
            let kind = match span.kind {
                1 => "internal",
                2 => "server",
                3 => "client",
                4 => "producer",
                5 => "consumer",
                _ => "unspecified",
            };
            let span = ReceivedSpan {
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                kind,
                attributes,
                service: service.clone(),
                trace_id: trace_id.clone(),
            };
            received.spans.entry(trace_id).or_default().push(span);
        }
    }
    ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec()).into_response()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(number) => Some(number.to_string()),
        Value::BoolValue(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `spans` as an indented tree, one span a line (`name (kind)`), two spaces deeper per
/// generation, siblings by name: the roots are the spans whose parent is `caller_span_id` (the
/// span the test said it called from); a span whose parent is neither the caller nor a span of
/// the trace is listed last, under `(parent not in the trace)`.
pub fn tree(spans: &[ReceivedSpan], caller_span_id: &str) -> String {
    let known: HashSet<&str> = spans.iter().map(|span| span.span_id.as_str()).collect();
    let mut lines = Vec::new();
    render(spans, caller_span_id, 0, &mut lines);
    let mut orphans: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.parent_span_id != caller_span_id && !known.contains(span.parent_span_id.as_str()))
        .collect();
    if !orphans.is_empty() {
        orphans.sort_by(|a, b| (&a.name, a.kind).cmp(&(&b.name, b.kind)));
        lines.push("(parent not in the trace)".to_owned());
        for orphan in orphans {
            lines.push(format!("  {} ({}) parent {}", orphan.name, orphan.kind, orphan.parent_span_id));
            render(spans, &orphan.span_id, 2, &mut lines);
        }
    }
    lines.join("\n")
}

fn render(spans: &[ReceivedSpan], parent: &str, depth: usize, lines: &mut Vec<String>) {
    let mut children: Vec<&ReceivedSpan> = spans.iter().filter(|span| span.parent_span_id == parent).collect();
    children.sort_by(|a, b| (&a.name, a.kind).cmp(&(&b.name, b.kind)));
    for child in children {
        lines.push(format!("{}{} ({})", "  ".repeat(depth), child.name, child.kind));
        render(spans, &child.span_id, depth + 1, lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: &str, name: &str, kind: &'static str) -> ReceivedSpan {
        ReceivedSpan {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            name: name.into(),
            kind,
            attributes: BTreeMap::new(),
            service: "shop".into(),
        }
    }

    #[test]
    fn a_tree_is_drawn_from_the_caller_down_siblings_by_name() {
        let spans = [
            span("c", "a", "publish order_created", "producer"),
            span("a", "caller", "POST /api/v1/orders/", "server"),
            span("b", "a", "GET /api/v1/products/", "client"),
            span("d", "c", "consume order_created", "consumer"),
        ];
        assert_eq!(
            tree(&spans, "caller"),
            "POST /api/v1/orders/ (server)\n  GET /api/v1/products/ (client)\n  publish order_created (producer)\n    consume order_created (consumer)"
        );
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_shown_apart() {
        let spans =
            [span("a", "caller", "POST /api/v1/orders/", "server"), span("x", "lost", "consume order_created", "consumer")];
        assert_eq!(
            tree(&spans, "caller"),
            "POST /api/v1/orders/ (server)\n(parent not in the trace)\n  consume order_created (consumer) parent lost"
        );
    }
}
