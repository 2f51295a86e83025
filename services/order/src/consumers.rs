//! The order service's consumers: what inventory and payment say about an order.
//!
//! - `inventory_reserved`: pending -> processing; the same write puts the (simulated) payment's
//!   `order_processed` event in the order's outbox, and the relay is woken to publish it.
//! - `order_processed`: processing -> paid.
//! - `inventory_failed`: pending -> cancelled, with the reason inventory gave.
//!
//! Every change is conditional on the status the event expects, so an event that arrives twice,
//! or late for an order that has moved on (cancelled by its customer meanwhile), changes nothing.
//! The consumer's span carries the order id as `correlation_id`, so every line logged while
//! handling an event names its order.

use bson::oid::ObjectId;
use common::messaging::events::{InventoryFailed, InventoryReserved, OrderProcessed};
use common::messaging::{ConsumerSettings, HandlerError};

use crate::metrics::{CancelledBecause, OrderMetrics};
use crate::orders::model::OrderStatus;
use crate::orders::store::{OrderStore, StatusChange};

/// What the consumers share.
#[derive(Clone)]
pub struct ConsumerContext {
    pub store: OrderStore,
    /// Payments (with the time from acceptance) and cancellations by inventory.
    pub metrics: OrderMetrics,
}

/// Registers the three consumers with the service.
pub fn register(service: &mut common::runtime::Service, config: &crate::Config, context: &ConsumerContext) {
    let settings = |queue: &str| ConsumerSettings { prefetch: config.consumer_prefetch, ..service.consumer_settings(queue) };
    let (reserved, processed, failed) =
        (settings("inventory_reserved"), settings("order_processed"), settings("inventory_failed"));
    let url = &config.rabbitmq_url;
    let shared = context.clone();
    service.consume::<InventoryReserved, _, _>(url, reserved, move |event, _| {
        let context = shared.clone();
        async move { on_inventory_reserved(&context, event).await }
    });
    let shared = context.clone();
    service.consume::<OrderProcessed, _, _>(url, processed, move |event, _| {
        let context = shared.clone();
        async move { on_order_processed(&context, event).await }
    });
    let shared = context.clone();
    service.consume::<InventoryFailed, _, _>(url, failed, move |event, _| {
        let context = shared.clone();
        async move { on_inventory_failed(&context, event).await }
    });
}

pub async fn on_inventory_reserved(context: &ConsumerContext, event: InventoryReserved) -> Result<(), HandlerError> {
    let order_id = parse_order_id(&event.order_id)?;
    let change = context.store.change_status(order_id, None, OrderStatus::Pending, OrderStatus::Processing, None).await?;
    match change {
        StatusChange::Changed(_) => {
            // The payment announcement went into the outbox with the status, and to the relay.
            tracing::info!(order_id = %order_id, "stock reserved; order is processing");
        }
        StatusChange::StatusMovedOn => {
            tracing::info!(order_id = %order_id, "stock reserved for an order that has moved on; nothing to do")
        }
        StatusChange::NotFound => return Err(unknown_order(order_id)),
    }
    Ok(())
}

pub async fn on_order_processed(context: &ConsumerContext, event: OrderProcessed) -> Result<(), HandlerError> {
    let order_id = parse_order_id(&event.order_id)?;
    match context.store.change_status(order_id, None, OrderStatus::Processing, OrderStatus::Paid, None).await? {
        StatusChange::Changed(order) => {
            let waited = (chrono::Utc::now() - order.created_at).to_std().unwrap_or_default();
            context.metrics.paid(waited);
            tracing::info!(order_id = %order_id, "payment done; order is paid");
        }
        StatusChange::StatusMovedOn => {
            tracing::info!(order_id = %order_id, "payment event for an order that has moved on; ignored")
        }
        StatusChange::NotFound => return Err(unknown_order(order_id)),
    }
    Ok(())
}

pub async fn on_inventory_failed(context: &ConsumerContext, event: InventoryFailed) -> Result<(), HandlerError> {
    let order_id = parse_order_id(&event.order_id)?;
    let change =
        context.store.change_status(order_id, None, OrderStatus::Pending, OrderStatus::Cancelled, Some(&event.reason)).await?;
    match change {
        StatusChange::Changed(_) => {
            context.metrics.cancelled(CancelledBecause::of_inventory(&event));
            tracing::info!(order_id = %order_id, reason = %event.reason, "stock unavailable; order cancelled")
        }
        StatusChange::StatusMovedOn => {
            tracing::info!(order_id = %order_id, "reservation failure for an order that has moved on; ignored")
        }
        StatusChange::NotFound => return Err(unknown_order(order_id)),
    }
    Ok(())
}

/// An id that is not an ObjectId can never name an order: dead-letter it at once.
fn parse_order_id(text: &str) -> Result<ObjectId, HandlerError> {
    ObjectId::parse_str(text)
        .map_err(|error| HandlerError::Reject(anyhow::anyhow!("order id {text:?} is not an ObjectId: {error}")))
}

/// Orders are never deleted, so an event about an order we do not have is about an order that
/// never existed here: retrying cannot help.
fn unknown_order(order_id: ObjectId) -> HandlerError {
    HandlerError::Reject(anyhow::anyhow!("order {order_id} does not exist"))
}
