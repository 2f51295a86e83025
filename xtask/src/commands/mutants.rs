//! `cargo xtask mutants [--list] [AREA...] [-- CARGO-MUTANTS OPTIONS]`: a mutation check of the
//! code of the order flow, whose mistakes would lose orders or stock or let the wrong caller in,
//! each area with the tests and features able to catch a change there, so that every mutant that
//! survives points at a check the suite is missing. `--list` prints the areas and what checks each.
//!
//! It runs `cargo mutants` (installed from crates.io on first use) against the same servers as
//! `cargo xtask e2e`, in place in a tree of its own, `target/mutants/tree`: a copy of the working
//! tree (tracked and untracked files, as git sees them) refreshed at each run, where only files
//! that changed are rewritten. So the working tree is never mutated, and because that tree's path
//! and its target directory (`target/mutants/build`, built without debug info) stay the same from
//! area to area and run to run, each mutant rebuilds only the crates it touches and relinks only
//! the test binaries that depend on them. Features are selected by tag through `E2E_TAGS` (which
//! the features binary reads, because cargo-mutants passes its own arguments to it), or, where the
//! scenarios that catch a change carry no tag, by feature file through a nextest filter (nextest
//! sees one test per feature file).
//!
//! Before mutating an area, cargo-mutants runs the area's tests on the unmutated tree (its
//! baseline, never skipped here): a tree that fails its own tests would count every mutant as
//! caught. A failed baseline stops the command at once, saying so. Results land in
//! `target/mutants/<area>/mutants.out` (cargo-mutants' own), and `target/mutants/summary.md` sums
//! up the areas run: mutants, caught, missed, unviable, timeouts and minutes per area, and every
//! missed mutant by file, line and change, read from cargo-mutants' `outcomes.json`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::shell::say;
use crate::{cargo, target_directory, workspace_root};

/// One part of the code and the checks that should catch any change to it.
#[derive(Clone, Copy)]
struct Area {
    name: &'static str,
    files: &'static [&'static str],
    /// What in the suite exercises these files, in words, for `--list` and the summary.
    checked_by: &'static str,
    /// The packages whose tests run for each mutant: the mutated one and the features' (`shop-e2e`).
    test_packages: &'static [&'static str],
    /// Test tool arguments selecting the test targets (and `--lib` for unit tests).
    test_arguments: &'static [&'static str],
    /// The feature scenarios that exercise this code (`E2E_TAGS`), when the features run by tag.
    tags: Option<&'static str>,
    /// The feature files run whole (nextest only: it sees one test per feature file), for code
    /// whose catching scenarios carry no tag.
    feature_files: &'static [&'static str],
    /// `cargo` (cargo test) or `nextest`: nextest runs every test at once and stops at the first
    /// failure, which is what an area of many tests that each wait for a broker wants (a mutant
    /// that stops consumption then costs one test's deadline, not every test's in turn), and it
    /// can pick feature files.
    test_tool: &'static str,
    /// Cargo options for every build and test of the area, the baseline's included (features).
    cargo_arguments: &'static [&'static str],
    /// The area's quick tests (its own package's, without the features), where it has features:
    /// a first pass tests every mutant with them alone, and only the mutants they miss or time out
    /// on are tested again with everything above (cargo-mutants' `--iterate`, which skips what
    /// was caught or unviable). A feature run costs a mutant about twice its quick tests.
    quick: Option<QuickTests>,
}

/// The first pass's tests: packages, test targets and tool, as in [`Area`].
#[derive(Clone, Copy)]
struct QuickTests {
    test_packages: &'static [&'static str],
    test_arguments: &'static [&'static str],
    test_tool: &'static str,
}

static AREAS: [Area; 11] = [
    Area {
        name: "reservations",
        files: &["services/inventory/src/reservations/store.rs", "services/inventory/src/reservations/mod.rs"],
        checked_by: "the reservation store's tests against PostgreSQL (all-or-nothing, no oversell, releases once, \
                     on_inventory_release's failure count) and the features tagged @stock (orders reserved, \
                     announced, refused for stock, released on cancel)",
        test_packages: &["inventory-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "reservations", "--test", "features"],
        tags: Some("@stock"),
        feature_files: &[],
        test_tool: "cargo",
        cargo_arguments: &[],
        quick: Some(QuickTests {
            test_packages: &["inventory-service"],
            test_arguments: &["--lib", "--test", "reservations"],
            test_tool: "cargo",
        }),
    },
    Area {
        name: "stock",
        files: &[
            "services/inventory/src/inventory/mod.rs",
            "services/inventory/src/inventory/store.rs",
            "services/inventory/src/inventory/model.rs",
        ],
        checked_by: "the model's unit tests, the reservation tests that create, adjust and retire stock records \
                     through on_product_created and on_product_deleted, and the features of the inventory API and \
                     of the catalog that creates and retires stock records (03-catalog, 04-inventory)",
        test_packages: &["inventory-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "reservations", "--test", "features"],
        tags: None,
        feature_files: &["03-catalog", "04-inventory"],
        test_tool: "nextest",
        cargo_arguments: &[],
        quick: Some(QuickTests {
            test_packages: &["inventory-service"],
            test_arguments: &["--lib", "--test", "reservations"],
            test_tool: "cargo",
        }),
    },
    Area {
        name: "orders",
        files: &[
            "services/order/src/orders/model.rs",
            "services/order/src/orders/store.rs",
            "services/order/src/orders/mod.rs",
            "services/order/src/catalog.rs",
        ],
        checked_by: "the order handlers' and model's unit tests, the order API tests (a fake catalog and inventory \
                     over a real broker and MongoDB), and the features of placing, managing and retrying orders \
                     (05-orders, 06-order-management, 12-input-at-the-edges, 20-idempotent-orders) and of a \
                     catalog outage (08-resilience)",
        test_packages: &["order-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "order_api", "--test", "features"],
        tags: None,
        feature_files: &["05-orders", "06-order-management", "08-resilience", "12-input-at-the-edges", "20-idempotent-orders"],
        test_tool: "nextest",
        cargo_arguments: &[],
        quick: Some(QuickTests {
            test_packages: &["order-service"],
            test_arguments: &["--lib", "--test", "order_api"],
            test_tool: "nextest",
        }),
    },
    Area {
        name: "order-events",
        files: &["services/order/src/consumers.rs"],
        checked_by: "the order API tests that take an order to paid or cancelled through the broker, and the \
                     features tagged @order-status (paid, cancelled for stock, dead-lettered events)",
        test_packages: &["order-service", "shop-e2e"],
        test_arguments: &["--test", "order_api", "--test", "features"],
        tags: Some("@order-status"),
        feature_files: &[],
        test_tool: "cargo",
        cargo_arguments: &[],
        quick: Some(QuickTests {
            test_packages: &["order-service"],
            test_arguments: &["--test", "order_api"],
            test_tool: "nextest",
        }),
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
        checked_by: "the consumer's unit tests and its tests against the real broker (retries, dead letters, \
                     outages, not-yet, reconnection), and the broker-trust tests (who may publish what: a copy \
                     keeps its first publisher)",
        test_packages: &["common"],
        test_arguments: &["--lib", "--test", "consumer", "--test", "broker_users", "--test-threads", "32"],
        tags: None,
        feature_files: &[],
        test_tool: "nextest",
        cargo_arguments: &[],
        quick: None,
    },
    Area {
        name: "classification",
        files: &["services/common/src/messaging/handler_error.rs", "services/common/src/failure.rs"],
        // Built with every feature of `common`: the sqlx and mongodb rules, and their tests, are
        // behind the `postgres` and `mongodb` features, which `common` alone does not enable.
        checked_by: "the unit tests of the outage-or-bug rule (driver, I/O, timeout and marker errors) and of the \
                     handler's answer built from it",
        test_packages: &["common"],
        test_arguments: &["--lib"],
        tags: None,
        feature_files: &[],
        test_tool: "cargo",
        cargo_arguments: &["--all-features"],
        quick: None,
    },
    Area {
        name: "publishing",
        files: &["services/common/src/messaging/publisher.rs", "services/common/src/messaging/topology.rs"],
        checked_by: "the consumer tests (which publish through the publisher and read the dead-letter queues the \
                     topology declares), the topology's tests (a lost declaration race made again, sixteen declarers \
                     starting together), the product outbox tests (the relay publishes), and the features tagged \
                     @delivery and @outbox",
        test_packages: &["common", "product-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "consumer", "--test", "outbox", "--test", "topology", "--test", "features"],
        tags: Some("@delivery,@outbox"),
        feature_files: &[],
        test_tool: "cargo",
        cargo_arguments: &[],
        quick: Some(QuickTests {
            test_packages: &["common", "product-service"],
            test_arguments: &["--lib", "--test", "consumer", "--test", "outbox", "--test", "topology", "--test-threads", "32"],
            test_tool: "nextest",
        }),
    },
    Area {
        name: "relay",
        files: &["services/common/src/messaging/outbox.rs", "services/common/src/messaging/document_outbox.rs"],
        checked_by: "the outbox's unit tests, the product outbox tests against MongoDB and the broker, and the \
                     features tagged @outbox",
        test_packages: &["common", "product-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "outbox", "--test", "features"],
        tags: Some("@outbox"),
        feature_files: &[],
        test_tool: "cargo",
        cargo_arguments: &[],
        quick: Some(QuickTests {
            test_packages: &["common", "product-service"],
            test_arguments: &["--lib", "--test", "outbox"],
            test_tool: "cargo",
        }),
    },
    Area {
        name: "auth",
        files: &["services/common/src/auth.rs"],
        checked_by: "the verifier's unit tests (issuer, staff policy), the token issuer's unit tests \
                     in the user service, and the token security tests (forged, unsigned, confused, tampered, \
                     expired tokens; the key set fetched, cached, refreshed and unavailable)",
        test_packages: &["common", "user-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "security"],
        tags: None,
        feature_files: &[],
        test_tool: "cargo",
        cargo_arguments: &[],
        quick: None,
    },
    Area {
        name: "signing-keys",
        files: &["services/user/src/keys.rs", "services/user/src/tokens.rs"],
        checked_by: "the key ring's and the token issuer's unit tests (states by activation, file names, the \
                     operator's commands), the token security tests, and the feature that rotates keys in the middle \
                     of a session and withdraws one (23-key-rotation)",
        test_packages: &["user-service", "shop-e2e"],
        test_arguments: &["--lib", "--test", "security", "--test", "features"],
        tags: None,
        feature_files: &["23-key-rotation"],
        test_tool: "nextest",
        cargo_arguments: &[],
        quick: Some(QuickTests { test_packages: &["user-service"], test_arguments: &["--lib"], test_tool: "cargo" }),
    },
    Area {
        name: "throttle",
        files: &["services/user/src/throttle.rs"],
        checked_by: "the user service's API tests against PostgreSQL (twenty concurrent wrong passwords get five \
                     checks, a success clears the record) and the login-throttling feature (one account throttled \
                     for its window and no other, two replicas counting together: 13-login-throttling)",
        test_packages: &["user-service", "shop-e2e"],
        test_arguments: &["--test", "user_api", "--test", "features"],
        tags: None,
        feature_files: &["13-login-throttling"],
        test_tool: "nextest",
        cargo_arguments: &[],
        quick: Some(QuickTests { test_packages: &["user-service"], test_arguments: &["--test", "user_api"], test_tool: "cargo" }),
    },
];

impl Area {
    /// The test tool's arguments: the targets, and for feature files the nextest filter that runs
    /// every other test and only those feature files.
    fn tool_arguments(&self) -> Vec<String> {
        let mut arguments: Vec<String> = self.test_arguments.iter().map(|argument| (*argument).to_owned()).collect();
        if !self.feature_files.is_empty() {
            let files: Vec<String> = self.feature_files.iter().map(|file| format!("test(={file})")).collect();
            arguments.push("-E".to_owned());
            arguments.push(format!("not binary(features) | {}", files.join(" | ")));
        }
        arguments
    }

    fn describe(&self) -> String {
        let mut text = format!("{}: {}\n  files: {}\n", self.name, self.checked_by, self.files.join(", "));
        let _ =
            write!(text, "  tests: {} of {} ({}", self.test_tool, self.test_packages.join(", "), self.tool_arguments().join(" "));
        if let Some(tags) = self.tags {
            let _ = write!(text, "; features tagged {tags}");
        }
        text.push(')');
        if !self.cargo_arguments.is_empty() {
            let _ = write!(text, "\n  built with: {}", self.cargo_arguments.join(" "));
        }
        if let Some(quick) = self.quick_pass() {
            let _ = write!(
                text,
                "\n  first pass: {} of {} ({}); only the mutants it misses or times out on meet the features",
                quick.test_tool,
                quick.test_packages.join(", "),
                quick.tool_arguments().join(" ")
            );
        }
        text
    }
}

impl Area {
    /// The command cargo-mutants runs for each mutant of the area (its `Test` phase, without
    /// `--verbose`), or with `build_only` the build before it (its `Build` phase, which takes the
    /// cargo options but not the test arguments): the baseline runs exactly these.
    fn test_command(&self, build_only: bool) -> Vec<String> {
        let mut command: Vec<String> = match (self.test_tool, build_only) {
            ("nextest", false) => vec!["nextest".into(), "run".into()],
            ("nextest", true) => vec!["nextest".into(), "run".into(), "--no-run".into()],
            (_, false) => vec!["test".into()],
            (_, true) => vec!["test".into(), "--no-run".into()],
        };
        command.extend(self.test_packages.iter().map(|package| format!("--package={package}")));
        command.extend(self.cargo_arguments.iter().map(|argument| (*argument).to_owned()));
        if !build_only {
            command.extend(self.tool_arguments());
        }
        command
    }

    /// Whether cargo-mutants' own baseline runs the area's tests: it tests the mutated packages
    /// only (not `--test-package`'s), with the area's test arguments, so it can only where the
    /// area's tests are all in the mutated package. Elsewhere it would ask a package for test
    /// targets it does not have, and fail for that.
    fn cargo_mutants_baseline_applies(&self) -> bool {
        self.test_packages.len() == 1
    }

    /// The environment of every build and test of the area, cargo-mutants' included.
    fn environment(&self, mutants_directory: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut environment = vec![
            // Fail fast: a caught mutant then costs one failing scenario, not every scenario
            // waiting out its deadline.
            ("E2E_FAIL_FAST", "1".into()),
            ("CARGO_TARGET_DIR", mutants_directory.join("build").into_os_string()),
            // Debug info makes linking the features binary, which every service is part of,
            // several times slower; nothing here reads it.
            ("CARGO_PROFILE_DEV_DEBUG", "0".into()),
            ("CARGO_PROFILE_TEST_DEBUG", "0".into()),
            // What cargo-mutants sets for every test run: a snapshot that differs fails.
            ("INSTA_UPDATE", "no".into()),
            ("INSTA_FORCE_PASS", "0".into()),
        ];
        if let Some(tags) = self.tags {
            environment.push(("E2E_TAGS", tags.into()));
        }
        environment
    }
}

/// How the area's tests did on the unmutated tree.
struct BaselineRun {
    passed: bool,
    /// How long the tests took (the build before them not counted).
    test_seconds: f64,
    log: std::path::PathBuf,
}

/// Builds the unmutated tree and runs the area's tests, exactly as cargo-mutants will for each
/// mutant, into `<output>/<log_name>`.
fn run_baseline(area: &Area, tree: &Path, mutants_directory: &Path, log: std::path::PathBuf) -> anyhow::Result<BaselineRun> {
    let mut test_seconds = 0.0;
    std::fs::write(&log, "")?;
    for build_only in [true, false] {
        let arguments = area.test_command(build_only);
        say(&format!("baseline of {}: cargo {}", area.name, arguments.join(" ")));
        let file = std::fs::OpenOptions::new().append(true).open(&log)?;
        let started = Instant::now();
        let status = cargo()
            .args(&arguments)
            .current_dir(tree)
            .envs(area.environment(mutants_directory))
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
            .context("failed to run the baseline")?;
        if !build_only {
            test_seconds = started.elapsed().as_secs_f64();
        }
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            for line in tail.into_iter().rev() {
                println!("    {line}");
            }
            return Ok(BaselineRun { passed: false, test_seconds, log });
        }
    }
    Ok(BaselineRun { passed: true, test_seconds, log })
}

const CARGO_MUTANTS_VERSION: &str = "27.1.0";

/// cargo-mutants' exit status when the tests fail on the unmutated tree.
const BASELINE_FAILED: i32 = 4;

pub fn mutants(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let request = parse(arguments)?;
    if request.list {
        for area in &AREAS {
            println!("{}\n", area.describe());
        }
        return Ok(ExitCode::SUCCESS);
    }
    ensure_cargo_mutants()?;
    let mutants_directory = target_directory().join("mutants");
    let tree = mutants_directory.join("tree");
    let copied = refresh_tree(&tree)?;
    say(&format!("mutating in {} ({copied} file(s) refreshed from the working tree)", tree.display()));
    let mut prepared = crate::servers::prepare(crate::servers::Servers::Local)?;
    let summary = mutants_directory.join("summary.md");
    let mut runs = Vec::new();
    let mut baseline_failed = None;
    for area in request.areas {
        let (run, failed_baseline_log) = run_area(area, &tree, &mutants_directory, request.passthrough)?;
        runs.push(run);
        // Written after each area, so that what was learnt survives an interrupted run.
        write_summary(&summary, &runs)?;
        if let Some(log) = failed_baseline_log {
            baseline_failed = Some((area.name, log));
            break;
        }
    }
    prepared.stop();
    // Whatever state a mutant left the tree in, the next run's refresh puts the working tree back.
    if let Some((area, log)) = baseline_failed {
        say(&format!(
            "the tests of {area} fail on the unmutated tree, so no mutant there would prove anything: stopped before \
             mutating. See {} and {}",
            log.display(),
            summary.display()
        ));
        return Ok(ExitCode::FAILURE);
    }
    let failed: Vec<String> =
        runs.iter().filter(|run| !run.clean()).map(|run| format!("{} ({})", run.area, run.verdict())).collect();
    if failed.is_empty() {
        say(&format!("every viable mutant was caught; summary in {}", summary.display()));
        Ok(ExitCode::SUCCESS)
    } else {
        say(&format!("missed mutants, timeouts or failures in: {}; see {}", failed.join(", "), summary.display()));
        Ok(ExitCode::FAILURE)
    }
}

/// One area's mutants, in one pass or, where it has quick tests, two: every mutant against the
/// quick tests, then what they missed or timed out on against the whole set (`--iterate`). Gives
/// the area's run and, when a baseline failed, its log.
fn run_area(
    area: &Area,
    tree: &Path,
    mutants_directory: &Path,
    passthrough: &[String],
) -> anyhow::Result<(AreaRun, Option<std::path::PathBuf>)> {
    let output = mutants_directory.join(area.name);
    std::fs::create_dir_all(&output)?;
    say(&format!("mutants of {}", area.describe()));
    let started = Instant::now();
    let passes: Vec<(Area, &str)> = match area.quick_pass() {
        Some(quick) => vec![(quick, "quick"), (*area, "whole")],
        None => vec![(*area, "whole")],
    };
    let mut first_pass: Option<AreaOutcomes> = None;
    let mut last: Option<(Option<i32>, anyhow::Result<AreaOutcomes>)> = None;
    for (index, (pass, label)) in passes.iter().enumerate() {
        let iterate = index > 0;
        if let Some((exit_code, outcomes)) = last.take() {
            match outcomes {
                Ok(found) if exit_code == Some(0) && found.left_over() == 0 => {
                    say(&format!("{}: the quick tests caught every viable mutant; no feature run needed", area.name));
                    last = Some((exit_code, Ok(found)));
                    break;
                }
                Ok(found) => {
                    say(&format!(
                        "{}: the quick tests caught {} of {} mutants; the {} they missed or timed out on go to the whole set",
                        area.name,
                        found.caught,
                        found.mutants,
                        found.left_over()
                    ));
                    first_pass = Some(found);
                }
                // Not read: nothing to iterate on, and nothing to say but the error.
                Err(error) => {
                    last = Some((exit_code, Err(error)));
                    break;
                }
            }
        }
        let baseline = run_baseline(pass, tree, mutants_directory, output.join(format!("baseline-{label}.log")))?;
        if !baseline.passed {
            let minutes = started.elapsed().as_secs_f64() / 60.0;
            let not_run = anyhow::anyhow!("not run: the tests fail on the unmutated tree");
            let run = AreaRun { area: area.name, minutes, baseline_passed: false, exit_code: None, outcomes: Err(not_run) };
            return Ok((run, Some(baseline.log)));
        }
        // A mutant that hangs is stopped after three times the unmutated tests' time, and never
        // before two minutes (the features selected for an area take about one).
        let timeout = (baseline.test_seconds * 3.0).max(120.0).ceil();
        say(&format!(
            "baseline of {} ({label} tests) passed, tests in {:.0} s; a mutant's tests time out after {timeout} s",
            area.name, baseline.test_seconds
        ));
        let mut command = pass.cargo_mutants(tree, &output, timeout, mutants_directory);
        if iterate {
            command.arg("--iterate");
        }
        let status = command.args(passthrough).status().context("failed to run cargo mutants")?;
        let outcomes_path = output.join("mutants.out").join("outcomes.json");
        let outcomes = std::fs::read_to_string(&outcomes_path)
            .with_context(|| format!("cargo mutants ({status}) left no {}", outcomes_path.display()))
            .and_then(|text| AreaOutcomes::parse(&text, |file| std::fs::read_to_string(tree.join(file)).ok()));
        let failed = status.code() == Some(BASELINE_FAILED)
            || outcomes.as_ref().is_ok_and(|outcomes| outcomes.baseline == Baseline::Failed);
        last = Some((status.code(), outcomes));
        if failed {
            break;
        }
    }
    let (exit_code, outcomes) = last.context("no pass ran")?;
    let outcomes = match first_pass {
        Some(first) => outcomes.map(|second| first.followed_by(second)),
        None => outcomes,
    };
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let run = AreaRun { area: area.name, minutes, baseline_passed: true, exit_code, outcomes };
    say(&format!("{}: {}; cargo-mutants' results in {}", area.name, run.verdict(), output.join("mutants.out").display()));
    let failed_baseline_log = run.baseline_failed().then(|| output.join("mutants.out").join("log").join("baseline.log"));
    Ok((run, failed_baseline_log))
}

impl Area {
    /// The area with its quick tests in place of its whole set, where it has quick tests.
    fn quick_pass(&self) -> Option<Area> {
        let quick = self.quick?;
        Some(Area {
            test_packages: quick.test_packages,
            test_arguments: quick.test_arguments,
            test_tool: quick.test_tool,
            tags: None,
            feature_files: &[],
            quick: None,
            ..*self
        })
    }

    /// cargo-mutants over the area's files with its tests, in place in `tree`, into `output`.
    fn cargo_mutants(&self, tree: &Path, output: &Path, timeout: f64, mutants_directory: &Path) -> Command {
        let mut command = cargo();
        command
            .args(["mutants", "--in-place", "--workspace", "--no-shuffle", "--build-timeout", "900", "--timeout"])
            .arg(timeout.to_string())
            .args(["--test-tool", self.test_tool, "--dir"])
            .arg(tree)
            .arg("--output")
            .arg(output);
        // cargo-mutants' own baseline, where it runs the same tests as ours (then a failure there
        // stops the area too, with exit status 4); skipped where it cannot (see
        // `cargo_mutants_baseline_applies`), ours having just run the exact command instead.
        if !self.cargo_mutants_baseline_applies() {
            command.args(["--baseline", "skip"]);
        }
        for argument in self.cargo_arguments {
            command.arg(format!("--cargo-arg={argument}"));
        }
        for package in self.test_packages {
            command.args(["--test-package", package]);
        }
        for file in self.files {
            command.args(["--file", file]);
        }
        for argument in self.tool_arguments() {
            command.arg(format!("--cargo-test-arg={argument}"));
        }
        command.envs(self.environment(mutants_directory));
        command
    }
}

/// What one area's cargo-mutants run came to.
struct AreaRun {
    area: &'static str,
    minutes: f64,
    /// Whether the area's tests passed on the unmutated tree (this command's baseline).
    baseline_passed: bool,
    /// cargo-mutants' exit status: 0 all caught, 2 missed, 3 timeouts, 4 baseline failed; none
    /// when it did not run or was killed.
    exit_code: Option<i32>,
    /// Its `outcomes.json`, read, or why it could not be.
    outcomes: anyhow::Result<AreaOutcomes>,
}

impl AreaRun {
    fn baseline_failed(&self) -> bool {
        !self.baseline_passed
            || self.exit_code == Some(BASELINE_FAILED)
            || self.outcomes.as_ref().is_ok_and(|outcomes| outcomes.baseline == Baseline::Failed)
    }

    /// Everything caught, and cargo-mutants agrees.
    fn clean(&self) -> bool {
        !self.baseline_failed()
            && self.exit_code == Some(0)
            && self
                .outcomes
                .as_ref()
                .is_ok_and(|outcomes| outcomes.missed == 0 && outcomes.timeouts == 0 && outcomes.failures == 0)
    }

    fn verdict(&self) -> String {
        let exit =
            self.exit_code.map_or_else(|| "cargo-mutants not run or killed".to_owned(), |code| format!("exit status {code}"));
        if self.baseline_failed() {
            return format!("baseline failed ({exit})");
        }
        match &self.outcomes {
            Ok(outcomes) => format!(
                "{} mutants, {} caught, {} missed, {} unviable, {} timeouts in {:.1} min ({exit})",
                outcomes.mutants, outcomes.caught, outcomes.missed, outcomes.unviable, outcomes.timeouts, self.minutes
            ),
            Err(error) => format!("no results: {error:#} ({exit})"),
        }
    }
}

/// The unmutated tree's run, as cargo-mutants recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    Passed,
    Failed,
    /// No baseline in the outcomes (skipped with `-- --baseline skip`, or not reached).
    NotRun,
}

/// One area's `mutants.out/outcomes.json`, counted.
#[derive(Debug, PartialEq)]
struct AreaOutcomes {
    baseline: Baseline,
    mutants: usize,
    caught: usize,
    missed: usize,
    unviable: usize,
    timeouts: usize,
    /// Mutants whose tests neither passed nor failed as tests do (cargo-mutants' `Failure`
    /// outcome, for instance a test tool that could not start).
    failures: usize,
    missed_mutants: Vec<MutantName>,
    timed_out_mutants: Vec<MutantName>,
}

/// Where a mutant is and what it changed, for a person to find and judge it.
#[derive(Debug, PartialEq)]
struct MutantName {
    file: String,
    line: u64,
    change: String,
}

impl std::fmt::Display for MutantName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}: {}", self.file, self.line, self.change)
    }
}

impl AreaOutcomes {
    /// Reads cargo-mutants' `outcomes.json`: one entry per scenario, `"Baseline"` or
    /// `{"Mutant": {...}}`, each with its `summary` (`Success`, `Failure`, `CaughtMutant`,
    /// `MissedMutant`, `Unviable`, `Timeout`). `source` gives a file of the mutated tree, so that a
    /// mutant's change can quote the code it replaced.
    fn parse(text: &str, source: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let json = Json::parse(text).context("outcomes.json is not JSON")?;
        let scenarios = json.get("outcomes").and_then(Json::as_array).context("outcomes.json has no outcomes list")?;
        let mut outcomes = AreaOutcomes {
            baseline: Baseline::NotRun,
            mutants: 0,
            caught: 0,
            missed: 0,
            unviable: 0,
            timeouts: 0,
            failures: 0,
            missed_mutants: Vec::new(),
            timed_out_mutants: Vec::new(),
        };
        for scenario in scenarios {
            let summary = scenario.get("summary").and_then(Json::as_str).context("an outcome without a summary")?;
            let Some(mutant) = scenario.get("scenario").and_then(|scenario| scenario.get("Mutant")) else {
                if scenario.get("scenario").and_then(Json::as_str) == Some("Baseline") {
                    outcomes.baseline = if summary == "Success" { Baseline::Passed } else { Baseline::Failed };
                }
                continue;
            };
            outcomes.mutants += 1;
            match summary {
                "CaughtMutant" => outcomes.caught += 1,
                "MissedMutant" => {
                    outcomes.missed += 1;
                    outcomes.missed_mutants.push(MutantName::of(mutant, &source)?);
                }
                "Unviable" => outcomes.unviable += 1,
                "Timeout" => {
                    outcomes.timeouts += 1;
                    outcomes.timed_out_mutants.push(MutantName::of(mutant, &source)?);
                }
                _ => outcomes.failures += 1,
            }
        }
        Ok(outcomes)
    }
}

impl AreaOutcomes {
    /// The mutants a first pass leaves for the next (`--iterate` tests again all but the caught
    /// and the unviable).
    fn left_over(&self) -> usize {
        self.mutants - self.caught - self.unviable
    }

    /// A first pass's outcomes completed by the pass over what it left: the mutants are the
    /// first pass's, caught or unviable in either pass, missed, timed out or failed in the second.
    fn followed_by(self, second: AreaOutcomes) -> AreaOutcomes {
        let baseline = match (self.baseline, second.baseline) {
            (Baseline::Failed, _) | (_, Baseline::Failed) => Baseline::Failed,
            (Baseline::Passed, _) | (_, Baseline::Passed) => Baseline::Passed,
            _ => Baseline::NotRun,
        };
        AreaOutcomes {
            baseline,
            mutants: self.mutants,
            caught: self.caught + second.caught,
            missed: second.missed,
            unviable: self.unviable + second.unviable,
            timeouts: second.timeouts,
            failures: second.failures,
            missed_mutants: second.missed_mutants,
            timed_out_mutants: second.timed_out_mutants,
        }
    }
}

impl MutantName {
    /// From a mutant as cargo-mutants serialises it: `file`, `span` (`start`/`end`, each `line`
    /// and `column`, 1-based), `replacement`, `genre` and the enclosing `function`
    /// (`function_name`, `return_type`).
    fn of(mutant: &Json, source: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let file = mutant.get("file").and_then(Json::as_str).context("a mutant without a file")?;
        let position = |end: &str, part: &str| mutant.get("span").and_then(|span| span.get(end)).and_then(|at| at.get(part));
        let line = position("start", "line").and_then(Json::as_u64).context("a mutant without a line")?;
        // cargo-mutants' own description, `FILE:LINE:COLUMN: CHANGE`, where it gives one.
        let named = mutant.get("name").and_then(Json::as_str).and_then(|name| {
            let location = format!("{file}:{line}:{}: ", position("start", "column").and_then(Json::as_u64)?);
            name.strip_prefix(&location).map(str::to_owned)
        });
        if let Some(change) = named {
            return Ok(MutantName { file: file.to_owned(), line, change });
        }
        let replacement = mutant.get("replacement").and_then(Json::as_str).unwrap_or_default();
        let genre = mutant.get("genre").and_then(Json::as_str).unwrap_or_default();
        let function = mutant.get("function").and_then(|function| function.get("function_name")).and_then(Json::as_str);
        let return_type = mutant.get("function").and_then(|function| function.get("return_type")).and_then(Json::as_str);
        let in_function = function.map(|name| format!(" in {name}")).unwrap_or_default();
        let column = position("start", "column").and_then(Json::as_u64).unwrap_or_default();
        let original = || {
            let start = (line, position("start", "column").and_then(Json::as_u64)?);
            let end = (position("end", "line").and_then(Json::as_u64)?, position("end", "column").and_then(Json::as_u64)?);
            quote(&source(file)?, start, end)
        };
        let change = match genre {
            "FnValue" => {
                let signature = match return_type.filter(|text| !text.is_empty()) {
                    Some(return_type) => format!("{} {return_type}", function.unwrap_or("a function")),
                    None => function.unwrap_or("a function").to_owned(),
                };
                format!("replace {signature} with {replacement}")
            }
            "MatchArm" => match original() {
                Some(arm) => format!("delete match arm {}{in_function}", first_line(&arm)),
                None => format!("delete a match arm{in_function}"),
            },
            _ => match (original(), replacement.is_empty()) {
                (Some(original), true) => format!("delete {}{in_function}", first_line(&original)),
                (Some(original), false) => format!("replace {} with {replacement}{in_function}", first_line(&original)),
                (None, true) => format!("delete the {genre} at column {column}{in_function}"),
                (None, false) => format!("replace the {genre} at column {column} with {replacement}{in_function}"),
            },
        };
        Ok(MutantName { file: file.to_owned(), line, change })
    }
}

/// The text of `code` from `start` to `end` (1-based line and character column, end exclusive).
fn quote(code: &str, start: (u64, u64), end: (u64, u64)) -> Option<String> {
    let offset = |(line, column): (u64, u64)| -> Option<usize> {
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        let line_start: usize = code.split_inclusive('\n').take(index).map(str::len).sum();
        let text = code.split_inclusive('\n').nth(index)?;
        let column = usize::try_from(column).ok()?.checked_sub(1)?;
        Some(line_start + text.char_indices().nth(column).map_or(text.len(), |(at, _)| at))
    };
    code.get(offset(start)?..offset(end)?).map(str::to_owned)
}

/// The first line of `text`, marked when there was more.
fn first_line(text: &str) -> String {
    match text.split_once('\n') {
        Some((first, _)) => format!("{} ...", first.trim_end()),
        None => text.to_owned(),
    }
}

/// `target/mutants/summary.md`: the areas run, their figures, and every missed mutant.
fn summary_markdown(runs: &[AreaRun]) -> String {
    let mut text = String::from(
        "# Mutation check\n\nWritten by `cargo xtask mutants`; each area's tests are listed by `cargo xtask mutants --list`, \
         and cargo-mutants' own results are in `target/mutants/<area>/mutants.out`.\n\n\
         | area | baseline | mutants | caught | missed | unviable | timeouts | minutes |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let baseline = if run.baseline_failed() { "**failed**" } else { "passed" };
        match &run.outcomes {
            Ok(outcomes) => {
                let _ = writeln!(
                    text,
                    "| {} | {baseline} | {} | {} | {} | {} | {} | {:.1} |",
                    run.area,
                    outcomes.mutants,
                    outcomes.caught,
                    outcomes.missed,
                    outcomes.unviable,
                    outcomes.timeouts,
                    run.minutes
                );
            }
            Err(error) => {
                let _ = writeln!(text, "| {} | {baseline} | no results: {error:#} | | | | | {:.1} |", run.area, run.minutes);
            }
        }
    }
    for run in runs {
        if run.baseline_failed() {
            let log = if run.baseline_passed { "mutants.out/log/baseline.log" } else { "baseline.log" };
            let _ = writeln!(
                text,
                "\n**{}: the tests fail on the unmutated tree**, so its mutants would prove nothing and the run stopped \
                 there; see `target/mutants/{}/{log}`.",
                run.area, run.area
            );
        }
    }
    let listed = |title: &str, pick: fn(&AreaOutcomes) -> &[MutantName]| {
        let mut section = format!("\n## {title}\n");
        let mut any = false;
        for run in runs {
            let Ok(outcomes) = &run.outcomes else { continue };
            let mutants = pick(outcomes);
            if mutants.is_empty() {
                continue;
            }
            any = true;
            let _ = writeln!(section, "\n### {}\n", run.area);
            for mutant in mutants {
                let _ = writeln!(section, "- `{}:{}`: {}", mutant.file, mutant.line, mutant.change);
            }
        }
        if !any {
            section.push_str("\nNone.\n");
        }
        section
    };
    text.push_str(&listed("Missed mutants (to review: a missing check, or an equivalent mutant)", |outcomes| {
        &outcomes.missed_mutants
    }));
    text.push_str(&listed("Timeouts", |outcomes| &outcomes.timed_out_mutants));
    text
}

fn write_summary(path: &Path, runs: &[AreaRun]) -> anyhow::Result<()> {
    std::fs::write(path, summary_markdown(runs)).with_context(|| format!("failed to write {}", path.display()))
}

/// A JSON value, as much as `outcomes.json` needs: xtask reads it with this small reader rather
/// than a JSON crate, to keep its few dependencies.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> anyhow::Result<Json> {
        let mut reader = JsonReader { bytes: text.as_bytes(), position: 0 };
        let value = reader.value()?;
        reader.skip_whitespace();
        if reader.position != reader.bytes.len() {
            bail!("unexpected text after the JSON value at byte {}", reader.position);
        }
        Ok(value)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(name, _)| name == key).map(|(_, value)| value),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(number) if *number >= 0.0 && number.fract() == 0.0 => Some(*number as u64),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

struct JsonReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl JsonReader<'_> {
    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.position), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.position += 1;
        }
    }

    fn next_byte(&mut self) -> anyhow::Result<u8> {
        let byte = *self.bytes.get(self.position).context("the JSON ends too early")?;
        self.position += 1;
        Ok(byte)
    }

    fn expect(&mut self, expected: u8) -> anyhow::Result<()> {
        self.skip_whitespace();
        let byte = self.next_byte()?;
        if byte != expected {
            bail!("expected {:?} at byte {}, found {:?}", expected as char, self.position - 1, byte as char);
        }
        Ok(())
    }

    fn value(&mut self) -> anyhow::Result<Json> {
        self.skip_whitespace();
        match self.bytes.get(self.position).copied() {
            Some(b'{') => {
                self.position += 1;
                let mut fields = Vec::new();
                self.skip_whitespace();
                if self.bytes.get(self.position) == Some(&b'}') {
                    self.position += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.skip_whitespace();
                    let key = self.string()?;
                    self.expect(b':')?;
                    fields.push((key, self.value()?));
                    self.skip_whitespace();
                    match self.next_byte()? {
                        b',' => continue,
                        b'}' => return Ok(Json::Object(fields)),
                        other => bail!("expected ',' or '}}' at byte {}, found {:?}", self.position - 1, other as char),
                    }
                }
            }
            Some(b'[') => {
                self.position += 1;
                let mut items = Vec::new();
                self.skip_whitespace();
                if self.bytes.get(self.position) == Some(&b']') {
                    self.position += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.skip_whitespace();
                    match self.next_byte()? {
                        b',' => continue,
                        b']' => return Ok(Json::Array(items)),
                        other => bail!("expected ',' or ']' at byte {}, found {:?}", self.position - 1, other as char),
                    }
                }
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.position;
                while matches!(self.bytes.get(self.position), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.position += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.position]).expect("ASCII digits");
                Ok(Json::Number(text.parse().with_context(|| format!("{text:?} at byte {start} is not a number"))?))
            }
            Some(other) => bail!("unexpected {:?} at byte {}", other as char, self.position),
            None => bail!("the JSON ends too early"),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> anyhow::Result<Json> {
        if !self.bytes[self.position..].starts_with(word.as_bytes()) {
            bail!("expected {word} at byte {}", self.position);
        }
        self.position += word.len();
        Ok(value)
    }

    fn string(&mut self) -> anyhow::Result<String> {
        self.expect(b'"')?;
        let mut text = Vec::new();
        loop {
            match self.next_byte()? {
                b'"' => return String::from_utf8(text).context("a JSON string that is not UTF-8"),
                b'\\' => {
                    let unescaped = match self.next_byte()? {
                        byte @ (b'"' | b'\\' | b'/') => byte as char,
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let unit = self.hex_unit()?;
                            // A character beyond the basic plane comes as a surrogate pair.
                            let code = if (0xD800..0xDC00).contains(&unit) && self.bytes[self.position..].starts_with(b"\\u") {
                                self.position += 2;
                                let low = self.hex_unit()?;
                                0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                unit
                            };
                            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
                        }
                        other => bail!("unknown escape \\{} at byte {}", other as char, self.position - 1),
                    };
                    text.extend_from_slice(unescaped.encode_utf8(&mut [0; 4]).as_bytes());
                }
                byte => text.push(byte),
            }
        }
    }

    fn hex_unit(&mut self) -> anyhow::Result<u32> {
        let digits = self.bytes.get(self.position..self.position + 4).context("a \\u escape cut short")?;
        let digits = std::str::from_utf8(digits).ok().and_then(|text| u32::from_str_radix(text, 16).ok());
        let unit = digits.with_context(|| format!("a malformed \\u escape at byte {}", self.position))?;
        self.position += 4;
        Ok(unit)
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

/// What was asked: the areas (every area when none is named), `--list`, and cargo-mutants' own
/// options (after `--`).
struct Request<'a> {
    areas: Vec<&'static Area>,
    list: bool,
    passthrough: &'a [String],
}

fn parse(arguments: &[String]) -> anyhow::Result<Request<'_>> {
    let (names, passthrough) = match arguments.iter().position(|argument| argument == "--") {
        Some(separator) => (&arguments[..separator], &arguments[separator + 1..]),
        None => (arguments, &[][..]),
    };
    let list = names.iter().any(|name| name == "--list");
    let names: Vec<&String> = names.iter().filter(|name| *name != "--list").collect();
    let areas: Vec<&Area> = if names.is_empty() {
        AREAS.iter().collect()
    } else {
        names
            .iter()
            .map(|name| {
                AREAS.iter().find(|area| area.name == name.as_str()).with_context(|| {
                    format!("unknown area {name:?}; areas: {}", AREAS.iter().map(|area| area.name).collect::<Vec<_>>().join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    Ok(Request { areas, list, passthrough })
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

    #[test]
    fn the_whole_order_flow_is_mutated_each_file_in_one_area() {
        let order_flow = [
            "services/order/src/orders/mod.rs",
            "services/order/src/orders/model.rs",
            "services/order/src/orders/store.rs",
            "services/order/src/consumers.rs",
            "services/order/src/catalog.rs",
            "services/inventory/src/reservations/mod.rs",
            "services/inventory/src/reservations/store.rs",
            "services/inventory/src/inventory/mod.rs",
            "services/inventory/src/inventory/store.rs",
            "services/common/src/messaging/handler_error.rs",
            "services/common/src/failure.rs",
            "services/common/src/messaging/publisher.rs",
            "services/common/src/messaging/topology.rs",
            "services/common/src/messaging/outbox.rs",
            "services/common/src/messaging/document_outbox.rs",
            "services/common/src/messaging/consumer/delivery.rs",
            "services/common/src/auth.rs",
            "services/user/src/throttle.rs",
        ];
        for file in order_flow {
            let areas: Vec<&str> = AREAS.iter().filter(|area| area.files.contains(&file)).map(|area| area.name).collect();
            assert_eq!(areas.len(), 1, "{file} is in the areas {areas:?}");
        }
    }

    #[test]
    fn the_features_an_area_names_exist_and_its_tests_run_them() {
        let features = crate::workspace_root().join("features");
        let all_features: String =
            std::fs::read_dir(&features).unwrap().map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap()).collect();
        for area in &AREAS {
            for tag in area.tags.into_iter().flat_map(|tags| tags.split(',')) {
                assert!(
                    all_features.contains(&format!("{tag}\n")) || all_features.contains(&format!("{tag} ")),
                    "{}: no scenario is tagged {tag}",
                    area.name
                );
            }
            for file in area.feature_files {
                assert!(
                    features.join(format!("{file}.feature")).is_file(),
                    "{}: features/{file}.feature does not exist",
                    area.name
                );
            }
            let runs_features = area.test_arguments.windows(2).any(|pair| pair == ["--test", "features"]);
            assert_eq!(runs_features, area.tags.is_some() || !area.feature_files.is_empty(), "{}", area.name);
            // Only nextest sees the feature files as tests it can pick; cargo test runs them all.
            assert!(area.feature_files.is_empty() || area.test_tool == "nextest", "{}", area.name);
            assert!(
                area.tags.is_none() || area.feature_files.is_empty(),
                "{}: tags would filter the files' untagged scenarios out",
                area.name
            );
        }
    }

    #[test]
    fn an_area_run_by_feature_file_passes_nextest_a_filter_of_those_files_and_every_other_test() {
        let stock = AREAS.iter().find(|area| area.name == "stock").unwrap();
        let arguments = stock.tool_arguments();
        assert_eq!(arguments[..5], ["--lib", "--test", "reservations", "--test", "features"]);
        assert_eq!(arguments[5..], ["-E", "not binary(features) | test(=03-catalog) | test(=04-inventory)"]);
        let auth = AREAS.iter().find(|area| area.name == "auth").unwrap();
        assert_eq!(auth.tool_arguments(), ["--lib", "--test", "security"], "no feature file, no filter");
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn no_area_named_is_every_area() {
        let request = parse(&[]).unwrap();
        assert_eq!(request.areas.len(), AREAS.len());
        assert!(!request.list);
        assert!(request.passthrough.is_empty());
    }

    #[test]
    fn named_areas_and_cargo_mutants_options_after_the_separator() {
        let arguments = words("relay orders -- --jobs 2 --list");
        let request = parse(&arguments).unwrap();
        assert_eq!(request.areas.iter().map(|area| area.name).collect::<Vec<_>>(), ["relay", "orders"]);
        assert_eq!(request.passthrough, words("--jobs 2 --list"));
        assert!(!request.list, "a --list after -- is cargo-mutants'");
        assert!(parse(&words("--list")).unwrap().list);
    }

    #[test]
    fn an_unknown_area_is_refused_with_the_list_of_areas() {
        let error = parse(&words("payments")).err().expect("refused").to_string();
        assert!(error.starts_with("unknown area \"payments\"; areas: reservations, stock, orders"), "{error}");
    }

    #[test]
    fn the_baseline_builds_and_runs_exactly_what_cargo_mutants_runs_for_a_mutant() {
        let area = |name: &str| AREAS.iter().find(|area| area.name == name).unwrap();
        assert_eq!(
            area("reservations").test_command(true),
            words("test --no-run --package=inventory-service --package=shop-e2e")
        );
        assert_eq!(
            area("reservations").test_command(false),
            words("test --package=inventory-service --package=shop-e2e --lib --test reservations --test features")
        );
        assert_eq!(area("classification").test_command(false), words("test --package=common --all-features --lib"));
        let stock = area("stock").test_command(false);
        assert_eq!(stock[..2], ["nextest", "run"]);
        assert_eq!(stock.last().unwrap(), "not binary(features) | test(=03-catalog) | test(=04-inventory)");
        assert_eq!(area("stock").test_command(true)[..3], ["nextest", "run", "--no-run"]);
        let tags = area("reservations").environment(Path::new("/m"));
        assert!(tags.contains(&("E2E_TAGS", "@stock".into())) && tags.contains(&("CARGO_TARGET_DIR", "/m/build".into())));
    }

    #[test]
    fn an_area_with_features_first_tries_its_own_packages_tests_without_them() {
        for area in &AREAS {
            let runs_features =
                area.test_packages.contains(&"shop-e2e") && (area.tags.is_some() || !area.feature_files.is_empty());
            let Some(quick) = area.quick_pass() else {
                assert!(!runs_features, "{}: an area with features has quick tests to try first", area.name);
                continue;
            };
            assert!(runs_features, "{}: quick tests are a first pass before the features", area.name);
            assert!(!quick.test_packages.contains(&"shop-e2e"), "{}", area.name);
            assert!(quick.tags.is_none() && quick.feature_files.is_empty(), "{}", area.name);
            assert!(!quick.test_command(false).iter().any(|argument| argument.contains("features")), "{}", area.name);
            // The quick packages are the area's own: the whole set runs them too.
            assert!(quick.test_packages.iter().all(|package| area.test_packages.contains(package)), "{}", area.name);
            assert_eq!((quick.name, quick.files), (area.name, area.files));
            assert!(!quick.environment(Path::new("/m")).iter().any(|(name, _)| *name == "E2E_TAGS"), "{}", area.name);
        }
        let orders = AREAS.iter().find(|area| area.name == "orders").unwrap().quick_pass().unwrap();
        assert_eq!(orders.test_command(false), words("nextest run --package=order-service --lib --test order_api"));
    }

    #[test]
    fn a_second_pass_completes_the_first_one_s_counts() {
        let first = AreaOutcomes::parse(OUTCOMES, throttle_source).unwrap();
        // The second pass tests again the two missed and the timed-out mutant: it catches the
        // timed-out one and one missed one.
        let mut second = AreaOutcomes::parse(OUTCOMES, throttle_source).unwrap();
        assert_eq!(first.left_over(), 3);
        second.baseline = Baseline::NotRun;
        second.mutants = 3;
        second.caught = 2;
        second.missed = 1;
        second.unviable = 0;
        second.timeouts = 0;
        second.missed_mutants.truncate(1);
        second.timed_out_mutants.clear();
        let both = first.followed_by(second);
        assert_eq!(
            (both.baseline, both.mutants, both.caught, both.missed, both.unviable, both.timeouts),
            (Baseline::Passed, 5, 3, 1, 1, 0)
        );
        assert_eq!(both.missed_mutants.len(), 1);
        assert!(both.timed_out_mutants.is_empty());
        assert_eq!(both.mutants, both.caught + both.missed + both.unviable + both.timeouts + both.failures);
    }

    #[test]
    fn the_first_test_package_of_an_area_is_the_package_of_its_files() {
        let root = crate::workspace_root();
        for area in &AREAS {
            for file in area.files {
                let crate_directory = file.split('/').take(2).collect::<Vec<_>>().join("/");
                let manifest = std::fs::read_to_string(root.join(&crate_directory).join("Cargo.toml")).unwrap();
                let name = format!("name = \"{}\"", area.test_packages[0]);
                assert!(manifest.contains(&name), "{}: {file} is not in {}", area.name, area.test_packages[0]);
            }
            // cargo-mutants' own baseline tests the mutated package alone.
            assert_eq!(area.cargo_mutants_baseline_applies(), area.test_packages.len() == 1, "{}", area.name);
        }
    }

    /// Trimmed from a real `mutants.out/outcomes.json` of cargo-mutants 27.1: the baseline, then
    /// a mutant of each outcome (phase results and log paths, which the summary does not read,
    /// kept for one entry only). The timed-out mutant lacks the `name` older versions did not
    /// write, so that its change is told from its span and the source.
    const OUTCOMES: &str = r#"{
  "outcomes": [
    {"scenario": "Baseline", "summary": "Success", "log_path": "log/baseline.log", "diff_path": null,
     "phase_results": [
       {"phase": "Build", "duration": 0.40, "process_status": "Success", "argv": ["cargo", "test", "--no-run", "--verbose", "--package=user-service@0.1.0"]},
       {"phase": "Test", "duration": 0.10, "process_status": "Success", "argv": ["cargo", "test", "--verbose", "--package=user-service@0.1.0"]}]},
    {"scenario": {"Mutant": {"name": "services/user/src/throttle.rs:35:9: replace LoginThrottle::check -> Result<(), Duration> with Ok(())",
       "package": "user-service", "file": "services/user/src/throttle.rs",
       "function": {"function_name": "LoginThrottle::check", "return_type": "-> Result<(), Duration>", "span": {"start": {"line": 34, "column": 5}, "end": {"line": 43, "column": 6}}},
       "span": {"start": {"line": 35, "column": 9}, "end": {"line": 42, "column": 57}}, "replacement": "Ok(())", "genre": "FnValue"}},
     "summary": "CaughtMutant", "log_path": "log/services__user__src__throttle.rs_line_35_col_9.log"},
    {"scenario": {"Mutant": {"name": "services/user/src/throttle.rs:47:27: replace >= with < in LoginThrottle::record_failure",
       "package": "user-service", "file": "services/user/src/throttle.rs",
       "function": {"function_name": "LoginThrottle::record_failure", "return_type": "", "span": {"start": {"line": 45, "column": 5}, "end": {"line": 58, "column": 6}}},
       "span": {"start": {"line": 47, "column": 27}, "end": {"line": 47, "column": 29}}, "replacement": "<", "genre": "BinaryOperator"}},
     "summary": "MissedMutant"},
    {"scenario": {"Mutant": {"name": "services/user/src/throttle.rs:67:5: replace key -> String with String::new()",
       "package": "user-service", "file": "services/user/src/throttle.rs",
       "function": {"function_name": "key", "return_type": "-> String", "span": {"start": {"line": 66, "column": 1}, "end": {"line": 68, "column": 2}}},
       "span": {"start": {"line": 67, "column": 5}, "end": {"line": 67, "column": 32}}, "replacement": "String::new()", "genre": "FnValue"}},
     "summary": "MissedMutant"},
    {"scenario": {"Mutant": {"package": "user-service", "file": "services/user/src/throttle.rs",
       "function": {"function_name": "LoginThrottle::record_failure", "return_type": "", "span": {"start": {"line": 45, "column": 5}, "end": {"line": 58, "column": 6}}},
       "span": {"start": {"line": 47, "column": 27}, "end": {"line": 47, "column": 29}}, "replacement": "==", "genre": "BinaryOperator"}},
     "summary": "Timeout"},
    {"scenario": {"Mutant": {"name": "services/user/src/throttle.rs:67:5: replace key -> String with \"xyzzy\".into()",
       "package": "user-service", "file": "services/user/src/throttle.rs",
       "function": {"function_name": "key", "return_type": "-> String", "span": {"start": {"line": 66, "column": 1}, "end": {"line": 68, "column": 2}}},
       "span": {"start": {"line": 67, "column": 5}, "end": {"line": 67, "column": 32}}, "replacement": "\"xyzzy\".into()", "genre": "FnValue"}},
     "summary": "Unviable"}
  ],
  "total_mutants": 5, "missed": 2, "caught": 1, "timeout": 1, "unviable": 1, "success": 0,
  "start_time": "2026-12-07T01:00:31.285978682Z", "end_time": "2026-12-07T01:00:34.896011988Z", "cargo_mutants_version": "27.1.0"
}"#;

    /// A stand-in for the mutated file: line 47 as it is in throttle.rs.
    fn throttle_source(file: &str) -> Option<String> {
        (file == "services/user/src/throttle.rs").then(|| {
            format!(
                "{}        if failures.len() >= ACCOUNTS_REMEMBERED && !failures.contains_key(&key(email)) {{\n",
                "\n".repeat(46)
            )
        })
    }

    #[test]
    fn outcomes_are_counted_and_the_missed_and_timed_out_mutants_named() {
        let outcomes = AreaOutcomes::parse(OUTCOMES, throttle_source).unwrap();
        assert_eq!(outcomes.baseline, Baseline::Passed);
        assert_eq!(
            (outcomes.mutants, outcomes.caught, outcomes.missed, outcomes.unviable, outcomes.timeouts, outcomes.failures),
            (5, 1, 2, 1, 1, 0)
        );
        let missed: Vec<String> = outcomes.missed_mutants.iter().map(ToString::to_string).collect();
        assert_eq!(
            missed,
            [
                "services/user/src/throttle.rs:47: replace >= with < in LoginThrottle::record_failure",
                "services/user/src/throttle.rs:67: replace key -> String with String::new()",
            ]
        );
        let timed_out: Vec<String> = outcomes.timed_out_mutants.iter().map(ToString::to_string).collect();
        assert_eq!(timed_out, ["services/user/src/throttle.rs:47: replace >= with == in LoginThrottle::record_failure"]);
        let without_source = AreaOutcomes::parse(OUTCOMES, |_| None).unwrap();
        assert_eq!(
            without_source.timed_out_mutants[0].change,
            "replace the BinaryOperator at column 27 with == in LoginThrottle::record_failure"
        );
    }

    #[test]
    fn a_failed_baseline_is_read_from_the_outcomes_and_from_the_exit_status() {
        let failed = r#"{"outcomes": [{"scenario": "Baseline", "summary": "Failure", "log_path": "log/baseline.log",
            "phase_results": [{"phase": "Test", "duration": 0.25, "process_status": {"Failure": 101}, "argv": []}]}],
            "total_mutants": 0, "missed": 0, "caught": 0, "timeout": 0, "unviable": 0, "success": 0}"#;
        let outcomes = AreaOutcomes::parse(failed, |_| None).unwrap();
        assert_eq!((outcomes.baseline, outcomes.mutants), (Baseline::Failed, 0));
        let run = AreaRun {
            area: "throttle",
            minutes: 0.4,
            baseline_passed: true,
            exit_code: Some(BASELINE_FAILED),
            outcomes: Ok(outcomes),
        };
        assert!(run.baseline_failed() && !run.clean());
        let no_outcomes = Err(anyhow::anyhow!("no outcomes.json"));
        let killed = AreaRun { area: "throttle", minutes: 0.4, baseline_passed: true, exit_code: Some(4), outcomes: no_outcomes };
        assert!(killed.baseline_failed(), "exit status 4 alone says the baseline failed");
        let summary = summary_markdown(&[run]);
        assert!(summary.contains("| throttle | **failed** | 0 | 0 | 0 | 0 | 0 | 0.4 |"), "{summary}");
        assert!(summary.contains("**throttle: the tests fail on the unmutated tree**"), "{summary}");
        assert!(summary.contains("`target/mutants/throttle/mutants.out/log/baseline.log`"), "{summary}");
    }

    #[test]
    fn a_baseline_of_our_own_that_fails_is_in_the_summary_with_its_log() {
        let not_run = Err(anyhow::anyhow!("not run: the tests fail on the unmutated tree"));
        let run = AreaRun { area: "orders", minutes: 3.0, baseline_passed: false, exit_code: None, outcomes: not_run };
        assert!(run.baseline_failed() && !run.clean());
        let summary = summary_markdown(&[run]);
        assert!(
            summary.contains("| orders | **failed** | no results: not run: the tests fail on the unmutated tree |"),
            "{summary}"
        );
        assert!(summary.contains("see `target/mutants/orders/baseline.log`"), "{summary}");
    }

    #[test]
    fn a_run_is_clean_only_when_everything_viable_was_caught_after_a_passing_baseline() {
        let run = |exit_code, text: &str| AreaRun {
            area: "a",
            minutes: 1.0,
            baseline_passed: true,
            exit_code: Some(exit_code),
            outcomes: AreaOutcomes::parse(text, |_| None),
        };
        let caught = r#"{"outcomes": [{"scenario": "Baseline", "summary": "Success"},
            {"scenario": {"Mutant": {"file": "f.rs", "span": {"start": {"line": 1, "column": 1}}}}, "summary": "CaughtMutant"},
            {"scenario": {"Mutant": {"file": "f.rs", "span": {"start": {"line": 2, "column": 1}}}}, "summary": "Unviable"}]}"#;
        assert!(run(0, caught).clean());
        assert!(!run(2, caught).clean(), "cargo-mutants' exit status is believed too");
        assert!(!run(0, &caught.replace("\"summary\": \"Success\"", "\"summary\": \"Failure\"")).clean());
        assert!(!run(0, &caught.replace("CaughtMutant", "MissedMutant")).clean());
        assert!(!run(0, &caught.replace("CaughtMutant", "Timeout")).clean());
        assert!(!run(0, &caught.replace("CaughtMutant", "Failure")).clean());
    }

    #[test]
    fn the_summary_has_a_row_per_area_and_lists_every_missed_mutant() {
        let throttle = AreaRun {
            area: "throttle",
            minutes: 7.25,
            baseline_passed: true,
            exit_code: Some(3),
            outcomes: AreaOutcomes::parse(OUTCOMES, throttle_source),
        };
        let auth = AreaRun {
            area: "auth",
            minutes: 0.0,
            baseline_passed: true,
            exit_code: Some(70),
            outcomes: Err(anyhow::anyhow!("cargo mutants left no outcomes.json")),
        };
        let summary = summary_markdown(&[throttle, auth]);
        assert!(summary.contains("| area | baseline | mutants | caught | missed | unviable | timeouts | minutes |"), "{summary}");
        assert!(summary.contains("| throttle | passed | 5 | 1 | 2 | 1 | 1 | 7.2 |"), "{summary}");
        assert!(summary.contains("| auth | passed | no results: cargo mutants left no outcomes.json |"), "{summary}");
        assert!(
            summary.contains(
                "### throttle\n\n- `services/user/src/throttle.rs:47`: replace >= with < in LoginThrottle::record_failure\n\
                 - `services/user/src/throttle.rs:67`: replace key -> String with String::new()\n"
            ),
            "{summary}"
        );
        assert!(
            summary.contains(
                "## Timeouts\n\n### throttle\n\n- `services/user/src/throttle.rs:47`: replace >= with == in LoginThrottle::record_failure\n"
            ),
            "{summary}"
        );
    }

    #[test]
    fn the_summary_says_none_when_nothing_was_missed() {
        let caught = r#"{"outcomes": [{"scenario": "Baseline", "summary": "Success"}]}"#;
        let run = AreaRun {
            area: "throttle",
            minutes: 1.0,
            baseline_passed: true,
            exit_code: Some(0),
            outcomes: AreaOutcomes::parse(caught, |_| None),
        };
        let summary = summary_markdown(&[run]);
        assert!(summary.contains("(to review: a missing check, or an equivalent mutant)\n\nNone.\n"), "{summary}");
    }

    #[test]
    fn the_json_reader_reads_what_outcomes_json_holds_and_refuses_what_is_not_json() {
        let json =
            Json::parse(r#" {"a": [1, -2.5e1, true, false, null], "b": "q\"\\\/\n\u00e9\ud83d\ude00", "c": {}} "#).unwrap();
        assert_eq!(
            json.get("a").unwrap().as_array().unwrap(),
            [Json::Number(1.0), Json::Number(-25.0), Json::Bool(true), Json::Bool(false), Json::Null]
        );
        assert_eq!(json.get("b").unwrap().as_str(), Some("q\"\\/\n\u{e9}\u{1F600}"));
        assert_eq!(json.get("c"), Some(&Json::Object(Vec::new())));
        assert_eq!(Json::Number(3.0).as_u64(), Some(3));
        assert_eq!(Json::Number(-3.0).as_u64(), None);
        for broken in ["", "{", "[1,]", "{\"a\" 1}", "\"open", "{} x", "tru", "\"\\x\""] {
            assert!(Json::parse(broken).is_err(), "{broken:?} is not JSON");
        }
    }

    #[test]
    fn a_quote_takes_the_span_by_character_columns_across_lines() {
        let code = "fn é() {\n    a < b\n}\n";
        assert_eq!(quote(code, (2, 7), (2, 8)).as_deref(), Some("<"));
        assert_eq!(quote(code, (1, 4), (1, 5)).as_deref(), Some("é"));
        assert_eq!(quote(code, (1, 8), (3, 2)).as_deref(), Some("{\n    a < b\n}"));
        assert_eq!(quote(code, (9, 1), (9, 2)), None);
        assert_eq!(first_line("{\n    a < b\n}"), "{ ...");
    }
}
