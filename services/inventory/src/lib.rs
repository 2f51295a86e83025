//! The inventory service: stock per product in PostgreSQL, and the stock side of the order flow.
//!
//! It learns about products from the catalog's events (`product_created` creates a stock record,
//! `product_deleted` retires it) and about orders from `order_created` (reserve every line, all or
//! none, then answer `inventory_reserved` or `inventory_failed`) and `inventory_release` (give
//! back what a cancelled order holds). Every consumer is idempotent on its business key, so a
//! redelivered message changes nothing. Its HTTP API (token required) reads stock and history
//! and adjusts stock by hand.
//!
//! Codemap: [`startup`] wires the pool, migrations, consumers and HTTP server; [`inventory`] is
//! the stock resource (routes, types, queries, and the product-event handlers that create and
//! retire records); [`reservations`] is the order side (reserve, release, and their handlers);
//! [`state`] is what handlers share.
//!
//! Invariants: stock never goes below zero (CHECK constraints back the application's checks);
//! every change to a stock record writes its history row in the same statement or transaction;
//! rows are only ever changed under a row lock or in one statement, never read-modify-written.

pub mod config;
pub mod inventory;
pub mod reservations;
pub mod startup;
pub mod state;

pub use config::Config;
pub use startup::{Application, build};

/// The migrations, embedded in the binary and run at start-up (and by the tests).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
