//! The benchmark `cargo xtask bench` runs: one table of what this system does on this machine,
//! measured in one run, driven by goose through the gateway.
//!
//! ```text
//! bench --host http://127.0.0.1:18090 --order-service http://127.0.0.1:8001 --report target/bench/latest.md
//! ```
//!
//! Phases, one after the other: the services' resident memory idle; a seeded catalog (300
//! products in 10 categories) and 64 signed-in customers; the gateway's own `/health` (the
//! ceiling); anonymous browsers listing the catalog and reading products; order intake (customers
//! posting orders as fast as they are answered) with the pipeline behind it (orders paid per
//! second while intake saturates it, the backlog left, the time to drain it); POST-to-paid on an
//! idle system and at fixed arrival rates of 50 and 200 orders per second, each order its own goose
//! transaction that polls until paid; memory again. Only point it at a system on this machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use load_tests::{decode, send};
use shop_testkit_base::model::{Address, NewOrder, NewProduct, Order, OrderLine, Registration};
use shop_testkit_base::{Call, Client};

const PRODUCTS: usize = 300;
const CATEGORIES: usize = 10;
const CUSTOMERS: usize = 64;
const PASSWORD: &str = "BenchPassword123";
/// Load phases' length.
const PHASE: usize = 15;

/// What the goose users share: the catalog and the customers, set before any attack.
struct Fixture {
    products: Vec<(String, f64)>,
    /// (token, user id)
    customers: Vec<(String, String)>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
/// The next customer or product a goose user takes (round robin).
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// POST-to-paid of every order the latency phases saw paid, from the order's own timestamps
/// (`updated_at - created_at`, in seconds): exact, unlike a poll.
static PAID_LATENCIES: Mutex<Vec<f64>> = Mutex::new(Vec::new());
/// Orders a POST-to-paid transaction gave up on (not paid within 30 s).
static UNPAID: AtomicUsize = AtomicUsize::new(0);
/// Orders placed in the current phase: (customer, order id).
static PLACED: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());

fn fixture() -> &'static Fixture {
    FIXTURE.get().expect("the fixture is made before the attacks")
}

fn next() -> usize {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Arguments {
    host: String,
    order_service: String,
    report: String,
}

fn arguments() -> anyhow::Result<Arguments> {
    let mut host = "http://127.0.0.1:18090".to_owned();
    let mut order_service = "http://127.0.0.1:8001".to_owned();
    let mut report = "target/bench/latest.md".to_owned();
    let mut rest = std::env::args().skip(1);
    while let Some(argument) = rest.next() {
        let value = rest.next().with_context(|| format!("{argument} needs a value"))?;
        match argument.as_str() {
            "--host" => host = value,
            "--order-service" => order_service = value,
            "--report" => report = value,
            other => bail!("unknown argument {other}: bench [--host URL] [--order-service URL] [--report FILE]"),
        }
    }
    Ok(Arguments { host, order_service, report })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = arguments()?;
    let mut table = Table::default();
    let shop = Client::new(arguments.host.as_str());
    let order_service = Client::new(arguments.order_service.as_str());

    let idle_memory = resident_memory();
    say("seeding the catalog and the customers");
    let fixture = seed(&shop).await?;
    FIXTURE.set(fixture).ok().expect("seeded once");

    say("the gateway's own /health: the ceiling");
    let ceiling = attack(&arguments.host, scenario!("Ceiling").register_transaction(transaction!(health)), 32, None).await?;
    let ceiling_rate = table.request_row(&ceiling, "GET /health (gateway)", "/health");

    say("anonymous browsers: catalog list, then product reads");
    let list = attack(&arguments.host, scenario!("Catalog").register_transaction(transaction!(list_catalog)), 32, None).await?;
    let list_rate = table.request_row(&list, "GET /products/?category= (anonymous, 20 a page)", "/products/?category=");
    let read = attack(&arguments.host, scenario!("Product").register_transaction(transaction!(read_product)), 32, None).await?;
    table.request_row(&read, "GET /products/{id} (anonymous)", "/products/{id}");
    table.note(format!("catalog list: {:.0}% of the gateway's /health ceiling", 100.0 * list_rate / ceiling_rate.max(1.0)));

    say("order intake, and the pipeline behind it");
    let before = pipeline(&order_service).await?;
    let intake_started = Instant::now();
    let intake = attack(&arguments.host, scenario!("Intake").register_transaction(transaction!(post_order)), 32, None).await?;
    let intake_seconds = intake_started.elapsed().as_secs_f64();
    let at_end = pipeline(&order_service).await?;
    table.request_row(&intake, "POST /orders/ (1 to 3 lines, as fast as answered)", "/orders/");
    let accepted = at_end.accepted - before.accepted;
    let paid_during = at_end.paid - before.paid;
    let drained = drain(&order_service, at_end.accepted, Duration::from_secs(300)).await?;
    let drain_seconds = drained.as_secs_f64();
    table.row(
        "pipeline: orders paid per second while intake saturates it",
        format!("{:.0}/s", paid_during as f64 / intake_seconds),
        format!(
            "{accepted} accepted, {} pending at the end of intake, drained {drain_seconds:.1} s later",
            at_end.accepted - at_end.paid
        ),
    );
    table.row(
        "pipeline: end to end, first POST to last paid",
        format!("{:.0}/s", accepted as f64 / (intake_seconds + drain_seconds)),
        String::new(),
    );

    {
        let label = "POST-to-paid, idle system (one order at a time)";
        say(label);
        PAID_LATENCIES.lock().expect("latencies").clear();
        UNPAID.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let scenario = scenario!("PostToPaid")
            .register_transaction(transaction!(post_until_paid).set_name("POST to paid"))
            .set_wait_time(Duration::from_millis(100), Duration::from_millis(100))?;
        let metrics = attack(&arguments.host, scenario, 1, None).await?;
        let seconds = started.elapsed().as_secs_f64();
        let mut latencies = PAID_LATENCIES.lock().expect("latencies").clone();
        latencies.sort_by(f64::total_cmp);
        let polled = metrics
            .transactions
            .iter()
            .flatten()
            .find(|transaction| transaction.run_times.counter > 0)
            .map(|transaction| transaction.run_times.percentile_us(0.5) as f64 / 1000.0)
            .unwrap_or(0.0);
        table.row(
            label,
            format!("p50 {:.1} ms, p99 {:.1} ms", quantile(&latencies, 0.5) * 1000.0, quantile(&latencies, 0.99) * 1000.0),
            format!(
                "{} orders at {:.0}/s; {} not paid within 30 s; as the polling client saw it: p50 {polled:.1} ms",
                latencies.len(),
                latencies.len() as f64 / seconds,
                UNPAID.load(Ordering::Relaxed)
            ),
        );
    }

    // Fixed arrival rates: open loop (goose throttles the whole attack to the rate, with more
    // users than the rate needs), every order's POST-to-paid read from its own timestamps.
    for rate in [50, 200] {
        let label = format!("POST-to-paid at {rate} orders/s");
        say(&label);
        PLACED.lock().expect("placed").clear();
        let before = pipeline(&order_service).await?;
        let started = Instant::now();
        let metrics =
            attack(&arguments.host, scenario!("Arrivals").register_transaction(transaction!(post_order)), 32, Some(rate)).await?;
        let seconds = started.elapsed().as_secs_f64();
        let at_end = pipeline(&order_service).await?;
        let drained = drain(&order_service, at_end.accepted, Duration::from_secs(300)).await?;
        let placed = PLACED.lock().expect("placed").clone();
        let mut latencies = paid_latencies(&shop, &placed).await?;
        latencies.sort_by(f64::total_cmp);
        let answered = metrics.requests.values().map(|request| request.success_count).sum::<usize>();
        table.row(
            &label,
            format!("p50 {:.1} ms, p99 {:.1} ms", quantile(&latencies, 0.5) * 1000.0, quantile(&latencies, 0.99) * 1000.0),
            format!(
                "{answered} orders at {:.0}/s; {} accepted, {} pending when the arrivals stopped, drained {:.1} s later",
                answered as f64 / seconds,
                at_end.accepted - before.accepted,
                at_end.accepted - at_end.paid,
                drained.as_secs_f64()
            ),
        );
    }

    let after_memory = resident_memory();
    for (service, idle) in &idle_memory {
        let after = after_memory.iter().find(|(name, _)| name == service).map_or(0, |(_, kib)| *kib);
        table.row(
            &format!("resident memory: {service}"),
            format!("{:.1} MiB idle", *idle as f64 / 1024.0),
            format!("{:.1} MiB after the run", after as f64 / 1024.0),
        );
    }
    if idle_memory.is_empty() {
        table.note("resident memory: no service process found on this machine (a system given by URL)".to_owned());
    }

    let text = table.render();
    println!("\n{text}");
    if let Some(parent) = std::path::Path::new(&arguments.report).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&arguments.report, &text)?;
    say(&format!("written to {}", arguments.report));
    Ok(())
}

fn say(message: &str) {
    println!("bench: {message}");
}

/// One goose attack of `users` users for [`PHASE`] seconds, quiet, and its metrics.
async fn attack(host: &str, scenario: Scenario, users: usize, throttle: Option<usize>) -> anyhow::Result<GooseMetrics> {
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
        .register_scenario(scenario)
        .set_default(GooseDefault::Host, host)?
        .set_default(GooseDefault::Users, users)?
        .set_default(GooseDefault::IncreaseRate, &*format!("{users}"))?
        .set_default(GooseDefault::RunTime, PHASE)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::Quiet, 1)?;
    if let Some(rate) = throttle {
        attack = attack.set_default(GooseDefault::ThrottleRequests, rate)?;
    }
    Ok(attack.execute().await?)
}

async fn health(user: &mut GooseUser) -> TransactionResult {
    send(user, &Call::health(), "/health", None).await?;
    Ok(())
}

async fn list_catalog(user: &mut GooseUser) -> TransactionResult {
    let category = next() % CATEGORIES;
    send(user, &Call::products_in_category(&format!("Bench {category}"), 20), "/products/?category=", None).await?;
    Ok(())
}

async fn read_product(user: &mut GooseUser) -> TransactionResult {
    let products = &fixture().products;
    let (id, _) = &products[next() % products.len()];
    send(user, &Call::product(id), "/products/{id}", None).await?;
    Ok(())
}

/// An order of 1 to 3 lines of the seeded catalog, by the next customer.
fn order_body(turn: usize) -> (String, NewOrder) {
    let fixture = fixture();
    let (token, user_id) = &fixture.customers[turn % fixture.customers.len()];
    let lines = 1 + turn % 3;
    let items: Vec<OrderLine> = (0..lines)
        .map(|line| {
            let (id, price) = &fixture.products[(turn * 7 + line * 31) % fixture.products.len()];
            OrderLine { product_id: id.clone(), quantity: 1, price: *price }
        })
        .collect();
    let address = Address {
        line1: "1 Bench Street".into(),
        line2: None,
        city: "Benchton".into(),
        state: "BT".into(),
        postal_code: "12345".into(),
        country: "Benchland".into(),
    };
    (token.clone(), NewOrder { user_id: user_id.clone(), items, shipping_address: address })
}

async fn send_order(user: &mut GooseUser) -> Result<(String, Option<String>), Box<TransactionError>> {
    let turn = next();
    let (token, order) = order_body(turn);
    let response = send(user, &Call::place_order(&token, None, &order), "/orders/", Some(201)).await?;
    let id = decode::<Order>(response).await.ok().map(|order| order.id);
    if let Some(id) = &id {
        PLACED.lock().expect("placed").push((turn % fixture().customers.len(), id.clone()));
    }
    Ok((token, id))
}

async fn post_order(user: &mut GooseUser) -> TransactionResult {
    send_order(user).await?;
    Ok(())
}

/// POST an order, then read it every 2 ms until it is paid; the order's own timestamps give the
/// exact POST-to-paid time.
async fn post_until_paid(user: &mut GooseUser) -> TransactionResult {
    let (token, Some(id)) = send_order(user).await? else { return Ok(()) };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let response = send(user, &Call::order(&token, &id), "/orders/{id} (poll)", None).await?;
        if let Ok(order) = decode::<Order>(response).await
            && order.status == "paid"
        {
            if let Some(seconds) = seconds_between(&order.created_at, &order.updated_at) {
                PAID_LATENCIES.lock().expect("latencies").push(seconds);
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    UNPAID.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Seconds between two RFC 3339 timestamps with microseconds (`2026-11-28T10:00:00.123456Z`).
fn seconds_between(from: &str, to: &str) -> Option<f64> {
    fn seconds_of_day(text: &str) -> Option<f64> {
        let time = text.split_once('T')?.1.trim_end_matches('Z');
        let time = time.split(['+']).next()?;
        let mut parts = time.split(':');
        let hours: f64 = parts.next()?.parse().ok()?;
        let minutes: f64 = parts.next()?.parse().ok()?;
        let seconds: f64 = parts.next()?.parse().ok()?;
        Some(hours * 3600.0 + minutes * 60.0 + seconds)
    }
    let mut difference = seconds_of_day(to)? - seconds_of_day(from)?;
    if difference < 0.0 {
        difference += 86_400.0;
    }
    Some(difference)
}

/// POST-to-paid of each placed order, from its own timestamps, read back by its customer.
async fn paid_latencies(shop: &Client, placed: &[(usize, String)]) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    let mut reading = tokio::task::JoinSet::new();
    for (customer, id) in placed {
        let (shop, id, token) = (shop.clone(), id.clone(), fixture().customers[*customer].0.clone());
        reading.spawn(async move {
            let order = shop.order(&token, &id).await?;
            anyhow::Ok(if order.status == "paid" { seconds_between(&order.created_at, &order.updated_at) } else { None })
        });
        if reading.len() >= 8 {
            latencies.extend(reading.join_next().await.expect("a task")??);
        }
    }
    while let Some(latency) = reading.join_next().await {
        latencies.extend(latency??);
    }
    Ok(latencies)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The catalog and the customers, made through the gateway with the typed client before any
/// measurement.
async fn seed(shop: &Client) -> anyhow::Result<Fixture> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut customers = Vec::new();
    let mut signing_up = tokio::task::JoinSet::new();
    for number in 0..CUSTOMERS {
        let (shop, email) = (shop.clone(), format!("bench-{run}-{number}@example.com"));
        // The gateway throttles logins per client address (10 a second after a burst): sign_up
        // waits as a 429's Retry-After says.
        signing_up.spawn(async move {
            let customer = shop.sign_up(&Registration::customer(email, PASSWORD, "Bench", "Customer")).await?;
            anyhow::Ok((customer.tokens.access_token, customer.user.id.to_string()))
        });
        if signing_up.len() >= 4 {
            customers.push(signing_up.join_next().await.expect("a task")??);
        }
    }
    while let Some(customer) = signing_up.join_next().await {
        customers.push(customer??);
    }
    let token = customers[0].0.clone();
    let products = Arc::new(Mutex::new(Vec::new()));
    let mut creating = tokio::task::JoinSet::new();
    for number in 0..PRODUCTS {
        let (shop, token, products) = (shop.clone(), token.clone(), Arc::clone(&products));
        creating.spawn(async move {
            let product = NewProduct {
                name: format!("Bench Product {number}"),
                description: Some("Seeded by the benchmark".into()),
                category: format!("Bench {}", number % CATEGORIES),
                price: 5.0 + (number % 96) as f64,
                quantity: 100_000_000,
            };
            let created = shop.create_product(&token, &product).await?;
            products.lock().expect("products").push((created.id, created.price));
            anyhow::Ok(())
        });
        if creating.len() >= 8 {
            creating.join_next().await.expect("a task")??;
        }
    }
    while let Some(created) = creating.join_next().await {
        created??;
    }
    // Every product's stock exists before an order names it (product events are asynchronous).
    let products = products.lock().expect("products").clone();
    for (id, _) in &products {
        let deadline = Instant::now() + Duration::from_secs(60);
        while shop.stock(&token, id).await.is_err() {
            if Instant::now() >= deadline {
                bail!("product {id} has no stock after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(Fixture { products, customers })
}

/// Orders accepted and paid so far, from the order service's metrics.
struct Pipeline {
    accepted: u64,
    paid: u64,
}

async fn pipeline(order_service: &Client) -> anyhow::Result<Pipeline> {
    let text = order_service.metrics().await?;
    let mut pipeline = Pipeline { accepted: 0, paid: 0 };
    for line in text.lines() {
        let value = || line.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        if line.starts_with("order_accepted_to_paid_seconds_count") {
            pipeline.paid += value();
        } else if line.starts_with("http_requests_total{")
            && line.contains(r#"method="POST""#)
            && line.contains(r#"route="/api/v1/orders/""#)
            && line.contains(r#"status="201""#)
        {
            pipeline.accepted += value();
        }
    }
    Ok(pipeline)
}

/// Waits until `accepted` orders are paid; how long that took.
async fn drain(order_service: &Client, accepted: u64, patience: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let now = pipeline(order_service).await?;
        if now.paid >= accepted {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= patience {
            bail!("{} orders still unpaid after {patience:?}", accepted - now.paid);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each service's resident memory in KiB, found by its executable's name.
fn resident_memory() -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let Ok(processes) = std::fs::read_dir("/proc") else { return found };
    for process in processes.flatten() {
        let Ok(executable) = std::fs::read_link(process.path().join("exe")) else { continue };
        let name = executable.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if !["user-service", "product-service", "inventory-service", "order-service"].contains(&name.as_str()) {
            continue;
        }
        let status = std::fs::read_to_string(process.path().join("status")).unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        found.push((name, kib));
    }
    found.sort();
    found
}

/// The report: one row per figure.
#[derive(Default)]
struct Table {
    rows: Vec<(String, String, String)>,
    notes: Vec<String>,
}

impl Table {
    fn row(&mut self, what: &str, figure: String, detail: String) {
        self.rows.push((what.to_owned(), figure, detail));
    }

    fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// A row for one request name of an attack; returns its rate in requests per second.
    fn request_row(&mut self, metrics: &GooseMetrics, what: &str, name: &str) -> f64 {
        let Some(request) = metrics.requests.values().find(|request| request.path == name) else {
            self.row(what, "no requests".to_owned(), String::new());
            return 0.0;
        };
        let seconds = metrics.duration.max(1) as f64;
        let rate = request.success_count as f64 / seconds;
        self.row(
            what,
            format!("{rate:.0} req/s"),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms; {} answered, {} failed, {} users",
                request.raw_data.percentile_us(0.5) as f64 / 1000.0,
                request.raw_data.percentile_us(0.99) as f64 / 1000.0,
                request.success_count,
                request.fail_count,
                metrics.maximum_users
            ),
        );
        rate
    }

    fn render(&self) -> String {
        let mut text = String::from("| measure | figure | detail |\n|---|---:|---|\n");
        for (what, figure, detail) in &self.rows {
            text.push_str(&format!("| {what} | {figure} | {detail} |\n"));
        }
        for note in &self.notes {
            text.push_str(&format!("\n{note}\n"));
        }
        text
    }
}
