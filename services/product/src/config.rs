//! Configuration from the environment, with defaults for a developer machine.

use common::config::{HttpSettings, env_or};

pub const PORT: u16 = 8000;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    /// The MongoDB server; the database name is separate so tests can pick a fresh one.
    pub mongodb_url: String,
    pub mongodb_database: String,
    pub rabbitmq_url: String,
    /// The user service's JWKS document, for verifying tokens.
    pub jwks_url: String,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            http: HttpSettings::from_env(PORT)?,
            mongodb_url: env_or("MONGODB_URL", common::config::DEFAULT_MONGODB_URL),
            mongodb_database: env_or("MONGODB_DATABASE", "products"),
            rabbitmq_url: common::config::rabbitmq_url_from_env(),
            jwks_url: common::config::jwks_url_from_env(),
        })
    }
}
