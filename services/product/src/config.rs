//! Configuration from the environment, with defaults for a developer machine.

use common::config::{Environment, HttpSettings, ProductionRules, Settings};

pub const PORT: u16 = 8000;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    /// The MongoDB server; the database name is separate so tests can pick a fresh one.
    pub mongodb_url: String,
    pub mongodb_database: String,
    /// The most MongoDB connections open at once (`MONGODB_MAX_POOL_SIZE`).
    pub mongodb_max_pool_size: u32,
    pub rabbitmq_url: String,
    /// The user service's JWKS document, for verifying tokens.
    pub jwks_url: String,
    /// How often the keys of that document are fetched again (`JWKS_REFRESH_SECONDS`).
    pub key_fetching: common::auth::KeyFetching,
    /// Who may do staff work here (`REQUIRE_STAFF_ROLE`).
    pub staff_policy: common::auth::StaffPolicy,
}

impl Settings for Config {
    fn from_environment(environment: Environment) -> anyhow::Result<Self> {
        let config = Self {
            http: HttpSettings::from_environment(environment, PORT)?,
            mongodb_url: environment.or("MONGODB_URL", common::config::DEFAULT_MONGODB_URL),
            mongodb_database: environment.or("MONGODB_DATABASE", "products"),
            mongodb_max_pool_size: environment.parse("MONGODB_MAX_POOL_SIZE", 10)?,
            rabbitmq_url: common::config::rabbitmq_url(environment, common::messaging::topology::Service::Product),
            jwks_url: common::config::jwks_url(environment),
            key_fetching: common::config::key_fetching(environment)?,
            staff_policy: common::config::staff_policy(environment)?,
        };
        ProductionRules::new()
            .credentials("RABBITMQ_URL", &config.rabbitmq_url)
            .broker_user("RABBITMQ_URL", &config.rabbitmq_url, common::messaging::topology::Service::Product)
            .credentials("MONGODB_URL", &config.mongodb_url)
            .staff_required(&config.staff_policy)
            .check(environment)?;
        Ok(config)
    }
}
