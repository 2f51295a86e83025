//! Configuration from the environment, with defaults for a developer machine.
//!
//! Variables: `HOST`, `PORT` (8003), `DATABASE_URL` (`postgres://postgres@127.0.0.1:5432/users`),
//! `DATABASE_MAX_CONNECTIONS` (10), `JWT_PRIVATE_KEY` (a PEM value) or `JWT_PRIVATE_KEY_PATH`
//! (`.local/keys/user-service.pem`, generated when missing), or `JWT_KEY_DIR` (a directory of keys
//! for rotation, see `crate::keys`) with `JWT_KEY_RELOAD_SECONDS` (10), `ACCESS_TOKEN_TTL_SECONDS` (1800),
//! `REFRESH_TOKEN_TTL_SECONDS` (604800), `ARGON2_MEMORY_KIB` (19456), `ARGON2_ITERATIONS` (2),
//! `ARGON2_PARALLELISM` (1), `STAFF_EMAILS` (comma-separated; none by default): the accounts whose
//! tokens carry the staff role.

use std::path::PathBuf;
use std::time::Duration;

use common::config::{Environment, HttpSettings, ProductionRules, Settings};

/// The PostgreSQL role a deployment gives the service: it owns the service's database and nothing
/// else (`common::postgres::provision`; `cargo xtask up`, docker-compose, the harness and the
/// Kubernetes manifests make it so).
pub const DATABASE_ROLE: &str = "user_service";

pub const PORT: u16 = 8003;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpSettings,
    /// The service's own database (created at start-up if missing).
    pub database_url: String,
    pub database_max_connections: u32,
    /// `APP_ENV`: production also refuses a database role with more powers than its own database
    /// (checked at start, `common::postgres::check_role`).
    pub profile: common::config::Profile,
    /// Where the RS256 private key comes from.
    pub signing_key: SigningKeySource,
    /// How often a key directory is read again (`JWT_KEY_RELOAD_SECONDS`).
    pub key_reload: Duration,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub password_hashing: PasswordHashing,
    /// The accounts whose tokens carry the staff role, lowercased (`STAFF_EMAILS`).
    pub staff_emails: Vec<String>,
}

impl Config {
    /// The longest a token lives (the refresh token's lifetime, unless configured otherwise): how
    /// long a retired signing key stays published.
    pub fn token_lifetime(&self) -> Duration {
        self.access_token_ttl.max(self.refresh_token_ttl)
    }
}

/// The RS256 private key that signs every token.
#[derive(Clone)]
pub enum SigningKeySource {
    /// A PKCS#8 or PKCS#1 PEM given as a value (`JWT_PRIVATE_KEY`).
    Pem(String),
    /// A PEM file (`JWT_PRIVATE_KEY_PATH`). In development, when the file does not exist, a key is
    /// generated and written there, so tokens survive restarts.
    File(PathBuf),
    /// A directory of keys named by when each starts signing (`JWT_KEY_DIR`): rotation without
    /// logging anyone out (see `crate::keys`).
    Directory(PathBuf),
}

/// Never prints the key itself: a `Config` may end up in a log line.
impl std::fmt::Debug for SigningKeySource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKeySource::Pem(_) => formatter.write_str("Pem(<redacted>)"),
            SigningKeySource::File(path) => formatter.debug_tuple("File").field(path).finish(),
            SigningKeySource::Directory(path) => formatter.debug_tuple("Directory").field(path).finish(),
        }
    }
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

impl Settings for Config {
    fn from_environment(environment: Environment) -> anyhow::Result<Self> {
        let pem = environment.or("JWT_PRIVATE_KEY", "");
        let directory = environment.get("JWT_KEY_DIR");
        if directory.is_some() && (!pem.is_empty() || environment.get("JWT_PRIVATE_KEY_PATH").is_some()) {
            anyhow::bail!("JWT_KEY_DIR is set with JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_PATH: set one of them");
        }
        let signing_key = match directory {
            Some(directory) => SigningKeySource::Directory(PathBuf::from(directory)),
            None if pem.is_empty() => {
                SigningKeySource::File(PathBuf::from(environment.or("JWT_PRIVATE_KEY_PATH", ".local/keys/user-service.pem")))
            }
            None => SigningKeySource::Pem(pem),
        };
        let key_reload = Duration::from_secs(environment.parse("JWT_KEY_RELOAD_SECONDS", 10)?);
        anyhow::ensure!(!key_reload.is_zero(), "JWT_KEY_RELOAD_SECONDS must be at least 1");
        let defaults = PasswordHashing::default();
        let config = Self {
            http: HttpSettings::from_environment(environment, PORT)?,
            database_url: environment.or("DATABASE_URL", &format!("{}/users", common::config::DEFAULT_POSTGRES_URL)),
            database_max_connections: environment.parse("DATABASE_MAX_CONNECTIONS", 10)?,
            profile: common::config::Profile::from_environment(environment)?,
            signing_key,
            key_reload,
            access_token_ttl: Duration::from_secs(environment.parse("ACCESS_TOKEN_TTL_SECONDS", 30 * 60)?),
            refresh_token_ttl: Duration::from_secs(environment.parse("REFRESH_TOKEN_TTL_SECONDS", 7 * 24 * 60 * 60)?),
            password_hashing: PasswordHashing {
                memory_kib: environment.parse("ARGON2_MEMORY_KIB", defaults.memory_kib)?,
                iterations: environment.parse("ARGON2_ITERATIONS", defaults.iterations)?,
                parallelism: environment.parse("ARGON2_PARALLELISM", defaults.parallelism)?,
            },
            staff_emails: environment
                .or("STAFF_EMAILS", "")
                .split(',')
                .map(|email| email.trim().to_lowercase())
                .filter(|email| !email.is_empty())
                .collect(),
        };
        let key_given =
            ["JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_PATH", "JWT_KEY_DIR"].iter().any(|name| environment.get(name).is_some());
        ProductionRules::new()
            .credentials("DATABASE_URL", &config.database_url)
            .holds(key_given, "none of JWT_PRIVATE_KEY, JWT_PRIVATE_KEY_PATH and JWT_KEY_DIR is set: a signing key would be generated")
            .holds(
                config.staff_emails.is_empty(),
                "STAFF_EMAILS is set: it makes staff of whoever registers one of its addresses first; grant staff with `user-service staff grant`",
            )
            .check(environment)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_given_as_a_value_never_appears_in_debug_output() {
        let source = SigningKeySource::Pem("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----".into());
        let printed = format!("{source:?}");
        assert_eq!(printed, "Pem(<redacted>)");
        assert_eq!(format!("{:?}", SigningKeySource::File("/keys/a.pem".into())), r#"File("/keys/a.pem")"#);
    }
}
