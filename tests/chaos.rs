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

use shop_testkit as support;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use support::proxy::Mode;
use support::system::{Dependency, Instance, ServiceName, Setup, System};

/// Operations when none are asked for: a short run, as `cargo test` (and so CI) runs it.
const SHORT_RUN: usize = 80;
/// How long after a fault is healed a 5xx still counts as part of the outage: clients reconnect,
/// nginx tries a restarted replica again.
const GRACE: Duration = Duration::from_secs(15);
/// How long the system may take to finish its work once every fault is healed: a consumer paused
/// by an outage probes again after a back-off of up to 30 s.
const SETTLE_PATIENCE: Duration = Duration::from_secs(180);
const PASSWORD: &str = "Password123";
const PRODUCTS: usize = 6;
const FIRST_CUSTOMERS: usize = 4;
/// Most faults in effect at once.
const CONCURRENT_FAULTS: usize = 2;
/// How many times a customer sends an order (the same request, with the same `Idempotency-Key`)
/// before giving up, as a client retrying after a hang-up, a 5xx or no answer does.
const ORDER_TRIES: u32 = 3;
/// The wait before a retry, doubled for each further one.
const RETRY_WAIT: Duration = Duration::from_millis(300);

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
    unsafe { support::system::poison_service_environment() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let failed = runtime.block_on(run(seed, operations));
    std::process::exit(if failed { 1 } else { 0 });
}

/// SplitMix64: a few lines, and the same numbers from the same seed on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A number in `range` (inclusive).
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum FaultKind {
    /// The instance's database connections reset and new ones refused.
    DatabaseDown,
    /// The instance's broker connections reset and new ones refused.
    BrokerDown,
    /// The instance's broker connections hang (mid-publish, mid-confirm), then reset when healed.
    BrokerHangsThenResets,
    /// The instance killed where it stands, started again when healed.
    Killed,
}

#[derive(Debug, Clone, PartialEq)]
enum Operation {
    Register,
    /// Lines of (product, quantity), for the customer drawn by `customer` (modulo how many exist),
    /// sent with an `Idempotency-Key` and retried with it (see [`ORDER_TRIES`]). With
    /// `hang_up_after_ms`, the first try's client hangs up that many milliseconds in, as a client
    /// that timed out, and then retries.
    Order {
        customer: u64,
        lines: Vec<(usize, i64)>,
        hang_up_after_ms: Option<u64>,
    },
    /// Cancels one of the customer's orders (drawn by `pick`, modulo how many it has).
    Cancel {
        customer: u64,
        pick: u64,
    },
    /// Asks for a refund of one of the customer's orders.
    Refund {
        customer: u64,
        pick: u64,
    },
    Fault {
        kind: FaultKind,
        instance: Instance,
    },
    Heal {
        instance: Instance,
    },
    /// A message no consumer can decode, published to `order_created`.
    Poison,
}

struct Step {
    operation: Operation,
    /// Think time after the operation.
    pause: Duration,
}

/// The whole run, drawn from the seed before anything starts.
struct Plan {
    initial_stock: Vec<i64>,
    steps: Vec<Step>,
}

impl Plan {
    fn draw(seed: u64, operations: usize) -> Self {
        let mut random = Random(seed);
        let initial_stock = (0..PRODUCTS).map(|_| random.between(10, 40) as i64).collect();
        let targets: Vec<Instance> = [ServiceName::Order, ServiceName::Inventory]
            .into_iter()
            .flat_map(|service| (1..=2).map(move |replica| Instance { service, replica }))
            .collect();
        // Faults in effect: the instance and the operation at which it is healed.
        let mut active: Vec<(Instance, usize)> = Vec::new();
        let mut steps = Vec::new();
        for index in 0..operations {
            active.retain(|(instance, heal_at)| {
                if *heal_at > index {
                    return true;
                }
                steps.push(Step { operation: Operation::Heal { instance: *instance }, pause: Duration::ZERO });
                false
            });
            let roll = random.next() % 100;
            let operation = match roll {
                0..=4 => Operation::Register,
                5..=59 => {
                    let line_count = random.between(1, 3) as usize;
                    let mut lines: Vec<(usize, i64)> = Vec::new();
                    for _ in 0..line_count {
                        let product = (random.next() % PRODUCTS as u64) as usize;
                        if !lines.iter().any(|(chosen, _)| *chosen == product) {
                            lines.push((product, random.between(1, 3) as i64));
                        }
                    }
                    // One order in four hangs up on its first try, 1 to 8 ms in (an order is answered in a few milliseconds).
                    let hang_up_after_ms = (random.next() % 4 == 0).then(|| random.between(1, 8));
                    Operation::Order { customer: random.next(), lines, hang_up_after_ms }
                }
                60..=71 => Operation::Cancel { customer: random.next(), pick: random.next() },
                72..=79 => Operation::Refund { customer: random.next(), pick: random.next() },
                80..=81 => Operation::Poison,
                _ => {
                    let free: Vec<Instance> =
                        targets.iter().copied().filter(|target| !active.iter().any(|(busy, _)| busy == target)).collect();
                    if active.len() >= CONCURRENT_FAULTS || free.is_empty() {
                        Operation::Register
                    } else {
                        let instance = free[(random.next() % free.len() as u64) as usize];
                        let kind = match random.next() % 4 {
                            0 => FaultKind::DatabaseDown,
                            1 => FaultKind::BrokerDown,
                            2 => FaultKind::BrokerHangsThenResets,
                            _ => FaultKind::Killed,
                        };
                        active.push((instance, index + random.between(10, 60) as usize));
                        Operation::Fault { kind, instance }
                    }
                }
            };
            steps.push(Step { operation, pause: Duration::from_millis(random.between(0, 80)) });
        }
        for (instance, _) in active {
            steps.push(Step { operation: Operation::Heal { instance }, pause: Duration::ZERO });
        }
        Self { initial_stock, steps }
    }

    /// A short fingerprint of the plan, to see that two runs of one seed drew the same one.
    fn digest(&self) -> u64 {
        let text = format!(
            "{:?}{:?}",
            self.initial_stock,
            self.steps.iter().map(|step| (&step.operation, step.pause)).collect::<Vec<_>>()
        );
        // FNV-1a.
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
    }
}

struct Customer {
    token: String,
    user_id: String,
    address: Value,
    orders: Vec<usize>,
}

struct Product {
    id: String,
    price: Value,
}

struct PlacedOrder {
    id: String,
    /// A `DELETE` answered 204.
    cancelled_by_customer: bool,
    /// A refund answered 200.
    refunded: bool,
}

/// When faults were in effect: a 5xx inside one of these is part of a declared outage.
#[derive(Default)]
struct OutageWindows {
    open: HashMap<Instance, Instant>,
    closed: Vec<(Instant, Instant)>,
}

impl OutageWindows {
    fn covers(&self, at: Instant) -> bool {
        !self.open.is_empty() || self.closed.iter().any(|(start, end)| *start <= at && at <= *end + GRACE)
    }
}

#[derive(Default)]
struct Tally {
    operations: BTreeMap<&'static str, usize>,
    faults: BTreeMap<FaultKind, usize>,
    /// Order requests made (each with its own idempotency key, however often it was sent).
    order_requests: usize,
    accepted_orders: usize,
    /// Order requests that got no 201 in any of their tries.
    refused_in_outage: usize,
    /// First tries whose client hung up.
    hung_up: usize,
    /// 201s that answered a retry with the order an earlier try placed.
    replayed: usize,
    poison: usize,
    cancels_accepted: usize,
    refunds_accepted: usize,
    /// 5xx answers inside a declared outage window.
    unavailable_in_window: usize,
    /// Answers no invariant allows, as they came.
    violations: Vec<String>,
}

struct Chaos {
    system: System,
    /// When the operations began: the timeline's zero.
    began: Instant,
    http: reqwest::Client,
    customers: Vec<Customer>,
    products: Vec<Product>,
    orders: Vec<PlacedOrder>,
    windows: OutageWindows,
    active_faults: HashMap<Instance, FaultKind>,
    tally: Tally,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
    text: String,
}

impl Chaos {
    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Result<Answer, String> {
        self.send_with_headers(method, path, token, body, &[]).await
    }

    async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.system.gateway_url()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|error| format!("{method} {path} got no answer: {error}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Ok(Answer { status, headers, json: serde_json::from_str(&text).unwrap_or(Value::Null), text })
    }

    /// Judges an answer that is neither the expected success nor an expected refusal: a 5xx is
    /// allowed inside an outage window, anything else is a violation.
    fn judge_unexpected(&mut self, what: &str, sent_at: Instant, answer: &Result<Answer, String>) {
        match answer {
            Ok(answer) if answer.status >= 500 && self.windows.covers(sent_at) => self.tally.unavailable_in_window += 1,
            Ok(answer) => self.tally.violations.push(format!("{what}: {} {}", answer.status, answer.text)),
            Err(error) if self.windows.covers(sent_at) => {
                self.tally.unavailable_in_window += 1;
                let _ = error;
            }
            Err(error) => self.tally.violations.push(format!("{what}: {error}")),
        }
    }

    /// Registers, logs in and gives an address to a new customer, outside any fault (setup) or
    /// during the run (the user service is never faulted, so any failure is a violation).
    async fn register(&mut self, number: usize, seed: u64) -> Result<(), String> {
        let email = format!("chaos-{seed}-{number}@example.com");
        let body = json!({"email": email, "password": PASSWORD, "first_name": "Chaos", "last_name": "Customer"});
        let registered = self.send(Method::POST, "/api/v1/auth/register", None, Some(body)).await?;
        if registered.status != 201 {
            return Err(format!("registering {email}: {} {}", registered.status, registered.text));
        }
        let form = format!(
            "username={}&password={PASSWORD}",
            url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>()
        );
        let response = self
            .http
            .post(format!("{}/api/v1/auth/login", self.system.gateway_url()))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|error| format!("logging in {email}: {error}"))?;
        let login: Value = response.json().await.map_err(|error| format!("logging in {email}: {error}"))?;
        let token = login["access_token"].as_str().ok_or_else(|| format!("logging in {email}: {login}"))?.to_owned();
        let me = self.send(Method::GET, "/api/v1/users/me", Some(&token), None).await?;
        if me.status != 200 {
            return Err(format!("GET /users/me of {email}: {} {}", me.status, me.text));
        }
        let address = json!({
            "line1": format!("{number} Chaos Street"), "city": "Entropy", "state": "EX",
            "postal_code": "12345", "country": "Example Country", "is_default": true
        });
        let added = self.send(Method::POST, "/api/v1/users/me/addresses", Some(&token), Some(address.clone())).await?;
        if added.status != 201 {
            return Err(format!("adding {email}'s address: {} {}", added.status, added.text));
        }
        let mut shipping = address;
        shipping.as_object_mut().expect("an object").remove("is_default");
        // Orders name their customer by the id as a string.
        let user_id = match &me.json["id"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        self.customers.push(Customer { token, user_id, address: shipping, orders: Vec::new() });
        Ok(())
    }

    async fn create_catalog(&mut self, initial_stock: &[i64]) -> Result<(), String> {
        let token = self.customers[0].token.clone();
        for (index, quantity) in initial_stock.iter().enumerate() {
            let price = format!("{}.99", 10 + index * 7);
            let body = json!({
                "name": format!("Chaos Product {index}"), "description": "drawn by the chaos run",
                "category": "Chaos", "price": price.parse::<f64>().expect("a price"), "quantity": quantity
            });
            let created = self.send(Method::POST, "/api/v1/products/", Some(&token), Some(body)).await?;
            if created.status != 201 {
                return Err(format!("creating a product: {} {}", created.status, created.text));
            }
            let id =
                created.json["_id"].as_str().ok_or_else(|| format!("a product without an _id: {}", created.text))?.to_owned();
            self.products.push(Product { id, price: created.json["price"].clone() });
        }
        let this = &*self;
        for (product, quantity) in this.products.iter().zip(initial_stock) {
            let path = format!("/api/v1/inventory/{}", product.id);
            let what = format!("the stock record of product {}", product.id);
            support::eventually::eventually(Duration::from_secs(30), &what, || {
                let path = path.clone();
                async move {
                    let answer = this.send(Method::GET, &path, Some(&this.customers[0].token), None).await?;
                    if answer.status == 200 && answer.json["available_quantity"].as_i64() == Some(*quantity) {
                        Ok(())
                    } else {
                        Err(format!("{} {}", answer.status, answer.text))
                    }
                }
            })
            .await;
        }
        Ok(())
    }

    async fn execute(&mut self, operation: &Operation, seed: u64) {
        *self.tally.operations.entry(operation.name()).or_default() += 1;
        match operation {
            Operation::Register => {
                let number = self.customers.len();
                if let Err(error) = self.register(number, seed).await {
                    self.tally.violations.push(error);
                }
            }
            Operation::Order { customer, lines, hang_up_after_ms } => self.order(*customer, lines, *hang_up_after_ms).await,
            Operation::Cancel { customer, pick } => self.cancel_or_refund(*customer, *pick, false).await,
            Operation::Refund { customer, pick } => self.cancel_or_refund(*customer, *pick, true).await,
            Operation::Fault { kind, instance } => self.inject(*kind, *instance).await,
            Operation::Heal { instance } => self.heal(*instance).await,
            Operation::Poison => {
                let payload = br#"{"poisoned_by": "the chaos run"}"#;
                match self.system.vhost.publish(common::messaging::topology::ORDER_CREATED, payload, "chaos-poison").await {
                    Ok(()) => self.tally.poison += 1,
                    Err(error) => self.tally.violations.push(format!("injecting a poison message: {error:#}")),
                }
            }
        }
    }

    async fn order(&mut self, customer: u64, lines: &[(usize, i64)], hang_up_after_ms: Option<u64>) {
        let index = (customer % self.customers.len() as u64) as usize;
        let items: Vec<Value> = lines
            .iter()
            .map(|(product, quantity)| {
                json!({"product_id": self.products[*product].id, "quantity": quantity, "price": self.products[*product].price})
            })
            .collect();
        let buyer = &self.customers[index];
        let body = json!({"user_id": buyer.user_id, "items": items, "shipping_address": buyer.address});
        let token = buyer.token.clone();
        self.tally.order_requests += 1;
        let key = format!("chaos-order-{}", self.tally.order_requests);
        let key_header = [("idempotency-key", key.as_str())];
        for try_number in 1..=ORDER_TRIES {
            let sent_at = Instant::now();
            let sending = self.send_with_headers(Method::POST, "/api/v1/orders/", Some(&token), Some(body.clone()), &key_header);
            let answer = match hang_up_after_ms.filter(|_| try_number == 1) {
                Some(delay) => match tokio::time::timeout(Duration::from_millis(delay), sending).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        self.tally.hung_up += 1;
                        continue;
                    }
                },
                None => sending.await,
            };
            match &answer {
                Ok(placed) if placed.status == 201 => {
                    let id = placed.json["_id"].as_str().unwrap_or_default().to_owned();
                    let replayed = placed.headers.get("idempotent-replayed").is_some();
                    if !replayed && placed.json["status"] != "pending" {
                        self.tally.violations.push(format!("a new order is not pending: {}", placed.text));
                    }
                    if replayed {
                        self.tally.replayed += 1;
                    }
                    if let Some(earlier) = self.orders.iter().position(|order| order.id == id) {
                        // Another request's key answered with this order: two requests, one order.
                        self.tally.violations.push(format!("order request {key} was answered with the order of request {earlier}: {id}"));
                        return;
                    }
                    self.customers[index].orders.push(self.orders.len());
                    self.orders.push(PlacedOrder { id, cancelled_by_customer: false, refunded: false });
                    self.tally.accepted_orders += 1;
                    return;
                }
                Ok(refused) if refused.status < 500 => {
                    self.tally.violations.push(format!("POST /orders/ (try {try_number}): {} {}", refused.status, refused.text));
                    return;
                }
                _ => {
                    let before = self.tally.unavailable_in_window;
                    self.judge_unexpected("POST /orders/", sent_at, &answer);
                    if self.tally.unavailable_in_window == before {
                        return;
                    }
                }
            }
            tokio::time::sleep(RETRY_WAIT * 2u32.pow(try_number - 1)).await;
        }
        self.tally.refused_in_outage += 1;
    }

    async fn cancel_or_refund(&mut self, customer: u64, pick: u64, refund: bool) {
        let index = (customer % self.customers.len() as u64) as usize;
        let owned = &self.customers[index].orders;
        if owned.is_empty() {
            return;
        }
        let order = owned[(pick % owned.len() as u64) as usize];
        let token = self.customers[index].token.clone();
        let id = self.orders[order].id.clone();
        let sent_at = Instant::now();
        let (what, answer, success) = if refund {
            let path = format!("/api/v1/orders/{id}/status");
            (
                format!("PUT {path} refunded"),
                self.send(Method::PUT, &path, Some(&token), Some(json!({"status": "refunded"}))).await,
                200,
            )
        } else {
            let path = format!("/api/v1/orders/{id}");
            (format!("DELETE {path}"), self.send(Method::DELETE, &path, Some(&token), None).await, 204)
        };
        match &answer {
            Ok(done) if done.status == success => {
                if refund {
                    self.orders[order].refunded = true;
                    self.tally.refunds_accepted += 1;
                } else {
                    self.orders[order].cancelled_by_customer = true;
                    self.tally.cancels_accepted += 1;
                }
            }
            // The order's state does not allow it (already cancelled, not yet paid, ...).
            Ok(refused) if refused.status == 400 => {}
            _ => self.judge_unexpected(&what, sent_at, &answer),
        }
    }

    async fn inject(&mut self, kind: FaultKind, instance: Instance) {
        println!("chaos: {:>6.2} s  {kind:?} on {instance}", self.began.elapsed().as_secs_f64());
        *self.tally.faults.entry(kind).or_default() += 1;
        self.windows.open.insert(instance, Instant::now());
        self.active_faults.insert(instance, kind);
        let outcome = match kind {
            FaultKind::DatabaseDown => self.system.proxy(instance, Dependency::Database).set(Mode::Cut).await,
            FaultKind::BrokerDown => self.system.proxy(instance, Dependency::Broker).set(Mode::Cut).await,
            FaultKind::BrokerHangsThenResets => self.system.proxy(instance, Dependency::Broker).set(Mode::Blackhole).await,
            FaultKind::Killed => {
                async {
                    self.system.kill_instance(instance).await?;
                    self.system.verify_instance_is_down(instance).await?;
                    self.system.verify_no_connections(instance).await
                }
                .await
            }
        };
        if let Err(error) = outcome {
            self.tally.violations.push(format!("injecting {kind:?} into {instance}: {error:#}"));
        }
    }

    async fn heal(&mut self, instance: Instance) {
        let Some(kind) = self.active_faults.remove(&instance) else { return };
        println!("chaos: {:>6.2} s  healing {kind:?} on {instance}", self.began.elapsed().as_secs_f64());
        let outcome = match kind {
            FaultKind::DatabaseDown => self.system.proxy(instance, Dependency::Database).set(Mode::Pass).await,
            FaultKind::BrokerDown => self.system.proxy(instance, Dependency::Broker).set(Mode::Pass).await,
            FaultKind::BrokerHangsThenResets => {
                let proxy = self.system.proxy(instance, Dependency::Broker);
                match proxy.set(Mode::Cut).await {
                    Ok(()) => proxy.set(Mode::Pass).await,
                    Err(error) => Err(error),
                }
            }
            FaultKind::Killed => self.system.start_instance(instance).await,
        };
        if let Err(error) = outcome {
            self.tally.violations.push(format!("healing {kind:?} of {instance}: {error:#}"));
        }
        if let Some(start) = self.windows.open.remove(&instance) {
            self.windows.closed.push((start, Instant::now()));
        }
    }

    async fn heal_everything(&mut self) {
        let instances: Vec<Instance> = self.active_faults.keys().copied().collect();
        for instance in instances {
            self.heal(instance).await;
        }
    }

    /// Waits until every instance is ready and the gateway routes to each service again, at most
    /// [`GRACE`]: nginx leaves a replica it saw fail alone for 10 s, so once every replica of a
    /// service was down, the gateway answers 503 for a while after they are back. The checks
    /// read through the gateway, as customers do.
    async fn wait_until_routed(&self) -> Result<(), String> {
        let deadline = Instant::now() + GRACE;
        for instance in self.system.all_instances() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.system.wait_until_ready(instance, left).await.map_err(|error| format!("{error:#}"))?;
        }
        let token = &self.customers[0].token;
        let probes = ["/api/v1/orders/?limit=1".to_owned(), format!("/api/v1/inventory/{}", self.products[0].id)];
        for path in probes {
            loop {
                match self.send(Method::GET, &path, Some(token), None).await {
                    Ok(answer) if answer.status == 200 => break,
                    answer if Instant::now() >= deadline => {
                        let answer = answer.map(|answer| format!("{} {}", answer.status, answer.text));
                        return Err(format!("the gateway did not route GET {path} within {GRACE:?} of healing: {answer:?}"));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(())
    }

    /// Every order of every customer, as the order service lists them, by id.
    async fn listed_orders(&self) -> Result<HashMap<String, Value>, String> {
        let mut listed = HashMap::new();
        for customer in &self.customers {
            for skip in (0..).step_by(100) {
                let page = self
                    .send(Method::GET, &format!("/api/v1/orders/?skip={skip}&limit=100"), Some(&customer.token), None)
                    .await?;
                let orders = page.json.as_array().ok_or_else(|| format!("listing orders: {} {}", page.status, page.text))?;
                for order in orders {
                    listed.insert(order["_id"].as_str().unwrap_or_default().to_owned(), order.clone());
                }
                if orders.len() < 100 {
                    break;
                }
            }
        }
        Ok(listed)
    }
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::Order { lines, .. } if lines.len() == 1 => "order one product",
            Operation::Order { .. } => "order several products",
            Operation::Cancel { .. } => "cancel",
            Operation::Refund { .. } => "refund",
            Operation::Fault { .. } => "fault",
            Operation::Heal { .. } => "heal",
            Operation::Poison => "poison message",
        }
    }
}

struct Invariant {
    name: &'static str,
    failures: Vec<String>,
}

impl fmt::Display for Invariant {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            write!(formatter, "  held    {}", self.name)
        } else {
            write!(formatter, "  FAILED  {}:", self.name)?;
            for failure in self.failures.iter().take(20) {
                write!(formatter, "\n            {failure}")?;
            }
            if self.failures.len() > 20 {
                write!(formatter, "\n            ... and {} more", self.failures.len() - 20)?;
            }
            Ok(())
        }
    }
}

/// Runs the plan drawn from `seed`; true when an invariant failed.
async fn run(seed: u64, operations: usize) -> bool {
    support::logs::install();
    let started = Instant::now();
    let plan = Plan::draw(seed, operations);
    println!("chaos: seed {seed}, {operations} operations, plan digest {:016x}", plan.digest());
    println!("chaos: reproduce with `cargo xtask chaos --seed {seed} --operations {operations}`");

    let replicas = BTreeMap::from([(ServiceName::Order, 2), (ServiceName::Inventory, 2)]);
    let system = System::start(&Setup { replicas, ..Setup::default() })
        .await
        .unwrap_or_else(|error| panic!("the shop failed to start: {error:#}"));
    let mut chaos = Chaos {
        system,
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("HTTP client"),
        customers: Vec::new(),
        products: Vec::new(),
        orders: Vec::new(),
        windows: OutageWindows::default(),
        began: Instant::now(),
        active_faults: HashMap::new(),
        tally: Tally::default(),
    };
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
    let torn_down = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(support::teardown::tear_down(
        system,
        &["dead-lettering".to_owned()],
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

async fn check(chaos: &Chaos, plan: &Plan, routed: Result<(), String>, settled: anyhow::Result<()>) -> Vec<Invariant> {
    let mut invariants = Vec::new();

    let mut final_states: Vec<String> = routed.err().into_iter().collect();
    let listed = match chaos.listed_orders().await {
        Ok(listed) => listed,
        Err(error) => {
            final_states.push(error);
            HashMap::new()
        }
    };
    for order in &chaos.orders {
        let Some(stored) = listed.get(&order.id) else {
            final_states.push(format!("accepted order {} is not listed", order.id));
            continue;
        };
        let status = stored["status"].as_str().unwrap_or_default();
        let allowed = match status {
            "refunded" => order.refunded,
            "cancelled" => {
                order.cancelled_by_customer
                    || (!order.refunded && stored.get("cancellation_reason").is_some_and(Value::is_string))
            }
            "paid" => !order.refunded && !order.cancelled_by_customer,
            _ => false,
        };
        if !allowed {
            final_states.push(format!(
                "order {} is {status} (cancel accepted: {}, refund accepted: {}): {stored}",
                order.id, order.cancelled_by_customer, order.refunded
            ));
        }
    }
    // Orders the shop stored although the client saw no 201 (a request cut by a fault) must end
    // in an allowed state too.
    for (id, stored) in &listed {
        if !chaos.orders.iter().any(|order| &order.id == id) {
            let status = stored["status"].as_str().unwrap_or_default();
            if !["paid", "cancelled"].contains(&status) {
                final_states.push(format!("order {id}, stored without a 201, is {status}"));
            }
        }
    }
    // Each request placed at most one order, however often it was sent: the orders stored
    // without a 201 are at most the requests that never got one. Without idempotent retries, a
    // retry after a lost answer would place a second order and break this.
    let stored_without_answer = listed.keys().filter(|id| !chaos.orders.iter().any(|order| &order.id == *id)).count();
    let mut one_order_per_request = Vec::new();
    if stored_without_answer > chaos.tally.refused_in_outage {
        one_order_per_request.push(format!(
            "{stored_without_answer} orders were stored without a 201, but only {} requests went unanswered: a retry placed a second order",
            chaos.tally.refused_in_outage
        ));
    }
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for stored in listed.values() {
        let mut status = stored["status"].as_str().unwrap_or("(none)").to_owned();
        if stored.get("cancellation_reason").is_some_and(Value::is_string) {
            status.push_str(" by the shop");
        }
        *statuses.entry(status).or_default() += 1;
    }
    println!(
        "chaos: orders stored, by final status: {}",
        statuses.iter().map(|(status, count)| format!("{count} {status}")).collect::<Vec<_>>().join(", ")
    );
    if chaos.orders.is_empty() {
        final_states.push("the shop accepted no order at all: the run proved nothing".to_owned());
    }
    invariants
        .push(Invariant { name: "every order ended paid, cancelled or refunded, as its customer asked", failures: final_states });
    invariants.push(Invariant {
        name: "one order per order request, whether its client hung up or retried",
        failures: one_order_per_request,
    });

    let mut stock = Vec::new();
    let token = &chaos.customers[0].token;
    for (index, product) in chaos.products.iter().enumerate() {
        let answer = match chaos.send(Method::GET, &format!("/api/v1/inventory/{}", product.id), Some(token), None).await {
            Ok(answer) => answer,
            Err(error) => {
                stock.push(error);
                continue;
            }
        };
        let available = answer.json["available_quantity"].as_i64().unwrap_or(-1);
        let reserved = answer.json["reserved_quantity"].as_i64().unwrap_or(-1);
        let held_by_paid: i64 = listed
            .values()
            .filter(|order| order["status"] == "paid")
            .flat_map(|order| order["items"].as_array().cloned().unwrap_or_default())
            .filter(|item| item["product_id"] == product.id.as_str())
            .map(|item| item["quantity"].as_i64().unwrap_or(0))
            .sum();
        let initial = plan.initial_stock[index];
        if available + reserved != initial || reserved != held_by_paid {
            stock.push(format!(
                "product {index}: initial {initial}, available {available} + reserved {reserved}; paid orders hold {held_by_paid}"
            ));
        }
    }
    invariants.push(Invariant {
        name: "per product, initial stock = available + reserved, reserved = what paid orders hold",
        failures: stock,
    });

    let mut queues = Vec::new();
    if let Err(error) = settled {
        queues.push(format!("{error:#}"));
    }
    for queue in common::messaging::topology::QUEUES {
        let dead_letters = common::messaging::topology::dead_letter_queue(queue);
        let expected = if queue == common::messaging::topology::ORDER_CREATED { chaos.tally.poison } else { 0 };
        match chaos.system.vhost.ready_messages(&dead_letters).await {
            Ok(count) if count as usize == expected => {}
            Ok(count) => queues.push(format!("{dead_letters}: {count} dead-lettered, {expected} poison messages injected")),
            Err(error) => queues.push(format!("{error:#}")),
        }
    }
    invariants.push(Invariant { name: "no message left in any queue; only the injected poison dead-lettered", failures: queues });

    invariants.push(Invariant {
        name: "no 5xx outside an outage window, no 4xx to a valid request",
        failures: chaos.tally.violations.clone(),
    });
    invariants
}

fn print_report(chaos: &Chaos, invariants: &[Invariant], operations_done: Duration, total: Duration) {
    let tally = &chaos.tally;
    println!("chaos: operations:");
    for (name, count) in &tally.operations {
        println!("  {count:>6}  {name}");
    }
    println!("chaos: faults injected:");
    for (kind, count) in &tally.faults {
        println!("  {count:>6}  {kind:?}");
    }
    println!(
        "chaos: {} order requests: {} first tries hung up, {} retries answered with the order an earlier try placed",
        tally.order_requests, tally.hung_up, tally.replayed
    );
    println!(
        "chaos: {} orders accepted, {} refused during outages, {} 5xx inside outage windows, {} cancels and {} refunds accepted, {} poison messages",
        tally.accepted_orders,
        tally.refused_in_outage,
        tally.unavailable_in_window,
        tally.cancels_accepted,
        tally.refunds_accepted,
        tally.poison
    );
    println!(
        "chaos: operations took {:.1} s, settling and checking {:.1} s",
        operations_done.as_secs_f64(),
        (total - operations_done).as_secs_f64()
    );
    println!("chaos: invariants:");
    for invariant in invariants {
        println!("{invariant}");
    }
}
