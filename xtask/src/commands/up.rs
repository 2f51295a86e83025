//! `cargo xtask up [--release] [--gateway-port N] [--https-port N] [--replicas N] [--monitoring]`:
//! the four services as processes of their own on the guide's ports (with `--replicas N`, N
//! processes of each, replica k on the guide's port + 100 (k - 1)) and nginx in front balancing
//! over them, serving HTTP (the
//! guide's `http://localhost`) and HTTPS beside it (port 8443, a certificate of a local
//! certificate authority made once in `.local/tls/`), until Ctrl-C or SIGTERM; with
//! `--monitoring`, Prometheus too (deploy/prometheus/prometheus.yml and its alert rules, on
//! 127.0.0.1:9090), scraping the services and RabbitMQ's own metrics.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use shop_testkit_base::gateway::{Tls, Upstreams, render_configuration};
use shop_testkit_base::servers::logged_in_as;

use crate::services::{SERVICES, service};
use crate::shell::{port_open, say, stop_child, wait_for_port};
use crate::{cargo, servers, workspace_root};

/// What `cargo xtask up` was asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub release: bool,
    pub gateway_port: u16,
    pub https_port: u16,
    /// Processes of each service, at least one.
    pub replicas: u16,
    pub monitoring: bool,
}

/// How far apart the ports of one service's replicas are: replica k listens on the guide's port
/// + `REPLICA_PORT_STEP` (k - 1), so 8000, 8100, 8200 for the product service.
const REPLICA_PORT_STEP: u16 = 100;

/// The port of `service`'s `replica` (1-based).
fn replica_port(service: &crate::services::Service, replica: u16) -> u16 {
    service.port + REPLICA_PORT_STEP * (replica - 1)
}

/// `service`'s `replica` as the logs and the summary name it: `product-service`, then
/// `product-service-2`, ...
fn replica_name(service: &crate::services::Service, replica: u16) -> String {
    if replica == 1 { service.binary.to_owned() } else { format!("{}-{replica}", service.binary) }
}

/// Where `--monitoring` serves Prometheus.
const PROMETHEUS_PORT: u16 = 9090;

impl Options {
    pub fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        let mut options = Self { release: false, gateway_port: 80, https_port: 8443, replicas: 1, monitoring: false };
        let mut rest = arguments.iter();
        while let Some(argument) = rest.next() {
            match argument.as_str() {
                "--release" => options.release = true,
                "--monitoring" => options.monitoring = true,
                "--gateway-port" => {
                    options.gateway_port =
                        rest.next().and_then(|port| port.parse().ok()).context("--gateway-port takes a port number")?;
                }
                "--https-port" => {
                    options.https_port =
                        rest.next().and_then(|port| port.parse().ok()).context("--https-port takes a port number")?;
                }
                "--replicas" => {
                    options.replicas = rest
                        .next()
                        .and_then(|count| count.parse().ok())
                        .filter(|count| (1..=9).contains(count))
                        .context("--replicas takes a number of processes per service, 1 to 9")?;
                }
                _ => bail!("usage: cargo xtask up [--release] [--gateway-port N] [--https-port N] [--replicas N] [--monitoring]"),
            }
        }
        Ok(options)
    }
}

/// Brings the system up and keeps it up until Ctrl-C or SIGTERM.
pub fn up(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let Options { release, gateway_port, https_port, replicas, monitoring } = Options::parse(arguments)?;
    let profile = if release { "release" } else { "debug" };
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;

    let mut prepared = servers::prepare(servers::Servers::Local)?;
    let servers = prepared.servers.clone();
    let monitoring_port = monitoring.then_some(PROMETHEUS_PORT);
    let service_ports = SERVICES.iter().flat_map(|service| (1..=replicas).map(|replica| replica_port(service, replica)));
    for port in service_ports.chain([gateway_port, https_port]).chain(monitoring_port) {
        if port_open(port) {
            bail!(
                "port {port} is taken already (is the system up in another terminal?); free it or choose --gateway-port or --https-port"
            );
        }
    }
    build_binaries(release)?;
    let broker_users = create_broker_users(&servers, profile)?;
    provision_databases(&servers, profile)?;

    let root = workspace_root();
    let local = root.join(".local");
    std::fs::create_dir_all(local.join("logs"))?;
    let tls = local_certificate(&local.join("tls"), https_port)?;
    let mut children: Vec<(String, Child)> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        // Replica by replica: every service's first, then every second, ... so a service's
        // migrations run once, in its first replica, before the others start.
        for (replica, service) in (1..=replicas).flat_map(|replica| SERVICES.iter().map(move |service| (replica, service))) {
            let name = replica_name(service, replica);
            let port = replica_port(service, replica);
            let log = std::fs::File::create(local.join("logs").join(format!("{name}.log")))?;
            let mut command = Command::new(crate::target_directory().join(profile).join(service.binary));
            if let Some(database) = service.postgres_database {
                command.env("DATABASE_URL", role_url(&servers.postgres, database_role(service.name), database)?);
            }
            // Each service that speaks on the broker as its own user, which its events' consumers
            // expect.
            match broker_users.url_for(service.name) {
                Some(url) => command.env("RABBITMQ_URL", url),
                None => command.env_remove("RABBITMQ_URL"),
            };
            let child = command
                .current_dir(&root)
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .env("USER_SERVICE_URL", crate::services::local_url(crate::services::service("user")))
                .env("PRODUCT_SERVICE_URL", crate::services::local_url(crate::services::service("product")))
                // A key directory, rotated with `cargo xtask keys rotate`.
                .env("JWT_KEY_DIR", super::keys::key_directory())
                .env_remove("JWT_PRIVATE_KEY")
                .env_remove("JWT_PRIVATE_KEY_PATH")
                .env("MONGODB_URL", &servers.mongodb)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("failed to start {}", service.binary))?;
            children.push((name.clone(), child));
            wait_for_port(port, &name, Duration::from_secs(60))?;
        }
        let gateway = local.join("gateway");
        render_gateway(&gateway, gateway_port, replicas, &tls)?;
        let log = std::fs::File::create(local.join("logs/nginx.log"))?;
        let child = Command::new(if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" })
            .arg("-p")
            .arg(&gateway)
            .arg("-c")
            .arg(gateway.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("failed to start nginx")?;
        children.push(("nginx".to_owned(), child));
        wait_for_port(gateway_port, "nginx", Duration::from_secs(10))?;
        wait_for_port(https_port, "nginx (HTTPS)", Duration::from_secs(10))?;
        if monitoring {
            children.push(("Prometheus".to_owned(), start_prometheus(&local)?));
        }
        Ok(())
    })();

    if result.is_ok() {
        let gateway = if gateway_port == 80 { "http://localhost".to_owned() } else { format!("http://localhost:{gateway_port}") };
        println!();
        let processes = if replicas == 1 { String::new() } else { format!(", {replicas} processes of each service") };
        println!("The shop is up ({profile} build{processes}). Ctrl-C stops everything this command started.");
        println!("  gateway            {gateway}/api/v1/...   (health: {gateway}/health)");
        println!(
            "  gateway over HTTPS https://localhost:{https_port}/api/v1/...   (HTTP/2; trust {}: curl --cacert {0} ...)",
            local.join("tls").join(CA_FILE).display()
        );
        for service in &SERVICES {
            let others: Vec<String> = (2..=replicas).map(|replica| replica_port(service, replica).to_string()).collect();
            let others = if others.is_empty() { String::new() } else { format!("; replicas on {}", others.join(", ")) };
            println!(
                "  {:<18} http://localhost:{}   (docs: http://localhost:{}/api/v1/docs{others})",
                format!("{} service", service.name),
                service.port,
                service.port
            );
        }
        if monitoring {
            println!(
                "  Prometheus         http://localhost:{PROMETHEUS_PORT}   (alerts: http://localhost:{PROMETHEUS_PORT}/alerts; rules in deploy/prometheus/alerts.yml)"
            );
        }
        println!("  RabbitMQ           {}   (management: {})", servers.rabbitmq, servers.rabbitmq_management);
        println!("  PostgreSQL         {}   (databases users, inventory)", servers.postgres);
        println!("  MongoDB            {}   (databases products, orders)", servers.mongodb);
        let logs = local.join("logs");
        println!("  logs               {}", logs.display());
        for service in &SERVICES {
            for replica in 1..=replicas {
                println!("                     {}", logs.join(format!("{}.log", replica_name(service, replica))).display());
            }
        }
        println!("                     {} (nginx's errors)", logs.join("nginx.log").display());
        println!(
            "                     {} (one line per request, with its request id)",
            local.join("gateway").join("access.log").display()
        );
        while !stop.load(Ordering::Relaxed) {
            let exited =
                children.iter_mut().find_map(|(name, child)| matches!(child.try_wait(), Ok(Some(_))).then(|| name.clone()));
            if let Some(name) = exited {
                eprintln!("xtask: {name} exited; stopping the rest (see {})", local.join("logs").display());
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    say("stopping everything this command started");
    for (name, child) in children.iter_mut().rev() {
        if !stop_child(child, Duration::from_secs(10)) {
            eprintln!("xtask: {name} did not stop within 10 s; killed it");
        }
    }
    prepared.stop();
    result.map(|()| ExitCode::SUCCESS)
}

/// Prometheus with deploy/prometheus/prometheus.yml, its data in .local/prometheus, after
/// switching on the local broker's `rabbitmq_prometheus` plugin (its metrics on 15692; a broker
/// given by URL is left as it is, and its job shows as down).
fn start_prometheus(local: &Path) -> anyhow::Result<Child> {
    if crate::shell::found("rabbitmq-plugins") && !shop_testkit_base::servers::ServerUrls::given("E2E_RABBITMQ_URL") {
        say("RabbitMQ: switching on its rabbitmq_prometheus plugin (metrics on 127.0.0.1:15692)");
        let status = Command::new("rabbitmq-plugins").args(["enable", "rabbitmq_prometheus"]).stdout(Stdio::null()).status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("xtask: could not switch on rabbitmq_prometheus; Prometheus's rabbitmq job will show as down");
        }
    }
    let directory = workspace_root().join("deploy/prometheus");
    let log = std::fs::File::create(local.join("logs/prometheus.log"))?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", directory.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", local.join("prometheus").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
        .current_dir(&directory)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("failed to start prometheus")?;
    wait_for_port(PROMETHEUS_PORT, "Prometheus", Duration::from_secs(30))?;
    Ok(child)
}

/// Renders the repository's gateway templates (the same ones the harness and docker-compose use)
/// into a private nginx prefix, each service's upstreams its replicas' ports.
fn render_gateway(prefix: &Path, port: u16, replicas: u16, tls: &Tls) -> anyhow::Result<()> {
    let on_guide_port = |name: &str| {
        (1..=replicas).map(|replica| format!("127.0.0.1:{}", replica_port(service(name), replica))).collect::<Vec<_>>()
    };
    let upstreams = Upstreams {
        user: on_guide_port("user"),
        product: on_guide_port("product"),
        order: on_guide_port("order"),
        inventory: on_guide_port("inventory"),
    };
    render_configuration(&upstreams, prefix, port, Some(tls))
}

/// The local certificate authority's certificate, which a client trusts to reach the gateway.
const CA_FILE: &str = "ca.pem";

/// HTTPS for the local gateway on `port`: a certificate for localhost signed by a local
/// certificate authority, both made once in `directory` (the authority's certificate `ca.pem`,
/// the gateway's chain and key) and reused by every later start, so a client told to trust
/// `ca.pem` keeps trusting the gateway. Nothing is added to the machine's trust store.
fn local_certificate(directory: &Path, port: u16) -> anyhow::Result<Tls> {
    use shop_testkit_base::tls::{LOCAL_NAMES, LocalCa, write_private};

    let tls = Tls { port, certificate: directory.join("gateway.pem"), key: directory.join("gateway-key.pem"), production: false };
    if [CA_FILE, "gateway.pem", "gateway-key.pem"].iter().all(|file| directory.join(file).exists()) {
        return Ok(tls);
    }
    std::fs::create_dir_all(directory)?;
    let authority = LocalCa::generate("ecommerce-rust local CA")?;
    write_private(&directory.join("ca-key.pem"), authority.key_pem())?;
    authority.issue(&LOCAL_NAMES)?.write(&tls.certificate, &tls.key)?;
    // Last: its presence says the rest is there.
    std::fs::write(directory.join(CA_FILE), authority.certificate_pem())?;
    say(&format!("HTTPS: made a local certificate authority and the gateway's certificate in {}", directory.display()));
    Ok(tls)
}

/// `cargo build --workspace --bins`, in release if asked.
/// The services' broker users on the broker `cargo xtask up` uses.
struct BrokerUsers {
    /// `amqp://user:password@host:port`: the broker's URL as given, without a vhost.
    server: String,
    users: Vec<String>,
}

impl BrokerUsers {
    /// The URL `service` connects with: its own user with its development password (its name),
    /// on the default vhost; none for a service without a broker user (the user service).
    fn url_for(&self, service: &str) -> Option<String> {
        let user = self.users.iter().find(|user| *user == service)?;
        Some(format!("{}/%2f", logged_in_as(&self.server, user, user).ok()?))
    }
}

/// Creates (or updates) each service's broker user, with its development password and the rights
/// `topology::Service::permissions` gives it on the default vhost (listed by the `broker-users`
/// tool just built), through the broker's management API. Idempotent: run on every `up`.
fn create_broker_users(servers: &shop_testkit_base::servers::ServerUrls, profile: &str) -> anyhow::Result<BrokerUsers> {
    let tool = crate::target_directory().join(profile).join("broker-users");
    let output = Command::new(&tool).output().with_context(|| format!("failed to run {}", tool.display()))?;
    if !output.status.success() {
        bail!("{} failed: {}", tool.display(), String::from_utf8_lossy(&output.stderr));
    }
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).context("broker-users printed no JSON list")?;
    let management = shop_testkit_base::management::Management::new(servers.rabbitmq_management_login());
    let mut users = Vec::new();
    crate::http::block_on(async {
        for entry in &listed {
            let text = |key: &str| entry[key].as_str().map(str::to_owned).with_context(|| format!("no {key} in {entry}"));
            let user = text("user")?;
            management.put_user(&user, &user).await?;
            management.set_permissions("/", &user, [&text("configure")?, &text("write")?, &text("read")?]).await?;
            users.push(user);
        }
        anyhow::Ok(())
    })
    .context("failed to create the services' broker users")?;
    say(&format!("RabbitMQ: broker users {} with their services' rights on /", users.join(", ")));
    Ok(BrokerUsers { server: servers.rabbitmq.clone(), users })
}

/// The PostgreSQL role of a service that keeps its data there (`<service>_service`, as each
/// service's `config::DATABASE_ROLE` names it).
fn database_role(service: &str) -> String {
    format!("{service}_service")
}

/// `server` (an administrator's URL) logged in as `role` with its development password (its name),
/// to `database`.
fn role_url(server: &str, role: String, database: &str) -> anyhow::Result<String> {
    Ok(format!("{}/{database}", logged_in_as(server, &role, &role)?))
}

/// Gives each service that keeps its data in PostgreSQL a role of its own, with its development
/// password, owning its database and nothing else (the `database-roles` tool just built, as the
/// server's administrator). Idempotent: run on every `up`; a database an earlier `up` made as the
/// superuser becomes the role's, tables included.
fn provision_databases(servers: &shop_testkit_base::servers::ServerUrls, profile: &str) -> anyhow::Result<()> {
    let tool = crate::target_directory().join(profile).join("database-roles");
    for service in SERVICES.iter().filter(|service| service.postgres_database.is_some()) {
        let (role, database) = (database_role(service.name), service.postgres_database.unwrap_or_default());
        let status = Command::new(&tool)
            .args(["provision", &servers.postgres, &role, database])
            .env("DATABASE_ROLE_PASSWORD", &role)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("failed to run {}", tool.display()))?;
        if !status.success() {
            bail!("could not give {role} the database {database}");
        }
    }
    say("PostgreSQL: roles user_service and inventory_service own the databases users and inventory");
    Ok(())
}

pub fn build_binaries(release: bool) -> anyhow::Result<()> {
    let mut command = cargo();
    command.args(["build", "--workspace", "--bins"]);
    if release {
        command.arg("--release");
    }
    say(&format!("building the binaries: {command:?}"));
    let status = command.status()?;
    if !status.success() {
        bail!("the build failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Options> {
        Options::parse(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn each_postgres_service_logs_in_as_its_own_role() {
        let url = role_url("postgres://postgres:postgres@127.0.0.1:5432", database_role("inventory"), "inventory").unwrap();
        assert_eq!(url, "postgres://inventory_service:inventory_service@127.0.0.1:5432/inventory");
    }

    #[test]
    fn each_service_connects_as_its_own_broker_user() {
        let users =
            BrokerUsers { server: "amqp://guest:guest@127.0.0.1:5672".into(), users: vec!["order".into(), "product".into()] };
        assert_eq!(users.url_for("order").as_deref(), Some("amqp://order:order@127.0.0.1:5672/%2f"));
        assert_eq!(users.url_for("user"), None);
    }

    #[test]
    fn the_guides_gateway_port_and_a_debug_build_by_default() {
        assert_eq!(
            parse("").unwrap(),
            Options { release: false, gateway_port: 80, https_port: 8443, replicas: 1, monitoring: false }
        );
        assert_eq!(
            parse("--monitoring").unwrap(),
            Options { release: false, gateway_port: 80, https_port: 8443, replicas: 1, monitoring: true }
        );
        assert_eq!(
            parse("--https-port 9443").unwrap(),
            Options { release: false, gateway_port: 80, https_port: 9443, replicas: 1, monitoring: false }
        );
    }

    #[test]
    fn release_and_a_gateway_port_in_either_order() {
        assert_eq!(
            parse("--gateway-port 18080 --release").unwrap(),
            Options { release: true, gateway_port: 18080, https_port: 8443, replicas: 1, monitoring: false }
        );
    }

    #[test]
    fn replicas_of_each_service_a_hundred_ports_apart_and_named_apart() {
        assert_eq!(parse("--replicas 3").unwrap().replicas, 3);
        assert!(parse("--replicas 0").is_err(), "at least one of each");
        assert!(parse("--replicas 10").is_err(), "replica 10 would take the next service's ports");
        let product = crate::services::service("product");
        assert_eq!((1..=3).map(|replica| replica_port(product, replica)).collect::<Vec<_>>(), [8000, 8100, 8200]);
        assert_eq!(replica_name(product, 1), "product-service");
        assert_eq!(replica_name(product, 2), "product-service-2");
        // No replica of one service takes another's port.
        let mut ports: Vec<u16> =
            SERVICES.iter().flat_map(|service| (1..=9).map(move |replica| replica_port(service, replica))).collect();
        let all = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), all);
    }

    #[test]
    fn a_port_that_is_no_port_and_unknown_arguments_are_refused() {
        assert!(parse("--gateway-port eighty").unwrap_err().to_string().contains("takes a port number"));
        assert!(parse("--gateway-port 70000").is_err());
        assert!(parse("--gateway-port").is_err());
        assert!(parse("--debug").unwrap_err().to_string().starts_with("usage: cargo xtask up"));
    }
}
