//! The part of the shop's test kit that depends on no service crate, so that the services' own
//! tests, the load tests and xtask can use it too (the full kit, `shop-testkit` in tests/kit,
//! starts the services in-process and builds on this one):
//!
//! - [`api`] and [`model`]: the one typed client of the shop's API;
//! - [`servers`]: where PostgreSQL, MongoDB and RabbitMQ are (the `E2E_*` variables);
//! - [`own_servers`]: PostgreSQL, RabbitMQ and a MongoDB-wire server of a run's own, on this
//!   machine, to stop, kill and start again (the chaos run's real faults);
//! - [`management`] and [`vhost`]: RabbitMQ's management API and a vhost of a test's own;
//! - [`gateway`]: the one renderer of the nginx templates;
//! - [`journeys`]: whole journeys through the API, for checks of a system brought up elsewhere.

pub mod alert_rules;
pub mod api;
pub mod binary;
pub mod eventually;
pub mod gateway;
pub mod journeys;
pub mod management;
pub mod model;
pub mod own_servers;
pub mod servers;
pub mod tls;
pub mod vhost;

pub use api::{Answer, ApiError, Call, Client, SignedIn};
pub use own_servers::{OwnServers, ServerKind};
pub use servers::ServerUrls;
pub use vhost::TestVirtualHost;
