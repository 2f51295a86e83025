//! Every MongoDB query of the catalog. Each write that must be atomic touches exactly one
//! document: a product and its pending event are stored, and a deletion and its event recorded,
//! in one single-document write, which is atomic on any MongoDB (no transaction needed).

use anyhow::Context;
use bson::oid::ObjectId;
use bson::{Bson, Document, doc};
use common::messaging::OutboxMessage;
use common::messaging::document_outbox::{DocumentOutboxStore, OUTBOX_FIELD};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database, IndexModel};

use super::model::{ProductDocument, ProductQuery, escape_regex};

pub const COLLECTION: &str = "products";

/// The products collection. Cheap to clone (the driver's handles are reference counted).
#[derive(Clone)]
pub struct ProductStore {
    products: Collection<ProductDocument>,
    /// The same collection as the outbox relay sees it; every write with events goes through it,
    /// so that it claims the product for this instance's relay and wakes it.
    outbox: DocumentOutboxStore,
}

/// Only products that are not deleted are ever shown.
fn visible() -> Document {
    doc! { "deleted": false }
}

/// What a read returns: everything but the pending events.
fn without_outbox() -> Document {
    doc! { OUTBOX_FIELD: 0 }
}

impl ProductStore {
    pub fn new(database: &Database) -> Self {
        let products: Collection<ProductDocument> = database.collection(COLLECTION);
        // Tombstones of deleted products are removed once their `ProductDeleted` event has been
        // published.
        let outbox =
            DocumentOutboxStore::new(products.clone_with_type()).deleting_drained_documents_matching(doc! { "deleted": true });
        Self { products, outbox }
    }

    /// The outbox view of the same collection, for this instance's relay (with its wake:
    /// [`DocumentOutboxStore::wake`]).
    pub fn outbox(&self) -> DocumentOutboxStore {
        self.outbox.clone()
    }

    /// Indexes for the filters the list endpoint serves; idempotent, run at every start. The
    /// name filter is a case-insensitive substring match, which no index can serve, so it has
    /// none; it always runs together with the `deleted` prefix of the indexes below.
    pub async fn create_indexes(&self) -> anyhow::Result<()> {
        let indexes = [
            doc! { "deleted": 1, "_id": 1 },
            doc! { "deleted": 1, "category": 1, "_id": 1 },
            doc! { "deleted": 1, "price_cents": 1 },
        ]
        .into_iter()
        .map(|keys| IndexModel::builder().keys(keys).build());
        self.products.create_indexes(indexes).await.context("failed to create the product indexes")?;
        self.outbox().create_indexes().await
    }

    /// Stores a new product together with its pending events, in one insert.
    pub async fn insert(&self, product: &ProductDocument, events: &[OutboxMessage]) -> anyhow::Result<()> {
        let document = bson::to_document(product).context("failed to encode a product as BSON")?;
        self.outbox.insert(document, events).await.with_context(|| format!("failed to insert product {}", product.id))
    }

    /// Visible products matching the query, in creation order (ObjectIds grow with time).
    pub async fn find(&self, query: &ProductQuery) -> anyhow::Result<Vec<ProductDocument>> {
        let mut filter = visible();
        if let Some(ids) = &query.ids {
            filter.insert("_id", doc! { "$in": ids });
        }
        if let Some(category) = &query.category {
            // A plain string: an equality match, never an operator.
            filter.insert("category", Bson::String(category.clone()));
        }
        let mut price_range = Document::new();
        if let Some(minimum) = query.minimum_price {
            price_range.insert("$gte", minimum.0);
        }
        if let Some(maximum) = query.maximum_price {
            price_range.insert("$lte", maximum.0);
        }
        if !price_range.is_empty() {
            filter.insert("price_cents", price_range);
        }
        if let Some(name) = &query.name_contains {
            filter.insert("name", doc! { "$regex": escape_regex(name), "$options": "i" });
        }
        self.products
            .find(filter)
            .projection(without_outbox())
            .sort(doc! { "_id": 1 })
            .skip(query.skip)
            .limit(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .await
            .context("failed to query products")?
            .try_collect()
            .await
            .context("failed to read products")
    }

    pub async fn find_by_id(&self, id: ObjectId) -> anyhow::Result<Option<ProductDocument>> {
        let mut filter = visible();
        filter.insert("_id", id);
        self.products.find_one(filter).projection(without_outbox()).await.with_context(|| format!("failed to read product {id}"))
    }

    /// Applies `changes` (a `$set` document) to a visible product and returns it as it is now.
    /// With `unchanged_quantity`, the update applies only if the product still has that quantity,
    /// checked in the same atomic write. `None` when no visible product matched.
    pub async fn update(
        &self,
        id: ObjectId,
        changes: Document,
        unchanged_quantity: Option<i64>,
    ) -> anyhow::Result<Option<ProductDocument>> {
        let mut filter = visible();
        filter.insert("_id", id);
        if let Some(quantity) = unchanged_quantity {
            filter.insert("quantity", quantity);
        }
        self.products
            .find_one_and_update(filter, doc! { "$set": changes })
            .projection(without_outbox())
            .return_document(ReturnDocument::After)
            .await
            .with_context(|| format!("failed to update product {id}"))
    }

    /// Turns a visible product into a hidden tombstone carrying `event`, in one write. Returns
    /// false when there was no visible product with that id.
    pub async fn mark_deleted(&self, id: ObjectId, event: &OutboxMessage, at: bson::DateTime) -> anyhow::Result<bool> {
        let mut filter = visible();
        filter.insert("_id", id);
        let update = doc! { "$set": { "deleted": true, "updated_at": at } };
        let deleted = self
            .outbox
            .update(filter, update, std::slice::from_ref(event))
            .await
            .with_context(|| format!("failed to delete product {id}"))?;
        Ok(deleted.is_some())
    }
}
