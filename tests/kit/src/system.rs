//! One isolated copy of the whole system per scenario: its own PostgreSQL databases, MongoDB
//! databases and RabbitMQ vhost, the four services started in-process (on ports the system
//! holds) through the same `Application::build` / `run_until_stopped` calls their binaries use,
//! and the real nginx in front. Services can be stopped and started again on the same port, or
//! killed, to inject outages; each runs in a tokio runtime and thread of its own, like a process
//! of its own, and reaches its database and the broker through fault proxies of its own (see
//! [`crate::proxy`]).
//!
//! Each service's listening socket belongs to the system, not to the service: the service serves
//! on a duplicate of it, and while the service is stopped the system keeps the socket and closes
//! every connection that arrives (nginx answers those requests with its JSON 503). So nobody else
//! can take a stopped service's port, and a restart serves on exactly the port nginx knows.
//!
//! A service may run as several replicas ([`Setup::replicas`]): each replica is an
//! [`Instance`] with its own port, runtime and fault proxies, all sharing the service's
//! databases and queues, and nginx balances the service's routes over them.
//!
//! Services are configured from their defaults plus what the system sets, never from the
//! caller's environment, and they run inside a tracing span that names the system (see
//! [`crate::logs`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use common::config::HttpSettings;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::Instrument as _;

use crate::gateway::{Gateway, Upstreams};
use crate::infrastructure::{self, Infrastructure};
use crate::proxy::Proxy;
use crate::rabbitmq::VirtualHost;

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

/// What a service depends on, each reached through a fault proxy of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dependency {
    /// Its own database: PostgreSQL for user and inventory, MongoDB for product and order.
    Database,
    /// RabbitMQ (the user service has none).
    Broker,
}

impl FromStr for Dependency {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "database" => Ok(Dependency::Database),
            "broker" => Ok(Dependency::Broker),
            other => Err(format!("unknown dependency {other:?}: expected database or broker")),
        }
    }
}

impl ServiceName {
    fn dependencies(self) -> &'static [Dependency] {
        match self {
            ServiceName::User => &[Dependency::Database],
            _ => &[Dependency::Database, Dependency::Broker],
        }
    }
}

/// One running copy of a service: replica 1, 2, ... Every service has at least replica 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instance {
    pub service: ServiceName,
    pub replica: usize,
}

impl Instance {
    /// A service's first (for most services, only) replica.
    pub fn first(service: ServiceName) -> Self {
        Self { service, replica: 1 }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?} replica {}", self.service, self.replica)
    }
}

/// What a fault hits: every replica of a service (`the inventory service`), or one of them
/// (`inventory replica 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Service(ServiceName),
    Replica(Instance),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(name) = text.strip_prefix("the ").and_then(|rest| rest.strip_suffix(" service")) {
            return Ok(Target::Service(name.parse()?));
        }
        let (name, replica) = text
            .split_once(" replica ")
            .ok_or_else(|| format!("{text:?} names no service: expected `the inventory service` or `inventory replica 2`"))?;
        let replica = replica.parse().map_err(|_| format!("{replica:?} is not a replica number"))?;
        Ok(Target::Replica(Instance { service: name.parse()?, replica }))
    }
}

/// A service's configuration, ready to be built in the service's own runtime.
enum ServiceConfig {
    User(user_service::Config),
    Product(product_service::Config),
    Inventory(inventory_service::Config),
    Order(order_service::Config),
}

impl ServiceConfig {
    /// Builds the service (telling `ready` whether that worked) and serves until `shutdown`.
    async fn build_and_run(
        self,
        shutdown: WaitForCancellationFutureOwned,
        ready: oneshot::Sender<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        macro_rules! build_and_run {
            ($service:ident, $config:expr) => {{
                match $service::Application::build($config).await {
                    Ok(application) => {
                        let _ = ready.send(Ok(()));
                        application.run_until_stopped(shutdown).await
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error.context(concat!(stringify!($service), " failed to start"))));
                        Ok(())
                    }
                }
            }};
        }
        match self {
            ServiceConfig::User(config) => build_and_run!(user_service, config),
            ServiceConfig::Product(config) => build_and_run!(product_service, config),
            ServiceConfig::Inventory(config) => build_and_run!(inventory_service, config),
            ServiceConfig::Order(config) => build_and_run!(order_service, config),
        }
    }
}

/// A service running as if it were a process of its own: in a tokio runtime of its own, on a
/// thread of its own, so that killing it drops every task it spawned (HTTP connections,
/// consumers, the relay, mid-message), as the end of a process would. A task of the harness's
/// runtime could only be aborted alone, leaving what it spawned running.
struct RunningService {
    /// Cancelled to ask the service to stop; its `run_until_stopped` resolves when it has.
    stop: CancellationToken,
    /// Sent to kill the service: its runtime is then shut down without waiting for anything.
    kill: oneshot::Sender<()>,
    /// The service's outcome, once its runtime is gone.
    finished: oneshot::Receiver<anyhow::Result<()>>,
}

impl RunningService {
    async fn start(instance: Instance, config: ServiceConfig, span: tracing::Span) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let (kill, killed) = oneshot::channel::<()>();
        let (finish, finished) = oneshot::channel();
        let (ready, started) = oneshot::channel();
        std::thread::Builder::new().name(instance.to_string()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = finish.send(Err(anyhow::Error::from(error).context("failed to build the service's runtime")));
                    return;
                }
            };
            let outcome = runtime.block_on(async move {
                let service = tokio::spawn(config.build_and_run(shutdown, ready).instrument(span));
                tokio::select! {
                    joined = service => joined.unwrap_or_else(|error| Err(anyhow::anyhow!("the service panicked: {error}"))),
                    _ = killed => Err(anyhow::anyhow!("killed")),
                }
            });
            // Drops every task still in the runtime, wherever it is, without waiting for any.
            runtime.shutdown_background();
            let _ = finish.send(outcome);
        })?;
        started.await.context("the service's thread ended before the service started")??;
        Ok(Self { stop, kill, finished })
    }

    /// Asks the service to stop and waits until it has (at most `patience`).
    async fn stop_gracefully(self, patience: Duration) -> anyhow::Result<()> {
        self.stop.cancel();
        match tokio::time::timeout(patience, self.finished).await {
            Ok(Ok(outcome)) => outcome.context("the service failed while stopping"),
            Ok(Err(_)) => bail!("the service's thread ended without an outcome"),
            Err(_) => bail!("the service did not stop within {patience:?}"),
        }
    }

    async fn kill(self) {
        let _ = self.kill.send(());
        let _ = self.finished.await;
    }
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
    /// How many replicas each service has.
    replicas: BTreeMap<ServiceName, usize>,
    /// Who may do staff work in the product, inventory and order services.
    staff_policy: common::auth::StaffPolicy,
    /// Every instance's listening socket, kept for the system's whole life so that a restart
    /// serves on the same port (nginx's upstreams point at it) and nobody can take it meanwhile.
    listeners: BTreeMap<Instance, Arc<std::net::TcpListener>>,
    running: BTreeMap<Instance, RunningService>,
    /// The sockets of stopped instances, answering with a closed connection.
    closed_doors: BTreeMap<Instance, ClosedDoor>,
    gateway: Option<Gateway>,
    /// For reading the MongoDB services' outboxes (an event stored and never published).
    mongodb: mongodb::Client,
    /// One fault proxy per instance and dependency: every connection an instance makes to its
    /// database or to the broker goes through its own, so a fault can hit one replica alone.
    proxies: BTreeMap<(Instance, Dependency), Proxy>,
}

/// How long a new system's instances may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Per-scenario PostgreSQL pools stay small: several scenarios run at once against a server
/// with max_connections = 100.
const DATABASE_MAX_CONNECTIONS: u32 = 3;

/// The account whose tokens carry the staff role in every system (`STAFF_EMAILS`).
pub const STAFF_EMAIL: &str = "staff@shop.example";

/// How a system is set up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// How many replicas of each service named here (at least one); one of every other.
    pub replicas: BTreeMap<ServiceName, usize>,
    /// `REQUIRE_STAFF_ROLE` for the product, inventory and order services.
    pub staff_only: bool,
}

impl System {
    pub async fn start(setup: &Setup) -> anyhow::Result<Self> {
        let replicas: BTreeMap<ServiceName, usize> = ServiceName::START_ORDER
            .into_iter()
            .map(|service| (service, setup.replicas.get(&service).copied().unwrap_or(1).max(1)))
            .collect();
        let infrastructure = infrastructure::get().await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mongodb =
            mongodb::Client::with_uri_str(&infrastructure.mongodb).await.context("failed to create a MongoDB client")?;
        let vhost = VirtualHost::create(infrastructure, format!("e2e-{id}")).await?;
        let mut proxies = BTreeMap::new();
        for instance in all_instances(&replicas) {
            let service = instance.service;
            for &dependency in service.dependencies() {
                let upstream = match (service, dependency) {
                    (_, Dependency::Broker) => address_of(&infrastructure.rabbitmq)?,
                    (ServiceName::User | ServiceName::Inventory, Dependency::Database) => {
                        address_of(&infrastructure.postgres)?
                    }
                    (ServiceName::Product | ServiceName::Order, Dependency::Database) => address_of(&infrastructure.mongodb)?,
                };
                proxies.insert((instance, dependency), Proxy::start(upstream).await?);
            }
        }
        let mut system = Self {
            id,
            vhost,
            infrastructure,
            replicas,
            staff_policy: common::auth::StaffPolicy { require_staff_role: setup.staff_only },
            listeners: BTreeMap::new(),
            running: BTreeMap::new(),
            closed_doors: BTreeMap::new(),
            gateway: None,
            mongodb,
            proxies,
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
        for instance in self.all_instances() {
            self.start_instance(instance).await?;
        }
        let upstreams = Upstreams {
            user: self.upstreams(ServiceName::User),
            product: self.upstreams(ServiceName::Product),
            order: self.upstreams(ServiceName::Order),
            inventory: self.upstreams(ServiceName::Inventory),
        };
        let prefix = std::env::temp_dir().join(format!("e2e-gateway-{}", self.id));
        self.gateway = Some(Gateway::start(&upstreams, prefix).await?);
        // Serving HTTP is not enough: a scenario starts once every instance's store, broker link
        // and consumers work, as a load balancer would wait for.
        for instance in self.all_instances() {
            self.wait_until_ready(instance, READY_DEADLINE).await?;
        }
        Ok(())
    }

    /// Every instance of the system, started or stopped.
    pub fn all_instances(&self) -> Vec<Instance> {
        all_instances(&self.replicas)
    }

    /// What `GET /ready` on `instance` answers: its status and body.
    pub async fn readiness(&self, instance: Instance) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}/ready", self.instance_url(instance));
        let response = reqwest::Client::new().get(&url).timeout(Duration::from_secs(5)).send().await?;
        let status = response.status().as_u16();
        let body = response.json().await.with_context(|| format!("GET {url} answered {status} without JSON"))?;
        Ok((status, body))
    }

    /// The status `GET /health` on `instance` answers, if it answers.
    pub async fn liveness(&self, instance: Instance) -> Option<u16> {
        let url = format!("{}/health", self.instance_url(instance));
        let response = reqwest::Client::new().get(&url).timeout(Duration::from_secs(5)).send().await.ok()?;
        Some(response.status().as_u16())
    }

    /// Waits until `instance` answers `/ready` with 200, or fails with its last answer.
    pub async fn wait_until_ready(&self, instance: Instance, deadline: Duration) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        loop {
            let answer = self.readiness(instance).await;
            match &answer {
                Ok((200, _)) => return Ok(()),
                _ if started.elapsed() >= deadline => {
                    bail!("{instance} was not ready within {deadline:?}; GET /ready: {answer:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub fn gateway_url(&self) -> String {
        self.gateway.as_ref().expect("the gateway runs while the system does").url()
    }

    /// The URL of the service's first replica.
    pub fn service_url(&self, service: ServiceName) -> String {
        self.instance_url(Instance::first(service))
    }

    fn instance_url(&self, instance: Instance) -> String {
        format!("http://127.0.0.1:{}", self.port(instance))
    }

    /// Every replica of `service`, as nginx's `host:port` upstream servers.
    fn upstreams(&self, service: ServiceName) -> Vec<String> {
        self.instances_of(service).map(|instance| format!("127.0.0.1:{}", self.port(instance))).collect()
    }

    fn instances_of(&self, service: ServiceName) -> impl Iterator<Item = Instance> + use<> {
        (1..=self.replicas[&service]).map(move |replica| Instance { service, replica })
    }

    /// The instances `target` names, or an error naming a replica the system does not have.
    pub fn instances(&self, target: Target) -> anyhow::Result<Vec<Instance>> {
        match target {
            Target::Service(service) => Ok(self.instances_of(service).collect()),
            Target::Replica(instance) if (1..=self.replicas[&instance.service]).contains(&instance.replica) => Ok(vec![instance]),
            Target::Replica(instance) => {
                bail!(
                    "there is no {instance}: the {:?} service has {} replica(s)",
                    instance.service,
                    self.replicas[&instance.service]
                )
            }
        }
    }

    fn port(&self, instance: Instance) -> u16 {
        self.listeners[&instance].local_addr().expect("a bound listener has an address").port()
    }

    /// The service's PostgreSQL database, reached through the proxy on `proxy_port`.
    fn database_url(&self, proxy_port: u16, service: &str) -> String {
        format!("{}/e2e_{}_{service}", through_port(&self.infrastructure.postgres, proxy_port), self.id)
    }

    /// The MongoDB server, reached through the proxy on `proxy_port`.
    fn mongodb_url(&self, proxy_port: u16) -> String {
        through_port(&self.infrastructure.mongodb, proxy_port)
    }

    fn mongodb_database(&self, service: &str) -> String {
        format!("e2e_{}_{service}", self.id)
    }

    fn http_settings(&self, instance: Instance) -> HttpSettings {
        HttpSettings { host: "127.0.0.1".into(), port: 0, inherited_listener: Some(Arc::clone(&self.listeners[&instance])) }
    }

    fn jwks_url(&self) -> String {
        format!("{}/api/v1/auth/jwks", self.service_url(ServiceName::User))
    }

    /// Starts `instance` (again), on the port it had before if it ran before.
    pub async fn start_instance(&mut self, instance: Instance) -> anyhow::Result<()> {
        if self.running.contains_key(&instance) {
            bail!("{instance} is already running");
        }
        if !self.listeners.contains_key(&instance) {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").context("failed to bind a port for a service")?;
            self.listeners.insert(instance, Arc::new(listener));
        }
        if let Some(door) = self.closed_doors.remove(&instance) {
            door.close().await;
        }
        let span = tracing::info_span!(
            parent: None,
            crate::logs::SYSTEM_SPAN,
            system = %self.id,
            service = ?instance.service,
            replica = instance.replica
        );
        let config = self.config_for(instance)?;
        match RunningService::start(instance, config, span).await {
            Ok(running) => {
                self.running.insert(instance, running);
                Ok(())
            }
            Err(error) => {
                self.closed_doors.insert(instance, ClosedDoor::open_on(&self.listeners[&instance])?);
                Err(error)
            }
        }
    }

    /// `instance`'s configuration: its service's defaults, plus this system's databases, vhost
    /// and peers, every store and the broker reached through the instance's own fault proxies.
    fn config_for(&self, instance: Instance) -> anyhow::Result<ServiceConfig> {
        let database = |instance| self.proxies[&(instance, Dependency::Database)].port;
        let broker_url = |instance| self.proxies[&(instance, Dependency::Broker)].url_through(&self.vhost.amqp_url);
        let service = instance.service;
        Ok(match service {
            ServiceName::User => {
                let mut config = user_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.database_url = self.database_url(database(instance), "users");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.signing_key = user_service::config::SigningKeySource::Pem(test_signing_key().to_owned());
                config.staff_emails = vec![STAFF_EMAIL.to_owned()];
                // Cheap hashing keeps scenarios fast; production defaults are untouched.
                config.password_hashing =
                    user_service::config::PasswordHashing { memory_kib: 1024, iterations: 1, parallelism: 1 };
                ServiceConfig::User(config)
            }
            ServiceName::Product => {
                let mut config = product_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.mongodb_url = self.mongodb_url(database(instance));
                config.mongodb_database = self.mongodb_database("products");
                config.rabbitmq_url = broker_url(instance)?;
                config.jwks_url = self.jwks_url();
                config.staff_policy = self.staff_policy;
                ServiceConfig::Product(config)
            }
            ServiceName::Inventory => {
                let mut config = inventory_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.database_url = self.database_url(database(instance), "inventory");
                config.database_max_connections = DATABASE_MAX_CONNECTIONS;
                config.rabbitmq_url = broker_url(instance)?;
                config.jwks_url = self.jwks_url();
                config.staff_policy = self.staff_policy;
                ServiceConfig::Inventory(config)
            }
            ServiceName::Order => {
                let mut config = order_service::Config::defaults();
                config.http = self.http_settings(instance);
                config.mongodb_url = self.mongodb_url(database(instance));
                config.mongodb_database = self.mongodb_database("orders");
                config.rabbitmq_url = broker_url(instance)?;
                config.jwks_url = self.jwks_url();
                config.staff_policy = self.staff_policy;
                config.product_service_url = self.service_url(ServiceName::Product);
                ServiceConfig::Order(config)
            }
        })
    }

    /// Stops `instance` gracefully and waits until it has: it no longer serves HTTP, its
    /// consumers have finished in-flight messages and disconnected. Its socket stays the
    /// system's, closing every connection, until the instance is started again.
    pub async fn stop_instance(&mut self, instance: Instance) -> anyhow::Result<()> {
        let running = self.running.remove(&instance).with_context(|| format!("{instance} is not running"))?;
        let stopped = running.stop_gracefully(Duration::from_secs(30)).await;
        self.closed_doors.insert(instance, ClosedDoor::open_on(&self.listeners[&instance])?);
        stopped
    }

    /// Kills `instance` as the end of its process would: no graceful shutdown, every task it had
    /// is dropped wherever it was, every connection it held is closed. Returns once it is gone.
    pub async fn kill_instance(&mut self, instance: Instance) -> anyhow::Result<()> {
        let running = self.running.remove(&instance).with_context(|| format!("{instance} is not running"))?;
        running.kill().await;
        self.closed_doors.insert(instance, ClosedDoor::open_on(&self.listeners[&instance])?);
        Ok(())
    }

    /// Proves that `instance` holds no connection to its database or the broker any more (within
    /// 10 s: a socket closed by a killed service is seen closed by its proxy at once).
    pub async fn verify_no_connections(&self, instance: Instance) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let open: Vec<String> = instance
                .service
                .dependencies()
                .iter()
                .map(|dependency| (dependency, self.proxy(instance, *dependency).open_connections()))
                .filter(|(_, open)| *open > 0)
                .map(|(dependency, open)| format!("{dependency:?}: {open}"))
                .collect();
            if open.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{instance} is gone, but its connections are still open: {}", open.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resets every connection any instance has to the broker (its proxy cuts them, then passes
    /// new ones again), whether or not the broker lists them yet.
    pub async fn reset_broker_connections(&self) -> anyhow::Result<()> {
        for ((_, dependency), proxy) in &self.proxies {
            if *dependency == Dependency::Broker {
                proxy.set(crate::proxy::Mode::Cut).await?;
                proxy.set(crate::proxy::Mode::Pass).await?;
            }
        }
        Ok(())
    }

    /// The fault proxy between `instance` and its `dependency`.
    pub fn proxy(&self, instance: Instance, dependency: Dependency) -> &Proxy {
        &self.proxies[&(instance, dependency)]
    }

    /// Proves that `instance` is down: a request sent straight to its port gets no answer. And
    /// that its port is still the system's: nobody else can bind it meanwhile.
    pub async fn verify_instance_is_down(&self, instance: Instance) -> anyhow::Result<()> {
        let port = self.port(instance);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            bail!("{instance} was stopped and its port {port} was free for anyone to take");
        }
        let url = format!("{}/health", self.instance_url(instance));
        match reqwest::Client::new().get(&url).timeout(Duration::from_secs(5)).send().await {
            Ok(response) => bail!("{instance} was stopped, but GET {url} answered {}", response.status()),
            Err(_) => Ok(()),
        }
    }

    /// Stops every service and nginx; the databases and the vhost stay for inspection until
    /// [`System::remove_data`].
    pub async fn stop_everything(&mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for instance in all_instances(&self.replicas).into_iter().rev() {
            if self.running.contains_key(&instance) {
                if let Err(error) = self.stop_instance(instance).await {
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
        for (_, proxy) in std::mem::take(&mut self.proxies) {
            proxy.stop();
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
        for (queue, count) in crate::logs::messages_in_flight(&self.id) {
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
        let mut server = sqlx::PgConnection::connect(&format!("{}/postgres", self.infrastructure.postgres)).await?;
        for service in ["users", "inventory"] {
            let statement = format!(r#"DROP DATABASE IF EXISTS "e2e_{}_{service}" WITH (FORCE)"#, self.id);
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut server).await?;
        }
        server.close().await?;
        Ok(())
    }

    async fn remove_mongodb_databases(&self) -> anyhow::Result<()> {
        let mongodb = mongodb::Client::with_uri_str(&self.infrastructure.mongodb).await?;
        for service in ["products", "orders"] {
            mongodb.database(&self.mongodb_database(service)).drop().await?;
        }
        Ok(())
    }
}

/// Every instance of every service, in the order services start in.
fn all_instances(replicas: &BTreeMap<ServiceName, usize>) -> Vec<Instance> {
    ServiceName::START_ORDER
        .into_iter()
        .flat_map(|service| (1..=replicas[&service]).map(move |replica| Instance { service, replica }))
        .collect()
}

/// What every service variable is set to in a harness process: a service that read its
/// environment instead of the configuration the harness gives it would fail to start.
const POISON: &str = "poisoned-by-the-e2e-harness";

/// Sets every variable the services read to an unusable value, proving that nothing in the
/// caller's environment reaches them.
///
/// # Safety
/// Call before any other thread exists (it writes the process environment).
pub unsafe fn poison_service_environment() {
    for variable in common::config::VARIABLES {
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe { std::env::set_var(variable, POISON) };
    }
}

/// `host:port` of a server URL.
fn address_of(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    let host = parsed.host_str().with_context(|| format!("{url} names no host"))?;
    let port = parsed.port_or_known_default().with_context(|| format!("{url} names no port"))?;
    Ok(format!("{host}:{port}"))
}

/// `url` with its host and port replaced by 127.0.0.1 and `port` (a proxy's).
fn through_port(url: &str, port: u16) -> String {
    let mut parsed = url::Url::parse(url).expect("the infrastructure's URLs parse");
    parsed.set_host(Some("127.0.0.1")).expect("the URL takes a host");
    parsed.set_port(Some(port)).expect("the URL takes a port");
    parsed.to_string().trim_end_matches('/').to_owned()
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
