//! Publishing with publisher confirms: `publish` returns only once the broker has taken
//! responsibility for the message (written it to a durable queue), so a caller that marks an
//! outbox entry as sent after `publish` returns never loses one.

use std::time::Duration;

use anyhow::Context;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;
use tracing::Instrument as _;

use super::{Message, topology};
use crate::failure::DependencyUnavailable;

/// AMQP delivery mode 2: the broker writes the message to disk, so it survives a restart.
const PERSISTENT: u8 = 2;

/// How long connecting (and opening the confirm channel and declaring the topology) may take. A
/// broker that does not answer in this time is treated as down; the caller retries later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long handing a message to the broker and waiting for its confirm may take. A confirm
/// normally arrives within milliseconds; one that has not arrived after this long belongs to a
/// connection that is cut or a broker that is blocked (a memory or disk alarm), and the caller
/// must learn that rather than wait for ever with an outbox entry or a delivery in hand.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a publish did not get the broker's confirm. Carried in the `anyhow::Error` that
/// [`Publisher::publish`] returns; the variants that say the broker is unavailable carry
/// [`DependencyUnavailable`] as their source, so that a handler's `?` classifies them by type
/// (see [`crate::failure`]).
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// No confirm within [`CONFIRM_TIMEOUT`] (or no connection within [`CONNECT_TIMEOUT`]): the
    /// broker or the way to it is down. The message may or may not have been taken; the caller
    /// publishes again and the idempotent consumer ignores a duplicate.
    #[error("the broker did not answer within {after:?}")]
    TimedOut {
        after: Duration,
        #[source]
        unavailable: DependencyUnavailable,
    },
    /// The broker nacked the message: it could not take responsibility for it (an internal error,
    /// a queue process that crashed). That is the broker's condition, not the message's.
    #[error("the broker refused the message")]
    Refused(#[source] DependencyUnavailable),
    /// The broker confirmed but returned the message: no queue is bound to its routing key. The
    /// topology is declared on every connect, so this means a queue was deleted by hand.
    #[error("no queue took the message")]
    Returned,
}

impl PublishFailure {
    fn timed_out(after: Duration) -> Self {
        PublishFailure::TimedOut { after, unavailable: DependencyUnavailable::new("RabbitMQ") }
    }

    fn refused() -> Self {
        PublishFailure::Refused(DependencyUnavailable::new("RabbitMQ"))
    }
}

/// Publishes on `channel` (which must be in confirm mode) and waits at most `timeout` for the
/// broker's confirm: the one way every message of the shop is handed to the broker (the
/// publisher's, the consumer's retries and delayed copies, the dead-letter replay). Mandatory, so
/// a message that no queue takes comes back as [`PublishFailure::Returned`] instead of
/// vanishing.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    (exchange, routing_key): (&str, &str),
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> anyhow::Result<()> {
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let confirmation = tokio::time::timeout(timeout, async {
        channel.basic_publish(exchange.into(), routing_key.into(), options, payload, properties).await?.await
    })
    .await
    .map_err(|_elapsed| PublishFailure::timed_out(timeout))??;
    // A confirm is an ack (the broker has the message) or a nack; an ack that carries a returned
    // message means no queue took it. Neither closes the channel.
    if !confirmation.is_ack() {
        return Err(PublishFailure::refused().into());
    }
    if confirmation.take_message().is_some() {
        return Err(PublishFailure::Returned.into());
    }
    Ok(())
}

/// A lazily connected publisher. Cheap to share in an `Arc`, and shared: the outbox relay's
/// concurrent publishes and every handler of a service use the same connection. So a failed
/// publish never closes it for the others: a publish that times out or is refused reports its
/// failure to its caller only, and the link is replaced only once lapin itself reports the
/// connection or channel closed (which a cut connection reaches through its heartbeat).
pub struct Publisher {
    url: String,
    connection_name: String,
    /// The user the URL logs in as, stamped on every message as its `user_id`.
    user: String,
    /// The queues declared on every connect: every queue unless [`Self::declaring`] says which.
    declares: Vec<&'static str>,
    /// The live connection and its confirm-mode channel, or `None` until first use. The lock is
    /// held only while checking or (re)connecting, never while waiting for a confirm.
    link: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(url: impl Into<String>, connection_name: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            user: super::broker_user_of(&url),
            url,
            connection_name: connection_name.into(),
            declares: topology::QUEUES.to_vec(),
            link: Mutex::new(None),
        }
    }

    /// Declares only `queues` on connect: a service's own ([`topology::Service::declares`]),
    /// which are all its broker user may declare.
    pub fn declaring(mut self, queues: Vec<&'static str>) -> Self {
        self.declares = queues;
        self
    }

    /// The broker user this publisher publishes as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Publishes a typed message with a fresh message id, in a `publish` span that continues the
    /// current trace (see `crate::telemetry`).
    pub async fn publish<M: Message>(&self, message: &M) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(message).context("failed to serialise message")?;
        let message_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = message.correlation_id();
        let span = publish_span(M::QUEUE, &correlation_id, crate::telemetry::current_traceparent().as_deref());
        let headers =
            context_headers(crate::request_id::current().as_deref(), crate::telemetry::traceparent_of(&span).as_deref());
        self.publish_raw(M::QUEUE, &correlation_id, &message_id, &payload, headers).instrument(span).await
    }

    /// Publishes bytes to `queue` and waits (at most [`CONFIRM_TIMEOUT`]) for the broker's confirm.
    pub async fn publish_raw(
        &self,
        queue: &str,
        correlation_id: &str,
        message_id: &str,
        payload: &[u8],
        headers: FieldTable,
    ) -> anyhow::Result<()> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(PERSISTENT)
            .with_correlation_id(correlation_id.into())
            .with_message_id(message_id.into())
            .with_app_id(self.connection_name.as_str().into())
            // Who published it: RabbitMQ refuses a user_id that is not the connection's user, so
            // consumers can tell which service's credentials sent a message.
            .with_user_id(self.user.as_str().into())
            .with_headers(headers);
        self.publish_with_properties("", queue, payload, properties)
            .await
            .with_context(|| format!("failed to publish message {message_id} to queue {queue}"))
    }

    /// Publishes with the caller's own properties (the consumer's retries and delays keep the
    /// original message's) and waits for the confirm, within the same timeouts.
    pub async fn publish_with_properties(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        publish_confirmed(&channel, (exchange, routing_key), payload, properties, CONFIRM_TIMEOUT).await
    }

    /// The confirm channel, connecting first if there is no live one. A link whose connection or
    /// channel lapin reports closed is replaced here, by whichever publish comes next.
    async fn channel(&self) -> anyhow::Result<Channel> {
        let mut link = self.link.lock().await;
        if let Some((connection, channel)) = link.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        if let Some((broken, _)) = link.take() {
            // Best effort: it is already closed or closing; this frees its resources.
            let _ = tokio::time::timeout(Duration::from_secs(1), broken.close(200, "replacing a broken link".into())).await;
        }
        let (connection, channel) = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_elapsed| PublishFailure::timed_out(CONNECT_TIMEOUT))
            .with_context(|| format!("failed to connect to RabbitMQ as {}", self.connection_name))??;
        *link = Some((connection, channel.clone()));
        Ok(channel)
    }

    async fn connect(&self) -> anyhow::Result<(Connection, Channel)> {
        let connection = super::connect(&self.url, &self.connection_name)
            .await
            .with_context(|| format!("failed to connect to RabbitMQ as {}", self.connection_name))?;
        topology::declare(&connection, &self.declares).await.context("failed to declare the queue topology")?;
        let channel = connection.create_channel().await.context("failed to open a channel")?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.context("failed to enable publisher confirms")?;
        Ok((connection, channel))
    }

    /// Whether the broker takes connections, for `/ready`. A live link passes at once. Without
    /// one, a probe connection of its own is opened and closed: a check never connects the
    /// publisher itself, which stays connected on first use only.
    pub async fn check(&self) -> anyhow::Result<()> {
        if let Some((connection, channel)) = self.link.lock().await.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(());
        }
        let name = format!("{} (readiness probe)", self.connection_name);
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, super::connect(&self.url, &name))
            .await
            .map_err(|_elapsed| PublishFailure::timed_out(CONNECT_TIMEOUT))?
            .context("failed to connect to RabbitMQ")?;
        let _ = tokio::time::timeout(Duration::from_secs(1), connection.close(200, "readiness probe done".into())).await;
        Ok(())
    }

    /// Closes the connection, if any.
    pub async fn close(&self) {
        if let Some((connection, _)) = self.link.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), connection.close(200, "shutting down".into())).await;
        }
    }
}

/// The span of one publish, a child of `parent` (a `traceparent`; a root without one). Its own
/// context is what the message carries on (see `crate::telemetry`).
pub fn publish_span(queue: &str, correlation_id: &str, parent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        queue,
        correlation_id,
        trace_id = tracing::field::Empty,
        otel.name = %format_args!("publish {queue}"),
        otel.kind = "producer",
    );
    crate::telemetry::continue_trace(&span, parent);
    span
}

/// The AMQP headers that carry the request id and the trace context of a message (each left out
/// when absent).
pub fn context_headers(request_id: Option<&str>, traceparent: Option<&str>) -> FieldTable {
    let mut headers = FieldTable::default();
    for (name, value) in [(crate::request_id::HEADER, request_id), (crate::telemetry::TRACEPARENT, traceparent)] {
        if let Some(value) = value {
            headers.insert(name.into(), lapin::types::AMQPValue::LongString(value.into()));
        }
    }
    headers
}
