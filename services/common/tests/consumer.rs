//! The supervised consumer against a real RabbitMQ, in a vhost of its own per test (created and
//! deleted through the management API): a message that keeps failing is retried a bounded number
//! of times and then dead-lettered, one that cannot be decoded is dead-lettered at once, and in
//! both cases the consumer goes on with the next message. An outage of a dependency
//! (`HandlerError::Unavailable`) pauses the consumer for as long as it lasts and costs no message
//! a try; a panicking handler fails only its own delivery; a message that cannot be handled yet
//! (`NotYet`) waits in the delay queue without holding a prefetch slot.
//!
//! The broker is `E2E_RABBITMQ_URL` (default `amqp://guest:guest@127.0.0.1:5672`) with its
//! management API at `E2E_RABBITMQ_MANAGEMENT_URL` (default `http://guest:guest@127.0.0.1:15672`).

use shop_testkit_base::TestVirtualHost;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::messaging::consumer::{ATTEMPT_HEADER, Attempt};
use common::messaging::events::InventoryRelease;
use common::messaging::topology::{INVENTORY_RELEASE, dead_letter_queue};
use common::messaging::{ConsumerSettings, HandlerError, Publisher, consume};
use lapin::types::{AMQPValue, FieldTable};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use tokio_util::sync::CancellationToken;

fn fast_settings() -> ConsumerSettings {
    ConsumerSettings { max_attempts: 3, retry_backoff: Duration::from_millis(10), ..ConsumerSettings::new("consumer test") }
}

#[tokio::test]
async fn a_connection_asks_for_a_short_heartbeat_unless_its_url_sets_one() {
    let vhost = TestVirtualHost::create("heartbeat").await;
    let connection = common::messaging::connect(&vhost.amqp_url, "heartbeat test").await.expect("a connection");
    // The broker offers 60 s; the connection settles on what it asked for, so a hung link is
    // given up within two heartbeats.
    assert_eq!(connection.configuration().heartbeat(), common::messaging::HEARTBEAT_SECONDS);
    let given = format!("{}?heartbeat=17", vhost.amqp_url);
    let configured = common::messaging::connect(&given, "heartbeat test").await.expect("a connection");
    assert_eq!(configured.configuration().heartbeat(), 17);
    let _ = connection.close(200, "done".into()).await;
    let _ = configured.close(200, "done".into()).await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_after_the_last_attempt_and_the_consumer_goes_on() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let attempts_at_the_failing_message = Arc::new(AtomicU32::new(0));
    let attempted_at = Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let retry_backoff = Duration::from_millis(100);
    let handled_after_it = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        ConsumerSettings { retry_backoff, ..fast_settings() },
        {
            let (attempts, handled) = (Arc::clone(&attempts_at_the_failing_message), Arc::clone(&handled_after_it));
            let attempted_at = Arc::clone(&attempted_at);
            move |release: InventoryRelease, _: Attempt| {
                let (attempts, handled) = (Arc::clone(&attempts), Arc::clone(&handled));
                let attempted_at = Arc::clone(&attempted_at);
                async move {
                    if release.order_id == "always-fails" {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        attempted_at.lock().unwrap().push(std::time::Instant::now());
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
    // The retries back off, doubling: at least the backoff before the second attempt, twice it
    // before the third.
    let attempted_at = attempted_at.lock().unwrap().clone();
    let gaps: Vec<Duration> = attempted_at.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(gaps[0] >= retry_backoff && gaps[1] >= retry_backoff * 2, "retries came after {gaps:?}");
    assert_eq!(handled_after_it.load(Ordering::SeqCst), 1, "the next message was handled");
    vhost.take_exactly(INVENTORY_RELEASE, 0).await;

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_message_that_cannot_be_decoded_is_dead_lettered_at_once_and_the_consumer_goes_on() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let calls = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let calls = Arc::clone(&calls);
            move |_release: InventoryRelease, _: Attempt| {
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

/// Polls `condition` every 20 ms until it holds or 10 s have passed (a passing test needs well
/// under a second); on timeout, panics with `what` and the last value `describe` gave.
async fn eventually(what: &str, condition: impl Fn() -> bool, describe: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last seen: {}", describe());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings for outage tests: the backoff starts at 5 ms and is capped at 40 ms, so dozens of
/// probes fit in a second.
fn outage_settings() -> ConsumerSettings {
    ConsumerSettings {
        outage_backoff: Duration::from_millis(5),
        max_outage_backoff: Duration::from_millis(40),
        ..fast_settings()
    }
}

/// A stand-in for a database: down until the test brings it back; counts the calls it refused,
/// the handlers running at once (and the most ever seen), and what it handled.
#[derive(Default)]
struct FlakyDependency {
    down: AtomicBool,
    refused: AtomicU32,
    running: AtomicU32,
    most_running_while_down: AtomicU32,
    handled: Mutex<Vec<(String, u32)>>,
}

impl FlakyDependency {
    async fn call(&self, release: InventoryRelease, attempt: Attempt) -> Result<(), HandlerError> {
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        // A moment inside the "database", so handlers that run at once overlap.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let outcome = if self.down.load(Ordering::SeqCst) {
            self.most_running_while_down.fetch_max(running, Ordering::SeqCst);
            self.refused.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::Unavailable(anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))))
        } else {
            self.handled.lock().unwrap().push((release.order_id, attempt.number));
            Ok(())
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

#[tokio::test]
async fn an_outage_of_any_length_never_dead_letters_and_the_messages_are_handled_once_it_ends() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let dependency = Arc::new(FlakyDependency::default());
    dependency.down.store(true, Ordering::SeqCst);
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        outage_settings(),
        {
            let dependency = Arc::clone(&dependency);
            move |release: InventoryRelease, attempt: Attempt| {
                let dependency = Arc::clone(&dependency);
                async move { dependency.call(release, attempt).await }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "first".into() }).await.expect("publish");
    // Once the consumer has met the outage it is paused: messages arriving now must wait for
    // the probe instead of each hammering the dependency.
    eventually("the outage met", || dependency.refused.load(Ordering::SeqCst) >= 2, || "no refusal yet".into()).await;
    dependency.most_running_while_down.store(0, Ordering::SeqCst);
    for order_id in ["second", "third"] {
        publisher.publish(&InventoryRelease { order_id: order_id.into() }).await.expect("publish");
    }

    // Ten times the tries a failing message gets (max_attempts is 3) before the outage ends.
    eventually(
        "30 refused calls",
        || dependency.refused.load(Ordering::SeqCst) >= 30,
        || format!("{} refused", dependency.refused.load(Ordering::SeqCst)),
    )
    .await;
    vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 0).await;
    dependency.down.store(false, Ordering::SeqCst);
    eventually(
        "the three messages handled",
        || dependency.handled.lock().unwrap().len() >= 3,
        || format!("{:?}", dependency.handled.lock().unwrap()),
    )
    .await;

    let mut handled = dependency.handled.lock().unwrap().clone();
    handled.sort();
    assert_eq!(
        handled,
        vec![("first".to_owned(), 1), ("second".to_owned(), 1), ("third".to_owned(), 1)],
        "each handled once, still on its first attempt"
    );
    assert_eq!(
        dependency.most_running_while_down.load(Ordering::SeqCst),
        1,
        "while paused the consumer probes with one message at a time"
    );
    vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 0).await;
    vhost.take_exactly(INVENTORY_RELEASE, 0).await;

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_consumer_paused_by_an_outage_hands_its_message_back_when_it_is_stopped() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let dependency = Arc::new(FlakyDependency::default());
    dependency.down.store(true, Ordering::SeqCst);
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        outage_settings(),
        {
            let dependency = Arc::clone(&dependency);
            move |release: InventoryRelease, attempt: Attempt| {
                let dependency = Arc::clone(&dependency);
                async move { dependency.call(release, attempt).await }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "kept".into() }).await.expect("publish");
    eventually("a refused call", || dependency.refused.load(Ordering::SeqCst) >= 3, || "none".into()).await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), consumer).await.expect("stops promptly").expect("without panicking");

    let kept = vhost.take_exactly(INVENTORY_RELEASE, 1).await;
    assert_eq!(serde_json::from_slice::<InventoryRelease>(&kept[0].delivery.data).unwrap().order_id, "kept");
    vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 0).await;
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn outages_between_failed_attempts_do_not_use_up_a_messages_tries() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let answers = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        outage_settings(),
        {
            let answers = Arc::clone(&answers);
            move |_release: InventoryRelease, _: Attempt| {
                let answers = Arc::clone(&answers);
                async move {
                    let mut answers = answers.lock().unwrap();
                    // Four outages before every real failure.
                    if answers.len() % 5 < 4 {
                        answers.push("unavailable");
                        Err(HandlerError::Unavailable(anyhow::anyhow!("the database is down")))
                    } else {
                        answers.push("failed");
                        Err(HandlerError::Retry(anyhow::anyhow!("a failure of the message's own")))
                    }
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "fails".into() }).await.expect("publish");

    let dead_letters = vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 1).await;
    let last_attempt =
        dead_letters[0].delivery.properties.headers().as_ref().and_then(|headers| headers.inner().get(ATTEMPT_HEADER).cloned());
    assert_eq!(last_attempt, Some(AMQPValue::LongLongInt(3)));
    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.iter().filter(|answer| **answer == "failed").count(), 3, "three real failures: {answers:?}");
    assert_eq!(answers.iter().filter(|answer| **answer == "unavailable").count(), 12, "and every outage waited out");

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_panicking_handler_fails_only_its_own_delivery_and_the_consumer_goes_on() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let panics = Arc::new(AtomicU32::new(0));
    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let (panics, handled) = (Arc::clone(&panics), Arc::clone(&handled));
            move |release: InventoryRelease, _: Attempt| {
                let (panics, handled) = (Arc::clone(&panics), Arc::clone(&handled));
                async move {
                    if release.order_id == "panics" {
                        panics.fetch_add(1, Ordering::SeqCst);
                        panic!("a bug in the handler");
                    }
                    handled.lock().unwrap().push(release.order_id);
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "panics".into() }).await.expect("publish");
    publisher.publish(&InventoryRelease { order_id: "before".into() }).await.expect("publish");

    let dead_letters = vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 1).await;
    assert_eq!(serde_json::from_slice::<InventoryRelease>(&dead_letters[0].delivery.data).unwrap().order_id, "panics");
    let last_attempt =
        dead_letters[0].delivery.properties.headers().as_ref().and_then(|headers| headers.inner().get(ATTEMPT_HEADER).cloned());
    assert_eq!(last_attempt, Some(AMQPValue::LongLongInt(3)), "a panic is a failed attempt, bounded like any other");
    assert_eq!(panics.load(Ordering::SeqCst), 3);

    // The consumer is still there for the next message.
    publisher.publish(&InventoryRelease { order_id: "after".into() }).await.expect("publish");
    eventually("both good messages handled", || handled.lock().unwrap().len() >= 2, || format!("{:?}", handled.lock().unwrap()))
        .await;
    let mut seen = handled.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, vec!["after".to_owned(), "before".to_owned()]);
    assert!(!consumer.is_finished(), "the consumer task is still running");

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled, without having panicked");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_message_that_cannot_be_handled_yet_waits_by_time_without_holding_the_prefetch_slot() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let record_exists = Arc::new(AtomicBool::new(false));
    let handled = Arc::new(Mutex::new(Vec::<(String, Attempt)>::new()));
    let not_yet_answers = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let settings = ConsumerSettings {
        // One slot: if waiting held it, nothing else could be handled meanwhile.
        prefetch: 1,
        not_yet_recheck_interval: Duration::from_millis(200),
        not_yet_give_up_after: Duration::from_secs(60),
        ..fast_settings()
    };
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        settings,
        {
            let (record_exists, handled, not_yet_answers) =
                (Arc::clone(&record_exists), Arc::clone(&handled), Arc::clone(&not_yet_answers));
            move |release: InventoryRelease, attempt: Attempt| {
                let (record_exists, handled, not_yet_answers) =
                    (Arc::clone(&record_exists), Arc::clone(&handled), Arc::clone(&not_yet_answers));
                async move {
                    if release.order_id == "waits" && !record_exists.load(Ordering::SeqCst) {
                        not_yet_answers.fetch_add(1, Ordering::SeqCst);
                        return Err(HandlerError::NotYet(anyhow::anyhow!("its product has no stock record yet")));
                    }
                    handled.lock().unwrap().push((release.order_id, attempt));
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "waits".into() }).await.expect("publish");
    publisher.publish(&InventoryRelease { order_id: "passes".into() }).await.expect("publish");

    eventually(
        "the message behind the waiting one handled, and the waiting one re-checked",
        || handled.lock().unwrap().len() == 1 && not_yet_answers.load(Ordering::SeqCst) >= 3,
        || format!("{:?}, {} not-yet answers", handled.lock().unwrap(), not_yet_answers.load(Ordering::SeqCst)),
    )
    .await;
    let started_waiting = Instant::now();
    record_exists.store(true, Ordering::SeqCst);
    eventually("the waiting message handled", || handled.lock().unwrap().len() == 2, || format!("{:?}", handled.lock().unwrap()))
        .await;
    assert!(started_waiting.elapsed() < Duration::from_secs(2), "re-checked within about the recheck interval");
    let handled = handled.lock().unwrap().clone();
    let (order_id, attempt) = &handled[1];
    assert_eq!(order_id, "waits");
    assert_eq!(attempt.number, 1, "waiting is not a failed attempt");
    assert!(attempt.waited >= Duration::from_millis(400), "it knows how long it waited: {:?}", attempt.waited);
    assert!(attempt.may_keep_waiting);
    vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 0).await;
    vhost.take_exactly(&common::messaging::topology::delay_queue(INVENTORY_RELEASE), 0).await;

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_message_that_waited_long_enough_gets_a_final_answer() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let final_answers = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let cancel = CancellationToken::new();
    let settings = ConsumerSettings {
        not_yet_recheck_interval: Duration::from_millis(100),
        not_yet_give_up_after: Duration::from_millis(500),
        ..fast_settings()
    };
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        settings,
        {
            let final_answers = Arc::clone(&final_answers);
            move |_release: InventoryRelease, attempt: Attempt| {
                let final_answers = Arc::clone(&final_answers);
                async move {
                    if attempt.may_keep_waiting {
                        return Err(HandlerError::NotYet(anyhow::anyhow!("still missing")));
                    }
                    // What inventory does: the reservation fails with a reason, and that is
                    // handled (published), not dead-lettered.
                    final_answers.lock().unwrap().push(attempt);
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    let published = Instant::now();
    publisher.publish(&InventoryRelease { order_id: "never-known".into() }).await.expect("publish");

    eventually("a final answer", || !final_answers.lock().unwrap().is_empty(), || "none".into()).await;
    assert!(published.elapsed() >= Duration::from_millis(500), "waited at least the configured time");
    let answers = final_answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].waited >= Duration::from_millis(500));
    vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 0).await;

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

/// Starts a consumer of `inventory_release` that records the order id of every message it
/// handles.
fn recording_consumer(
    vhost: &TestVirtualHost,
    cancel: &CancellationToken,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let handled = Arc::clone(&handled);
            move |release: InventoryRelease, _: Attempt| {
                let handled = Arc::clone(&handled);
                async move {
                    handled.lock().unwrap().push(release.order_id);
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    (handled, consumer)
}

#[tokio::test]
async fn a_consumer_started_while_the_broker_refuses_it_consumes_once_the_broker_lets_it_in() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    // The broker refuses the consumer's connections: guest has no rights on the vhost yet.
    vhost.management(reqwest::Method::DELETE, &format!("/api/permissions/{}/guest", vhost.name), None).await;
    let cancel = CancellationToken::new();
    let (handled, consumer) = recording_consumer(&vhost, &cancel);
    // Several refused connections (backing off 200, 400, 800 ms).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(!consumer.is_finished(), "the consumer gave up while the broker refused it");
    let rights = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
    vhost.management(reqwest::Method::PUT, &format!("/api/permissions/{}/guest", vhost.name), Some(rights)).await;

    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "after-the-refusal".into() }).await.expect("publish");
    eventually("the message handled", || !handled.lock().unwrap().is_empty(), || "nothing handled".into()).await;
    assert_eq!(*handled.lock().unwrap(), vec!["after-the-refusal".to_owned()]);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), consumer).await.expect("stops promptly").expect("without panicking");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_consumer_whose_queue_is_deleted_under_it_starts_again_and_goes_on() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let cancel = CancellationToken::new();
    let (handled, consumer) = recording_consumer(&vhost, &cancel);
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "before".into() }).await.expect("publish");
    eventually("the first message handled", || handled.lock().unwrap().len() == 1, || "nothing handled".into()).await;

    // The broker cancels the consumer (its stream ends without an error); the consumer must not
    // take that for a shutdown. It starts a new session, which declares the queue again.
    vhost.management(reqwest::Method::DELETE, &format!("/api/queues/{}/{INVENTORY_RELEASE}", vhost.name), None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A publish before the queue exists again is returned unroutable: try until one lands.
        if publisher.publish(&InventoryRelease { order_id: "after".into() }).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the queue was never declared again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        "the message after the deletion handled",
        || handled.lock().unwrap().len() == 2,
        || format!("handled: {:?}", handled.lock().unwrap()),
    )
    .await;
    assert_eq!(*handled.lock().unwrap(), vec!["before".to_owned(), "after".to_owned()]);
    assert!(!consumer.is_finished());

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), consumer).await.expect("stops promptly").expect("without panicking");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_handler_that_still_cannot_answer_after_the_wait_is_dead_lettered() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let calls = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let settings = ConsumerSettings {
        not_yet_recheck_interval: Duration::from_millis(100),
        not_yet_give_up_after: Duration::from_millis(300),
        ..fast_settings()
    };
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        settings,
        {
            let calls = Arc::clone(&calls);
            // A handler that breaks its contract: it never gives a final answer.
            move |_release: InventoryRelease, _: Attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(HandlerError::NotYet(anyhow::anyhow!("still missing, forever"))) }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "never-answered".into() }).await.expect("publish");

    // It is dead-lettered once it has waited long enough, instead of waiting for ever.
    let dead_letters = vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 1).await;
    assert_eq!(serde_json::from_slice::<InventoryRelease>(&dead_letters[0].delivery.data).unwrap().order_id, "never-answered");
    assert!(calls.load(Ordering::SeqCst) >= 3, "it was looked at again while it waited");
    vhost.take_exactly(INVENTORY_RELEASE, 0).await;

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_paused_consumer_probes_less_and_less_often_while_the_outage_lasts() {
    let (trouble, _recording) = record_trouble();
    let vhost = TestVirtualHost::create("consumer-test").await;
    let dependency = Arc::new(FlakyDependency::default());
    dependency.down.store(true, Ordering::SeqCst);
    let cancel = CancellationToken::new();
    // Probes wait 2, 4, 8, ... ms, at most 200 ms: about a dozen in the first second. Without
    // the back-off growing they would come every few milliseconds, hundreds a second.
    let settings = ConsumerSettings {
        outage_backoff: Duration::from_millis(2),
        max_outage_backoff: Duration::from_millis(200),
        ..fast_settings()
    };
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        settings,
        {
            let dependency = Arc::clone(&dependency);
            move |release: InventoryRelease, attempt: Attempt| {
                let dependency = Arc::clone(&dependency);
                async move { dependency.call(release, attempt).await }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "waiting".into() }).await.expect("publish");
    eventually("the outage met", || dependency.refused.load(Ordering::SeqCst) >= 1, || "no refusal yet".into()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = dependency.refused.load(Ordering::SeqCst);
    assert!(probes < 40, "{probes} probes in about a second: the back-off does not grow");
    // What an operator reads: the pause once, then the 1st, 2nd, 4th, ... failed probe, each with
    // the wait before the next one (2 ms doubled per failed probe, at most 200 ms).
    let warned = trouble.lock().unwrap().clone();
    assert!(
        warned.first().is_some_and(|first| first.message.starts_with("a dependency is unavailable; pausing the consumer")),
        "the outage's first warning is not the pause: {warned:?}"
    );
    let probes_logged: Vec<(u32, f64)> = warned[1..]
        .iter()
        .map(|warning| {
            assert_eq!(warning.message, "a dependency is still unavailable; the consumer stays paused", "{warned:?}");
            (warning.fields["failed_probes"].parse().unwrap(), warning.fields["next_probe_in_seconds"].parse().unwrap())
        })
        .collect();
    assert!(probes_logged.len() >= 2, "fewer than two failed probes logged in a second: {warned:?}");
    for (index, (failed_probes, next_probe_in_seconds)) in probes_logged.iter().enumerate() {
        assert_eq!(*failed_probes, 1 << index, "failed probes logged: {probes_logged:?}");
        let expected = (0.002 * f64::from(1u32 << failed_probes)).min(0.2);
        assert!((next_probe_in_seconds - expected).abs() < 1e-9, "after {failed_probes} failed probes: {probes_logged:?}");
    }

    dependency.down.store(false, Ordering::SeqCst);
    eventually("the message handled", || dependency.handled.lock().unwrap().len() == 1, || "not yet".into()).await;
    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_message_whose_copy_cannot_be_queued_is_kept_neither_lost_nor_dead_lettered() {
    use common::messaging::topology::delay_queue;
    let vhost = TestVirtualHost::create("consumer-test").await;
    let calls = Arc::new(AtomicU32::new(0));
    // The first call waits for the test's go, so that the delay queue can be taken away between
    // the moment the message is taken and the moment it is set aside.
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let (calls, go) = (Arc::clone(&calls), Arc::clone(&go));
            move |_release: InventoryRelease, _: Attempt| {
                let (calls, go) = (Arc::clone(&calls), Arc::clone(&go));
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        go.acquire().await.expect("the semaphore stays open").forget();
                    }
                    Err(HandlerError::NotYet(anyhow::anyhow!("on its way")))
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "kept".into() }).await.expect("publish");
    eventually("the message taken", || calls.load(Ordering::SeqCst) == 1, || "not yet".into()).await;
    // Setting the message aside now publishes a copy that no queue takes.
    vhost
        .management(reqwest::Method::DELETE, &format!("/api/queues/{}/{}", vhost.name, delay_queue(INVENTORY_RELEASE)), None)
        .await;
    go.add_permits(1);
    eventually(
        "the message handed back and taken again",
        || calls.load(Ordering::SeqCst) >= 3,
        || format!("{} calls", calls.load(Ordering::SeqCst)),
    )
    .await;
    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");

    // The original was handed back each time its copy bounced: it is in its queue, not lost and
    // not dead-lettered.
    let kept = vhost.take_exactly(INVENTORY_RELEASE, 1).await;
    assert_eq!(serde_json::from_slice::<InventoryRelease>(&kept[0].delivery.data).unwrap().order_id, "kept");
    vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 0).await;
    publisher.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_message_is_handled_in_the_scope_of_the_request_id_it_was_published_with() {
    let vhost = TestVirtualHost::create("consumer-test").await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let seen = Arc::clone(&seen);
            move |_release: InventoryRelease, _: Attempt| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(common::request_id::current());
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    common::request_id::scope("trace-7".into(), publisher.publish(&InventoryRelease { order_id: "traced".into() }))
        .await
        .expect("publish");
    publisher.publish(&InventoryRelease { order_id: "untraced".into() }).await.expect("publish");

    eventually("both messages handled", || seen.lock().unwrap().len() == 2, || format!("{:?}", seen.lock().unwrap())).await;
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&Some("trace-7".to_owned())), "the traced message kept its id: {seen:?}");
    let fresh: Vec<&String> = seen.iter().flatten().filter(|id| *id != "trace-7").collect();
    assert!(
        matches!(fresh.as_slice(), [id] if uuid::Uuid::parse_str(id).is_ok()),
        "a message without an id is handled under a new one: {seen:?}"
    );

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    publisher.close().await;
    vhost.delete().await;
}

/// Closes, through the management API, every connection to the vhost (the broker's side of a
/// connection lost), once the API lists at least one (it lists a new connection within seconds);
/// how many it closed.
/// The connections the broker's management API lists in `vhost` now.
async fn connections_in(vhost: &TestVirtualHost) -> Vec<serde_json::Value> {
    let shop_testkit_base::servers::ManagementLogin { url: management_url, user, password } =
        shop_testkit_base::ServerUrls::from_environment().rabbitmq_management_login();
    reqwest::Client::new()
        .get(format!("{management_url}/api/vhosts/{}/connections", vhost.name))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .expect("list the connections")
        .json()
        .await
        .expect("a JSON list")
}

async fn close_every_connection(vhost: &TestVirtualHost) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    let connections = loop {
        let listed = connections_in(vhost).await;
        if !listed.is_empty() || Instant::now() >= deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for connection in &connections {
        let name = connection["name"].as_str().expect("a connection name");
        let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let path = format!("/api/connections/{}", encoded.replace('+', "%20"));
        vhost.management(reqwest::Method::DELETE, &path, None).await;
    }
    connections.len()
}

/// A handler in the middle of its work when the consumer's connection is lost is dropped (its
/// message cannot be acknowledged any more): the message is delivered again and handled to the
/// end once, so its effect is done once.
#[tokio::test]
async fn a_handler_dropped_when_its_connection_is_lost_leaves_its_message_to_be_handled_again() {
    struct DropWatch(Arc<AtomicU32>);
    impl Drop for DropWatch {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let vhost = TestVirtualHost::create("consumer-test").await;
    let cancel = CancellationToken::new();
    let (started, dropped, completed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let (started, dropped, completed) = (Arc::clone(&started), Arc::clone(&dropped), Arc::clone(&completed));
            move |_release: InventoryRelease, _: Attempt| {
                let (started, dropped, completed) = (Arc::clone(&started), Arc::clone(&dropped), Arc::clone(&completed));
                async move {
                    let watch = DropWatch(dropped);
                    // The first delivery works until the connection is gone; the next finishes.
                    if started.fetch_add(1, Ordering::SeqCst) == 0 {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    completed.fetch_add(1, Ordering::SeqCst);
                    std::mem::forget(watch);
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "order-in-flight".into() }).await.expect("publish");
    publisher.close().await;
    eventually("the handler started", || started.load(Ordering::SeqCst) == 1, || "not started".into()).await;

    assert!(close_every_connection(&vhost).await >= 1, "the consumer's connection was there to close");
    eventually(
        "the message handled to the end",
        || completed.load(Ordering::SeqCst) == 1,
        || format!("started {} times, dropped {}", started.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst)),
    )
    .await;
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the first handler was dropped, not left running");
    assert_eq!(started.load(Ordering::SeqCst), 2, "delivered again once");
    // Acknowledged: nothing is left in the queue or its dead-letter queue.
    assert!(vhost.take_exactly(INVENTORY_RELEASE, 0).await.is_empty());
    assert!(vhost.take_exactly(&dead_letter_queue(INVENTORY_RELEASE), 0).await.is_empty());

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), consumer).await.expect("stops promptly").expect("without panicking");
    vhost.delete().await;
}

/// One WARN or ERROR event of our own code: its message and its other fields, as logged.
#[derive(Debug, Clone, PartialEq)]
struct Trouble {
    message: String,
    fields: std::collections::BTreeMap<String, String>,
}

impl tracing::field::Visit for Trouble {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }
}

/// Records every WARN and ERROR event of our own code (`common::*`) logged on the thread where it
/// is the default subscriber (a `#[tokio::test]` runs its tasks on one thread).
struct TroubleRecorder(Arc<Mutex<Vec<Trouble>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TroubleRecorder {
    fn on_event(&self, event: &tracing::Event<'_>, _context: tracing_subscriber::layer::Context<'_, S>) {
        let metadata = event.metadata();
        if *metadata.level() <= tracing::Level::WARN && metadata.target().starts_with("common") {
            let mut trouble = Trouble { message: String::new(), fields: Default::default() };
            event.record(&mut trouble);
            self.0.lock().unwrap().push(trouble);
        }
    }
}

/// Records our own WARN and ERROR events on this thread until the guard is dropped.
fn record_trouble() -> (Arc<Mutex<Vec<Trouble>>>, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let trouble = Arc::new(Mutex::new(Vec::new()));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(TroubleRecorder(Arc::clone(&trouble))));
    (trouble, guard)
}

/// Stopping is not trouble: a consumer cancelled while it consumes stops without a warning of a
/// lost stream or a reconnection (which the features' teardown holds against a scenario, and an
/// operator reads as an outage at every deployment).
#[tokio::test]
async fn a_cancelled_consumer_stops_without_warning_of_trouble() {
    let (trouble, _recording) = record_trouble();
    let vhost = TestVirtualHost::create("consumer-test").await;
    let handled = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn(consume::<InventoryRelease, _, _>(
        vhost.amqp_url.clone(),
        fast_settings(),
        {
            let handled = Arc::clone(&handled);
            move |_release: InventoryRelease, _: Attempt| {
                let handled = Arc::clone(&handled);
                async move {
                    handled.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        },
        cancel.clone(),
    ));
    let publisher = Publisher::new(&vhost.amqp_url, "consumer test publisher");
    publisher.publish(&InventoryRelease { order_id: "before the stop".into() }).await.expect("publish");
    eventually("the message handled", || handled.load(Ordering::SeqCst) == 1, || format!("{handled:?}")).await;

    cancel.cancel();
    consumer.await.expect("the consumer stops when cancelled");
    assert_eq!(*trouble.lock().unwrap(), Vec::new(), "a consumer stopped on purpose warned of trouble");
    publisher.close().await;
    vhost.delete().await;
}

/// The broker closes a channel, not its connection, when a publish names an exchange that does not
/// exist: the publisher's next publish opens a new channel instead of failing on the closed one.
#[tokio::test]
async fn a_publish_after_the_broker_closed_the_publisher_s_channel_goes_through_on_a_new_one() {
    let vhost = TestVirtualHost::create("publisher-channel").await;
    let publisher = Publisher::new(&vhost.amqp_url, "publisher channel test");
    publisher.publish(&InventoryRelease { order_id: "before".into() }).await.expect("the first publish");
    let refused = publisher
        .publish_with_properties("no-such-exchange", INVENTORY_RELEASE, b"{}", lapin::BasicProperties::default())
        .await
        .expect_err("the broker refuses an exchange that does not exist");
    assert!(format!("{refused:#}").to_lowercase().contains("no-such-exchange"), "{refused:#}");
    publisher.publish(&InventoryRelease { order_id: "after".into() }).await.expect("the publish after the closed channel");
    let delivered = vhost.take_all(INVENTORY_RELEASE).await;
    let order_ids: Vec<String> = delivered
        .iter()
        .map(|payload| serde_json::from_slice::<InventoryRelease>(payload).expect("a release").order_id)
        .collect();
    assert_eq!(order_ids, ["before", "after"]);
    publisher.close().await;
    vhost.delete().await;
}

/// The publisher's readiness check (`/ready`'s "broker") fails while the broker refuses it, passes
/// once it takes connections, and leaves the publisher itself unconnected until its first publish.
#[tokio::test]
async fn the_publisher_s_readiness_check_says_whether_the_broker_takes_its_connections() {
    let vhost = TestVirtualHost::create("publisher-check").await;
    // A vhost that does not exist: the broker refuses the connection, as it refuses one whose
    // permissions were revoked.
    let refused = Publisher::new(format!("{}-missing", vhost.amqp_url), "publisher check test");
    let failure = refused.check().await.expect_err("a broker that refuses the connection is not ready");
    assert!(format!("{failure:#}").contains("failed to connect to RabbitMQ"), "{failure:#}");
    let publisher = Publisher::new(&vhost.amqp_url, "publisher check test");
    publisher.check().await.expect("a broker that takes the connection is ready");
    publisher.publish(&InventoryRelease { order_id: "checked".into() }).await.expect("a publish");
    publisher.check().await.expect("a live link is ready");
    publisher.close().await;
    vhost.delete().await;
}

/// Closing the publisher (a service's stop) closes its connection to the broker at once, rather
/// than leaving it for the broker to notice when the process is gone.
#[tokio::test]
async fn a_closed_publisher_leaves_no_connection_behind() {
    let vhost = TestVirtualHost::create("publisher-close").await;
    let publisher = Publisher::new(&vhost.amqp_url, "publisher close test");
    publisher.publish(&InventoryRelease { order_id: "one".into() }).await.expect("a publish");
    // The management API's list follows the broker within its statistics interval (5 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections_in(&vhost).await.is_empty() {
        assert!(Instant::now() < deadline, "the publisher's connection never showed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publisher.close().await;
    loop {
        let left = connections_in(&vhost).await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "connections left after close: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Kept alive until here: only `close` may have closed the connection.
    drop(publisher);
    vhost.delete().await;
}
