//! The supervised consumer against a real RabbitMQ, in a vhost of its own per test (created and
//! deleted through the management API): a message that keeps failing is retried a bounded number
//! of times and then dead-lettered, one that cannot be decoded is dead-lettered at once, and in
//! both cases the consumer goes on with the next message.
//!
//! The broker is `RABBITMQ_URL_WITHOUT_VHOST` (default `amqp://guest:guest@127.0.0.1:5672`) with
//! its management API at `RABBITMQ_MANAGEMENT_URL` (default `http://127.0.0.1:15672`, guest/guest).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::messaging::consumer::ATTEMPT_HEADER;
use common::messaging::events::InventoryRelease;
use common::messaging::topology::{INVENTORY_RELEASE, dead_letter_queue};
use common::messaging::{ConsumerSettings, HandlerError, Publisher, consume};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

/// A vhost that exists for one test.
struct TestVirtualHost {
    name: String,
    amqp_url: String,
    management_url: String,
    http: reqwest::Client,
}

impl TestVirtualHost {
    async fn create() -> Self {
        let server = common::config::env_or("RABBITMQ_URL_WITHOUT_VHOST", "amqp://guest:guest@127.0.0.1:5672");
        let management_url = common::config::env_or("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672");
        let name = format!("consumer-test-{}", uuid::Uuid::new_v4().simple());
        let vhost = Self { amqp_url: format!("{server}/{name}"), management_url, http: reqwest::Client::new(), name };
        vhost.management(reqwest::Method::PUT, &format!("/api/vhosts/{}", vhost.name), None).await;
        let rights = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        vhost.management(reqwest::Method::PUT, &format!("/api/permissions/{}/guest", vhost.name), Some(rights)).await;
        vhost
    }

    async fn management(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) {
        let mut request =
            self.http.request(method.clone(), format!("{}{path}", self.management_url)).basic_auth("guest", Some("guest"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        assert!(response.status().is_success(), "{method} {path} answered {}", response.status());
    }

    async fn delete(self) {
        self.management(reqwest::Method::DELETE, &format!("/api/vhosts/{}", self.name), None).await;
    }

    async fn channel(&self) -> (Connection, lapin::Channel) {
        let connection = Connection::connect(&self.amqp_url, ConnectionProperties::default()).await.expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("open a channel");
        (connection, channel)
    }

    /// Waits until `queue` holds `expected` ready messages, then takes them out.
    async fn take_exactly(&self, queue: &str, expected: u32) -> Vec<lapin::message::BasicGetMessage> {
        let (connection, channel) = self.channel().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        loop {
            let count =
                channel.queue_declare(queue.into(), passive, FieldTable::default()).await.expect("queue exists").message_count();
            if count >= expected || Instant::now() >= deadline {
                assert_eq!(count, expected, "messages in {queue}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut messages = Vec::new();
        while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.expect("basic.get") {
            message.delivery.ack(BasicAckOptions::default()).await.expect("ack");
            messages.push(message);
        }
        let _ = connection.close(200, "done".into()).await;
        messages
    }
}

fn fast_settings() -> ConsumerSettings {
    ConsumerSettings { max_attempts: 3, retry_backoff: Duration::from_millis(10), ..ConsumerSettings::new("consumer test") }
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_after_the_last_attempt_and_the_consumer_goes_on() {
    let vhost = TestVirtualHost::create().await;
    let attempts_at_the_failing_message = Arc::new(AtomicU32::new(0));
    let handled_after_it = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let (attempts, handled) = (Arc::clone(&attempts_at_the_failing_message), Arc::clone(&handled_after_it));
            move |release: InventoryRelease| {
                let (attempts, handled) = (Arc::clone(&attempts), Arc::clone(&handled));
                async move {
                    if release.order_id == "always-fails" {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        Err(HandlerError::Retry(anyhow::anyhow!("a failure that does not go away")))
                    } else {
                        handled.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "always-fails".into() }).await.expect("publish");
    publisher.publish(&InventoryRelease { order_id: "fine".into() }).await.expect("publish");

    let dead_letters = vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 1).await;
    let dead_letter: InventoryRelease = serde_json::from_slice(&dead_letters[0].delivery.data).expect("the original payload");
    assert_eq!(dead_letter.order_id, "always-fails");
    let last_attempt =
        dead_letters[0].delivery.properties.headers().as_ref().and_then(|headers| headers.inner().get(ATTEMPT_HEADER).cloned());
    assert_eq!(last_attempt, Some(AMQPValue::LongLongInt(3)), "the dead letter records its last attempt");
    assert_eq!(attempts_at_the_failing_message.load(Ordering::SeqCst), 3, "tried exactly max_attempts times");
    assert_eq!(handled_after_it.load(Ordering::SeqCst), 1, "the next message was handled");
    vhost.take_exactly(INVENTORY_RELEASE, 0).await;

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_message_that_cannot_be_decoded_is_dead_lettered_at_once_and_the_consumer_goes_on() {
    let vhost = TestVirtualHost::create().await;
    let calls = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let calls = Arc::clone(&calls);
            move |_release: InventoryRelease| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher
        .publish_raw(INVENTORY_RELEASE, "garbage", "1", b"{\"not\": \"a release\"}", FieldTable::default())
        .await
        .expect("publish");
    publisher.publish(&InventoryRelease { order_id: "fine".into() }).await.expect("publish");

    let dead_letters = vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 1).await;
    assert_eq!(dead_letters[0].delivery.data, b"{\"not\": \"a release\"}");
    assert!(
        dead_letters[0]
            .delivery
            .properties
            .headers()
            .as_ref()
            .is_none_or(|headers| !headers.inner().contains_key(ATTEMPT_HEADER)),
        "not retried"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only the decodable message reached the handler");

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}
