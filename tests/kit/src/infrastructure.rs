//! Where PostgreSQL, MongoDB and RabbitMQ are, read once per test process from the variables
//! every test target of the workspace shares (see [`shop_testkit_base::servers`]). By default the
//! servers a developer machine like ours runs locally; `cargo xtask e2e --containers` starts them
//! with testcontainers instead and points the variables at them, for every test target at once.
//! The choice is printed in one line.

use std::sync::OnceLock;

pub use shop_testkit_base::ServerUrls as Infrastructure;

static INFRASTRUCTURE: OnceLock<Infrastructure> = OnceLock::new();

/// The process's servers, read on first use. Scenarios isolate themselves inside them (a
/// database per service per scenario, a vhost per scenario).
pub async fn get() -> &'static Infrastructure {
    INFRASTRUCTURE.get_or_init(|| {
        let servers = Infrastructure::from_environment();
        println!(
            "e2e infrastructure: PostgreSQL {}, MongoDB {}, RabbitMQ {} (management {})",
            servers.postgres,
            servers.mongodb,
            servers.rabbitmq,
            servers.rabbitmq_management_login().url
        );
        servers
    })
}
