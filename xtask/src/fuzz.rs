//! `cargo xtask fuzz [--examples N]`: schemathesis (PyPI) against every service's own OpenAPI
//! document, bounded, on a system it brings up itself (as `cargo xtask up` does, the gateway on
//! a port of its own) and stops afterwards. A signed-in customer's token goes with every request,
//! so the protected operations are reached too. It fails on any server error (5xx) or any answer
//! that breaks its documented schema, and prints how many cases each service was sent.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::infrastructure::{port_open, say};

const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// The gateway of the system fuzz brings up; the services keep their usual ports.
const GATEWAY_PORT: u16 = 18080;
const SERVICES: [(&str, u16); 4] = [("user", 8003), ("product", 8000), ("inventory", 8002), ("order", 8001)];
const EMAIL: &str = "fuzz@example.com";
const PASSWORD: &str = "Password123";

pub fn fuzz(arguments: &[String]) -> anyhow::Result<ExitCode> {
    fuzz_on(arguments, &crate::infrastructure::ServerUrls::from_environment())
}

/// `fuzz` on a system whose services use `servers`.
pub fn fuzz_on(arguments: &[String], servers: &crate::infrastructure::ServerUrls) -> anyhow::Result<ExitCode> {
    let examples: u32 = match arguments {
        [] => 50,
        [flag, count] if flag == "--examples" => count.parse().context("--examples takes a number")?,
        _ => bail!("usage: cargo xtask fuzz [--examples N]"),
    };
    ensure_schemathesis()?;
    if let Some((_, port)) = SERVICES.iter().find(|(_, port)| port_open(*port)) {
        bail!("port {port} is taken already (is the system up?); fuzz starts a system of its own");
    }
    say(&format!("bringing the system up (cargo xtask up --gateway-port {GATEWAY_PORT})"));
    let mut system = Command::new(std::env::current_exe()?)
        .args(["up", "--gateway-port", &GATEWAY_PORT.to_string()])
        .envs(servers.environment())
        .stdout(Stdio::null())
        .spawn()
        .context("failed to start the system")?;
    let outcome = run_against_system(examples);
    say("stopping the system");
    stop(&mut system);
    outcome
}

fn run_against_system(examples: u32) -> anyhow::Result<ExitCode> {
    wait_until_ready(Duration::from_secs(600))?;
    let token = sign_in().context("failed to sign in the fuzzing customer")?;
    let mut failed = Vec::new();
    for (service, port) in SERVICES {
        say(&format!("schemathesis against the {service} service's OpenAPI ({examples} examples per operation and phase)"));
        let base = format!("http://127.0.0.1:{port}");
        let status = Command::new("schemathesis")
            .args(["run", &format!("{base}/api/v1/openapi.json"), "--url", &base])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", &examples.to_string()])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            // Fixed, so a failure found here is found again with the same run.
            .args(["--seed", "20261128"])
            .env("NO_COLOR", "1")
            // Its caches (.schemathesis, .hypothesis) go under target/, not into the tree.
            .current_dir(crate::target_directory())
            .status()
            .context("failed to run schemathesis")?;
        if !status.success() {
            failed.push(service);
        }
    }
    if failed.is_empty() {
        say("fuzz: no server error and no answer outside its schema, in any service");
        Ok(ExitCode::SUCCESS)
    } else {
        say(&format!("fuzz: failures in the {} service(s); schemathesis printed how to replay each", failed.join(", ")));
        Ok(ExitCode::FAILURE)
    }
}

fn ensure_schemathesis() -> anyhow::Result<()> {
    let installed = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success() && String::from_utf8_lossy(&output.stdout).contains(SCHEMATHESIS_VERSION));
    if installed {
        return Ok(());
    }
    say(&format!("installing schemathesis {SCHEMATHESIS_VERSION} with pip (once)"));
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
        ])
        .status()
        .context("failed to run pip")?;
    if !status.success() {
        bail!("pip could not install schemathesis {SCHEMATHESIS_VERSION}");
    }
    Ok(())
}

/// Every service's `/ready` answers 200 (the build and the start take a while on a cold machine).
pub fn wait_until_ready(timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for (service, port) in SERVICES {
        loop {
            if python(&format!("import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/ready', timeout=2)"))
                .is_ok()
            {
                break;
            }
            if Instant::now() >= deadline {
                bail!("the {service} service was not ready within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

/// Registers the fuzzing customer (a 409 if it exists from an earlier run is fine) and logs in
/// through the gateway; returns the access token.
fn sign_in() -> anyhow::Result<String> {
    let gateway = format!("http://127.0.0.1:{GATEWAY_PORT}");
    let script = format!(
        r#"
import json, urllib.request, urllib.parse, urllib.error
body = json.dumps({{"email": "{EMAIL}", "password": "{PASSWORD}", "first_name": "Fuzz", "last_name": "Customer"}}).encode()
request = urllib.request.Request("{gateway}/api/v1/auth/register", data=body, headers={{"Content-Type": "application/json"}})
try:
    urllib.request.urlopen(request, timeout=10)
except urllib.error.HTTPError as error:
    if error.code != 409:
        raise
form = urllib.parse.urlencode({{"username": "{EMAIL}", "password": "{PASSWORD}"}}).encode()
answer = urllib.request.urlopen("{gateway}/api/v1/auth/login", data=form, timeout=10)
print(json.load(answer)["access_token"])
"#
    );
    let token = python(&script)?;
    if token.is_empty() {
        bail!("the login answered no token");
    }
    Ok(token)
}

/// Runs a Python script; its standard output, trimmed, or its error output as the error.
pub fn python(script: &str) -> anyhow::Result<String> {
    let output = Command::new("python3").args(["-c", script]).output().context("failed to run python3")?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// SIGTERM, as Ctrl-C would: `up` stops what it started, then exits.
pub fn stop(system: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg(system.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && matches!(system.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    if matches!(system.try_wait(), Ok(None)) {
        let _ = system.kill();
    }
    let _ = system.wait();
}
