//! A supervised consumer: connects, declares the topology, consumes one queue with manual acks
//! and a bounded prefetch, and reconnects with backoff whenever the broker goes away, until it is
//! cancelled.
//!
//! A delivery is taken only from the service that owns its event: its `user_id` (which RabbitMQ
//! guarantees is the publishing connection's user) must be the owner's broker user
//! ([`crate::messaging::topology::owner`]), or the consumer's own for the copies it made itself (retries, delayed
//! copies, replays). Anything else is refused before it is decoded: dead-lettered with the reason
//! in its `x-refused` header, counted as `refused`, and logged as an error.
//!
//! Each delivery is acknowledged only after its handler succeeded, so a crash mid-handler means
//! redelivery, never loss. What happens to a delivery whose handler failed depends on the
//! [`HandlerError`] it returned:
//!
//! - `Reject`, or a message that cannot be decoded: rejected into its dead-letter queue at once.
//! - `Retry`, or a handler that panicked: re-published with its attempt counter raised (and the
//!   original acked once the copy is confirmed), after a short backoff; after
//!   [`ConsumerSettings::max_attempts`] attempts it is dead-lettered.
//! - `Unavailable` (a dependency is down): the delivery is kept, unacknowledged and uncounted, and
//!   the whole consumer pauses: no handler starts while it is paused except one probe at a time,
//!   which retries its message after a backoff that doubles up to
//!   [`ConsumerSettings::max_outage_backoff`]. The first probe that gets past the dependency
//!   resumes the consumer. Deliveries the broker hands over meanwhile (at most the prefetch) wait
//!   for the pause to end; an outage of any length costs no message a try and dead-letters none.
//! - `NotYet` (something the message needs is on its way): the message is set aside in its delay
//!   queue for [`ConsumerSettings::not_yet_recheck_interval`] and delivered again, so waiting
//!   holds no prefetch slot; after [`ConsumerSettings::not_yet_give_up_after`] the handler is told
//!   to give its final answer.
//!
//! Every delivery runs inside a `message` span (field `queue`) from the moment it is taken until it
//! is acked, rejected or handed back, including while it waits out an outage: the end-to-end
//! harness counts open `message` spans to know what is in flight.
//!
//! A panic inside the consumer's own machinery ends that session like a lost connection does: the
//! supervisor logs it and starts a new session (unacknowledged deliveries return to the queue).
//!
//! The parts: this module supervises sessions (reconnecting with back-off until cancelled);
//! [`session`] is one connection's consumption; [`delivery`] takes one delivery to its
//! [`delivery::Outcome`]; [`outage`] pauses the consumer while a dependency is down; [`headers`]
//! reads and writes the counters a message carries across redeliveries.

mod delivery;
mod headers;
mod outage;
mod session;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::failure_streak::{FailureStreak, capped_backoff};
use super::{HandlerError, Message};

/// A replayed dead letter is a copy like a retry (see [`crate::messaging::dead_letters::replay`]).
pub(crate) use delivery::as_copy;

pub use headers::{ATTEMPT_HEADER, PUBLISHED_BY_HEADER, REFUSED_HEADER, WAITING_SINCE_HEADER};

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Names the connection and the consumer tag, so the management UI shows who consumes.
    pub consumer_name: String,
    /// How many unacknowledged messages the broker hands us at once, which is also how many
    /// handlers run concurrently. Bounded so that one busy consumer cannot hoard a queue, and so
    /// that a paused consumer holds at most this many messages while the rest wait in the queue
    /// for another consumer (or for the outage to end).
    pub prefetch: u16,
    /// How many times a message that keeps failing (`Retry`, or a panic) is tried before it is
    /// dead-lettered. Small, because such a failure is the message's or the code's, not one that
    /// waiting cures; outages are not counted (see `Unavailable`).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles with each further attempt. Short: it is
    /// for races and lock timeouts, which clear within moments.
    pub retry_backoff: Duration,
    /// The first wait of a consumer paused for an outage before it probes the dependency again;
    /// it doubles with each failed probe.
    pub outage_backoff: Duration,
    /// The longest wait between two probes of a dependency that is down: 30 s by default, so a
    /// long outage costs a probe every 30 s and the consumer resumes at most 30 s after the
    /// dependency is back.
    pub max_outage_backoff: Duration,
    /// How long a `NotYet` message waits in the delay queue before it is delivered again. One
    /// value per queue (the delay queue expires messages at its head only).
    pub not_yet_recheck_interval: Duration,
    /// How long, from the first `NotYet`, a message may keep waiting; after that the handler is
    /// told (`Attempt::may_keep_waiting == false`) to give its final answer.
    pub not_yet_give_up_after: Duration,
    /// Where the consumer reports whether it consumes (`/ready`), if anywhere.
    pub readiness: Option<crate::health::Readiness>,
    /// Where it counts and times the deliveries it finishes (`/metrics`), if anywhere.
    pub metrics: Option<crate::metrics::Metrics>,
}

impl ConsumerSettings {
    pub fn new(consumer_name: impl Into<String>) -> Self {
        Self {
            consumer_name: consumer_name.into(),
            prefetch: 8,
            max_attempts: 5,
            retry_backoff: Duration::from_millis(200),
            outage_backoff: Duration::from_millis(200),
            max_outage_backoff: Duration::from_secs(30),
            not_yet_recheck_interval: Duration::from_secs(5),
            not_yet_give_up_after: Duration::from_secs(5 * 60),
            readiness: None,
            metrics: None,
        }
    }
}

/// Which attempt at a message this is, for handlers whose answer depends on it (wait for
/// something that is on its way, then give a final answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first delivery; raised by each failed attempt (`Retry` or a panic).
    pub number: u32,
    /// How long the message has been waiting for something on its way (zero before its first
    /// `NotYet`).
    pub waited: Duration,
    /// Whether a `HandlerError::NotYet` now sets the message aside again; when false the handler
    /// must give its final answer (a `NotYet` would dead-letter it).
    pub may_keep_waiting: bool,
}

/// Consumes `M::QUEUE` until `cancel` fires, calling `handler` for each decoded message with the
/// attempt it makes (a handler that does not care ignores it).
pub async fn consume<M, H, F>(url: String, settings: ConsumerSettings, handler: H, cancel: CancellationToken)
where
    M: Message,
    H: Fn(M, Attempt) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    let handler = Arc::new(handler);
    // Lives across sessions: an outage that outlasts a reconnect keeps its backoff.
    let gate = Arc::new(outage::OutageGate::default());
    if let Some(metrics) = &settings.metrics {
        metrics.consumer_paused(M::QUEUE, false);
        // The alert on refused messages counts from zero (see deploy/prometheus/alerts.yml).
        metrics.expect_messages(M::QUEUE, delivery::REFUSED);
    }
    let mut failures = FailureStreak::default();
    let status = settings.readiness.as_ref().map(|readiness| readiness.consumer(M::QUEUE)).unwrap_or_default();
    while !cancel.is_cancelled() {
        // Supervision: a panic in a session (outside the handlers, which are caught one by one)
        // ends that session only; its unacknowledged deliveries go back to the queue when its
        // connection is dropped, and a new session starts after the backoff.
        let session = AssertUnwindSafe(session::consume_until_disconnected(&url, &settings, &handler, &gate, &status, &cancel))
            .catch_unwind()
            .await;
        status.set_consuming(false);
        match session {
            Ok(Ok(())) if cancel.is_cancelled() => break,
            Ok(Ok(())) => {
                // The broker ended the stream (the queue was deleted, say): a fresh start.
                tracing::warn!(queue = M::QUEUE, "consumer stream ended; reconnecting");
                failures.record_success();
                failures.record_failure();
            }
            Ok(Err(error)) => {
                failures.record_failure();
                if failures.worth_logging() {
                    tracing::warn!(queue = M::QUEUE, error = format!("{error:#}"), "consumer is disconnected; retrying");
                }
            }
            Err(panic) => {
                failures.record_failure();
                tracing::error!(
                    queue = M::QUEUE,
                    panic = delivery::panic_text(&*panic),
                    "consumer session panicked; restarting it"
                );
            }
        }
        let delay = capped_backoff(Duration::from_millis(200), failures.count(), Duration::from_secs(5));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => break,
        }
    }
    tracing::debug!(queue = M::QUEUE, "consumer stopped");
}
