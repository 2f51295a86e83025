//! Docker: the engine, the images, and the containers of `cargo xtask e2e --containers`.
//!
//! - The engine is Debian's (`docker.io`, with `docker-compose`), installed with apt when it is
//!   missing and started (`dockerd`) when nothing answers, then left running like PostgreSQL.
//! - Images: the official ones (`postgres:16-alpine`, `mongo:7`, `rabbitmq:3-management`,
//!   `nginx:1.27`, `prom/prometheus:v2.53.0`) wherever they are present or can be pulled; otherwise local ones built here from
//!   Debian's packages (services/images/), with one line saying which. No registry is reachable
//!   on our CI machines, so there it is always the local ones.
//! - `cargo xtask images` (commands/images.rs) builds every local image, the four services' included; a second run
//!   takes seconds (the Debian base is made once, the rest is Docker's build cache).
//!
//! Builds use Debian's `/usr/bin/docker` with `DOCKER_BUILDKIT=1` (another client on the PATH may
//! lack the buildx plugin) and `--network host`, so that `apt-get` inside a build reaches Debian's
//! mirror with no NAT rule (the engine runs with `--iptables=false`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use shop_testkit_base::ServerUrls;

use crate::services::SERVICES;
use crate::shell::{apt_install, found, run, say};
use crate::{cargo, target_directory, workspace_root};

/// The local Debian 12 base every local image starts from.
const BASE_IMAGE: &str = "shop-local/debian:bookworm";
/// Where our own service images are named: `ecommerce/user-service:latest`, ...
pub const SERVICE_IMAGE_PREFIX: &str = "ecommerce";

/// A server the project needs an image of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MongoDb,
    RabbitMq,
    Nginx,
    /// For compose's `monitoring` profile.
    Prometheus,
}

impl Server {
    pub const ALL: [Server; 5] = [Server::Postgres, Server::MongoDb, Server::RabbitMq, Server::Nginx, Server::Prometheus];

    fn name(self) -> &'static str {
        match self {
            Server::Postgres => "PostgreSQL",
            Server::MongoDb => "MongoDB",
            Server::RabbitMq => "RabbitMQ",
            Server::Nginx => "nginx",
            Server::Prometheus => "Prometheus",
        }
    }

    /// The official image, the default wherever it can be had.
    pub fn official(self) -> &'static str {
        match self {
            Server::Postgres => "postgres:16-alpine",
            Server::MongoDb => "mongo:7",
            Server::RabbitMq => "rabbitmq:3-management",
            Server::Nginx => "nginx:1.27",
            Server::Prometheus => "prom/prometheus:v2.53.0",
        }
    }

    /// The local stand-in built from Debian's packages, and its recipe under services/images/.
    fn local(self) -> (&'static str, &'static str) {
        match self {
            Server::Postgres => ("shop-local/postgres:15", "postgres"),
            Server::MongoDb => ("shop-local/mongodb-standin:0.5", "mongodb-standin"),
            Server::RabbitMq => ("shop-local/rabbitmq:3-management", "rabbitmq"),
            Server::Nginx => ("shop-local/nginx:1.22", "nginx"),
            Server::Prometheus => ("shop-local/prometheus:2.42", "prometheus"),
        }
    }

    /// The variable docker-compose.yml reads this image's name from.
    pub fn compose_variable(self) -> &'static str {
        match self {
            Server::Postgres => "POSTGRES_IMAGE",
            Server::MongoDb => "MONGODB_IMAGE",
            Server::RabbitMq => "RABBITMQ_IMAGE",
            Server::Nginx => "NGINX_IMAGE",
            Server::Prometheus => "PROMETHEUS_IMAGE",
        }
    }
}

/// Which image each server runs from: decided once, the same for testcontainers and compose.
#[derive(Debug, Clone)]
pub struct ImageChoice {
    chosen: Vec<(Server, String, bool)>,
}

impl ImageChoice {
    pub fn image(&self, server: Server) -> &str {
        self.chosen.iter().find(|(chosen, _, _)| *chosen == server).map(|(_, image, _)| image.as_str()).expect("every server")
    }

    fn is_local(&self, server: Server) -> bool {
        self.chosen.iter().any(|(chosen, _, local)| *chosen == server && *local)
    }

    /// The official image where it is here or can be pulled, else the local one (built if
    /// missing); one line says what was chosen.
    pub fn decide(servers: &[Server]) -> anyhow::Result<Self> {
        let mut chosen = Vec::new();
        let mut words = Vec::new();
        for &server in servers {
            let official = server.official();
            if image_present(official) || pull(official) {
                words.push(format!("{} {official} (official)", server.name()));
                chosen.push((server, official.to_owned(), false));
                continue;
            }
            let (local, _) = server.local();
            build_local_server_image(server)?;
            let note =
                if server == Server::MongoDb { "; NOT MongoDB: the MongoDB-wire stand-in, Debian has no MongoDB" } else { "" };
            words.push(format!("{} {local} (local: {official} is not here and cannot be pulled{note})", server.name()));
            chosen.push((server, local.to_owned(), true));
        }
        say(&format!("images: {}", words.join("; ")));
        Ok(Self { chosen })
    }
}

/// Debian's docker client (BuildKit built in), else whichever is on the PATH.
pub fn docker() -> Command {
    let mut command = Command::new(if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" });
    command.env("DOCKER_BUILDKIT", "1");
    command
}

fn quietly(command: &mut Command) -> bool {
    command.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|status| status.success())
}

pub fn engine_answers() -> bool {
    quietly(docker().args(["version", "--format", "{{.Server.Version}}"]))
}

/// Installs the engine and docker-compose with apt when missing, and starts the engine when
/// nothing answers (`DOCKER_HOST` included: then it must answer, we start nothing for it).
pub fn ensure_engine() -> anyhow::Result<()> {
    if !Path::new("/usr/bin/docker").exists() || !found("dockerd") {
        apt_install(&["docker.io"])?;
    }
    if !found("docker-compose") {
        apt_install(&["docker-compose"])?;
    }
    if engine_answers() {
        say("Docker engine: answering");
        return Ok(());
    }
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && !host.is_empty()
        && host != "unix:///var/run/docker.sock"
    {
        bail!("DOCKER_HOST={host} does not answer; start that engine, or unset DOCKER_HOST to use this machine's");
    }
    let local = workspace_root().join(".local");
    std::fs::create_dir_all(&local)?;
    let log_path = local.join("dockerd.log");
    let log = std::fs::File::create(&log_path)?;
    say(&format!("Docker engine: starting dockerd --iptables=false (log {})", log_path.display()));
    // A process group of its own: a Ctrl-C meant for this command must not stop the engine.
    let mut command = Command::new(if Path::new("/usr/sbin/dockerd").exists() { "/usr/sbin/dockerd" } else { "dockerd" });
    command.arg("--iptables=false").stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command.spawn().context("failed to start dockerd")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine_answers() {
        if Instant::now() >= deadline {
            bail!("dockerd did not answer within 60 s; see {}", log_path.display());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

pub fn image_present(image: &str) -> bool {
    quietly(docker().args(["image", "inspect", image]))
}

fn pull(image: &str) -> bool {
    quietly(docker().args(["pull", "-q", image]))
}

/// The Debian base, made once with mmdebstrap (about a minute).
fn ensure_base_image() -> anyhow::Result<()> {
    if image_present(BASE_IMAGE) {
        return Ok(());
    }
    if !found("mmdebstrap") {
        apt_install(&["mmdebstrap"])?;
    }
    say(&format!("image {BASE_IMAGE}: a minimal Debian 12 made with mmdebstrap (once, about a minute)"));
    let docker = docker().get_program().to_string_lossy().into_owned();
    run(Command::new("bash").arg("-c").arg(format!(
        "set -o pipefail; mmdebstrap --quiet --variant=minbase --include=ca-certificates,curl bookworm - | {docker} import - {BASE_IMAGE}"
    )))
}

fn build_image(tag: &str, dockerfile: &Path, context: &Path, arguments: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut command = docker();
    command.args(["build", "--quiet", "--network", "host", "--tag", tag, "--file"]).arg(dockerfile);
    for (name, value) in arguments {
        command.args(["--build-arg", &format!("{name}={value}")]);
    }
    command.arg(context).stdout(Stdio::null());
    run(&mut command).with_context(|| format!("building image {tag}"))
}

pub fn build_local_server_image(server: Server) -> anyhow::Result<()> {
    ensure_base_image()?;
    let (tag, recipe) = server.local();
    let directory = workspace_root().join("services/images").join(recipe);
    let started = Instant::now();
    if server == Server::MongoDb {
        // The context is the stand-in's binary alone.
        let binary = crate::stand_in::mongodb_stand_in()?;
        let context = target_directory().join("docker-mongodb-standin");
        std::fs::create_dir_all(&context)?;
        copy_if_changed(&binary, &context.join("secantusd-rs"))?;
        build_image(tag, &directory.join("Dockerfile"), &context, &[("BASE", BASE_IMAGE)])?;
    } else {
        build_image(tag, &directory.join("Dockerfile"), &directory, &[("BASE", BASE_IMAGE)])?;
    }
    say(&format!("image {tag}: ready ({:.1} s)", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Copies a file unless the destination already has the same bytes (keeps Docker's cache).
fn copy_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let same = std::fs::read(to).ok().is_some_and(|existing| std::fs::read(from).is_ok_and(|new| new == existing));
    if !same {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// The four service images from services/Dockerfile, from one release compilation of the
/// workspace made here (no Rust image can be pulled) and copied into target/docker-binaries/.
pub fn build_service_images() -> anyhow::Result<()> {
    say("service images: compiling the workspace once, in release (cargo build --release --workspace --bins)");
    let status = cargo().args(["build", "--release", "--workspace", "--bins"]).status()?;
    if !status.success() {
        bail!("the release build failed");
    }
    let binaries = target_directory().join("docker-binaries");
    std::fs::create_dir_all(&binaries)?;
    for service in SERVICES.iter().map(|service| service.binary) {
        copy_if_changed(&target_directory().join("release").join(service), &binaries.join(service))?;
    }
    let context = workspace_root();
    if target_directory() != context.join("target") {
        bail!("images need CARGO_TARGET_DIR unset (services/Dockerfile copies from target/docker-binaries/)");
    }
    ensure_base_image()?;
    let runtime = if image_present("debian:bookworm-slim") { "debian:bookworm-slim" } else { BASE_IMAGE };
    for service in SERVICES.iter().map(|service| service.binary) {
        let started = Instant::now();
        let tag = format!("{SERVICE_IMAGE_PREFIX}/{service}:latest");
        build_image(
            &tag,
            &context.join("services/Dockerfile"),
            &context,
            &[("SERVICE", service), ("BINARIES", "prebuilt"), ("RUNTIME", runtime)],
        )?;
        say(&format!("image {tag}: ready ({:.1} s)", started.elapsed().as_secs_f64()));
    }
    Ok(())
}

/// PostgreSQL, MongoDB and RabbitMQ in containers started with testcontainers, for one run of
/// the suite. Removed (with their volumes) by `remove`, or when dropped.
pub struct RunContainers {
    pub urls: ServerUrls,
    /// The images the containers run, for the chaos run's own servers.
    images: ImageChoice,
    containers: Vec<Container<GenericImage>>,
    /// `docker ps -a` before the run: after it, the list must be the same.
    before: Vec<String>,
}

impl RunContainers {
    pub fn start() -> anyhow::Result<Self> {
        ensure_engine()?;
        let images = ImageChoice::decide(&[Server::Postgres, Server::MongoDb, Server::RabbitMq])?;
        let before = all_containers()?;
        let image = |server: Server| {
            let (name, tag) = images.image(server).rsplit_once(':').expect("every image name has a tag");
            GenericImage::new(name, tag)
        };
        let timeout = Duration::from_secs(180);
        say("starting PostgreSQL, MongoDB and RabbitMQ containers with testcontainers");
        let postgres = image(Server::Postgres)
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
            .with_env_var("POSTGRES_PASSWORD", "postgres")
            .with_startup_timeout(timeout)
            .start()
            .context("starting PostgreSQL")?;
        // The official image's first "ready" line is its set-up server's, which takes no TCP:
        // wait until the real one answers over TCP.
        wait_for_postgres(postgres.id())?;
        let mongodb_ready = if images.is_local(Server::MongoDb) { "listening on" } else { "Waiting for connections" };
        let mongodb = image(Server::MongoDb)
            .with_exposed_port(27017.tcp())
            .with_wait_for(WaitFor::message_on_either_std(mongodb_ready))
            .with_startup_timeout(timeout)
            .start()
            .context("starting MongoDB")?;
        let rabbitmq = image(Server::RabbitMq)
            .with_exposed_port(5672.tcp())
            .with_exposed_port(15672.tcp())
            .with_wait_for(WaitFor::message_on_either_std("Server startup complete"))
            .with_startup_timeout(timeout)
            .start()
            .context("starting RabbitMQ")?;
        let host = match postgres.get_host()? {
            // The engine publishes on IPv4; "localhost" could resolve to ::1 first.
            url::Host::Domain(name) if name == "localhost" => "127.0.0.1".to_owned(),
            other => other.to_string(),
        };
        let urls = ServerUrls {
            postgres: format!("postgres://postgres:postgres@{host}:{}", postgres.get_host_port_ipv4(5432)?),
            mongodb: format!("mongodb://{host}:{}/?directConnection=true", mongodb.get_host_port_ipv4(27017)?),
            rabbitmq: format!("amqp://guest:guest@{host}:{}", rabbitmq.get_host_port_ipv4(5672)?),
            rabbitmq_management: format!("http://guest:guest@{host}:{}", rabbitmq.get_host_port_ipv4(15672)?),
        };
        say(&format!(
            "containers: PostgreSQL {} ({}), MongoDB {} ({}), RabbitMQ {} ({})",
            urls.postgres,
            short(postgres.id()),
            urls.mongodb,
            short(mongodb.id()),
            urls.rabbitmq,
            short(rabbitmq.id())
        ));
        Ok(Self { urls, images, containers: vec![postgres, mongodb, rabbitmq], before })
    }

    /// `E2E_POSTGRES_IMAGE`, `E2E_MONGODB_IMAGE`, `E2E_RABBITMQ_IMAGE`: the images of this run.
    pub fn own_server_images(&self) -> Vec<(String, String)> {
        [
            (Server::Postgres, "E2E_POSTGRES_IMAGE"),
            (Server::MongoDb, "E2E_MONGODB_IMAGE"),
            (Server::RabbitMq, "E2E_RABBITMQ_IMAGE"),
        ]
        .into_iter()
        .map(|(server, variable)| (variable.to_owned(), self.images.image(server).to_owned()))
        .collect()
    }

    /// Removes every container (and its volumes) this run started.
    pub fn remove(self) {
        for container in self.containers {
            let id = short(container.id()).to_owned();
            match container.rm() {
                Ok(()) => say(&format!("container {id}: removed")),
                Err(error) => eprintln!("xtask: container {id} could not be removed: {error}"),
            }
        }
        match all_containers() {
            Ok(after) if after == self.before => say("docker ps -a: the same containers as before the run"),
            Ok(after) => eprintln!("xtask: docker ps -a before the run: {:?}; after: {:?}", self.before, after),
            Err(error) => eprintln!("xtask: {error:#}"),
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn wait_for_postgres(container: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !quietly(docker().args(["exec", container, "pg_isready", "-h", "127.0.0.1", "-U", "postgres"])) {
        if Instant::now() >= deadline {
            bail!("PostgreSQL in container {} did not take TCP connections within 60 s", short(container));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

/// The containers on this engine, as `docker ps -a` lists them (id and name).
fn all_containers() -> anyhow::Result<Vec<String>> {
    let output = docker().args(["ps", "-a", "--format", "{{.ID}} {{.Names}}"]).output().context("docker ps")?;
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
}

pub fn compose_binary() -> PathBuf {
    PathBuf::from(if Path::new("/usr/bin/docker-compose").exists() { "/usr/bin/docker-compose" } else { "docker-compose" })
}
