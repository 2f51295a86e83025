//! The transactional outbox for MongoDB services: pending events live inside the document they
//! are about, in an array field named [`OUTBOX_FIELD`].
//!
//! Why inside the document: MongoDB makes a write to one document atomic without a multi-document
//! transaction (which a standalone server rejects). So a service stores an entity and the event
//! that announces it in one `insert_one` (or changes an entity and appends its event in one
//! `update_one` with `$push`), and it is impossible to end up with one without the other.
//!
//! How it is drained: [`DocumentOutboxStore`] implements [`OutboxStore`] for the
//! [`super::OutboxRelay`]. `pending` claims the documents that still hold events (oldest document
//! first, events in the order they were pushed); `mark_published` removes one event with `$pull`
//! after the broker confirmed it. A crash between the publish and the `$pull` publishes the event
//! again, which the idempotent consumers ignore.
//!
//! Several replicas of a service drain one collection, each with a relay of its own. So that an
//! event is not published once per replica, and so that one entity's events leave in the order
//! they were stored, a relay first *claims* a document: it writes a lease into the document's
//! [`OUTBOX_LEASE_FIELD`] (its own name and an expiry), in an update whose filter requires the
//! document to be unclaimed, its lease expired, or already its own. The server applies that
//! update to one document atomically, so of two relays racing for a document one wins; the other
//! skips it. The lease is renewed at each read and released when the document's last event is
//! marked published; a relay that dies holding one delays that entity's events by the lease's
//! length ([`DEFAULT_LEASE`]), after which any relay takes them over. Expiry is judged by each
//! relay's own clock, so replicas on different hosts need clocks agreeing within seconds.
//!
//! Usage, for a service keeping `Thing`s in a collection:
//!
//! ```ignore
//! // Writing: the entity and its event, in one single-document write.
//! let event = OutboxMessage::new(&ThingCreated { .. });
//! let mut document = bson::to_document(&thing)?;
//! document.insert(OUTBOX_FIELD, outbox_array(&[event])?);
//! collection.insert_one(document).await?;
//! wake.notify_one(); // the relay publishes at once instead of at its next poll
//!
//! // At start-up: the index `mark_published` needs, then the relay.
//! let store = DocumentOutboxStore::new(collection.clone_with_type());
//! store.create_indexes().await?;
//! tokio::spawn(OutboxRelay::new(store, publisher, wake).run(cancel));
//! ```
//!
//! Every read the service serves must leave the field out (a projection `{ outbox: 0 }`, or a
//! response type without it): pending events are an implementation detail, never an API field.
//!
//! An event that cannot be decoded (written by a buggy or older version, or edited by hand) is
//! never allowed to stop the relay: `pending` logs it, counts it
//! ([`DocumentOutboxStore::undecodable_events_set_aside`]), moves it out of the outbox into the
//! document's [`UNDECODABLE_OUTBOX_FIELD`] (where it stays for a person to look at; nothing
//! publishes it) and carries on with the events after it.
//!
//! It deliberately knows nothing of any one entity: deletion policies (tombstones) are expressed
//! with [`DocumentOutboxStore::deleting_drained_documents_matching`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::{Collection, IndexModel};

use super::{OutboxMessage, OutboxStore};

/// The array field that holds a document's pending events.
pub const OUTBOX_FIELD: &str = "outbox";

/// Where `pending` moves an event that cannot be decoded, in the same document, so that it is
/// kept for inspection but no longer read as pending.
pub const UNDECODABLE_OUTBOX_FIELD: &str = "outbox_undecodable";

/// The field in which a relay claims a document's events: `{ owner, until }`.
pub const OUTBOX_LEASE_FIELD: &str = "outbox_lease";

/// How long a claim lasts unless renewed: how long a dead replica's claimed events wait before
/// another replica publishes them. Longer than a publish can take (its confirm times out sooner),
/// so a live relay never loses a claim in the middle of its work.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Events as the BSON array to store under [`OUTBOX_FIELD`] (or to `$push` with `$each`).
pub fn outbox_array(messages: &[OutboxMessage]) -> anyhow::Result<Bson> {
    bson::to_bson(messages).context("failed to encode outbox events as BSON")
}

/// One event as the BSON value to `$push` onto [`OUTBOX_FIELD`].
pub fn outbox_entry(message: &OutboxMessage) -> anyhow::Result<Bson> {
    bson::to_bson(message).context("failed to encode an outbox event as BSON")
}

/// Reads and drains the events embedded in the documents of one collection.
#[derive(Clone)]
pub struct DocumentOutboxStore {
    collection: Collection<Document>,
    /// Documents that match this filter are deleted once their last event is published. A
    /// service that deletes an entity by turning it into a tombstone carrying its "deleted" event
    /// uses it so that the tombstone disappears once the event is safely with the broker.
    delete_when_drained: Option<Document>,
    /// How many undecodable events this store has set aside, shared by its clones: for tests
    /// and for anyone who wants to expose it as a metric.
    undecodable_set_aside: Arc<AtomicU64>,
    /// This store's name in the leases it takes: unique per store made with [`Self::new`] (one
    /// per relay, so one per replica).
    owner: String,
    lease: Duration,
}

impl DocumentOutboxStore {
    pub fn new(collection: Collection<Document>) -> Self {
        Self {
            collection,
            delete_when_drained: None,
            undecodable_set_aside: Arc::new(AtomicU64::new(0)),
            owner: uuid::Uuid::new_v4().to_string(),
            lease: DEFAULT_LEASE,
        }
    }

    /// The same store with claims lasting `lease` (tests shorten it to see a claim expire).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// A filter for the documents this store may claim at `now`: unclaimed, claimed by a lease
    /// that has expired, or claimed by this store already.
    fn claimable(&self, now: bson::DateTime) -> Document {
        let owner_field = format!("{OUTBOX_LEASE_FIELD}.owner");
        let until_field = format!("{OUTBOX_LEASE_FIELD}.until");
        doc! {
            "$or": [
                { OUTBOX_LEASE_FIELD: { "$exists": false } },
                { until_field: { "$lte": now } },
                { owner_field: &self.owner },
            ]
        }
    }

    /// Claims (or renews the claim on) up to `limit` documents with pending events, oldest first,
    /// and returns their ids: the documents this store alone may publish from until the lease
    /// ends.
    async fn claim(&self, limit: i64) -> anyhow::Result<Vec<Bson>> {
        let now = bson::DateTime::now();
        let mut candidates = self.claimable(now);
        // "Has at least one event whose id exists": a document with an empty outbox does not
        // match, and the multikey index on `outbox.id` serves the query.
        candidates.insert(format!("{OUTBOX_FIELD}.id"), doc! { "$exists": true });
        let ids: Vec<Bson> = self
            .collection
            .find(candidates)
            .projection(doc! { "_id": 1 })
            // Oldest document first (ObjectIds grow with time), so events leave roughly in the
            // order they were stored.
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await
            .with_context(|| format!("failed to look for pending events in {}", self.collection.name()))?
            .try_collect::<Vec<Document>>()
            .await
            .with_context(|| format!("failed to read pending events from {}", self.collection.name()))?
            .into_iter()
            .filter_map(|document| document.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        let lease_millis = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let until = bson::DateTime::from_millis(now.timestamp_millis().saturating_add(lease_millis));
        // Another relay may have claimed some of them since the read: the filter is checked
        // again, atomically, for each document, and those are left alone.
        let mut claim = self.claimable(now);
        claim.insert("_id", doc! { "$in": &ids });
        self.collection
            .update_many(claim, doc! { "$set": { OUTBOX_LEASE_FIELD: { "owner": &self.owner, "until": until } } })
            .await
            .with_context(|| format!("failed to claim pending events in {}", self.collection.name()))?;
        Ok(ids)
    }

    /// How many undecodable events `pending` has moved aside since this store was made (each once,
    /// however many reads found it).
    pub fn undecodable_events_set_aside(&self) -> u64 {
        self.undecodable_set_aside.load(Ordering::Relaxed)
    }

    /// Logs, counts and moves aside an event that does not decode. Moving it is best effort: if
    /// the write fails (the database is down) the event is skipped in this read only and found
    /// again by the next.
    async fn set_aside(&self, document_id: &Bson, event: &Bson, error: &bson::de::Error) {
        tracing::error!(
            collection = %self.collection.name(),
            document_id = %document_id,
            event = %event,
            %error,
            "an outbox event cannot be decoded; setting it aside in {UNDECODABLE_OUTBOX_FIELD} and going on with the others"
        );
        // `$pull` by the whole value: the event may lack the `id` that would otherwise name it.
        // The filter requires the event to be still in the outbox, so that two reads that both
        // saw it (the relay's wake and its poll) move it once, not twice.
        let moved = self
            .collection
            .update_one(
                doc! { "_id": document_id.clone(), OUTBOX_FIELD: event.clone() },
                doc! { "$pull": { OUTBOX_FIELD: event.clone() }, "$push": { UNDECODABLE_OUTBOX_FIELD: event.clone() } },
            )
            .await;
        match moved {
            Ok(result) if result.modified_count == 1 => {
                self.undecodable_set_aside.fetch_add(1, Ordering::Relaxed);
            }
            // Another read moved it first.
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "failed to set an undecodable outbox event aside; it is skipped for now"
                );
            }
        }
    }

    /// Deletes a document matching `filter` as soon as its outbox is empty (see the field doc).
    pub fn deleting_drained_documents_matching(mut self, filter: Document) -> Self {
        self.delete_when_drained = Some(filter);
        self
    }

    /// Creates the index on the event ids, which both finding pending events and removing a
    /// published one use. Idempotent: call it at every start.
    pub async fn create_indexes(&self) -> anyhow::Result<()> {
        let index = IndexModel::builder().keys(doc! { format!("{OUTBOX_FIELD}.id"): 1 }).build();
        self.collection
            .create_index(index)
            .await
            .with_context(|| format!("failed to create the outbox index on {}", self.collection.name()))?;
        Ok(())
    }
}

impl OutboxStore for DocumentOutboxStore {
    async fn pending(&self, limit: usize) -> anyhow::Result<Vec<OutboxMessage>> {
        let ids = self.claim(i64::try_from(limit).unwrap_or(i64::MAX)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let owner_field = format!("{OUTBOX_LEASE_FIELD}.owner");
        let documents: Vec<Document> = self
            .collection
            // Only what this store holds the claim on.
            .find(doc! { "_id": { "$in": ids }, owner_field: &self.owner })
            .projection(doc! { OUTBOX_FIELD: 1 })
            .sort(doc! { "_id": 1 })
            .await
            .with_context(|| format!("failed to read claimed events in {}", self.collection.name()))?
            .try_collect()
            .await
            .with_context(|| format!("failed to read claimed events from {}", self.collection.name()))?;

        let mut messages = Vec::new();
        for document in documents {
            let Ok(events) = document.get_array(OUTBOX_FIELD) else { continue };
            let document_id = document.get("_id").cloned().unwrap_or(Bson::Null);
            for event in events {
                match bson::from_bson::<OutboxMessage>(event.clone()) {
                    Ok(message) => messages.push(message),
                    Err(error) => self.set_aside(&document_id, event, &error).await,
                }
            }
        }
        messages.truncate(limit);
        Ok(messages)
    }

    async fn mark_published(&self, message: &OutboxMessage) -> anyhow::Result<()> {
        let event_id_field = format!("{OUTBOX_FIELD}.id");
        // The document as it was before the `$pull`: whether this was its last event.
        let before = self
            .collection
            .find_one_and_update(
                doc! { event_id_field.as_str(): &message.id },
                doc! { "$pull": { OUTBOX_FIELD: { "id": &message.id } } },
            )
            .projection(doc! { "_id": 1, OUTBOX_FIELD: 1 })
            .await
            .with_context(|| format!("failed to remove published event {} from {}", message.id, self.collection.name()))?;
        let Some(document) = before else { return Ok(()) };
        let drained = document.get_array(OUTBOX_FIELD).is_ok_and(|events| events.len() <= 1);
        if !drained {
            return Ok(());
        }
        let id = document.get("_id").cloned().unwrap_or(Bson::Null);
        // Only once nothing else is waiting in it: an event may have been pushed since.
        let mut drained_filter = doc! { "_id": id, OUTBOX_FIELD: { "$size": 0 } };
        if let Some(filter) = &self.delete_when_drained {
            let mut delete_filter = filter.clone();
            delete_filter.extend(drained_filter.clone());
            let deleted = self
                .collection
                .delete_one(delete_filter)
                .await
                .with_context(|| format!("failed to delete a drained tombstone from {}", self.collection.name()))?;
            if deleted.deleted_count > 0 {
                return Ok(());
            }
        }
        // Release the claim, so that another replica's relay (woken by the next event about this
        // entity) need not wait for it to expire. If an event arrived meanwhile, the claim stays
        // and this relay's next read publishes it.
        drained_filter.insert(format!("{OUTBOX_LEASE_FIELD}.owner"), &self.owner);
        self.collection
            .update_one(drained_filter, doc! { "$unset": { OUTBOX_LEASE_FIELD: "" } })
            .await
            .with_context(|| format!("failed to release an outbox claim in {}", self.collection.name()))?;
        Ok(())
    }
}
