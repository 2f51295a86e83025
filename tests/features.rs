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
//! of `shop_testkit::infrastructure`. Nothing else in the environment reaches the services: to prove
//! it, every variable they read is set to an unusable value before anything starts.

mod steps;

use std::path::PathBuf;

use cucumber::{World as _, WriterExt as _, writer};
use futures::FutureExt as _;

use shop_testkit::logs;
use shop_testkit::teardown::tear_down;
use shop_testkit::world::ShopWorld;

const FEATURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/features");

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

    // SAFETY: no other thread exists yet; the runtime is built below.
    unsafe { shop_testkit::system::poison_service_environment() };
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
    logs::install();
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
                if let Some(world) = world
                    && let Some(system) = world.system.take()
                {
                    tear_down(system, &world.teardown_expectations()).await;
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
