//! `cargo xtask mutants [AREA...] [-- CARGO-MUTANTS OPTIONS]`: a mutation check of the code whose
//! mistakes would lose orders or stock, each area with the tests and features able to catch a
//! change there, so that every mutant that survives points at a check the suite is missing.
//!
//! It runs `cargo mutants` (installed from crates.io on first use) in a copy of the tree, so the
//! working tree is never left mutated, against the same servers as `cargo xtask e2e`. Features
//! are selected by tag through `E2E_TAGS`, which the features binary reads because cargo-mutants
//! passes its own arguments to it. Results land in `target/mutants/<area>/mutants.out`.

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use crate::infrastructure::{self, say};
use crate::{cargo, target_directory};

/// One part of the code and the checks that should catch any change to it.
struct Area {
    name: &'static str,
    files: &'static [&'static str],
    /// The packages whose tests run for each mutant: the mutated one and the features' (`e2e`).
    test_packages: &'static [&'static str],
    /// `cargo test` arguments selecting the test targets (and `--lib` for unit tests).
    test_arguments: &'static [&'static str],
    /// The feature scenarios that exercise this code (`E2E_TAGS`), when the features run at all.
    tags: Option<&'static str>,
}

const AREAS: [Area; 4] = [
    Area {
        name: "reservations",
        files: &["services/inventory/src/reservations/store.rs"],
        test_packages: &["inventory-service", "e2e"],
        test_arguments: &["--lib", "--test", "reservations", "--test", "features"],
        tags: Some("@stock"),
    },
    Area {
        name: "orders",
        files: &["services/order/src/orders/model.rs", "services/order/src/orders/store.rs"],
        test_packages: &["order-service", "e2e"],
        test_arguments: &["--lib", "--test", "order_api", "--test", "features"],
        tags: Some("@order-status"),
    },
    Area {
        name: "consumer",
        files: &["services/common/src/messaging/consumer.rs", "services/common/src/messaging/failure_streak.rs"],
        // Its own tests only: the consumer is in `common`, which every service and the features
        // depend on, so running the features would rebuild the whole workspace for each of its
        // ~80 mutants (over an hour here). Its tests drive it against the real broker.
        test_packages: &["common"],
        test_arguments: &["--lib", "--test", "consumer"],
        tags: None,
    },
    Area {
        name: "relay",
        files: &["services/common/src/messaging/outbox.rs", "services/common/src/messaging/document_outbox.rs"],
        test_packages: &["common", "product-service", "e2e"],
        test_arguments: &["--lib", "--test", "outbox", "--test", "features"],
        tags: Some("@outbox"),
    },
];

const CARGO_MUTANTS_VERSION: &str = "27.1.0";

pub fn mutants(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let (names, passthrough) = match arguments.iter().position(|argument| argument == "--") {
        Some(separator) => (&arguments[..separator], &arguments[separator + 1..]),
        None => (arguments, &[][..]),
    };
    let areas: Vec<&Area> = if names.is_empty() {
        AREAS.iter().collect()
    } else {
        names
            .iter()
            .map(|name| {
                AREAS
                    .iter()
                    .find(|area| area.name == name)
                    .with_context(|| format!("unknown area {name:?}; areas: {}", AREAS.map(|area| area.name).join(", ")))
            })
            .collect::<anyhow::Result<_>>()?
    };
    ensure_cargo_mutants()?;
    let mut prepared = infrastructure::prepare(false)?;
    let mut failed = Vec::new();
    for area in areas {
        let output = target_directory().join("mutants").join(area.name);
        std::fs::create_dir_all(&output)?;
        say(&format!(
            "mutants of {} ({}), checked by cargo test {}{}",
            area.name,
            area.files.join(", "),
            area.test_arguments.join(" "),
            area.tags.map(|tags| format!(" with features tagged {tags}")).unwrap_or_default()
        ));
        let mut command = cargo();
        // The copy gets our target/ too, so only the workspace's own crates are rebuilt there.
        // Every mutant is tested with the mutated package's tests and the features, which live in
        // the root package (e2e).
        // No baseline run: cargo-mutants runs it on the mutated package alone, without the
        // features, so it cannot pass the test arguments below (`cargo xtask e2e` is the
        // baseline). Hence explicit timeouts: a build of the workspace's crates, and the slowest
        // area's tests (the features tagged for it) several times over.
        command
            .args(["mutants", "--workspace", "--copy-target", "true", "--no-shuffle", "--baseline", "skip"])
            .args(["--build-timeout", "900", "--timeout", "300", "--output"])
            .arg(&output);
        for package in area.test_packages {
            command.args(["--test-package", package]);
        }
        for file in area.files {
            command.args(["--file", file]);
        }
        for argument in area.test_arguments {
            command.arg(format!("--cargo-test-arg={argument}"));
        }
        // Fail fast: a caught mutant then costs one failing scenario, not every scenario waiting
        // out its deadline.
        command.args(passthrough).env("E2E_FAIL_FAST", "1").env("E2E_INFRASTRUCTURE", "urls");
        if let Some(tags) = area.tags {
            command.env("E2E_TAGS", tags);
        }
        let status = command.status().context("failed to run cargo mutants")?;
        // cargo-mutants exits 2 when mutants were missed, 3 on timeouts, 4 when the baseline fails.
        if !status.success() {
            failed.push(format!("{} ({status})", area.name));
        }
        say(&format!("{}: results in {}", area.name, output.join("mutants.out").display()));
    }
    prepared.stop();
    if failed.is_empty() {
        say("every viable mutant was caught");
        Ok(ExitCode::SUCCESS)
    } else {
        say(&format!("missed mutants or failures in: {} (see mutants.out/missed.txt)", failed.join(", ")));
        Ok(ExitCode::FAILURE)
    }
}

fn ensure_cargo_mutants() -> anyhow::Result<()> {
    let installed = Command::new("cargo").args(["mutants", "--version"]).output().is_ok_and(|output| output.status.success());
    if installed {
        return Ok(());
    }
    say(&format!("installing cargo-mutants {CARGO_MUTANTS_VERSION} with cargo install (a few minutes, once)"));
    let status = cargo()
        .args(["install", "cargo-mutants", "--locked", "--version", CARGO_MUTANTS_VERSION])
        .current_dir(std::env::temp_dir())
        .status()?;
    if !status.success() {
        bail!("cargo install cargo-mutants failed with {status}");
    }
    Ok(())
}
