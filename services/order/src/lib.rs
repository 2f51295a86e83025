//! The order service. (Skeleton: the routes, store and consumers land with its issue.)

pub mod config;
pub mod startup;

pub use config::Config;
pub use startup::Application;
