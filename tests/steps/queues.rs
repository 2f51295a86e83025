//! Steps about RabbitMQ itself: publishing raw messages (to duplicate an event), asserting dead
//! letters, and the management API's queue listing.

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{then, when};
use serde_json::Value;

use common::messaging::topology::Service;
use shop_testkit::eventually::eventually;
use shop_testkit::rabbitmq::Sender;
use shop_testkit::system::ServiceName;
use shop_testkit::world::{Response, ShopWorld};

/// The doc string of a step that publishes a message, and the message's correlation id (what the
/// consumer's log lines and a dead-letter expectation name it by): the order id it carries, else
/// its product id, else a fresh id printed here.
fn message_of(world: &ShopWorld, step: &Step, queue: &str) -> (String, String) {
    let payload = world.interpolate(step.docstring.as_deref().expect("the message is given as a doc string"));
    let json: Value = serde_json::from_str(&payload).expect("the message is JSON");
    let correlation_id = match json.get("order_id").or_else(|| json.get("product_id")).and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => {
            let id = format!("message-{}", uuid::Uuid::new_v4().simple());
            println!("      published to {queue} with the correlation id {id}");
            id
        }
    };
    (payload, correlation_id)
}

/// Publishes the doc string to the queue, as the service that owns the queue's events.
#[when(expr = "I publish to the queue {string}:")]
async fn publish_to_queue(world: &mut ShopWorld, step: &Step, queue: String) {
    let (payload, correlation_id) = message_of(world, step, &queue);
    world.system().vhost.publish(&queue, payload.as_bytes(), &correlation_id).await.unwrap_or_else(|error| panic!("{error:#}"));
}

fn service_of(name: &str) -> Service {
    Service::ALL
        .into_iter()
        .find(|service| service.broker_user() == name)
        .unwrap_or_else(|| panic!("{name:?} is not a service that speaks on the broker"))
}

/// Publishes the doc string with a service's broker credentials, stamped with its own user (the
/// only one the broker lets it stamp), to a queue whose events that service may not own.
#[when(expr = "the {word} service's broker user publishes to the queue {string}:")]
async fn service_publishes(world: &mut ShopWorld, step: &Step, service: String, queue: String) {
    let (payload, correlation_id) = message_of(world, step, &queue);
    let sender = Sender::Service(service_of(&service));
    let user_id = Some(service.as_str());
    let vhost = &world.system().vhost;
    vhost
        .publish_as(sender, user_id, &queue, payload.as_bytes(), &correlation_id)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
}

/// Publishes the doc string with the test user's credentials (every right on the vhost, as an
/// administrator's) and no `user_id` property.
#[when(expr = "an administrator of the broker publishes to the queue {string} without a user id:")]
async fn administrator_publishes(world: &mut ShopWorld, step: &Step, queue: String) {
    let (payload, correlation_id) = message_of(world, step, &queue);
    let vhost = &world.system().vhost;
    vhost
        .publish_as(Sender::Harness, None, &queue, payload.as_bytes(), &correlation_id)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
}

/// Tries to publish the doc string with a service's broker credentials, stamped with another
/// user's name; keeps the broker's refusal (there must be one) as BROKER_REFUSAL.
#[when(expr = "the {word} service's broker user tries to publish to the queue {string} as the user {string}:")]
async fn service_tries_to_publish_as(world: &mut ShopWorld, step: &Step, service: String, queue: String, user_id: String) {
    let (payload, correlation_id) = message_of(world, step, &queue);
    let sender = Sender::Service(service_of(&service));
    let vhost = &world.system().vhost;
    let outcome = vhost.publish_as(sender, Some(&user_id), &queue, payload.as_bytes(), &correlation_id).await;
    let refusal = outcome.expect_err("the broker took a message stamped with another user's name");
    world.remember("BROKER_REFUSAL", format!("{refusal:#}"));
}

#[then(expr = "the broker refused it, saying {string}")]
async fn broker_refused(world: &mut ShopWorld, expected: String) {
    let refusal = world.variable("BROKER_REFUSAL");
    assert!(refusal.contains(&expected), "the broker's refusal does not say {expected:?}: {refusal}");
}

/// The message named lands in the dead-letter queue of `queue`, refused by its consumer for who
/// published it (`by` is a broker user, or "nobody" for a message without a user id), with that
/// reason; from now on the scenario expects it there (see `message_is_dead_lettered`).
#[then(expr = "the message {string} is refused from {string} as published by {string}")]
async fn message_is_refused(world: &mut ShopWorld, name: String, queue: String, by: String) {
    let name = world.interpolate(&name);
    let url = world.system().vhost.amqp_url.clone();
    let reason = if by == "nobody" { "published without a user_id".to_owned() } else { format!("the broker user {by:?}") };
    eventually(Duration::from_secs(30), &format!("{name:?} refused from {queue} for {reason:?}"), || {
        let (url, queue, name, reason) = (url.clone(), queue.clone(), name.clone(), reason.clone());
        async move {
            let letters =
                common::messaging::dead_letters::peek(&url, &queue, 1000).await.map_err(|error| format!("{error:#}"))?;
            let mine: Vec<_> = letters.iter().filter(|letter| letter.correlation_id.as_deref() == Some(name.as_str())).collect();
            match mine.as_slice() {
                [letter] if letter.reason.as_deref().is_some_and(|text| text.contains(&reason)) => Ok(()),
                other => Err(format!("its dead letters: {other:?}")),
            }
        }
    })
    .await;
    world.expect_dead_letter(&queue, &name, false);
}

/// Publishes the doc string to the queue under a name of the scenario's choosing, its correlation
/// id: for a message that carries no order id to be named by.
#[when(expr = "I publish the message {string} to the queue {string}:")]
async fn publish_named_message(world: &mut ShopWorld, step: &Step, name: String, queue: String) {
    let payload = world.interpolate(step.docstring.as_deref().expect("the message is given as a doc string"));
    serde_json::from_str::<Value>(&payload).expect("the message is JSON");
    world.system().vhost.publish(&queue, payload.as_bytes(), &name).await.unwrap_or_else(|error| panic!("{error:#}"));
}

/// The message named (by the order id it carries, or the name it was published under) lands in
/// the dead-letter queue of `queue`: waited for, since dead-lettering may come after the
/// consumer's retries. From now on the scenario expects it there: the error lines its consumer
/// logged while handling that message (and only those) are excused, and the teardown checks that
/// the dead-letter queue holds exactly the messages so expected.
#[then(expr = "the message {string} is dead-lettered from {string}")]
async fn message_is_dead_lettered(world: &mut ShopWorld, name: String, queue: String) {
    let name = world.interpolate(&name);
    let url = world.system().vhost.amqp_url.clone();
    // As many copies as the scenario expects of this message by now, this one included.
    let copies = 1 + world
        .expectations
        .dead_letters
        .iter()
        .filter(|expected| expected.queue == queue && expected.correlation_id == name && !expected.taken_out)
        .count();
    eventually(Duration::from_secs(30), &format!("{copies} message(s) {name:?} in the dead-letter queue of {queue}"), || {
        let (url, queue, name) = (url.clone(), queue.clone(), name.clone());
        async move {
            match common::messaging::dead_letters::peek(&url, &queue, 1000).await {
                Ok(letters) => {
                    let found = letters.iter().filter(|letter| letter.correlation_id.as_deref() == Some(name.as_str())).count();
                    if found >= copies {
                        Ok(())
                    } else {
                        Err(format!("{found} of them among {} dead letters: {letters:?}", letters.len()))
                    }
                }
                Err(error) => Err(format!("{error:#}")),
            }
        }
    })
    .await;
    world.expect_dead_letter(&queue, &name, false);
}

/// What `cargo xtask dlq show` reads: the queue's dead letters, left in place. Waits for the
/// count to arrive (dead-lettering comes after the consumer's retries).
#[then(expr = "{string} has {int} dead letter(s)")]
async fn queue_has_dead_letters(world: &mut ShopWorld, queue: String, expected: usize) {
    let url = world.system().vhost.amqp_url.clone();
    let letters = eventually(Duration::from_secs(30), &format!("{expected} dead letter(s) of {queue}"), || {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            match common::messaging::dead_letters::peek(&url, &queue, expected + 10).await {
                Ok(letters) if letters.len() == expected => Ok(letters),
                Ok(letters) => Err(format!("{} dead letters: {letters:?}", letters.len())),
                Err(error) => Err(format!("{error:#}")),
            }
        }
    })
    .await;
    world.dead_letters = letters;
}

/// Why the dead letters the previous step saw died, as `cargo xtask dlq show` says it.
#[then(expr = "each of them was {word} by the consumer of {string}")]
async fn each_dead_letter_was(world: &mut ShopWorld, reason: String, queue: String) {
    assert!(!world.dead_letters.is_empty(), "no dead letters were looked at");
    for letter in &world.dead_letters {
        assert_eq!(letter.reason.as_deref(), Some(reason.as_str()), "{letter:?}");
        assert_eq!(letter.from_queue.as_deref(), Some(queue.as_str()), "{letter:?}");
    }
}

/// `cargo xtask dlq replay --queue Q`: every dead letter of the queue back to its consumer.
#[when(expr = "the dead letters of {string} are replayed")]
async fn dead_letters_are_replayed(world: &mut ShopWorld, queue: String) {
    let url = world.system().vhost.replay_url(&queue);
    let replayed = common::messaging::dead_letters::replay(&url, &queue).await.unwrap_or_else(|error| panic!("{error:#}"));
    assert_eq!(replayed, world.dead_letters.len(), "replayed other than the dead letters seen before");
}

#[when("I list the queues through the RabbitMQ management API")]
async fn list_queues(world: &mut ShopWorld) {
    let vhost = world.system().vhost.clone();
    // The management API samples its statistics every few seconds, so right after a burst of
    // activity it may still show messages, or no consumers yet. Wait until what it reports agrees
    // with the broker's exact counts (passive declares): no message in any queue and the true
    // number of consumers. Keep whatever it last reported if it never does, so the assertion after
    // this step shows it.
    let mut last = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if let Ok(overview) = vhost.queue_overview().await {
            let mut agrees = !overview.is_empty();
            for queue in &overview {
                let name = queue["name"].as_str().unwrap_or_default();
                let exact_consumers = vhost.exact_counts(name).await.map(|(_, consumers)| u64::from(consumers)).ok();
                agrees &= queue["messages"].as_u64() == Some(0) && queue["consumers"].as_u64() == exact_consumers;
            }
            last = overview;
            if agrees {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let json = Value::Array(last);
    world.last = Some(Response {
        status: 200,
        version: String::new(),
        headers: Default::default(),
        text: json.to_string(),
        json: Some(json),
    });
}

/// The last response, the management API's list of queues, lists `queue` once, with these
/// counts: the guide's "check specific queue".
#[then(expr = "the queue {string} is listed with {int} message(s) and {int} consumer(s)")]
async fn queue_is_listed_with(world: &mut ShopWorld, queue: String, messages: u64, consumers: u64) {
    let response = world.last_response();
    let listed: Vec<&Value> =
        response.json().as_array().into_iter().flatten().filter(|listed| listed["name"] == queue.as_str()).collect();
    let [listed] = listed.as_slice() else { panic!("expected {queue:?} listed once: {}", response.text) };
    assert_eq!(listed["messages"].as_u64(), Some(messages), "messages in {queue:?}: {listed}");
    assert_eq!(listed["consumers"].as_u64(), Some(consumers), "consumers of {queue:?}: {listed}");
}

/// The queue holds exactly `expected` ready messages, once it has had time to receive them: a
/// message waiting for a consumer that is away.
#[then(expr = "the queue {string} holds {int} message(s)")]
async fn queue_holds(world: &mut ShopWorld, queue: String, expected: u32) {
    assert!(
        common::messaging::topology::QUEUES.contains(&queue.as_str()),
        "{queue:?} is not a queue of the topology: {:?}",
        common::messaging::topology::QUEUES
    );
    let vhost = world.system().vhost.clone();
    eventually(Duration::from_secs(15), &format!("{expected} message(s) ready in {queue}"), || {
        let (vhost, queue) = (vhost.clone(), queue.clone());
        async move {
            match vhost.ready_messages(&queue).await {
                Ok(count) if count == expected => Ok(()),
                Ok(count) => Err(format!("{count} message(s)")),
                Err(error) => Err(format!("{error:#}")),
            }
        }
    })
    .await;
}

/// Events stored by a MongoDB service (product or order) that it has not published yet: what
/// a broker outage leaves behind, and what the outbox relay must send once the broker is back.
#[then(expr = "{int} event(s) wait(s) in the {word} service's outbox")]
async fn events_wait_in_outbox(world: &mut ShopWorld, expected: usize, service: String) {
    let service: ServiceName = service.parse().unwrap_or_else(|error: String| panic!("{error}"));
    let system = world.system();
    let events = eventually(Duration::from_secs(15), &format!("{expected} event(s) in the {service:?} outbox"), || async {
        match system.outbox_events(service).await {
            Ok(events) if events.len() == expected => Ok(events),
            Ok(events) => Err(format!("{events:?}")),
            Err(error) => Err(format!("{error:#}")),
        }
    })
    .await;
    println!("waiting in the {service:?} outbox: {events:?}");
}
