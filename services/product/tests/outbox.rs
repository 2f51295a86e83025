//! The product outbox against a real MongoDB (`MONGODB_URL`, default the local server): each test
//! uses its own database, named after a fresh uuid, and drops it at the end. The relay test also
//! publishes to a real RabbitMQ (`RABBITMQ_URL_WITHOUT_VHOST`, management API at
//! `RABBITMQ_MANAGEMENT_URL`), in a vhost of its own.

#[path = "../../common/tests/support/test_vhost.rs"]
mod test_vhost;
use bson::oid::ObjectId;
use bson::{Document, doc};
use common::messaging::OutboxStore;
use common::messaging::events::{Message, ProductCreated, ProductDeleted};
use common::messaging::{OutboxMessage, document_outbox::OUTBOX_FIELD};
use product_service::products::model::ProductDocument;
use product_service::products::store::{COLLECTION, ProductStore};
use test_vhost::TestVirtualHost;

struct TestDatabase {
    database: mongodb::Database,
}

impl TestDatabase {
    async fn new() -> Self {
        let url = common::config::env_or("MONGODB_URL", common::config::DEFAULT_MONGODB_URL);
        let client = mongodb::Client::with_uri_str(&url).await.expect("MongoDB client");
        let database = client.database(&format!("product_outbox_test_{}", uuid::Uuid::new_v4().simple()));
        Self { database }
    }

    async fn raw_document(&self, id: ObjectId) -> Option<Document> {
        self.database.collection::<Document>(COLLECTION).find_one(doc! { "_id": id }).await.expect("read raw document")
    }

    async fn drop_database(self) {
        self.database.drop().await.expect("drop the test database");
    }
}

fn product(quantity: i64) -> ProductDocument {
    let now = common::timestamp::now();
    ProductDocument {
        id: ObjectId::new(),
        name: "Desk Lamp".into(),
        description: None,
        category: "Home".into(),
        price_cents: 3990,
        quantity,
        deleted: false,
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn a_created_product_carries_its_event_until_it_is_marked_published() {
    let database = TestDatabase::new().await;
    let store = ProductStore::new(&database.database);
    store.create_indexes().await.unwrap();
    let outbox = store.outbox();
    let lamp = product(40);
    let event = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });

    store.insert(&lamp, std::slice::from_ref(&event)).await.unwrap();

    assert_eq!(outbox.pending(100).await.unwrap(), vec![event.clone()]);
    assert_eq!(event.queue, ProductCreated::QUEUE);
    // Reads never show the pending events.
    let shown = serde_json::to_value(product_service::products::model::ProductResponse::from(
        store.find_by_id(lamp.id).await.unwrap().expect("visible"),
    ))
    .unwrap();
    assert!(shown.get(OUTBOX_FIELD).is_none());

    outbox.mark_published(&event).await.unwrap();
    outbox.mark_published(&event).await.expect("marking twice is not an error");

    assert!(outbox.pending(100).await.unwrap().is_empty());
    let stored = database.raw_document(lamp.id).await.expect("the product stays");
    assert!(stored.get_array(OUTBOX_FIELD).unwrap().is_empty());
    database.drop_database().await;
}

#[tokio::test]
async fn a_deleted_product_is_a_hidden_tombstone_until_its_event_is_published() {
    let database = TestDatabase::new().await;
    let store = ProductStore::new(&database.database);
    store.create_indexes().await.unwrap();
    let outbox = store.outbox();
    let lamp = product(40);
    let created = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });
    store.insert(&lamp, std::slice::from_ref(&created)).await.unwrap();

    let deleted = OutboxMessage::new(&ProductDeleted { product_id: lamp.id.to_hex() });
    let now = bson::DateTime::now();
    assert!(store.mark_deleted(lamp.id, &deleted, now).await.unwrap());
    assert!(!store.mark_deleted(lamp.id, &deleted, now).await.unwrap(), "deleting twice finds nothing");

    assert!(store.find_by_id(lamp.id).await.unwrap().is_none(), "hidden at once");
    assert_eq!(
        outbox.pending(100).await.unwrap(),
        vec![created.clone(), deleted.clone()],
        "events in the order they were stored"
    );

    // The tombstone stays while any event is pending, and goes with the last one.
    outbox.mark_published(&created).await.unwrap();
    assert!(database.raw_document(lamp.id).await.is_some());
    outbox.mark_published(&deleted).await.unwrap();
    assert!(database.raw_document(lamp.id).await.is_none());
    database.drop_database().await;
}

/// A RabbitMQ vhost that exists for one test, created and deleted through the management API.

impl TestVirtualHost {
    /// Takes every message now in `queue` (acknowledging them).
    async fn take_all(&self, queue: &str) -> Vec<Vec<u8>> {
        use lapin::options::{BasicAckOptions, BasicGetOptions};
        let connection =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default()).await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let mut bodies = Vec::new();
        while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.expect("basic.get") {
            message.delivery.ack(BasicAckOptions::default()).await.expect("ack");
            bodies.push(message.delivery.data.clone());
        }
        let _ = connection.close(200, "done".into()).await;
        bodies
    }
}

#[tokio::test]
async fn an_outbox_event_that_cannot_be_decoded_is_set_aside_and_the_relay_publishes_the_next_one() {
    use common::messaging::document_outbox::UNDECODABLE_OUTBOX_FIELD;
    use common::messaging::{OutboxRelay, Publisher};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let database = TestDatabase::new().await;
    let vhost = TestVirtualHost::create("product-outbox-test").await;
    let store = ProductStore::new(&database.database);
    store.create_indexes().await.unwrap();
    // An older document (smaller ObjectId) whose event does not decode: no queue, no payload.
    let broken_id = ObjectId::new();
    let broken_event = doc! { "id": "broken-event", "correlation_id": broken_id.to_hex() };
    database
        .database
        .collection::<Document>(COLLECTION)
        .insert_one(doc! { "_id": broken_id, "name": "Broken", OUTBOX_FIELD: [broken_event.clone()] })
        .await
        .unwrap();
    let lamp = product(40);
    let event = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });
    store.insert(&lamp, std::slice::from_ref(&event)).await.unwrap();

    let outbox = store.outbox();
    let publisher = Arc::new(Publisher::new(&vhost.amqp_url, "product outbox test"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(outbox.clone(), Arc::clone(&publisher), Arc::new(tokio::sync::Notify::new())).run(cancel.clone()),
    );

    // The lamp's event is published and drained although the broken one comes first.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = outbox.pending(100).await.unwrap();
        if pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never drained the outbox; still pending: {pending:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = vhost.take_all(ProductCreated::QUEUE).await;
    assert_eq!(published.len(), 1, "exactly the decodable event was published");
    let published: ProductCreated = serde_json::from_slice(&published[0]).unwrap();
    assert_eq!(published.product_id, lamp.id.to_hex());
    assert!(outbox.undecodable_events_set_aside() >= 1, "the undecodable event was counted");
    let broken = database.raw_document(broken_id).await.expect("the broken document stays");
    assert!(broken.get_array(OUTBOX_FIELD).unwrap().is_empty(), "no longer pending");
    assert_eq!(broken.get_array(UNDECODABLE_OUTBOX_FIELD).unwrap(), &vec![bson::Bson::Document(broken_event)], "kept aside");
    assert!(!relay.is_finished(), "the relay is still running");

    cancel.cancel();
    relay.await.unwrap();
    publisher.close().await;
    vhost.delete().await;
    database.drop_database().await;
}
