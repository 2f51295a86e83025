//! Where PostgreSQL, MongoDB and RabbitMQ come from, decided once per test process:
//! testcontainers when a Docker daemon answers, otherwise servers given by URL (by default the
//! ones a developer machine like ours runs locally). The choice is printed in one line.
//!
//! Variables: `E2E_POSTGRES_URL` (a server URL whose user may create databases),
//! `E2E_MONGODB_URL`, `E2E_RABBITMQ_URL` (amqp://user:pass@host:port, no vhost),
//! `E2E_RABBITMQ_MANAGEMENT_URL` (http://user:pass@host:port). `E2E_INFRASTRUCTURE=urls` skips
//! the Docker probe; `=containers` insists on it.

use std::sync::Arc;

use anyhow::Context;
use testcontainers_modules::testcontainers::ImageExt;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::{mongo, postgres, rabbitmq};
use tokio::sync::OnceCell;

/// Servers shared by every scenario of this process. Scenarios isolate themselves inside them
/// (a database per service per scenario, a vhost per scenario).
pub struct Infrastructure {
    /// `postgres://user[:password]@host:port`, without a database.
    pub postgres_server_url: String,
    /// `mongodb://host:port/?directConnection=true`.
    pub mongodb_url: String,
    /// `amqp://user:pass@host:port`, without a vhost.
    pub rabbitmq_server_url: String,
    /// `http://host:port` of the management API, and its credentials.
    pub rabbitmq_management_url: String,
    pub rabbitmq_user: String,
    pub rabbitmq_password: String,
    /// Keeps the containers alive for the whole process when testcontainers started them.
    _containers: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

static INFRASTRUCTURE: OnceCell<Infrastructure> = OnceCell::const_new();

/// The process's infrastructure, set up on first use.
pub async fn get() -> &'static Infrastructure {
    INFRASTRUCTURE.get_or_init(|| async { Infrastructure::discover().await.expect("test infrastructure is not available") }).await
}

impl Infrastructure {
    async fn discover() -> anyhow::Result<Self> {
        let choice = std::env::var("E2E_INFRASTRUCTURE").unwrap_or_default();
        let docker = docker_answers().await;
        let infrastructure = match (choice.as_str(), docker) {
            ("containers", false) => anyhow::bail!("E2E_INFRASTRUCTURE=containers but no Docker daemon answers"),
            ("urls", _) | (_, false) => {
                let infrastructure = Self::from_urls()?;
                println!(
                    "e2e infrastructure: no Docker{}; using servers given by URL: PostgreSQL {}, MongoDB {}, RabbitMQ {} (management {})",
                    if docker { " wanted" } else { " daemon" },
                    infrastructure.postgres_server_url,
                    infrastructure.mongodb_url,
                    infrastructure.rabbitmq_server_url,
                    infrastructure.rabbitmq_management_url
                );
                infrastructure
            }
            _ => {
                let infrastructure = Self::from_containers().await?;
                println!(
                    "e2e infrastructure: Docker answers; started testcontainers: PostgreSQL {}, MongoDB {}, RabbitMQ {} (management {})",
                    infrastructure.postgres_server_url,
                    infrastructure.mongodb_url,
                    infrastructure.rabbitmq_server_url,
                    infrastructure.rabbitmq_management_url
                );
                infrastructure
            }
        };
        Ok(infrastructure)
    }

    fn from_urls() -> anyhow::Result<Self> {
        let env = |name: &str, default: &str| {
            std::env::var(name).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        let management = url::Url::parse(&env("E2E_RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"))
            .context("E2E_RABBITMQ_MANAGEMENT_URL is not a URL")?;
        let user = if management.username().is_empty() { "guest".to_owned() } else { management.username().to_owned() };
        let password = management.password().unwrap_or("guest").to_owned();
        let management_base = format!(
            "{}://{}:{}",
            management.scheme(),
            management.host_str().unwrap_or("127.0.0.1"),
            management.port_or_known_default().unwrap_or(15672)
        );
        Ok(Self {
            postgres_server_url: env("E2E_POSTGRES_URL", "postgres://postgres:postgres@127.0.0.1:5432")
                .trim_end_matches('/')
                .to_owned(),
            mongodb_url: env("E2E_MONGODB_URL", "mongodb://127.0.0.1:27017/?directConnection=true"),
            rabbitmq_server_url: env("E2E_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672").trim_end_matches('/').to_owned(),
            rabbitmq_management_url: management_base,
            rabbitmq_user: user,
            rabbitmq_password: password,
            _containers: Vec::new(),
        })
    }

    async fn from_containers() -> anyhow::Result<Self> {
        let postgres = postgres::Postgres::default().with_tag("16-alpine").start().await.context("failed to start PostgreSQL")?;
        let mongo = mongo::Mongo::default().with_tag("7").start().await.context("failed to start MongoDB")?;
        let rabbit = rabbitmq::RabbitMq::default().with_tag("3-management").start().await.context("failed to start RabbitMQ")?;
        let postgres_port = postgres.get_host_port_ipv4(5432).await?;
        let mongo_port = mongo.get_host_port_ipv4(27017).await?;
        let amqp_port = rabbit.get_host_port_ipv4(5672).await?;
        let management_port = rabbit.get_host_port_ipv4(15672).await?;
        Ok(Self {
            postgres_server_url: format!("postgres://postgres:postgres@127.0.0.1:{postgres_port}"),
            mongodb_url: format!("mongodb://127.0.0.1:{mongo_port}/?directConnection=true"),
            rabbitmq_server_url: format!("amqp://guest:guest@127.0.0.1:{amqp_port}"),
            rabbitmq_management_url: format!("http://127.0.0.1:{management_port}"),
            rabbitmq_user: "guest".into(),
            rabbitmq_password: "guest".into(),
            _containers: vec![Arc::new(postgres) as Arc<dyn std::any::Any + Send + Sync>, Arc::new(mongo), Arc::new(rabbit)],
        })
    }
}

/// Whether a Docker daemon answers on its socket (`DOCKER_HOST` or the default path). Without
/// one, testcontainers would fail with `SocketNotFoundError`; we decide up front instead.
async fn docker_answers() -> bool {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    if std::env::var("DOCKER_HOST").is_ok_and(|host| host.starts_with("tcp://")) {
        return true;
    }
    tokio::net::UnixStream::connect(&socket).await.is_ok()
}
