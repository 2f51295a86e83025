//! One id per request, followed from the gateway through every service and message it causes.
//!
//! - HTTP: the caller's `X-Request-Id` (the gateway sets one when the caller did not) is kept when
//!   it is 1 to 128 visible ASCII characters, and replaced by a new UUID otherwise. It is recorded
//!   on the request's span, so on every log line of the request, and returned on the response.
//! - Messages: an event stored or published while a request (or a message) is being handled
//!   carries its id: in the outbox document (`request_id`) and then in the AMQP header
//!   `x-request-id`. The consumer handles each delivery with the id of its header, so what the
//!   handler logs and publishes in turn carries it too.
//!
//! The id travels within a service as a task-local value ([`scope`], [`current`]), so nothing
//! between the edge and the place an event is made has to pass it along.

use std::future::Future;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The HTTP header, and the AMQP header, that carry the id.
pub const HEADER: &str = "x-request-id";

/// The longest id accepted from a caller.
pub const MAXIMUM_LENGTH: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request or message being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` as the handling of the request or message `id`.
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// The caller's id when it is acceptable, a new one otherwise.
pub fn accept(offered: Option<&str>) -> String {
    match offered {
        Some(id) if is_acceptable(id) => id.to_owned(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// 1 to [`MAXIMUM_LENGTH`] visible ASCII characters: safe in a header, a log line and an AMQP
/// short string alike.
pub fn is_acceptable(id: &str) -> bool {
    (1..=MAXIMUM_LENGTH).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Middleware: settles the request's id, puts it on the request (for the request span, made
/// inside this layer) and on the response, and handles the request in its scope.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = accept(request.headers().get(HEADER).and_then(|value| value.to_str().ok()));
    let value = HeaderValue::from_str(&id).expect("an accepted request id is a valid header value");
    request.headers_mut().insert(HEADER, value.clone());
    let mut response = scope(id, next.run(request)).await;
    response.headers_mut().insert(HEADER, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_id_is_kept_when_it_is_short_visible_ascii() {
        assert_eq!(accept(Some("order-trace-1")), "order-trace-1");
        assert_eq!(accept(Some(&"a".repeat(128))), "a".repeat(128));
    }

    #[test]
    fn a_missing_empty_long_or_unprintable_id_is_replaced_by_a_new_uuid() {
        for offered in [None, Some(""), Some("has space"), Some("tab\there"), Some("é"), Some(&*"a".repeat(129))] {
            let id = accept(offered);
            assert_ne!(Some(id.as_str()), offered);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{offered:?} became {id:?}");
        }
    }

    #[tokio::test]
    async fn the_current_id_is_the_scopes_and_none_outside() {
        assert_eq!(current(), None);
        let inside = scope("r-1".into(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("r-1"));
        assert_eq!(current(), None);
    }
}
