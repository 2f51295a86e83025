//! What is dead-lettered, why, and handing it back: the operator's side of the dead-letter
//! queues (`cargo xtask dlq list|show|replay`).
//!
//! - [`counts`]: how many messages wait in each work queue's dead-letter queue.
//! - [`peek`]: the first messages of one, without taking them: payload, ids, attempts, and the
//!   broker's `x-death` record (why: `rejected` by the consumer, with the queue it left and when).
//!   They are read unacknowledged and handed back when the channel closes, so they stay where they
//!   were.
//! - [`replay`]: moves every message of one back into its work queue, one at a time: published
//!   (with a confirm) before it is acknowledged in the dead-letter queue, so a failure in between
//!   leaves a copy in both places rather than in neither. A copy handled twice is harmless: every
//!   consumer is idempotent. The attempt counters are reset, so the consumer tries afresh.

use std::time::Duration;

use anyhow::Context;
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};

use super::topology::{self, QUEUES};

/// How long replaying one message may wait for the broker's confirm before the replay stops
/// (the message then stays in the dead-letter queue, and may also be in its work queue).
const REPLAY_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// One dead-lettered message, as [`peek`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    /// How many times the consumer tried it (`x-attempt`), when it retried.
    pub attempts: Option<i64>,
    /// Why it was dead-lettered: a consumer's refusal of its publisher (`x-refused`, the reason in
    /// full), else the broker's `x-death`: `rejected` (by the consumer: undecodable, out of
    /// retries, or refused by its handler), `expired` or `maxlen`.
    pub reason: Option<String>,
    /// The queue it was dead-lettered from.
    pub from_queue: Option<String>,
    pub payload: String,
}

/// The number of messages in the dead-letter queue of every work queue, in flow order.
pub async fn counts(url: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let (connection, channel) = open(url, "dead letters (count)", &QUEUES).await?;
    let mut counts = Vec::new();
    for queue in QUEUES {
        counts.push((queue.to_owned(), message_count(&channel, &topology::dead_letter_queue(queue)).await?));
    }
    close(connection).await;
    Ok(counts)
}

/// Up to `limit` messages of `queue`'s dead-letter queue, oldest first, left in place.
pub async fn peek(url: &str, queue: &str, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let dead_letter_queue = known_dead_letter_queue(queue)?;
    let (connection, channel) = open(url, "dead letters (show)", &[queue]).await?;
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(message) = next_unacknowledged(&channel, &dead_letter_queue).await? else {
            break;
        };
        letters.push(describe(&message.delivery.properties, &message.delivery.data));
    }
    // Closing the channel hands every unacknowledged message back to the queue.
    close(connection).await;
    Ok(letters)
}

/// Moves every message of `queue`'s dead-letter queue back into `queue`; returns how many.
///
/// Each copy carries the `user_id` of the user `url` logs in as, with its first publisher kept in
/// `x-published-by`, as a consumer's own retries do. The consumer takes it only if that user is
/// the owner of the queue's events or the consumer's own (see `super::consumer`): replay as the
/// service that consumes the queue. A message that was refused for its publisher is refused
/// again, whoever replays it, unless its owner replays it.
pub async fn replay(url: &str, queue: &str) -> anyhow::Result<usize> {
    let dead_letter_queue = known_dead_letter_queue(queue)?;
    let (connection, channel) = open(url, "dead letters (replay)", &[queue]).await?;
    let replayer = super::broker_user_of(url);
    channel.confirm_select(ConfirmSelectOptions::default()).await.context("failed to enable publisher confirms")?;
    // What is there now: messages dead-lettered meanwhile wait for the next replay, so a message
    // that fails again cannot keep this loop going.
    let waiting = message_count(&channel, &dead_letter_queue).await?;
    let mut replayed = 0;
    while replayed < waiting as usize {
        let Some(message) = next_unacknowledged(&channel, &dead_letter_queue).await? else {
            break;
        };
        let properties = super::consumer::as_copy(&fresh_properties(&message.delivery.properties), &replayer);
        super::publisher::publish_confirmed(&channel, ("", queue), &message.delivery.data, properties, REPLAY_CONFIRM_TIMEOUT)
            .await
            .with_context(|| format!("failed to replay a message to {queue}"))?;
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .with_context(|| format!("failed to acknowledge in {dead_letter_queue}"))?;
        replayed += 1;
    }
    close(connection).await;
    Ok(replayed)
}

/// The next message of `queue`, taken without acknowledging it.
async fn next_unacknowledged(channel: &Channel, queue: &str) -> anyhow::Result<Option<lapin::message::BasicGetMessage>> {
    channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.with_context(|| format!("failed to read {queue}"))
}

fn known_dead_letter_queue(queue: &str) -> anyhow::Result<String> {
    let queue = queue.strip_suffix(".dead_letter").unwrap_or(queue);
    anyhow::ensure!(QUEUES.contains(&queue), "unknown queue {queue:?}; queues: {}", QUEUES.join(", "));
    Ok(topology::dead_letter_queue(queue))
}

/// Connects and declares `queues` (what the user may declare: a service's user, its own queues).
async fn open(url: &str, name: &str, queues: &[&str]) -> anyhow::Result<(Connection, Channel)> {
    let queues: Vec<&str> = queues.iter().map(|queue| queue.strip_suffix(".dead_letter").unwrap_or(queue)).collect();
    let connection = super::connect(url, name).await.with_context(|| format!("failed to connect to RabbitMQ at {url}"))?;
    topology::declare(&connection, &queues).await.context("failed to declare the queues")?;
    let channel = connection.create_channel().await.context("failed to open a channel")?;
    Ok((connection, channel))
}

async fn close(connection: Connection) {
    let _ = connection.close(200, "done".into()).await;
}

async fn message_count(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let declared = channel
        .queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await
        .with_context(|| format!("failed to inspect {queue}"))?;
    Ok(declared.message_count())
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

fn describe(properties: &BasicProperties, data: &[u8]) -> DeadLetter {
    // `x-death` is a list of tables, the latest death first.
    let death = match header(properties, "x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().first().and_then(|death| match death {
            AMQPValue::FieldTable(table) => Some(table.clone()),
            _ => None,
        }),
        _ => None,
    };
    let death_text = |name: &str| death.as_ref().and_then(|table| table.inner().get(name)).and_then(text);
    DeadLetter {
        message_id: properties.message_id().as_ref().map(ToString::to_string),
        correlation_id: properties.correlation_id().as_ref().map(ToString::to_string),
        request_id: header(properties, crate::request_id::HEADER).and_then(text),
        attempts: match header(properties, super::consumer::ATTEMPT_HEADER) {
            Some(AMQPValue::LongLongInt(number)) => Some(*number),
            Some(AMQPValue::LongInt(number)) => Some(i64::from(*number)),
            _ => None,
        },
        // A consumer's refusal of the publisher says why in its own header; anything else, the
        // broker's death record.
        reason: header(properties, super::consumer::REFUSED_HEADER).and_then(text).or_else(|| death_text("reason")),
        from_queue: death_text("queue"),
        payload: String::from_utf8_lossy(data).into_owned(),
    }
}

/// The message's properties for a fresh start in its work queue: the broker's death record and
/// the consumer's attempt and waiting counters go; ids, content type and the request id stay.
fn fresh_properties(properties: &BasicProperties) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    let kept: std::collections::BTreeMap<_, _> = headers
        .inner()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name != super::consumer::ATTEMPT_HEADER
                && name != super::consumer::WAITING_SINCE_HEADER
                && !name.starts_with("x-death")
                && !name.starts_with("x-first-death")
                && !name.starts_with("x-last-death")
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    headers = FieldTable::from(kept);
    properties.clone().with_headers(headers)
}
