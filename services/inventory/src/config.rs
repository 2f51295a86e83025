//! Configuration from the environment, with defaults for a developer machine.

use common::config::{Environment, HttpSettings, ProductionRules, Settings};

/// The PostgreSQL role a deployment gives the service: it owns the service's database and nothing
/// else (`common::postgres::provision`; `cargo xtask up`, docker-compose, the harness and the
/// Kubernetes manifests make it so).
pub const DATABASE_ROLE: &str = "inventory_service";

pub const PORT: u16 = 8002;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    /// The service's own database (created at start-up if missing).
    pub database_url: String,
    pub database_max_connections: u32,
    /// `APP_ENV`: production also refuses a database role with more powers than its own database
    /// (checked at start, `common::postgres::check_role`).
    pub profile: common::config::Profile,
    pub rabbitmq_url: String,
    /// The user service's JWKS document, for verifying tokens.
    pub jwks_url: String,
    /// How often the keys of that document are fetched again (`JWKS_REFRESH_SECONDS`).
    pub key_fetching: common::auth::KeyFetching,
    /// Who may do staff work here (`REQUIRE_STAFF_ROLE`).
    pub staff_policy: common::auth::StaffPolicy,
    /// How long an order that names a product without a stock record waits for that record
    /// (its `product_created` may be behind it, or held up by an outage) before its reservation
    /// fails. Minutes by default: the event is on its way, and failing early cancels a good order.
    pub product_stock_record_wait: std::time::Duration,
}

impl Settings for Config {
    fn from_environment(environment: Environment) -> anyhow::Result<Self> {
        let config = Self {
            http: HttpSettings::from_environment(environment, PORT)?,
            database_url: environment.or("DATABASE_URL", &format!("{}/inventory", common::config::DEFAULT_POSTGRES_URL)),
            database_max_connections: environment.parse("DATABASE_MAX_CONNECTIONS", 10)?,
            profile: common::config::Profile::from_environment(environment)?,
            rabbitmq_url: common::config::rabbitmq_url(environment, common::messaging::topology::Service::Inventory),
            jwks_url: common::config::jwks_url(environment),
            key_fetching: common::config::key_fetching(environment)?,
            staff_policy: common::config::staff_policy(environment)?,
            product_stock_record_wait: std::time::Duration::from_secs(
                environment.parse("PRODUCT_STOCK_RECORD_WAIT_SECONDS", 5 * 60)?,
            ),
        };
        ProductionRules::new()
            .credentials("RABBITMQ_URL", &config.rabbitmq_url)
            .broker_user("RABBITMQ_URL", &config.rabbitmq_url, common::messaging::topology::Service::Inventory)
            .credentials("DATABASE_URL", &config.database_url)
            .staff_required(&config.staff_policy)
            .check(environment)?;
        Ok(config)
    }
}
