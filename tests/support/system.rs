//! One isolated copy of the whole system per scenario: its own PostgreSQL databases, MongoDB
//! databases and RabbitMQ vhost, the four services started in-process on port 0 through the same
//! `Application::build` / `run_until_stopped` calls their binaries use, and the real nginx in
//! front. Services can be stopped and started again on the same port to inject outages.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use common::config::HttpSettings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::gateway::{Gateway, Upstreams};
use super::infrastructure::{self, Infrastructure};
use super::rabbitmq::VirtualHost;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceName {
    User,
    Product,
    Inventory,
    Order,
}

impl ServiceName {
    /// The order services start in: the user service first (the others verify its tokens), the
    /// product service before the order service (orders look products up).
    pub const START_ORDER: [ServiceName; 4] =
        [ServiceName::User, ServiceName::Product, ServiceName::Inventory, ServiceName::Order];
}

impl FromStr for ServiceName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "user" => Ok(ServiceName::User),
            "product" => Ok(ServiceName::Product),
            "inventory" => Ok(ServiceName::Inventory),
            "order" => Ok(ServiceName::Order),
            other => Err(format!("unknown service {other:?}: expected user, product, inventory or order")),
        }
    }
}

struct RunningService {
    /// Cancelled to ask the service to stop; its `run_until_stopped` resolves when it has.
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

pub struct System {
    pub id: String,
    pub vhost: VirtualHost,
    infrastructure: &'static Infrastructure,
    /// Every service's port, kept across a stop so a restart binds the same one (nginx's
    /// upstreams point at it).
    ports: BTreeMap<ServiceName, u16>,
    running: BTreeMap<ServiceName, RunningService>,
    gateway: Option<Gateway>,
}

/// Per-scenario PostgreSQL pools stay small: several scenarios run at once against a server
/// with max_connections = 100.
const DATABASE_MAX_CONNECTIONS: u32 = 3;

impl System {
    pub async fn start() -> anyhow::Result<Self> {
        let infrastructure = infrastructure::get().await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let vhost = VirtualHost::create(infrastructure, format!("e2e-{id}")).await?;
        let mut system = Self { id, vhost, infrastructure, ports: BTreeMap::new(), running: BTreeMap::new(), gateway: None };
        match system.start_services_and_gateway().await {
            Ok(()) => Ok(system),
            Err(error) => {
                // Leave nothing behind on the shared servers: stop what started, drop what exists.
                let _ = system.stop_everything().await;
                let _ = system.remove_data().await;
                Err(error)
            }
        }
    }

    async fn start_services_and_gateway(&mut self) -> anyhow::Result<()> {
        for service in ServiceName::START_ORDER {
            self.start_service(service).await?;
        }
        let upstreams = Upstreams {
            user: self.upstream(ServiceName::User),
            product: self.upstream(ServiceName::Product),
            order: self.upstream(ServiceName::Order),
            inventory: self.upstream(ServiceName::Inventory),
        };
        let prefix = std::env::temp_dir().join(format!("e2e-gateway-{}", self.id));
        self.gateway = Some(Gateway::start(&upstreams, prefix).await?);
        Ok(())
    }

    pub fn gateway_url(&self) -> String {
        self.gateway.as_ref().expect("the gateway runs while the system does").url()
    }

    pub fn service_url(&self, service: ServiceName) -> String {
        format!("http://{}", self.upstream(service))
    }

    fn upstream(&self, service: ServiceName) -> String {
        format!("127.0.0.1:{}", self.ports[&service])
    }

    fn database_url(&self, service: &str) -> String {
        format!("{}/e2e_{}_{service}", self.infrastructure.postgres_server_url, self.id)
    }

    fn mongodb_database(&self, service: &str) -> String {
        format!("e2e_{}_{service}", self.id)
    }

    fn http_settings(&self, service: ServiceName) -> HttpSettings {
        HttpSettings { host: "127.0.0.1".into(), port: self.ports.get(&service).copied().unwrap_or(0) }
    }

    fn jwks_url(&self) -> String {
        format!("{}/api/v1/auth/jwks", self.service_url(ServiceName::User))
    }

    /// Starts `service` (again), on the port it had before if it ran before.
    pub async fn start_service(&mut self, service: ServiceName) -> anyhow::Result<()> {
        if self.running.contains_key(&service) {
            bail!("{service:?} service is already running");
        }
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let (port, task) = match service {
            ServiceName::User => {
                let mut config = user_service::Config::from_env()?;
                config.http = self.http_settings(service);
                config.database_url = self.database_url("users");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.signing_key = user_service::config::SigningKeySource::Pem(test_signing_key().to_owned());
                // Cheap hashing keeps scenarios fast; production defaults are untouched.
                config.password_hashing =
                    user_service::config::PasswordHashing { memory_kib: 1024, iterations: 1, parallelism: 1 };
                let application = user_service::Application::build(config).await.context("user service failed to start")?;
                (application.port(), tokio::spawn(application.run_until_stopped(shutdown)))
            }
            ServiceName::Product => {
                let mut config = product_service::Config::from_env()?;
                config.http = self.http_settings(service);
                config.mongodb_url = self.infrastructure.mongodb_url.clone();
                config.mongodb_database = self.mongodb_database("products");
                config.rabbitmq_url = self.vhost.amqp_url.clone();
                config.jwks_url = self.jwks_url();
                let application = product_service::Application::build(config).await.context("product service failed to start")?;
                (application.port(), tokio::spawn(application.run_until_stopped(shutdown)))
            }
            ServiceName::Inventory => {
                let mut config = inventory_service::Config::from_env()?;
                config.http = self.http_settings(service);
                config.database_url = self.database_url("inventory");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.rabbitmq_url = self.vhost.amqp_url.clone();
                config.jwks_url = self.jwks_url();
                let application =
                    inventory_service::Application::build(config).await.context("inventory service failed to start")?;
                (application.port(), tokio::spawn(application.run_until_stopped(shutdown)))
            }
            ServiceName::Order => {
                let mut config = order_service::Config::from_env()?;
                config.http = self.http_settings(service);
                config.mongodb_url = self.infrastructure.mongodb_url.clone();
                config.mongodb_database = self.mongodb_database("orders");
                config.rabbitmq_url = self.vhost.amqp_url.clone();
                config.jwks_url = self.jwks_url();
                config.product_service_url = self.service_url(ServiceName::Product);
                let application = order_service::Application::build(config).await.context("order service failed to start")?;
                (application.port(), tokio::spawn(application.run_until_stopped(shutdown)))
            }
        };
        self.ports.insert(service, port);
        self.running.insert(service, RunningService { stop, task });
        Ok(())
    }

    /// Stops `service` gracefully and waits until it has: its HTTP port is closed, its consumers
    /// have finished in-flight messages and disconnected.
    pub async fn stop_service(&mut self, service: ServiceName) -> anyhow::Result<()> {
        let running = self.running.remove(&service).with_context(|| format!("{service:?} service is not running"))?;
        running.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(30), running.task).await {
            Ok(Ok(result)) => result.with_context(|| format!("{service:?} service failed while stopping")),
            Ok(Err(join_error)) => bail!("{service:?} service panicked: {join_error}"),
            Err(_) => bail!("{service:?} service did not stop within 30 s"),
        }
    }

    /// Stops every service and nginx; the databases and the vhost stay for inspection until
    /// [`System::remove_data`].
    pub async fn stop_everything(&mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for service in ServiceName::START_ORDER.into_iter().rev() {
            if self.running.contains_key(&service) {
                if let Err(error) = self.stop_service(service).await {
                    failures.push(format!("{error:#}"));
                }
            }
        }
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
        if failures.is_empty() { Ok(()) } else { bail!("stopping the system failed: {}", failures.join("; ")) }
    }

    /// Removes the scenario's databases and vhost.
    pub async fn remove_data(self) -> anyhow::Result<()> {
        // Each store is cleaned even when another one fails (a store that is down, say).
        let failures: Vec<String> =
            [self.remove_postgres_databases().await, self.remove_mongodb_databases().await, self.vhost.delete().await]
                .into_iter()
                .filter_map(|outcome| outcome.err().map(|error| format!("{error:#}")))
                .collect();
        if failures.is_empty() { Ok(()) } else { bail!("removing the scenario's data failed: {}", failures.join("; ")) }
    }

    async fn remove_postgres_databases(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut server = sqlx::PgConnection::connect(&format!("{}/postgres", self.infrastructure.postgres_server_url)).await?;
        for service in ["users", "inventory"] {
            let statement = format!(r#"DROP DATABASE IF EXISTS "e2e_{}_{service}" WITH (FORCE)"#, self.id);
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut server).await?;
        }
        server.close().await?;
        Ok(())
    }

    async fn remove_mongodb_databases(&self) -> anyhow::Result<()> {
        let mongodb = mongodb::Client::with_uri_str(&self.infrastructure.mongodb_url).await?;
        for service in ["products", "orders"] {
            mongodb.database(&self.mongodb_database(service)).drop().await?;
        }
        Ok(())
    }
}

/// One RSA key for every scenario of the process: generating one takes a moment.
fn test_signing_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation works");
        key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("a fresh key encodes").to_string()
    })
}
