//! `cargo xtask manifests`: the Kubernetes manifests of `deploy/kubernetes`, checked offline (no
//! cluster here): each overlay rendered with `kubectl kustomize` into `target/kubernetes/`,
//! validated in strict mode (unknown fields refused) against the schemas of a current Kubernetes
//! by `kubernetes-validate` (from PyPI), and checked against our own rules (`check.py`: probes,
//! limits and a locked-down container everywhere, one autoscaler, disruption budget and network
//! policy per Deployment, deny by default, nothing secret and no open writes in production). The
//! operators' resources (RabbitMQ's cluster and messaging topology operators, CloudNativePG,
//! MongoDB) have no schema offline: only those
//! kinds may go unvalidated, and they are named. `cargo xtask e2e` ends with it.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use crate::shell::{apt_install, found, say};
use crate::workspace_root;

/// The Kubernetes version whose schemas the manifests must satisfy.
const KUBERNETES_VERSION: &str = "1.37.0";

/// The overlays of `deploy/kubernetes/overlays`.
const OVERLAYS: [&str; 2] = ["development", "production"];

/// The custom resources of the operators, for which no schema exists offline.
const OPERATOR_KINDS: [&str; 6] = ["RabbitmqCluster", "User", "Permission", "Cluster", "Database", "MongoDBCommunity"];

pub fn manifests(arguments: &[String]) -> anyhow::Result<ExitCode> {
    if let Some(unknown) = arguments.first() {
        bail!("cargo xtask manifests takes no arguments (got {unknown:?})");
    }
    Ok(if check()? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Whether every overlay renders, validates and keeps our rules (each tool's output shown).
pub fn check() -> anyhow::Result<bool> {
    ensure_tools()?;
    let root = workspace_root();
    let directory = root.join("deploy/kubernetes");
    let mut passed = true;
    // The gateway's routes are the same file everywhere; kustomize reads only below its root,
    // hence the copy, which must not drift.
    let routes = std::fs::read(root.join("services/gateway/gateway.conf.template"))?;
    if std::fs::read(directory.join("base/gateway.conf.template"))? != routes {
        eprintln!(
            "xtask: manifests: deploy/kubernetes/base/gateway.conf.template differs from services/gateway/gateway.conf.template; copy it over"
        );
        passed = false;
    }
    let rendered_directory = crate::target_directory().join("kubernetes");
    std::fs::create_dir_all(&rendered_directory)?;
    for overlay in OVERLAYS {
        let rendered = rendered_directory.join(format!("{overlay}.yaml"));
        say(&format!("kubectl kustomize deploy/kubernetes/overlays/{overlay} > {}", rendered.display()));
        let output = Command::new("kubectl")
            .args(["kustomize"])
            .arg(directory.join("overlays").join(overlay))
            .output()
            .context("failed to run kubectl")?;
        if !output.status.success() {
            eprintln!("xtask: manifests: {overlay} does not render: {}", String::from_utf8_lossy(&output.stderr));
            passed = false;
            continue;
        }
        std::fs::write(&rendered, &output.stdout)?;
        passed &= validate(overlay, &rendered)?;
        say(&format!("our rules: python3 deploy/kubernetes/check.py {overlay}"));
        let status = Command::new("python3").arg(directory.join("check.py")).arg(overlay).arg(&rendered).status()?;
        passed &= status.success();
    }
    Ok(passed)
}

/// `kubernetes-validate --strict` of one rendered overlay: every object passes, and only the
/// operators' kinds lack a schema.
fn validate(overlay: &str, rendered: &Path) -> anyhow::Result<bool> {
    say(&format!("kubernetes-validate --strict -k {KUBERNETES_VERSION} ({overlay})"));
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .arg(rendered)
        .output()
        .context("failed to run kubernetes-validate")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let (unvalidated, unexpected) = unvalidated_kinds(&text);
    for line in &unexpected {
        eprintln!("xtask: manifests: {overlay}: {line}");
    }
    if !unvalidated.is_empty() {
        say(&format!("{overlay}: valid; not validated (no schema offline): {}", unvalidated.join(", ")));
    }
    Ok(output.status.success() && unexpected.is_empty())
}

/// From kubernetes-validate's output: the operator kinds it had no schema for, and every other
/// line that reports a problem (an error, or a missing schema for a kind that should have one).
fn unvalidated_kinds(output: &str) -> (Vec<String>, Vec<String>) {
    let mut unvalidated = Vec::new();
    let mut unexpected = Vec::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let kind = line.split("Couldn't find schema for kind ").nth(1).and_then(|rest| rest.split_whitespace().next());
        match kind {
            Some(kind) if OPERATOR_KINDS.contains(&kind) => {
                if !unvalidated.iter().any(|seen| seen == kind) {
                    unvalidated.push(kind.to_owned());
                }
            }
            _ if line.starts_with("INFO") => {}
            _ => unexpected.push(line.to_owned()),
        }
    }
    (unvalidated, unexpected)
}

/// kubectl (its kustomize must know `patches`, v4 or later: Debian 12's kubernetes-client is
/// older, so it is a last resort) and kubernetes-validate (pip).
fn ensure_tools() -> anyhow::Result<()> {
    if !found("kubectl") {
        apt_install(&["kubernetes-client"]).context("kubectl is needed to render the manifests")?;
    }
    if !found("kubernetes-validate") {
        say("installing kubernetes-validate with pip");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "kubernetes-validate==1.37.0"])
            .status()
            .context("failed to run pip")?;
        if !status.success() {
            bail!("pip install kubernetes-validate failed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_operators_kinds_may_go_without_a_schema() {
        let output = "WARN /t/p.yaml Couldn't find schema for kind RabbitmqCluster with api version rabbitmq.com/v1beta1 for kubernetes version 1.37\n\
                      WARN /t/p.yaml Couldn't find schema for kind Cluster with api version postgresql.cnpg.io/v1 for kubernetes version 1.37\n\
                      WARN /t/p.yaml Couldn't find schema for kind Widget with api version example.com/v1 for kubernetes version 1.37\n\
                      ERROR /t/p.yaml did not validate against version 1.37: spec.template.spec.containers.0.bogus: Additional properties are not allowed\n\
                      INFO /t/p.yaml passed for resource deployment/x against version 1.37\n";
        let (unvalidated, unexpected) = unvalidated_kinds(output);
        assert_eq!(unvalidated, ["RabbitmqCluster", "Cluster"]);
        assert_eq!(unexpected.len(), 2, "{unexpected:?}");
        assert!(unexpected[0].contains("Widget") && unexpected[1].starts_with("ERROR"));
    }
}
