//! The outbox relay: the other half of "a stored entity is never left without its event".
//!
//! A service that must publish because of an HTTP request (a product created, an order placed or
//! cancelled) does not publish in the request. It stores the event in the same atomic write as the
//! entity (for MongoDB, inside the entity's own document), answers, and wakes the relay. The
//! relay publishes every pending event with publisher confirms and only then marks it sent. If the
//! broker is down the events wait and the relay keeps retrying; if the process dies between the
//! publish and the mark, the event is published again and the idempotent consumer ignores it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::failure_streak::FailureStreak;
use super::{Message, Publisher};

/// An event waiting to be published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Unique per event; also the AMQP message id.
    pub id: String,
    pub queue: String,
    pub correlation_id: String,
    /// The message serialised as JSON text.
    pub payload: String,
    /// The request that caused it (see `crate::request_id`), sent on as the AMQP header
    /// `x-request-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The trace it was made in (see `crate::telemetry`): its relay's publish continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// When it was stored (Unix milliseconds), for the outbox's age metric. Absent from events
    /// stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<i64>,
}

impl OutboxMessage {
    pub fn new<M: Message>(message: &M) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            queue: M::QUEUE.to_owned(),
            correlation_id: message.correlation_id(),
            payload: serde_json::to_string(message).expect("messages always serialise"),
            request_id: crate::request_id::current(),
            traceparent: crate::telemetry::current_traceparent(),
            created_at_ms: Some(chrono::Utc::now().timestamp_millis()),
        }
    }
}

/// How long the oldest of `batch` has waited at `now` (Unix milliseconds); `None` when none of
/// them says when it was stored.
fn oldest_age(batch: &[OutboxMessage], now: i64) -> Option<Duration> {
    let oldest = batch.iter().filter_map(|message| message.created_at_ms).min()?;
    Some(Duration::from_millis(u64::try_from(now - oldest).unwrap_or(0)))
}

/// Where a service keeps its pending events.
pub trait OutboxStore: Send + Sync + 'static {
    /// Up to `limit` events not yet marked published, oldest first.
    fn pending(&self, limit: usize) -> impl Future<Output = anyhow::Result<Vec<OutboxMessage>>> + Send;
    /// Marks events published, all of one read at once (one write, not one per event); marking
    /// one that is already gone is not an error.
    fn mark_published(&self, messages: &[OutboxMessage]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How a service tells its relay about the events it stored, so that publishing starts at once
/// instead of at the relay's next poll. Clones share one relay's wake.
///
/// Two ways: [`Self::events_stored`] (the relay reads the store), or a hand-over, for events whose
/// document the same write claimed for this relay: [`Self::announce`] before the write, then
/// [`HandOver::complete`] after it (or [`HandOver::withdraw`] if it stored nothing), and the relay
/// publishes them without a read. From the announcement until the relay has marked them
/// published, a read of the store leaves them, and every later event about the same entity, to the
/// hand-over: so none is published twice, and an entity's events keep their order.
///
/// Nothing can strand an announced event. A [`HandOver`] dropped without an answer (its write
/// failed in a way that may still have stored it, or the future awaiting the write was dropped)
/// withdraws the announcement and wakes the relay to read the store; and an announcement older
/// than [`HAND_OVER_LIMIT`] no longer holds anything back from reads, whatever path forgot it.
#[derive(Clone, Default)]
pub struct RelayWake(Arc<WakeState>);

/// How long an announced hand-over may hold its entities back from the relay's reads. Past it, a
/// read publishes them: a hand-over that arrives later publishes them a second time, which the
/// idempotent consumers ignore. As long as the document outbox's claims last (its
/// `DEFAULT_LEASE`), after which another replica's relay would take the document anyway.
pub const HAND_OVER_LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct WakeState {
    notify: Notify,
    /// Events were stored that the relay must look for in the store.
    look: AtomicBool,
    handed: Mutex<Handed>,
}

#[derive(Default)]
struct Handed {
    /// Handed over, waiting for the relay.
    queue: Vec<OutboxMessage>,
    /// The ids of events from [`RelayWake::announce`] until the relay settled them, with when
    /// they were announced.
    in_flight: HashMap<String, Instant>,
}

impl RelayWake {
    /// Events were stored that the relay finds by reading the store.
    pub fn events_stored(&self) {
        self.0.look.store(true, Ordering::SeqCst);
        self.0.notify.notify_one();
    }

    /// Announces a write that stores `events` in a document it claims for this relay; answer it
    /// with the returned [`HandOver`].
    #[must_use = "a hand-over is answered by complete or withdraw; dropping it makes the relay read the store"]
    pub fn announce(&self, events: &[OutboxMessage]) -> HandOver {
        let now = Instant::now();
        self.handed().in_flight.extend(events.iter().map(|event| (event.id.clone(), now)));
        HandOver { wake: self.clone(), events: events.to_vec() }
    }

    fn withdraw(&self, events: &[OutboxMessage]) {
        let mut handed = self.handed();
        for event in events {
            handed.in_flight.remove(&event.id);
        }
    }

    fn handed(&self) -> std::sync::MutexGuard<'_, Handed> {
        // The lock is never held across an await or a call that can panic.
        self.0.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take_handed(&self) -> Vec<OutboxMessage> {
        std::mem::take(&mut self.handed().queue)
    }

    /// The relay is done with handed-over `events`: published and marked, or left to its reads.
    fn settled(&self, events: &[OutboxMessage]) {
        self.withdraw(events);
    }

    /// `batch` (a read of the store) without the entities that have an event in a hand-over
    /// announced less than [`HAND_OVER_LIMIT`] ago; `true` when it left any out. Announcements
    /// older than that are forgotten here, with a warning.
    fn without_handed(&self, batch: Vec<OutboxMessage>) -> (Vec<OutboxMessage>, bool) {
        self.without_handed_at(batch, Instant::now())
    }

    /// [`Self::without_handed`] as judged at `now`.
    fn without_handed_at(&self, batch: Vec<OutboxMessage>, now: Instant) -> (Vec<OutboxMessage>, bool) {
        let mut handed = self.handed();
        let before = handed.in_flight.len();
        handed.in_flight.retain(|_, announced| now.saturating_duration_since(*announced) < HAND_OVER_LIMIT);
        let forgotten = before - handed.in_flight.len();
        if forgotten > 0 {
            tracing::warn!(
                events = forgotten,
                "outbox hand-overs announced {} s ago never came; their events are left to the relay's reads",
                HAND_OVER_LIMIT.as_secs()
            );
        }
        let held: HashSet<String> = batch
            .iter()
            .filter(|event| handed.in_flight.contains_key(&event.id))
            .map(|event| event.correlation_id.clone())
            .collect();
        if held.is_empty() {
            return (batch, false);
        }
        (batch.into_iter().filter(|event| !held.contains(&event.correlation_id)).collect(), true)
    }

    fn take_look(&self) -> bool {
        self.0.look.swap(false, Ordering::SeqCst)
    }
}

/// An announced hand-over (see [`RelayWake`]), answered once its write is done. Dropped without
/// an answer, it withdraws the announcement and wakes the relay to read the store, which finds
/// the events if the write stored them after all.
pub struct HandOver {
    wake: RelayWake,
    /// Empty once answered.
    events: Vec<OutboxMessage>,
}

impl HandOver {
    /// The write stored the events: the relay publishes them without reading the store. Should
    /// that fail, they are in the store, claimed by this relay, and its next read finds them.
    pub fn complete(mut self) {
        let events = std::mem::take(&mut self.events);
        self.wake.handed().queue.extend(events);
        self.wake.0.notify.notify_one();
    }

    /// The write certainly stored nothing (it matched no document): nothing to publish.
    pub fn withdraw(mut self) {
        let events = std::mem::take(&mut self.events);
        self.wake.withdraw(&events);
    }
}

impl Drop for HandOver {
    fn drop(&mut self) {
        if !self.events.is_empty() {
            self.wake.withdraw(&self.events);
            self.wake.events_stored();
        }
    }
}

/// Publishes what an [`OutboxStore`] holds.
pub struct OutboxRelay<S> {
    store: S,
    publisher: Arc<Publisher>,
    wake: RelayWake,
    /// How often to look for events without being woken: catches events stored by another
    /// instance, or left over from before a restart.
    poll_interval: Duration,
    /// Where each read's backlog is reported (`outbox_events_pending`, ...), if anywhere.
    metrics: Option<crate::metrics::Metrics>,
}

impl<S: OutboxStore> OutboxRelay<S> {
    pub fn new(store: S, publisher: Arc<Publisher>, wake: RelayWake) -> Self {
        Self { store, publisher, wake, poll_interval: Duration::from_secs(1), metrics: None }
    }

    /// The same relay, looking at the store unwoken every `poll_interval` instead of every second
    /// (tests make it long to see that the relay is woken).
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// The same relay, reporting what it reads to `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut streak = FailureStreak::default();
        // The first pass reads the store: events left from before a restart.
        let mut look = true;
        loop {
            let handed = self.wake.take_handed();
            look |= self.wake.take_look();
            let outcome = async {
                if !handed.is_empty() {
                    let published = self.publish(handed.clone()).await;
                    self.wake.settled(&handed);
                    published?;
                }
                // A read that left events to a hand-over reads again after it.
                if look { self.publish_pending().await } else { Ok(false) }
            }
            .await;
            match outcome {
                Ok(left_to_hand_over) => {
                    streak.record_success();
                    look = left_to_hand_over;
                }
                Err(error) => {
                    streak.record_failure();
                    // What was not published is in the store: the next pass reads it.
                    look = true;
                    if streak.worth_logging() {
                        tracing::warn!(error = format!("{error:#}"), "outbox relay cannot publish yet; will retry");
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                // While publishing fails, a wake-up would only make it fail again sooner.
                () = self.wake.0.notify.notified(), if !streak.is_failing() => {}
                () = tokio::time::sleep(relay_wait(&streak, self.poll_interval)) => look = true,
            }
        }
    }

    /// Publishes what reads of the store find, until one finds nothing; `true` when a read left
    /// events to a hand-over in progress.
    async fn publish_pending(&self) -> anyhow::Result<bool> {
        loop {
            let batch = self.store.pending(PENDING_BATCH).await.context("failed to read the outbox")?;
            if let Some(metrics) = &self.metrics {
                metrics.outbox(batch.len(), oldest_age(&batch, chrono::Utc::now().timestamp_millis()));
            }
            if batch.is_empty() {
                return Ok(false);
            }
            let (batch, left_to_hand_over) = self.wake.without_handed(batch);
            if !batch.is_empty() {
                self.publish(batch).await?;
            }
            // Reading again now would find the same events left to the hand-over.
            if left_to_hand_over {
                return Ok(true);
            }
        }
    }

    /// Publishes `batch`, then marks what the broker confirmed published, in one call.
    async fn publish(&self, batch: Vec<OutboxMessage>) -> anyhow::Result<()> {
        // Events about different entities go out concurrently (each publish waits for its own
        // confirm, so one at a time would make the relay the pipeline's bottleneck); events
        // about the same entity keep the order in which they were stored, and an entity whose
        // publish fails sends nothing after it.
        let sent: Vec<(Vec<OutboxMessage>, anyhow::Result<()>)> = futures::stream::iter(by_entity(batch))
            .map(|events| async move {
                let mut sent = Vec::with_capacity(events.len());
                for message in events {
                    if let Err(error) = self.publish_one(&message).await {
                        return (sent, Err(error));
                    }
                    sent.push(message);
                }
                (sent, Ok(()))
            })
            .buffer_unordered(CONCURRENT_ENTITIES)
            .collect()
            .await;
        let mut published = Vec::new();
        let mut failure = None;
        for (events, outcome) in sent {
            published.extend(events);
            if let Err(error) = outcome {
                failure.get_or_insert(error);
            }
        }
        // What the broker confirmed is marked even when something else failed, so that it is
        // not published again; a crash before this mark publishes it again, which the
        // idempotent consumers ignore.
        if !published.is_empty() {
            self.store.mark_published(&published).await.context("failed to mark outbox events published")?;
            for message in &published {
                tracing::info!(queue = %message.queue, correlation_id = %message.correlation_id, "published event");
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(())
    }

    async fn publish_one(&self, message: &OutboxMessage) -> anyhow::Result<()> {
        // The publish continues the trace the event was made in, whenever the relay gets to it.
        let span = super::publisher::publish_span(&message.queue, &message.correlation_id, message.traceparent.as_deref());
        let traceparent = crate::telemetry::traceparent_of(&span);
        self.publisher
            .publish_raw(
                &message.queue,
                &message.correlation_id,
                &message.id,
                message.payload.as_bytes(),
                super::publisher::context_headers(message.request_id.as_deref(), traceparent.as_deref()),
            )
            .instrument(span)
            .await
    }
}

/// How long the relay waits before its next look at the outbox: the poll interval while all is
/// well; while publishing fails, a back-off doubling from 200 ms up to 3.2 s, so that a broker
/// that is away is not hammered and one that is back is used again within seconds.
fn relay_wait(streak: &FailureStreak, poll_interval: Duration) -> Duration {
    if streak.is_failing() { Duration::from_millis(100 * 2u64.pow(streak.count().min(5))) } else { poll_interval }
}

/// How many pending events one read of the outbox takes.
const PENDING_BATCH: usize = 100;

/// How many entities' events are in flight at once.
const CONCURRENT_ENTITIES: usize = 16;

/// The batch split by entity (correlation id), each entity's events in stored order.
fn by_entity(batch: Vec<OutboxMessage>) -> Vec<Vec<OutboxMessage>> {
    let mut groups: Vec<Vec<OutboxMessage>> = Vec::new();
    let mut index_of_entity: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for message in batch {
        let index = *index_of_entity.entry(message.correlation_id.clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[index].push(message);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_age_is_measured_from_the_oldest_stored_time() {
        let stored_at = |at: Option<i64>| OutboxMessage { created_at_ms: at, ..event("e", "c") };
        let batch = [stored_at(Some(9_000)), stored_at(None), stored_at(Some(7_500))];
        assert_eq!(oldest_age(&batch, 10_000), Some(Duration::from_millis(2_500)));
        assert_eq!(oldest_age(&[stored_at(None)], 10_000), None);
        assert_eq!(oldest_age(&[stored_at(Some(10_500))], 10_000), Some(Duration::ZERO), "a clock step back is no age");
    }

    fn event(id: &str, correlation_id: &str) -> OutboxMessage {
        OutboxMessage {
            id: id.into(),
            queue: "queue".into(),
            correlation_id: correlation_id.into(),
            payload: "{}".into(),
            request_id: None,
            traceparent: None,
            created_at_ms: None,
        }
    }

    /// A read that finds an event of a hand-over in progress leaves it, and every event about the
    /// same entity, to the hand-over, from the announcement until the relay settled it.
    #[test]
    fn a_read_leaves_the_entities_of_a_hand_over_in_progress_to_it() {
        let wake = RelayWake::default();
        let created = event("created", "order-1");
        let cancelled = event("cancelled", "order-1");
        let other = event("other", "order-2");
        let read = || vec![created.clone(), cancelled.clone(), other.clone()];
        assert_eq!(wake.without_handed(read()), (read(), false), "nothing handed over");

        let hand_over = wake.announce(std::slice::from_ref(&created));
        assert_eq!(wake.without_handed(read()), (vec![other.clone()], true), "announced, before the write");
        hand_over.complete();
        assert_eq!(wake.without_handed(read()), (vec![other.clone()], true), "handed over");
        assert!(!wake.take_look(), "a completed hand-over needs no read");
        assert_eq!(wake.take_handed(), vec![created.clone()]);
        assert_eq!(wake.without_handed(read()), (vec![other.clone()], true), "being published");
        wake.settled(std::slice::from_ref(&created));
        assert_eq!(wake.without_handed(read()), (read(), false), "settled: reads publish what is left");

        wake.announce(std::slice::from_ref(&other)).withdraw();
        assert_eq!(wake.without_handed(read()), (read(), false), "a write that stored nothing hands nothing over");
        assert!(wake.take_handed().is_empty());
        assert!(!wake.take_look(), "and needs no read");
    }

    /// The future that awaited a write may be dropped before it could answer the hand-over (a
    /// client hung up): the announcement is withdrawn and the relay told to read the store,
    /// which holds the events if the write went through.
    #[test]
    fn a_hand_over_dropped_unanswered_leaves_its_events_to_a_read_at_once() {
        let wake = RelayWake::default();
        let created = event("created", "order-1");
        let hand_over = wake.announce(std::slice::from_ref(&created));
        drop(hand_over);
        assert!(wake.take_look(), "the relay reads the store");
        assert_eq!(wake.without_handed(vec![created.clone()]), (vec![created], false), "and publishes what it finds");
        assert!(wake.take_handed().is_empty());
    }

    /// Whatever path forgets to answer an announcement, it holds its entity back from reads for
    /// at most [`HAND_OVER_LIMIT`].
    #[test]
    fn an_announcement_holds_its_entity_back_from_reads_for_a_bounded_time() {
        let wake = RelayWake::default();
        let created = event("created", "order-1");
        let before_announcing = Instant::now();
        std::mem::forget(wake.announce(std::slice::from_ref(&created)));
        let after_announcing = Instant::now();
        let just_before = before_announcing + HAND_OVER_LIMIT - Duration::from_millis(1);
        assert_eq!(wake.without_handed_at(vec![created.clone()], just_before), (vec![], true), "held within the limit");
        let after = after_announcing + HAND_OVER_LIMIT;
        assert_eq!(wake.without_handed_at(vec![created.clone()], after), (vec![created.clone()], false), "released after it");
        assert!(wake.handed().in_flight.is_empty(), "and forgotten");
    }

    #[test]
    fn a_failing_relay_backs_off_doubling_up_to_a_cap_and_polls_again_once_it_succeeds() {
        let poll = Duration::from_secs(1);
        let mut streak = FailureStreak::default();
        assert!(!streak.is_failing());
        assert_eq!(relay_wait(&streak, poll), poll);
        let mut waits = Vec::new();
        for _ in 0..7 {
            streak.record_failure();
            waits.push(relay_wait(&streak, poll).as_millis());
        }
        assert!(streak.is_failing());
        assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 3200, 3200]);
        streak.record_success();
        assert!(!streak.is_failing());
        assert_eq!(relay_wait(&streak, poll), poll);
    }

    #[test]
    fn events_are_grouped_by_entity_and_keep_their_order_within_it() {
        let batch = vec![event("1", "order-a"), event("2", "order-b"), event("3", "order-a")];
        let groups: Vec<Vec<String>> =
            by_entity(batch).into_iter().map(|group| group.into_iter().map(|message| message.id).collect()).collect();
        assert_eq!(groups, vec![vec!["1", "3"], vec!["2"]]);
    }
}
