//! The product outbox against a real MongoDB (`E2E_MONGODB_URL`, default the local server): each
//! test uses its own database, named after a fresh uuid, and drops it at the end. The relay test
//! also publishes to a real RabbitMQ (`E2E_RABBITMQ_URL`, management API at
//! `E2E_RABBITMQ_MANAGEMENT_URL`), in a vhost of its own.

use bson::oid::ObjectId;
use bson::{Document, doc};
use common::messaging::OutboxMessage;
use common::messaging::OutboxStore;
use common::messaging::document_outbox::{OUTBOX_DUE_FIELD, OUTBOX_FIELD};
use common::messaging::events::{Message, ProductCreated, ProductDeleted};
use product_service::products::model::ProductDocument;
use product_service::products::store::{COLLECTION, ProductStore};
use shop_testkit_base::TestVirtualHost;

struct TestDatabase {
    database: mongodb::Database,
}

impl TestDatabase {
    async fn new() -> Self {
        let url = shop_testkit_base::ServerUrls::from_environment().mongodb;
        let client = mongodb::Client::with_uri_str(&url).await.expect("MongoDB client");
        let database = client.database(&format!("product_outbox_test_{}", uuid::Uuid::new_v4().simple()));
        Self { database }
    }

    async fn raw_document(&self, id: ObjectId) -> Option<Document> {
        self.database.collection::<Document>(COLLECTION).find_one(doc! { "_id": id }).await.expect("read raw document")
    }

    /// The product store on this database, its indexes made as at a service's start.
    async fn product_store(&self) -> ProductStore {
        let store = ProductStore::new(&self.database);
        store.create_indexes().await.unwrap();
        store
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

/// A lamp stored with its `ProductCreated` event, as the create endpoint stores one: claimed by
/// the store's own relay from the write on.
async fn insert_lamp(store: &ProductStore) -> (ProductDocument, OutboxMessage) {
    let lamp = product(40);
    let created = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });
    store.insert(&lamp, std::slice::from_ref(&created)).await.unwrap();
    (lamp, created)
}

/// What a writer without a relay of its own stores in `outbox_due`: due to any relay at once.
const DUE_AT_ONCE: bson::DateTime = bson::DateTime::from_millis(0);

/// A lamp stored with its `ProductCreated` event due to any relay (as a writer without a relay of
/// its own would store it), so that the tests below see relays claim it by reading.
async fn insert_unclaimed_lamp(database: &TestDatabase) -> (ProductDocument, OutboxMessage) {
    let lamp = product(40);
    let created = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });
    let mut document = bson::to_document(&lamp).unwrap();
    document.insert(OUTBOX_FIELD, bson::to_bson(std::slice::from_ref(&created)).unwrap());
    document.insert(OUTBOX_DUE_FIELD, DUE_AT_ONCE);
    database.database.collection::<Document>(COLLECTION).insert_one(document).await.unwrap();
    (lamp, created)
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

    outbox.mark_published(std::slice::from_ref(&event)).await.unwrap();
    outbox.mark_published(std::slice::from_ref(&event)).await.expect("marking twice is not an error");

    assert!(outbox.pending(100).await.unwrap().is_empty());
    let stored = database.raw_document(lamp.id).await.expect("the product stays");
    assert!(stored.get_array(OUTBOX_FIELD).unwrap().is_empty());
    use common::messaging::document_outbox::OUTBOX_OWNER_FIELD;
    assert!(stored.get(OUTBOX_DUE_FIELD).is_none() && stored.get(OUTBOX_OWNER_FIELD).is_none(), "claim released: {stored}");
    database.drop_database().await;
}

#[tokio::test]
async fn a_deleted_product_is_a_hidden_tombstone_until_its_event_is_published() {
    let database = TestDatabase::new().await;
    let store = database.product_store().await;
    let outbox = store.outbox();
    let (lamp, created) = insert_lamp(&store).await;

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
    outbox.mark_published(std::slice::from_ref(&created)).await.unwrap();
    assert!(database.raw_document(lamp.id).await.is_some());
    outbox.mark_published(std::slice::from_ref(&deleted)).await.unwrap();
    assert!(database.raw_document(lamp.id).await.is_none());
    database.drop_database().await;
}

/// The relay marks everything one read published in one call: every event is removed, every
/// drained document released (a tombstone deleted), and a document that received an event since
/// the read keeps that event and its claim.
#[tokio::test]
async fn the_events_of_one_read_are_marked_published_together() {
    use common::messaging::document_outbox::OUTBOX_OWNER_FIELD;
    let database = TestDatabase::new().await;
    let store = database.product_store().await;
    let outbox = store.outbox();
    let (lamp, lamp_created) = insert_lamp(&store).await;
    let (chair, chair_created) = insert_lamp(&store).await;
    let (desk, desk_created) = insert_lamp(&store).await;
    let desk_deleted = OutboxMessage::new(&ProductDeleted { product_id: desk.id.to_hex() });
    assert!(store.mark_deleted(desk.id, &desk_deleted, bson::DateTime::now()).await.unwrap());
    let read = outbox.pending(100).await.unwrap();
    assert_eq!(read, vec![lamp_created, chair_created, desk_created, desk_deleted]);
    let chair_deleted = OutboxMessage::new(&ProductDeleted { product_id: chair.id.to_hex() });
    assert!(store.mark_deleted(chair.id, &chair_deleted, bson::DateTime::now()).await.unwrap());

    outbox.mark_published(&read).await.unwrap();
    let lamp = database.raw_document(lamp.id).await.expect("the lamp stays");
    assert!(lamp.get_array(OUTBOX_FIELD).unwrap().is_empty());
    assert!(lamp.get(OUTBOX_DUE_FIELD).is_none() && lamp.get(OUTBOX_OWNER_FIELD).is_none(), "released: {lamp}");
    assert!(database.raw_document(desk.id).await.is_none(), "the drained tombstone is gone");
    let chair = database.raw_document(chair.id).await.expect("a tombstone with a pending event stays");
    assert!(chair.get(OUTBOX_OWNER_FIELD).is_some(), "still claimed: {chair}");
    assert_eq!(outbox.pending(100).await.unwrap(), vec![chair_deleted], "and still this relay's to publish");
    database.drop_database().await;
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
    // Two older documents (smaller ObjectIds) whose events do not decode: no queue, no payload.
    let broken_id = ObjectId::new();
    let broken_event = doc! { "id": "broken-event", "correlation_id": broken_id.to_hex() };
    let other_broken_id = ObjectId::new();
    let other_broken_event = doc! { "id": "other-broken-event", "queue": 7 };
    let mut broken_documents = [
        doc! { "_id": broken_id, "name": "Broken", OUTBOX_FIELD: [broken_event.clone()] },
        doc! { "_id": other_broken_id, "name": "Also broken", OUTBOX_FIELD: [other_broken_event.clone()] },
    ];
    broken_documents.iter_mut().for_each(|document| {
        document.insert(OUTBOX_DUE_FIELD, DUE_AT_ONCE);
    });
    database.database.collection::<Document>(COLLECTION).insert_many(broken_documents).await.unwrap();
    let lamp = product(40);
    let event = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });
    store.insert(&lamp, std::slice::from_ref(&event)).await.unwrap();

    let outbox = store.outbox();
    let publisher = Arc::new(Publisher::new(&vhost.amqp_url, "product outbox test"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(outbox.clone(), Arc::clone(&publisher), outbox.wake()).run(cancel.clone()));

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
    // Each once, although both the relay and this test's reads found them.
    assert_eq!(outbox.undecodable_events_set_aside(), 2, "each undecodable event was counted once");
    let broken = database.raw_document(broken_id).await.expect("the broken document stays");
    assert!(broken.get_array(OUTBOX_FIELD).unwrap().is_empty(), "no longer pending");
    assert_eq!(broken.get_array(UNDECODABLE_OUTBOX_FIELD).unwrap(), &vec![bson::Bson::Document(broken_event)], "kept aside");
    let other = database.raw_document(other_broken_id).await.expect("the other broken document stays");
    assert_eq!(other.get_array(UNDECODABLE_OUTBOX_FIELD).unwrap(), &vec![bson::Bson::Document(other_broken_event)]);
    assert!(!relay.is_finished(), "the relay is still running");

    cancel.cancel();
    relay.await.unwrap();
    publisher.close().await;
    vhost.delete().await;
    database.drop_database().await;
}

/// A relay publishes at once what its store's writes stored, woken by them: here it never polls.
/// A product created is handed over; a product deleted while its creation still waits for any
/// relay (stored by a writer without one) wakes the relay to read the store.
#[tokio::test]
async fn the_relay_is_woken_by_its_stores_writes() {
    use common::messaging::{OutboxRelay, Publisher};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let database = TestDatabase::new().await;
    let vhost = TestVirtualHost::create("product-outbox-wake-test").await;
    let store = database.product_store().await;
    let publisher = Arc::new(Publisher::new(&vhost.amqp_url, "product outbox wake test"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(store.outbox(), Arc::clone(&publisher), store.outbox().wake())
            .with_poll_interval(Duration::from_secs(3600))
            .run(cancel.clone()),
    );
    let published = |queue: &'static str, count: usize| {
        let vhost = &vhost;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut bodies = Vec::new();
            while bodies.len() < count {
                assert!(Instant::now() < deadline, "{} of {count} {queue} published", bodies.len());
                tokio::time::sleep(Duration::from_millis(50)).await;
                bodies.extend(vhost.take_all(queue).await);
            }
            bodies.len()
        }
    };

    insert_lamp(&store).await;
    assert_eq!(published(ProductCreated::QUEUE, 1).await, 1, "the handed-over creation");

    let (lamp, _) = insert_unclaimed_lamp(&database).await;
    let deleted = OutboxMessage::new(&ProductDeleted { product_id: lamp.id.to_hex() });
    assert!(store.mark_deleted(lamp.id, &deleted, bson::DateTime::now()).await.unwrap());
    assert_eq!(published(ProductCreated::QUEUE, 1).await, 1, "the waiting creation, read on the delete's wake");
    assert_eq!(published(ProductDeleted::QUEUE, 1).await, 1, "and the deletion after it");

    cancel.cancel();
    relay.await.unwrap();
    publisher.close().await;
    vhost.delete().await;
    database.drop_database().await;
}

/// Two replicas' relays on one collection: a document claimed by one is invisible to the other
/// until the claim is released (its last event marked published) or expires (its relay died).
#[tokio::test]
async fn a_claimed_document_is_one_relays_until_it_is_drained_or_the_claim_expires() {
    use common::messaging::document_outbox::OUTBOX_OWNER_FIELD;
    use std::time::Duration;

    let database = TestDatabase::new().await;
    let store = database.product_store().await;
    let (lamp, created) = insert_unclaimed_lamp(&database).await;
    // The first replica's claims last a moment, as if it died right after taking one.
    let first = store.outbox().with_lease(Duration::from_millis(500));
    let second = database.product_store().await.outbox();

    assert_eq!(first.pending(100).await.unwrap(), vec![created.clone()]);
    assert_eq!(second.pending(100).await.unwrap(), vec![], "claimed by the first replica");
    assert_eq!(first.pending(100).await.unwrap(), vec![created.clone()], "a claim's owner reads it again");

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(second.pending(100).await.unwrap(), vec![created.clone()], "the expired claim is taken over");
    assert_eq!(first.pending(100).await.unwrap(), vec![], "now the second replica's");

    // Draining the document releases the claim: the next event about the product is free for
    // whichever replica looks first, at once rather than when the claim would expire.
    second.mark_published(std::slice::from_ref(&created)).await.unwrap();
    let drained = database.raw_document(lamp.id).await.expect("the product stays");
    assert!(drained.get(OUTBOX_DUE_FIELD).is_none() && drained.get(OUTBOX_OWNER_FIELD).is_none(), "claim released: {drained}");
    let deleted = OutboxMessage::new(&ProductDeleted { product_id: lamp.id.to_hex() });
    assert!(store.mark_deleted(lamp.id, &deleted, bson::DateTime::now()).await.unwrap());
    assert_eq!(first.pending(100).await.unwrap(), vec![deleted.clone()]);
    database.drop_database().await;
}

/// An event stored about an entity whose events a relay holds goes to that relay, after the
/// earlier ones: no other relay may publish it ahead of them.
#[tokio::test]
async fn an_event_stored_while_a_relay_holds_the_entity_is_that_relays() {
    let database = TestDatabase::new().await;
    let store = database.product_store().await;
    let (lamp, created) = insert_lamp(&store).await;
    let first = store.outbox();
    let second = database.product_store().await.outbox();
    assert_eq!(first.pending(100).await.unwrap(), vec![created.clone()]);

    let deleted = OutboxMessage::new(&ProductDeleted { product_id: lamp.id.to_hex() });
    assert!(store.mark_deleted(lamp.id, &deleted, bson::DateTime::now()).await.unwrap());
    assert_eq!(second.pending(100).await.unwrap(), vec![], "still the first relay's");
    assert_eq!(first.pending(100).await.unwrap(), vec![created.clone(), deleted.clone()]);
    database.drop_database().await;
}

/// A relay that lives keeps its claims beyond one lease (it renews them as it reads), and lets go
/// of a claimed document whose outbox turns out empty (emptied by a relay whose claim had
/// expired, or by hand), so that nobody reads it again.
#[tokio::test]
async fn a_live_relay_keeps_its_claims_and_lets_go_of_an_empty_outbox() {
    use common::messaging::document_outbox::OUTBOX_OWNER_FIELD;
    use std::time::Duration;

    let database = TestDatabase::new().await;
    let store = database.product_store().await;
    let (lamp, created) = insert_unclaimed_lamp(&database).await;
    let first = store.outbox().with_lease(Duration::from_millis(600));
    let second = database.product_store().await.outbox();
    assert_eq!(first.pending(100).await.unwrap(), vec![created.clone()]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(first.pending(100).await.unwrap(), vec![created.clone()], "a read within the lease renews it");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(second.pending(100).await.unwrap(), vec![], "after the first lease, still the first relay's");
    assert_eq!(first.pending(100).await.unwrap(), vec![created.clone()]);

    database
        .database
        .collection::<Document>(COLLECTION)
        .update_one(doc! { "_id": lamp.id }, doc! { "$set": { OUTBOX_FIELD: [] } })
        .await
        .unwrap();
    assert_eq!(first.pending(100).await.unwrap(), vec![]);
    let released = database.raw_document(lamp.id).await.unwrap();
    assert!(released.get(OUTBOX_DUE_FIELD).is_none() && released.get(OUTBOX_OWNER_FIELD).is_none(), "let go: {released}");
    database.drop_database().await;
}

/// Renewing is not a write per read: within a quarter of a lease (30 s here) of its last renewal,
/// a relay's read leaves its claims as they are.
#[tokio::test]
async fn a_relay_renews_its_claims_at_most_every_quarter_lease() {
    use common::messaging::document_outbox::OUTBOX_DUE_FIELD;
    let database = TestDatabase::new().await;
    let outbox = database.product_store().await.outbox();
    let (lamp, created) = insert_unclaimed_lamp(&database).await;
    let claimed_until =
        || async { database.raw_document(lamp.id).await.unwrap().get_datetime(OUTBOX_DUE_FIELD).copied().unwrap() };
    assert_eq!(outbox.pending(100).await.unwrap(), vec![created.clone()]);
    let first = claimed_until().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(outbox.pending(100).await.unwrap(), vec![created.clone()]);
    assert_eq!(claimed_until().await, first, "renewed at the next read");
    database.drop_database().await;
}

/// Documents holding events but no claim field (written before it existed, when a claim lived in
/// `outbox_lease`) are found: the start-up sweep makes them due.
#[tokio::test]
async fn events_stored_by_an_older_version_are_made_due_at_start() {
    let database = TestDatabase::new().await;
    let lamp = product(40);
    let created = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });
    let mut old = bson::to_document(&lamp).unwrap();
    old.insert(OUTBOX_FIELD, bson::to_bson(std::slice::from_ref(&created)).unwrap());
    old.insert("outbox_lease", doc! { "owner": "a relay of the old version", "until": bson::DateTime::from_millis(0) });
    database.database.collection::<Document>(COLLECTION).insert_one(old).await.unwrap();
    let store = ProductStore::new(&database.database);
    let outbox = store.outbox();
    assert_eq!(outbox.pending(100).await.unwrap(), vec![], "invisible before the sweep");

    store.create_indexes().await.unwrap();
    assert_eq!(outbox.pending(100).await.unwrap(), vec![created.clone()]);
    let claimed = database.raw_document(lamp.id).await.unwrap();
    assert!(claimed.get("outbox_lease").is_none(), "the old claim field is gone: {claimed}");
    database.drop_database().await;
}

/// An [`OutboxStore`] that records every event marked published, in order, across the relays
/// sharing the log: a relay publishes an entity's next event only after the previous one was
/// confirmed and marked, so the marks are the publishing order.
#[derive(Clone)]
struct RecordingOutbox {
    inner: common::messaging::document_outbox::DocumentOutboxStore,
    marked: std::sync::Arc<std::sync::Mutex<Vec<OutboxMessage>>>,
}

impl OutboxStore for RecordingOutbox {
    async fn pending(&self, limit: usize) -> anyhow::Result<Vec<OutboxMessage>> {
        self.inner.pending(limit).await
    }

    async fn mark_published(&self, messages: &[OutboxMessage]) -> anyhow::Result<()> {
        self.inner.mark_published(messages).await?;
        self.marked.lock().unwrap().extend_from_slice(messages);
        Ok(())
    }
}

#[tokio::test]
async fn two_replicas_relays_publish_every_event_once_and_each_products_events_in_order() {
    use common::messaging::{OutboxRelay, Publisher};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let database = TestDatabase::new().await;
    let vhost = TestVirtualHost::create("product-outbox-replicas-test").await;
    let marked = Arc::new(Mutex::new(Vec::new()));
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut relays = Vec::new();
    let mut replicas = Vec::new();
    let mut publishers = Vec::new();
    for replica in 0..2 {
        // Each replica has its store, whose writes claim for (and wake) that replica's relay.
        let store = database.product_store().await;
        let publisher = Arc::new(Publisher::new(&vhost.amqp_url, format!("product outbox replica {replica}")));
        let outbox = RecordingOutbox { inner: store.outbox(), marked: Arc::clone(&marked) };
        relays.push(tokio::spawn(OutboxRelay::new(outbox, Arc::clone(&publisher), store.outbox().wake()).run(cancel.clone())));
        replicas.push(store);
        publishers.push(publisher);
    }

    // Products created by one replica and deleted by the other while both relays run: a delete
    // often lands on a product whose creation the other replica's relay still holds.
    let mut expected = BTreeMap::new();
    for number in 0..40 {
        let lamp = product(number);
        let created = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: number });
        replicas[number as usize % 2].insert(&lamp, std::slice::from_ref(&created)).await.unwrap();
        let mut events = vec![created.id];
        if number % 2 == 0 {
            let deleted = OutboxMessage::new(&ProductDeleted { product_id: lamp.id.to_hex() });
            assert!(replicas[(number as usize + 1) % 2].mark_deleted(lamp.id, &deleted, bson::DateTime::now()).await.unwrap());
            events.push(deleted.id);
        }
        expected.insert(lamp.id.to_hex(), events);
    }
    let event_count: usize = expected.values().map(Vec::len).sum();

    let deadline = Instant::now() + Duration::from_secs(30);
    while marked.lock().unwrap().len() < event_count {
        assert!(
            Instant::now() < deadline,
            "the relays never drained the outbox: {} of {event_count} marked",
            marked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate publish (a second relay late on the same events) the time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    for relay in relays {
        relay.await.unwrap();
    }

    let published_ids = |bodies: Vec<Vec<u8>>, field: &str| -> Vec<String> {
        bodies
            .iter()
            .map(|body| serde_json::from_slice::<serde_json::Value>(body).unwrap()[field].as_str().unwrap().to_owned())
            .collect()
    };
    let created = published_ids(vhost.take_all(ProductCreated::QUEUE).await, "product_id");
    let deleted = published_ids(vhost.take_all(ProductDeleted::QUEUE).await, "product_id");
    assert_eq!(created.len(), 40, "each product_created published once: {created:?}");
    assert_eq!(created.iter().collect::<BTreeSet<_>>().len(), 40);
    assert_eq!(deleted.len(), 20, "each product_deleted published once: {deleted:?}");
    assert_eq!(deleted.iter().collect::<BTreeSet<_>>().len(), 20);
    let marked = marked.lock().unwrap().clone();
    assert_eq!(marked.len(), event_count, "every event marked once");
    for (product_id, events) in expected {
        let order: Vec<String> =
            marked.iter().filter(|message| message.correlation_id == product_id).map(|message| message.id.clone()).collect();
        assert_eq!(order, events, "product {product_id}'s events left in the order they were stored");
    }
    for publisher in publishers {
        publisher.close().await;
    }
    vhost.delete().await;
    database.drop_database().await;
}

/// The relay finds a published event by its id to remove it, and pending events by their claim
/// fields, and a collection grows: the lookups must use indexes, which the store creates at every
/// start.
#[tokio::test]
async fn the_outbox_indexes_are_created() {
    use futures::TryStreamExt as _;
    let database = TestDatabase::new().await;
    let store = ProductStore::new(&database.database);
    store.create_indexes().await.unwrap();
    let keys: Vec<Document> = database
        .database
        .collection::<Document>(COLLECTION)
        .list_indexes()
        .await
        .unwrap()
        .map_ok(|index| index.keys)
        .try_collect()
        .await
        .unwrap();
    assert!(keys.contains(&doc! { format!("{OUTBOX_FIELD}.id"): 1 }), "indexes: {keys:?}");
    // And on the claim fields, which every look for pending events reads.
    use common::messaging::document_outbox::OUTBOX_OWNER_FIELD;
    assert!(keys.contains(&doc! { OUTBOX_DUE_FIELD: 1, "_id": 1 }), "indexes: {keys:?}");
    assert!(keys.contains(&doc! { OUTBOX_OWNER_FIELD: 1 }), "indexes: {keys:?}");
    database.drop_database().await;
}

/// Polls `future` until it has answered `Pending` `pendings` times, then drops it, as hyper drops
/// the handler of a client that hung up: its output when it finished first.
async fn dropped_after<F: std::future::Future>(future: F, pendings: usize) -> Option<F::Output> {
    use std::task::Poll;
    let mut future = std::pin::pin!(future);
    let mut seen = 0;
    std::future::poll_fn(|context| match future.as_mut().poll(context) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending if seen == pendings => Poll::Ready(None),
        Poll::Pending => {
            seen += 1;
            Poll::Pending
        }
    })
    .await
}

/// A write that stores events can be dropped at any of its awaits (a client hangs up, a consumer
/// loses its broker connection): every product it stored has its events published all the same,
/// by the relay it was meant for, which here never polls, so a hand-over left hanging would strand
/// them for good. Inserts (`ProductCreated`) and updates (`ProductDeleted`) are dropped after 0 to
/// 24 of their awaits each.
#[tokio::test]
async fn a_write_dropped_at_any_await_still_has_its_events_published() {
    use common::messaging::document_outbox::OUTBOX_DUE_FIELD;
    use common::messaging::{OutboxRelay, Publisher};
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let database = TestDatabase::new().await;
    let vhost = TestVirtualHost::create("product-outbox-drop-test").await;
    let store = database.product_store().await;
    let publisher = Arc::new(Publisher::new(&vhost.amqp_url, "product outbox drop test"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(store.outbox(), Arc::clone(&publisher), store.outbox().wake())
            .with_poll_interval(Duration::from_secs(3600))
            .run(cancel.clone()),
    );
    let raw = database.database.collection::<Document>(COLLECTION);
    // Waits until no document holds a pending event, then takes what `queue` received.
    let drained_then_published = |queue: &'static str| {
        let (raw, vhost) = (&raw, &vhost);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let pending = raw.count_documents(doc! { OUTBOX_DUE_FIELD: { "$exists": true } }).await.unwrap();
                if pending == 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "{pending} document(s) still hold events nobody publishes");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let bodies = vhost.take_all(queue).await;
            bodies
                .iter()
                .map(|body| serde_json::from_slice::<serde_json::Value>(body).unwrap()["product_id"].as_str().unwrap().to_owned())
                .collect::<BTreeSet<_>>()
        }
    };

    let mut lamps = Vec::new();
    let mut dropped_inserts = 0;
    for pendings in 0..25 {
        let lamp = product(40);
        let created = OutboxMessage::new(&ProductCreated { product_id: lamp.id.to_hex(), quantity: 40 });
        if dropped_after(store.insert(&lamp, std::slice::from_ref(&created)), pendings).await.is_none() {
            dropped_inserts += 1;
        }
        lamps.push(lamp);
    }
    let created = drained_then_published(ProductCreated::QUEUE).await;
    let stored: BTreeSet<String> =
        raw.distinct("_id", doc! {}).await.unwrap().into_iter().map(|id| id.as_object_id().unwrap().to_hex()).collect();
    assert_eq!(created, stored, "every stored product, and only those, announced");
    assert!(dropped_inserts >= 1, "no insert was dropped before it finished: the test proved nothing");
    assert!(stored.len() > 25 - dropped_inserts, "some dropped inserts stored their product");

    let mut dropped_updates = 0;
    for (pendings, lamp) in lamps.iter().filter(|lamp| stored.contains(&lamp.id.to_hex())).enumerate() {
        let deleted = OutboxMessage::new(&ProductDeleted { product_id: lamp.id.to_hex() });
        if dropped_after(store.mark_deleted(lamp.id, &deleted, bson::DateTime::now()), pendings).await.is_none() {
            dropped_updates += 1;
        }
    }
    let deleted = drained_then_published(ProductDeleted::QUEUE).await;
    let remaining: BTreeSet<String> =
        raw.distinct("_id", doc! {}).await.unwrap().into_iter().map(|id| id.as_object_id().unwrap().to_hex()).collect();
    let gone: BTreeSet<String> = stored.difference(&remaining).cloned().collect();
    assert_eq!(deleted, gone, "every deleted product, and only those, announced (a tombstone goes once announced)");
    assert!(dropped_updates >= 1, "no update was dropped before it finished: the test proved nothing");
    assert!(gone.len() > stored.len() - dropped_updates, "some dropped updates deleted their product");

    cancel.cancel();
    relay.await.unwrap();
    publisher.close().await;
    vhost.delete().await;
    database.drop_database().await;
}
