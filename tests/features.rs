//! Runs features/*.feature against the whole system: each scenario starts its own copy (fresh
//! databases, its own RabbitMQ vhost, the four services in-process, the real nginx in front) and
//! tears it down afterwards, failing the scenario if it left work behind: a message in any queue,
//! an event in an outbox, or an error in its services' logs that it did not expect.
//!
//! Run it as cucumber (`cargo test --workspace --test features -- --name REGEX --tags EXPR`, see
//! `--help`) or through cargo-nextest, which sees one test per feature file.
//!
//! Environment: `E2E_TAGS` (comma-separated tags: only scenarios with one of them run),
//! `E2E_FAIL_FAST=1` (stop at the first failed scenario),
//! `E2E_CONCURRENCY` (scenarios at once, default 4), `E2E_LOG` (service log filter,
//! default `warn,lapin=off,sqlx=error`: lapin logs every expected channel close), `E2E_JUNIT`
//! (where to write JUnit XML, default target/cucumber-junit.xml), and the infrastructure variables
//! of `support::infrastructure`. Nothing else in the environment reaches the services: to prove
//! it, every variable they read is set to an unusable value before anything starts.

mod steps;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use cucumber::{World as _, WriterExt as _, writer};
use futures::FutureExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use support::logs::{self, CaptureLayer};
use support::system::System;
use support::world::ShopWorld;

const FEATURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/features");

/// What every service variable is set to in this process: a service that read its environment
/// instead of the configuration the harness gives it would fail to start.
const POISON: &str = "poisoned-by-the-e2e-harness";

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    // cargo-nextest's protocol: `--list --format terse [--ignored]`, then one process per test
    // with `NAME --exact`. Each feature file is one test.
    if arguments.iter().any(|argument| argument == "--list") {
        if !arguments.iter().any(|argument| argument == "--ignored") {
            for feature in feature_files() {
                println!("{}: test", feature_name(&feature));
            }
        }
        return;
    }
    let exact = arguments.iter().any(|argument| argument == "--exact").then(|| {
        let name = arguments.iter().find(|argument| !argument.starts_with("--")).expect("--exact names a feature");
        feature_files()
            .into_iter()
            .find(|feature| feature_name(feature) == *name)
            .unwrap_or_else(|| panic!("no feature file is named {name:?}"))
    });

    for variable in common::config::VARIABLES {
        // SAFETY: no other thread exists yet; the runtime is built below.
        unsafe { std::env::set_var(variable, POISON) };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run(exact));
}

fn feature_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(FEATURES)
        .expect("features/ is readable")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "feature"))
        .collect();
    files.sort();
    files
}

fn feature_name(path: &std::path::Path) -> String {
    path.file_stem().expect("a feature file has a name").to_string_lossy().into_owned()
}

async fn run(only_feature: Option<PathBuf>) {
    let log_filter = std::env::var("E2E_LOG").unwrap_or_else(|_| "warn,lapin=off,sqlx=error".into());
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(tracing_subscriber::EnvFilter::new(log_filter)))
        .with(CaptureLayer.with_filter(tracing_subscriber::filter::filter_fn(CaptureLayer::interested_in)))
        .try_init();
    let concurrency = std::env::var("E2E_CONCURRENCY").ok().and_then(|value| value.parse().ok()).unwrap_or(4);
    let junit_path =
        std::env::var("E2E_JUNIT").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/cucumber-junit.xml").into());
    if let Some(directory) = std::path::Path::new(&junit_path).parent() {
        std::fs::create_dir_all(directory).expect("JUnit directory");
    }
    let junit = std::fs::File::create(&junit_path).expect("JUnit file");

    let cucumber = ShopWorld::cucumber()
        .max_concurrent_scenarios(concurrency)
        .with_writer(
            writer::Basic::raw(std::io::stdout(), writer::Coloring::Auto, 0)
                .summarized()
                .tee::<ShopWorld, _>(writer::JUnit::for_tee(junit, 0))
                .normalized(),
        )
        .fail_on_skipped()
        .after(|_feature, _rule, _scenario, _finished, world| {
            async move {
                if let Some(world) = world {
                    if let Some(system) = world.system.take() {
                        tear_down(system, &world.expected_errors).await;
                    }
                }
            }
            .boxed_local()
        });
    // A mutation check only needs to know that something fails: stop at the first failure
    // instead of waiting out every other scenario's deadlines.
    let cucumber = if std::env::var("E2E_FAIL_FAST").is_ok_and(|value| value == "1") { cucumber.fail_fast() } else { cucumber };
    let (cucumber, input) = match only_feature {
        // Run by nextest: its arguments are not cucumber's.
        Some(feature) => (cucumber.with_default_cli(), feature),
        None => (cucumber, PathBuf::from(FEATURES)),
    };
    match tags_from_environment() {
        Some(tags) => {
            cucumber
                .filter_run_and_exit(input, move |feature, rule, scenario| {
                    let mut scenario_tags =
                        feature.tags.iter().chain(rule.into_iter().flat_map(|rule| &rule.tags)).chain(&scenario.tags);
                    scenario_tags.any(|tag| tags.contains(&tag.trim_start_matches('@').to_owned()))
                })
                .await
        }
        None => cucumber.run_and_exit(input).await,
    }
}

/// `E2E_TAGS=@stock,@orders`: only the scenarios tagged with one of these (on the scenario, its
/// rule or its feature) run. For tools that cannot pass cucumber's own `--tags`: cargo-mutants
/// and cargo-nextest run the binary with arguments of their own.
fn tags_from_environment() -> Option<Vec<String>> {
    let tags = std::env::var("E2E_TAGS").ok().filter(|tags| !tags.trim().is_empty())?;
    Some(tags.split(',').map(|tag| tag.trim().trim_start_matches('@').to_owned()).collect())
}

/// Checks that the scenario left nothing behind, then removes its system. Panics (failing the
/// scenario) on leftovers, unexpected errors, or a service that would not stop cleanly.
///
/// Work is looked for twice: while the services run (giving them time to finish what they were
/// doing: the system must settle), and after they stopped, when any message a consumer still
/// held unacknowledged has gone back to its queue and is counted, and every dead-letter queue is
/// empty unless the scenario drained what it expected there.
async fn tear_down(mut system: System, expected_errors: &[String]) {
    let settled = system.wait_until_settled(Duration::from_secs(15)).await;
    let stopped = system.stop_everything().await;
    let leftovers_after_stop = leftover_work(&system).await;
    let unexpected_errors: Vec<String> = logs::take_errors(&system.id)
        .into_iter()
        .filter(|error| !expected_errors.iter().any(|expected| error.contains(expected.as_str())))
        .collect();
    logs::forget(&system.id);
    let removed = system.remove_data().await;
    if let Err(error) = settled {
        panic!("the scenario left work behind: {error:#}");
    }
    assert!(leftovers_after_stop.is_empty(), "work was left once the services stopped: {}", leftovers_after_stop.join(", "));
    assert!(
        unexpected_errors.is_empty(),
        "the services logged errors the scenario did not expect:\n{}",
        unexpected_errors.join("\n")
    );
    if let Err(error) = stopped.and(removed) {
        panic!("{error:#}");
    }
}

/// Every queue, dead-letter queue and delay queue of the scenario's vhost that holds messages,
/// and every outbox that holds events.
async fn leftover_work(system: &System) -> Vec<String> {
    let mut leftovers = Vec::new();
    for queue in common::messaging::topology::QUEUES {
        use common::messaging::topology::{dead_letter_queue, delay_queue};
        for queue in [queue.to_string(), dead_letter_queue(queue), delay_queue(queue)] {
            match system.vhost.ready_messages(&queue).await {
                Ok(0) => {}
                Ok(count) => leftovers.push(format!("{queue}: {count}")),
                Err(error) => leftovers.push(format!("{queue}: {error:#}")),
            }
        }
    }
    match system.pending_outbox_events().await {
        Ok(pending) => leftovers.extend(pending),
        Err(error) => leftovers.push(format!("{error:#}")),
    }
    leftovers
}
