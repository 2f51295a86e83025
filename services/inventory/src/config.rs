//! Configuration from the environment, with defaults for a developer machine.

use common::config::{HttpSettings, env_or, env_parse};

pub const PORT: u16 = 8002;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    /// The service's own database (created at start-up if missing).
    pub database_url: String,
    pub database_max_connections: u32,
    pub rabbitmq_url: String,
    /// The user service's JWKS document, for verifying tokens.
    pub jwks_url: String,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            http: HttpSettings::from_env(PORT)?,
            database_url: env_or("DATABASE_URL", &format!("{}/inventory", common::config::DEFAULT_POSTGRES_URL)),
            database_max_connections: env_parse("DATABASE_MAX_CONNECTIONS", 10)?,
            rabbitmq_url: common::config::rabbitmq_url_from_env(),
            jwks_url: common::config::jwks_url_from_env(),
        })
    }
}
