//! One delivery, from the moment it is taken to its [`Outcome`]: decoded, handed to the handler
//! (through any outage), then acknowledged, retried, set aside, dead-lettered or handed back.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::headers::{
    ATTEMPT_HEADER, PUBLISHED_BY_HEADER, REFUSED_HEADER, WAITING_SINCE_HEADER, attempt_of, header_text, now_millis, waited_of,
    with_header,
};
use super::outage::OutageGate;
use super::{Attempt, ConsumerSettings};
use crate::messaging::failure_streak::capped_backoff;
use crate::messaging::publisher::publish_confirmed;
use crate::messaging::{HandlerError, Message, topology};

/// How long re-publishing a retry or a delayed copy may take, confirm included. Past that the
/// broker is treated as unavailable: the delivery is handed back (nack with requeue) instead.
const REPUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The label of [`Outcome::Refused`].
pub(super) const REFUSED: &str = "refused";

/// What became of a delivery; counted in `/metrics` by [`Outcome::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The handler succeeded; the delivery is acknowledged.
    Handled,
    /// It failed and has tries left: a copy with its attempt raised replaced it.
    Retried,
    /// Something it needs is on its way: a copy waits in the delay queue.
    SetAside,
    /// Rejected into its dead-letter queue (undecodable, refused by its handler, out of tries or
    /// out of time).
    DeadLettered,
    /// Not taken: published by a service that does not own its event. Dead-lettered with the
    /// reason.
    Refused,
    /// Handed back to the queue unhandled: the consumer is stopping or its channel is gone.
    HandedBack,
}

impl Outcome {
    /// The `outcome` label of `messages_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Retried => "retried",
            Outcome::SetAside => "set_aside",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Refused => REFUSED,
            Outcome::HandedBack => "handed_back",
        }
    }
}

/// What a delivery needs besides its handler.
pub(super) struct DeliveryContext<'a> {
    /// The channel the delivery came on: a delivery paused for an outage gives up (the broker has
    /// requeued it) once this channel is gone.
    pub(super) channel: &'a Channel,
    /// Confirm-mode channel for retries and delayed copies.
    pub(super) retry_channel: &'a Channel,
    pub(super) settings: &'a ConsumerSettings,
    pub(super) gate: &'a OutageGate,
    /// The consumer's stop signal: a delivery paused for an outage is handed back when it fires
    /// instead of holding up the shutdown.
    pub(super) cancel: &'a CancellationToken,
    /// The broker user the consumer connects as: the `user_id` of the copies it publishes.
    pub(super) own_user: &'a str,
}

pub(super) async fn handle_delivery<M, H, F>(delivery: Delivery, handler: &H, context: &DeliveryContext<'_>)
where
    M: Message,
    H: Fn(M, Attempt) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let settings = context.settings;
    let attempt = attempt_of(&delivery.properties);
    let waited = waited_of(&delivery.properties);
    let attempt_information = Attempt { number: attempt, waited, may_keep_waiting: waited < settings.not_yet_give_up_after };
    let correlation_id = delivery.properties.correlation_id().as_ref().map(ToString::to_string).unwrap_or_default();
    // The request that caused the message, or a new id for one that came without (published by
    // hand, or by an older version): either way what the handler logs and publishes carries one.
    let request_id = crate::request_id::accept(header_text(&delivery.properties, crate::request_id::HEADER).as_deref());
    let span = tracing::info_span!(
        "message",
        queue = M::QUEUE,
        correlation_id = %correlation_id,
        request_id = %request_id,
        attempt,
        trace_id = tracing::field::Empty,
        otel.name = %format_args!("consume {}", M::QUEUE),
        otel.kind = "consumer",
        consumer = %settings.consumer_name,
    );
    // The trace the message was published in goes on here (see `crate::telemetry`).
    crate::telemetry::continue_trace(&span, header_text(&delivery.properties, crate::telemetry::TRACEPARENT).as_deref());
    let started = std::time::Instant::now();
    let handling = async move {
        if let Err(refusal) = publisher_check(M::QUEUE, &delivery.properties, context.own_user) {
            tracing::error!(
                published_by = delivery.properties.user_id().as_ref().map(ToString::to_string).unwrap_or_default(),
                refusal = %refusal,
                "message refused: not published by the service that owns it; dead-lettering it"
            );
            let copy = with_header(&delivery.properties, REFUSED_HEADER, AMQPValue::LongString(refusal.as_str().into()));
            replace_with_copy(&delivery, context, &topology::dead_letter_queue(M::QUEUE), copy).await;
            return Outcome::Refused;
        }
        if let Err(error) = serde_json::from_slice::<M>(&delivery.data) {
            tracing::error!(%error, "message cannot be decoded; dead-lettering it");
            reject(&delivery).await;
            return Outcome::DeadLettered;
        }
        let Some(outcome) = super::outage::run_through_outages::<M, H, F>(&delivery, handler, attempt_information, context).await
        else {
            return Outcome::HandedBack;
        };
        match outcome {
            Ok(()) => {
                if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::warn!(%error, "failed to acknowledge; the message will be redelivered");
                }
                Outcome::Handled
            }
            Err(HandlerError::Unavailable(_)) => unreachable!("outages are waited out above"),
            Err(HandlerError::Reject(error)) => {
                tracing::error!(error = format!("{error:#}"), "message rejected; dead-lettering it");
                reject(&delivery).await;
                Outcome::DeadLettered
            }
            Err(HandlerError::Retry(error)) if attempt < settings.max_attempts => {
                tracing::warn!(error = format!("{error:#}"), "handler failed; retrying later");
                // Doubling per attempt, at most 64 times the first wait.
                tokio::time::sleep(capped_backoff(settings.retry_backoff, attempt, settings.retry_backoff * 64)).await;
                let copy = with_header(&delivery.properties, ATTEMPT_HEADER, AMQPValue::LongLongInt(i64::from(attempt + 1)));
                replace_with_copy(&delivery, context, M::QUEUE, copy).await;
                Outcome::Retried
            }
            Err(HandlerError::Retry(error)) => {
                tracing::error!(error = format!("{error:#}"), attempts = attempt, "giving up; dead-lettering the message");
                reject(&delivery).await;
                Outcome::DeadLettered
            }
            Err(HandlerError::NotYet(error)) if attempt_information.may_keep_waiting => {
                tracing::info!(
                    reason = format!("{error:#}"),
                    waited_seconds = waited.as_secs(),
                    "message cannot be handled yet; setting it aside"
                );
                let mut copy = delivery.properties.clone();
                if waited.is_zero() {
                    copy = with_header(&copy, WAITING_SINCE_HEADER, AMQPValue::LongLongInt(now_millis()));
                }
                // The broker dead-letters the copy back into the work queue when this expires.
                let copy = copy.with_expiration(settings.not_yet_recheck_interval.as_millis().to_string().into());
                replace_with_copy(&delivery, context, &topology::delay_queue(M::QUEUE), copy).await;
                Outcome::SetAside
            }
            Err(HandlerError::NotYet(error)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    waited_seconds = waited.as_secs(),
                    "waited long enough and the handler still cannot answer; dead-lettering the message"
                );
                reject(&delivery).await;
                Outcome::DeadLettered
            }
        }
    };
    let outcome = crate::request_id::scope(request_id, handling.instrument(span)).await;
    if let Some(metrics) = &settings.metrics {
        metrics.message(M::QUEUE, outcome.label(), started.elapsed());
    }
}

/// Calls the handler, turning a panic into a `Retry` of this one delivery: the panic is the
/// code's fault, so it is tried again a bounded number of times and then dead-lettered, while the
/// consumer goes on with its other deliveries.
pub(super) async fn run_handler<M, H, F>(handler: &H, message: M, attempt: Attempt) -> Result<(), HandlerError>
where
    H: Fn(M, Attempt) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    // The handler shares nothing with this delivery's later tries except through its own state,
    // which a panic can leave half-changed only if it holds a lock across the panic; tokio's and
    // std's locks are poisoned or released on unwind, so asserting unwind safety is sound here.
    match AssertUnwindSafe(async { handler(message, attempt).await }).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let text = panic_text(&*panic);
            tracing::error!(panic = %text, "handler panicked; the message goes into its retry path");
            Err(HandlerError::Retry(anyhow::anyhow!("the handler panicked: {text}")))
        }
    }
}

pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

pub(super) async fn hand_back<T>(delivery: &Delivery, why: &str) -> Option<T> {
    tracing::info!(why, "handing the message back to the queue");
    let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
    None
}

async fn reject(delivery: &Delivery) {
    // requeue: false sends it to the queue's dead-letter queue (see topology).
    if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
        tracing::warn!(%error, "failed to reject a message; it will be redelivered");
    }
}

/// Whether a delivery of `queue` may be taken: its first publisher is the broker user of the
/// service that owns the queue's events, or `own_user` (this consumer's service). The first
/// publisher is the `user_id`, except on a copy this consumer's service published (a retry, a
/// delayed copy, a replay: `user_id` is `own_user`), which names it in `x-published-by`. So a
/// forged message stays refused however often it is replayed. `Err` says why not.
pub(super) fn publisher_check(queue: &str, properties: &BasicProperties, own_user: &str) -> Result<(), String> {
    let Some(owner) = topology::owner(queue) else {
        return Ok(());
    };
    let user_id = properties.user_id().as_ref().map(ToString::to_string);
    let first = match user_id {
        Some(user) if user == own_user => header_text(properties, PUBLISHED_BY_HEADER).unwrap_or(user),
        other => other.unwrap_or_default(),
    };
    if first == owner.broker_user() || first == own_user {
        return Ok(());
    }
    let owner_user = owner.broker_user();
    Err(if first.is_empty() {
        format!("published without a user_id; {queue} events come only from the broker user {owner_user:?}")
    } else {
        format!(
            "published by the broker user {first:?}; {queue} events come only from the {owner:?} service (user {owner_user:?})"
        )
    })
}

/// The properties of a copy the consumer publishes: its own `user_id` (the only one the broker
/// lets it stamp), with the original publisher's kept in `x-published-by` (set once, by the
/// first copy).
pub(crate) fn as_copy(properties: &BasicProperties, own_user: &str) -> BasicProperties {
    let mut copy = properties.clone();
    if header_text(properties, PUBLISHED_BY_HEADER).is_none() {
        let original = properties.user_id().as_ref().map(ToString::to_string).unwrap_or_default();
        copy = with_header(&copy, PUBLISHED_BY_HEADER, AMQPValue::LongString(original.into()));
    }
    copy.with_user_id(own_user.into())
}

/// Publishes `properties` (as a copy of the consumer's: see [`as_copy`]) and the delivery's body
/// to `queue` with a confirm, then acks the original; if the copy cannot be confirmed the
/// original is handed back to the queue instead, so the message is never lost, at worst handled
/// once more.
async fn replace_with_copy(delivery: &Delivery, context: &DeliveryContext<'_>, queue: &str, properties: BasicProperties) {
    let properties = as_copy(&properties, context.own_user);
    match republish(delivery, context.retry_channel, queue, properties).await {
        Ok(()) => {
            if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!(%error, "failed to acknowledge a re-published message; it may run twice");
            }
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), queue, "failed to re-publish a message; requeueing it");
            let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        }
    }
}

async fn republish(delivery: &Delivery, channel: &Channel, queue: &str, properties: BasicProperties) -> anyhow::Result<()> {
    // Mandatory: a copy that no queue takes comes back, and the original is kept.
    publish_confirmed(channel, ("", queue), &delivery.data, properties, REPUBLISH_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panics_text_is_its_message_whatever_its_type() {
        assert_eq!(panic_text(&"static text"), "static text");
        assert_eq!(panic_text(&String::from("formatted text")), "formatted text");
        assert_eq!(panic_text(&42_u32), "(a panic without a message)");
    }

    #[test]
    fn every_outcome_has_its_own_label() {
        let outcomes =
            [Outcome::Handled, Outcome::Retried, Outcome::SetAside, Outcome::DeadLettered, Outcome::Refused, Outcome::HandedBack];
        let labels: std::collections::BTreeSet<_> = outcomes.iter().map(|outcome| outcome.label()).collect();
        assert_eq!(labels.len(), outcomes.len());
    }

    fn published_by(user: Option<&str>) -> BasicProperties {
        let properties = BasicProperties::default();
        match user {
            Some(user) => properties.with_user_id(user.into()),
            None => properties,
        }
    }

    #[test]
    fn an_event_is_taken_from_its_owner_or_from_the_consumers_own_copies_only() {
        use crate::messaging::topology::{INVENTORY_RESERVED, ORDER_CREATED, PRODUCT_CREATED};
        assert_eq!(publisher_check(INVENTORY_RESERVED, &published_by(Some("inventory")), "order"), Ok(()));
        assert_eq!(publisher_check(ORDER_CREATED, &published_by(Some("order")), "inventory"), Ok(()));
        assert_eq!(publisher_check(ORDER_CREATED, &published_by(Some("inventory")), "inventory"), Ok(()), "its own retry");
        for (queue, forger, consumer) in [
            (INVENTORY_RESERVED, "product", "order"),
            (ORDER_CREATED, "product", "inventory"),
            (PRODUCT_CREATED, "guest", "inventory"),
        ] {
            let refusal = publisher_check(queue, &published_by(Some(forger)), consumer).expect_err(queue);
            assert!(refusal.contains(&format!("{forger:?}")), "{refusal}");
        }
        let refusal = publisher_check(ORDER_CREATED, &published_by(None), "inventory").expect_err("no user_id");
        assert!(refusal.contains("without a user_id"), "{refusal}");
        assert_eq!(publisher_check("a queue of a test", &published_by(None), "guest"), Ok(()), "no owner, no rule");
    }

    #[test]
    fn a_refused_message_stays_refused_when_its_consumer_replays_it() {
        use crate::messaging::topology::INVENTORY_RESERVED;
        let refused = as_copy(&published_by(Some("product")), "order");
        assert!(publisher_check(INVENTORY_RESERVED, &refused, "order").is_err());
        let retried = as_copy(&published_by(Some("inventory")), "order");
        assert_eq!(publisher_check(INVENTORY_RESERVED, &retried, "order"), Ok(()));
        let unsigned = as_copy(&published_by(None), "order");
        assert!(publisher_check(INVENTORY_RESERVED, &unsigned, "order").is_err());
    }

    #[test]
    fn a_copy_is_stamped_with_the_consumers_user_and_keeps_the_first_publisher() {
        let first = as_copy(&published_by(Some("order")), "inventory");
        assert_eq!(first.user_id().as_ref().map(ToString::to_string).as_deref(), Some("inventory"));
        assert_eq!(header_text(&first, PUBLISHED_BY_HEADER).as_deref(), Some("order"));
        let second = as_copy(&first, "inventory");
        assert_eq!(header_text(&second, PUBLISHED_BY_HEADER).as_deref(), Some("order"), "set once, by the first copy");
    }
}
