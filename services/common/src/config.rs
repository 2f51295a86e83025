//! Configuration from environment variables, with defaults that work on a developer machine
//! (local PostgreSQL, RabbitMQ and a MongoDB-wire server on their standard ports).
//!
//! Every service reads its settings through an [`Environment`], so that a caller which sets every
//! value itself (the end-to-end harness, integration tests) can say "defaults only" and be sure
//! that nothing in the caller's own environment (a developer's `CONSUMER_PREFETCH`, say) changes
//! how the service behaves under test.

use std::str::FromStr;

use anyhow::Context;

use crate::messaging::topology::Service;

/// Where configuration values come from.
///
/// Any setting may instead be read from a file named by `NAME_FILE` (`DATABASE_URL_FILE=/run/secrets/...`),
/// as the official PostgreSQL and RabbitMQ images do: how Docker and Kubernetes hand out secrets
/// without putting them in the environment. Setting both `NAME` and `NAME_FILE` is an error, and
/// so is a file that cannot be read ([`Environment::check_files`], which [`Settings::from_env`]
/// runs first); one trailing line break is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The process's environment variables: what the binaries use.
    Process,
    /// Nothing: every setting takes its default, and the caller overrides what it needs.
    DefaultsOnly,
    /// These variables and no others: for tests of how settings are read.
    Given(&'static [(&'static str, &'static str)]),
}

/// A service's settings: read from an [`Environment`], with a developer machine's defaults for
/// whatever is not set. Each service implements [`Settings::from_environment`]; the binaries call
/// [`Settings::from_env`], tests and the harness [`Settings::defaults`] and then set what they need.
pub trait Settings: Sized {
    /// The settings `environment` gives, with defaults for what it does not.
    fn from_environment(environment: Environment) -> anyhow::Result<Self>;

    /// The settings in the process's environment variables, with defaults for what is unset.
    fn from_env() -> anyhow::Result<Self> {
        Environment::Process.check_files()?;
        Self::from_environment(Environment::Process)
    }

    /// Every setting at its default, whatever the process's environment says: for callers that
    /// set what they need themselves and must not be steered by the environment they run in.
    fn defaults() -> Self {
        Self::from_environment(Environment::DefaultsOnly).expect("the defaults are valid")
    }
}

impl Environment {
    /// The variable `name` itself, if it is set and not blank.
    fn variable(self, name: &str) -> Option<String> {
        let value = match self {
            Environment::Process => std::env::var(name).ok(),
            Environment::DefaultsOnly => None,
            Environment::Given(variables) => {
                variables.iter().find(|(given, _)| *given == name).map(|(_, value)| (*value).to_owned())
            }
        };
        value.filter(|value| !value.trim().is_empty())
    }

    /// The value of `name`, if it is set and not blank, or else the content of the file that
    /// `NAME_FILE` names (its one trailing line break dropped), if that is not blank.
    pub fn get(self, name: &str) -> Option<String> {
        self.variable(name).or_else(|| {
            let path = self.variable(&format!("{name}_FILE"))?;
            let content = std::fs::read_to_string(path).ok()?;
            let content = content.strip_suffix('\n').map_or(content.as_str(), |line| line.strip_suffix('\r').unwrap_or(line));
            Some(content.to_owned()).filter(|value| !value.trim().is_empty())
        })
    }

    /// Every `NAME_FILE` among the services' [`VARIABLES`] names a file that can be read, and no
    /// setting is given both ways: said at start, naming the variable, rather than a secret
    /// silently missing.
    pub fn check_files(self) -> anyhow::Result<()> {
        for name in VARIABLES {
            let Some(path) = self.variable(&format!("{name}_FILE")) else { continue };
            if self.variable(name).is_some() {
                anyhow::bail!("both {name} and {name}_FILE are set: set one of them");
            }
            std::fs::read_to_string(&path).with_context(|| format!("{name}_FILE={path:?} cannot be read"))?;
        }
        Ok(())
    }

    /// Reads `name`, or returns `default` when it is unset or empty.
    pub fn or(self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    /// Reads and parses `name`, or returns `default` when it is unset or empty. A value that does
    /// not parse is an error that names the variable, not a silent fallback.
    pub fn parse<T>(self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        match self.get(name) {
            Some(value) => value.trim().parse().with_context(|| format!("environment variable {name}={value:?} does not parse")),
            None => Ok(default),
        }
    }
}

/// Where a service listens. Port 0 asks the OS for a free port; the bound port can be read back
/// from the application.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// A socket that is already listening, handed in by a caller that keeps it across restarts
    /// of the service (the test harness, so that a stopped service's port cannot be taken by
    /// anyone else meanwhile). When set, `host` and `port` are ignored and the service serves on
    /// a duplicate of this socket; the caller's own handle stays open after the service stops.
    pub inherited_listener: Option<std::sync::Arc<std::net::TcpListener>>,
    /// How long stopping may take, from the shutdown signal to the last background task
    /// (`SHUTDOWN_DRAIN_LIMIT_MS`; see [`crate::runtime`]).
    pub drain_limit: std::time::Duration,
}

/// [`HttpSettings::drain_limit`] unless configured: longer than a request or a message takes, and
/// shorter than the 30 s a container platform waits after SIGTERM before it kills.
pub const DEFAULT_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl HttpSettings {
    pub fn from_environment(environment: Environment, default_port: u16) -> anyhow::Result<Self> {
        Ok(Self {
            host: environment.or("HOST", "127.0.0.1"),
            port: environment.parse("PORT", default_port)?,
            inherited_listener: None,
            drain_limit: std::time::Duration::from_millis(
                environment.parse("SHUTDOWN_DRAIN_LIMIT_MS", DEFAULT_DRAIN_LIMIT.as_millis() as u64)?,
            ),
        })
    }
}

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432";
pub const DEFAULT_MONGODB_URL: &str = "mongodb://127.0.0.1:27017/?directConnection=true";
pub const DEFAULT_USER_SERVICE_URL: &str = "http://127.0.0.1:8003";

/// How long a MongoDB operation waits for a usable server before failing, so that an outage
/// answers requests with a 503 in seconds instead of hanging them for the driver's 30 s (longer
/// than the gateway waits).
pub const MONGODB_SERVER_SELECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The broker every service talks to; the vhost is part of the URL (`%2f` is `/`). By default the
/// local broker, logged in as `speaker`'s broker user with its development password (its name),
/// as `cargo xtask up` creates it.
pub fn rabbitmq_url(environment: Environment, speaker: Service) -> String {
    environment.get("RABBITMQ_URL").unwrap_or_else(|| default_rabbitmq_url(speaker))
}

pub fn default_rabbitmq_url(speaker: Service) -> String {
    let user = speaker.broker_user();
    format!("amqp://{user}:{user}@127.0.0.1:5672/%2f")
}

/// Where the user service publishes its signing keys, for the services that verify tokens.
pub fn jwks_url(environment: Environment) -> String {
    environment.get("JWKS_URL").unwrap_or_else(|| {
        format!("{}/api/v1/auth/jwks", environment.or("USER_SERVICE_URL", DEFAULT_USER_SERVICE_URL).trim_end_matches('/'))
    })
}

/// How a verifying service paces its fetches of the key set: [`crate::auth::KeyFetching`]'s
/// defaults, with `JWKS_REFRESH_SECONDS` (60) for how old the keys may get before they are fetched
/// again, which bounds how long a key the user service stopped publishing stays trusted.
pub fn key_fetching(environment: Environment) -> anyhow::Result<crate::auth::KeyFetching> {
    let defaults = crate::auth::KeyFetching::default();
    let refresh = environment.parse("JWKS_REFRESH_SECONDS", defaults.refresh_interval.as_secs())?;
    anyhow::ensure!(refresh > 0, "JWKS_REFRESH_SECONDS must be at least 1");
    Ok(crate::auth::KeyFetching { refresh_interval: std::time::Duration::from_secs(refresh), ..defaults })
}

/// `REQUIRE_STAFF_ROLE` (`true` or `false`, default `false`): whether catalog and stock writes and
/// the fulfilment transitions of orders need a token with the staff role. Off, any signed-in user
/// may do them (on their own orders), as the testing guide's walk-through does.
pub fn staff_policy(environment: Environment) -> anyhow::Result<crate::auth::StaffPolicy> {
    Ok(crate::auth::StaffPolicy { require_staff_role: environment.parse("REQUIRE_STAFF_ROLE", false)? })
}

/// `APP_ENV`: which defaults a deployment may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The default: everything the guide's walk and `cargo xtask up` need works with nothing set
    /// (the brokers' and stores' development credentials, a generated signing key, open writes).
    Development,
    /// A deployment: a service refuses to start while any of its credentials has its development
    /// default, its signing key would be generated, or writes are open ([`ProductionRules`]).
    Production,
}

impl Profile {
    /// `APP_ENV` (`development`, the default, or `production`); any other value is an error that
    /// names it.
    pub fn from_environment(environment: Environment) -> anyhow::Result<Self> {
        match environment.get("APP_ENV").map(|value| value.trim().to_ascii_lowercase()).as_deref() {
            None | Some("development") => Ok(Self::Development),
            Some("production") => Ok(Self::Production),
            Some(other) => anyhow::bail!("APP_ENV={other:?} is neither development nor production"),
        }
    }
}

/// The development defaults a production deployment must not keep: checked by every service at
/// start under `APP_ENV=production`, every setting found wrong said at once, each with why.
#[derive(Debug, Default)]
#[must_use = "the rules only act in `check`"]
pub struct ProductionRules {
    problems: Vec<String>,
}

/// Credentials of the development setups (the broker's, the stores'), refused in production.
/// Whether `user:password` is a development pair: a password that is its user's name (`guest`,
/// `postgres`, the services' broker users and database roles as `cargo xtask up` and
/// docker-compose make them) or `development` (the Kubernetes development overlay's).
fn development_credentials(user: &str, password: &str) -> bool {
    password == user || password == "development"
}

impl ProductionRules {
    pub fn new() -> Self {
        Self::default()
    }

    /// The URL in `name` carries credentials of the service's own: a user and a password, and not
    /// a development pair (see [`development_credentials`]).
    pub fn credentials(mut self, name: &str, url: &str) -> Self {
        let problem = match url::Url::parse(url) {
            Err(_) => Some(format!("{name} is not a URL")),
            Ok(url) if url.username().is_empty() || url.password().is_none_or(str::is_empty) => {
                Some(format!("{name} has no user and password: a deployment gives each service credentials of its own"))
            }
            Ok(url) if development_credentials(url.username(), url.password().unwrap_or_default()) => {
                Some(format!("{name} uses the development credentials {}:{}", url.username(), url.password().unwrap_or_default()))
            }
            Ok(_) => None,
        };
        self.problems.extend(problem);
        self
    }

    /// The broker URL in `name` logs in as `speaker`'s own broker user: the `user_id` every
    /// consumer expects on its events (see `crate::messaging::topology::Service`).
    pub fn broker_user(self, name: &str, url: &str, speaker: Service) -> Self {
        let user = crate::messaging::broker_user_of(url);
        let expected = speaker.broker_user();
        let problem = format!(
            "{name} logs in as the broker user {user:?}: the {speaker:?} service must be {expected:?}, \
             the user its events' consumers take them from"
        );
        self.holds(user == expected, &problem)
    }

    /// Staff work needs the staff role (`REQUIRE_STAFF_ROLE=true`): open writes are the guide's
    /// walk, not a shop.
    pub fn staff_required(self, policy: &crate::auth::StaffPolicy) -> Self {
        self.holds(
            policy.require_staff_role,
            "REQUIRE_STAFF_ROLE is false: any signed-in user may write the catalog, the stock and fulfilment",
        )
    }

    /// `problem` unless `holds`.
    pub fn holds(mut self, holds: bool, problem: &str) -> Self {
        if !holds {
            self.problems.push(problem.to_owned());
        }
        self
    }

    /// Under `APP_ENV=production`, an error listing every problem found; otherwise `Ok`.
    pub fn check(self, environment: Environment) -> anyhow::Result<()> {
        if Profile::from_environment(environment)? == Profile::Production && !self.problems.is_empty() {
            anyhow::bail!("APP_ENV=production refuses to start with development settings: {}", self.problems.join("; "));
        }
        Ok(())
    }
}

/// Every variable the services read, for tests that prove a caller's environment is ignored.
pub const VARIABLES: &[&str] = &[
    "APP_ENV",
    "HOST",
    "PORT",
    "RABBITMQ_URL",
    "JWKS_URL",
    "JWKS_REFRESH_SECONDS",
    "REQUIRE_STAFF_ROLE",
    "STAFF_EMAILS",
    "USER_SERVICE_URL",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "MONGODB_URL",
    "MONGODB_DATABASE",
    "MONGODB_MAX_POOL_SIZE",
    "PRODUCT_SERVICE_URL",
    "PRODUCT_LOOKUP_TIMEOUT_MS",
    "CONSUMER_PREFETCH",
    "PRODUCT_STOCK_RECORD_WAIT_SECONDS",
    "JWT_PRIVATE_KEY",
    "JWT_PRIVATE_KEY_PATH",
    "JWT_KEY_DIR",
    "JWT_KEY_RELOAD_SECONDS",
    "ACCESS_TOKEN_TTL_SECONDS",
    "REFRESH_TOKEN_TTL_SECONDS",
    "ARGON2_MEMORY_KIB",
    "ARGON2_ITERATIONS",
    "ARGON2_PARALLELISM",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `content`, kept for the test process's life (its path must be `'static`
    /// for [`Environment::Given`]).
    fn secret_file(content: &str) -> &'static str {
        let path = std::env::temp_dir().join(format!("config-secret-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, content).unwrap();
        Box::leak(path.display().to_string().into_boxed_str())
    }

    fn given(variables: Vec<(&'static str, &'static str)>) -> Environment {
        Environment::Given(Box::leak(variables.into_boxed_slice()))
    }

    fn production_check(rules: ProductionRules) -> Result<(), String> {
        rules.check(given(vec![("APP_ENV", "production")])).map_err(|error| error.to_string())
    }

    #[test]
    fn production_refuses_development_credentials_and_urls_without_any_naming_each_setting() {
        let refused = production_check(
            ProductionRules::new()
                .credentials("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
                .credentials("BROKER_URL", &default_rabbitmq_url(Service::Order))
                .credentials("DATABASE_URL", &format!("{DEFAULT_POSTGRES_URL}/inventory"))
                .credentials("MONGODB_URL", DEFAULT_MONGODB_URL)
                .credentials("OTHER_URL", "amqp://order:@broker:5672/%2f")
                .credentials("ROLE_URL", "postgres://inventory_service:development@db/inventory"),
        )
        .unwrap_err();
        assert_eq!(
            refused,
            "APP_ENV=production refuses to start with development settings: \
             RABBITMQ_URL uses the development credentials guest:guest; \
             BROKER_URL uses the development credentials order:order; \
             DATABASE_URL uses the development credentials postgres:postgres; \
             MONGODB_URL has no user and password: a deployment gives each service credentials of its own; \
             OTHER_URL has no user and password: a deployment gives each service credentials of its own; \
             ROLE_URL uses the development credentials inventory_service:development"
        );
        let own = ProductionRules::new()
            .credentials("RABBITMQ_URL", "amqp://order:s3cret@broker:5672/%2f")
            .credentials("MONGODB_URL", "mongodb://order:s3cret@mongodb:27017/?authSource=orders");
        assert_eq!(production_check(own), Ok(()));
    }

    #[test]
    fn production_refuses_a_broker_user_that_is_not_the_services_own() {
        let refused = production_check(ProductionRules::new().broker_user(
            "RABBITMQ_URL",
            "amqp://shop:s3cret@broker/%2f",
            Service::Inventory,
        ))
        .unwrap_err();
        assert!(refused.ends_with("RABBITMQ_URL logs in as the broker user \"shop\": the Inventory service must be \"inventory\", the user its events' consumers take them from"), "{refused}");
        let own = ProductionRules::new().broker_user("RABBITMQ_URL", "amqp://inventory:s3cret@broker/%2f", Service::Inventory);
        assert_eq!(production_check(own), Ok(()));
    }

    #[test]
    fn production_refuses_open_writes() {
        let open = crate::auth::StaffPolicy { require_staff_role: false };
        let refused = production_check(ProductionRules::new().staff_required(&open)).unwrap_err();
        assert!(
            refused.ends_with("REQUIRE_STAFF_ROLE is false: any signed-in user may write the catalog, the stock and fulfilment")
        );
        let staff_only = crate::auth::StaffPolicy { require_staff_role: true };
        assert_eq!(production_check(ProductionRules::new().staff_required(&staff_only)), Ok(()));
    }

    #[test]
    fn development_keeps_its_defaults_and_an_unknown_profile_is_an_error() {
        let rules = || ProductionRules::new().credentials("RABBITMQ_URL", &default_rabbitmq_url(Service::Product));
        assert!(rules().check(Environment::DefaultsOnly).is_ok());
        assert!(rules().check(given(vec![("APP_ENV", "Development")])).is_ok());
        let error = rules().check(given(vec![("APP_ENV", "staging")])).unwrap_err().to_string();
        assert_eq!(error, "APP_ENV=\"staging\" is neither development nor production");
    }

    #[test]
    fn a_setting_is_read_from_the_file_its_file_variable_names() {
        let environment = given(vec![
            ("DATABASE_URL_FILE", secret_file("postgres://inventory:s3cret@db/inventory\n")),
            ("RABBITMQ_URL_FILE", secret_file("amqp://inventory:other@broker:5672/%2f\r\n")),
            ("JWT_PRIVATE_KEY_FILE", secret_file("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")),
            ("PORT", "8002"),
        ]);
        environment.check_files().unwrap();
        assert_eq!(environment.get("DATABASE_URL").as_deref(), Some("postgres://inventory:s3cret@db/inventory"));
        assert_eq!(rabbitmq_url(environment, Service::Inventory), "amqp://inventory:other@broker:5672/%2f");
        // Only the one trailing line break goes: a PEM keeps its inner lines.
        assert_eq!(
            environment.get("JWT_PRIVATE_KEY").as_deref(),
            Some("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----")
        );
        assert_eq!(environment.parse("PORT", 0_u16).unwrap(), 8002);
        assert_eq!(environment.get("MONGODB_URL"), None);
    }

    #[test]
    fn a_setting_given_both_ways_or_a_file_that_cannot_be_read_stops_the_start_naming_it() {
        let both = given(vec![("DATABASE_URL", "postgres://a"), ("DATABASE_URL_FILE", secret_file("postgres://b"))]);
        let error = both.check_files().unwrap_err().to_string();
        assert_eq!(error, "both DATABASE_URL and DATABASE_URL_FILE are set: set one of them");

        let missing = given(vec![("RABBITMQ_URL_FILE", "/nonexistent/secret")]);
        let error = format!("{:#}", missing.check_files().unwrap_err());
        assert!(error.starts_with("RABBITMQ_URL_FILE=\"/nonexistent/secret\" cannot be read"), "{error}");

        assert!(Environment::DefaultsOnly.check_files().is_ok());
        assert!(given(vec![("DATABASE_URL", "postgres://a")]).check_files().is_ok());
    }
}
