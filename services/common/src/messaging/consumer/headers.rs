//! The counters a message carries across redeliveries, in AMQP headers: which attempt it is and
//! since when it has been waiting for something on its way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, ShortString};

/// The header that counts how many times a message has been handed to a handler and failed
/// (outages and waits for something on its way do not count).
pub const ATTEMPT_HEADER: &str = "x-attempt";

/// The header that records when a message was first set aside to wait for something on its way
/// (milliseconds since the Unix epoch), so the wait is measured in time across redeliveries.
pub const WAITING_SINCE_HEADER: &str = "x-waiting-since";

/// The header a copy of a message carries with the `user_id` of its first publisher: a retry, a
/// delayed copy or a replay is published by the consumer (or the operator), with their own
/// `user_id`, and this keeps who sent the original.
pub const PUBLISHED_BY_HEADER: &str = "x-published-by";

/// The header of a message a consumer refused to take, saying why (it was then dead-lettered).
pub const REFUSED_HEADER: &str = "x-refused";

pub(super) fn with_header(properties: &BasicProperties, name: &str, value: AMQPValue) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(ShortString::from(name), value);
    properties.clone().with_headers(headers)
}

fn header_number(properties: &BasicProperties, name: &str) -> Option<i64> {
    match properties.headers().as_ref().and_then(|headers| headers.inner().get(name).cloned())? {
        AMQPValue::LongLongInt(number) => Some(number),
        AMQPValue::LongInt(number) => Some(i64::from(number)),
        AMQPValue::LongUInt(number) => Some(i64::from(number)),
        AMQPValue::ShortInt(number) => Some(i64::from(number)),
        AMQPValue::ShortShortInt(number) => Some(i64::from(number)),
        AMQPValue::Timestamp(seconds) => i64::try_from(seconds).ok().map(|seconds| seconds * 1000),
        _ => None,
    }
}

/// A header holding text (a long or short string), if present.
pub(super) fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref().and_then(|headers| headers.inner().get(name).cloned())? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

pub(super) fn attempt_of(properties: &BasicProperties) -> u32 {
    let attempt = header_number(properties, ATTEMPT_HEADER).unwrap_or(1);
    u32::try_from(attempt.max(1)).unwrap_or(u32::MAX)
}

pub(super) fn waited_of(properties: &BasicProperties) -> Duration {
    match header_number(properties, WAITING_SINCE_HEADER) {
        Some(since) => Duration::from_millis(u64::try_from(now_millis() - since).unwrap_or(0)),
        None => Duration::ZERO,
    }
}

pub(super) fn now_millis() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_text_is_read_from_either_string_type_and_nothing_else() {
        let read = |value: AMQPValue| header_text(&with_header(&BasicProperties::default(), "id", value), "id");
        assert_eq!(read(AMQPValue::LongString("order-trace-1".into())).as_deref(), Some("order-trace-1"));
        assert_eq!(read(AMQPValue::ShortString("short-1".into())).as_deref(), Some("short-1"));
        assert_eq!(read(AMQPValue::LongLongInt(7)), None);
        assert_eq!(header_text(&BasicProperties::default(), "id"), None);
    }

    #[test]
    fn a_header_number_is_read_from_any_integer_type_a_producer_may_have_used() {
        let read = |value: AMQPValue| header_number(&with_header(&BasicProperties::default(), "n", value), "n");
        assert_eq!(read(AMQPValue::LongLongInt(-7)), Some(-7));
        assert_eq!(read(AMQPValue::LongInt(-6)), Some(-6));
        assert_eq!(read(AMQPValue::LongUInt(5)), Some(5));
        assert_eq!(read(AMQPValue::ShortInt(-4)), Some(-4));
        assert_eq!(read(AMQPValue::ShortShortInt(3)), Some(3));
        assert_eq!(read(AMQPValue::Timestamp(2)), Some(2000), "a timestamp is in seconds; we count milliseconds");
        assert_eq!(read(AMQPValue::LongString("9".into())), None);
        assert_eq!(header_number(&BasicProperties::default(), "n"), None);
    }
}
