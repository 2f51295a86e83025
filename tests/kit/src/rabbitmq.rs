//! RabbitMQ as a scenario sees it: its own vhost (created and deleted through the management
//! API), queue depths read with passive declares (exact, unlike the management API's sampled
//! statistics), raw publishes for duplicate-event scenarios, draining dead-letter queues, and an
//! outage of just this vhost (permissions revoked, connections closed).
//!
//! The services connect as their own broker users (`order`, `inventory`, `product`, each with its
//! development password, its name), given on the vhost the rights their service's
//! `topology::Service::permissions` name: the harness creates them (users are the broker's, so
//! every scenario shares them; each gets rights on its own vhost only).

use anyhow::{Context, bail};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use shop_testkit_base::management::Management;

use common::messaging::topology::{self, Service};

use crate::infrastructure::Infrastructure;

/// Whose credentials a message is published with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A service's broker user.
    Service(Service),
    /// The test user, which has every right on the vhost.
    Harness,
}

/// One scenario's vhost: the management API for it, and AMQP connections to it.
#[derive(Clone)]
pub struct VirtualHost {
    pub name: String,
    /// `amqp://user:pass@host:port/<vhost>`: what the services of this scenario connect to.
    pub amqp_url: String,
    management: Management,
}

impl VirtualHost {
    /// Creates the vhost, gives the test user full rights on it and each service's broker user
    /// its service's rights.
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

    /// Gives the test user full rights on the vhost, and each service's broker user its own.
    pub async fn grant_access(&self) -> anyhow::Result<()> {
        self.management.grant_access(&self.name).await?;
        for service in Service::ALL {
            let (user, rights) = (service.broker_user(), service.permissions());
            self.management.put_user(user, user).await?;
            self.management.set_permissions(&self.name, user, [&rights.configure, &rights.write, &rights.read]).await?;
        }
        Ok(())
    }

    /// The vhost's URL, logged in as `service`'s broker user: what that service connects with.
    pub fn url_as(&self, service: Service) -> String {
        let user = service.broker_user();
        shop_testkit_base::servers::logged_in_as(&self.amqp_url, user, user).expect("the vhost's URL has a host")
    }

    /// The URL that replays `queue`'s dead letters: as the service that consumes it, as
    /// `cargo xtask dlq replay` does.
    pub fn replay_url(&self, queue: &str) -> String {
        match topology::consumer(queue) {
            Some(consumer) => self.url_as(consumer),
            None => self.amqp_url.clone(),
        }
    }

    /// Takes the broker away from this scenario only: nobody may connect to the vhost any more,
    /// and every open connection to it is closed. Other scenarios' vhosts are untouched.
    ///
    /// Returns once the outage is proven: a new connection to the vhost is refused, and the
    /// broker lists no connection to it (services that reconnect are refused from now on).
    pub async fn revoke_access_and_disconnect(&self) -> anyhow::Result<()> {
        self.management.revoke_access(&self.name).await?;
        for service in Service::ALL {
            self.management.clear_permissions(&self.name, service.broker_user()).await?;
        }
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

    /// Publishes `payload` to `queue` (through the default exchange) as the service that owns its
    /// events (for a dead-letter queue, its work queue's), as that service would, and waits for
    /// the confirm. A queue no service owns gets it from the test user.
    pub async fn publish(&self, queue: &str, payload: &[u8], correlation_id: &str) -> anyhow::Result<()> {
        let owner = topology::owner(queue.strip_suffix(".dead_letter").unwrap_or(queue));
        let sender = owner.map(Sender::Service).unwrap_or(Sender::Harness);
        let user_id = owner.map(|owner| owner.broker_user().to_owned());
        self.publish_as(sender, user_id.as_deref(), queue, payload, correlation_id).await
    }

    /// Publishes `payload` to `queue` with `sender`'s credentials, stamped with `user_id` (none:
    /// no `user_id` property), and waits for the confirm. A broker's refusal is the error.
    pub async fn publish_as(
        &self,
        sender: Sender,
        user_id: Option<&str>,
        queue: &str,
        payload: &[u8],
        correlation_id: &str,
    ) -> anyhow::Result<()> {
        let url = match sender {
            Sender::Service(service) => self.url_as(service),
            Sender::Harness => self.amqp_url.clone(),
        };
        let connection = Connection::connect(&url, ConnectionProperties::default().with_connection_name("e2e harness".into()))
            .await
            .with_context(|| format!("failed to connect to vhost {} as {sender:?}", self.name))?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id(correlation_id.into())
            .with_message_id(uuid::Uuid::new_v4().to_string().into());
        if let Some(user_id) = user_id {
            properties = properties.with_user_id(user_id.into());
        }
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirmation =
            async { channel.basic_publish("".into(), queue.into(), options, payload, properties).await?.await }.await;
        let _ = connection.close(200, "done".into()).await;
        let confirmation = confirmation.with_context(|| format!("the broker refused the message for queue {queue}"))?;
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
