//! The user service. (Skeleton: the routes, store and token issuing land with its issue.)

pub mod config;
pub mod startup;

pub use config::Config;
pub use startup::Application;
