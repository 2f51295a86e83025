//! The end-to-end test kit: infrastructure (servers given by URL), one isolated system per
//! scenario (services in-process, the real nginx in front, fault proxies), settling and teardown,
//! logs, snapshots, polling, RabbitMQ, and the cucumber world the steps share.
//!
//! What depends on no service (the typed client of the shop's API, server URLs, the management
//! API, the gateway renderer, `eventually`) is in `shop-testkit-base`, re-exported here as
//! [`base`], so that the services' own tests and xtask can use it without compiling the services
//! twice.

pub use shop_testkit_base as base;
pub use shop_testkit_base::eventually;

pub mod gateway;
pub mod infrastructure;
pub mod logs;
pub mod prometheus;
pub mod proxy;
pub mod rabbitmq;
pub mod snapshot;
pub mod sweep;
pub mod system;
pub mod teardown;
pub mod traces;
pub mod world;
