//! `cargo xtask bench [--url GATEWAY --order-service URL]`: the benchmark (load/src/bench.rs)
//! against the system in release, started here on its own gateway port and stopped afterwards,
//! or against one given by URL. Prints one table and writes it to target/bench/latest.md.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::up::build_binaries;
use crate::services::{local_url, service};
use crate::shell::{say, stop_child};

/// The gateway of the system bench brings up; the services keep their usual ports.
const GATEWAY_PORT: u16 = 18090;

/// What `cargo xtask bench` was asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// A running system's gateway; none: bench brings one up.
    pub url: Option<String>,
    /// The order service, whose metrics count orders accepted and paid.
    pub order_service: String,
}

impl Options {
    pub fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        let mut options = Self { url: None, order_service: local_url(service("order")) };
        let mut rest = arguments.iter();
        while let Some(argument) = rest.next() {
            match argument.as_str() {
                "--url" => options.url = Some(rest.next().context("--url takes the gateway's URL")?.clone()),
                "--order-service" => options.order_service = rest.next().context("--order-service takes a URL")?.clone(),
                _ => bail!("usage: cargo xtask bench [--url GATEWAY_URL --order-service ORDER_SERVICE_URL]"),
            }
        }
        Ok(options)
    }
}

pub fn bench(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let Options { url: given, order_service } = Options::parse(arguments)?;
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
        crate::http::wait_until_ready(Duration::from_secs(600)).and_then(|()| run(&format!("http://127.0.0.1:{GATEWAY_PORT}")));
    say("stopping the system");
    stop_child(&mut system, Duration::from_secs(60));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Options> {
        Options::parse(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn without_a_url_bench_brings_its_own_system_and_reads_the_local_order_service() {
        assert_eq!(parse("").unwrap(), Options { url: None, order_service: "http://127.0.0.1:8001".into() });
    }

    #[test]
    fn a_given_system_and_its_order_service() {
        let options = parse("--order-service http://o:1 --url http://g").unwrap();
        assert_eq!(options, Options { url: Some("http://g".into()), order_service: "http://o:1".into() });
    }

    #[test]
    fn a_flag_without_its_value_and_unknown_flags_are_refused() {
        assert!(parse("--url").unwrap_err().to_string().contains("--url takes"));
        assert!(parse("--users 3").unwrap_err().to_string().starts_with("usage: cargo xtask bench"));
    }
}
