//! `cargo xtask load [--debug] [goose options]`: the goose load tests (load/src/main.rs) against a
//! running system, built in release unless `--debug`.

use std::process::{Command, ExitCode};

use super::up::build_binaries;

/// What `cargo xtask load` was asked for: the build, and goose's own options, untouched.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub debug: bool,
    pub goose_arguments: Vec<String>,
}

impl Options {
    pub fn parse(arguments: &[String]) -> Self {
        Self {
            debug: arguments.iter().any(|argument| argument == "--debug"),
            goose_arguments: arguments.iter().filter(|argument| *argument != "--debug").cloned().collect(),
        }
    }
}

/// Builds the workspace's binaries in release (`--debug`: as `cargo xtask up` builds them) and
/// runs the goose load tests with the given options.
pub fn load(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let Options { debug, goose_arguments } = Options::parse(arguments);
    build_binaries(!debug)?;
    let binary = crate::target_directory().join(if debug { "debug" } else { "release" }).join("load");
    let status = Command::new(binary).args(goose_arguments).status()?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_xtasks_and_everything_else_goes_to_goose_in_order() {
        let arguments: Vec<String> = "--host http://localhost --debug --users 20".split_whitespace().map(str::to_owned).collect();
        let options = Options::parse(&arguments);
        assert!(options.debug);
        assert_eq!(options.goose_arguments, ["--host", "http://localhost", "--users", "20"]);
        assert!(!Options::parse(&arguments[..2]).debug);
    }
}
