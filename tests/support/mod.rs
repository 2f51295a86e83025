//! The end-to-end harness: infrastructure (servers given by URL), one isolated system per
//! scenario (services in-process, the real nginx in front), HTTP, snapshots, polling, RabbitMQ.

pub mod eventually;
pub mod gateway;
pub mod infrastructure;
pub mod logs;
pub mod proxy;
pub mod rabbitmq;
pub mod snapshot;
pub mod system;
pub mod teardown;
pub mod world;
