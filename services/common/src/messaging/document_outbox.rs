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
//! first, events in the order they were pushed); `mark_published` removes the events the broker
//! confirmed with one `$pull`. A crash between the publish and the `$pull` publishes the event
//! again, which the idempotent consumers ignore.
//!
//! Several replicas of a service drain one collection, each with a relay of its own. So that an
//! event is not published once per replica, and so that one entity's events leave in the order
//! they were stored, a relay first *claims* a document. Two top-level fields carry the claim:
//! [`OUTBOX_DUE_FIELD`], present exactly while the document may hold pending events, is the time
//! from which any relay may take them (the epoch when nobody holds them, a claim's expiry while a
//! relay does), and [`OUTBOX_OWNER_FIELD`] names the relay holding the claim. A relay claims with
//! an update whose filter requires the document to be due; the server applies it to one document
//! atomically, so of two relays racing for a document one wins and the other skips it. A relay
//! renews its claims while it lives; the last event's removal ([`OutboxStore::mark_published`])
//! removes both fields; a relay that dies holding a claim delays that entity's events by the
//! lease's length ([`DEFAULT_LEASE`]), after which any relay takes them over. Expiry is judged by
//! each relay's own clock, so replicas on different hosts need clocks agreeing within seconds.
//!
//! Why top-level scalar fields and no `$or`: the relay looks for work on every wake-up, and the
//! query must cost the same with a hundred documents as with a million. An indexed range on one
//! field (`outbox_due <= now`) and an indexed equality (`outbox_owner = me`) do; a filter on
//! "the outbox array is not empty" or an `$or` over the claim's states does not on every server
//! (the MongoDB-wire stand-in scans the whole collection for them: 18 ms at 20,000 orders,
//! against 0.5 ms for these).
//!
//! The fast path, a hand-over: a write that stores events in a document holding none claims it
//! for its own instance's relay in the same write ([`DocumentOutboxStore::insert`],
//! [`DocumentOutboxStore::update`]) and hands the events to that relay in memory
//! ([`super::RelayWake`]), which publishes them without reading the store: on an idle system an
//! order's two relay hops then cost no read at all. Events stored behind pending ones are left to
//! whichever relay holds the document, and that relay's reads find them.
//!
//! Usage, for a service keeping `Thing`s in a collection:
//!
//! ```ignore
//! // At start-up: one store per instance (its writes claim for its relay), the indexes, the relay.
//! let outbox = DocumentOutboxStore::new(collection.clone_with_type());
//! outbox.create_indexes().await?;
//! tokio::spawn(OutboxRelay::new(outbox.clone(), publisher, outbox.wake()).run(cancel));
//!
//! // Writing: the entity and its event, in one single-document write, which also wakes the relay.
//! let event = OutboxMessage::new(&ThingCreated { .. });
//! outbox.insert(bson::to_document(&thing)?, &[event]).await?;
//! // Or, changing one: `outbox.update(filter, doc! { "$set": .. }, &events)`.
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
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;
use mongodb::{Collection, IndexModel};

use super::{OutboxMessage, OutboxStore, RelayWake};

/// The array field that holds a document's pending events.
pub const OUTBOX_FIELD: &str = "outbox";

/// Where `pending` moves an event that cannot be decoded, in the same document, so that it is
/// kept for inspection but no longer read as pending.
pub const UNDECODABLE_OUTBOX_FIELD: &str = "outbox_undecodable";

/// Present on a document exactly while its outbox may hold events: the time from which any relay
/// may take them. The epoch when no relay holds them; a claim's expiry while one does.
pub const OUTBOX_DUE_FIELD: &str = "outbox_due";

/// The relay holding the claim on a document's events (see [`OUTBOX_DUE_FIELD`]).
pub const OUTBOX_OWNER_FIELD: &str = "outbox_owner";

/// How long a claim lasts unless renewed: how long a dead replica's claimed events wait before
/// another replica publishes them. Longer than a publish can take (its confirm times out sooner),
/// so a live relay never loses a claim in the middle of its work.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// [`OUTBOX_DUE_FIELD`] of a document whose events no relay holds: due at once.
fn due_at_once() -> bson::DateTime {
    bson::DateTime::from_millis(0)
}

/// Events as the BSON array to store under [`OUTBOX_FIELD`].
fn outbox_array(messages: &[OutboxMessage]) -> anyhow::Result<Bson> {
    bson::to_bson(messages).context("failed to encode outbox events as BSON")
}

/// Adds to `update` (which must have no `$push` or `$max` of its own) the operators that append
/// `events` to a document's outbox and make them due: at once, or, while a relay holds the
/// document, when its claim ends (the holder itself publishes them, after the earlier ones).
fn push_events(update: &mut Document, events: &[OutboxMessage]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    update.insert("$push", doc! { OUTBOX_FIELD: { "$each": outbox_array(events)? } });
    // `$max` sets the field when it is absent and leaves a claim's later expiry as it is.
    update.insert("$max", doc! { OUTBOX_DUE_FIELD: due_at_once() });
    Ok(())
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
    /// This store's name in the claims it takes: unique per store made with [`Self::new`] (one
    /// per relay, so one per replica); its clones share it.
    owner: String,
    lease: Duration,
    /// When this store last renewed its claims (milliseconds since the epoch), shared by clones.
    last_renewal: Arc<AtomicI64>,
    /// The wake of the relay draining this store, which its writes ([`Self::insert`],
    /// [`Self::update`]) notify or hand their events to.
    wake: RelayWake,
}

impl DocumentOutboxStore {
    pub fn new(collection: Collection<Document>) -> Self {
        Self {
            collection,
            delete_when_drained: None,
            undecodable_set_aside: Arc::new(AtomicU64::new(0)),
            owner: uuid::Uuid::new_v4().to_string(),
            lease: DEFAULT_LEASE,
            last_renewal: Arc::new(AtomicI64::new(0)),
            wake: RelayWake::default(),
        }
    }

    /// The wake of the relay that drains this store: give it to [`super::OutboxRelay::new`].
    pub fn wake(&self) -> RelayWake {
        self.wake.clone()
    }

    /// The claim fields that make a document this store's from the write that stores it.
    fn claimed_from_now(&self) -> Document {
        let until = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis().saturating_add(self.lease_millis()));
        doc! { OUTBOX_DUE_FIELD: until, OUTBOX_OWNER_FIELD: &self.owner }
    }

    /// Inserts a new document with `events` in its outbox, claimed for this store's relay in the
    /// same write, and hands the events to that relay: they are published without a read.
    ///
    /// Safe to drop at any await: the write and its hand-over run to their end in a task of
    /// their own ([`crate::detached::run_to_completion`]), so a caller that stops waiting (a
    /// client hung up) leaves neither a stored document without its published events nor a relay
    /// waiting for a hand-over that never comes.
    pub async fn insert(&self, document: Document, events: &[OutboxMessage]) -> anyhow::Result<()> {
        let store = self.clone();
        let events = events.to_vec();
        crate::detached::run_to_completion(async move { store.insert_and_hand_over(document, &events).await }).await
    }

    async fn insert_and_hand_over(&self, mut document: Document, events: &[OutboxMessage]) -> anyhow::Result<()> {
        document.insert(OUTBOX_FIELD, outbox_array(events)?);
        if events.is_empty() {
            self.collection.insert_one(document).await?;
            return Ok(());
        }
        document.extend(self.claimed_from_now());
        let hand_over = self.wake.announce(events);
        // An error may still have stored it (a connection lost after the server applied the
        // insert): dropping the hand-over unanswered makes the relay read the store.
        self.collection.insert_one(document).await?;
        hand_over.complete();
        Ok(())
    }

    /// Applies `update` (which must have no `$push` or `$max` of its own) to the document matching
    /// `filter` and appends `events` to its outbox, in one write; the document as it is after, or
    /// `None` when nothing matched. A document holding no pending events is claimed for this
    /// store's relay by the same write and the events are handed to it; otherwise they queue
    /// behind the pending ones, for whichever relay holds them, and this store's relay is told to
    /// look. Safe to drop at any await, like [`Self::insert`].
    pub async fn update(&self, filter: Document, update: Document, events: &[OutboxMessage]) -> anyhow::Result<Option<Document>> {
        if events.is_empty() {
            return Ok(self.collection.find_one_and_update(filter, update).return_document(ReturnDocument::After).await?);
        }
        let store = self.clone();
        let events = events.to_vec();
        crate::detached::run_to_completion(async move { store.update_and_hand_over(filter, update, &events).await }).await
    }

    async fn update_and_hand_over(
        &self,
        filter: Document,
        update: Document,
        events: &[OutboxMessage],
    ) -> anyhow::Result<Option<Document>> {
        let mut unclaimed = filter.clone();
        unclaimed.insert(OUTBOX_DUE_FIELD, doc! { "$exists": false });
        let mut claiming = update.clone();
        claiming.insert("$push", doc! { OUTBOX_FIELD: { "$each": outbox_array(events)? } });
        match claiming.get_document_mut("$set") {
            Ok(set) => set.extend(self.claimed_from_now()),
            Err(_) => {
                claiming.insert("$set", self.claimed_from_now());
            }
        }
        let hand_over = self.wake.announce(events);
        // On an error the hand-over is dropped unanswered, as in `insert`.
        if let Some(document) =
            self.collection.find_one_and_update(unclaimed, claiming).return_document(ReturnDocument::After).await?
        {
            hand_over.complete();
            return Ok(Some(document));
        }
        hand_over.withdraw();
        let mut queued = update;
        push_events(&mut queued, events)?;
        let document = self.collection.find_one_and_update(filter, queued).return_document(ReturnDocument::After).await?;
        if document.is_some() {
            self.wake.events_stored();
        }
        Ok(document)
    }

    /// The same store with claims lasting `lease` (tests shorten it to see a claim expire).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn lease_millis(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Keeps this store's claims from expiring while it lives: at most every quarter of a lease,
    /// every claim it holds is extended to a whole lease from `now`. A claim that expired and was
    /// taken by another relay names that relay now, so it is not taken back.
    async fn renew(&self, now: bson::DateTime, until: bson::DateTime) -> anyhow::Result<()> {
        let now_millis = now.timestamp_millis();
        if now_millis.saturating_sub(self.last_renewal.load(Ordering::Relaxed)) < self.lease_millis() / 4 {
            return Ok(());
        }
        self.collection
            .update_many(doc! { OUTBOX_OWNER_FIELD: &self.owner }, doc! { "$set": { OUTBOX_DUE_FIELD: until } })
            .await
            .with_context(|| format!("failed to renew outbox claims in {}", self.collection.name()))?;
        self.last_renewal.store(now_millis, Ordering::Relaxed);
        Ok(())
    }

    /// Claims up to `limit` documents whose events are due (nobody's, or their claim expired),
    /// oldest first, after renewing the claims this store already holds. Returns the time the
    /// claims were judged at.
    async fn claim(&self, limit: i64) -> anyhow::Result<bson::DateTime> {
        let now = bson::DateTime::now();
        let until = bson::DateTime::from_millis(now.timestamp_millis().saturating_add(self.lease_millis()));
        self.renew(now, until).await?;
        let due = doc! { OUTBOX_DUE_FIELD: { "$lte": now } };
        let ids: Vec<Bson> = self
            .collection
            .find(due.clone())
            .projection(doc! { "_id": 1 })
            // Unclaimed documents first (due at the epoch), oldest first among them (ObjectIds
            // grow with time), so events leave roughly in the order they were stored; the index
            // on these two fields gives that order without a sort.
            .sort(doc! { OUTBOX_DUE_FIELD: 1, "_id": 1 })
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
            return Ok(now);
        }
        // Another relay may have claimed some of them since the read: the filter is checked
        // again, atomically, for each document, and those are left alone.
        let mut claim = due;
        claim.insert("_id", doc! { "$in": &ids });
        self.collection
            .update_many(claim, doc! { "$set": { OUTBOX_DUE_FIELD: until, OUTBOX_OWNER_FIELD: &self.owner } })
            .await
            .with_context(|| format!("failed to claim pending events in {}", self.collection.name()))?;
        Ok(now)
    }

    /// Lets go of claimed documents whose outbox turned out empty (their last event was removed
    /// by a relay whose claim had expired, or by hand), so that no relay reads them again.
    async fn release_empty(&self, ids: Vec<Bson>) -> anyhow::Result<()> {
        self.collection
            .update_many(
                doc! { "_id": { "$in": ids }, format!("{OUTBOX_FIELD}.0"): { "$exists": false } },
                doc! { "$unset": { OUTBOX_DUE_FIELD: "", OUTBOX_OWNER_FIELD: "" } },
            )
            .await
            .with_context(|| format!("failed to release empty outboxes in {}", self.collection.name()))?;
        Ok(())
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

    /// Creates the indexes the relay's queries use: on the claim fields, which finding pending
    /// events uses, and on the event ids, which removing a published one uses. Then makes due any
    /// document holding events without [`OUTBOX_DUE_FIELD`] (written before the field existed,
    /// when claims lived in `outbox_lease`): a
    /// whole-collection scan, once per start. Idempotent: call it at every start.
    pub async fn create_indexes(&self) -> anyhow::Result<()> {
        let indexes =
            [doc! { OUTBOX_DUE_FIELD: 1, "_id": 1 }, doc! { OUTBOX_OWNER_FIELD: 1 }, doc! { format!("{OUTBOX_FIELD}.id"): 1 }]
                .into_iter()
                .map(|keys| IndexModel::builder().keys(keys).build());
        self.collection
            .create_indexes(indexes)
            .await
            .with_context(|| format!("failed to create the outbox indexes on {}", self.collection.name()))?;
        self.collection
            .update_many(
                doc! { format!("{OUTBOX_FIELD}.0"): { "$exists": true }, OUTBOX_DUE_FIELD: { "$exists": false } },
                doc! { "$set": { OUTBOX_DUE_FIELD: due_at_once() }, "$unset": { "outbox_lease": "" } },
            )
            .await
            .with_context(|| format!("failed to make the pending events in {} due", self.collection.name()))?;
        Ok(())
    }
}

impl OutboxStore for DocumentOutboxStore {
    async fn pending(&self, limit: usize) -> anyhow::Result<Vec<OutboxMessage>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = self.claim(limit).await?;
        let documents: Vec<Document> = self
            .collection
            // Only what this store holds an unexpired claim on.
            .find(doc! { OUTBOX_OWNER_FIELD: &self.owner, OUTBOX_DUE_FIELD: { "$gt": now } })
            .projection(doc! { OUTBOX_FIELD: 1 })
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await
            .with_context(|| format!("failed to read claimed events in {}", self.collection.name()))?
            .try_collect()
            .await
            .with_context(|| format!("failed to read claimed events from {}", self.collection.name()))?;

        let mut messages = Vec::new();
        let mut empty = Vec::new();
        for document in documents {
            let document_id = document.get("_id").cloned().unwrap_or(Bson::Null);
            let events = document.get_array(OUTBOX_FIELD).map(Vec::as_slice).unwrap_or_default();
            if events.is_empty() {
                empty.push(document_id);
                continue;
            }
            for event in events {
                match bson::from_bson::<OutboxMessage>(event.clone()) {
                    Ok(message) => messages.push(message),
                    Err(error) => self.set_aside(&document_id, event, &error).await,
                }
            }
        }
        if !empty.is_empty() {
            self.release_empty(empty).await?;
        }
        messages.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(messages)
    }

    async fn mark_published(&self, messages: &[OutboxMessage]) -> anyhow::Result<()> {
        let ids: Vec<&str> = messages.iter().map(|message| message.id.as_str()).collect();
        self.collection
            .update_many(
                doc! { format!("{OUTBOX_FIELD}.id"): { "$in": &ids } },
                doc! { "$pull": { OUTBOX_FIELD: { "id": { "$in": &ids } } } },
            )
            .await
            .with_context(|| format!("failed to remove {} published event(s) from {}", ids.len(), self.collection.name()))?;
        // The documents this store holds whose outbox is now empty. An event may have been pushed
        // into one since its last was published: that one is not empty, and keeps its claim for
        // this store's next read.
        let drained = doc! { OUTBOX_OWNER_FIELD: &self.owner, OUTBOX_FIELD: { "$size": 0 } };
        if let Some(filter) = &self.delete_when_drained {
            let mut tombstones = filter.clone();
            tombstones.extend(drained.clone());
            self.collection
                .delete_many(tombstones)
                .await
                .with_context(|| format!("failed to delete drained tombstones from {}", self.collection.name()))?;
        }
        // The rest leave the relays' view; the next event about one of them is due at once to
        // whichever relay looks first.
        self.collection
            .update_many(drained, doc! { "$unset": { OUTBOX_DUE_FIELD: "", OUTBOX_OWNER_FIELD: "" } })
            .await
            .with_context(|| format!("failed to release outbox claims in {}", self.collection.name()))?;
        Ok(())
    }
}

/// Against the real MongoDB-wire server of the test run (`E2E_MONGODB_URL`), in a database of
/// their own, dropped at the end.
#[cfg(test)]
mod tests {
    use super::*;

    async fn test_collection() -> (mongodb::Database, Collection<Document>) {
        let url = shop_testkit_base::ServerUrls::from_environment().mongodb;
        let client = mongodb::Client::with_uri_str(&url).await.expect("MongoDB client");
        let database = client.database(&format!("document_outbox_test_{}", uuid::Uuid::new_v4().simple()));
        let collection = database.collection("things");
        (database, collection)
    }

    /// Two reads of one store (the relay's wake and its poll) can both see an undecodable event
    /// before either moves it: the one that moves it counts it, the other neither moves nor
    /// counts anything.
    #[tokio::test]
    async fn an_undecodable_event_seen_by_two_reads_is_moved_aside_and_counted_once() {
        let (database, collection) = test_collection().await;
        let id = Bson::ObjectId(bson::oid::ObjectId::new());
        let event = Bson::Document(doc! { "id": "broken", "queue": 7 });
        collection.insert_one(doc! { "_id": id.clone(), OUTBOX_FIELD: [event.clone()] }).await.unwrap();
        let error = bson::from_bson::<OutboxMessage>(event.clone()).expect_err("the event does not decode");
        let store = DocumentOutboxStore::new(collection.clone());

        store.set_aside(&id, &event, &error).await;
        assert_eq!(store.undecodable_events_set_aside(), 1, "the read that moved it counted it");
        store.set_aside(&id, &event, &error).await;
        assert_eq!(store.undecodable_events_set_aside(), 1, "the read that found it gone counted nothing");

        let document = collection.find_one(doc! { "_id": id }).await.unwrap().expect("the document stays");
        assert_eq!(document.get_array(OUTBOX_FIELD).unwrap(), &Vec::<Bson>::new());
        assert_eq!(document.get_array(UNDECODABLE_OUTBOX_FIELD).unwrap(), &vec![event], "moved once");
        database.drop().await.unwrap();
    }
}
