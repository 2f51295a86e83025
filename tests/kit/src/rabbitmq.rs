//! RabbitMQ as a scenario sees it: its own vhost (created and deleted through the management
//! API), queue depths read with passive declares (exact, unlike the management API's sampled
//! statistics), raw publishes for duplicate-event scenarios, draining dead-letter queues, and an
//! outage of just this vhost (permissions revoked, connections closed).

use anyhow::{Context, bail};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use shop_testkit_base::management::Management;

use crate::infrastructure::Infrastructure;

/// One scenario's vhost: the management API for it, and AMQP connections to it.
#[derive(Clone)]
pub struct VirtualHost {
    pub name: String,
    /// `amqp://user:pass@host:port/<vhost>`: what the services of this scenario connect to.
    pub amqp_url: String,
    management: Management,
}

impl VirtualHost {
    /// Creates the vhost and gives the test user full rights on it.
    pub async fn create(infrastructure: &Infrastructure, name: String) -> anyhow::Result<Self> {
        let vhost = Self {
            amqp_url: format!("{}/{}", infrastructure.rabbitmq, name),
            management: Management::new(infrastructure.rabbitmq_management_login()),
            name,
        };
        vhost.management.create_vhost(&vhost.name).await?;
        vhost.grant_access().await?;
        Ok(vhost)
    }

    pub async fn delete(&self) -> anyhow::Result<()> {
        self.management.delete_vhost(&self.name).await
    }

    pub async fn grant_access(&self) -> anyhow::Result<()> {
        self.management.grant_access(&self.name).await
    }

    /// Takes the broker away from this scenario only: nobody may connect to the vhost any more,
    /// and every open connection to it is closed. Other scenarios' vhosts are untouched.
    ///
    /// Returns once the outage is proven: a new connection to the vhost is refused, and the
    /// broker lists no connection to it (services that reconnect are refused from now on).
    pub async fn revoke_access_and_disconnect(&self) -> anyhow::Result<()> {
        self.management.revoke_access(&self.name).await?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let connections = self.management.connection_names(&self.name).await?;
            if connections.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("connections to vhost {} are still open 20 s after closing them: {connections:?}", self.name);
            }
            for name in connections {
                // A connection may close by itself meanwhile; that is what we want anyway.
                let _ = self.management.close_connection(&name).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        if let Ok(connection) = self.connect().await {
            let _ = connection.close(200, "done".into()).await;
            bail!("access to vhost {} was revoked, but a new connection to it was accepted", self.name);
        }
        Ok(())
    }

    /// Proves the vhost can be used again: a new connection to it is accepted.
    pub async fn verify_reachable(&self) -> anyhow::Result<()> {
        let connection = self.connect().await.context("access to the vhost was given back, but connecting to it still fails")?;
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    /// `[{name, messages, consumers}]` for every queue of the vhost, as the management API
    /// reports them (its message counts are sampled every few seconds).
    pub async fn queue_overview(&self) -> anyhow::Result<Vec<Value>> {
        let queues = self.management.queues(&self.name).await?;
        Ok(queues
            .into_iter()
            .map(|queue| json!({ "name": queue.name, "messages": queue.messages, "consumers": queue.consumers }))
            .collect())
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        Connection::connect(&self.amqp_url, ConnectionProperties::default().with_connection_name("e2e harness".into()))
            .await
            .with_context(|| format!("failed to connect to vhost {}", self.name))
    }

    /// Messages ready in `queue` (not counting those a consumer holds unacknowledged: see
    /// `System::unsettled_work` for those).
    pub async fn ready_messages(&self, queue: &str) -> anyhow::Result<u32> {
        Ok(self.exact_counts(queue).await?.0)
    }

    /// `(ready messages, consumers)` of `queue` as the broker knows them right now (a passive
    /// declare). A queue that does not exist is an error: every queue of the topology is
    /// declared when the services start, so a missing one is a misspelled name or a broken
    /// topology, never "empty".
    pub async fn exact_counts(&self, queue: &str) -> anyhow::Result<(u32, u32)> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(queue.into(), passive, FieldTable::default()).await;
        let _ = connection.close(200, "done".into()).await;
        let declared = declared.with_context(|| format!("queue {queue:?} of vhost {} cannot be read", self.name))?;
        Ok((declared.message_count(), declared.consumer_count()))
    }

    /// Publishes `payload` to `queue` (through the default exchange) and waits for the confirm.
    pub async fn publish(&self, queue: &str, payload: &[u8], correlation_id: &str) -> anyhow::Result<()> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id(correlation_id.into())
            .with_message_id(uuid::Uuid::new_v4().to_string().into());
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirmation = channel.basic_publish("".into(), queue.into(), options, payload, properties).await?.await?;
        let _ = connection.close(200, "done".into()).await;
        if !confirmation.is_ack() || confirmation.take_message().is_some() {
            bail!("the broker did not accept the message for queue {queue} (is the queue declared?)");
        }
        Ok(())
    }

    /// Takes every ready message out of `queue` and returns their bodies.
    pub async fn drain(&self, queue: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        let mut bodies = Vec::new();
        while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await? {
            message.delivery.ack(BasicAckOptions::default()).await?;
            bodies.push(message.delivery.data);
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(bodies)
    }
}
