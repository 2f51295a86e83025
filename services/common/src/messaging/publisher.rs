//! Publishing with publisher confirms: `publish` returns only once the broker has taken
//! responsibility for the message (written it to a durable queue), so a caller that marks an
//! outbox entry as sent after `publish` returns never loses one.

use anyhow::{Context, bail};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use super::{Message, topology};

/// AMQP delivery mode 2: the broker writes the message to disk, so it survives a restart.
const PERSISTENT: u8 = 2;

/// A lazily connected publisher. Cheap to share in an `Arc`; reconnects on the next publish
/// after any failure.
pub struct Publisher {
    url: String,
    connection_name: String,
    /// The live connection and its confirm-mode channel, or `None` until first use and after a
    /// failure. The lock is held only while connecting, never while waiting for a confirm.
    link: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(url: impl Into<String>, connection_name: impl Into<String>) -> Self {
        Self { url: url.into(), connection_name: connection_name.into(), link: Mutex::new(None) }
    }

    /// Publishes a typed message with a fresh message id.
    pub async fn publish<M: Message>(&self, message: &M) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(message).context("failed to serialise message")?;
        let message_id = uuid::Uuid::new_v4().to_string();
        self.publish_raw(M::QUEUE, &message.correlation_id(), &message_id, &payload, FieldTable::default()).await
    }

    /// Publishes bytes to `queue` and waits for the broker's confirm.
    pub async fn publish_raw(
        &self,
        queue: &str,
        correlation_id: &str,
        message_id: &str,
        payload: &[u8],
        headers: FieldTable,
    ) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(PERSISTENT)
            .with_correlation_id(correlation_id.into())
            .with_message_id(message_id.into())
            .with_app_id(self.connection_name.as_str().into())
            .with_headers(headers);
        // Mandatory: a message that no queue takes comes back instead of vanishing.
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let outcome = async {
            let confirmation = channel.basic_publish("".into(), queue.into(), options, payload, properties).await?.await?;
            Ok::<_, lapin::Error>(confirmation)
        }
        .await;
        // A confirm is an ack (the broker has the message) or a nack; an ack that carries a
        // returned message means no queue took it.
        let outcome = outcome.map(|confirmation| confirmation.is_ack() && confirmation.take_message().is_none());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.reset().await;
                bail!("broker refused or returned message {message_id} for queue {queue}")
            }
            Err(error) => {
                self.reset().await;
                Err(error).with_context(|| format!("failed to publish message {message_id} to queue {queue}"))
            }
        }
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        let mut link = self.link.lock().await;
        if let Some((connection, channel)) = link.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let connection = super::connect(&self.url, &self.connection_name)
            .await
            .with_context(|| format!("failed to connect to RabbitMQ as {}", self.connection_name))?;
        let channel = connection.create_channel().await.context("failed to open a channel")?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.context("failed to enable publisher confirms")?;
        topology::declare(&channel).await.context("failed to declare the queue topology")?;
        *link = Some((connection, channel.clone()));
        Ok(channel)
    }

    async fn reset(&self) {
        if let Some((connection, _)) = self.link.lock().await.take() {
            let _ = connection.close(200, "resetting after a failure".into()).await;
        }
    }

    /// Closes the connection, if any.
    pub async fn close(&self) {
        if let Some((connection, _)) = self.link.lock().await.take() {
            let _ = connection.close(200, "shutting down".into()).await;
        }
    }
}
