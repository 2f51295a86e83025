//! Runs features/*.feature against the whole system: each scenario starts its own copy (fresh
//! databases, its own RabbitMQ vhost, the four services in-process, the real nginx in front) and
//! tears it down afterwards, failing the scenario if it left messages behind in any queue.
//!
//! Environment: `E2E_CONCURRENCY` (scenarios at once, default 4), `E2E_LOG` (service log filter,
//! default `warn,lapin=off`: lapin logs every expected channel close), `E2E_JUNIT` (where to write JUnit XML, default target/cucumber-junit.xml),
//! and the infrastructure variables of `support::infrastructure`.

mod steps;
mod support;

use std::time::Duration;

use cucumber::{World as _, WriterExt as _, writer};
use futures::FutureExt as _;

use support::system::System;
use support::world::ShopWorld;

const FEATURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/features");

fn main() {
    // cargo-nextest lists tests with `--list`; this target is run by `cargo test` and xtask, so
    // answer the listing with nothing instead of letting cucumber reject the flag.
    if std::env::args().any(|argument| argument == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("E2E_LOG").unwrap_or_else(|_| "warn,lapin=off,sqlx=error".into()),
        ))
        .with_test_writer()
        .try_init();
    let concurrency = std::env::var("E2E_CONCURRENCY").ok().and_then(|value| value.parse().ok()).unwrap_or(4);
    let junit_path =
        std::env::var("E2E_JUNIT").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/cucumber-junit.xml").into());
    if let Some(directory) = std::path::Path::new(&junit_path).parent() {
        std::fs::create_dir_all(directory).expect("JUnit directory");
    }
    let junit = std::fs::File::create(&junit_path).expect("JUnit file");

    ShopWorld::cucumber()
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
                if let Some(system) = world.and_then(|world| world.system.take()) {
                    tear_down(system).await;
                }
            }
            .boxed_local()
        })
        .run_and_exit(FEATURES)
        .await;
}

/// Checks that the scenario left no message behind, then removes its system. Panics (failing
/// the scenario) on leftovers or on a service that would not stop cleanly.
///
/// Messages are counted twice: once while the services run (giving them a moment to finish what
/// they were doing), and once after they stopped, when any message a consumer still held
/// unacknowledged has gone back to its queue and is counted too.
async fn tear_down(mut system: System) {
    let leftovers_while_running = leftover_messages(&system, Duration::from_secs(10)).await;
    let stopped = system.stop_everything().await;
    let leftovers_after_stop =
        if leftovers_while_running.is_empty() { leftover_messages(&system, Duration::ZERO).await } else { Vec::new() };
    let removed = system.remove_data().await;
    assert!(leftovers_while_running.is_empty(), "the scenario left messages behind: {}", leftovers_while_running.join(", "));
    assert!(
        leftovers_after_stop.is_empty(),
        "messages were still unacknowledged when the scenario ended: {}",
        leftovers_after_stop.join(", ")
    );
    if let Err(error) = stopped.and(removed) {
        panic!("{error:#}");
    }
}

/// Every queue and dead-letter queue of the scenario's vhost that still holds ready messages,
/// waiting up to `patience` for them to drain.
async fn leftover_messages(system: &System, patience: Duration) -> Vec<String> {
    let queues: Vec<String> = common::messaging::topology::QUEUES
        .iter()
        .flat_map(|queue| [queue.to_string(), common::messaging::topology::dead_letter_queue(queue)])
        .collect();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let mut leftovers = Vec::new();
        for queue in &queues {
            match system.vhost.ready_messages(queue).await {
                Ok(0) => {}
                Ok(count) => leftovers.push(format!("{queue}: {count}")),
                Err(error) => leftovers.push(format!("{queue}: {error:#}")),
            }
        }
        if leftovers.is_empty() || tokio::time::Instant::now() >= deadline {
            return leftovers;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
