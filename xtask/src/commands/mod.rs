//! One module per `cargo xtask` command, each with its own argument parsing and its tests.

pub mod alerts;
pub mod bench;
pub mod chaos;
pub mod compose;
pub mod dlq;
pub mod e2e;
pub mod fuzz;
pub mod images;
pub mod keys;
pub mod load;
pub mod manifests;
pub mod mutants;
pub mod staff;
pub mod up;
