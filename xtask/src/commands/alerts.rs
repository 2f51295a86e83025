//! `cargo xtask alerts`: checks Prometheus's configurations (`cargo xtask up`'s and compose's) and
//! alert rules in `deploy/prometheus` (`promtool check config`, which checks the rules too) and runs the rules' unit tests
//! (`promtool test rules alerts.test.yml`). promtool comes with Debian's `prometheus` package,
//! installed on first use where apt may. `cargo xtask e2e` ends with it.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use crate::shell::{apt_install, found, say};

/// Where the configuration, the rules and their tests are.
fn directory() -> PathBuf {
    crate::workspace_root().join("deploy/prometheus")
}

pub fn alerts(arguments: &[String]) -> anyhow::Result<ExitCode> {
    if let Some(unknown) = arguments.first() {
        bail!("cargo xtask alerts takes no arguments (got {unknown:?})");
    }
    Ok(if check()? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Whether the configuration and rules are valid and every rule test passes (each promtool
/// command's output shown as it runs).
pub fn check() -> anyhow::Result<bool> {
    if !found("promtool") {
        apt_install(&["prometheus"]).context("promtool is needed to check the alert rules")?;
    }
    let mut passed = true;
    for arguments in [
        ["check", "config", "prometheus.yml"],
        ["check", "config", "prometheus.compose.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        say(&format!("promtool {} (in deploy/prometheus)", arguments.join(" ")));
        let status =
            Command::new("promtool").args(arguments).current_dir(directory()).status().context("failed to run promtool")?;
        passed &= status.success();
    }
    Ok(passed)
}
