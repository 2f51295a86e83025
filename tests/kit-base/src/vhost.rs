//! A RabbitMQ vhost of a test's own, created and deleted through the management API: the one
//! helper the messaging tests of the services (common, product) and the end-to-end kit share.
//! It panics on failure, as a test helper does; the kit's `VirtualHost` builds on
//! [`Management`] for the harness, which reports failures instead.

use reqwest::Method;
use serde_json::Value;

use crate::management::Management;
use crate::servers::ServerUrls;

pub struct TestVirtualHost {
    pub name: String,
    /// `amqp://user:pass@host:port/<vhost>`.
    pub amqp_url: String,
    pub management: Management,
}

impl TestVirtualHost {
    /// Creates a vhost named `<prefix>-<uuid>` on the servers of the environment
    /// (`E2E_RABBITMQ_URL`, `E2E_RABBITMQ_MANAGEMENT_URL`) and gives the management user (guest
    /// unless the URL names another) full rights on it.
    pub async fn create(prefix: &str) -> Self {
        let servers = ServerUrls::from_environment();
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let management = Management::new(servers.rabbitmq_management_login());
        management.create_vhost(&name).await.unwrap_or_else(|error| panic!("{error:#}"));
        management.grant_access(&name).await.unwrap_or_else(|error| panic!("{error:#}"));
        Self { amqp_url: format!("{}/{name}", servers.rabbitmq), management, name }
    }

    /// Any management API call; panics unless it succeeds.
    pub async fn management(&self, method: Method, path: &str, body: Option<Value>) {
        self.management.request(method, path, body).await.unwrap_or_else(|error| panic!("{error:#}"));
    }

    pub async fn delete(self) {
        self.management.delete_vhost(&self.name).await.unwrap_or_else(|error| panic!("{error:#}"));
    }
}

#[cfg(feature = "amqp")]
mod amqp {
    use std::time::{Duration, Instant};

    use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties};

    use super::TestVirtualHost;

    impl TestVirtualHost {
        pub async fn channel(&self) -> (Connection, lapin::Channel) {
            let connection =
                Connection::connect(&self.amqp_url, ConnectionProperties::default()).await.expect("connect to RabbitMQ");
            let channel = connection.create_channel().await.expect("open a channel");
            (connection, channel)
        }

        /// Waits (at most 10 s) until `queue` holds `expected` ready messages, then takes them
        /// out; fails when it holds another number.
        pub async fn take_exactly(&self, queue: &str, expected: u32) -> Vec<lapin::message::BasicGetMessage> {
            let (connection, channel) = self.channel().await;
            let deadline = Instant::now() + Duration::from_secs(10);
            let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            loop {
                let count = channel
                    .queue_declare(queue.into(), passive, FieldTable::default())
                    .await
                    .expect("queue exists")
                    .message_count();
                if count >= expected || Instant::now() >= deadline {
                    assert_eq!(count, expected, "messages in {queue}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut messages = Vec::new();
            while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.expect("basic.get")
            {
                message.delivery.ack(BasicAckOptions::default()).await.expect("ack");
                messages.push(message);
            }
            let _ = connection.close(200, "done".into()).await;
            messages
        }

        /// Takes every message now in `queue` (acknowledging them); none while the queue does
        /// not exist yet (a publisher declares it on its first publish).
        pub async fn take_all(&self, queue: &str) -> Vec<Vec<u8>> {
            let (connection, channel) = self.channel().await;
            let mut bodies = Vec::new();
            loop {
                let message = match channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(error) if format!("{error:?}").contains("NOTFOUND") => break,
                    Err(error) => panic!("basic.get from {queue}: {error}"),
                };
                message.delivery.ack(BasicAckOptions::default()).await.expect("ack");
                bodies.push(message.delivery.data.clone());
            }
            let _ = connection.close(200, "done".into()).await;
            bodies
        }
    }
}
