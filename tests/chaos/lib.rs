//! A seeded chaos run: customers registering, ordering one or several products, cancelling,
//! looking things up, and staff shipping, delivering and refunding, while real faults hit the
//! shop: its own PostgreSQL, RabbitMQ and MongoDB-wire server (started by the run on ports and
//! data directories of their own, or as containers of the run's images under `cargo xtask e2e
//! --containers`) stopped, and killed with SIGKILL, then started again on the same data; replicas of the order and inventory services (2 of each) killed as processes die, their
//! ports refusing connections; and each replica's database and broker connections cut, hung and
//! slowed. The system is started the way the harness starts one (its own databases and vhost, the
//! services in-process behind the real nginx).
//!
//! `cargo xtask chaos [--seed N] [--operations M]` runs it; so does `cargo test --workspace`
//! (a short run with a fresh seed, which is how CI runs it). The plan (every operation with its
//! target, every fault with its kind, target and length) is drawn from the seed alone before
//! anything runs: the same seed gives the same plan, whose digest is printed. Every fault kind
//! meets every target it can hit at least once in every run (three lanes of faults run beside the
//! customers until each has gone through every kind against every target, once per 200
//! operations); each fault lasts at least twice the consumers' retry budget and twice the
//! services' longest dependency timeout, and counts only once proved in effect and then healed.
//!
//! Customers behave as careful clients do: every order is sent with an `Idempotency-Key` and,
//! after a 5xx or no answer, sent again with it (at most [`ORDER_TRIES`] times); one order in four
//! hangs up on its first try a few milliseconds in (a client that timed out) and retries.
//!
//! Invariants (what the shop promised, order by order; see invariants.rs):
//! - every fault proved in effect and healed, and every kind met every target;
//! - every accepted order ends as what its customer and staff did with it says (paid when nothing
//!   was asked; cancelled, shipped, delivered or refunded when that was accepted); an order the
//!   shop cancelled was short of a product at the time, which the inventory's history must show,
//!   and never of the products the plan keeps always in stock;
//! - one order per order request, whether its client hung up or retried;
//! - per order, its stock reserved once, released at most once, held exactly while the order holds
//!   stock; per product, initial = available + reserved, and reserved = what those orders hold;
//! - nothing left in any queue, and the dead letters are exactly the poison messages injected;
//! - no 5xx but a 502, 503 or 504 on the routes of a service a fault took down (never a GET while
//!   one of its replicas was healthy), and no 4xx to a valid request. Excused answers are counted
//!   and printed by fault.
//!
//! The system is then torn down as a scenario's is: it must settle, leave nothing in any queue or
//! outbox, and its services must have logged no error but the poison messages' dead-lettering.

pub mod driver;
pub mod faults;
pub mod invariants;
pub mod plan;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_testkit::base::own_servers::OwnServers;
use shop_testkit::system::{STAFF_EMAIL, ServiceName, Setup, System};

use driver::Customers;
use faults::Faults;
use invariants::{EndState, HistoryEntry, check};
use plan::Plan;

/// Operations when none are asked for: a short run, as `cargo test` (and so CI) runs it.
pub const SHORT_RUN: usize = 80;
/// How long after a fault's proved heal a 502/503/504 still counts as part of it: the gateway
/// leaves a replica it saw fail alone for 2 s (`fail_timeout`).
pub const GRACE: Duration = Duration::from_secs(3);
/// How long the system may take to finish its work once every fault is healed: a consumer paused
/// by an outage probes again after a back-off of up to 30 s.
pub const SETTLE_PATIENCE: Duration = Duration::from_secs(180);
pub const PASSWORD: &str = "Password123";
pub const PRODUCTS: usize = 6;
/// The first products of the catalog have a million units each: no order ever runs them short,
/// so no cancellation naming them is justified.
pub const ALWAYS_IN_STOCK: usize = 2;
pub const FIRST_CUSTOMERS: usize = 4;
/// How many times a customer sends a request (an order with the same `Idempotency-Key`) before
/// giving up, as a client retrying after a hang-up, a 5xx or no answer does.
pub const ORDER_TRIES: u32 = 5;
/// The wait before a retry, doubled for each further one (0.5 + 1 + 2 + 4 s in all).
pub const RETRY_WAIT: Duration = Duration::from_millis(500);

/// Runs the plan drawn from `seed`; true when an invariant failed.
pub async fn run(seed: u64, operations: usize) -> bool {
    shop_testkit::logs::install();
    let started = Instant::now();
    let mut plan = Plan::draw(seed, operations);
    println!("chaos: seed {seed}, {operations} operations, plan digest {:016x}", plan.digest());
    println!("chaos: reproduce with `cargo xtask chaos --seed {seed} --operations {operations}`");
    println!(
        "chaos: {} faults on {} lanes, every one at least {:.1} s (twice the consumers' retry budget of {:.1} s, and the services' timeouts)",
        plan.lanes.iter().map(|lane| lane.faults.len()).sum::<usize>(),
        plan.lanes.len(),
        plan::shortest_fault().as_secs_f64(),
        plan::retry_budget().as_secs_f64()
    );

    let root = std::env::temp_dir().join(format!("chaos-{seed}-{}", std::process::id()));
    let servers =
        OwnServers::start(&root).await.unwrap_or_else(|error| panic!("the run's own servers failed to start: {error:#}"));
    let urls: &'static shop_testkit::infrastructure::Infrastructure = Box::leak(Box::new(servers.urls()));
    println!("chaos: its own servers: PostgreSQL {}, MongoDB {}, RabbitMQ {}", urls.postgres, urls.mongodb, urls.rabbitmq);
    let replicas = BTreeMap::from([(ServiceName::Order, 2), (ServiceName::Inventory, 2)]);
    let system = System::start(&Setup { replicas, staff_only: true, servers: Some(urls), ..Setup::default() })
        .await
        .unwrap_or_else(|error| panic!("the shop failed to start: {error:#}"));
    let mut customers = Customers::new(system.gateway_url(), system.vhost.clone());
    // Registered, made staff by the operator's command, then logged in again for a token with
    // the role (registering again logs in: the account exists).
    customers.register(STAFF_EMAIL, false).await.unwrap_or_else(|error| panic!("setting up the staff: {error}"));
    system.make_staff(STAFF_EMAIL).await.unwrap_or_else(|error| panic!("making the staff: {error:#}"));
    customers.register(STAFF_EMAIL, false).await.unwrap_or_else(|error| panic!("setting up the staff: {error}"));
    for number in 0..FIRST_CUSTOMERS {
        let email = format!("chaos-{seed}-{number}@example.com");
        customers.register(&email, true).await.unwrap_or_else(|error| panic!("setting up customers: {error}"));
    }
    customers.create_catalog(&plan.initial_stock).await.unwrap_or_else(|error| panic!("setting up the catalog: {error}"));

    let system = Arc::new(tokio::sync::Mutex::new(system));
    let servers = Arc::new(tokio::sync::Mutex::new(servers));
    let began = Instant::now();
    customers.began = began;
    let faults = Faults::new(Arc::clone(&system), Arc::clone(&servers), began);
    let lanes: Vec<_> = plan.lanes.clone().into_iter().map(|lane| tokio::spawn(Arc::clone(&faults).run_lane(lane))).collect();
    // The planned operations, and further ones drawn the same way while a lane is still busy.
    let mut index = 0;
    while index < operations || !lanes.iter().all(|lane| lane.is_finished()) {
        let step = plan.step(index);
        customers.execute(&step.operation, seed).await;
        tokio::time::sleep(step.pause).await;
        index += 1;
    }
    for lane in lanes {
        if let Err(error) = lane.await {
            panic!("a fault lane panicked: {error}");
        }
    }
    let run_end = Instant::now();
    let operations_done = started.elapsed();
    let records = faults.records.lock().expect("records").clone();
    drop(faults);
    let system = Arc::try_unwrap(system).unwrap_or_else(|_| panic!("the lanes are over")).into_inner();

    let settled = system.wait_until_settled(SETTLE_PATIENCE).await.map_err(|error| format!("{error:#}"));
    let end = read_end_state(&customers, &system, settled).await;
    let judged = check(&customers, &plan, &records, &end, run_end);
    let failed = judged.invariants.iter().filter(|invariant| !invariant.failures.is_empty()).count();
    report::print(&customers, index, &records, &judged, &end, operations_done, started.elapsed());

    // The run's faults, its poison messages by correlation id (each excuses only its own
    // dead-lettering's lines; read_end_state took them out of the dead-letter queue), and the
    // orders staff shipped (a refund after that keeps their stock).
    let mut expectations = shop_testkit::teardown::Expectations::after_faults("the chaos run's faults");
    for number in &customers.tally.poison {
        let correlation_id = format!("chaos-poison-{number}");
        expectations = expectations.with_dead_letters_taken_out(common::messaging::topology::ORDER_CREATED, &correlation_id);
    }
    expectations.shipped_orders = customers.shipped_orders();
    let torn_down =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(shop_testkit::teardown::tear_down(system, &expectations)))
            .await;
    let teardown_failed = torn_down.is_err();
    println!("  {}  the system settled and left nothing behind (teardown)", if teardown_failed { "FAILED" } else { "held  " });
    match Arc::try_unwrap(servers) {
        Ok(servers) => servers.into_inner().shut_down().await,
        Err(_) => println!("chaos: the run's own servers are still shared; they are killed as the process ends"),
    }
    let passed = judged.invariants.len() - failed + usize::from(!teardown_failed);
    let failed = failed + usize::from(teardown_failed);
    // The line `cargo xtask e2e` counts.
    println!("test result: {}. {passed} passed; {failed} failed (chaos seed {seed})", if failed == 0 { "ok" } else { "FAILED" });
    failed > 0
}

/// Reads what the invariants judge, once the system has settled: the orders, the stock and its
/// history per product, and the dead letters (taken out of their queues, so the teardown finds
/// them empty).
async fn read_end_state(customers: &Customers, system: &System, settled: Result<(), String>) -> EndState {
    let token = &customers.staff_token;
    let patiently = |what: String| async move {
        // The gateway may still avoid a replica that failed moments ago.
        let mut last = String::new();
        for _ in 0..30 {
            match customers.shop.send(&shop_testkit::base::Call::get(what.clone()).bearer(token)).await {
                Ok(answer) if answer.status == 200 => return Ok(answer),
                answer => last = format!("{answer:?}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("GET {what}: {last}"))
    };
    let mut stock = Vec::new();
    let mut history = Vec::new();
    for product in &customers.products {
        let read = patiently(shop_testkit::base::api::paths::stock(&product.id)).await.and_then(|answer| {
            answer
                .expect::<shop_testkit::base::model::Stock>("stock", 200)
                .map(|stock| (stock.available_quantity, stock.reserved_quantity))
                .map_err(|error| error.to_string())
        });
        stock.push(read);
        let mut entries: Vec<HistoryEntry> = Vec::new();
        let read = loop {
            let path = format!("/api/v1/inventory/{}/history?skip={}&limit=100", product.id, entries.len());
            match patiently(path)
                .await
                .and_then(|answer| answer.expect::<Vec<HistoryEntry>>("history", 200).map_err(|error| error.to_string()))
            {
                Ok(page) if page.is_empty() => break Ok(entries),
                Ok(page) => entries.extend(page),
                Err(error) => break Err(error),
            }
        };
        history.push(read);
    }
    let listed = customers.listed_orders().await.unwrap_or_else(|error| {
        println!("chaos: {error}");
        BTreeMap::new()
    });
    let mut dead_letters = BTreeMap::new();
    for queue in common::messaging::topology::QUEUES {
        let dead_letter_queue = common::messaging::topology::dead_letter_queue(queue);
        let held = system.vhost.drain(&dead_letter_queue).await.map_err(|error| format!("{error:#}"));
        dead_letters.insert(dead_letter_queue, held);
    }
    EndState { listed, stock, history, dead_letters, settled }
}
