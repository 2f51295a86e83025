//! Brings up, on this machine, what the system and its tests need, idempotently and saying what it
//! does: nginx, PostgreSQL, RabbitMQ with its management plugin, and a MongoDB-wire server. What
//! already answers is reused; what is installed but stopped is started; what is missing is
//! installed from the distribution's packages (or, for the MongoDB stand-in, from crates.io).
//!
//! Servers given by URL (`E2E_POSTGRES_URL`, `E2E_MONGODB_URL`, `E2E_RABBITMQ_URL`,
//! `E2E_RABBITMQ_MANAGEMENT_URL`) are used as given and nothing is set up for them. With
//! `Servers::Containers`, PostgreSQL, MongoDB and RabbitMQ are containers started with
//! testcontainers (see `docker.rs`), removed again when the run ends.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use shop_testkit_base::ServerUrls;

use crate::shell::{apt_install, found, port_open, run, say, stop_child, wait_for_port};

pub const POSTGRES_PORT: u16 = 5432;
pub const RABBITMQ_PORT: u16 = 5672;
pub const RABBITMQ_MANAGEMENT_PORT: u16 = 15672;
pub const MONGODB_PORT: u16 = 27017;

/// Where the servers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Servers {
    /// This machine's own (installed and started if need be), or the ones given by URL.
    Local,
    /// Containers started with testcontainers for this run.
    Containers,
}

/// What `prepare` started and must stop again when we are done.
pub struct Prepared {
    pub servers: ServerUrls,
    /// Processes started for this run only (the MongoDB stand-in); system daemons we started
    /// (PostgreSQL, RabbitMQ) are left running like the system services they are.
    started: Vec<(String, Child)>,
    /// Containers started for this run; removed by `stop`.
    containers: Option<crate::docker::RunContainers>,
}

impl Prepared {
    /// What a test process is given: the servers' URLs and, in containers mode, what makes the
    /// chaos run's own servers containers of the same images (`E2E_OWN_SERVERS=containers`,
    /// `E2E_POSTGRES_IMAGE`, ...; see `shop_testkit_base::own_servers`).
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut environment: Vec<(String, String)> =
            self.servers.environment().into_iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        if let Some(containers) = &self.containers {
            environment.push(("E2E_OWN_SERVERS".into(), "containers".into()));
            environment.extend(containers.own_server_images());
        }
        environment
    }

    pub fn stop(&mut self) {
        if let Some(containers) = self.containers.take() {
            containers.remove();
        }
        for (name, child) in &mut self.started {
            say(&format!("stopping {name} (pid {})", child.id()));
            stop_child(child, Duration::from_secs(10));
        }
        self.started.clear();
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Prepares the machine: nginx, and the servers from where `servers` says.
pub fn prepare(servers: Servers) -> anyhow::Result<Prepared> {
    ensure_nginx()?;
    ensure_prometheus()?;
    if servers == Servers::Containers {
        let containers = crate::docker::RunContainers::start()?;
        let servers = containers.urls.clone();
        return Ok(Prepared { servers, started: Vec::new(), containers: Some(containers) });
    }
    let mut prepared = Prepared { servers: ServerUrls::from_environment(), started: Vec::new(), containers: None };
    if ServerUrls::given("E2E_POSTGRES_URL") {
        say(&format!("PostgreSQL: given by URL, {}", prepared.servers.postgres));
    } else {
        ensure_postgres()?;
    }
    if ServerUrls::given("E2E_RABBITMQ_URL") {
        say(&format!("RabbitMQ: given by URL, {}", prepared.servers.rabbitmq));
    } else {
        ensure_rabbitmq()?;
    }
    if ServerUrls::given("E2E_MONGODB_URL") {
        say(&format!("MongoDB: given by URL, {}", prepared.servers.mongodb));
    } else if let Some(child) = ensure_mongodb()? {
        prepared.started.push(("the MongoDB stand-in".into(), child));
    }
    Ok(prepared)
}

fn ensure_nginx() -> anyhow::Result<()> {
    if found("nginx") {
        say("nginx: installed");
        return Ok(());
    }
    apt_install(&["nginx"])
}

/// Prometheus and promtool (Debian's `prometheus`): the monitoring feature runs a Prometheus
/// against its shop, and `cargo xtask alerts` tests the alert rules with promtool.
fn ensure_prometheus() -> anyhow::Result<()> {
    if found("prometheus") && found("promtool") {
        say("Prometheus: installed");
        return Ok(());
    }
    apt_install(&["prometheus"])
}

fn ensure_postgres() -> anyhow::Result<()> {
    if port_open(POSTGRES_PORT) {
        say(&format!("PostgreSQL: answering on 127.0.0.1:{POSTGRES_PORT}"));
        return Ok(());
    }
    let installed_now = !Path::new("/etc/postgresql").exists();
    if installed_now {
        apt_install(&["postgresql"])?;
    }
    let version = std::fs::read_dir("/etc/postgresql")
        .context("no /etc/postgresql")?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .max()
        .context("no PostgreSQL cluster configured")?;
    say(&format!("PostgreSQL {version}: starting its main cluster"));
    run(Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &version, "main", "start"]))?;
    wait_for_port(POSTGRES_PORT, "PostgreSQL", Duration::from_secs(30))?;
    if installed_now {
        // A stock Debian cluster asks for a password over TCP and the `postgres` role has none:
        // give it the one in the services' default URL (trust-auth servers ignore it anyway).
        say("PostgreSQL: setting the password of role postgres for TCP connections");
        run(Command::new("runuser").args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-q",
            "-c",
            "ALTER USER postgres PASSWORD 'postgres'",
        ]))?;
    }
    Ok(())
}

fn ensure_rabbitmq() -> anyhow::Result<()> {
    if port_open(RABBITMQ_PORT) {
        say(&format!("RabbitMQ: answering on 127.0.0.1:{RABBITMQ_PORT}"));
    } else {
        if !found("rabbitmq-server") {
            apt_install(&["rabbitmq-server"])?;
        }
        say("RabbitMQ: starting rabbitmq-server -detached");
        run(Command::new("rabbitmq-server").arg("-detached"))?;
        wait_for_port(RABBITMQ_PORT, "RabbitMQ", Duration::from_secs(90))?;
    }
    if port_open(RABBITMQ_MANAGEMENT_PORT) {
        say(&format!("RabbitMQ management API: answering on 127.0.0.1:{RABBITMQ_MANAGEMENT_PORT}"));
    } else {
        say("RabbitMQ management API: enabling the rabbitmq_management plugin");
        run(Command::new("rabbitmq-plugins").args(["enable", "rabbitmq_management"]).stdout(Stdio::null()))?;
        wait_for_port(RABBITMQ_MANAGEMENT_PORT, "the RabbitMQ management plugin", Duration::from_secs(60))?;
    }
    Ok(())
}

/// Starts a MongoDB-wire server unless one answers; returns the process if we started it.
fn ensure_mongodb() -> anyhow::Result<Option<Child>> {
    if port_open(MONGODB_PORT) {
        say(&format!("MongoDB: answering on 127.0.0.1:{MONGODB_PORT}"));
        return Ok(None);
    }
    let data = crate::workspace_root().join(".local/mongodb");
    std::fs::create_dir_all(&data)?;
    let log = std::fs::File::create(crate::workspace_root().join(".local/mongodb.log"))?;
    let mut command = if found("mongod") {
        say("MongoDB: starting mongod");
        let mut command = Command::new("mongod");
        command.args(["--bind_ip", "127.0.0.1", "--port", &MONGODB_PORT.to_string(), "--dbpath"]).arg(&data);
        command
    } else {
        let binary = crate::stand_in::mongodb_stand_in()?;
        say(&format!("MongoDB: no mongod here; starting the MongoDB-wire stand-in {}", binary.display()));
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", &MONGODB_PORT.to_string(), "--sync-on-commit", "--storage-path"])
            .arg(&data);
        command
    };
    let child = command
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .context("failed to start the MongoDB server")?;
    wait_for_port(MONGODB_PORT, "MongoDB", Duration::from_secs(30))?;
    Ok(Some(child))
}
