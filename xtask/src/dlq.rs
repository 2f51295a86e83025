//! `cargo xtask dlq list | show [--queue Q] [--limit N] | replay [--queue Q]`: the dead-letter
//! queues of a running system (`cargo xtask up`, or any broker given by `RABBITMQ_URL`), through
//! the `dead-letters` tool in `common` (see `common::messaging::dead_letters`).

use std::process::ExitCode;

use anyhow::bail;

use crate::cargo;

const USAGE: &str = "usage: cargo xtask dlq list | show [--queue Q] [--limit N] | replay [--queue Q]";

pub fn dlq(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let tool_arguments: Vec<&str> = match words.as_slice() {
        ["list"] => vec!["list"],
        ["show"] => vec!["show"],
        ["show", "--queue", queue] => vec!["show", queue],
        ["show", "--limit", limit] => vec!["show", "--limit", limit],
        ["show", "--queue", queue, "--limit", limit] | ["show", "--limit", limit, "--queue", queue] => {
            vec!["show", queue, "--limit", limit]
        }
        ["replay"] => vec!["replay"],
        ["replay", "--queue", queue] => vec!["replay", queue],
        _ => bail!(USAGE),
    };
    let status = cargo().args(["run", "--quiet", "-p", "common", "--bin", "dead-letters", "--"]).args(tool_arguments).status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
