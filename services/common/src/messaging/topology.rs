//! The one place that declares queues. Every service calls [`declare`] whenever it (re)connects:
//! declarations are idempotent, and a queue declared by the publisher exists before its consumer
//! ever starts, so messages wait in it while the consumer is down.
//!
//! Messages go through the default exchange, routed by queue name, so each queue name below is
//! also the routing key. Every queue has a dead-letter queue named `<queue>.dead_letter` that
//! receives what its consumer rejects, and a delay queue named `<queue>.delayed` where a
//! consumer sets aside a message that cannot be handled yet (see
//! [`super::HandlerError::NotYet`]): nobody consumes a delay queue; each message in it carries
//! its own expiration, and when that passes the broker dead-letters it back into its work queue.

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

/// Where a message of `queue` waits before it is delivered again (see the module doc).
pub fn delay_queue(queue: &str) -> String {
    format!("{queue}.delayed")
}

/// Declares every queue, its dead-letter queue and its delay queue.
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

        let mut arguments = FieldTable::default();
        // An expired message goes back to the end of its work queue, through the default
        // exchange. The delay is each message's own `expiration`, not a queue-wide
        // `x-message-ttl`, so that changing it needs no re-declaration (which the broker would
        // refuse for a queue declared with other arguments). Expiry happens at the head of the
        // queue only, so a consumer uses one delay per queue: then the head always expires first.
        arguments.insert(ShortString::from("x-dead-letter-exchange"), AMQPValue::LongString("".into()));
        arguments.insert(ShortString::from("x-dead-letter-routing-key"), AMQPValue::LongString(queue.into()));
        channel.queue_declare(delay_queue(queue).as_str().into(), durable, arguments).await?;
    }
    Ok(())
}
