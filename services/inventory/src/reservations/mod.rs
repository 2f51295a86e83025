//! The stock side of the order flow: `order_created` reserves, `inventory_release` releases.
//!
//! A reservation's outcome is committed before it is announced, and the message is acknowledged
//! only after the announcement is confirmed by the broker (the handler returns Ok only then). A
//! crash in between means a redelivery, which finds the recorded outcome, changes no stock and
//! announces it again; the order service ignores an announcement it has already acted on.

pub mod store;

use anyhow::Context;
use common::messaging::events::{InventoryFailed, InventoryRelease, InventoryReserved, OrderCreated};
use common::messaging::{Attempt, HandlerError, Publisher};
use common::metrics::{Metrics, OutcomeLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sqlx::PgPool;

use self::store::{ReleaseOutcome, ReservationOutcome, UnknownProducts};

/// What inventory reports about reservations at `/metrics`.
#[derive(Clone)]
pub struct ReservationMetrics {
    /// `reservations_total{outcome}`: every answer to an order (`reserved`, `failed`), a
    /// redelivered order's repeated answer included.
    outcomes: Family<OutcomeLabels, Counter>,
    /// `stock_outs_total`: orders refused because a product had too little stock.
    stock_outs: Counter,
    /// `stock_operation_failures_total{outcome}` (`reserve`, `release`): a reservation or a
    /// release that failed for a reason other than an outage, which retrying will not cure; its
    /// message ends in a dead-letter queue. Alert on any increase: an order waits, or its units
    /// stay held, until a person fixes the cause and replays the message.
    failures: Family<OutcomeLabels, Counter>,
}

impl ReservationMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            outcomes: metrics.outcome_counter("reservations", "Orders answered by the reservation store, by outcome"),
            stock_outs: metrics.counter("stock_outs", "Orders refused for lack of stock"),
            failures: metrics.outcome_counter(
                "stock_operation_failures",
                "Reservations and releases that failed other than by an outage, by operation",
            ),
        }
    }

    /// Reports a failed reservation or release: an outage (waited out by the consumer) as it
    /// is; anything else as an ERROR naming the order, counted for alerting.
    fn failed(&self, operation: &'static str, order_id: &str, error: anyhow::Error) -> HandlerError {
        if !common::failure::is_infrastructure_failure(&error) {
            self.failures.get_or_create(&OutcomeLabels { outcome: operation }).inc();
            tracing::error!(
                order_id,
                operation,
                error = format!("{error:#}"),
                "a stock operation failed other than by an outage; after its retries the message is dead-lettered, and the order's stock is wrong until it is fixed and replayed"
            );
        }
        HandlerError::from(error)
    }
}

/// `order_created`: reserve every line or none, record the outcome, then publish it.
///
/// A product without a stock record is waited for, by time: an order placed right after its
/// product was created can arrive before that product's `product_created` (or that event may be
/// held up in the product service's outbox during a broker outage). The message is set aside
/// (`NotYet`: it waits in the delay queue, holding no prefetch slot) and re-checked until
/// `Attempt::may_keep_waiting` turns false (the consumer's `not_yet_give_up_after`, configured
/// as `PRODUCT_STOCK_RECORD_WAIT_SECONDS`); then the reservation fails with a reason.
///
/// Errors from PostgreSQL and the broker convert by type: an outage pauses the consumer, keeps
/// the message and costs it no try (see `common::messaging::HandlerError`).
pub async fn on_order_created(
    pool: &PgPool,
    publisher: &Publisher,
    metrics: &ReservationMetrics,
    order: OrderCreated,
    attempt: Attempt,
) -> Result<(), HandlerError> {
    let order_id = order.order_id.clone();
    let unknown_products = if attempt.may_keep_waiting { UnknownProducts::WaitForThem } else { UnknownProducts::Fail };
    let outcome =
        store::reserve(pool, &order, unknown_products).await.map_err(|error| metrics.failed("reserve", &order_id, error))?;
    match outcome {
        ReservationOutcome::Reserved => {
            publisher
                .publish(&InventoryReserved { order_id: order_id.clone() })
                .await
                .with_context(|| format!("failed to announce the reservation of order {order_id}"))?;
            metrics.outcomes.get_or_create(&OutcomeLabels { outcome: "reserved" }).inc();
            tracing::info!(order_id, "reserved stock for order");
        }
        ReservationOutcome::Failed { reason } => {
            publisher
                .publish(&InventoryFailed { order_id: order_id.clone(), reason: reason.clone() })
                .await
                .with_context(|| format!("failed to announce the failed reservation of order {order_id}"))?;
            metrics.outcomes.get_or_create(&OutcomeLabels { outcome: "failed" }).inc();
            if reason.starts_with(store::INSUFFICIENT_STOCK) {
                metrics.stock_outs.inc();
            }
            tracing::info!(order_id, reason, "could not reserve stock for order");
        }
        ReservationOutcome::ProductsNotKnownYet { reason } => {
            return Err(HandlerError::NotYet(anyhow::anyhow!("{reason}; waiting for their stock records")));
        }
        ReservationOutcome::OrderCancelled => {
            tracing::info!(order_id, "order was cancelled before its reservation; nothing reserved or published");
        }
    }
    Ok(())
}

/// `inventory_release`: give back what the cancelled order holds, once.
pub async fn on_inventory_release(
    pool: &PgPool,
    metrics: &ReservationMetrics,
    release: InventoryRelease,
) -> Result<(), HandlerError> {
    let order_id = release.order_id;
    match store::release(pool, &order_id).await.map_err(|error| metrics.failed("release", &order_id, error))? {
        ReleaseOutcome::Released { lines } => tracing::info!(order_id, lines, "released stock of cancelled order"),
        ReleaseOutcome::RecordedBeforeReservation => {
            tracing::info!(order_id, "release arrived before the reservation; the order will reserve nothing")
        }
        ReleaseOutcome::NothingHeld => tracing::info!(order_id, "order held no stock; nothing to release"),
        ReleaseOutcome::AlreadyReleased => tracing::info!(order_id, "order released before; message ignored"),
    }
    Ok(())
}
