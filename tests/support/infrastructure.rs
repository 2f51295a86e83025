//! Where PostgreSQL, MongoDB and RabbitMQ are, read once per test process from the variables
//! every test target of the workspace shares (`common::config::TestServers`):
//! `E2E_POSTGRES_URL` (a server URL whose user may create databases), `E2E_MONGODB_URL`,
//! `E2E_RABBITMQ_URL` (amqp://user:pass@host:port, no vhost) and `E2E_RABBITMQ_MANAGEMENT_URL`
//! (http://user:pass@host:port). By default the servers a developer machine like ours runs
//! locally; `cargo xtask e2e --containers` starts them with testcontainers instead and points the
//! variables at them, for every test target at once. The choice is printed in one line.

use std::sync::OnceLock;

use common::config::TestServers;

/// Servers shared by every scenario of this process. Scenarios isolate themselves inside them
/// (a database per service per scenario, a vhost per scenario).
pub struct Infrastructure {
    /// `postgres://user[:password]@host:port`, without a database.
    pub postgres_server_url: String,
    /// `mongodb://host:port/?directConnection=true`.
    pub mongodb_url: String,
    /// `amqp://user:pass@host:port`, without a vhost.
    pub rabbitmq_server_url: String,
    /// `http://host:port` of the management API, and its credentials.
    pub rabbitmq_management_url: String,
    pub rabbitmq_user: String,
    pub rabbitmq_password: String,
}

static INFRASTRUCTURE: OnceLock<Infrastructure> = OnceLock::new();

/// The process's infrastructure, read on first use.
pub async fn get() -> &'static Infrastructure {
    INFRASTRUCTURE.get_or_init(|| {
        let servers = TestServers::from_environment();
        let (rabbitmq_management_url, rabbitmq_user, rabbitmq_password) = servers.rabbitmq_management_login();
        let infrastructure = Infrastructure {
            postgres_server_url: servers.postgres,
            mongodb_url: servers.mongodb,
            rabbitmq_server_url: servers.rabbitmq,
            rabbitmq_management_url,
            rabbitmq_user,
            rabbitmq_password,
        };
        println!(
            "e2e infrastructure: PostgreSQL {}, MongoDB {}, RabbitMQ {} (management {})",
            infrastructure.postgres_server_url,
            infrastructure.mongodb_url,
            infrastructure.rabbitmq_server_url,
            infrastructure.rabbitmq_management_url
        );
        infrastructure
    })
}
