//! `cargo xtask fuzz [--examples N] [--seed N]`: schemathesis (PyPI) against every service's own
//! OpenAPI document, bounded, on a system it brings up itself (as `cargo xtask up` does, the
//! gateway on a port of its own) and stops afterwards. A signed-in customer's token goes with
//! every request, so the protected operations are reached too. Every check schemathesis has runs
//! (server errors, status codes, content types, headers and bodies against the schema, schema-
//! violating input refused, missing auth refused, unsupported methods, resources used after their
//! deletion, ...) except those listed in [`EXCLUDED_CHECKS`], each with why it does not apply.
//!
//! The seed is drawn afresh for every run, so that runs explore different cases over time, and
//! printed with the command that replays the run; `--seed N` gives one.
//!
//! If the system does not come up (`cargo xtask up` exits: a port taken, a build that failed),
//! fuzz fails at once with its exit status instead of waiting for readiness.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

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

/// Checks of schemathesis that do not apply to this API, and why. Every other check runs.
/// (`positive_data_acceptance` expects every schema-valid request to be accepted; this API
/// refuses, by design and documented in each operation's responses, schema-valid requests that
/// break a business rule: an order for a product that does not exist or at another price (422),
/// an email registered twice (409), a status the machine does not allow (400). Those answers are
/// still checked against their documented schemas and status codes by the other checks.)
const EXCLUDED_CHECKS: &[&str] = &["positive_data_acceptance"];

/// `fuzz` on a system whose services use `servers`.
pub fn fuzz_on(arguments: &[String], servers: &ServerUrls) -> anyhow::Result<ExitCode> {
    let Options { examples, seed } = Options::parse(arguments)?;
    let seed = seed.unwrap_or_else(fresh_seed);
    say(&format!("fuzz: seed {seed}; replay this run with `cargo xtask fuzz --examples {examples} --seed {seed}`"));
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
    let outcome = run_against_system(examples, seed, &mut system);
    say("stopping the system");
    stop_child(&mut system, Duration::from_secs(60));
    outcome
}

/// What `cargo xtask fuzz` is asked for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// Examples per operation and phase (50 by default).
    examples: u32,
    /// schemathesis's seed; drawn afresh when not given.
    seed: Option<u64>,
}

impl Options {
    fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        const USAGE: &str = "usage: cargo xtask fuzz [--examples N] [--seed N]";
        let mut options = Options { examples: 50, seed: None };
        let mut rest = arguments.iter();
        while let Some(flag) = rest.next() {
            match flag.as_str() {
                "--examples" => {
                    let count = rest.next().context(USAGE)?;
                    options.examples = count.parse().context("--examples takes a number")?;
                }
                "--seed" => {
                    let seed = rest.next().context(USAGE)?;
                    options.seed = Some(seed.parse().context("--seed takes a number")?);
                }
                _ => bail!(USAGE),
            }
        }
        Ok(options)
    }
}

/// A seed for this run: the clock's nanoseconds mixed with the process id, so that two runs
/// started in the same instant on one machine still differ. Kept below 2^53 so that it reads the
/// same wherever a JSON number carries it.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0);
    // SplitMix64's finaliser spreads the bits.
    let mut mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (mixed ^ (mixed >> 31)) & ((1 << 53) - 1)
}

/// Waits until every service answers `/ready`, failing at once if the `cargo xtask up` child
/// exits meanwhile (a port taken, a failed build): it will never come up then.
fn wait_for_the_system(system: &mut Child, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = system.try_wait().context("failed to look at the system's process")? {
            bail!("the system did not come up: `cargo xtask up` exited ({status}); its messages are above");
        }
        // Ready services, and the gateway in front of them: `up` starts nginx only once the last
        // service listens, so the services may answer before the gateway does.
        match wait_until_ready(Duration::from_millis(500)) {
            Ok(()) if port_open(GATEWAY_PORT) => return Ok(()),
            Ok(()) if Instant::now() >= deadline => {
                bail!("the services are ready, but the gateway does not listen on {GATEWAY_PORT}")
            }
            Ok(()) => std::thread::sleep(Duration::from_millis(100)),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => {}
        }
    }
}

fn run_against_system(examples: u32, seed: u64, system: &mut Child) -> anyhow::Result<ExitCode> {
    wait_for_the_system(system, Duration::from_secs(600))?;
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
            // Every check (schemathesis's default) but those that do not apply.
            .args(["--exclude-checks", &EXCLUDED_CHECKS.join(",")])
            .args(["--max-examples", &examples.to_string()])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            // Printed above: the same seed finds a failure again.
            .args(["--seed", &seed.to_string()])
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
        say(&format!(
            "fuzz: failures in the {} service(s); schemathesis printed how to replay each; the whole run: `cargo xtask fuzz --examples {examples} --seed {seed}`",
            failed.join(", ")
        ));
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

    fn parse(text: &str) -> anyhow::Result<Options> {
        Options::parse(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn fifty_examples_and_a_fresh_seed_unless_asked_for_others() {
        assert_eq!(parse("").unwrap(), Options { examples: 50, seed: None });
        assert_eq!(parse("--examples 5").unwrap(), Options { examples: 5, seed: None });
        assert_eq!(parse("--seed 3 --examples 5").unwrap(), Options { examples: 5, seed: Some(3) });
    }

    #[test]
    fn a_count_or_seed_that_is_no_number_and_other_arguments_are_refused() {
        assert!(parse("--examples many").unwrap_err().to_string().contains("--examples takes a number"));
        assert!(parse("--seed x").unwrap_err().to_string().contains("--seed takes a number"));
        assert!(parse("--examples").unwrap_err().to_string().starts_with("usage"));
        assert!(parse("--checks all").unwrap_err().to_string().starts_with("usage"));
    }

    #[test]
    fn seeds_differ_from_run_to_run_and_fit_a_json_number() {
        let seeds: std::collections::BTreeSet<u64> = (0..20)
            .map(|_| {
                std::thread::sleep(Duration::from_micros(5));
                fresh_seed()
            })
            .collect();
        assert!(seeds.len() > 15, "{seeds:?}");
        assert!(seeds.iter().all(|seed| *seed < (1 << 53)));
    }

    #[test]
    fn a_system_whose_process_exits_fails_the_wait_at_once() {
        let mut exited = Command::new("sh").args(["-c", "exit 3"]).spawn().expect("sh runs");
        // Exited before the wait begins, so the wait never finds a system of someone else's up.
        let _ = exited.wait();
        let started = Instant::now();
        let error = wait_for_the_system(&mut exited, Duration::from_secs(600)).unwrap_err();
        assert!(error.to_string().contains("exited"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
    }
}
