//! Every MongoDB query about orders; their pending events are drained through
//! [`DocumentOutboxStore`].
//!
//! Each write that must be atomic touches one document: an order is inserted together with its
//! `OrderCreated` event, and a status change that must release stock pushes `InventoryRelease`
//! into the same document in the same conditional update. Nothing here needs a transaction.

use anyhow::Context;
use bson::oid::ObjectId;
use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use common::messaging::OutboxMessage;
use common::messaging::document_outbox::DocumentOutboxStore;
use common::messaging::events::{InventoryRelease, OrderProcessed};

use super::model::{OrderDocument, OrderStatus, storable_now};

pub const COLLECTION: &str = "orders";

/// The orders collection. Cheap to clone (the driver shares one connection pool).
#[derive(Clone)]
pub struct OrderStore {
    orders: Collection<OrderDocument>,
    /// The same collection as the outbox relay sees it; every write with events goes through it,
    /// so that it claims the order for this instance's relay and wakes it.
    outbox: DocumentOutboxStore,
}

/// What storing a new order did.
#[derive(Debug, PartialEq, Eq)]
pub enum Insertion {
    Inserted,
    /// Another order of the same customer holds its idempotency key.
    KeyTaken,
}

/// Whether `error` is MongoDB's duplicate key error (11000): a unique index refused the write.
fn is_duplicate_key(error: &anyhow::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<mongodb::error::Error>())
        .any(|error| matches!(&*error.kind, ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == 11000))
}

/// What a conditional status change found.
#[derive(Debug)]
pub enum StatusChange {
    /// The order was in the expected status and now has the new one.
    Changed(Box<OrderDocument>),
    /// The order exists but was no longer in the expected status; nothing was written.
    StatusMovedOn,
    /// No such order (for this user, when a user was given).
    NotFound,
}

impl OrderStore {
    pub fn new(database: &Database) -> Self {
        let orders: Collection<OrderDocument> = database.collection(COLLECTION);
        let outbox = DocumentOutboxStore::new(orders.clone_with_type::<Document>());
        Self { orders, outbox }
    }

    /// Creates the indexes the queries below rely on. Idempotent; run at start-up.
    pub async fn create_indexes(&self) -> anyhow::Result<()> {
        let indexes = vec![
            // The customer's order list: their orders, newest first.
            IndexModel::builder()
                .keys(doc! { "user_id": 1, "created_at": -1, "_id": -1 })
                .options(IndexOptions::builder().name("user_newest_first".to_owned()).build())
                .build(),
            // One order per customer and `Idempotency-Key`, however many tries race: the second
            // insert fails on this index. Sparse: orders placed without a key are not in it.
            IndexModel::builder()
                .keys(doc! { "idempotency_key": 1 })
                .options(IndexOptions::builder().name("idempotency_key".to_owned()).unique(true).sparse(true).build())
                .build(),
        ];
        self.orders.create_indexes(indexes).await.context("failed to create the orders indexes")?;
        self.outbox().create_indexes().await
    }

    /// The pending events kept in the orders' `outbox` field, for this instance's outbox relay
    /// (with its wake: [`DocumentOutboxStore::wake`]).
    pub fn outbox(&self) -> DocumentOutboxStore {
        self.outbox.clone()
    }

    /// Stores a new order together with the events in its outbox, in one insert; `KeyTaken` when
    /// its customer already placed an order with its idempotency key (nothing is stored then).
    pub async fn insert(&self, order: &OrderDocument) -> anyhow::Result<Insertion> {
        let document = bson::to_document(order).context("failed to encode an order as BSON")?;
        match self.outbox.insert(document, &order.outbox).await {
            Ok(()) => Ok(Insertion::Inserted),
            Err(error) if order.idempotency_key.is_some() && is_duplicate_key(&error) => Ok(Insertion::KeyTaken),
            Err(error) => Err(error.context(format!("failed to insert order {}", order.id))),
        }
    }

    /// The order placed with this scoped idempotency key (see `IdempotencyKey::scoped`), if any.
    pub async fn find_by_idempotency_key(&self, scoped_key: &str) -> anyhow::Result<Option<OrderDocument>> {
        self.orders
            .find_one(doc! { "idempotency_key": scoped_key })
            .await
            .context("failed to look up an order by its idempotency key")
    }

    /// The order `order_id`, when `owner` is `None` or its owner: another user's order is as absent
    /// as an unknown one.
    pub async fn find(&self, order_id: ObjectId, owner: Option<&str>) -> anyhow::Result<Option<OrderDocument>> {
        let mut filter = doc! { "_id": order_id };
        if let Some(owner) = owner {
            filter.insert("user_id", owner);
        }
        self.orders.find_one(filter).await.with_context(|| format!("failed to read order {order_id}"))
    }

    /// The user's orders, newest first.
    pub async fn list_for_user(
        &self,
        user_id: &str,
        status: Option<OrderStatus>,
        skip: u64,
        limit: i64,
    ) -> anyhow::Result<Vec<OrderDocument>> {
        let mut filter = doc! { "user_id": user_id };
        if let Some(status) = status {
            filter.insert("status", status.as_str());
        }
        self.orders
            .find(filter)
            .sort(doc! { "created_at": -1, "_id": -1 })
            .skip(skip)
            .limit(limit)
            .await
            .with_context(|| format!("failed to list the orders of user {user_id}"))?
            .try_collect()
            .await
            .with_context(|| format!("failed to read the orders of user {user_id}"))
    }

    /// Moves the order from `expected` to `next` if, and only if, it is still in `expected`; when
    /// the move must give stock back, the `InventoryRelease` event is pushed into the outbox by the
    /// same update. `user_id` restricts the change to the owner's order (HTTP); consumers pass
    /// `None`. `cancellation_reason` is recorded when given.
    pub async fn change_status(
        &self,
        order_id: ObjectId,
        user_id: Option<&str>,
        expected: OrderStatus,
        next: OrderStatus,
        cancellation_reason: Option<&str>,
    ) -> anyhow::Result<StatusChange> {
        let mut filter = doc! { "_id": order_id, "status": expected.as_str() };
        if let Some(user_id) = user_id {
            filter.insert("user_id", user_id);
        }
        let mut set = doc! { "status": next.as_str(), "updated_at": bson::DateTime::from_chrono(storable_now()) };
        if let Some(reason) = cancellation_reason {
            set.insert("cancellation_reason", reason);
        }
        let update = doc! { "$set": set };
        let mut events = Vec::new();
        if expected.releases_stock_when_becoming(next) {
            events.push(OutboxMessage::new(&InventoryRelease { order_id: order_id.to_hex() }));
        }
        if next == OrderStatus::Processing {
            // Payment is simulated: it is announced with the move to processing, in the same
            // write, so the announcement can be delayed by a broker outage but never lost.
            events.push(OutboxMessage::new(&OrderProcessed { order_id: order_id.to_hex() }));
        }
        let changed = self
            .outbox
            .update(filter, update, &events)
            .await
            .with_context(|| format!("failed to change order {order_id} from {expected} to {next}"))?;
        if let Some(order) = changed {
            let order: OrderDocument = bson::from_document(order).with_context(|| format!("order {order_id} does not decode"))?;
            return Ok(StatusChange::Changed(Box::new(order)));
        }
        // Nothing matched: tell a vanished order from one whose status moved on.
        let mut exists_filter = doc! { "_id": order_id };
        if let Some(user_id) = user_id {
            exists_filter.insert("user_id", user_id);
        }
        let exists =
            self.orders.count_documents(exists_filter).await.with_context(|| format!("failed to look up order {order_id}"))? > 0;
        Ok(if exists { StatusChange::StatusMovedOn } else { StatusChange::NotFound })
    }
}
