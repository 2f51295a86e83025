//! The commands: `e2e` (the whole test suite, ending with `fuzz`), `up` (the running system) and
//! `load` (goose).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::infrastructure::{self, say};
use crate::{cargo, workspace_root};

/// Runs every test of the workspace and ends with one line: `e2e: N passed, M failed`.
///
/// With a filter (`--name REGEX`, `--tags EXPRESSION`, or cucumber's own options after `--`),
/// only the features run, filtered: `cargo xtask e2e --tags @serial`,
/// `cargo xtask e2e --name "Step 1.1"`, `cargo xtask e2e -- --fail-fast`.
///
/// With `--containers`, PostgreSQL, MongoDB and RabbitMQ are containers started with
/// testcontainers for this run (the Docker engine installed and started if need be, local images
/// built where the official ones cannot be pulled), handed to every test target and to the
/// fuzzing's system, and removed at the end, also after a failure or a Ctrl-C.
pub fn end_to_end(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let containers = arguments.iter().any(|argument| argument == "--containers");
    let arguments: Vec<String> = arguments.iter().filter(|argument| *argument != "--containers").cloned().collect();
    let feature_arguments = feature_arguments(&arguments)?;
    // A Ctrl-C reaches the tests too (one process group); this command outlives it, to remove
    // what it started. A SIGTERM meant for this command alone stops the tests first.
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&interrupted))?;
    let servers = if containers { infrastructure::Servers::Containers } else { infrastructure::Servers::Local };
    let mut prepared = infrastructure::prepare(servers)?;
    let outcome = run_suite(&prepared, &feature_arguments, &interrupted);
    prepared.stop();
    outcome
}

fn run_suite(
    prepared: &infrastructure::Prepared,
    feature_arguments: &[String],
    interrupted: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    let mut command = cargo();
    command.args(["test", "--workspace", "--no-fail-fast"]);
    if feature_arguments.is_empty() {
        say("running the whole test suite: cargo test --workspace --no-fail-fast (unit, integration, features)");
    } else {
        say(&format!("running the features only, filtered: {}", feature_arguments.join(" ")));
        command.args(["--test", "features", "--"]).args(feature_arguments);
    }
    command.stdout(Stdio::piped()).envs(prepared.servers.environment());
    let mut child = command.spawn().context("failed to run cargo test")?;
    let watcher = stop_on_signal(child.id(), interrupted);
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let line = line?;
        println!("{line}");
        totals.read(&line);
    }
    let status = child.wait()?;
    watcher.store(true, Ordering::Relaxed);
    // A failure that produced no test line (a compile error, a crashed binary) still counts.
    if !status.success() && totals.failed == 0 {
        totals.failed += 1;
    }
    let mut success = status.success();
    // The whole suite ends with the API fuzzing: schemathesis against every service's OpenAPI,
    // on the system as `cargo xtask up` runs it (counted as one test).
    if feature_arguments.is_empty() && !interrupted.load(Ordering::Relaxed) {
        say("fuzzing every service's API: cargo xtask fuzz");
        let fuzzed = crate::fuzz::fuzz_on(&[], &prepared.servers).unwrap_or_else(|error| {
            eprintln!("xtask: fuzz: {error:#}");
            ExitCode::FAILURE
        });
        if fuzzed == ExitCode::SUCCESS {
            totals.passed += 1;
        } else {
            totals.failed += 1;
            success = false;
        }
    }
    println!("e2e: {} passed, {} failed", totals.passed, totals.failed);
    Ok(if success { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Sends SIGTERM to `child` when this command is interrupted; the returned flag ends the watch.
fn stop_on_signal(child: u32, interrupted: &Arc<AtomicBool>) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let (interrupted, finished) = (Arc::clone(interrupted), Arc::clone(&done));
    std::thread::spawn(move || {
        while !finished.load(Ordering::Relaxed) {
            if interrupted.load(Ordering::Relaxed) {
                let _ = Command::new("kill").arg("-TERM").arg(child.to_string()).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    done
}

/// The cucumber arguments in `cargo xtask e2e`'s arguments: `--name`/`-n` and `--tags`/`-t`
/// with their values, and everything after `--`. Anything else is a mistake, said at once.
fn feature_arguments(arguments: &[String]) -> anyhow::Result<Vec<String>> {
    let mut feature_arguments = Vec::new();
    let mut rest = arguments.iter();
    while let Some(argument) = rest.next() {
        match argument.as_str() {
            "--" => {
                feature_arguments.extend(rest.by_ref().cloned());
                break;
            }
            "--name" | "-n" | "--tags" | "-t" => {
                let value = rest.next().with_context(|| format!("{argument} needs a value"))?;
                feature_arguments.extend([argument.clone(), value.clone()]);
            }
            other if other.starts_with("--name=") || other.starts_with("--tags=") => feature_arguments.push(other.to_owned()),
            other => {
                bail!(
                    "unknown argument {other:?}: cargo xtask e2e [--containers] [--name REGEX] [--tags EXPRESSION] [-- CUCUMBER OPTIONS]"
                )
            }
        }
    }
    Ok(feature_arguments)
}

/// Counts from libtest's `test result:` lines and cucumber's `N scenarios (...)` summary.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    fn read(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("test result: ") {
            self.passed += number_before(rest, " passed");
            self.failed += number_before(rest, " failed");
        } else if line.contains(" scenario") && line.ends_with(')') {
            if let Some((_, counts)) = line.split_once('(') {
                self.passed += number_before(counts, " passed");
                self.failed += number_before(counts, " failed");
            }
        }
    }
}

/// The number right before `label` in `text` (`"5 passed; 0 failed"`, `" failed"` → 0).
fn number_before(text: &str, label: &str) -> u64 {
    text.find(label)
        .and_then(|end| {
            text[..end].rsplit(|character: char| !character.is_ascii_digit()).next().and_then(|digits| digits.parse().ok())
        })
        .unwrap_or(0)
}

struct Service {
    name: &'static str,
    binary: &'static str,
    port: u16,
    /// Its PostgreSQL database, for those that have one.
    database: Option<&'static str>,
}

const SERVICES: [Service; 4] = [
    Service { name: "user", binary: "user-service", port: 8003, database: Some("users") },
    Service { name: "product", binary: "product-service", port: 8000, database: None },
    Service { name: "inventory", binary: "inventory-service", port: 8002, database: Some("inventory") },
    Service { name: "order", binary: "order-service", port: 8001, database: None },
];

/// Brings the system up and keeps it up until Ctrl-C or SIGTERM.
pub fn up(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let mut gateway_port: u16 = 80;
    let mut release = false;
    let mut rest = arguments.iter();
    while let Some(argument) = rest.next() {
        match argument.as_str() {
            "--release" => release = true,
            "--gateway-port" => {
                gateway_port = rest.next().and_then(|port| port.parse().ok()).context("--gateway-port takes a port number")?;
            }
            _ => bail!("usage: cargo xtask up [--release] [--gateway-port N]"),
        }
    }
    let profile = if release { "release" } else { "debug" };
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;

    let mut prepared = infrastructure::prepare(infrastructure::Servers::Local)?;
    let servers = prepared.servers.clone();
    for port in SERVICES.iter().map(|service| service.port).chain([gateway_port]) {
        if infrastructure::port_open(port) {
            bail!("port {port} is taken already (is the system up in another terminal?); free it or choose --gateway-port");
        }
    }
    build_binaries(release)?;

    let root = workspace_root();
    let local = root.join(".local");
    std::fs::create_dir_all(local.join("logs"))?;
    let mut children: Vec<(String, Child)> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for service in &SERVICES {
            let log = std::fs::File::create(local.join("logs").join(format!("{}.log", service.binary)))?;
            let mut command = Command::new(crate::target_directory().join(profile).join(service.binary));
            if let Some(database) = service.database {
                command.env("DATABASE_URL", format!("{}/{database}", servers.postgres));
            }
            let child = command
                .current_dir(&root)
                .env("HOST", "127.0.0.1")
                .env("PORT", service.port.to_string())
                .env("USER_SERVICE_URL", "http://127.0.0.1:8003")
                .env("PRODUCT_SERVICE_URL", "http://127.0.0.1:8000")
                .env("JWT_PRIVATE_KEY_PATH", local.join("keys/user-service.pem"))
                .env("RABBITMQ_URL", format!("{}/%2f", servers.rabbitmq))
                .env("MONGODB_URL", &servers.mongodb)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("failed to start {}", service.binary))?;
            children.push((service.binary.to_owned(), child));
            infrastructure::wait_for_port(service.port, service.binary, Duration::from_secs(60))?;
        }
        let gateway = local.join("gateway");
        render_gateway(&gateway, gateway_port)?;
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
        infrastructure::wait_for_port(gateway_port, "nginx", Duration::from_secs(10))
    })();

    if result.is_ok() {
        let gateway = if gateway_port == 80 { "http://localhost".to_owned() } else { format!("http://localhost:{gateway_port}") };
        println!();
        println!("The shop is up ({profile} build). Ctrl-C stops everything this command started.");
        println!("  gateway            {gateway}/api/v1/...   (health: {gateway}/health)");
        for service in &SERVICES {
            println!(
                "  {:<18} http://localhost:{}   (docs: http://localhost:{}/api/v1/docs)",
                format!("{} service", service.name),
                service.port,
                service.port
            );
        }
        println!("  RabbitMQ           {}   (management: {})", servers.rabbitmq, servers.rabbitmq_management);
        println!("  PostgreSQL         {}   (databases users, inventory)", servers.postgres);
        println!("  MongoDB            {}   (databases products, orders)", servers.mongodb);
        let logs = local.join("logs");
        println!("  logs               {}", logs.display());
        for service in &SERVICES {
            println!("                     {}", logs.join(format!("{}.log", service.binary)).display());
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
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("xtask: {name} did not stop within 10 s; killing it");
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    prepared.stop();
    result.map(|()| ExitCode::SUCCESS)
}

/// Renders the repository's gateway templates (the same ones the harness and docker-compose use)
/// into a private nginx prefix.
fn render_gateway(prefix: &Path, port: u16) -> anyhow::Result<()> {
    for temporary in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join("temp").join(temporary))?;
    }
    let templates = workspace_root().join("services/gateway");
    // Loopback, like the services: the guide's `curl http://localhost/...` reaches it, nothing
    // outside this machine does.
    let listen = format!("127.0.0.1:{port}");
    let prefix_text = prefix.to_str().context("the workspace path is not UTF-8")?;
    let access_log = format!("{prefix_text}/access.log");
    let variables = [
        ("PREFIX", prefix_text),
        ("GATEWAY_LISTEN", listen.as_str()),
        ("ACCESS_LOG", access_log.as_str()),
        ("USER_SERVICE", "127.0.0.1:8003"),
        ("PRODUCT_SERVICE", "127.0.0.1:8000"),
        ("ORDER_SERVICE", "127.0.0.1:8001"),
        ("INVENTORY_SERVICE", "127.0.0.1:8002"),
    ];
    for (template, output) in [("gateway.conf.template", "gateway.conf"), ("nginx-local.conf.template", "nginx.conf")] {
        let mut text = std::fs::read_to_string(templates.join(template))?;
        for (name, value) in variables {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        std::fs::write(prefix.join(output), text)?;
    }
    Ok(())
}

/// `cargo build --workspace --bins`, in release if asked.
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

/// Builds the workspace's binaries in release (`--debug`: as `cargo xtask up` builds them) and
/// runs the goose load tests with the given options.
pub fn load(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let debug = arguments.iter().any(|argument| argument == "--debug");
    let arguments: Vec<&String> = arguments.iter().filter(|argument| *argument != "--debug").collect();
    build_binaries(!debug)?;
    let binary = crate::target_directory().join(if debug { "debug" } else { "release" }).join("load");
    let status = Command::new(binary).args(arguments).status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `cargo xtask bench [--url GATEWAY --order-service URL]`: the benchmark (load/src/bench.rs)
/// against the system in release, started here on its own gateway port and stopped afterwards,
/// or against one given by URL. Prints one table and writes it to target/bench/latest.md.
pub fn bench(arguments: &[String]) -> anyhow::Result<ExitCode> {
    const GATEWAY_PORT: u16 = 18090;
    let mut given = None;
    let mut order_service = "http://127.0.0.1:8001".to_owned();
    let mut rest = arguments.iter();
    while let Some(argument) = rest.next() {
        match argument.as_str() {
            "--url" => given = Some(rest.next().context("--url takes the gateway's URL")?.clone()),
            "--order-service" => order_service = rest.next().context("--order-service takes a URL")?.clone(),
            _ => bail!("usage: cargo xtask bench [--url GATEWAY_URL --order-service ORDER_SERVICE_URL]"),
        }
    }
    build_binaries(true)?;
    let report = crate::target_directory().join("bench/latest.md");
    let run = |host: &str| -> anyhow::Result<ExitCode> {
        let status = Command::new(crate::target_directory().join("release/bench"))
            .args(["--host", host, "--order-service", &order_service, "--report"])
            .arg(&report)
            .status()?;
        Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    };
    if let Some(host) = given {
        return run(&host);
    }
    say(&format!("bringing the system up in release (cargo xtask up --release --gateway-port {GATEWAY_PORT})"));
    let mut system = Command::new(std::env::current_exe()?)
        .args(["up", "--release", "--gateway-port", &GATEWAY_PORT.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("failed to start the system")?;
    let outcome =
        crate::fuzz::wait_until_ready(Duration::from_secs(600)).and_then(|()| run(&format!("http://127.0.0.1:{GATEWAY_PORT}")));
    say("stopping the system");
    crate::fuzz::stop(&mut system);
    outcome
}
