//! What every service of the shop needs and should not write again: configuration helpers,
//! the JSON error type, RS256 token verification against the user service's JWKS, the RabbitMQ
//! topology with typed messages, a supervised consumer and an outbox relay, tracing, health,
//! graceful shutdown, the HTTP server loop, and the runtime every service runs in (`runtime`).
//!
//! It deliberately holds no business rule of any one service: those live in the service crates.

pub mod auth;
pub mod config;
pub mod detached;
pub mod error;
pub mod extract;
pub mod failure;
pub mod health;
pub mod http;
pub mod limits;
pub mod messaging;
pub mod metrics;
pub mod money;
#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod openapi;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod request_id;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;
pub mod timestamp;

pub use error::{ApiError, ApiResult};
