//! The run's own servers as containers, for `cargo xtask e2e --containers`: the same three
//! servers, from the images xtask chose for the run (`E2E_POSTGRES_IMAGE`, `E2E_MONGODB_IMAGE`,
//! `E2E_RABBITMQ_IMAGE`: the official ones where they can be had, the local ones built from
//! Debian's packages otherwise), each published on free ports of 127.0.0.1 chosen here, so that a
//! container stopped and started again answers on the same ports with the same data (its
//! volumes stay with it until it is removed).
//!
//! - A graceful stop is the server's own: SIGINT for PostgreSQL (`docker kill --signal`), a fast
//!   shutdown, as for the local process (Docker's default SIGTERM is PostgreSQL's smart shutdown,
//!   which waits for the services' pooled connections forever); `rabbitmqctl stop` for RabbitMQ;
//!   SIGTERM for the MongoDB-wire server.
//! - A kill is `docker kill --signal KILL`: the container's first process (the server, in every
//!   image we use) dies at once, and with it everything in the container.
//! - Every stop and kill returns once the container has stopped and its published ports refuse
//!   connections (Docker's port proxy goes with the container); every start once the server
//!   answers in its own protocol.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{
    KILL_PATIENCE, POSTGRES_USER, RABBITMQ_USER, START_PATIENCE, START_TRIES, STOP_PATIENCE, ServerKind, probes, processes,
};

/// The images of the run's own servers in containers, one variable per server.
pub(super) struct Images {
    postgres: String,
    mongodb: String,
    rabbitmq: String,
}

impl Images {
    /// `E2E_OWN_SERVERS=containers` and the three image variables (set by `cargo xtask e2e
    /// --containers`), or `None` when the servers are to be local processes.
    pub(super) fn from_environment() -> anyhow::Result<Option<Self>> {
        match std::env::var("E2E_OWN_SERVERS").unwrap_or_default().as_str() {
            "" | "processes" => Ok(None),
            "containers" => {
                let image = |variable: &str| {
                    std::env::var(variable).ok().filter(|image| !image.is_empty()).with_context(|| {
                        format!("E2E_OWN_SERVERS=containers needs {variable} (cargo xtask e2e --containers sets it)")
                    })
                };
                Ok(Some(Self {
                    postgres: image("E2E_POSTGRES_IMAGE")?,
                    mongodb: image("E2E_MONGODB_IMAGE")?,
                    rabbitmq: image("E2E_RABBITMQ_IMAGE")?,
                }))
            }
            other => bail!("E2E_OWN_SERVERS={other:?}: expected \"processes\" or \"containers\""),
        }
    }

    fn image(&self, kind: ServerKind) -> &str {
        match kind {
            ServerKind::Postgres => &self.postgres,
            ServerKind::MongoDb => &self.mongodb,
            ServerKind::RabbitMq => &self.rabbitmq,
        }
    }
}

/// One server in a container of its own.
pub(super) struct ContainerServer {
    kind: ServerKind,
    image: String,
    /// `own-<id>-<kind>`: unique, and recognisable in `docker ps` as ours.
    name: String,
    /// Each published port: (on 127.0.0.1, in the container).
    ports: Vec<(u16, u16)>,
    /// Whether the container was made (`docker run`) yet.
    created: bool,
    running: bool,
}

impl ContainerServer {
    /// Makes and starts the container, on fresh ports for each try.
    pub(super) async fn first_start(kind: ServerKind, images: &Images, run: &str) -> anyhow::Result<Self> {
        let container_ports: &[u16] = match kind {
            ServerKind::Postgres => &[5432],
            ServerKind::RabbitMq => &[5672, 15672],
            ServerKind::MongoDb => &[27017],
        };
        let mut failures = Vec::new();
        for attempt in 0..START_TRIES {
            let host_ports = processes::free_ports(container_ports.len())?;
            let mut server = Self {
                kind,
                image: images.image(kind).to_owned(),
                name: format!("own-{run}-{}-{attempt}", short_kind(kind)),
                ports: host_ports.into_iter().zip(container_ports.iter().copied()).collect(),
                created: false,
                running: false,
            };
            let started = tokio::time::Instant::now();
            match server.start().await {
                Ok(()) => {
                    eprintln!(
                        "own servers: {kind} (container {}, {}) answers on {:?} after {:.1?}",
                        server.name,
                        server.image,
                        server.ports(),
                        started.elapsed()
                    );
                    return Ok(server);
                }
                Err(error) => {
                    failures.push(format!("{error:#}"));
                    server.remove_now();
                }
            }
        }
        bail!("{kind} (container) failed to start {START_TRIES} times: {}", failures.join("; "))
    }

    /// The ports on 127.0.0.1.
    pub(super) fn ports(&self) -> Vec<u16> {
        self.ports.iter().map(|(host, _)| *host).collect()
    }

    /// The port on 127.0.0.1 published for `container_port`.
    pub(super) fn port(&self, container_port: u16) -> u16 {
        self.ports.iter().find(|(_, inside)| *inside == container_port).map(|(host, _)| *host).expect("a published port")
    }

    pub(super) fn is_running(&self) -> bool {
        self.running
    }

    /// The container's first process as the host sees it (the server, in every image we use).
    pub(super) fn server_pid(&self) -> Option<u32> {
        if !self.running {
            return None;
        }
        let output = docker_sync().args(["inspect", "--format", "{{.State.Pid}}", &self.name]).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok().filter(|pid| *pid != 0)
    }

    pub(super) async fn start(&mut self) -> anyhow::Result<()> {
        if self.running {
            bail!("{} is already running", self.kind);
        }
        if self.created {
            docker(&["start", &self.name]).await?;
        } else {
            let mut arguments: Vec<String> = vec!["run".into(), "--detach".into(), "--name".into(), self.name.clone()];
            for (host, inside) in &self.ports {
                arguments.extend(["--publish".into(), format!("127.0.0.1:{host}:{inside}")]);
            }
            arguments.extend(self.settings().into_iter().map(str::to_owned));
            arguments.push(self.image.clone());
            arguments.extend(self.command().into_iter().map(str::to_owned));
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            docker(&arguments).await?;
            self.created = true;
        }
        self.running = true;
        let deadline = tokio::time::Instant::now() + START_PATIENCE;
        loop {
            let answer = self.probe().await;
            if answer.is_ok() {
                return Ok(());
            }
            if !self.container_runs().await? {
                self.running = false;
                bail!("{} (container {}) exited before answering; {}", self.kind, self.name, self.log_tail().await);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} (container {}) did not answer within {START_PATIENCE:?}: {answer:?}; {}",
                    self.kind,
                    self.name,
                    self.log_tail().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) async fn stop(&mut self) -> anyhow::Result<()> {
        if !self.running {
            bail!("{} is not running", self.kind);
        }
        match self.kind {
            ServerKind::Postgres => docker(&["kill", "--signal", "INT", &self.name]).await?,
            // Debian's image runs the node under a wrapper that, as the container's first
            // process, lets a SIGTERM pass unanswered: RabbitMQ's own stop works in every image.
            ServerKind::RabbitMq => docker(&["exec", &self.name, "rabbitmqctl", "stop"]).await?,
            ServerKind::MongoDb => docker(&["kill", "--signal", "TERM", &self.name]).await?,
        };
        if let Err(error) = self.wait_until_stopped(STOP_PATIENCE).await {
            self.kill().await?;
            bail!("{} did not stop gracefully (killed instead): {error:#}", self.kind);
        }
        self.running = false;
        processes::wait_until_ports_refuse(&self.ports(), KILL_PATIENCE).await
    }

    pub(super) async fn kill(&mut self) -> anyhow::Result<()> {
        if !self.running {
            bail!("{} is not running", self.kind);
        }
        docker(&["kill", "--signal", "KILL", &self.name]).await?;
        self.wait_until_stopped(KILL_PATIENCE).await.with_context(|| format!("{} survived SIGKILL", self.kind))?;
        self.running = false;
        processes::wait_until_ports_refuse(&self.ports(), KILL_PATIENCE).await
    }

    /// The removal of a drop or a failed start: no async; the container and its volumes go.
    pub(super) fn remove_now(&mut self) {
        if self.created {
            let _ = docker_sync()
                .args(["rm", "--force", "--volumes", &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.created = false;
        }
        self.running = false;
    }

    /// What the container needs besides its image's defaults.
    fn settings(&self) -> Vec<&'static str> {
        match self.kind {
            // Trust, as for the local process: the probe speaks the protocol without a password.
            // The password is the one in the URL, for an image that insists on one.
            ServerKind::Postgres => vec!["--env", "POSTGRES_HOST_AUTH_METHOD=trust", "--env", "POSTGRES_PASSWORD=postgres"],
            // A fixed host name: RabbitMQ's node name (rabbit@<host>), and with it where its data
            // lives, must stay the same when the container starts again.
            ServerKind::RabbitMq => vec!["--hostname", "own-rabbitmq"],
            ServerKind::MongoDb => vec![],
        }
    }

    /// Arguments after the image name (its command), where the default will not do.
    fn command(&self) -> Vec<&'static str> {
        match self.kind {
            // Both images' entrypoints take options for `postgres`; fsync is on by default.
            ServerKind::Postgres => vec!["-c", "max_connections=200", "-c", "fsync=on"],
            ServerKind::RabbitMq | ServerKind::MongoDb => vec![],
        }
    }

    async fn probe(&self) -> anyhow::Result<()> {
        match self.kind {
            ServerKind::Postgres => probes::postgres_select_one(self.port(5432), POSTGRES_USER, "postgres").await,
            ServerKind::RabbitMq => {
                probes::amqp_open_and_close(self.port(5672), RABBITMQ_USER, RABBITMQ_USER, "/").await?;
                let url = format!("http://127.0.0.1:{}", self.port(15672));
                probes::management_answers(&url, RABBITMQ_USER, RABBITMQ_USER).await
            }
            ServerKind::MongoDb => probes::mongodb_ping(self.port(27017)).await,
        }
    }

    async fn container_runs(&self) -> anyhow::Result<bool> {
        let output = docker(&["inspect", "--format", "{{.State.Running}}", &self.name]).await?;
        Ok(output.trim() == "true")
    }

    async fn wait_until_stopped(&self, patience: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        while self.container_runs().await? {
            if tokio::time::Instant::now() >= deadline {
                bail!("container {} still runs after {patience:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn log_tail(&self) -> String {
        match tokio::process::Command::from(docker_sync()).args(["logs", "--tail", "20", &self.name]).output().await {
            Ok(output) => format!(
                "the container's last lines: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => format!("docker logs failed: {error}"),
        }
    }
}

fn short_kind(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Postgres => "postgres",
        ServerKind::RabbitMq => "rabbitmq",
        ServerKind::MongoDb => "mongodb",
    }
}

/// Debian's docker client where it is, else whichever is on the PATH (as xtask does).
fn docker_sync() -> std::process::Command {
    std::process::Command::new(if std::path::Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" })
}

/// Runs `docker ARGUMENTS`, returning its output, or failing with what it printed.
async fn docker(arguments: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::from(docker_sync())
        .args(arguments)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("failed to run docker {}", arguments.join(" ")))?;
    if !output.status.success() {
        bail!("docker {} failed ({}): {}", arguments.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
