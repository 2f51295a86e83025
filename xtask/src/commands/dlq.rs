//! `cargo xtask dlq list | show [--queue Q] [--limit N] | replay [--queue Q]`: the dead-letter
//! queues of a running system (`cargo xtask up`, or any broker given by `RABBITMQ_URL`), through
//! the `dead-letters` tool in `common` (see `common::messaging::dead_letters`).

use std::process::ExitCode;

use anyhow::bail;

use crate::cargo;

const USAGE: &str = "usage: cargo xtask dlq list | show [--queue Q] [--limit N] | replay [--queue Q]";

pub fn dlq(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let status = cargo()
        .args(["run", "--quiet", "-p", "common", "--bin", "dead-letters", "--"])
        .args(tool_arguments(arguments)?)
        .status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The `dead-letters` tool's arguments for xtask's.
fn tool_arguments(arguments: &[String]) -> anyhow::Result<Vec<String>> {
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
    Ok(tool_arguments.into_iter().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(text: &str) -> anyhow::Result<Vec<String>> {
        tool_arguments(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn the_queue_becomes_the_tools_positional_argument_in_either_order() {
        assert_eq!(translate("show --queue order_created").unwrap(), ["show", "order_created"]);
        assert_eq!(translate("show --limit 5 --queue q").unwrap(), ["show", "q", "--limit", "5"]);
        assert_eq!(translate("show --queue q --limit 5").unwrap(), ["show", "q", "--limit", "5"]);
        assert_eq!(translate("replay --queue q").unwrap(), ["replay", "q"]);
        assert_eq!(translate("list").unwrap(), ["list"]);
    }

    #[test]
    fn anything_else_is_the_usage() {
        for wrong in ["", "purge", "list --queue q", "replay --limit 5", "show --queue"] {
            assert_eq!(translate(wrong).unwrap_err().to_string(), USAGE, "{wrong:?}");
        }
    }
}
