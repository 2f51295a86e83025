//! Brings up, on this machine, what the system and its tests need, idempotently and saying what it
//! does: nginx, PostgreSQL, RabbitMQ with its management plugin, and a MongoDB-wire server. What
//! already answers is reused; what is installed but stopped is started; what is missing is
//! installed from the distribution's packages (or, for the MongoDB stand-in, from crates.io).
//!
//! Servers given by URL (`E2E_POSTGRES_URL`, `E2E_MONGODB_URL`, `E2E_RABBITMQ_URL`,
//! `E2E_RABBITMQ_MANAGEMENT_URL`) are used as given and nothing is set up for them. With
//! `Servers::Containers`, PostgreSQL, MongoDB and RabbitMQ are containers started with
//! testcontainers (see `docker.rs`), removed again when the run ends.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The MongoDB-compatible server used where no MongoDB is installed (see shared/infra.md).
const MONGODB_STAND_IN_CRATE: &str = "secantus-mdb";
const MONGODB_STAND_IN_VERSION: &str = "0.5.3-beta.196";
const MONGODB_STAND_IN_BINARY: &str = "secantusd-rs";

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

/// Where the servers are: what every test target reads (`common::config::TestServers`).
#[derive(Debug, Clone)]
pub struct ServerUrls {
    /// Without a database.
    pub postgres: String,
    pub mongodb: String,
    /// Without a vhost.
    pub rabbitmq: String,
    /// `http://user:password@host:port`.
    pub rabbitmq_management: String,
}

impl ServerUrls {
    /// The ones given in the environment, each defaulting to this machine's own.
    pub fn from_environment() -> Self {
        let variable = |name: &str, default: &str| {
            std::env::var(name).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        Self {
            postgres: variable("E2E_POSTGRES_URL", &format!("postgres://postgres:postgres@127.0.0.1:{POSTGRES_PORT}")),
            mongodb: variable("E2E_MONGODB_URL", &format!("mongodb://127.0.0.1:{MONGODB_PORT}/?directConnection=true")),
            rabbitmq: variable("E2E_RABBITMQ_URL", &format!("amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}")),
            rabbitmq_management: variable(
                "E2E_RABBITMQ_MANAGEMENT_URL",
                &format!("http://guest:guest@127.0.0.1:{RABBITMQ_MANAGEMENT_PORT}"),
            ),
        }
    }

    /// Whether a server was given by URL (then it is used as it is, not set up here).
    fn given(name: &str) -> bool {
        std::env::var(name).is_ok_and(|value| !value.is_empty())
    }

    /// The variables that hand these servers to a test target (or to `cargo xtask up`).
    pub fn environment(&self) -> [(&'static str, String); 4] {
        [
            ("E2E_POSTGRES_URL", self.postgres.clone()),
            ("E2E_MONGODB_URL", self.mongodb.clone()),
            ("E2E_RABBITMQ_URL", self.rabbitmq.clone()),
            ("E2E_RABBITMQ_MANAGEMENT_URL", self.rabbitmq_management.clone()),
        ]
    }
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
    pub fn stop(&mut self) {
        if let Some(containers) = self.containers.take() {
            containers.remove();
        }
        for (name, child) in &mut self.started {
            say(&format!("stopping {name} (pid {})", child.id()));
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.started.clear();
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn say(message: &str) {
    println!("xtask: {message}");
}

/// Prepares the machine: nginx, and the servers from where `servers` says.
pub fn prepare(servers: Servers) -> anyhow::Result<Prepared> {
    ensure_nginx()?;
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

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(300)).is_ok()
}

pub fn wait_for_port(port: u16, what: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !port_open(port) {
        if Instant::now() >= deadline {
            bail!("{what} did not open port {port} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

pub fn found(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
        || Path::new("/usr/sbin").join(program).exists()
}

pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("failed to run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !found("apt-get") {
        bail!("{} missing and there is no apt-get to install it; install it yourself", packages.join(", "));
    }
    say(&format!("installing {} with apt-get", packages.join(" ")));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_nginx() -> anyhow::Result<()> {
    if found("nginx") {
        say("nginx: installed");
        return Ok(());
    }
    apt_install(&["nginx"])
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
        let binary = mongodb_stand_in()?;
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

/// The stand-in's binary, built once with cargo and cached under ~/.cache.
pub fn mongodb_stand_in() -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").context("HOME is not set")?;
    let root = PathBuf::from(home).join(".cache/ecommerce-tools/secantus");
    let binary = root.join("bin").join(MONGODB_STAND_IN_BINARY);
    if binary.exists() {
        return Ok(binary);
    }
    if !found("cmake") {
        apt_install(&["cmake"])?;
    }
    say(&format!(
        "MongoDB stand-in: building {MONGODB_STAND_IN_CRATE} {MONGODB_STAND_IN_VERSION} once with cargo install (a few minutes; cached in {})",
        root.display()
    ));
    run(crate::cargo()
        .args([
            "install",
            MONGODB_STAND_IN_CRATE,
            "--version",
            MONGODB_STAND_IN_VERSION,
            "--locked",
            "--ignore-rust-version",
            "--root",
        ])
        .arg(&root)
        .current_dir(std::env::temp_dir()))?;
    Ok(binary)
}
