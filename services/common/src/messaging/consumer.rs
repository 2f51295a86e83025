//! A supervised consumer: connects, declares the topology, consumes one queue with manual acks
//! and a bounded prefetch, and reconnects with backoff whenever the broker goes away, until it is
//! cancelled.
//!
//! Each delivery is acknowledged only after its handler succeeded, so a crash mid-handler means
//! redelivery, never loss. What happens to a delivery whose handler failed depends on the
//! [`HandlerError`] it returned:
//!
//! - `Reject`, or a message that cannot be decoded: rejected into its dead-letter queue at once.
//! - `Retry`, or a handler that panicked: re-published with its attempt counter raised (and the
//!   original acked once the copy is confirmed), after a short backoff; after
//!   [`ConsumerSettings::max_attempts`] attempts it is dead-lettered.
//! - `Unavailable` (a dependency is down): the delivery is kept, unacknowledged and uncounted, and
//!   the whole consumer pauses: no handler starts while it is paused except one probe at a time,
//!   which retries its message after a backoff that doubles up to
//!   [`ConsumerSettings::max_outage_backoff`]. The first probe that gets past the dependency
//!   resumes the consumer. Deliveries the broker hands over meanwhile (at most the prefetch) wait
//!   for the pause to end; an outage of any length costs no message a try and dead-letters none.
//! - `NotYet` (something the message needs is on its way): the message is set aside in its delay
//!   queue for [`ConsumerSettings::not_yet_recheck_interval`] and delivered again, so waiting
//!   holds no prefetch slot; after [`ConsumerSettings::not_yet_give_up_after`] the handler is told
//!   to give its final answer.
//!
//! Every delivery runs inside a `message` span (field `queue`) from the moment it is taken until it
//! is acked, rejected or handed back, including while it waits out an outage: the end-to-end
//! harness counts open `message` spans to know what is in flight.
//!
//! A panic inside the consumer's own machinery ends that session like a lost connection does: the
//! supervisor logs it and starts a new session (unacknowledged deliveries return to the queue).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::{FutureExt, StreamExt, TryStreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::failure_streak::FailureStreak;
use super::handler_error::capped_backoff;
use super::{HandlerError, Message, topology};
use crate::health::ConsumerStatus;

/// The header that counts how many times a message has been handed to a handler and failed
/// (outages and waits for something on its way do not count).
pub const ATTEMPT_HEADER: &str = "x-attempt";

/// The header that records when a message was first set aside to wait for something on its way
/// (milliseconds since the Unix epoch), so the wait is measured in time across redeliveries.
pub const WAITING_SINCE_HEADER: &str = "x-waiting-since";

/// The metrics outcome of a delivery rejected into its dead-letter queue.
const DEAD_LETTERED: &str = "dead_lettered";

/// How long re-publishing a retry or a delayed copy may take, confirm included. Past that the
/// broker is treated as unavailable: the delivery is handed back (nack with requeue) instead.
const REPUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Names the connection and the consumer tag, so the management UI shows who consumes.
    pub consumer_name: String,
    /// How many unacknowledged messages the broker hands us at once, which is also how many
    /// handlers run concurrently. Bounded so that one busy consumer cannot hoard a queue, and so
    /// that a paused consumer holds at most this many messages while the rest wait in the queue
    /// for another consumer (or for the outage to end).
    pub prefetch: u16,
    /// How many times a message that keeps failing (`Retry`, or a panic) is tried before it is
    /// dead-lettered. Small, because such a failure is the message's or the code's, not one that
    /// waiting cures; outages are not counted (see `Unavailable`).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles with each further attempt. Short: it is
    /// for races and lock timeouts, which clear within moments.
    pub retry_backoff: Duration,
    /// The first wait of a consumer paused for an outage before it probes the dependency again;
    /// it doubles with each failed probe.
    pub outage_backoff: Duration,
    /// The longest wait between two probes of a dependency that is down: 30 s by default, so a
    /// long outage costs a probe every 30 s and the consumer resumes at most 30 s after the
    /// dependency is back.
    pub max_outage_backoff: Duration,
    /// How long a `NotYet` message waits in the delay queue before it is delivered again. One
    /// value per queue (the delay queue expires messages at its head only).
    pub not_yet_recheck_interval: Duration,
    /// How long, from the first `NotYet`, a message may keep waiting; after that the handler is
    /// told (`Attempt::may_keep_waiting == false`) to give its final answer.
    pub not_yet_give_up_after: Duration,
    /// Where the consumer reports whether it consumes (`/ready`), if anywhere.
    pub readiness: Option<crate::health::Readiness>,
    /// Where it counts and times the deliveries it finishes (`/metrics`), if anywhere.
    pub metrics: Option<crate::metrics::Metrics>,
}

impl ConsumerSettings {
    pub fn new(consumer_name: impl Into<String>) -> Self {
        Self {
            consumer_name: consumer_name.into(),
            prefetch: 8,
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
            outage_backoff: Duration::from_millis(200),
            max_outage_backoff: Duration::from_secs(30),
            not_yet_recheck_interval: Duration::from_secs(5),
            not_yet_give_up_after: Duration::from_secs(5 * 60),
            readiness: None,
            metrics: None,
        }
    }
}

/// Which attempt at a message this is, for handlers whose answer depends on it (wait for
/// something that is on its way, then give a final answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first delivery; raised by each failed attempt (`Retry` or a panic).
    pub number: u32,
    /// How long the message has been waiting for something on its way (zero before its first
    /// `NotYet`).
    pub waited: Duration,
    /// Whether a `HandlerError::NotYet` now sets the message aside again; when false the handler
    /// must give its final answer (a `NotYet` would dead-letter it).
    pub may_keep_waiting: bool,
}

/// Consumes `M::QUEUE` until `cancel` fires, calling `handler` for each decoded message.
pub async fn consume<M, H, F>(url: String, settings: ConsumerSettings, handler: H, cancel: CancellationToken)
where
    M: Message,
    H: Fn(M) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    consume_with_attempts(url, settings, move |message: M, _attempt: Attempt| handler(message), cancel).await;
}

/// Like [`consume`], telling the handler which attempt it is making.
pub async fn consume_with_attempts<M, H, F>(url: String, settings: ConsumerSettings, handler: H, cancel: CancellationToken)
where
    M: Message,
    H: Fn(M, Attempt) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    let handler = Arc::new(handler);
    // Lives across sessions: an outage that outlasts a reconnect keeps its backoff.
    let gate = Arc::new(OutageGate::default());
    let mut failures = FailureStreak::default();
    let status = settings.readiness.as_ref().map(|readiness| readiness.consumer(M::QUEUE)).unwrap_or_default();
    while !cancel.is_cancelled() {
        // Supervision: a panic in a session (outside the handlers, which are caught one by one)
        // ends that session only; its unacknowledged deliveries go back to the queue when its
        // connection is dropped, and a new session starts after the backoff.
        let session =
            AssertUnwindSafe(consume_until_disconnected(&url, &settings, &handler, &gate, &status, &cancel)).catch_unwind().await;
        status.set_consuming(false);
        match session {
            Ok(Ok(())) if cancel.is_cancelled() => break,
            Ok(Ok(())) => {
                // The broker ended the stream (the queue was deleted, say): a fresh start.
                tracing::warn!(queue = M::QUEUE, "consumer stream ended; reconnecting");
                failures.record_success();
                failures.record_failure();
            }
            Ok(Err(error)) => {
                failures.record_failure();
                if failures.worth_logging() {
                    tracing::warn!(queue = M::QUEUE, error = format!("{error:#}"), "consumer is disconnected; retrying");
                }
            }
            Err(panic) => {
                failures.record_failure();
                tracing::error!(queue = M::QUEUE, panic = panic_text(&*panic), "consumer session panicked; restarting it");
            }
        }
        let delay = capped_backoff(Duration::from_millis(200), failures.count(), Duration::from_secs(5));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => break,
        }
    }
    tracing::debug!(queue = M::QUEUE, "consumer stopped");
}

async fn consume_until_disconnected<M, H, F>(
    url: &str,
    settings: &ConsumerSettings,
    handler: &Arc<H>,
    gate: &Arc<OutageGate>,
    status: &ConsumerStatus,
    cancel: &CancellationToken,
) -> anyhow::Result<()>
where
    M: Message,
    H: Fn(M, Attempt) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    let connection_name = format!("{} ({})", settings.consumer_name, M::QUEUE);
    let connection = super::connect(url, &connection_name).await.context("failed to connect to RabbitMQ")?;
    let channel = connection.create_channel().await.context("failed to open a channel")?;
    topology::declare(&channel).await.context("failed to declare the queue topology")?;
    // The prefetch bounds what this consumer holds unacknowledged (see `ConsumerSettings`);
    // global: false applies it per consumer, which on this one-consumer channel is the same.
    channel.basic_qos(settings.prefetch, BasicQosOptions::default()).await.context("failed to set the prefetch")?;
    // Retries and delayed copies are re-published on a channel of their own in confirm mode, so
    // the original is acknowledged only once its replacement is safely queued.
    let retry_channel = connection.create_channel().await.context("failed to open the retry channel")?;
    retry_channel.confirm_select(ConfirmSelectOptions::default()).await.context("failed to enable confirms")?;

    let consumer = channel
        .basic_consume(
            M::QUEUE.into(),
            settings.consumer_name.as_str().into(),
            // Manual acknowledgements (the default, `no_ack: false`): a message leaves the queue
            // only after its handler is done.
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("failed to consume {}", M::QUEUE))?;
    tracing::info!(queue = M::QUEUE, consumer = %settings.consumer_name, "consuming");
    status.set_consuming(true);

    let outcome = consumer
        .take_until(cancel.cancelled())
        .map_err(anyhow::Error::from)
        .try_for_each_concurrent(usize::from(settings.prefetch.max(1)), |delivery| {
            let handler = Arc::clone(handler);
            let (channel, retry_channel) = (channel.clone(), retry_channel.clone());
            async move {
                let context = DeliveryContext { channel: &channel, retry_channel: &retry_channel, settings, gate, cancel };
                handle_delivery::<M, H, F>(delivery, &handler, &context).await;
                Ok(())
            }
        })
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), connection.close(200, "consumer stopping".into())).await;
    outcome.context("consumer stream failed")
}

/// Shared by every delivery of one consumer: whether it is paused for an outage, and whose turn
/// it is to probe the dependency.
#[derive(Default)]
struct OutageGate {
    /// Set by the first delivery whose handler answers `Unavailable`, cleared by the first that
    /// gets past the dependency again. While it is set no handler starts except a probe.
    paused: AtomicBool,
    /// Held by the one delivery probing while the consumer is paused, so a dependency that is
    /// down sees one attempt per backoff, not one per held delivery. Holds the number of failed
    /// probes of this outage, which sets the backoff.
    probe: tokio::sync::Mutex<u32>,
}

/// What a delivery needs besides its handler.
struct DeliveryContext<'a> {
    /// The channel the delivery came on: a delivery paused for an outage gives up (the broker has
    /// requeued it) once this channel is gone.
    channel: &'a Channel,
    /// Confirm-mode channel for retries and delayed copies.
    retry_channel: &'a Channel,
    settings: &'a ConsumerSettings,
    gate: &'a OutageGate,
    /// The consumer's stop signal: a delivery paused for an outage is handed back when it fires
    /// instead of holding up the shutdown.
    cancel: &'a CancellationToken,
}

async fn handle_delivery<M, H, F>(delivery: Delivery, handler: &H, context: &DeliveryContext<'_>)
where
    M: Message,
    H: Fn(M, Attempt) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let settings = context.settings;
    let attempt = attempt_of(&delivery.properties);
    let waited = waited_of(&delivery.properties);
    let attempt_information = Attempt { number: attempt, waited, may_keep_waiting: waited < settings.not_yet_give_up_after };
    let correlation_id = delivery.properties.correlation_id().as_ref().map(ToString::to_string).unwrap_or_default();
    // The request that caused the message, or a new id for one that came without (published by
    // hand, or by an older version): either way what the handler logs and publishes carries one.
    let request_id = crate::request_id::accept(header_text(&delivery.properties, crate::request_id::HEADER).as_deref());
    let span = tracing::info_span!(
        "message",
        queue = M::QUEUE,
        correlation_id = %correlation_id,
        request_id = %request_id,
        attempt
    );
    let started = std::time::Instant::now();
    let handling = async move {
        if let Err(error) = serde_json::from_slice::<M>(&delivery.data) {
            tracing::error!(%error, "message cannot be decoded; dead-lettering it");
            reject(&delivery).await;
            return DEAD_LETTERED;
        }
        let Some(outcome) = run_through_outages::<M, H, F>(&delivery, handler, attempt_information, context).await else {
            return "handed_back";
        };
        match outcome {
            Ok(()) => {
                if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::warn!(%error, "failed to acknowledge; the message will be redelivered");
                }
                "handled"
            }
            Err(HandlerError::Unavailable(_)) => unreachable!("outages are waited out above"),
            Err(HandlerError::Reject(error)) => {
                tracing::error!(error = format!("{error:#}"), "message rejected; dead-lettering it");
                reject(&delivery).await;
                DEAD_LETTERED
            }
            Err(HandlerError::Retry(error)) if attempt < settings.max_attempts => {
                tracing::warn!(error = format!("{error:#}"), "handler failed; retrying later");
                // Doubling per attempt, at most 64 times the first wait.
                tokio::time::sleep(capped_backoff(settings.retry_backoff, attempt, settings.retry_backoff * 64)).await;
                let copy = with_header(&delivery.properties, ATTEMPT_HEADER, AMQPValue::LongLongInt(i64::from(attempt + 1)));
                replace_with_copy(&delivery, context.retry_channel, M::QUEUE, copy).await;
                "retried"
            }
            Err(HandlerError::Retry(error)) => {
                tracing::error!(error = format!("{error:#}"), attempts = attempt, "giving up; dead-lettering the message");
                reject(&delivery).await;
                DEAD_LETTERED
            }
            Err(HandlerError::NotYet(error)) if attempt_information.may_keep_waiting => {
                tracing::info!(
                    reason = format!("{error:#}"),
                    waited_seconds = waited.as_secs(),
                    "message cannot be handled yet; setting it aside"
                );
                let mut copy = delivery.properties.clone();
                if waited.is_zero() {
                    copy = with_header(&copy, WAITING_SINCE_HEADER, AMQPValue::LongLongInt(now_millis()));
                }
                // The broker dead-letters the copy back into the work queue when this expires.
                let copy = copy.with_expiration(settings.not_yet_recheck_interval.as_millis().to_string().into());
                replace_with_copy(&delivery, context.retry_channel, &topology::delay_queue(M::QUEUE), copy).await;
                "set_aside"
            }
            Err(HandlerError::NotYet(error)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    waited_seconds = waited.as_secs(),
                    "waited long enough and the handler still cannot answer; dead-lettering the message"
                );
                reject(&delivery).await;
                DEAD_LETTERED
            }
        }
    };
    let outcome = crate::request_id::scope(request_id, handling.instrument(span)).await;
    if let Some(metrics) = &settings.metrics {
        metrics.message(M::QUEUE, outcome, started.elapsed());
    }
}

/// Runs the handler until it answers something other than `Unavailable`, pausing the consumer
/// while it does (see the module doc). `None` when the delivery was handed back instead: the
/// consumer is stopping, or the channel the delivery came on is gone.
async fn run_through_outages<M, H, F>(
    delivery: &Delivery,
    handler: &H,
    attempt: Attempt,
    context: &DeliveryContext<'_>,
) -> Option<Result<(), HandlerError>>
where
    M: Message,
    H: Fn(M, Attempt) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let (settings, gate) = (context.settings, context.gate);
    loop {
        // While paused, wait for the turn to probe, then for the backoff.
        let mut probe_turn = None;
        if gate.paused.load(Ordering::SeqCst) {
            let turn = tokio::select! {
                turn = gate.probe.lock() => turn,
                () = context.cancel.cancelled() => return hand_back(delivery, "the consumer is stopping").await,
            };
            // The outage may have ended while this delivery waited for its turn.
            if gate.paused.load(Ordering::SeqCst) {
                let delay = capped_backoff(settings.outage_backoff, (*turn).max(1), settings.max_outage_backoff);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = context.cancel.cancelled() => return hand_back(delivery, "the consumer is stopping").await,
                }
                if !context.channel.status().connected() {
                    // The broker has requeued it already; the next session takes it again.
                    return None;
                }
                probe_turn = Some(turn);
            }
        }
        // Decoded afresh for each try: the handler takes the message by value.
        let message: M = serde_json::from_slice(&delivery.data).expect("decoded before");
        match run_handler(handler, message, attempt).await {
            Err(HandlerError::Unavailable(error)) => {
                let failed_probes = match probe_turn.as_mut() {
                    Some(turn) => {
                        **turn += 1;
                        **turn
                    }
                    None => 0,
                };
                if !gate.paused.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "a dependency is unavailable; pausing the consumer until it answers (the message is kept)"
                    );
                } else if probe_failure_worth_logging(failed_probes) {
                    let next_wait = capped_backoff(settings.outage_backoff, failed_probes + 1, settings.max_outage_backoff);
                    tracing::warn!(
                        error = format!("{error:#}"),
                        failed_probes,
                        next_probe_in_seconds = next_wait.as_secs_f64(),
                        "a dependency is still unavailable; the consumer stays paused"
                    );
                }
            }
            outcome => {
                if let Some(mut turn) = probe_turn {
                    tracing::info!(failed_probes = *turn, "the dependency answers again; resuming the consumer");
                    *turn = 0;
                    gate.paused.store(false, Ordering::SeqCst);
                }
                return Some(outcome);
            }
        }
    }
}

/// Which failed probes of one outage are logged: the 1st, 2nd, 4th, 8th, ... and every 20th, so a
/// long outage shows in the log without flooding it.
fn probe_failure_worth_logging(failed_probes: u32) -> bool {
    failed_probes.is_power_of_two() || failed_probes % 20 == 0
}

/// Calls the handler, turning a panic into a `Retry` of this one delivery: the panic is the
/// code's fault, so it is tried again a bounded number of times and then dead-lettered, while the
/// consumer goes on with its other deliveries.
async fn run_handler<M, H, F>(handler: &H, message: M, attempt: Attempt) -> Result<(), HandlerError>
where
    H: Fn(M, Attempt) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    // The handler shares nothing with this delivery's later tries except through its own state,
    // which a panic can leave half-changed only if it holds a lock across the panic; tokio's and
    // std's locks are poisoned or released on unwind, so asserting unwind safety is sound here.
    match AssertUnwindSafe(async { handler(message, attempt).await }).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let text = panic_text(&*panic);
            tracing::error!(panic = %text, "handler panicked; the message goes into its retry path");
            Err(HandlerError::Retry(anyhow::anyhow!("the handler panicked: {text}")))
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

async fn hand_back<T>(delivery: &Delivery, why: &str) -> Option<T> {
    tracing::info!(why, "handing the message back to the queue");
    let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
    None
}

async fn reject(delivery: &Delivery) {
    // requeue: false sends it to the queue's dead-letter queue (see topology).
    if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
        tracing::warn!(%error, "failed to reject a message; it will be redelivered");
    }
}

/// Publishes `properties` and the delivery's body to `queue` with a confirm, then acks the
/// original; if the copy cannot be confirmed the original is handed back to the queue instead,
/// so the message is never lost, at worst handled once more.
async fn replace_with_copy(delivery: &Delivery, channel: &Channel, queue: &str, properties: BasicProperties) {
    match republish(delivery, channel, queue, properties).await {
        Ok(()) => {
            if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!(%error, "failed to acknowledge a re-published message; it may run twice");
            }
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), queue, "failed to re-publish a message; requeueing it");
            let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        }
    }
}

async fn republish(delivery: &Delivery, channel: &Channel, queue: &str, properties: BasicProperties) -> anyhow::Result<()> {
    let publish = async {
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                // Mandatory: a copy that no queue takes comes back, and the original is kept.
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &delivery.data,
                properties,
            )
            .await?
            .await
    };
    let confirmation = tokio::time::timeout(REPUBLISH_TIMEOUT, publish)
        .await
        .map_err(|_elapsed| super::publisher::PublishFailure::TimedOut(REPUBLISH_TIMEOUT))??;
    anyhow::ensure!(confirmation.is_ack(), super::publisher::PublishFailure::Refused);
    anyhow::ensure!(confirmation.take_message().is_none(), super::publisher::PublishFailure::Returned);
    Ok(())
}

fn with_header(properties: &BasicProperties, name: &str, value: AMQPValue) -> BasicProperties {
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
fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref().and_then(|headers| headers.inner().get(name).cloned())? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

fn attempt_of(properties: &BasicProperties) -> u32 {
    let attempt = header_number(properties, ATTEMPT_HEADER).unwrap_or(1);
    u32::try_from(attempt.max(1)).unwrap_or(u32::MAX)
}

fn waited_of(properties: &BasicProperties) -> Duration {
    match header_number(properties, WAITING_SINCE_HEADER) {
        Some(since) => Duration::from_millis(u64::try_from(now_millis() - since).unwrap_or(0)),
        None => Duration::ZERO,
    }
}

fn now_millis() -> i64 {
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

    #[test]
    fn a_panics_text_is_its_message_whatever_its_type() {
        assert_eq!(panic_text(&"static text"), "static text");
        assert_eq!(panic_text(&String::from("formatted text")), "formatted text");
        assert_eq!(panic_text(&42_u32), "(a panic without a message)");
    }

    #[test]
    fn failed_probes_are_logged_at_powers_of_two_and_every_twentieth() {
        let logged: Vec<u32> = (1..=100).filter(|&probes| probe_failure_worth_logging(probes)).collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16, 20, 32, 40, 60, 64, 80, 100]);
    }
}
