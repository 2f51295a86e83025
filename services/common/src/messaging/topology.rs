//! The one place that declares queues. Every service calls [`declare`] whenever it (re)connects:
//! declarations are idempotent, and a queue declared by the publisher exists before its consumer
//! ever starts, so messages wait in it while the consumer is down.
//!
//! Messages go through the default exchange, routed by queue name, so each queue name below is
//! also the routing key. Every queue has a dead-letter queue named `<queue>.dead_letter` that
//! receives what its consumer rejects.

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};

/// A new order, for inventory to reserve its items.
pub const ORDER_CREATED: &str = "order_created";
/// Inventory reserved every item of an order.
pub const INVENTORY_RESERVED: &str = "inventory_reserved";
/// Inventory could not reserve an order (not enough stock); carries the reason.
pub const INVENTORY_FAILED: &str = "inventory_failed";
/// An order's (simulated) payment went through.
pub const ORDER_PROCESSED: &str = "order_processed";
/// An order was cancelled: release whatever stock it holds.
pub const INVENTORY_RELEASE: &str = "inventory_release";
/// A product was created: create its inventory record.
pub const PRODUCT_CREATED: &str = "product_created";
/// A product was deleted: retire its inventory record.
pub const PRODUCT_DELETED: &str = "product_deleted";

/// Every work queue, in flow order.
pub const QUEUES: [&str; 7] =
    [ORDER_CREATED, INVENTORY_RESERVED, INVENTORY_FAILED, ORDER_PROCESSED, INVENTORY_RELEASE, PRODUCT_CREATED, PRODUCT_DELETED];

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead_letter")
}

/// Declares every queue and its dead-letter queue.
pub async fn declare(channel: &Channel) -> lapin::Result<()> {
    // Durable: the queue definitions survive a broker restart (messages survive too because
    // every publisher marks them persistent).
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    for queue in QUEUES {
        let dead_letter = dead_letter_queue(queue);
        channel.queue_declare(dead_letter.as_str().into(), durable, FieldTable::default()).await?;

        let mut arguments = FieldTable::default();
        // A rejected message (undecodable, or out of retries) goes to the dead-letter queue
        // through the default exchange instead of being dropped or looping forever.
        arguments.insert(ShortString::from("x-dead-letter-exchange"), AMQPValue::LongString("".into()));
        arguments.insert(ShortString::from("x-dead-letter-routing-key"), AMQPValue::LongString(dead_letter.as_str().into()));
        channel.queue_declare(queue.into(), durable, arguments).await?;
    }
    Ok(())
}
