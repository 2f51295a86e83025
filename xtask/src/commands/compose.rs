//! `cargo xtask compose up [--monitoring] | check | down`: the whole system with docker-compose,
//! as the guide runs it, on a machine that may reach no image registry.
//!
//! - `up`: the Docker engine (installed and started if need be), the images (official where they
//!   can be had, local ones otherwise, said in one line), the four service images built here, then
//!   `docker-compose up -d --no-build` and a wait until every container is healthy. Published
//!   ports are the guide's (gateway 80, services 8000 to 8003, RabbitMQ 5672 and 15672), on
//!   127.0.0.1 only; one that is taken on this machine (a local RabbitMQ, say) is moved to a free
//!   one, said in one line, and can be set with its variable (`GATEWAY_PORT`, ...). With
//!   `--monitoring`, the file's `monitoring` profile too: Prometheus on 9090 with the alert rules.
//! - `check`: `up --monitoring`, then the guide's section 8 (`docker-compose ps`, every `/health`,
//!   the logs command for each service and RabbitMQ), one order from POST to paid through the
//!   gateway, and Prometheus scraping every service and RabbitMQ with the rules loaded and none
//!   firing. It leaves the system up; `down` removes it.
//! - `down`: `docker-compose down --volumes --remove-orphans` (the monitoring profile included):
//!   every container, network and volume the file made.

use std::net::TcpListener;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shop_testkit_base::{Call, Client};

use crate::docker::{ImageChoice, Server, compose_binary, docker, ensure_engine};
use crate::http::block_on;
use crate::services::{SERVICES, service};
use crate::shell::{port_open, say};
use crate::workspace_root;

/// The published ports: variable, the guide's port, what it is.
fn ports() -> Vec<(&'static str, u16, String)> {
    let mut ports = vec![("GATEWAY_PORT", 80, "gateway".to_owned())];
    ports.extend(
        SERVICES.iter().map(|service| (service.compose_port_variable, service.port, format!("{} service", service.name))),
    );
    ports.push(("RABBITMQ_PORT", 5672, "RabbitMQ".to_owned()));
    ports.push(("RABBITMQ_MANAGEMENT_PORT", 15672, "RabbitMQ management".to_owned()));
    ports.push(("PROMETHEUS_PORT", 9090, "Prometheus".to_owned()));
    ports
}

/// The profile of docker-compose.yml that adds Prometheus.
const MONITORING: &str = "monitoring";
const HEALTHY_WITHIN: Duration = Duration::from_secs(300);

pub fn compose(arguments: &[String]) -> anyhow::Result<ExitCode> {
    match arguments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["up"] => up(false).map(|_| ExitCode::SUCCESS),
        ["up", "--monitoring"] => up(true).map(|_| ExitCode::SUCCESS),
        ["check"] => check(),
        ["down"] => down().map(|()| ExitCode::SUCCESS),
        _ => bail!("usage: cargo xtask compose up [--monitoring] | check | down"),
    }
}

/// The variables docker-compose.yml reads: image names and published ports.
struct Settings {
    variables: Vec<(String, String)>,
}

impl Settings {
    fn port(&self, variable: &str) -> u16 {
        self.variables.iter().find(|(name, _)| name == variable).and_then(|(_, value)| value.parse().ok()).expect("every port")
    }

    fn compose(&self) -> Command {
        let mut command = Command::new(compose_binary());
        command.current_dir(workspace_root()).envs(self.variables.iter().map(|(name, value)| (name, value)));
        command
    }
}

fn up(monitoring: bool) -> anyhow::Result<Settings> {
    ensure_engine()?;
    let images = ImageChoice::decide(&Server::ALL)?;
    crate::docker::build_service_images()?;
    let mut variables: Vec<(String, String)> =
        Server::ALL.iter().map(|server| (server.compose_variable().to_owned(), images.image(*server).to_owned())).collect();
    // Ports this file published before (a system already up) count as ours, not as taken.
    let ours = published_ports()?;
    let mut moved = Vec::new();
    for (variable, default, what) in ports() {
        let port = match std::env::var(variable).ok().and_then(|value| value.parse::<u16>().ok()) {
            Some(port) => port,
            None if !port_open(default) || ours.contains(&default) => default,
            None => {
                let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                moved.push(format!("{what} {default} → {port}"));
                port
            }
        };
        variables.push((variable.to_owned(), port.to_string()));
    }
    if monitoring {
        variables.push(("COMPOSE_PROFILES".to_owned(), MONITORING.to_owned()));
    }
    if !moved.is_empty() {
        say(&format!("ports taken on this machine, moved: {} (set the variables to choose)", moved.join(", ")));
    }
    let settings = Settings { variables };
    say("docker-compose up -d --no-build");
    let status = settings.compose().args(["up", "-d", "--no-build"]).status().context("failed to run docker-compose")?;
    if !status.success() {
        bail!("docker-compose up failed");
    }
    wait_until_healthy(&settings)?;
    let gateway = settings.port("GATEWAY_PORT");
    say(&format!(
        "the shop is up with docker-compose: http://localhost{} (services on {}, {}, {}, {}; RabbitMQ management http://localhost:{}); `cargo xtask compose down` removes it",
        if gateway == 80 { String::new() } else { format!(":{gateway}") },
        settings.port(service("product").compose_port_variable),
        settings.port(service("order").compose_port_variable),
        settings.port(service("inventory").compose_port_variable),
        settings.port(service("user").compose_port_variable),
        settings.port("RABBITMQ_MANAGEMENT_PORT"),
    ));
    if monitoring {
        say(&format!("Prometheus, with the alert rules: http://localhost:{}/alerts", settings.port("PROMETHEUS_PORT")));
    }
    Ok(settings)
}

/// The host ports this project's containers publish now.
fn published_ports() -> anyhow::Result<Vec<u16>> {
    let ids = Command::new(compose_binary()).current_dir(workspace_root()).args(["ps", "-q"]).output()?;
    let mut ports = Vec::new();
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        let output = docker().args(["port", id]).output()?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(port) = line.rsplit(':').next().and_then(|port| port.trim().parse().ok()) {
                ports.push(port);
            }
        }
    }
    Ok(ports)
}

/// Waits until every container of the file reports healthy (each has a healthcheck).
fn wait_until_healthy(settings: &Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let ids = settings.compose().args(["ps", "-q"]).output()?;
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
        let mut waiting = Vec::new();
        for id in &ids {
            let output = docker()
                .args([
                    "inspect",
                    "--format",
                    "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                ])
                .arg(id)
                .output()?;
            let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if !line.ends_with(" healthy") {
                waiting.push(line);
            }
        }
        if !ids.is_empty() && waiting.is_empty() {
            say(&format!("all {} containers are healthy ({:.0} s)", ids.len(), started.elapsed().as_secs_f64()));
            return Ok(());
        }
        if started.elapsed() >= HEALTHY_WITHIN {
            bail!("not healthy within {HEALTHY_WITHIN:?}: {}", waiting.join(", "));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn check() -> anyhow::Result<ExitCode> {
    let settings = up(true)?;
    let mut failures = Vec::new();

    say("guide 8.1: docker-compose ps");
    let listing = settings.compose().arg("ps").output()?;
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    print!("{listing}");
    let containers =
        SERVICES.iter().map(|service| service.binary).chain(["nginx-gateway", "rabbitmq", "postgres", "mongodb", "prometheus"]);
    for service in containers {
        if !listing.lines().any(|line| line.contains(service) && line.contains("Up") && line.contains("(healthy)")) {
            failures.push(format!("docker-compose ps does not list {service} up and healthy"));
        }
    }

    say("guide 8.1: every /health");
    let gateway = format!("http://127.0.0.1:{}", settings.port("GATEWAY_PORT"));
    let mut endpoints = vec![("gateway".to_owned(), gateway.clone())];
    for service in &SERVICES {
        let url = format!("http://127.0.0.1:{}", settings.port(service.compose_port_variable));
        endpoints.push((format!("{} service", service.name), url));
    }
    for (what, url) in endpoints {
        match block_on(Client::new(url).health()) {
            Ok(body) if body["status"] == "healthy" => say(&format!("{what}: {body}")),
            Ok(body) => failures.push(format!("{what} /health answered {body}")),
            Err(error) => failures.push(format!("{what} /health: {error}")),
        }
    }

    say("guide 8.2: docker-compose logs --tail=20 for each service and RabbitMQ");
    for service in SERVICES.iter().map(|service| service.binary).chain(["rabbitmq"]) {
        let output = settings.compose().args(["logs", "--tail=20", service]).output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || text.lines().count() < 2 {
            failures.push(format!("docker-compose logs --tail=20 {service} printed nothing"));
        }
        if service != "rabbitmq" && text.contains(" ERROR ") {
            failures.push(format!("{service} logged an error:\n{text}"));
        }
        println!("{}", text.lines().take(3).collect::<Vec<_>>().join("\n"));
    }

    say("one order from POST to paid through the gateway");
    // The same function `cargo xtask fuzz` runs against the system `cargo xtask up` brings up.
    match block_on(shop_testkit_base::journeys::one_order_to_paid(&Client::new(gateway.as_str()))) {
        Ok(report) => say(&report),
        Err(error) => failures.push(format!("order from POST to paid: {error:#}")),
    }

    say("Prometheus (the monitoring profile): every target scraped, the alert rules loaded, none firing");
    let prometheus = Client::new(format!("http://127.0.0.1:{}", settings.port("PROMETHEUS_PORT")));
    if let Err(error) = block_on(prometheus_sees_the_shop(&prometheus)) {
        failures.push(format!("Prometheus: {error:#}"));
    }

    if failures.is_empty() {
        say("compose check: passed (the system is still up: cargo xtask compose down removes it)");
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &failures {
            eprintln!("xtask: compose check: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The jobs of deploy/prometheus/prometheus.compose.yml.
const SCRAPED: [&str; 5] = ["user", "product", "inventory", "order", "rabbitmq"];

/// Within a minute: every job's target up (scraped every 15 s), the shop's alert rules loaded,
/// and no alert firing.
async fn prometheus_sees_the_shop(prometheus: &Client) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let targets = prometheus.send(&Call::get("/api/v1/targets")).await?.json();
        let health: Vec<(String, String)> = targets["data"]["activeTargets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .map(|target| {
                        let job = target["labels"]["job"].as_str().unwrap_or_default().to_owned();
                        (job, target["health"].as_str().unwrap_or_default().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let up = SCRAPED.iter().all(|job| health.iter().any(|(name, state)| name == job && state == "up"));
        if up {
            say(&format!("Prometheus scrapes {} ({:.0} s)", SCRAPED.join(", "), started.elapsed().as_secs_f64()));
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("not every target up within a minute: {health:?}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rules = prometheus.send(&Call::get("/api/v1/rules")).await?.json();
    let loaded: Vec<String> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|rule| rule["name"].as_str().map(str::to_owned))
        .collect();
    for wanted in ["TargetDown", "ServiceNotReady", "DeadLettersWaiting", "OutboxStuck", "ConsumerPaused"] {
        if !loaded.iter().any(|name| name == wanted) {
            bail!("the alert rule {wanted} is not loaded (loaded: {loaded:?})");
        }
    }
    let alerts = prometheus.send(&Call::get("/api/v1/alerts")).await?.json();
    let firing: Vec<String> = alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["state"] == "firing")
        .map(|alert| alert["labels"].to_string())
        .collect();
    if !firing.is_empty() {
        bail!("alerts firing on a healthy shop: {}", firing.join("; "));
    }
    say(&format!("Prometheus: {} alert rules loaded, none firing", loaded.len()));
    Ok(())
}

fn down() -> anyhow::Result<()> {
    if !crate::docker::engine_answers() {
        say("no Docker engine answers: nothing to take down");
        return Ok(());
    }
    say("docker-compose down --volumes --remove-orphans");
    let status = Command::new(compose_binary())
        .current_dir(workspace_root())
        // The monitoring profile's containers too, whether or not `up` started them.
        .env("COMPOSE_PROFILES", MONITORING)
        .args(["down", "--volumes", "--remove-orphans"])
        .status()
        .context("failed to run docker-compose")?;
    if !status.success() {
        bail!("docker-compose down failed");
    }
    Ok(())
}
