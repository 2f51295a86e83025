//! `cargo xtask chaos [--seed N] [--operations M]`: the seeded chaos run (tests/chaos.rs) against
//! a system started the way the harness starts one, on the same servers as `cargo xtask e2e`.

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cargo;
use crate::infrastructure::{self, say};

/// About two minutes of operations on this machine kind (2 cores).
const DEFAULT_OPERATIONS: &str = "160";

pub fn chaos(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let mut seed = None;
    let mut operations = DEFAULT_OPERATIONS.to_owned();
    let mut rest = arguments.iter();
    while let Some(argument) = rest.next() {
        let mut number = || -> anyhow::Result<String> {
            let value = rest.next().with_context(|| format!("{argument} needs a number"))?;
            value.parse::<u64>().with_context(|| format!("{argument} needs a number, not {value:?}"))?;
            Ok(value.clone())
        };
        match argument.as_str() {
            "--seed" => seed = Some(number()?),
            "--operations" => operations = number()?,
            other => bail!("unknown argument {other:?}: cargo xtask chaos [--seed N] [--operations M]"),
        }
    }
    let mut prepared = infrastructure::prepare(infrastructure::Servers::Local)?;
    let mut command = cargo();
    command.args(["test", "--workspace", "--test", "chaos", "--", "--operations", &operations]);
    if let Some(seed) = &seed {
        command.args(["--seed", seed]);
    }
    command.envs(prepared.servers.environment());
    say(&format!(
        "chaos run: {operations} operations, seed {}",
        seed.as_deref().unwrap_or("drawn from the clock (printed below)")
    ));
    let status = command.status().context("failed to run cargo test --test chaos")?;
    prepared.stop();
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
