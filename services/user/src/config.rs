//! Configuration from the environment, with defaults for a developer machine.

use std::path::PathBuf;
use std::time::Duration;

use common::config::{HttpSettings, env_or, env_parse};

pub const PORT: u16 = 8003;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    /// The service's own database (created at start-up if missing).
    pub database_url: String,
    pub database_max_connections: u32,
    /// Where the RS256 private key comes from.
    pub signing_key: SigningKeySource,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub password_hashing: PasswordHashing,
}

/// The RS256 private key that signs every token.
#[derive(Debug, Clone)]
pub enum SigningKeySource {
    /// A PKCS#8 or PKCS#1 PEM given as a value (`JWT_PRIVATE_KEY`).
    Pem(String),
    /// A PEM file (`JWT_PRIVATE_KEY_PATH`). In development, when the file does not exist, a key is
    /// generated and written there, so tokens survive restarts.
    File(PathBuf),
}

/// argon2id cost parameters. The defaults are OWASP's recommendation; tests lower them through
/// configuration, never by changing these defaults.
#[derive(Debug, Clone, Copy)]
pub struct PasswordHashing {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordHashing {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let pem = env_or("JWT_PRIVATE_KEY", "");
        let signing_key = if pem.is_empty() {
            SigningKeySource::File(PathBuf::from(env_or("JWT_PRIVATE_KEY_PATH", ".local/keys/user-service.pem")))
        } else {
            SigningKeySource::Pem(pem)
        };
        let defaults = PasswordHashing::default();
        Ok(Self {
            http: HttpSettings::from_env(PORT)?,
            database_url: env_or("DATABASE_URL", &format!("{}/users", common::config::DEFAULT_POSTGRES_URL)),
            database_max_connections: env_parse("DATABASE_MAX_CONNECTIONS", 10)?,
            signing_key,
            access_token_ttl: Duration::from_secs(env_parse("ACCESS_TOKEN_TTL_SECONDS", 30 * 60)?),
            refresh_token_ttl: Duration::from_secs(env_parse("REFRESH_TOKEN_TTL_SECONDS", 7 * 24 * 60 * 60)?),
            password_hashing: PasswordHashing {
                memory_kib: env_parse("ARGON2_MEMORY_KIB", defaults.memory_kib)?,
                iterations: env_parse("ARGON2_ITERATIONS", defaults.iterations)?,
                parallelism: env_parse("ARGON2_PARALLELISM", defaults.parallelism)?,
            },
        })
    }
}
