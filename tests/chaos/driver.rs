//! The driver: customers registering, ordering, cancelling and asking for refunds through the
//! shop's typed client, faults injected into and healed on the instances the plan names, and a
//! tally of every answer, judged as it comes (a 5xx inside an outage window, or a violation).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use shop_testkit::base::api::IDEMPOTENT_REPLAYED;
use shop_testkit::base::model::{Address, NewAddress, NewOrder, NewProduct, Order, OrderLine, Registration};
use shop_testkit::base::{Answer, ApiError, Call, Client};
use shop_testkit::eventually::eventually;
use shop_testkit::proxy::Mode;
use shop_testkit::system::{Dependency, Instance, System};

use crate::plan::{FaultKind, Operation};
use crate::{GRACE, ORDER_TRIES, PASSWORD, RETRY_WAIT};

pub struct Customer {
    pub token: String,
    /// Orders name their customer by the id as a string.
    pub user_id: String,
    pub address: Address,
    pub orders: Vec<usize>,
}

pub struct Product {
    pub id: String,
    pub price: f64,
}

pub struct PlacedOrder {
    pub id: String,
    /// A `DELETE` answered 204.
    pub cancelled_by_customer: bool,
    /// A refund answered 200.
    pub refunded: bool,
}

/// When faults were in effect: a 5xx inside one of these is part of a declared outage.
#[derive(Default)]
pub struct OutageWindows {
    pub open: HashMap<Instance, Instant>,
    pub closed: Vec<(Instant, Instant)>,
}

impl OutageWindows {
    pub fn covers(&self, at: Instant) -> bool {
        !self.open.is_empty() || self.closed.iter().any(|(start, end)| *start <= at && at <= *end + GRACE)
    }
}

#[derive(Default)]
pub struct Tally {
    pub operations: BTreeMap<&'static str, usize>,
    pub faults: BTreeMap<FaultKind, usize>,
    /// Order requests made (each with its own idempotency key, however often it was sent).
    pub order_requests: usize,
    pub accepted_orders: usize,
    /// Order requests that got no 201 in any of their tries.
    pub refused_in_outage: usize,
    /// First tries whose client hung up.
    pub hung_up: usize,
    /// 201s that answered a retry with the order an earlier try placed.
    pub replayed: usize,
    pub poison: usize,
    pub cancels_accepted: usize,
    pub refunds_accepted: usize,
    /// 5xx answers inside a declared outage window.
    pub unavailable_in_window: usize,
    /// Answers no invariant allows, as they came.
    pub violations: Vec<String>,
}

pub struct Chaos {
    pub system: System,
    /// When the operations began: the timeline's zero.
    pub began: Instant,
    /// The shop's API through the system's gateway, as customers reach it.
    pub shop: Client,
    pub customers: Vec<Customer>,
    pub products: Vec<Product>,
    pub orders: Vec<PlacedOrder>,
    pub windows: OutageWindows,
    pub active_faults: HashMap<Instance, FaultKind>,
    pub tally: Tally,
}

impl Chaos {
    pub fn new(system: System) -> Self {
        Self {
            shop: Client::new(system.gateway_url()),
            system,
            customers: Vec::new(),
            products: Vec::new(),
            orders: Vec::new(),
            windows: OutageWindows::default(),
            began: Instant::now(),
            active_faults: HashMap::new(),
            tally: Tally::default(),
        }
    }

    /// Judges an answer that is neither the expected success nor an expected refusal: a 5xx is
    /// allowed inside an outage window, anything else is a violation.
    pub fn judge_unexpected(&mut self, what: &str, sent_at: Instant, answer: &Result<Answer, ApiError>) {
        match answer {
            Ok(answer) if answer.status >= 500 && self.windows.covers(sent_at) => self.tally.unavailable_in_window += 1,
            Ok(answer) => self.tally.violations.push(format!("{what}: {} {}", answer.status, answer.body)),
            Err(_) if self.windows.covers(sent_at) => self.tally.unavailable_in_window += 1,
            Err(error) => self.tally.violations.push(format!("{what}: {error}")),
        }
    }

    /// Registers, logs in and gives an address to a new customer, outside any fault (setup) or
    /// during the run (the user service is never faulted, so any failure is a violation).
    pub async fn register(&mut self, number: usize, seed: u64) -> Result<(), String> {
        let email = format!("chaos-{seed}-{number}@example.com");
        let registration = Registration::customer(email.as_str(), PASSWORD, "Chaos", "Customer");
        self.shop.register(&registration).await.map_err(|error| format!("registering {email}: {error}"))?;
        let token =
            self.shop.log_in(&email, PASSWORD).await.map_err(|error| format!("logging in {email}: {error}"))?.access_token;
        let me = self.shop.me(&token).await.map_err(|error| format!("{email}: {error}"))?;
        let address = Address {
            line1: format!("{number} Chaos Street"),
            line2: None,
            city: "Entropy".into(),
            state: "EX".into(),
            postal_code: "12345".into(),
            country: "Example Country".into(),
        };
        let new_address = NewAddress { address: address.clone(), is_default: true };
        self.shop.add_address(&token, &new_address).await.map_err(|error| format!("adding {email}'s address: {error}"))?;
        self.customers.push(Customer { token, user_id: me.id.to_string(), address, orders: Vec::new() });
        Ok(())
    }

    pub async fn create_catalog(&mut self, initial_stock: &[i64]) -> Result<(), String> {
        let token = self.customers[0].token.clone();
        for (index, quantity) in initial_stock.iter().enumerate() {
            let product = NewProduct {
                name: format!("Chaos Product {index}"),
                description: Some("drawn by the chaos run".into()),
                category: "Chaos".into(),
                price: format!("{}.99", 10 + index * 7).parse().expect("a price"),
                quantity: *quantity,
            };
            let created =
                self.shop.create_product(&token, &product).await.map_err(|error| format!("creating a product: {error}"))?;
            self.products.push(Product { id: created.id, price: created.price });
        }
        let this = &*self;
        for (product, quantity) in this.products.iter().zip(initial_stock) {
            let what = format!("the stock record of product {}", product.id);
            eventually(Duration::from_secs(30), &what, || async {
                match this.shop.stock(&this.customers[0].token, &product.id).await {
                    Ok(stock) if stock.available_quantity == *quantity => Ok(()),
                    Ok(stock) => Err(format!("{stock:?}")),
                    Err(error) => Err(error.to_string()),
                }
            })
            .await;
        }
        Ok(())
    }

    pub async fn execute(&mut self, operation: &Operation, seed: u64) {
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

    pub async fn order(&mut self, customer: u64, lines: &[(usize, i64)], hang_up_after_ms: Option<u64>) {
        let index = (customer % self.customers.len() as u64) as usize;
        let items: Vec<OrderLine> = lines
            .iter()
            .map(|(product, quantity)| OrderLine {
                product_id: self.products[*product].id.clone(),
                quantity: *quantity,
                price: self.products[*product].price,
            })
            .collect();
        let buyer = &self.customers[index];
        let order = NewOrder { user_id: buyer.user_id.clone(), items, shipping_address: buyer.address.clone() };
        let token = buyer.token.clone();
        self.tally.order_requests += 1;
        let key = format!("chaos-order-{}", self.tally.order_requests);
        let call = Call::place_order(&token, Some(&key), &order);
        for try_number in 1..=ORDER_TRIES {
            let sent_at = Instant::now();
            let sending = self.shop.send(&call);
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
                    let replayed = placed.header(IDEMPOTENT_REPLAYED).is_some();
                    let stored: Order = match placed.clone().expect("POST /orders/", 201) {
                        Ok(order) => order,
                        Err(error) => {
                            self.tally.violations.push(error.to_string());
                            return;
                        }
                    };
                    let id = stored.id;
                    if !replayed && stored.status != "pending" {
                        self.tally.violations.push(format!("a new order is not pending: {}", placed.body));
                    }
                    if replayed {
                        self.tally.replayed += 1;
                    }
                    if let Some(earlier) = self.orders.iter().position(|order| order.id == id) {
                        // Another request's key answered with this order: two requests, one order.
                        self.tally
                            .violations
                            .push(format!("order request {key} was answered with the order of request {earlier}: {id}"));
                        return;
                    }
                    self.customers[index].orders.push(self.orders.len());
                    self.orders.push(PlacedOrder { id, cancelled_by_customer: false, refunded: false });
                    self.tally.accepted_orders += 1;
                    return;
                }
                Ok(refused) if refused.status < 500 => {
                    self.tally.violations.push(format!("POST /orders/ (try {try_number}): {} {}", refused.status, refused.body));
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

    pub async fn cancel_or_refund(&mut self, customer: u64, pick: u64, refund: bool) {
        let index = (customer % self.customers.len() as u64) as usize;
        let owned = &self.customers[index].orders;
        if owned.is_empty() {
            return;
        }
        let order = owned[(pick % owned.len() as u64) as usize];
        let token = self.customers[index].token.clone();
        let id = self.orders[order].id.clone();
        let sent_at = Instant::now();
        let (call, success) =
            if refund { (Call::set_order_status(&token, &id, "refunded"), 200) } else { (Call::cancel_order(&token, &id), 204) };
        let what = if refund { format!("{} refunded", call.describe()) } else { call.describe() };
        let answer = self.shop.send(&call).await;
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

    pub async fn inject(&mut self, kind: FaultKind, instance: Instance) {
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

    pub async fn heal(&mut self, instance: Instance) {
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

    pub async fn heal_everything(&mut self) {
        let instances: Vec<Instance> = self.active_faults.keys().copied().collect();
        for instance in instances {
            self.heal(instance).await;
        }
    }

    /// Waits until every instance is ready and the gateway routes to each service again, at most
    /// [`GRACE`]: nginx leaves a replica it saw fail alone for 10 s, so once every replica of a
    /// service was down, the gateway answers 503 for a while after they are back. The checks
    /// read through the gateway, as customers do.
    pub async fn wait_until_routed(&self) -> Result<(), String> {
        let deadline = Instant::now() + GRACE;
        for instance in self.system.all_instances() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.system.wait_until_ready(instance, left).await.map_err(|error| format!("{error:#}"))?;
        }
        let token = &self.customers[0].token;
        let probes = [Call::orders_page(token, 0, 1), Call::stock(token, &self.products[0].id)];
        for probe in probes {
            loop {
                match self.shop.send(&probe).await {
                    Ok(answer) if answer.status == 200 => break,
                    answer if Instant::now() >= deadline => {
                        let answer = answer.map(|answer| format!("{} {}", answer.status, answer.body));
                        let what = probe.describe();
                        return Err(format!("the gateway did not route {what} within {GRACE:?} of healing: {answer:?}"));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(())
    }

    /// Every order of every customer, as the order service lists them, by id.
    pub async fn listed_orders(&self) -> Result<HashMap<String, Order>, String> {
        let mut listed = HashMap::new();
        for customer in &self.customers {
            let orders = self.shop.all_orders(&customer.token).await.map_err(|error| format!("listing orders: {error}"))?;
            listed.extend(orders.into_iter().map(|order| (order.id.clone(), order)));
        }
        Ok(listed)
    }
}
