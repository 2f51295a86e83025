//! The customers (and the staff): registering, ordering, cancelling, looking things up, shipping,
//! delivering and refunding through the shop's typed client, as careful clients do: every answer
//! is recorded with when it was asked and answered (judged once the run is over, against the
//! faults' proved windows), a 5xx or no answer is retried a few times with a back-off (an order
//! with its `Idempotency-Key`), and an action whose every try went unanswered is remembered as
//! uncertain: it may or may not have happened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use shop_testkit::base::api::IDEMPOTENT_REPLAYED;
use shop_testkit::base::model::{Address, NewAddress, NewOrder, NewProduct, Order, OrderLine, Registration};
use shop_testkit::base::{Answer, ApiError, Call, Client};
use shop_testkit::rabbitmq::VirtualHost;
use shop_testkit::system::ServiceName;

use crate::plan::Operation;
use crate::{ORDER_TRIES, PASSWORD, RETRY_WAIT};

pub struct Customer {
    pub token: String,
    /// Orders name their customer by the id as a string.
    pub user_id: String,
    pub address: Address,
}

pub struct Product {
    pub id: String,
    pub price: f64,
}

/// What became of an action a customer or staff asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with its success status.
    Accepted,
    /// Refused for the order's state (400: not yet paid, already cancelled, ...).
    Refused,
    /// Every try went unanswered or got a 5xx, or one did and a later one was refused (the
    /// refusal of what the unanswered one did?): it may or may not have happened.
    Uncertain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Cancel,
    Ship,
    Deliver,
    Refund,
}

impl Action {
    /// The status the order has once the action happened.
    pub fn status(self) -> &'static str {
        match self {
            Action::Cancel => "cancelled",
            Action::Ship => "shipped",
            Action::Deliver => "delivered",
            Action::Refund => "refunded",
        }
    }
}

/// One order request of the plan (numbered as the plan numbers them).
pub struct OrderRequest {
    pub customer: usize,
    pub lines: Vec<(usize, i64)>,
    pub key: String,
    /// The order, once a try got its 201.
    pub order_id: Option<String>,
    /// What was asked of the order afterwards, in order.
    pub actions: Vec<(Action, Outcome)>,
}

/// One request and its answer, as the client saw them.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub service: ServiceName,
    pub idempotent: bool,
    pub what: String,
    pub sent: Instant,
    pub answered: Instant,
    /// `None`: no answer at all.
    pub status: Option<u16>,
    pub detail: String,
}

#[derive(Default)]
pub struct Tally {
    pub operations: BTreeMap<&'static str, usize>,
    /// Operations whose target did not exist (a cancel of an order request that got no 201).
    pub skipped: usize,
    pub accepted_orders: usize,
    /// Order requests whose every try went unanswered or got a 5xx.
    pub unanswered_orders: usize,
    /// First tries whose client hung up.
    pub hung_up: usize,
    /// 201s that answered a retry with the order an earlier try placed.
    pub replayed: usize,
    /// The poison messages published, by number.
    pub poison: Vec<usize>,
    /// Poison messages that could not be published (the broker was down), and why.
    pub poison_not_published: Vec<String>,
    pub actions: BTreeMap<(&'static str, &'static str), usize>,
    /// Answers no rule allows whatever the faults, as they came.
    pub violations: Vec<String>,
}

pub struct Customers {
    pub began: Instant,
    pub shop: Client,
    pub vhost: VirtualHost,
    pub staff_token: String,
    pub customers: Vec<Customer>,
    pub products: Vec<Product>,
    pub requests: Vec<OrderRequest>,
    pub exchanges: Vec<Exchange>,
    pub tally: Tally,
}

/// The service a path of the shop's API belongs to, as the gateway routes it.
pub fn service_of(path: &str) -> ServiceName {
    if path.starts_with("/api/v1/products") {
        ServiceName::Product
    } else if path.starts_with("/api/v1/orders") {
        ServiceName::Order
    } else if path.starts_with("/api/v1/inventory") {
        ServiceName::Inventory
    } else {
        ServiceName::User
    }
}

impl Customers {
    pub fn new(gateway_url: String, vhost: VirtualHost) -> Self {
        // Longer than the gateway waits for a service (30 s): the gateway answers first.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(45)).build().expect("an HTTP client");
        Self {
            began: Instant::now(),
            shop: Client::with_http(gateway_url, http),
            vhost,
            staff_token: String::new(),
            customers: Vec::new(),
            products: Vec::new(),
            requests: Vec::new(),
            exchanges: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// Sends `call` once and records the exchange.
    async fn send(&mut self, call: &Call) -> Result<Answer, ApiError> {
        let sent = Instant::now();
        let answer = self.shop.send(call).await;
        let (status, detail) = match &answer {
            Ok(answer) => (Some(answer.status), answer.body.chars().take(300).collect()),
            Err(error) => (None, error.to_string()),
        };
        self.exchanges.push(Exchange {
            service: service_of(&call.path),
            idempotent: call.method == Method::GET,
            what: call.describe(),
            sent,
            answered: Instant::now(),
            status,
            detail,
        });
        answer
    }

    /// Sends `call` until it gets `success` or a definitive refusal (`refusals`), at most
    /// [`ORDER_TRIES`] times, waiting between tries. A 4xx outside `refusals` is a violation.
    async fn send_patiently(&mut self, call: &Call, success: u16, refusals: &[u16]) -> (Outcome, Option<Answer>) {
        // A try that went unanswered or got a 5xx may have been applied all the same (its answer
        // lost, or a store that took the write and then failed): a refusal after it may be the
        // refusal of what that try did already (refunding an order it refunded), not a proof
        // that nothing happened.
        let mut maybe_applied = false;
        for try_number in 1..=ORDER_TRIES {
            match self.send(call).await {
                Ok(answer) if answer.status == success => return (Outcome::Accepted, Some(answer)),
                Ok(answer) if refusals.contains(&answer.status) => {
                    let outcome = if maybe_applied { Outcome::Uncertain } else { Outcome::Refused };
                    return (outcome, Some(answer));
                }
                Ok(answer) if answer.status < 500 && answer.status != 429 => {
                    self.tally.violations.push(format!("{}: {} {}", call.describe(), answer.status, answer.body));
                    return (Outcome::Refused, Some(answer));
                }
                _ => {
                    maybe_applied = true;
                    tokio::time::sleep(RETRY_WAIT * 2u32.pow(try_number - 1)).await;
                }
            }
        }
        (Outcome::Uncertain, None)
    }

    /// Registers, logs in and gives an address to a new customer (the staff account too, at
    /// set-up), patiently: the user service's database may be down for a while.
    pub async fn register(&mut self, email: &str, is_customer: bool) -> Result<(), String> {
        let registration = Registration::customer(email, PASSWORD, "Chaos", "Customer");
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut registered = false;
        let token = loop {
            if !registered {
                // 409: an earlier try whose answer was lost registered it.
                match self.send_patiently(&Call::register(&registration), 201, &[409]).await {
                    (Outcome::Accepted | Outcome::Refused, _) => registered = true,
                    (Outcome::Uncertain, _) => {}
                }
            }
            if registered {
                let (outcome, answer) = self.send_patiently(&Call::log_in(email, PASSWORD), 200, &[]).await;
                if let (Outcome::Accepted, Some(answer)) = (outcome, answer) {
                    let tokens: shop_testkit::base::model::Tokens =
                        answer.expect("log in", 200).map_err(|error| format!("logging in {email}: {error}"))?;
                    break tokens.access_token;
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("{email} could not register and log in within 90 s"));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        if !is_customer {
            self.staff_token = token;
            return Ok(());
        }
        let number = self.customers.len();
        let address = Address {
            line1: format!("{number} Chaos Street"),
            line2: None,
            city: "Entropy".into(),
            state: "EX".into(),
            postal_code: "12345".into(),
            country: "Example Country".into(),
        };
        let me = loop {
            match self.send_patiently(&Call::me(&token), 200, &[]).await {
                (Outcome::Accepted, Some(answer)) => {
                    break answer.expect::<shop_testkit::base::model::User>("me", 200).map_err(|error| error.to_string())?;
                }
                _ if Instant::now() >= deadline => return Err(format!("{email}: GET /users/me kept failing")),
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let new_address = NewAddress { address: address.clone(), is_default: true };
        loop {
            match self.send_patiently(&Call::add_address(&token, &new_address), 201, &[]).await {
                (Outcome::Accepted, _) => break,
                (Outcome::Refused, answer) => return Err(format!("{email}'s address: {answer:?}")),
                _ if Instant::now() >= deadline => return Err(format!("{email}'s address could not be added")),
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        self.customers.push(Customer { token, user_id: me.id.to_string(), address });
        Ok(())
    }

    pub async fn create_catalog(&mut self, initial_stock: &[i64]) -> Result<(), String> {
        for (index, quantity) in initial_stock.iter().enumerate() {
            let product = NewProduct {
                name: format!("Chaos Product {index}"),
                description: Some("drawn by the chaos run".into()),
                category: "Chaos".into(),
                price: format!("{}.99", 10 + index * 7).parse().expect("a price"),
                quantity: *quantity,
            };
            let created = self
                .shop
                .create_product(&self.staff_token, &product)
                .await
                .map_err(|error| format!("creating a product: {error}"))?;
            self.products.push(Product { id: created.id, price: created.price });
        }
        for (product, quantity) in self.products.iter().zip(initial_stock) {
            let what = format!("the stock record of product {}", product.id);
            shop_testkit::eventually::eventually(Duration::from_secs(30), &what, || async {
                match self.shop.stock(&self.staff_token, &product.id).await {
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
                let email = format!("chaos-{seed}-{}@example.com", self.customers.len());
                if let Err(error) = self.register(&email, true).await {
                    self.tally.violations.push(error);
                }
            }
            Operation::Order { customer, lines, hang_up_after_ms } => self.order(*customer, lines, *hang_up_after_ms).await,
            Operation::Cancel { request } => self.act(*request, Action::Cancel).await,
            Operation::Ship { request } => self.act(*request, Action::Ship).await,
            Operation::Deliver { request } => self.act(*request, Action::Deliver).await,
            Operation::Refund { request } => self.act(*request, Action::Refund).await,
            Operation::LookUpOrder { request } => {
                let Some((token, id)) = self.placed(*request) else { return };
                let (outcome, _) = self.send_patiently(&Call::order(&token, &id), 200, &[]).await;
                self.count("look up an order", outcome);
            }
            Operation::LookUpStock { product } => {
                let Some(customer) = self.customers.first() else { return };
                let call = Call::stock(&customer.token, &self.products[*product].id);
                let (outcome, _) = self.send_patiently(&call, 200, &[]).await;
                self.count("look up stock", outcome);
            }
            Operation::Poison { number } => {
                let payload = serde_json::json!({ "poisoned_by": "the chaos run", "number": number }).to_string();
                let correlation = format!("chaos-poison-{number}");
                let topic = common::messaging::topology::ORDER_CREATED;
                match self.vhost.publish(topic, payload.as_bytes(), &correlation).await {
                    Ok(()) => self.tally.poison.push(*number),
                    Err(error) => self.tally.poison_not_published.push(format!("{error:#}")),
                }
            }
        }
    }

    fn count(&mut self, what: &'static str, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Accepted => "accepted",
            Outcome::Refused => "refused",
            Outcome::Uncertain => "unanswered",
        };
        *self.tally.actions.entry((what, outcome)).or_default() += 1;
    }

    /// The token of the customer of order request `request`, and its order, if it got a 201.
    fn placed(&mut self, request: usize) -> Option<(String, String)> {
        let placed = self.requests.get(request).and_then(|placed| placed.order_id.clone().map(|id| (placed.customer, id)));
        match placed {
            Some((customer, id)) => Some((self.customers[customer].token.clone(), id)),
            None => {
                self.tally.skipped += 1;
                None
            }
        }
    }

    async fn act(&mut self, request: usize, action: Action) {
        let Some((customer_token, id)) = self.placed(request) else { return };
        let (call, success) = match action {
            Action::Cancel => (Call::cancel_order(&customer_token, &id), 204),
            staff => (Call::set_order_status(&self.staff_token, &id, staff.status()), 200),
        };
        // 400: the order's state does not allow it (not yet paid, already cancelled, ...).
        let (outcome, _) = self.send_patiently(&call, success, &[400]).await;
        self.requests[request].actions.push((action, outcome));
        self.count(action.status(), outcome);
    }

    pub async fn order(&mut self, customer: usize, lines: &[(usize, i64)], hang_up_after_ms: Option<u64>) {
        let Some(buyer) = self.customers.get(customer) else {
            // Its registration failed (a violation already recorded).
            self.tally.skipped += 1;
            return;
        };
        let items: Vec<OrderLine> = lines
            .iter()
            .map(|(product, quantity)| OrderLine {
                product_id: self.products[*product].id.clone(),
                quantity: *quantity,
                price: self.products[*product].price,
            })
            .collect();
        let order = NewOrder { user_id: buyer.user_id.clone(), items, shipping_address: buyer.address.clone() };
        let token = buyer.token.clone();
        let request = self.requests.len();
        let key = format!("chaos-order-{request}");
        self.requests.push(OrderRequest {
            customer,
            lines: lines.to_vec(),
            key: key.clone(),
            order_id: None,
            actions: Vec::new(),
        });
        let call = Call::place_order(&token, Some(&key), &order);
        for try_number in 1..=ORDER_TRIES {
            let answer = match hang_up_after_ms.filter(|_| try_number == 1) {
                Some(delay) => match tokio::time::timeout(Duration::from_millis(delay), self.shop.send(&call)).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        self.tally.hung_up += 1;
                        continue;
                    }
                },
                None => self.send(&call).await,
            };
            match answer {
                Ok(placed) if placed.status == 201 => {
                    let replayed = placed.header(IDEMPOTENT_REPLAYED).is_some();
                    let body = placed.body.clone();
                    let stored: Order = match placed.expect("POST /orders/", 201) {
                        Ok(order) => order,
                        Err(error) => {
                            self.tally.violations.push(error.to_string());
                            return;
                        }
                    };
                    if !replayed && stored.status != "pending" {
                        self.tally.violations.push(format!("a new order is not pending: {body}"));
                    }
                    if replayed {
                        self.tally.replayed += 1;
                    }
                    if let Some(earlier) = self.requests.iter().position(|other| other.order_id.as_deref() == Some(&stored.id)) {
                        self.tally.violations.push(format!(
                            "order request {request} was answered with the order of request {earlier}: {}",
                            stored.id
                        ));
                        return;
                    }
                    self.requests[request].order_id = Some(stored.id);
                    self.tally.accepted_orders += 1;
                    return;
                }
                Ok(refused) if refused.status < 500 => {
                    self.tally.violations.push(format!("POST /orders/ (try {try_number}): {} {}", refused.status, refused.body));
                    return;
                }
                _ => tokio::time::sleep(RETRY_WAIT * 2u32.pow(try_number - 1)).await,
            }
        }
        self.tally.unanswered_orders += 1;
    }

    /// The orders staff shipped (a ship accepted): a refund after that keeps their stock.
    pub fn shipped_orders(&self) -> std::collections::BTreeSet<String> {
        self.requests
            .iter()
            .filter(|request| request.actions.contains(&(Action::Ship, Outcome::Accepted)))
            .filter_map(|request| request.order_id.clone())
            .collect()
    }

    /// Every order of every customer, as the order service lists them, by id (asked patiently:
    /// the run is over, nothing is faulted, but a replica may still be finding its feet).
    pub async fn listed_orders(&self) -> Result<BTreeMap<String, Order>, String> {
        let mut listed = BTreeMap::new();
        for customer in &self.customers {
            let orders = self.shop.all_orders(&customer.token).await.map_err(|error| format!("listing orders: {error}"))?;
            listed.extend(orders.into_iter().map(|order| (order.id.clone(), order)));
        }
        Ok(listed)
    }
}
