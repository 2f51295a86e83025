//! Each service's broker user against a real RabbitMQ: the rights `topology::Service::permissions`
//! gives it are enough for what the service does (declaring its queues, publishing its events,
//! consuming its queues) and refuse what it does not, and a consumer takes an event only from the
//! service that owns it.
//!
//! The users are the broker's own (`order`, `inventory`, `product`, each with its development
//! password, its name), given rights on a vhost of the test's, as the harness and `cargo xtask up`
//! give them. The broker is `E2E_RABBITMQ_URL` with its management API at
//! `E2E_RABBITMQ_MANAGEMENT_URL`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::messaging::consumer::{Attempt, PUBLISHED_BY_HEADER, REFUSED_HEADER};
use common::messaging::events::InventoryReserved;
use common::messaging::topology::{self, INVENTORY_RESERVED, ORDER_CREATED, Service, dead_letter_queue};
use common::messaging::{ConsumerSettings, Publisher, consume};
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use shop_testkit_base::TestVirtualHost;
use tokio_util::sync::CancellationToken;

/// The vhost's URL logged in as `service`'s broker user.
fn url_as(vhost: &TestVirtualHost, service: Service) -> String {
    let user = service.broker_user();
    shop_testkit_base::servers::logged_in_as(&vhost.amqp_url, user, user).expect("the vhost's URL")
}

async fn with_service_users(prefix: &str) -> TestVirtualHost {
    let vhost = TestVirtualHost::create(prefix).await;
    for service in Service::ALL {
        let user = service.broker_user();
        let rights = service.permissions();
        vhost.management.put_user(user, user).await.expect("user created");
        vhost
            .management
            .set_permissions(&vhost.name, user, [&rights.configure, &rights.write, &rights.read])
            .await
            .expect("rights given");
    }
    vhost
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default()).await.expect("connect")
}

/// Waits until `queue` has its consumer: the product service's user cannot declare another
/// service's queue, so a message sent before would find no queue.
async fn consuming(vhost: &TestVirtualHost, queue: &'static str) {
    shop_testkit_base::eventually::eventually(std::time::Duration::from_secs(10), "the consumer consuming", || async {
        let (connection, channel) = vhost.channel().await;
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let declared = channel.queue_declare(queue.into(), passive, lapin::types::FieldTable::default()).await;
        let _ = connection.close(200, "done".into()).await;
        match declared {
            Ok(queue) if queue.consumer_count() == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The order service's consumer of inventory_reserved at `url`, counting what it handles.
fn counting_consumer(url: String) -> (Arc<AtomicU32>, CancellationToken, tokio::task::JoinHandle<()>) {
    let handled = Arc::new(AtomicU32::new(0));
    let cancel = CancellationToken::new();
    let counter = Arc::clone(&handled);
    let handler = move |_event: InventoryReserved, _: Attempt| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    };
    let settings = ConsumerSettings::new("order (broker users test)");
    let consumer = tokio::spawn(consume::<InventoryReserved, _, _>(url, settings, handler, cancel.clone()));
    (handled, cancel, consumer)
}

fn refused(outcome: lapin::Result<impl std::fmt::Debug>, what: &str) -> String {
    let error = outcome.expect_err(what).to_string();
    assert!(error.contains("ACCESS_REFUSED") || error.contains("PRECONDITION_FAILED"), "{what}: {error}");
    error
}

#[tokio::test]
async fn each_service_may_declare_and_read_its_own_queues_and_no_other() {
    let vhost = with_service_users("broker-users").await;
    for service in Service::ALL {
        let connection = connect(&url_as(&vhost, service)).await;
        topology::declare(&connection, &service.declares())
            .await
            .unwrap_or_else(|error| panic!("{service:?} declares its queues: {error}"));
        let _ = connection.close(200, "done".into()).await;
    }
    let product = connect(&url_as(&vhost, Service::Product)).await;
    refused(topology::declare(&product, &[ORDER_CREATED]).await, "product declares order_created");
    let channel = product.create_channel().await.expect("a channel");
    refused(channel.basic_get(ORDER_CREATED.into(), BasicGetOptions::default()).await, "product reads order_created");
    let channel = product.create_channel().await.expect("a channel");
    let taken = channel.basic_get(dead_letter_queue(INVENTORY_RESERVED).as_str().into(), BasicGetOptions::default()).await;
    refused(taken, "product reads inventory's dead letters");
    let _ = product.close(200, "done".into()).await;
    vhost.delete().await;
}

#[tokio::test]
async fn the_broker_refuses_a_user_id_that_is_not_the_publishers_own() {
    let vhost = with_service_users("broker-users").await;
    let product = connect(&url_as(&vhost, Service::Product)).await;
    topology::declare(&product, &Service::Product.declares()).await.expect("declared");
    let channel = product.create_channel().await.expect("a channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let forged = BasicProperties::default().with_user_id("inventory".into());
    let published = async {
        channel.basic_publish("".into(), INVENTORY_RESERVED.into(), BasicPublishOptions::default(), b"{}", forged).await?.await
    };
    let error = refused(published.await, "product stamps inventory's user_id");
    assert!(error.contains("user_id"), "{error}");
    let _ = product.close(200, "done".into()).await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_consumer_takes_an_event_from_its_owner_and_dead_letters_one_from_another_service_with_the_reason() {
    let vhost = with_service_users("broker-users").await;
    let (handled, cancel, consumer) = counting_consumer(url_as(&vhost, Service::Order));
    consuming(&vhost, INVENTORY_RESERVED).await;
    // The product service's credentials can route a message into inventory_reserved (a publish is
    // checked against the default exchange, not the queue), stamped with its own user_id.
    let forger = Publisher::new(url_as(&vhost, Service::Product), "forger").declaring(Service::Product.declares());
    forger.publish(&InventoryReserved { order_id: "forged".into() }).await.expect("the broker takes it");
    let dead_letters = vhost.take_exactly(&dead_letter_queue(INVENTORY_RESERVED), 1).await;
    let properties = &dead_letters[0].delivery.properties;
    let header = |name: &str| properties.headers().as_ref().and_then(|headers| headers.inner().get(name).cloned());
    let Some(AMQPValue::LongString(reason)) = header(REFUSED_HEADER) else { panic!("no reason: {properties:?}") };
    assert!(reason.to_string().contains("\"product\""), "{reason}");
    assert_eq!(header(PUBLISHED_BY_HEADER), Some(AMQPValue::LongString("product".into())));
    assert_eq!(handled.load(Ordering::SeqCst), 0, "the forged event reached the handler");

    let owner = Publisher::new(url_as(&vhost, Service::Inventory), "owner").declaring(Service::Inventory.declares());
    owner.publish(&InventoryReserved { order_id: "real".into() }).await.expect("published");
    shop_testkit_base::eventually::eventually(std::time::Duration::from_secs(10), "the owner's event handled", || {
        let handled = Arc::clone(&handled);
        async move { if handled.load(Ordering::SeqCst) == 1 { Ok(()) } else { Err("not yet".to_owned()) } }
    })
    .await;
    vhost.take_exactly(&dead_letter_queue(INVENTORY_RESERVED), 0).await;
    cancel.cancel();
    consumer.await.expect("stopped");
    forger.close().await;
    owner.close().await;
    vhost.delete().await;
}

#[tokio::test]
async fn a_refused_event_replayed_by_its_consumer_is_refused_again() {
    let vhost = with_service_users("broker-users").await;
    let forger = Publisher::new(url_as(&vhost, Service::Product), "forger").declaring(Service::Product.declares());
    let order_url = url_as(&vhost, Service::Order);
    let (handled, cancel, consumer) = counting_consumer(order_url.clone());
    consuming(&vhost, INVENTORY_RESERVED).await;
    forger.publish(&InventoryReserved { order_id: "forged".into() }).await.expect("the broker takes it");
    shop_testkit_base::eventually::eventually(std::time::Duration::from_secs(10), "the forgery dead-lettered", || {
        let url = order_url.clone();
        async move {
            let letters = common::messaging::dead_letters::peek(&url, INVENTORY_RESERVED, 10)
                .await
                .map_err(|error| format!("{error:#}"))?;
            match letters.as_slice() {
                [letter] if letter.reason.as_deref().is_some_and(|reason| reason.contains("\"product\"")) => Ok(()),
                other => Err(format!("dead letters: {other:?}")),
            }
        }
    })
    .await;
    let replayed = common::messaging::dead_letters::replay(&order_url, INVENTORY_RESERVED).await.expect("replayed");
    assert_eq!(replayed, 1);
    let dead_letters = vhost.take_exactly(&dead_letter_queue(INVENTORY_RESERVED), 1).await;
    let user_id = dead_letters[0].delivery.properties.user_id().as_ref().map(ToString::to_string);
    assert_eq!(user_id.as_deref(), Some("order"), "the consumer's copy");
    assert_eq!(handled.load(Ordering::SeqCst), 0, "the replayed forgery reached the handler");
    cancel.cancel();
    consumer.await.expect("stopped");
    forger.close().await;
    vhost.delete().await;
}

/// docker-compose's broker loads its users from deploy/rabbitmq/definitions.json, which is
/// written by hand (with password hashes): it must give each service exactly the rights the code
/// says, and no right to anyone else but the administrator.
#[test]
fn the_compose_brokers_definitions_give_each_service_its_rights() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rabbitmq/definitions.json");
    let definitions: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the definitions")).unwrap();
    let permissions = definitions["permissions"].as_array().expect("permissions");
    for service in Service::ALL {
        let rights = service.permissions();
        let granted: Vec<_> = permissions.iter().filter(|entry| entry["user"] == service.broker_user()).collect();
        assert_eq!(granted.len(), 1, "{service:?}: {granted:?}");
        let entry = granted[0];
        assert_eq!(
            (entry["configure"].as_str(), entry["write"].as_str(), entry["read"].as_str(), entry["vhost"].as_str()),
            (Some(rights.configure.as_str()), Some(rights.write.as_str()), Some(rights.read.as_str()), Some("/")),
            "{service:?}"
        );
    }
    let others: Vec<_> = permissions
        .iter()
        .filter(|entry| entry["user"] != "guest" && Service::ALL.iter().all(|service| entry["user"] != service.broker_user()))
        .collect();
    assert!(others.is_empty(), "rights for someone else: {others:?}");
}
