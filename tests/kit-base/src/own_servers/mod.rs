//! Servers of a run's own, on this machine: PostgreSQL, RabbitMQ (with its management plugin)
//! and a MongoDB-wire server, each a real process on free ports of its own with its data under a
//! directory the caller gives, so that a run (the chaos run) can stop them, kill them with
//! SIGKILL and start them again without touching the machine's shared servers, which other tests
//! use at the same time.
//!
//! - PostgreSQL: Debian's binaries (`/usr/lib/postgresql/<newest>/bin`), a cluster made with
//!   `initdb` (trust authentication, user `postgres`), `postgres` run directly as the `postgres`
//!   user when we are root (it refuses to run as root). fsync stays on: a SIGKILL must not lose
//!   what was committed. A graceful stop is PostgreSQL's fast shutdown (SIGINT): a smart one
//!   (SIGTERM) would wait for the services' pooled connections to go away, which they never do.
//! - RabbitMQ: Debian's `rabbitmq-server` as a node of its own (`own-<id>@localhost`, its own
//!   AMQP, distribution and management ports, data, logs, plugins file and Erlang cookie); the
//!   machine's node and its epmd are left alone. A kill hits that node's `beam.smp` (from its pid
//!   file, checked to be under our process); a graceful stop is SIGTERM, which RabbitMQ handles
//!   as `rabbitmqctl stop` does.
//! - MongoDB: the MongoDB-wire stand-in `secantusd-rs` (`E2E_MONGODB_SERVER_BINARY`, else
//!   `~/.cache/ecommerce-tools/secantus/bin/secantusd-rs`, else `mongod` on the PATH), with
//!   `--sync-on-commit`, so that a SIGKILL loses nothing committed.
//!
//! Every stop and kill returns once the server's processes are gone and its ports refuse
//! connections; every start once the server answers in its own protocol (see [`probes`]).
//!
//! Under `cargo xtask e2e --containers` (`E2E_OWN_SERVERS=containers`) the same three servers
//! are containers of the run's images instead, stopped, killed and started again through Docker
//! (see [`containers`]).
//!
//! What it does not do: clusters of several nodes (a later step for RabbitMQ), or any server
//! given by URL.

mod containers;
mod probes;
mod processes;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::ServerUrls;
use containers::ContainerServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerKind {
    Postgres,
    RabbitMq,
    MongoDb,
}

impl ServerKind {
    pub const ALL: [ServerKind; 3] = [ServerKind::Postgres, ServerKind::RabbitMq, ServerKind::MongoDb];
}

impl fmt::Display for ServerKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            ServerKind::Postgres => "PostgreSQL",
            ServerKind::RabbitMq => "RabbitMQ",
            ServerKind::MongoDb => "the MongoDB-wire server",
        })
    }
}

/// How long a server may take to answer after it was started (RabbitMQ boots in 5 to 15 s on a
/// busy two-core machine).
const START_PATIENCE: Duration = Duration::from_secs(120);
/// How long a graceful stop may take before it counts as failed (and the server is killed).
const STOP_PATIENCE: Duration = Duration::from_secs(60);
/// How long the processes of a killed server may take to be gone.
const KILL_PATIENCE: Duration = Duration::from_secs(10);
/// How often a server's start is tried with fresh ports when it fails at once (a port taken
/// between being found free and being bound).
const START_TRIES: usize = 3;

/// The three servers of a run. Dropping it kills whatever still runs (a panicking run leaves no
/// server behind), leaving the data and logs under the root for a look; [`OwnServers::shut_down`]
/// stops them gracefully and removes the data.
pub struct OwnServers {
    root: PathBuf,
    servers: BTreeMap<ServerKind, Instance>,
}

impl OwnServers {
    /// Starts PostgreSQL, RabbitMQ (with its management plugin) and the MongoDB-wire server, each
    /// on free ports of its own with data under `root`, and waits until each answers.
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("failed to create {}", root.display()))?;
        let root = root.canonicalize()?;
        let servers = match containers::Images::from_environment()? {
            None => {
                let (postgres, rabbitmq, mongodb) = tokio::join!(
                    OwnServer::first_start(&root, ServerKind::Postgres),
                    OwnServer::first_start(&root, ServerKind::RabbitMq),
                    OwnServer::first_start(&root, ServerKind::MongoDb)
                );
                // Whatever started is killed again (by `OwnServer`'s drop) if another one failed.
                BTreeMap::from([
                    (ServerKind::Postgres, Instance::Process(postgres?)),
                    (ServerKind::RabbitMq, Instance::Process(rabbitmq?)),
                    (ServerKind::MongoDb, Instance::Process(mongodb?)),
                ])
            }
            Some(images) => {
                let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
                let (postgres, rabbitmq, mongodb) = tokio::join!(
                    ContainerServer::first_start(ServerKind::Postgres, &images, &run),
                    ContainerServer::first_start(ServerKind::RabbitMq, &images, &run),
                    ContainerServer::first_start(ServerKind::MongoDb, &images, &run)
                );
                let mut started = vec![postgres, rabbitmq, mongodb];
                if started.iter().any(Result::is_err) {
                    let mut failures = Vec::new();
                    for outcome in &mut started {
                        match outcome {
                            Ok(server) => server.remove_now(),
                            Err(error) => failures.push(format!("{error:#}")),
                        }
                    }
                    bail!("{}", failures.join("; "));
                }
                let mut started = started.into_iter().map(|outcome| Instance::Container(outcome.expect("checked above")));
                let mut next = || started.next().expect("three servers");
                BTreeMap::from([(ServerKind::Postgres, next()), (ServerKind::RabbitMq, next()), (ServerKind::MongoDb, next())])
            }
        };
        Ok(Self { root, servers })
    }

    /// Their URLs, in the shape every test uses.
    pub fn urls(&self) -> ServerUrls {
        let port = |kind: ServerKind, inside: u16| self.servers[&kind].port(inside);
        ServerUrls {
            postgres: format!("postgres://{POSTGRES_USER}:{POSTGRES_USER}@127.0.0.1:{}", port(ServerKind::Postgres, 5432)),
            mongodb: format!("mongodb://127.0.0.1:{}/?directConnection=true", port(ServerKind::MongoDb, 27017)),
            rabbitmq: format!("amqp://{RABBITMQ_USER}:{RABBITMQ_USER}@127.0.0.1:{}", port(ServerKind::RabbitMq, 5672)),
            rabbitmq_management: format!(
                "http://{RABBITMQ_USER}:{RABBITMQ_USER}@127.0.0.1:{}",
                port(ServerKind::RabbitMq, 15672)
            ),
        }
    }

    /// Graceful stop (PostgreSQL's fast shutdown, SIGTERM for the others); returns once the
    /// process is gone and its ports refuse connections. A server that does not stop within a
    /// minute is killed, and the stop fails.
    pub async fn stop(&mut self, kind: ServerKind) -> anyhow::Result<()> {
        self.server(kind).stop().await
    }

    /// SIGKILL of the server's real process(es); returns once they are gone and its ports refuse.
    pub async fn kill(&mut self, kind: ServerKind) -> anyhow::Result<()> {
        self.server(kind).kill().await
    }

    /// Starts a stopped or killed server again on the same ports and data; returns once it
    /// answers a real query or handshake.
    pub async fn start_again(&mut self, kind: ServerKind) -> anyhow::Result<()> {
        self.server(kind).start().await
    }

    pub fn is_running(&self, kind: ServerKind) -> bool {
        self.servers[&kind].is_running()
    }

    /// The pid of the server's main process while it runs (PostgreSQL's postmaster, RabbitMQ's
    /// `beam.smp`, the MongoDB-wire server; a container's first process), for a test to see it
    /// gone.
    pub fn server_pid(&self, kind: ServerKind) -> Option<u32> {
        self.servers[&kind].server_pid()
    }

    /// The ports the server listens on (RabbitMQ: AMQP, management and, as a process,
    /// distribution).
    pub fn ports(&self, kind: ServerKind) -> Vec<u16> {
        self.servers[&kind].ports()
    }

    /// Whether the servers are containers (`E2E_OWN_SERVERS=containers`).
    pub fn in_containers(&self) -> bool {
        self.servers.values().any(|server| matches!(server, Instance::Container(_)))
    }

    /// Where the server's data and log are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops all three (killing any that does not stop) and removes their data.
    pub async fn shut_down(mut self) {
        for (kind, mut server) in std::mem::take(&mut self.servers) {
            if server.is_running()
                && let Err(error) = server.stop().await
            {
                eprintln!("own servers: {kind} did not stop gracefully: {error:#}");
                let _ = server.kill().await;
            }
            server.remove_data();
        }
        // The root itself only if nothing else is in it.
        let _ = std::fs::remove_dir(&self.root);
    }

    fn server(&mut self, kind: ServerKind) -> &mut Instance {
        self.servers.get_mut(&kind).expect("every kind is started")
    }
}

impl Drop for OwnServers {
    fn drop(&mut self) {
        let running: Vec<ServerKind> =
            self.servers.iter().filter(|(_, server)| server.is_running()).map(|(kind, _)| *kind).collect();
        for server in self.servers.values_mut() {
            match server {
                Instance::Process(server) => server.kill_now(),
                // A container goes whole: a run leaves no container behind.
                Instance::Container(server) => server.remove_now(),
            }
        }
        if !running.is_empty() {
            if self.in_containers() {
                eprintln!("own servers: removed the containers of {running:?} on drop");
            } else {
                eprintln!("own servers: killed {running:?} on drop; their data and logs stay in {}", self.root.display());
            }
        }
    }
}

/// One server, as a process of ours or as a container.
enum Instance {
    Process(OwnServer),
    Container(ContainerServer),
}

impl Instance {
    async fn start(&mut self) -> anyhow::Result<()> {
        match self {
            Instance::Process(server) => server.start().await,
            Instance::Container(server) => server.start().await,
        }
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Instance::Process(server) => server.stop().await,
            Instance::Container(server) => server.stop().await,
        }
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        match self {
            Instance::Process(server) => server.kill().await,
            Instance::Container(server) => server.kill().await,
        }
    }

    fn is_running(&self) -> bool {
        match self {
            Instance::Process(server) => server.running.is_some(),
            Instance::Container(server) => server.is_running(),
        }
    }

    fn server_pid(&self) -> Option<u32> {
        match self {
            Instance::Process(server) => server.running.as_ref().and_then(|child| server.recipe.server_pid(child).ok()),
            Instance::Container(server) => server.server_pid(),
        }
    }

    fn ports(&self) -> Vec<u16> {
        match self {
            Instance::Process(server) => server.recipe.ports(),
            Instance::Container(server) => server.ports(),
        }
    }

    /// The port on 127.0.0.1 for what the server's standard port `standard` serves (5432, 5672,
    /// 15672, 27017).
    fn port(&self, standard: u16) -> u16 {
        match self {
            Instance::Process(server) => match (&server.recipe, standard) {
                (Recipe::Postgres(recipe), _) => recipe.port,
                (Recipe::RabbitMq(recipe), 15672) => recipe.management_port,
                (Recipe::RabbitMq(recipe), _) => recipe.amqp_port,
                (Recipe::MongoDb(recipe), _) => recipe.port,
            },
            Instance::Container(server) => server.port(standard),
        }
    }

    fn remove_data(&mut self) {
        match self {
            Instance::Process(server) => server.remove_data(),
            Instance::Container(server) => server.remove_now(),
        }
    }
}

/// A server dropped while it runs is killed: so is each one that started when another failed to
/// (in [`OwnServers::start`]), and each one of a dropped [`OwnServers`].
impl Drop for OwnServer {
    fn drop(&mut self) {
        if self.running.is_some() {
            eprintln!("own servers: killing {} on drop", self.kind);
            self.kill_now();
        }
    }
}

const POSTGRES_USER: &str = "postgres";
const RABBITMQ_USER: &str = "guest";

/// One server: how to run it, and its process while it runs.
struct OwnServer {
    kind: ServerKind,
    recipe: Recipe,
    /// The server's output, kept across restarts.
    log: PathBuf,
    /// The process we started (for RabbitMQ, the `rabbitmq-server` script, whose child is the
    /// node's `beam.smp`), while the server runs.
    running: Option<Child>,
}

impl OwnServer {
    /// Prepares the server's data under `root` and starts it, on fresh ports for each try.
    async fn first_start(root: &Path, kind: ServerKind) -> anyhow::Result<Self> {
        let mut failures = Vec::new();
        for _ in 0..START_TRIES {
            let recipe = Recipe::prepare(root, kind).await?;
            let mut server = OwnServer { kind, log: recipe.log_path(root), recipe, running: None };
            let started = tokio::time::Instant::now();
            match server.start().await {
                Ok(()) => {
                    eprintln!("own servers: {kind} answers on {:?} after {:.1?}", server.recipe.ports(), started.elapsed());
                    return Ok(server);
                }
                Err(error) => {
                    failures.push(format!("{error:#}"));
                    server.kill_now();
                }
            }
        }
        bail!("{kind} failed to start {START_TRIES} times: {}", failures.join("; "))
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            bail!("{} is already running", self.kind);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("failed to open {}", self.log.display()))?;
        let mut command = self.recipe.command();
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // A group of its own: a Ctrl-C meant for the test run does not reach the server.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().with_context(|| format!("failed to start {}: {command:?}", self.kind))?;
        self.running = Some(child);
        let deadline = tokio::time::Instant::now() + START_PATIENCE;
        loop {
            let answer = self.recipe.probe().await;
            if answer.is_ok() {
                return Ok(());
            }
            let child = self.running.as_mut().expect("set above");
            if let Some(status) = child.try_wait()? {
                self.running = None;
                bail!("{} exited ({status}) before answering; {}", self.kind, processes::log_tail(&self.log));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{} did not answer within {START_PATIENCE:?}: {answer:?}; {}", self.kind, processes::log_tail(&self.log));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        let mut child = self.running.take().with_context(|| format!("{} is not running", self.kind))?;
        let server = self.recipe.server_pid(&child)?;
        let processes = [vec![child.id()], processes::descendants(child.id())].concat();
        processes::signal(server, self.recipe.graceful_signal())?;
        if let Err(error) = processes::wait_until_gone(&mut child, &processes, STOP_PATIENCE).await {
            self.running = Some(child);
            self.kill().await?;
            bail!("{} did not stop gracefully (killed instead): {error:#}", self.kind);
        }
        processes::wait_until_ports_refuse(&self.recipe.ports(), KILL_PATIENCE).await
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.running.take().with_context(|| format!("{} is not running", self.kind))?;
        let processes = Self::kill_processes(&self.recipe, &mut child);
        processes::wait_until_gone(&mut child, &processes, KILL_PATIENCE)
            .await
            .with_context(|| format!("{} survived SIGKILL", self.kind))?;
        processes::wait_until_ports_refuse(&self.recipe.ports(), KILL_PATIENCE).await
    }

    /// SIGKILL to the server's process first (so it is that one that dies, not a wrapper that
    /// would stop it gracefully), then to everything else under our child. Returns every pid hit.
    fn kill_processes(recipe: &Recipe, child: &mut Child) -> Vec<u32> {
        let everything = [vec![child.id()], processes::descendants(child.id())].concat();
        if let Ok(server) = recipe.server_pid(child) {
            let _ = processes::signal(server, libc::SIGKILL);
        }
        for &pid in everything.iter().rev() {
            let _ = processes::signal(pid, libc::SIGKILL);
        }
        everything
    }

    /// The kill of a drop: no async; waits (at most [`KILL_PATIENCE`]) until our child is
    /// reaped, every process is gone and every port refuses.
    fn kill_now(&mut self) {
        if let Some(mut child) = self.running.take() {
            let processes = Self::kill_processes(&self.recipe, &mut child);
            let ports = self.recipe.ports();
            let refuses = |port: u16| {
                matches!(
                    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)),
                    Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused
                )
            };
            let deadline = std::time::Instant::now() + KILL_PATIENCE;
            while std::time::Instant::now() < deadline
                && (matches!(child.try_wait(), Ok(None))
                    || processes.iter().any(|&pid| processes::alive(pid))
                    || !ports.iter().all(|&port| refuses(port)))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn remove_data(&self) {
        for path in self.recipe.data_paths() {
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// What a server needs to run: its binaries, ports and directories.
enum Recipe {
    Postgres(PostgresRecipe),
    RabbitMq(RabbitMqRecipe),
    MongoDb(MongoDbRecipe),
}

struct PostgresRecipe {
    binaries: PathBuf,
    /// `<root>/postgres`, owned by the `postgres` user; the cluster is in `data` under it.
    directory: PathBuf,
    port: u16,
    /// The `postgres` user's uid and gid when we are root (PostgreSQL refuses to run as root).
    run_as: Option<(u32, u32)>,
}

struct RabbitMqRecipe {
    /// `<root>/rabbitmq`: config, plugins file, Erlang cookie (it is the node's HOME), mnesia
    /// data, logs and the pid file.
    directory: PathBuf,
    node: String,
    amqp_port: u16,
    management_port: u16,
    distribution_port: u16,
}

struct MongoDbRecipe {
    binary: PathBuf,
    /// A real `mongod` takes other flags than the stand-in.
    real_mongod: bool,
    data: PathBuf,
    port: u16,
}

impl Recipe {
    async fn prepare(root: &Path, kind: ServerKind) -> anyhow::Result<Self> {
        match kind {
            ServerKind::Postgres => Ok(Recipe::Postgres(PostgresRecipe::prepare(root).await?)),
            ServerKind::RabbitMq => Ok(Recipe::RabbitMq(RabbitMqRecipe::prepare(root)?)),
            ServerKind::MongoDb => Ok(Recipe::MongoDb(MongoDbRecipe::prepare(root)?)),
        }
    }

    fn log_path(&self, root: &Path) -> PathBuf {
        root.join(match self {
            Recipe::Postgres(_) => "postgres.log",
            Recipe::RabbitMq(_) => "rabbitmq.log",
            Recipe::MongoDb(_) => "mongodb.log",
        })
    }

    fn command(&self) -> Command {
        match self {
            Recipe::Postgres(recipe) => recipe.command(),
            Recipe::RabbitMq(recipe) => recipe.command(),
            Recipe::MongoDb(recipe) => recipe.command(),
        }
    }

    async fn probe(&self) -> anyhow::Result<()> {
        match self {
            Recipe::Postgres(recipe) => probes::postgres_select_one(recipe.port, POSTGRES_USER, "postgres").await,
            Recipe::RabbitMq(recipe) => {
                probes::amqp_open_and_close(recipe.amqp_port, RABBITMQ_USER, RABBITMQ_USER, "/").await?;
                let url = format!("http://127.0.0.1:{}", recipe.management_port);
                probes::management_answers(&url, RABBITMQ_USER, RABBITMQ_USER).await
            }
            Recipe::MongoDb(recipe) => probes::mongodb_ping(recipe.port).await,
        }
    }

    fn ports(&self) -> Vec<u16> {
        match self {
            Recipe::Postgres(recipe) => vec![recipe.port],
            Recipe::RabbitMq(recipe) => vec![recipe.amqp_port, recipe.management_port, recipe.distribution_port],
            Recipe::MongoDb(recipe) => vec![recipe.port],
        }
    }

    fn graceful_signal(&self) -> libc::c_int {
        match self {
            // Fast shutdown: disconnects clients, checkpoints, exits.
            Recipe::Postgres(_) => libc::SIGINT,
            Recipe::RabbitMq(_) | Recipe::MongoDb(_) => libc::SIGTERM,
        }
    }

    /// The server's own process: our child, except for RabbitMQ, whose `rabbitmq-server` script
    /// runs the node's `beam.smp` as its child and writes its pid to the pid file.
    fn server_pid(&self, child: &Child) -> anyhow::Result<u32> {
        match self {
            Recipe::RabbitMq(recipe) => recipe.beam_pid(child.id()),
            Recipe::Postgres(_) | Recipe::MongoDb(_) => Ok(child.id()),
        }
    }

    fn data_paths(&self) -> Vec<PathBuf> {
        match self {
            Recipe::Postgres(recipe) => vec![recipe.directory.clone()],
            Recipe::RabbitMq(recipe) => vec![recipe.directory.clone()],
            Recipe::MongoDb(recipe) => vec![recipe.data.clone()],
        }
    }
}

impl PostgresRecipe {
    /// Makes a fresh cluster in `<root>/postgres/data` (an existing one is made again: its port
    /// may have been a collision).
    async fn prepare(root: &Path) -> anyhow::Result<Self> {
        let binaries = postgres_binaries()?;
        let directory = root.join("postgres");
        if directory.exists() {
            std::fs::remove_dir_all(&directory)?;
        }
        std::fs::create_dir_all(&directory)?;
        let run_as = if processes::running_as_root() { Some(processes::user_ids(POSTGRES_USER)?) } else { None };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&directory, Some(uid), Some(gid))?;
        }
        let mut initdb = tokio::process::Command::new(binaries.join("initdb"));
        initdb
            .arg("--pgdata")
            .arg(directory.join("data"))
            .args(["--username", POSTGRES_USER, "--auth", "trust", "--encoding", "UTF8", "--locale", "C"])
            // Only initdb's final sync of the new files is skipped: a killed server loses nothing
            // of them (they are in the page cache), and the server itself runs with fsync on.
            .args(["--no-sync", "--no-instructions"])
            .current_dir(&directory)
            .kill_on_drop(true);
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb.output().await.context("failed to run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}); the postgres user must be able to reach {} (a root under /tmp works): {}{}",
                output.status,
                directory.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Self { binaries, directory, port: processes::free_port()?, run_as })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.binaries.join("postgres"));
        command
            .arg("-D")
            .arg(self.directory.join("data"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", &format!("port={}", self.port)])
            // No Unix socket: the machine's cluster owns the usual directory, and TCP is what the
            // services use.
            .args(["-c", "unix_socket_directories=", "-c", "fsync=on", "-c", "max_connections=200"])
            .current_dir(&self.directory);
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut command, uid);
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        command
    }
}

/// The newest PostgreSQL under /usr/lib/postgresql (Debian's layout).
fn postgres_binaries() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL installed under /usr/lib/postgresql (apt-get install postgresql)")?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context("no PostgreSQL server binary under /usr/lib/postgresql/*/bin")
}

impl RabbitMqRecipe {
    fn prepare(root: &Path) -> anyhow::Result<Self> {
        let script = Path::new(RABBITMQ_SCRIPT);
        if !script.exists() {
            bail!("no {RABBITMQ_SCRIPT} (apt-get install rabbitmq-server)");
        }
        let directory = root.join("rabbitmq");
        if directory.exists() {
            std::fs::remove_dir_all(&directory)?;
        }
        std::fs::create_dir_all(directory.join("log"))?;
        std::fs::create_dir_all(directory.join("mnesia"))?;
        let ports = processes::free_ports(3)?;
        let recipe = Self {
            node: format!("own-{}@localhost", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            amqp_port: ports[0],
            management_port: ports[1],
            distribution_port: ports[2],
            directory,
        };
        std::fs::write(
            recipe.directory.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.1 = 127.0.0.1:{}\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {}\n",
                recipe.amqp_port, recipe.management_port
            ),
        )?;
        std::fs::write(recipe.directory.join("enabled_plugins"), "[rabbitmq_management].\n")?;
        // An empty environment file instead of the machine's /etc/rabbitmq/rabbitmq-env.conf,
        // which names the machine's node.
        std::fs::write(recipe.directory.join("rabbitmq-env.conf"), "")?;
        Ok(recipe)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(RABBITMQ_SCRIPT);
        // Nothing of the caller's RabbitMQ or Erlang settings reaches this node.
        for (variable, _) in std::env::vars_os() {
            let name = variable.to_string_lossy();
            if name.starts_with("RABBITMQ_") || name.starts_with("ERL_") {
                command.env_remove(&variable);
            }
        }
        let path = |name: &str| self.directory.join(name);
        command
            .current_dir(&self.directory)
            // The node's Erlang cookie is made in its HOME: its own, not root's or the machine's.
            .env("HOME", &self.directory)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.distribution_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_PID_FILE", path("rabbitmq.pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}");
        command
    }

    /// The node's `beam.smp`: the pid in its pid file, if that process is under `script` (our
    /// child); else the `beam.smp` found under it.
    fn beam_pid(&self, script: u32) -> anyhow::Result<u32> {
        let under_script = processes::descendants(script);
        let is_beam = |pid: u32| processes::executable(pid).is_some_and(|path| path.ends_with("beam.smp"));
        if let Some(pid) = std::fs::read_to_string(self.directory.join("rabbitmq.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .filter(|pid| under_script.contains(pid) && is_beam(*pid))
        {
            return Ok(pid);
        }
        under_script.into_iter().find(|&pid| is_beam(pid)).with_context(|| format!("no beam.smp runs for node {}", self.node))
    }
}

/// Debian's script that runs a node in the foreground (the one in /usr/sbin switches to the
/// rabbitmq user and the machine's settings).
const RABBITMQ_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

impl MongoDbRecipe {
    fn prepare(root: &Path) -> anyhow::Result<Self> {
        let (binary, real_mongod) = mongodb_server_binary()?;
        let data = root.join("mongodb");
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        std::fs::create_dir_all(&data)?;
        Ok(Self { binary, real_mongod, data, port: processes::free_port()? })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if self.real_mongod {
            command.args(["--bind_ip", "127.0.0.1", "--port", &self.port.to_string(), "--dbpath"]).arg(&self.data);
        } else {
            command
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--sync-on-commit", "--storage-path"])
                .arg(&self.data);
        }
        command.current_dir(&self.data);
        command
    }
}

/// The MongoDB-wire server to run: `E2E_MONGODB_SERVER_BINARY`, else the cached stand-in, else
/// `mongod` on the PATH. True when it is a real `mongod`.
pub fn mongodb_server_binary() -> anyhow::Result<(PathBuf, bool)> {
    if let Some(binary) = std::env::var_os("E2E_MONGODB_SERVER_BINARY").filter(|value| !value.is_empty()) {
        let binary = PathBuf::from(binary);
        let real = binary.file_name().is_some_and(|name| name == "mongod");
        return Ok((binary, real));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let stand_in = PathBuf::from(home).join(".cache/ecommerce-tools/secantus/bin/secantusd-rs");
        if stand_in.exists() {
            return Ok((stand_in, false));
        }
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|directory| directory.join("mongod"))
        .find(|candidate| candidate.exists());
    on_path.map(|binary| (binary, true)).context(
        "no MongoDB-wire server: set E2E_MONGODB_SERVER_BINARY, or build the stand-in (cargo xtask up caches it in \
         ~/.cache/ecommerce-tools/secantus/bin/secantusd-rs), or put mongod on the PATH",
    )
}
