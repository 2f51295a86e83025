//! Configuration from the environment, with defaults for a developer machine.

use std::time::Duration;

use common::config::{Environment, HttpSettings, ProductionRules, Settings};

pub const PORT: u16 = 8001;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    /// The MongoDB server; the database name is separate so tests can pick a fresh one.
    pub mongodb_url: String,
    pub mongodb_database: String,
    /// The most MongoDB connections this instance opens; tests run many instances at once.
    pub mongodb_max_pool_size: u32,
    pub rabbitmq_url: String,
    /// The user service's JWKS document, for verifying tokens.
    pub jwks_url: String,
    /// How often the keys of that document are fetched again (`JWKS_REFRESH_SECONDS`).
    pub key_fetching: common::auth::KeyFetching,
    /// Who may do staff work here (`REQUIRE_STAFF_ROLE`).
    pub staff_policy: common::auth::StaffPolicy,
    /// The product service, asked for each item's product and price when an order is placed.
    pub product_service_url: String,
    /// How long one product lookup may take before the order is refused with a 503.
    pub product_lookup_timeout: Duration,
    /// How many deliveries each consumer handles at once (the AMQP prefetch).
    pub consumer_prefetch: u16,
}

impl Settings for Config {
    fn from_environment(environment: Environment) -> anyhow::Result<Self> {
        let config = Self {
            http: HttpSettings::from_environment(environment, PORT)?,
            mongodb_url: environment.or("MONGODB_URL", common::config::DEFAULT_MONGODB_URL),
            mongodb_database: environment.or("MONGODB_DATABASE", "orders"),
            mongodb_max_pool_size: environment.parse("MONGODB_MAX_POOL_SIZE", 20)?,
            rabbitmq_url: common::config::rabbitmq_url(environment, common::messaging::topology::Service::Order),
            jwks_url: common::config::jwks_url(environment),
            key_fetching: common::config::key_fetching(environment)?,
            staff_policy: common::config::staff_policy(environment)?,
            product_service_url: environment.or("PRODUCT_SERVICE_URL", "http://127.0.0.1:8000"),
            product_lookup_timeout: Duration::from_millis(environment.parse("PRODUCT_LOOKUP_TIMEOUT_MS", 5000)?),
            consumer_prefetch: environment.parse("CONSUMER_PREFETCH", 8)?,
        };
        ProductionRules::new()
            .credentials("RABBITMQ_URL", &config.rabbitmq_url)
            .broker_user("RABBITMQ_URL", &config.rabbitmq_url, common::messaging::topology::Service::Order)
            .credentials("MONGODB_URL", &config.mongodb_url)
            .staff_required(&config.staff_policy)
            .check(environment)?;
        Ok(config)
    }
}
