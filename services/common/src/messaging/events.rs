//! The typed payloads that cross the broker, shared by publisher and consumer so that a change
//! to one side is a compile error on the other. Each names its queue.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::topology;

/// A message type and the queue it travels on.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    const QUEUE: &'static str;

    /// The id that ties this message to the business entity it is about (an order id, a
    /// product id): set as the AMQP correlation id and logged with every line about it.
    fn correlation_id(&self) -> String;
}

/// One line of an order, as inventory needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: String,
    pub user_id: String,
    pub items: Vec<OrderLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReserved {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryFailed {
    pub order_id: String,
    pub reason: String,
}

/// How the reason of an [`InventoryFailed`] for lack of stock begins (the others name unknown or
/// retired products).
pub const INSUFFICIENT_STOCK: &str = "insufficient stock";

impl InventoryFailed {
    /// Whether the order was refused for lack of stock, rather than for a product inventory does
    /// not stock.
    pub fn is_stock_out(&self) -> bool {
        self.reason.starts_with(INSUFFICIENT_STOCK)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderProcessed {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRelease {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCreated {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDeleted {
    pub product_id: String,
}

macro_rules! message {
    ($type:ty, $queue:expr, $key:ident) => {
        impl Message for $type {
            const QUEUE: &'static str = $queue;
            fn correlation_id(&self) -> String {
                self.$key.clone()
            }
        }
    };
}

message!(OrderCreated, topology::ORDER_CREATED, order_id);
message!(InventoryReserved, topology::INVENTORY_RESERVED, order_id);
message!(InventoryFailed, topology::INVENTORY_FAILED, order_id);
message!(OrderProcessed, topology::ORDER_PROCESSED, order_id);
message!(InventoryRelease, topology::INVENTORY_RELEASE, order_id);
message!(ProductCreated, topology::PRODUCT_CREATED, product_id);
message!(ProductDeleted, topology::PRODUCT_DELETED, product_id);
