//! The order service: places orders after checking them against the catalog, keeps their status
//! (pending -> processing -> paid -> shipped -> delivered, with cancels and refunds), and moves
//! them along as inventory and payment events arrive. It owns the `orders` MongoDB database.
//!
//! It never waits on inventory in a request: placing or cancelling an order stores the event in
//! the order's own document, and the outbox relay publishes it.

pub mod catalog;
pub mod config;
pub mod consumers;
pub mod metrics;
pub mod orders;
pub mod startup;

pub use config::Config;
pub use startup::{Application, build};
