//! A system's life: starting it and its instances, readiness, stopping and killing instances
//! (with the proofs a fault step needs), stopping everything and removing the data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::addresses::*;
use super::process::*;
use super::*;
use crate::gateway::{Gateway, Upstreams};
use crate::infrastructure;
use crate::proxy::Proxy;
use crate::rabbitmq::VirtualHost;

/// How long a new system's instances may take to become ready.
pub(super) const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stopped or killed instance's listening socket may take to close (a killed
/// service's runtime drops its tasks, and so its listener, just after it is gone).
const PORT_CLOSE_PATIENCE: Duration = Duration::from_secs(10);

impl System {
    pub async fn start(setup: &Setup) -> anyhow::Result<Self> {
        let replicas: BTreeMap<ServiceName, usize> = ServiceName::START_ORDER
            .into_iter()
            .map(|service| (service, setup.replicas.get(&service).copied().unwrap_or(1).max(1)))
            .collect();
        let infrastructure = match setup.servers {
            Some(servers) => servers,
            None => infrastructure::get().await,
        };
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mongodb =
            mongodb::Client::with_uri_str(&infrastructure.mongodb).await.context("failed to create a MongoDB client")?;
        let vhost = VirtualHost::create(infrastructure, format!("e2e-{id}")).await?;
        if let Err(error) = super::configuration::provision_databases(infrastructure, &id).await {
            let _ = vhost.delete().await;
            return Err(error);
        }
        let mut proxies = BTreeMap::new();
        for instance in all_instances(&replicas) {
            let service = instance.service;
            for &dependency in service.dependencies() {
                let upstream = match (service, dependency) {
                    (_, Dependency::Broker) => address_of(&infrastructure.rabbitmq)?,
                    (ServiceName::User | ServiceName::Inventory, Dependency::Database) => address_of(&infrastructure.postgres)?,
                    (ServiceName::Product | ServiceName::Order, Dependency::Database) => address_of(&infrastructure.mongodb)?,
                };
                proxies.insert((instance, dependency), Proxy::start(upstream).await?);
            }
        }
        let key_directory = if setup.key_directory {
            let directory = std::env::temp_dir().join(format!("e2e-keys-{id}"));
            let first = directory.join(user_service::keys::file_name(chrono::DateTime::UNIX_EPOCH));
            user_service::keys::write_new_key_file(&first, &super::configuration::SigningKeys::global().lease(&id)).await?;
            Some(directory)
        } else {
            None
        };
        let mut system = Self {
            id,
            vhost,
            infrastructure,
            replicas,
            staff_policy: common::auth::StaffPolicy { require_staff_role: setup.staff_only },
            key_directory,
            ports: BTreeMap::new(),
            listeners: BTreeMap::new(),
            running: BTreeMap::new(),
            refusing: BTreeMap::new(),
            gateway: None,
            https: setup.https,
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

    pub(super) async fn start_services_and_gateway(&mut self) -> anyhow::Result<()> {
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
        self.gateway = Some(Gateway::start(&upstreams, prefix, self.https).await?);
        // Serving HTTP is not enough: a scenario starts once every instance's store, broker link
        // and consumers work, as a load balancer would wait for.
        for instance in self.all_instances() {
            self.wait_until_ready(instance, READY_DEADLINE).await?;
        }
        Ok(())
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

    /// Starts `instance` (again), on the port it had before if it ran before.
    pub async fn start_instance(&mut self, instance: Instance) -> anyhow::Result<()> {
        if self.running.contains_key(&instance) {
            bail!("{instance} is already running");
        }
        if !self.listeners.contains_key(&instance) {
            // The port it had, held refusing since it stopped; or, at its first start, a new one.
            let listener = match self.refusing.remove(&instance) {
                Some(held) => held.listen()?,
                None => listen_on_a_free_port()?,
            };
            self.ports.insert(instance, listener.local_addr()?.port());
            self.listeners.insert(instance, Arc::new(listener));
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
                self.refuse_connections(instance).await?;
                Err(error)
            }
        }
    }

    /// Stops `instance` gracefully and waits until it has: it no longer serves HTTP, its
    /// consumers have finished in-flight messages and disconnected, and its port refuses
    /// connections (held by the system until the instance is started again). The system lets go
    /// of its own listening socket first, so the port refuses as soon as the service stops
    /// accepting, as a process's would.
    pub async fn stop_instance(&mut self, instance: Instance) -> anyhow::Result<()> {
        let running = self.running.remove(&instance).with_context(|| format!("{instance} is not running"))?;
        self.hold_port(instance)?;
        let stopped = running.stop_gracefully(Duration::from_secs(30)).await;
        let refusing = wait_until_port_refuses(self.port(instance), PORT_CLOSE_PATIENCE).await;
        stopped.and(refusing.with_context(|| format!("{instance} stopped, but its listening socket is still open")))
    }

    /// Kills `instance` as the end of its process would: no graceful shutdown, every task it had
    /// is dropped wherever it was, every connection it held is closed. Returns once it is gone
    /// and its port refuses connections.
    pub async fn kill_instance(&mut self, instance: Instance) -> anyhow::Result<()> {
        let running = self.running.remove(&instance).with_context(|| format!("{instance} is not running"))?;
        self.hold_port(instance)?;
        running.kill().await;
        wait_until_port_refuses(self.port(instance), PORT_CLOSE_PATIENCE)
            .await
            .with_context(|| format!("{instance} was killed, but its listening socket is still open"))
    }

    /// Holds `instance`'s port with a socket that does not listen and closes the system's own
    /// listening socket; the port refuses connections once the service has closed its duplicate.
    fn hold_port(&mut self, instance: Instance) -> anyhow::Result<()> {
        if !self.refusing.contains_key(&instance) {
            self.refusing.insert(instance, RefusingPort::hold(self.port(instance))?);
        }
        self.listeners.remove(&instance);
        Ok(())
    }

    /// [`Self::hold_port`], then waits until the port refuses.
    async fn refuse_connections(&mut self, instance: Instance) -> anyhow::Result<()> {
        self.hold_port(instance)?;
        wait_until_port_refuses(self.port(instance), PORT_CLOSE_PATIENCE).await
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

    /// Proves that `instance` is down: a connection to its port is refused, as at a dead
    /// process's port, and a request sent straight to it gets no answer. And that its port is
    /// still the system's: nobody else can bind it meanwhile.
    pub async fn verify_instance_is_down(&self, instance: Instance) -> anyhow::Result<()> {
        let port = self.port(instance);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            bail!("{instance} was stopped and its port {port} was free for anyone to take");
        }
        port_refuses(port)
            .await
            .with_context(|| format!("{instance} was stopped, but its port {port} does not refuse connections"))?;
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
            if self.running.contains_key(&instance)
                && let Err(error) = self.stop_instance(instance).await
            {
                failures.push(format!("{error:#}"));
            }
        }
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
        // The ports go back to the machine.
        self.refusing.clear();
        self.listeners.clear();
        for (_, proxy) in std::mem::take(&mut self.proxies) {
            proxy.stop();
        }
        if failures.is_empty() { Ok(()) } else { bail!("stopping the system failed: {}", failures.join("; ")) }
    }

    /// Removes the scenario's databases and vhost.
    pub async fn remove_data(self) -> anyhow::Result<()> {
        let keys = match &self.key_directory {
            Some(directory) => std::fs::remove_dir_all(directory).with_context(|| format!("removing {}", directory.display())),
            None => Ok(()),
        };
        // Each store is cleaned even when another one fails (a store that is down, say).
        let failures: Vec<String> =
            [self.remove_postgres_databases().await, self.remove_mongodb_databases().await, self.vhost.delete().await, keys]
                .into_iter()
                .filter_map(|outcome| outcome.err().map(|error| format!("{error:#}")))
                .collect();
        if failures.is_empty() { Ok(()) } else { bail!("removing the scenario's data failed: {}", failures.join("; ")) }
    }

    pub(super) async fn remove_postgres_databases(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut server = sqlx::PgConnection::connect(&format!("{}/postgres", self.infrastructure.postgres)).await?;
        for service in ["users", "inventory"] {
            let statement = format!(r#"DROP DATABASE IF EXISTS "e2e_{}_{service}" WITH (FORCE)"#, self.id);
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut server).await?;
        }
        server.close().await?;
        Ok(())
    }

    pub(super) async fn remove_mongodb_databases(&self) -> anyhow::Result<()> {
        let mongodb = mongodb::Client::with_uri_str(&self.infrastructure.mongodb).await?;
        for service in ["products", "orders"] {
            mongodb.database(&self.mongodb_database(service)).drop().await?;
        }
        Ok(())
    }
}
