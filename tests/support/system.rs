//! One isolated copy of the whole system per scenario: its own PostgreSQL databases, MongoDB
//! databases and RabbitMQ vhost, the four services started in-process on port 0 through the same
//! `Application::build` / `run_until_stopped` calls their binaries use, and the real nginx in
//! front. Services can be stopped and started again on the same port to inject outages.
//!
//! Each service's listening socket belongs to the system, not to the service: the service serves
//! on a duplicate of it, and while the service is stopped the system keeps the socket and closes
//! every connection that arrives (nginx answers those requests with its JSON 503). So nobody else
//! can take a stopped service's port, and a restart serves on exactly the port nginx knows.
//!
//! Services are configured from their defaults plus what the system sets, never from the
//! caller's environment, and they run inside a tracing span that names the system (see
//! [`super::logs`]).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use common::config::HttpSettings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

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

/// A stopped service's socket, kept listening by the system: it accepts each connection and
/// closes it at once, as a dead process would have (nginx turns that into its 503).
struct ClosedDoor {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ClosedDoor {
    fn open_on(listener: &std::net::TcpListener) -> anyhow::Result<Self> {
        let duplicate = listener.try_clone()?;
        duplicate.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(duplicate)?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => drop(accepted),
                }
            }
        });
        Ok(Self { stop, task })
    }

    async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

pub struct System {
    pub id: String,
    pub vhost: VirtualHost,
    infrastructure: &'static Infrastructure,
    /// Every service's listening socket, kept for the system's whole life so that a restart
    /// serves on the same port (nginx's upstreams point at it) and nobody can take it meanwhile.
    listeners: BTreeMap<ServiceName, Arc<std::net::TcpListener>>,
    running: BTreeMap<ServiceName, RunningService>,
    /// The sockets of stopped services, answering with a closed connection.
    closed_doors: BTreeMap<ServiceName, ClosedDoor>,
    gateway: Option<Gateway>,
    /// For reading the MongoDB services' outboxes (an event stored and never published).
    mongodb: mongodb::Client,
}

/// Per-scenario PostgreSQL pools stay small: several scenarios run at once against a server
/// with max_connections = 100.
const DATABASE_MAX_CONNECTIONS: u32 = 3;

impl System {
    pub async fn start() -> anyhow::Result<Self> {
        let infrastructure = infrastructure::get().await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mongodb = mongodb::Client::with_uri_str(&infrastructure.mongodb_url).await.context("failed to create a MongoDB client")?;
        let vhost = VirtualHost::create(infrastructure, format!("e2e-{id}")).await?;
        let mut system = Self {
            id,
            vhost,
            infrastructure,
            listeners: BTreeMap::new(),
            running: BTreeMap::new(),
            closed_doors: BTreeMap::new(),
            gateway: None,
            mongodb,
        };
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
        format!("127.0.0.1:{}", self.port(service))
    }

    fn port(&self, service: ServiceName) -> u16 {
        self.listeners[&service].local_addr().expect("a bound listener has an address").port()
    }

    fn database_url(&self, service: &str) -> String {
        format!("{}/e2e_{}_{service}", self.infrastructure.postgres_server_url, self.id)
    }

    fn mongodb_database(&self, service: &str) -> String {
        format!("e2e_{}_{service}", self.id)
    }

    fn http_settings(&self, service: ServiceName) -> HttpSettings {
        HttpSettings { host: "127.0.0.1".into(), port: 0, inherited_listener: Some(Arc::clone(&self.listeners[&service])) }
    }

    fn jwks_url(&self) -> String {
        format!("{}/api/v1/auth/jwks", self.service_url(ServiceName::User))
    }

    /// Starts `service` (again), on the port it had before if it ran before.
    pub async fn start_service(&mut self, service: ServiceName) -> anyhow::Result<()> {
        if self.running.contains_key(&service) {
            bail!("{service:?} service is already running");
        }
        if !self.listeners.contains_key(&service) {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").context("failed to bind a port for a service")?;
            self.listeners.insert(service, Arc::new(listener));
        }
        if let Some(door) = self.closed_doors.remove(&service) {
            door.close().await;
        }
        let span = tracing::info_span!(parent: None, super::logs::SYSTEM_SPAN, system = %self.id, service = ?service);
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let started = self.build_and_spawn(service, shutdown).instrument(span).await;
        match started {
            Ok(task) => {
                self.running.insert(service, RunningService { stop, task });
                Ok(())
            }
            Err(error) => {
                self.closed_doors.insert(service, ClosedDoor::open_on(&self.listeners[&service])?);
                Err(error)
            }
        }
    }

    /// Builds `service` and spawns its `run_until_stopped`, both in the current span (the
    /// system's), which the service keeps for everything it does.
    async fn build_and_spawn(
        &self,
        service: ServiceName,
        shutdown: tokio_util::sync::WaitForCancellationFutureOwned,
    ) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
        let task = match service {
            ServiceName::User => {
                let mut config = user_service::Config::defaults();
                config.http = self.http_settings(service);
                config.database_url = self.database_url("users");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.signing_key = user_service::config::SigningKeySource::Pem(test_signing_key().to_owned());
                // Cheap hashing keeps scenarios fast; production defaults are untouched.
                config.password_hashing =
                    user_service::config::PasswordHashing { memory_kib: 1024, iterations: 1, parallelism: 1 };
                let application = user_service::Application::build(config).await.context("user service failed to start")?;
                tokio::spawn(application.run_until_stopped(shutdown).in_current_span())
            }
            ServiceName::Product => {
                let mut config = product_service::Config::defaults();
                config.http = self.http_settings(service);
                config.mongodb_url = self.infrastructure.mongodb_url.clone();
                config.mongodb_database = self.mongodb_database("products");
                config.rabbitmq_url = self.vhost.amqp_url.clone();
                config.jwks_url = self.jwks_url();
                let application = product_service::Application::build(config).await.context("product service failed to start")?;
                tokio::spawn(application.run_until_stopped(shutdown).in_current_span())
            }
            ServiceName::Inventory => {
                let mut config = inventory_service::Config::defaults();
                config.http = self.http_settings(service);
                config.database_url = self.database_url("inventory");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.rabbitmq_url = self.vhost.amqp_url.clone();
                config.jwks_url = self.jwks_url();
                let application =
                    inventory_service::Application::build(config).await.context("inventory service failed to start")?;
                tokio::spawn(application.run_until_stopped(shutdown).in_current_span())
            }
            ServiceName::Order => {
                let mut config = order_service::Config::defaults();
                config.http = self.http_settings(service);
                config.mongodb_url = self.infrastructure.mongodb_url.clone();
                config.mongodb_database = self.mongodb_database("orders");
                config.rabbitmq_url = self.vhost.amqp_url.clone();
                config.jwks_url = self.jwks_url();
                config.product_service_url = self.service_url(ServiceName::Product);
                let application = order_service::Application::build(config).await.context("order service failed to start")?;
                tokio::spawn(application.run_until_stopped(shutdown).in_current_span())
            }
        };
        Ok(task)
    }

    /// Stops `service` gracefully and waits until it has: it no longer serves HTTP, its
    /// consumers have finished in-flight messages and disconnected. Its socket stays the
    /// system's, closing every connection, until the service is started again.
    pub async fn stop_service(&mut self, service: ServiceName) -> anyhow::Result<()> {
        let running = self.running.remove(&service).with_context(|| format!("{service:?} service is not running"))?;
        running.stop.cancel();
        let stopped = match tokio::time::timeout(Duration::from_secs(30), running.task).await {
            Ok(Ok(result)) => result.with_context(|| format!("{service:?} service failed while stopping")),
            Ok(Err(join_error)) => Err(anyhow::anyhow!("{service:?} service panicked: {join_error}")),
            Err(_) => Err(anyhow::anyhow!("{service:?} service did not stop within 30 s")),
        };
        self.closed_doors.insert(service, ClosedDoor::open_on(&self.listeners[&service])?);
        stopped
    }

    /// Proves that `service` is down: a request sent straight to its port gets no answer. And
    /// that its port is still the system's: nobody else can bind it meanwhile.
    pub async fn verify_service_is_down(&self, service: ServiceName) -> anyhow::Result<()> {
        let port = self.port(service);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            bail!("{service:?} service was stopped and its port {port} was free for anyone to take");
        }
        let url = format!("{}/health", self.service_url(service));
        match reqwest::Client::new().get(&url).timeout(Duration::from_secs(5)).send().await {
            Ok(response) => bail!("{service:?} service was stopped, but GET {url} answered {}", response.status()),
            Err(_) => Ok(()),
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
        for (_, door) in std::mem::take(&mut self.closed_doors) {
            door.close().await;
        }
        if failures.is_empty() { Ok(()) } else { bail!("stopping the system failed: {}", failures.join("; ")) }
    }

    /// The events waiting in `service`'s outbox (product or order), as `queue` names.
    pub async fn outbox_events(&self, service: ServiceName) -> anyhow::Result<Vec<String>> {
        use common::messaging::document_outbox::OUTBOX_FIELD;
        use futures::TryStreamExt as _;
        let (database, collection) = match service {
            ServiceName::Product => ("products", "products"),
            ServiceName::Order => ("orders", "orders"),
            other => bail!("the {other:?} service keeps no outbox"),
        };
        let documents: Vec<bson::Document> = self
            .mongodb
            .database(&self.mongodb_database(database))
            .collection::<bson::Document>(collection)
            .find(bson::doc! { format!("{OUTBOX_FIELD}.id"): { "$exists": true } })
            .projection(bson::doc! { OUTBOX_FIELD: 1 })
            .await?
            .try_collect()
            .await
            .with_context(|| format!("failed to read the outbox of {collection}"))?;
        Ok(documents
            .iter()
            .filter_map(|document| document.get_array(OUTBOX_FIELD).ok())
            .flatten()
            .map(|event| event.as_document().and_then(|event| event.get_str("queue").ok()).unwrap_or("(no queue)").to_owned())
            .collect())
    }

    /// Events stored in the MongoDB services' outboxes and not yet published, one line per
    /// service that has any (empty when there are none).
    pub async fn pending_outbox_events(&self) -> anyhow::Result<Vec<String>> {
        let mut pending = Vec::new();
        for service in [ServiceName::Product, ServiceName::Order] {
            let events = self.outbox_events(service).await?;
            if !events.is_empty() {
                pending.push(format!("{service:?} outbox: {events:?}"));
            }
        }
        Ok(pending)
    }

    /// Whatever the system is still doing, one line per thing: messages ready in a queue or its
    /// delay queue (counted exactly), messages a consumer holds, events waiting in an outbox. Empty
    /// when the system is idle.
    pub async fn unsettled_work(&self) -> anyhow::Result<Vec<String>> {
        let mut work = Vec::new();
        for queue in common::messaging::topology::QUEUES {
            // A message in a queue's delay queue is work postponed, not done.
            for queue in [queue.to_owned(), common::messaging::topology::delay_queue(queue)] {
                let ready = self.vhost.ready_messages(&queue).await?;
                if ready > 0 {
                    work.push(format!("{queue}: {ready} ready"));
                }
            }
        }
        for (queue, count) in super::logs::messages_in_flight(&self.id) {
            work.push(format!("{queue}: {count} being handled"));
        }
        work.extend(self.pending_outbox_events().await?);
        Ok(work)
    }

    /// Waits until the system has settled: nothing ready in any queue, no message being handled
    /// and no event waiting in an outbox, seen twice in a row a quarter of a second apart (a
    /// message on its way from the broker to a consumer is in none of those places for an
    /// instant; it cannot stay there that long).
    pub async fn wait_until_settled(&self, patience: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut idle_before = false;
        loop {
            let work = self.unsettled_work().await?;
            if work.is_empty() && idle_before {
                return Ok(());
            }
            idle_before = work.is_empty();
            if tokio::time::Instant::now() >= deadline && !work.is_empty() {
                bail!("the system did not settle within {patience:?}; still going on: {}", work.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
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
