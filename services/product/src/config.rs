//! Configuration from the environment, with defaults for a developer machine.

use common::config::{Environment, HttpSettings};

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
    /// Who may do staff work here (`REQUIRE_STAFF_ROLE`).
    pub staff_policy: common::auth::StaffPolicy,
}

impl Config {
    /// The settings in the process's environment variables, with defaults for what is unset.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_environment(Environment::Process)
    }

    /// Every setting at its default, whatever the process's environment says: for callers that
    /// set what they need themselves and must not be steered by the environment they run in.
    pub fn defaults() -> Self {
        Self::from_environment(Environment::DefaultsOnly).expect("the defaults are valid")
    }

    pub fn from_environment(environment: Environment) -> anyhow::Result<Self> {
        Ok(Self {
            http: HttpSettings::from_environment(environment, PORT)?,
            mongodb_url: environment.or("MONGODB_URL", common::config::DEFAULT_MONGODB_URL),
            mongodb_database: environment.or("MONGODB_DATABASE", "products"),
            rabbitmq_url: common::config::rabbitmq_url(environment),
            jwks_url: common::config::jwks_url(environment),
            staff_policy: common::config::staff_policy(environment)?,
        })
    }
}
