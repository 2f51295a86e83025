//! Where PostgreSQL, MongoDB and RabbitMQ are, from the one set of variables every test target
//! and xtask share: `E2E_POSTGRES_URL` (a server URL whose user may create databases, without a
//! database), `E2E_MONGODB_URL`, `E2E_RABBITMQ_URL` (`amqp://user:pass@host:port`, no vhost) and
//! `E2E_RABBITMQ_MANAGEMENT_URL` (`http://user:pass@host:port`). By default this machine's own
//! servers; `cargo xtask e2e --containers` points them at containers it started.

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432";
pub const DEFAULT_MONGODB_URL: &str = "mongodb://127.0.0.1:27017/?directConnection=true";
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672";
pub const DEFAULT_RABBITMQ_MANAGEMENT_URL: &str = "http://guest:guest@127.0.0.1:15672";

/// The variables, in the order [`ServerUrls::environment`] gives them.
pub const VARIABLES: [&str; 4] = ["E2E_POSTGRES_URL", "E2E_MONGODB_URL", "E2E_RABBITMQ_URL", "E2E_RABBITMQ_MANAGEMENT_URL"];

/// The servers' URLs, each without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrls {
    /// `postgres://user[:password]@host:port`, without a database.
    pub postgres: String,
    /// `mongodb://host:port/?directConnection=true`.
    pub mongodb: String,
    /// `amqp://user:pass@host:port`, without a vhost.
    pub rabbitmq: String,
    /// `http://[user:password@]host:port` of the management API.
    pub rabbitmq_management: String,
}

/// `url` (a server's, without a path) logging in as `user` with `password` instead of whoever it
/// named: how a service's own broker user or database role reaches the server the tests were
/// given.
pub fn logged_in_as(url: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|error| anyhow::anyhow!("{url} is not a URL: {error}"))?;
    parsed.set_username(user).map_err(|()| anyhow::anyhow!("{url} takes no user"))?;
    parsed.set_password(Some(password)).map_err(|()| anyhow::anyhow!("{url} takes no password"))?;
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// The management API's address without credentials, and the credentials to use there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementLogin {
    pub url: String,
    pub user: String,
    pub password: String,
}

impl ServerUrls {
    /// The ones given in the environment (an unset or empty variable takes its default).
    pub fn from_environment() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same from any lookup of variables (tests give a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let variable = |name: &str, default: &str| {
            lookup(name).filter(|value| !value.is_empty()).unwrap_or_else(|| default.to_owned()).trim_end_matches('/').to_owned()
        };
        Self {
            postgres: variable(VARIABLES[0], DEFAULT_POSTGRES_URL),
            // The MongoDB URL keeps its query (`/?directConnection=true`) as given.
            mongodb: lookup(VARIABLES[1]).filter(|value| !value.is_empty()).unwrap_or_else(|| DEFAULT_MONGODB_URL.to_owned()),
            rabbitmq: variable(VARIABLES[2], DEFAULT_RABBITMQ_URL),
            rabbitmq_management: variable(VARIABLES[3], DEFAULT_RABBITMQ_MANAGEMENT_URL),
        }
    }

    /// Whether `variable` is given (then its server is used as it is, not set up by xtask).
    pub fn given(variable: &str) -> bool {
        std::env::var(variable).is_ok_and(|value| !value.is_empty())
    }

    /// The variables that hand these servers to a test target (or to `cargo xtask up`).
    pub fn environment(&self) -> [(&'static str, String); 4] {
        [
            (VARIABLES[0], self.postgres.clone()),
            (VARIABLES[1], self.mongodb.clone()),
            (VARIABLES[2], self.rabbitmq.clone()),
            (VARIABLES[3], self.rabbitmq_management.clone()),
        ]
    }

    /// The management API's address without credentials, and the credentials (guest unless the
    /// URL names a user).
    pub fn rabbitmq_management_login(&self) -> ManagementLogin {
        let (scheme, rest) = self.rabbitmq_management.split_once("://").unwrap_or(("http", &self.rabbitmq_management));
        match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
                ManagementLogin { url: format!("{scheme}://{host}"), user: user.to_owned(), password: password.to_owned() }
            }
            None => ManagementLogin { url: format!("{scheme}://{rest}"), user: "guest".to_owned(), password: "guest".to_owned() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_empty_variables_take_this_machines_servers() {
        let servers = ServerUrls::from_lookup(|name| (name == "E2E_MONGODB_URL").then(String::new));
        assert_eq!(servers.postgres, DEFAULT_POSTGRES_URL);
        assert_eq!(servers.mongodb, DEFAULT_MONGODB_URL);
        assert_eq!(servers.rabbitmq, DEFAULT_RABBITMQ_URL);
    }

    #[test]
    fn given_urls_lose_their_trailing_slash_and_the_management_login_is_split_off() {
        let servers = ServerUrls::from_lookup(|name| match name {
            "E2E_POSTGRES_URL" => Some("postgres://shop:secret@db:6543/".to_owned()),
            "E2E_RABBITMQ_MANAGEMENT_URL" => Some("http://admin:p4ss@broker:15999/".to_owned()),
            _ => None,
        });
        assert_eq!(servers.postgres, "postgres://shop:secret@db:6543");
        let login = servers.rabbitmq_management_login();
        assert_eq!(login, ManagementLogin { url: "http://broker:15999".into(), user: "admin".into(), password: "p4ss".into() });
    }

    #[test]
    fn a_url_logged_in_as_another_user_keeps_its_server() {
        let url = super::logged_in_as("amqp://guest:guest@127.0.0.1:5672", "order", "order").unwrap();
        assert_eq!(url, "amqp://order:order@127.0.0.1:5672");
        let url = super::logged_in_as("postgres://postgres@db:5432", "inventory_service", "p@ss").unwrap();
        assert_eq!(url, "postgres://inventory_service:p%40ss@db:5432");
    }

    #[test]
    fn a_management_url_without_credentials_logs_in_as_guest() {
        let servers =
            ServerUrls::from_lookup(|name| (name == "E2E_RABBITMQ_MANAGEMENT_URL").then(|| "http://broker:1".to_owned()));
        let login = servers.rabbitmq_management_login();
        assert_eq!((login.url.as_str(), login.user.as_str(), login.password.as_str()), ("http://broker:1", "guest", "guest"));
    }
}
