//! `cargo xtask mutants [AREA...] [-- CARGO-MUTANTS OPTIONS]`: a mutation check of the code whose
//! mistakes would lose orders or stock, each area with the tests and features able to catch a
//! change there, so that every mutant that survives points at a check the suite is missing.
//!
//! It runs `cargo mutants` (installed from crates.io on first use) against the same servers as
//! `cargo xtask e2e`, in place in a tree of its own, `target/mutants/tree`: a copy of the working
//! tree (tracked and untracked files, as git sees them) refreshed at each run, where only files
//! that changed are rewritten. So the working tree is never mutated, and because that tree's path
//! and its target directory (`target/mutants/build`, built without debug info) stay the same from
//! area to area and run to run, each mutant rebuilds only the crates it touches and relinks only
//! the test binaries that depend on them, in seconds. Features are selected by tag through
//! `E2E_TAGS`, which the features binary reads because cargo-mutants passes its own arguments to
//! it. Results land in `target/mutants/<area>/mutants.out`.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use crate::shell::say;
use crate::{cargo, target_directory, workspace_root};

/// One part of the code and the checks that should catch any change to it.
struct Area {
    name: &'static str,
    files: &'static [&'static str],
    /// The packages whose tests run for each mutant: the mutated one and the features' (`shop-e2e`).
    test_packages: &'static [&'static str],
    /// `cargo test` arguments selecting the test targets (and `--lib` for unit tests).
    test_arguments: &'static [&'static str],
    /// The feature scenarios that exercise this code (`E2E_TAGS`), when the features run at all.
    tags: Option<&'static str>,
    /// `cargo` (cargo test) or `nextest`: nextest runs every test at once and stops at the first
    /// failure, which is what an area of many tests that each wait for a broker wants (a mutant
    /// that stops consumption then costs one test's deadline, not every test's in turn).
    test_tool: &'static str,
}

static AREAS: [Area; 4] = [
    Area {
        name: "reservations",
        files: &["services/inventory/src/reservations/store.rs"],
        test_packages: &["inventory-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "reservations", "--test", "features"],
        tags: Some("@stock"),
        test_tool: "cargo",
    },
    Area {
        name: "orders",
        files: &["services/order/src/orders/model.rs", "services/order/src/orders/store.rs"],
        test_packages: &["order-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "order_api", "--test", "features"],
        tags: Some("@order-status"),
        test_tool: "cargo",
    },
    Area {
        name: "consumer",
        files: &[
            "services/common/src/messaging/consumer/mod.rs",
            "services/common/src/messaging/consumer/session.rs",
            "services/common/src/messaging/consumer/delivery.rs",
            "services/common/src/messaging/consumer/outage.rs",
            "services/common/src/messaging/consumer/headers.rs",
            "services/common/src/messaging/failure_streak.rs",
        ],
        // Its own tests only: the consumer is in `common`, which every service and the features
        // depend on, so running the features would rebuild the whole workspace for each of its
        // ~80 mutants (over an hour here). Its tests drive it against the real broker.
        test_packages: &["common"],
        test_arguments: &["--lib", "--test", "consumer", "--test-threads", "32"],
        tags: None,
        test_tool: "nextest",
    },
    Area {
        name: "relay",
        files: &["services/common/src/messaging/outbox.rs", "services/common/src/messaging/document_outbox.rs"],
        test_packages: &["common", "product-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "outbox", "--test", "features"],
        tags: Some("@outbox"),
        test_tool: "cargo",
    },
];

const CARGO_MUTANTS_VERSION: &str = "27.1.0";

pub fn mutants(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let (areas, passthrough) = parse(arguments)?;
    ensure_cargo_mutants()?;
    let tree = target_directory().join("mutants").join("tree");
    let copied = refresh_tree(&tree)?;
    say(&format!("mutating in {} ({copied} file(s) refreshed from the working tree)", tree.display()));
    let mut prepared = crate::servers::prepare(crate::servers::Servers::Local)?;
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
        let started = std::time::Instant::now();
        let mut command = cargo();
        // No baseline run: cargo-mutants runs it on the mutated package alone, without the
        // features, so it cannot pass the test arguments below (`cargo xtask e2e` is the
        // baseline). Hence explicit timeouts: a build of the workspace's crates, and the slowest
        // area's tests (the features tagged for it, under a minute) twice over.
        command
            .args(["mutants", "--in-place", "--workspace", "--no-shuffle", "--baseline", "skip"])
            .args(["--build-timeout", "900", "--timeout", "120", "--test-tool", area.test_tool, "--dir"])
            .arg(&tree)
            .arg("--output")
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
        command
            .args(passthrough)
            .env("E2E_FAIL_FAST", "1")
            .env("CARGO_TARGET_DIR", target_directory().join("mutants").join("build"))
            // Debug info makes linking the features binary, which every service is part of,
            // several times slower; nothing here reads it.
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .env("CARGO_PROFILE_TEST_DEBUG", "0");
        if let Some(tags) = area.tags {
            command.env("E2E_TAGS", tags);
        }
        let status = command.status().context("failed to run cargo mutants")?;
        // cargo-mutants exits 2 when mutants were missed, 3 on timeouts, 4 when the baseline fails.
        if !status.success() {
            failed.push(format!("{} ({status})", area.name));
        }
        say(&format!(
            "{}: {:.0} min; results in {}",
            area.name,
            started.elapsed().as_secs_f64() / 60.0,
            output.join("mutants.out").display()
        ));
    }
    prepared.stop();
    // Whatever state a mutant left the tree in, the next run's refresh puts the working tree back.
    if failed.is_empty() {
        say("every viable mutant was caught");
        Ok(ExitCode::SUCCESS)
    } else {
        say(&format!("missed mutants or failures in: {} (see mutants.out/missed.txt)", failed.join(", ")));
        Ok(ExitCode::FAILURE)
    }
}

/// Makes `tree` a copy of the working tree's files (tracked, and untracked but not ignored),
/// rewriting only the files whose content differs, so that cargo sees the rest unchanged. Returns
/// how many files were written.
fn refresh_tree(tree: &Path) -> anyhow::Result<usize> {
    let root = workspace_root();
    let listing = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(&root)
        .output()
        .context("failed to run git ls-files")?;
    if !listing.status.success() {
        bail!("git ls-files failed: {}", String::from_utf8_lossy(&listing.stderr));
    }
    let mut written = 0;
    for name in listing.stdout.split(|byte| *byte == 0).filter(|name| !name.is_empty()) {
        let relative = Path::new(std::str::from_utf8(name).context("a file name that is not UTF-8")?);
        let source = root.join(relative);
        // Listed but deleted in the working tree: leave it out of the copy too.
        let Ok(content) = std::fs::read(&source) else {
            let _ = std::fs::remove_file(tree.join(relative));
            continue;
        };
        let destination = tree.join(relative);
        if std::fs::read(&destination).is_ok_and(|existing| existing == content) {
            continue;
        }
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&destination, &content).with_context(|| format!("failed to write {}", destination.display()))?;
        written += 1;
    }
    Ok(written)
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

/// The areas asked for (every area when none is named) and cargo-mutants' own options (after
/// `--`).
fn parse(arguments: &[String]) -> anyhow::Result<(Vec<&'static Area>, &[String])> {
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
                AREAS.iter().find(|area| area.name == name).with_context(|| {
                    format!("unknown area {name:?}; areas: {}", AREAS.iter().map(|area| area.name).collect::<Vec<_>>().join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    Ok((areas, passthrough))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_area_names_files_that_exist() {
        let root = crate::workspace_root();
        for area in &AREAS {
            for file in area.files {
                assert!(root.join(file).is_file(), "area {}: {file} does not exist", area.name);
            }
        }
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn no_area_named_is_every_area() {
        let (areas, passthrough) = parse(&[]).unwrap();
        assert_eq!(areas.len(), AREAS.len());
        assert!(passthrough.is_empty());
    }

    #[test]
    fn named_areas_and_cargo_mutants_options_after_the_separator() {
        let arguments = words("relay orders -- --jobs 2");
        let (areas, passthrough) = parse(&arguments).unwrap();
        assert_eq!(areas.iter().map(|area| area.name).collect::<Vec<_>>(), ["relay", "orders"]);
        assert_eq!(passthrough, words("--jobs 2"));
    }

    #[test]
    fn an_unknown_area_is_refused_with_the_list_of_areas() {
        let error = parse(&words("payments")).err().expect("refused").to_string();
        assert!(error.starts_with("unknown area \"payments\"; areas: reservations, orders"), "{error}");
    }
}
