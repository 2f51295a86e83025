//! A supervised consumer: connects, declares the topology, consumes one queue with manual acks
//! and a bounded prefetch, and reconnects with backoff whenever the broker goes away, until it is
//! cancelled.
//!
//! Each delivery is acknowledged only after its handler succeeded, so a crash mid-handler means
//! redelivery, never loss. A handler failure is retried a bounded number of times (the message is
//! re-published with an attempt counter, then the original acked); after the last attempt, or at
//! once for a message that cannot be decoded, the message is rejected into its dead-letter queue
//! and the consumer carries on with the next one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Message, topology};

/// The header that counts how many times a message has been handed to a handler.
pub const ATTEMPT_HEADER: &str = "x-attempt";

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Names the connection and the consumer tag, so the management UI shows who consumes.
    pub consumer_name: String,
    /// How many unacknowledged messages the broker hands us at once, which is also how many
    /// handlers run concurrently. Bounded so that one busy consumer cannot hoard a queue.
    pub prefetch: u16,
    /// How many times a failing message is tried before it is dead-lettered.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles with each further attempt.
    pub retry_backoff: Duration,
}

impl ConsumerSettings {
    pub fn new(consumer_name: impl Into<String>) -> Self {
        Self { consumer_name: consumer_name.into(), prefetch: 8, max_attempts: 5, retry_backoff: Duration::from_millis(200) }
    }
}

/// What a handler says about a message it could not process.
#[derive(Debug)]
pub enum HandlerError {
    /// Worth trying again (a database hiccup, a lock timeout): retried, then dead-lettered.
    Retry(anyhow::Error),
    /// Will never succeed (it refers to something that cannot exist): dead-lettered at once.
    Reject(anyhow::Error),
}

impl From<anyhow::Error> for HandlerError {
    fn from(error: anyhow::Error) -> Self {
        HandlerError::Retry(error)
    }
}

/// Which attempt at a message this is, for handlers whose answer depends on it (wait a little for
/// something that is on its way, then give a final answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first delivery.
    pub number: u32,
    /// No retry follows this attempt: a `HandlerError::Retry` now dead-letters the message.
    pub is_last: bool,
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
    let mut consecutive_failures: u32 = 0;
    while !cancel.is_cancelled() {
        match consume_until_disconnected(&url, &settings, &handler, &cancel).await {
            Ok(()) if cancel.is_cancelled() => break,
            Ok(()) => {
                tracing::warn!(queue = M::QUEUE, "consumer stream ended; reconnecting");
                consecutive_failures = 1;
            }
            Err(error) => {
                consecutive_failures += 1;
                if consecutive_failures == 1 || consecutive_failures % 20 == 0 {
                    tracing::warn!(queue = M::QUEUE, error = format!("{error:#}"), "consumer is disconnected; retrying");
                }
            }
        }
        let delay = Duration::from_millis(100 * 2u64.pow(consecutive_failures.min(5)));
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
    channel.basic_qos(settings.prefetch, BasicQosOptions::default()).await.context("failed to set the prefetch")?;
    // Retries are re-published on a channel of their own in confirm mode, so the original is
    // acknowledged only once its replacement is safely queued.
    let retry_channel = connection.create_channel().await.context("failed to open the retry channel")?;
    retry_channel.confirm_select(ConfirmSelectOptions::default()).await.context("failed to enable confirms")?;

    let consumer = channel
        .basic_consume(
            M::QUEUE.into(),
            settings.consumer_name.as_str().into(),
            // Manual acknowledgements: a message leaves the queue only after its handler is done.
            BasicConsumeOptions { no_ack: false, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("failed to consume {}", M::QUEUE))?;
    tracing::info!(queue = M::QUEUE, consumer = %settings.consumer_name, "consuming");

    let outcome = consumer
        .take_until(cancel.cancelled())
        .map_err(anyhow::Error::from)
        .try_for_each_concurrent(usize::from(settings.prefetch.max(1)), |delivery| {
            let handler = Arc::clone(handler);
            let retry_channel = retry_channel.clone();
            async move {
                handle_delivery::<M, H, F>(delivery, &handler, &retry_channel, settings).await;
                Ok(())
            }
        })
        .await;
    let _ = connection.close(200, "consumer stopping".into()).await;
    outcome.context("consumer stream failed")
}

async fn handle_delivery<M, H, F>(delivery: Delivery, handler: &H, retry_channel: &Channel, settings: &ConsumerSettings)
where
    M: Message,
    H: Fn(M, Attempt) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let attempt = attempt_of(&delivery.properties);
    let attempt_information = Attempt { number: attempt, is_last: attempt >= settings.max_attempts };
    let correlation_id = delivery.properties.correlation_id().as_ref().map(ToString::to_string).unwrap_or_default();
    let span = tracing::info_span!("message", queue = M::QUEUE, correlation_id = %correlation_id, attempt);
    async move {
        let message = match serde_json::from_slice::<M>(&delivery.data) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%error, "message cannot be decoded; dead-lettering it");
                reject(&delivery).await;
                return;
            }
        };
        match handler(message, attempt_information).await {
            Ok(()) => {
                if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::warn!(%error, "failed to acknowledge; the message will be redelivered");
                }
            }
            Err(HandlerError::Reject(error)) => {
                tracing::error!(error = format!("{error:#}"), "message rejected; dead-lettering it");
                reject(&delivery).await;
            }
            Err(HandlerError::Retry(error)) if attempt < settings.max_attempts => {
                tracing::warn!(error = format!("{error:#}"), "handler failed; retrying later");
                let backoff = settings.retry_backoff * 2u32.pow(attempt.saturating_sub(1).min(6));
                tokio::time::sleep(backoff).await;
                match republish(&delivery, retry_channel, attempt + 1).await {
                    Ok(()) => {
                        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                            tracing::warn!(%error, "failed to acknowledge a retried message; it may run twice");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "failed to schedule a retry; requeueing");
                        let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                    }
                }
            }
            Err(HandlerError::Retry(error)) => {
                tracing::error!(error = format!("{error:#}"), attempts = attempt, "giving up; dead-lettering the message");
                reject(&delivery).await;
            }
        }
    }
    .instrument(span)
    .await;
}

async fn reject(delivery: &Delivery) {
    // requeue: false sends it to the queue's dead-letter queue (see topology).
    if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
        tracing::warn!(%error, "failed to reject a message; it will be redelivered");
    }
}

async fn republish(delivery: &Delivery, channel: &Channel, next_attempt: u32) -> anyhow::Result<()> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(ShortString::from(ATTEMPT_HEADER), AMQPValue::LongLongInt(i64::from(next_attempt)));
    let properties: BasicProperties = delivery.properties.clone().with_headers(headers);
    let confirmation = channel
        .basic_publish(
            "".into(),
            delivery.routing_key.clone(),
            lapin::options::BasicPublishOptions { mandatory: true, ..Default::default() },
            &delivery.data,
            properties,
        )
        .await?
        .await?;
    anyhow::ensure!(confirmation.is_ack(), "broker did not confirm the retry");
    Ok(())
}

fn attempt_of(properties: &BasicProperties) -> u32 {
    let value = properties.headers().as_ref().and_then(|headers| headers.inner().get(ATTEMPT_HEADER).cloned());
    let attempt = match value {
        Some(AMQPValue::LongLongInt(number)) => number,
        Some(AMQPValue::LongInt(number)) => i64::from(number),
        Some(AMQPValue::LongUInt(number)) => i64::from(number),
        Some(AMQPValue::ShortInt(number)) => i64::from(number),
        Some(AMQPValue::ShortShortInt(number)) => i64::from(number),
        _ => 1,
    };
    u32::try_from(attempt.max(1)).unwrap_or(u32::MAX)
}
