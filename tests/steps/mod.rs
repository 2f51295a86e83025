//! Step definitions, one module per concept. Each module's steps are registered with cucumber
//! by their attribute macros; this file only has to name the module.

mod auth;
mod catalog;
mod faults;
mod hang_ups;
mod http;
mod https;
mod keys;
mod metrics;
mod monitoring;
mod orders;
mod queues;
mod system;
