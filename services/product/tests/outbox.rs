//! The product outbox against a real MongoDB (`MONGODB_URL`, default the local server): each test
//! uses its own database, named after a fresh uuid, and drops it at the end.

use bson::oid::ObjectId;
use bson::{Document, doc};
use common::messaging::OutboxStore;
use common::messaging::events::{Message, ProductCreated, ProductDeleted};
use common::messaging::{OutboxMessage, document_outbox::OUTBOX_FIELD};
use product_service::products::model::ProductDocument;
use product_service::products::store::{COLLECTION, ProductStore};

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
