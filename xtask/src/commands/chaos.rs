//! `cargo xtask chaos [--seed N] [--operations M]`: the seeded chaos run (tests/chaos/): a system
//! started the way the harness starts one, on PostgreSQL, RabbitMQ and MongoDB-wire servers the
//! run starts of its own (to stop and kill them), behind the real nginx this command makes sure of.

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::shell::say;
use crate::{cargo, servers};

/// One cycle of faults (every kind against every target once): about five minutes on this
/// machine kind (2 cores).
const DEFAULT_OPERATIONS: u64 = 200;

/// What `cargo xtask chaos` was asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// None: the run draws one from the clock and prints it.
    pub seed: Option<u64>,
    pub operations: u64,
}

impl Options {
    pub fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        let mut options = Self { seed: None, operations: DEFAULT_OPERATIONS };
        let mut rest = arguments.iter();
        while let Some(argument) = rest.next() {
            let mut number = || -> anyhow::Result<u64> {
                let value = rest.next().with_context(|| format!("{argument} needs a number"))?;
                value.parse::<u64>().with_context(|| format!("{argument} needs a number, not {value:?}"))
            };
            match argument.as_str() {
                "--seed" => options.seed = Some(number()?),
                "--operations" => options.operations = number()?,
                other => bail!("unknown argument {other:?}: cargo xtask chaos [--seed N] [--operations M]"),
            }
        }
        Ok(options)
    }
}

pub fn chaos(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let Options { seed, operations } = Options::parse(arguments)?;
    let mut prepared = servers::prepare(servers::Servers::Local)?;
    let mut command = cargo();
    command.args(["test", "--workspace", "--test", "chaos", "--", "--operations", &operations.to_string()]);
    if let Some(seed) = seed {
        command.args(["--seed", &seed.to_string()]);
    }
    command.envs(prepared.servers.environment());
    say(&format!(
        "chaos run: {operations} operations, seed {}",
        seed.map_or_else(|| "drawn from the clock (printed below)".to_owned(), |seed| seed.to_string())
    ));
    let status = command.status().context("failed to run cargo test --test chaos")?;
    prepared.stop();
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Options> {
        Options::parse(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn a_fresh_seed_and_the_default_length_unless_given() {
        assert_eq!(parse("").unwrap(), Options { seed: None, operations: 200 });
        assert_eq!(parse("--operations 40 --seed 7").unwrap(), Options { seed: Some(7), operations: 40 });
    }

    #[test]
    fn numbers_that_are_not_numbers_and_unknown_arguments_are_refused() {
        assert!(parse("--seed -3").unwrap_err().to_string().contains("--seed needs a number, not \"-3\""));
        assert!(parse("--operations").unwrap_err().to_string().contains("--operations needs a number"));
        assert!(parse("--replicas 3").unwrap_err().to_string().contains("unknown argument \"--replicas\""));
    }
}
