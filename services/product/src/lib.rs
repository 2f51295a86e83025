//! The product service: the shop's catalog, kept in MongoDB.
//!
//! Reads (`GET /api/v1/products...`) are public; creating, changing and deleting a product need a
//! verified access token. Every catalog change that other services must hear about (a product
//! created, a product deleted) is stored in the same single-document write as the change, in the
//! document's `outbox` array, and published by an [`common::messaging::OutboxRelay`]: the
//! inventory service creates and retires stock records from those events. This service never
//! calls another service over HTTP.
//!
//! Codemap: [`startup`] wires the MongoDB client, indexes, relay and HTTP server; [`products`]
//! holds the resource (routes, request and response types, queries); [`state`] is what handlers
//! share.

pub mod config;
pub mod products;
pub mod startup;
pub mod state;

pub use config::Config;
pub use startup::{Application, build};
