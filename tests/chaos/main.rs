//! A seeded chaos run: customers registering, ordering one or several products, cancelling and
//! asking for refunds, while faults are injected at random into a system started the way the
//! harness starts one (its own databases and vhost, the services in-process behind the real
//! nginx), with 2 replicas of the order and inventory services. At the end it checks its
//! invariants and prints them.
//!
//! `cargo xtask chaos [--seed N] [--operations M]` runs it; so does `cargo test --workspace`
//! (a short run with a fresh seed, which is how CI runs it). The plan (every operation and every
//! fault, with its target and length) is drawn from the seed alone before anything runs: the same
//! seed gives the same plan, whose digest is printed. What the system answers may differ from run
//! to run (a request may race a fault), and every answer is judged by the invariants.
//!
//! Customers behave as careful clients do: every order is sent with an `Idempotency-Key` and, after
//! a 5xx or no answer, sent again with it (at most [`ORDER_TRIES`] times); one order in four hangs
//! up on its first try a few milliseconds in (a client that timed out) and retries.
//!
//! Invariants:
//! - every order the shop accepted (201) exists, and every order is in a state the flow allows it
//!   to end in: paid, cancelled (by the customer, or by the shop with a reason) or refunded, and
//!   cancelled or refunded exactly when the customer's request for it was accepted;
//! - one order per order request: no two requests answered with one order, and no more orders
//!   stored without a 201 than requests that never got one (a retry that placed a second order
//!   would break it);
//! - per product, the initial stock = available + reserved, and reserved = what the paid orders
//!   hold (no order in this run ships);
//! - no message is left in any queue or delay queue, and nothing is dead-lettered except the
//!   poison messages the run itself injected;
//! - no 5xx outside a declared outage window (a fault in effect, or healed less than
//!   [`GRACE`] ago), and no 4xx at all (the run sends only valid requests).
//!
//! The system is then torn down as a scenario's is: it must settle, leave nothing in any queue or
//! outbox, and its services must have logged no error but the poison messages' dead-lettering.

mod driver;
mod invariants;
mod plan;
mod report;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shop_testkit::system::{ServiceName, Setup, System};

use driver::Chaos;
use invariants::check;
use plan::Plan;
use report::print_report;

/// Operations when none are asked for: a short run, as `cargo test` (and so CI) runs it.
pub const SHORT_RUN: usize = 80;
/// How long after a fault is healed a 5xx still counts as part of the outage: clients reconnect,
/// nginx tries a restarted replica again.
pub const GRACE: Duration = Duration::from_secs(15);
/// How long the system may take to finish its work once every fault is healed: a consumer paused
/// by an outage probes again after a back-off of up to 30 s.
pub const SETTLE_PATIENCE: Duration = Duration::from_secs(180);
pub const PASSWORD: &str = "Password123";
pub const PRODUCTS: usize = 6;
pub const FIRST_CUSTOMERS: usize = 4;
/// Most faults in effect at once.
pub const CONCURRENT_FAULTS: usize = 2;
/// How many times a customer sends an order (the same request, with the same `Idempotency-Key`)
/// before giving up, as a client retrying after a hang-up, a 5xx or no answer does.
pub const ORDER_TRIES: u32 = 3;
/// The wait before a retry, doubled for each further one.
pub const RETRY_WAIT: Duration = Duration::from_millis(300);

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    // cargo-nextest's protocol: the run is one test.
    if arguments.iter().any(|argument| argument == "--list") {
        if !arguments.iter().any(|argument| argument == "--ignored") {
            println!("chaos: test");
        }
        return;
    }
    let value_of = |flag: &str| -> Option<u64> {
        let position = arguments.iter().position(|argument| argument == flag)?;
        let value = arguments.get(position + 1).unwrap_or_else(|| panic!("{flag} needs a number"));
        Some(value.parse().unwrap_or_else(|_| panic!("{flag} needs a number, not {value:?}")))
    };
    let seed = value_of("--seed").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos() as u64).unwrap_or(1)
    });
    let operations = value_of("--operations").map(|count| count as usize).unwrap_or(SHORT_RUN);

    // SAFETY: no other thread exists yet; the runtime is built below.
    unsafe { shop_testkit::system::poison_service_environment() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let failed = runtime.block_on(run(seed, operations));
    std::process::exit(if failed { 1 } else { 0 });
}

/// Runs the plan drawn from `seed`; true when an invariant failed.
async fn run(seed: u64, operations: usize) -> bool {
    shop_testkit::logs::install();
    let started = Instant::now();
    let plan = Plan::draw(seed, operations);
    println!("chaos: seed {seed}, {operations} operations, plan digest {:016x}", plan.digest());
    println!("chaos: reproduce with `cargo xtask chaos --seed {seed} --operations {operations}`");

    let replicas = BTreeMap::from([(ServiceName::Order, 2), (ServiceName::Inventory, 2)]);
    let system = System::start(&Setup { replicas, ..Setup::default() })
        .await
        .unwrap_or_else(|error| panic!("the shop failed to start: {error:#}"));
    let mut chaos = Chaos::new(system);
    for number in 0..FIRST_CUSTOMERS {
        chaos.register(number, seed).await.unwrap_or_else(|error| panic!("setting up customers: {error}"));
    }
    chaos.create_catalog(&plan.initial_stock).await.unwrap_or_else(|error| panic!("setting up the catalog: {error}"));

    chaos.began = Instant::now();
    for step in &plan.steps {
        chaos.execute(&step.operation, seed).await;
        tokio::time::sleep(step.pause).await;
    }
    chaos.heal_everything().await;
    let operations_done = started.elapsed();
    let routed = chaos.wait_until_routed().await;
    let settled = chaos.system.wait_until_settled(SETTLE_PATIENCE).await;

    let invariants = check(&chaos, &plan, routed, settled).await;
    let failed = invariants.iter().filter(|invariant| !invariant.failures.is_empty()).count();
    print_report(&chaos, &invariants, operations_done, started.elapsed());

    // What the run injected on purpose is taken out before the teardown, which fails on any
    // message left in any queue and on any error logged but the poison messages' dead-lettering.
    let dead_letters = common::messaging::topology::dead_letter_queue(common::messaging::topology::ORDER_CREATED);
    let _ = chaos.system.vhost.drain(&dead_letters).await;
    let Chaos { system, .. } = chaos;
    let torn_down = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(shop_testkit::teardown::tear_down(
        system,
        // The run's faults, and its poison messages by their correlation id: they excuse only the
        // lines logged while handling those messages; the run took them out of the dead-letter
        // queue above.
        &shop_testkit::teardown::Expectations::after_faults("the chaos run's faults")
            .with_dead_letters_taken_out(common::messaging::topology::ORDER_CREATED, "chaos-poison"),
    )))
    .await;
    let teardown_failed = torn_down.is_err();
    println!("  {}  the system settled and left nothing behind (teardown)", if teardown_failed { "FAILED" } else { "held  " });
    let passed = invariants.len() - failed + usize::from(!teardown_failed);
    let failed = failed + usize::from(teardown_failed);
    // The line `cargo xtask e2e` counts.
    println!("test result: {}. {passed} passed; {failed} failed (chaos seed {seed})", if failed == 0 { "ok" } else { "FAILED" });
    failed > 0
}
