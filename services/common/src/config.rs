//! Configuration from environment variables, with defaults that work on a developer machine
//! (local PostgreSQL, RabbitMQ and a MongoDB-wire server on their standard ports).

use std::str::FromStr;

use anyhow::Context;

/// Reads `name`, or returns `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => default.to_owned(),
    }
}

/// Reads and parses `name`, or returns `default` when it is unset or empty. A value that does
/// not parse is an error that names the variable, not a silent fallback.
pub fn env_parse<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().with_context(|| format!("environment variable {name}={value:?} does not parse"))
        }
        _ => Ok(default),
    }
}

/// Where a service listens. Port 0 asks the OS for a free port; the bound port can be read back
/// from the application.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
}

impl HttpSettings {
    pub fn from_env(default_port: u16) -> anyhow::Result<Self> {
        Ok(Self { host: env_or("HOST", "127.0.0.1"), port: env_parse("PORT", default_port)? })
    }
}

pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432";
pub const DEFAULT_MONGODB_URL: &str = "mongodb://127.0.0.1:27017/?directConnection=true";
pub const DEFAULT_USER_SERVICE_URL: &str = "http://127.0.0.1:8003";

/// The broker every service talks to; the vhost is part of the URL (`%2f` is `/`).
pub fn rabbitmq_url_from_env() -> String {
    env_or("RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
}

/// Where the user service publishes its signing keys, for the services that verify tokens.
pub fn jwks_url_from_env() -> String {
    let explicit = env_or("JWKS_URL", "");
    if explicit.is_empty() {
        format!("{}/api/v1/auth/jwks", env_or("USER_SERVICE_URL", DEFAULT_USER_SERVICE_URL).trim_end_matches('/'))
    } else {
        explicit
    }
}
