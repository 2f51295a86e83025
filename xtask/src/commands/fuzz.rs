//! `cargo xtask fuzz [--examples N]`: schemathesis (PyPI) against every service's own OpenAPI
//! document, bounded, on a system it brings up itself (as `cargo xtask up` does, the gateway on
//! a port of its own) and stops afterwards. A signed-in customer's token goes with every request,
//! so the protected operations are reached too. It fails on any server error (5xx) or any answer
//! that breaks its documented schema, and prints how many cases each service was sent.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use shop_testkit_base::model::Registration;
use shop_testkit_base::{Client, ServerUrls};

use crate::http::{block_on, wait_until_ready};
use crate::services::{SERVICES, local_url};
use crate::shell::{port_open, say, stop_child};

const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// The gateway of the system fuzz brings up; the services keep their usual ports.
const GATEWAY_PORT: u16 = 18080;
const EMAIL: &str = "fuzz@example.com";
const PASSWORD: &str = "Password123";

pub fn fuzz(arguments: &[String]) -> anyhow::Result<ExitCode> {
    fuzz_on(arguments, &ServerUrls::from_environment())
}

/// `fuzz` on a system whose services use `servers`.
pub fn fuzz_on(arguments: &[String], servers: &ServerUrls) -> anyhow::Result<ExitCode> {
    let examples = examples(arguments)?;
    ensure_schemathesis()?;
    if let Some(port) = SERVICES.iter().map(|service| service.port).find(|port| port_open(*port)) {
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
    stop_child(&mut system, Duration::from_secs(60));
    outcome
}

/// How many examples per operation and phase `--examples` asks for (50 by default).
fn examples(arguments: &[String]) -> anyhow::Result<u32> {
    Ok(match arguments {
        [] => 50,
        [flag, count] if flag == "--examples" => count.parse().context("--examples takes a number")?,
        _ => bail!("usage: cargo xtask fuzz [--examples N]"),
    })
}

fn run_against_system(examples: u32) -> anyhow::Result<ExitCode> {
    wait_until_ready(Duration::from_secs(600))?;
    let gateway = Client::new(format!("http://127.0.0.1:{GATEWAY_PORT}"));
    let token = block_on(sign_in(&gateway)).context("failed to sign in the fuzzing customer")?;
    // The check `cargo xtask compose check` makes of its system, made here of this one: the same
    // function, so what compose check runs is exercised by every `cargo xtask e2e`.
    say("one order from POST to paid through the gateway");
    say(&block_on(shop_testkit_base::journeys::one_order_to_paid(&gateway)).context("an order from POST to paid")?);
    let mut failed = Vec::new();
    for service in &SERVICES {
        let service_name = service.name;
        say(&format!("schemathesis against the {service_name} service's OpenAPI ({examples} examples per operation and phase)"));
        let base = local_url(service);
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
            failed.push(service_name);
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

/// Registers the fuzzing customer (a 409 if it exists from an earlier run is fine) and logs in
/// through the gateway; returns the access token.
async fn sign_in(gateway: &Client) -> anyhow::Result<String> {
    match gateway.register(&Registration::customer(EMAIL, PASSWORD, "Fuzz", "Customer")).await {
        Ok(_) => {}
        Err(error) if error.status() == Some(409) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(gateway.log_in(EMAIL, PASSWORD).await?.access_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<u32> {
        examples(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn fifty_examples_unless_asked_for_another_number() {
        assert_eq!(parse("").unwrap(), 50);
        assert_eq!(parse("--examples 5").unwrap(), 5);
    }

    #[test]
    fn a_count_that_is_no_number_and_other_arguments_are_refused() {
        assert!(parse("--examples many").unwrap_err().to_string().contains("--examples takes a number"));
        assert!(parse("--examples").unwrap_err().to_string().starts_with("usage"));
        assert!(parse("--seed 3").unwrap_err().to_string().starts_with("usage"));
    }
}
