//! Orders in the shop's words: the customer orders products by name, the order becomes paid or
//! cancelled, the customer cancels it, and whose order list holds what.
//!
//! Each order placed by name becomes the scenario's current order ("the order") and is also
//! remembered as ORDER_ID_1, ORDER_ID_2, ... in the order the scenario placed them.
//!
//! Also: placing many orders at once (bounded concurrency, through the gateway, with the
//! scenario's token) and waiting until they have all settled, measuring how long each took from
//! its `POST /api/v1/orders/` to `paid`. The timings are printed as one line per step (median and
//! worst), so a run of the features doubles as a rough latency measurement of the whole order
//! flow.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cucumber::{given, then, when};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::auth::session_of;
use super::catalog::{Actor, product_named};
use shop_testkit::eventually::eventually;
use shop_testkit::world::{Body, Credentials, Response, ShopWorld};

/// The variable holding the scenario's current order. Lower case on purpose: snapshots name a
/// remembered value after the first variable (in sorted order) holding it, and ORDER_ID_2 says
/// more than this would.
const CURRENT_ORDER: &str = "current_order";

/// How long an order may take to reach a status: the whole flow (outbox relay, reservation,
/// payment) takes well under a second on a quiet machine, and after an outage the relay and the
/// consumers retry with back-off.
const STATUS_DEADLINE: Duration = Duration::from_secs(30);

/// How many order requests are in flight at once: enough to make the orders race each other for
/// the same stock, few enough not to measure nginx's or the test client's queueing instead.
const CONCURRENT_REQUESTS: usize = 16;

/// How often the orders are polled while waiting for them to settle.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Places `count` orders for `quantity` of the named product at once (at most
/// [`CONCURRENT_REQUESTS`] in flight), each checked accepted and pending, and keeps them with the
/// instant each was sent until a later step waits for them to settle.
#[when(expr = "{int} order(s) for {int} {string} are placed at once")]
async fn orders_are_placed_at_once(world: &mut ShopWorld, count: usize, quantity: i64, name: String) {
    let body = one_line_order_body(world, quantity, &name).await;
    let world_ref = &*world;
    let placed: Vec<(String, Instant)> = futures::stream::iter(0..count)
        .map(|_| {
            let body = body.clone();
            async move {
                let sent = Instant::now();
                let response = world_ref.send(Method::POST, "/api/v1/orders/", Body::Json(body), Credentials::Current).await;
                assert_eq!(response.status, 201, "an order was refused: {}", response.text);
                assert_eq!(response.field("status"), "pending", "a new order is pending: {}", response.text);
                let order_id = response.field("_id").as_str().expect("_id is a string").to_owned();
                (order_id, sent)
            }
        })
        .buffer_unordered(CONCURRENT_REQUESTS)
        .collect()
        .await;
    world.placed_orders = placed;
}

/// The body of an order by the current customer for `quantity` of the named product at its
/// catalog price, to the customer's default address.
pub(super) async fn one_line_order_body(world: &ShopWorld, quantity: i64, name: &str) -> String {
    let product = product_named(world, name).await;
    json!({
        "user_id": world.variable("USER_ID"),
        "items": [{ "product_id": product.id, "quantity": quantity, "price": product.price }],
        "shipping_address": default_shipping_address(world).await
    })
    .to_string()
}

/// Every order of the current customer, by id, read page by page through the list endpoint.
pub(super) async fn orders_by_id(world: &ShopWorld) -> Result<HashMap<String, Value>, String> {
    let mut orders = HashMap::new();
    let page_size = 100;
    loop {
        let path = format!("/api/v1/orders/?skip={}&limit={page_size}", orders.len());
        let response = world.try_send(Method::GET, &path, Body::None, Credentials::Current).await?;
        if response.status != 200 {
            return Err(format!("GET {path} answered {}: {}", response.status, response.text));
        }
        let page = response.json().as_array().cloned().ok_or_else(|| format!("not a list: {}", response.text))?;
        let page_length = page.len();
        for order in page {
            let order_id = order["_id"].as_str().unwrap_or_default().to_owned();
            orders.insert(order_id, order);
        }
        if page_length < page_size {
            return Ok(orders);
        }
    }
}

#[then(expr = "within {int} seconds {int} of those orders are {word} and {int} are {word}")]
async fn those_orders_settle_in_two_statuses(
    world: &mut ShopWorld,
    seconds: u64,
    first_count: usize,
    first_status: String,
    second_count: usize,
    second_status: String,
) {
    those_orders_settle(world, seconds, &[(first_status, first_count), (second_status, second_count)]).await;
}

#[then(expr = "within {int} seconds every one of those orders is {word}")]
async fn those_orders_all_settle(world: &mut ShopWorld, seconds: u64, status: String) {
    let placed = world.placed_orders.len();
    those_orders_settle(world, seconds, &[(status, placed)]).await;
}

/// Polls the customer's orders until the orders placed concurrently have exactly the expected
/// number in each status, then prints how long they took to become paid.
async fn those_orders_settle(world: &mut ShopWorld, seconds: u64, expected: &[(String, usize)]) {
    let placed = std::mem::take(&mut world.placed_orders);
    assert!(!placed.is_empty(), "no orders were placed concurrently in this scenario");
    let world = &*world;
    let expected_total: usize = expected.iter().map(|(_, count)| count).sum();
    assert_eq!(expected_total, placed.len(), "the expected counts must cover every order placed");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // When each order was first seen paid, measured from the moment its POST was sent.
    let mut time_to_paid: HashMap<String, Duration> = HashMap::new();
    loop {
        let seen = orders_by_id(world).await;
        let now = Instant::now();
        let mut counts: HashMap<String, usize> = HashMap::new();
        if let Ok(orders) = &seen {
            for (order_id, sent) in &placed {
                let status = orders.get(order_id).and_then(|order| order["status"].as_str()).unwrap_or("missing").to_owned();
                if status == "paid" {
                    time_to_paid.entry(order_id.clone()).or_insert_with(|| now - *sent);
                }
                if status == "cancelled" {
                    let reason = orders[order_id].get("cancellation_reason").and_then(Value::as_str).unwrap_or_default();
                    assert!(!reason.is_empty(), "cancelled order {order_id} has no cancellation_reason: {}", orders[order_id]);
                }
                *counts.entry(status).or_default() += 1;
            }
        }
        let settled = seen.is_ok() && expected.iter().all(|(status, count)| counts.get(status).copied().unwrap_or(0) == *count);
        if settled {
            report_time_to_paid(&time_to_paid);
            return;
        }
        if now >= deadline {
            let last_seen = match seen {
                Ok(_) => format!("{counts:?}"),
                Err(error) => error,
            };
            panic!("within {seconds} s, expected {expected:?}; last seen: {last_seen}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn report_time_to_paid(time_to_paid: &HashMap<String, Duration>) {
    let mut durations: Vec<Duration> = time_to_paid.values().copied().collect();
    if durations.is_empty() {
        return;
    }
    durations.sort();
    let median = durations[durations.len() / 2];
    let worst = durations[durations.len() - 1];
    println!(
        "time from POST /api/v1/orders/ to paid over {} orders: median {} ms, worst {} ms (polled every {} ms)",
        durations.len(),
        median.as_millis(),
        worst.as_millis(),
        POLL_INTERVAL.as_millis()
    );
}

/// What an order step sends: each line is a quantity of a product named in the catalog.
struct OrderRequest {
    lines: Vec<(i64, String)>,
    /// The price sent for every line instead of the catalog's.
    price: Option<f64>,
    /// The email of the customer the order is placed for, instead of the caller.
    for_customer: Option<String>,
    /// Product ids sent in upper case.
    upper_case_ids: bool,
    /// `line1` of the shipping address replaced by this many characters.
    address_line_length: Option<usize>,
    /// Sent as `X-Request-Id` with the POST.
    request_id: Option<String>,
    /// Sent as `Idempotency-Key` with the POST.
    idempotency_key: Option<String>,
    /// Sent as `traceparent` with the POST.
    traceparent: Option<String>,
}

impl OrderRequest {
    fn of(lines: Vec<(i64, String)>) -> Self {
        Self {
            lines,
            price: None,
            for_customer: None,
            upper_case_ids: false,
            address_line_length: None,
            request_id: None,
            idempotency_key: None,
            traceparent: None,
        }
    }

    fn with_idempotency_key(lines: Vec<(i64, String)>, key: String) -> Self {
        Self { idempotency_key: Some(key), ..Self::of(lines) }
    }
}

/// The caller's default address, as an order's `shipping_address`.
async fn default_shipping_address(world: &ShopWorld) -> Value {
    let me = world.send(Method::GET, "/api/v1/users/me", Body::None, Credentials::Current).await;
    assert_eq!(me.status, 200, "GET /users/me failed: {}", me.text);
    let addresses = me.field("addresses").as_array().cloned().unwrap_or_default();
    let mut address = addresses
        .into_iter()
        .find(|address| address["is_default"] == true)
        .unwrap_or_else(|| panic!("the customer has no default address to ship to: {}", me.text));
    let fields = address.as_object_mut().expect("an address is an object");
    fields.remove("id");
    fields.remove("is_default");
    address
}

/// Sends `POST /api/v1/orders/` for the named products at their catalog prices (unless told
/// otherwise), to the caller's default address. Asserts nothing about the answer.
async fn send_order(world: &ShopWorld, request: &OrderRequest) -> Response {
    let mut items = Vec::new();
    for (quantity, name) in &request.lines {
        let product = product_named(world, name).await;
        let product_id = if request.upper_case_ids { product.id.to_ascii_uppercase() } else { product.id.clone() };
        items.push(json!({
            "product_id": product_id,
            "quantity": quantity,
            "price": request.price.unwrap_or(product.price)
        }));
    }
    let user_id = match &request.for_customer {
        Some(email) => session_of(world, email).await.user_id,
        None => world.variable("USER_ID").to_owned(),
    };
    let mut shipping_address = default_shipping_address(world).await;
    if let Some(length) = request.address_line_length {
        shipping_address["line1"] = Value::String("x".repeat(length));
    }
    let body = json!({"user_id": user_id, "items": items, "shipping_address": shipping_address});
    let mut headers: Vec<(&str, &str)> = request.request_id.iter().map(|id| ("x-request-id", id.as_str())).collect();
    headers.extend(request.idempotency_key.iter().map(|key| ("idempotency-key", key.as_str())));
    headers.extend(request.traceparent.iter().map(|traceparent| ("traceparent", traceparent.as_str())));
    world.send_with_headers(Method::POST, "/api/v1/orders/", Body::Json(body.to_string()), Credentials::Current, &headers).await
}

/// Places the order, checks it is accepted as pending, and makes it the current order.
async fn place_order(world: &mut ShopWorld, request: OrderRequest) {
    let response = send_order(world, &request).await;
    assert_eq!(response.status, 201, "the order was not accepted: {}", response.text);
    assert_eq!(response.field("status"), "pending", "a new order is pending: {}", response.text);
    let order_id = response.field("_id").as_str().expect("_id is a string").to_owned();
    let placed_before = world.variables.keys().filter(|name| is_numbered_order(name)).count();
    world.remember(&format!("ORDER_ID_{}", placed_before + 1), order_id.clone());
    world.remember(CURRENT_ORDER, order_id);
    world.last = Some(response);
}

fn is_numbered_order(name: &str) -> bool {
    name.strip_prefix("ORDER_ID_").is_some_and(|number| !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit()))
}

fn current_order(world: &ShopWorld) -> String {
    world.variables.get(CURRENT_ORDER).cloned().expect("no order has been placed in this scenario")
}

#[when(expr = "the customer orders {int} {string}")]
async fn the_customer_orders(world: &mut ShopWorld, quantity: i64, product: String) {
    place_order(world, OrderRequest::of(vec![(quantity, product)])).await;
}

#[when(expr = "the customer orders {int} {string} and {int} {string}")]
async fn the_customer_orders_two_products(
    world: &mut ShopWorld,
    first_quantity: i64,
    first_product: String,
    second_quantity: i64,
    second_product: String,
) {
    place_order(world, OrderRequest::of(vec![(first_quantity, first_product), (second_quantity, second_product)])).await;
}

/// An order the shop should refuse: the answer is the last response, for the steps after it.
#[when(expr = "the customer tries to order {int} {string} at {float}")]
async fn the_customer_tries_to_order_at_a_price(world: &mut ShopWorld, quantity: i64, product: String, price: f64) {
    let request = OrderRequest { price: Some(price), ..OrderRequest::of(vec![(quantity, product)]) };
    world.last = Some(send_order(world, &request).await);
}

/// An order the shop should refuse: the answer is the last response, for the steps after it.
#[when(expr = "the customer tries to order {int} {string} for {string}")]
async fn the_customer_tries_to_order_for_someone_else(world: &mut ShopWorld, quantity: i64, product: String, email: String) {
    let request = OrderRequest { for_customer: Some(email), ..OrderRequest::of(vec![(quantity, product)]) };
    world.last = Some(send_order(world, &request).await);
}

/// The catalog's ids are lower case; ids are normalised where they enter, so this is the same
/// product.
/// The POST carries the caller's own `X-Request-Id`.
#[when(expr = "the customer orders {int} {string} with the request id {string}")]
async fn the_customer_orders_with_a_request_id(world: &mut ShopWorld, quantity: i64, product: String, request_id: String) {
    place_order(world, OrderRequest { request_id: Some(request_id), ..OrderRequest::of(vec![(quantity, product)]) }).await;
}

#[when(expr = "the customer orders {int} {string} with the idempotency key {string}")]
async fn the_customer_orders_with_an_idempotency_key(world: &mut ShopWorld, quantity: i64, product: String, key: String) {
    place_order(world, OrderRequest::with_idempotency_key(vec![(quantity, product)], key)).await;
}

/// The same request sent again, as a client that timed out or got a 503 retries it: the answer
/// is the last response.
#[when(expr = "the customer sends that order of {int} {string} again with the idempotency key {string}")]
async fn the_customer_sends_the_order_again(world: &mut ShopWorld, quantity: i64, product: String, key: String) {
    world.last = Some(send_order(world, &OrderRequest::with_idempotency_key(vec![(quantity, product)], key)).await);
}

/// A request the shop should refuse; the answer is the last response.
#[when(expr = "the customer tries to order {int} {string} with the idempotency key {string}")]
async fn the_customer_tries_to_order_with_an_idempotency_key(world: &mut ShopWorld, quantity: i64, product: String, key: String) {
    world.last = Some(send_order(world, &OrderRequest::with_idempotency_key(vec![(quantity, product)], key)).await);
}

/// The last answer is the current order again (201, same id), marked as a replay.
#[then("the answer is that same order, replayed")]
async fn the_answer_is_the_same_order_replayed(world: &mut ShopWorld) {
    let response = world.last_response();
    assert_eq!(response.status, 201, "a retry is answered like its first try: {}", response.text);
    assert_eq!(response.field("_id"), current_order(world).as_str(), "a retry answered another order: {}", response.text);
    let replayed = response.headers.get("idempotent-replayed").and_then(|value| value.to_str().ok());
    assert_eq!(replayed, Some("true"), "a replayed answer says so");
}

/// `count` copies of one order request with one idempotency key, all in flight together (as a
/// client retrying too eagerly sends them): every one answers 201 with the same order, which
/// becomes the current order.
#[when(expr = "{int} copies of an order for {int} {string} with the idempotency key {string} are sent at once")]
async fn copies_with_one_key_are_sent_at_once(world: &mut ShopWorld, count: usize, quantity: i64, product: String, key: String) {
    let request = OrderRequest::with_idempotency_key(vec![(quantity, product)], key);
    let world_ref = &*world;
    let answers: Vec<Response> = futures::future::join_all((0..count).map(|_| send_order(world_ref, &request))).await;
    let mut order_ids = std::collections::BTreeSet::new();
    for answer in &answers {
        assert_eq!(answer.status, 201, "a copy was refused: {}", answer.text);
        order_ids.insert(answer.field("_id").as_str().expect("_id is a string").to_owned());
    }
    assert_eq!(order_ids.len(), 1, "{count} copies with one key placed {} orders: {order_ids:?}", order_ids.len());
    let order_id = order_ids.pop_first().expect("one order");
    world.remember(CURRENT_ORDER, order_id);
}

/// Every HTTP request and message the system handled under this request id, as `service` and
/// `METHOD /path` or queue: exactly the rows of the table, in any order.
#[then(expr = "the request id {string} reached exactly:")]
async fn the_request_id_reached(world: &mut ShopWorld, request_id: String, step: &cucumber::gherkin::Step) {
    let table = step.table.as_ref().expect("a table of service and what it handled");
    let mut expected: Vec<(String, String)> =
        table.rows.iter().skip(1).map(|row| (row[0].clone(), world.interpolate(&row[1]))).collect();
    expected.sort();
    let reached = shop_testkit::logs::reached_by(&world.system().id, &request_id);
    assert_eq!(reached, expected, "where the request id {request_id:?} went");
}

/// The span the customer's client calls from, in every trace a scenario starts.
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// The POST carries the caller's `X-Request-Id` and a W3C `traceparent` of the trace
/// `trace_id` (32 hexadecimal digits), as a client instrumented with OpenTelemetry sends; the
/// harness's OTLP receiver keeps that trace's spans.
#[when(expr = "the customer orders {int} {string} in the trace {string} with the request id {string}")]
async fn the_customer_orders_in_a_trace(
    world: &mut ShopWorld,
    quantity: i64,
    product: String,
    trace_id: String,
    request_id: String,
) {
    shop_testkit::traces::watch(&trace_id);
    let traceparent = format!("00-{trace_id}-{CALLER_SPAN_ID}-01");
    let request = OrderRequest {
        request_id: Some(request_id),
        traceparent: Some(traceparent),
        ..OrderRequest::of(vec![(quantity, product)])
    };
    place_order(world, request).await;
}

/// The spans of the trace, drawn as `shop_testkit::traces::tree` draws them, are exactly the
/// doc string: every span there, none more, each under its parent, the top ones children of the
/// customer's own span.
#[then(expr = "the trace {string} is exactly:")]
async fn the_trace_is_exactly(world: &mut ShopWorld, trace_id: String, step: &cucumber::gherkin::Step) {
    let _ = world;
    let expected = step.docstring.as_ref().expect("the trace's tree as a doc string");
    let expected: Vec<&str> = expected.lines().map(str::trim_end).filter(|line| !line.trim().is_empty()).collect();
    let expected = expected.join("\n");
    eventually(Duration::from_secs(30), &format!("the trace {trace_id}"), || {
        let (trace_id, expected) = (trace_id.clone(), expected.clone());
        async move {
            // The services export in batches: what has ended goes now (a blocking call: the
            // exporter's thread answers when it has sent).
            tokio::task::spawn_blocking(common::telemetry::flush).await.map_err(|error| error.to_string())?;
            let drawn = shop_testkit::traces::tree(&shop_testkit::traces::spans_of(&trace_id), CALLER_SPAN_ID);
            if drawn == expected { Ok(()) } else { Err(format!("the trace is:\n{drawn}")) }
        }
    })
    .await;
}

/// Every request and message span the request id reached recorded the trace's id beside it, so
/// each of their log lines carries both.
#[then(expr = "everywhere the request id {string} went, the trace {string} went with it")]
async fn the_request_id_went_with_the_trace(world: &mut ShopWorld, request_id: String, trace_id: String) {
    let reached = shop_testkit::logs::reached_with_traces(&world.system().id, &request_id);
    assert!(!reached.is_empty(), "the request id {request_id:?} reached nothing");
    let elsewhere: Vec<String> = reached
        .iter()
        .filter(|reached| reached.trace_id.as_deref() != Some(trace_id.as_str()))
        .map(|reached| format!("{} {}: trace {:?}", reached.service, reached.what, reached.trace_id))
        .collect();
    assert!(elsewhere.is_empty(), "spans of the request id {request_id:?} outside the trace {trace_id}: {elsewhere:#?}");
}

#[when(expr = "the customer orders {int} {string} by its id in upper case")]
async fn the_customer_orders_by_upper_case_id(world: &mut ShopWorld, quantity: i64, product: String) {
    place_order(world, OrderRequest { upper_case_ids: true, ..OrderRequest::of(vec![(quantity, product)]) }).await;
}

/// An order the shop should refuse: the answer is the last response, for the steps after it.
#[when(expr = "the customer tries to order {int} {string} to an address line of {int} characters")]
async fn the_customer_tries_to_order_to_a_long_address(world: &mut ShopWorld, quantity: i64, product: String, length: usize) {
    let request = OrderRequest { address_line_length: Some(length), ..OrderRequest::of(vec![(quantity, product)]) };
    world.last = Some(send_order(world, &request).await);
}

/// An order the shop should refuse: the answer is the last response, for the steps after it.
#[when(expr = "the customer tries to order {int} lines of 1 {string}")]
async fn the_customer_tries_to_order_many_lines(world: &mut ShopWorld, lines: usize, product: String) {
    let request = OrderRequest::of(vec![(1, product); lines]);
    world.last = Some(send_order(world, &request).await);
}

/// Waits until the current order has `status`; an order cancelled on the way to another status
/// fails at once, with its reason. The order becomes the last response.
async fn wait_for_status(world: &mut ShopWorld, status: &str) -> Response {
    let order_id = current_order(world);
    wait_for_status_of(world, &order_id, status).await
}

/// [`wait_for_status`] for the order `order_id`.
async fn wait_for_status_of(world: &mut ShopWorld, order_id: &str, status: &str) -> Response {
    let path = format!("/api/v1/orders/{order_id}");
    let world_ref = &*world;
    let response = eventually(STATUS_DEADLINE, &format!("the order becoming {status}"), || {
        let path = path.clone();
        async move {
            let response = world_ref.try_send(Method::GET, &path, Body::None, Credentials::Current).await?;
            let actual = response.json.as_ref().and_then(|order| order["status"].as_str()).unwrap_or_default().to_owned();
            if response.status == 200 && actual == status {
                return Ok(response);
            }
            assert!(
                !(actual == "cancelled" && status != "cancelled"),
                "the order was cancelled instead of becoming {status}: {}",
                response.text
            );
            Err(format!("{} {}", response.status, response.text))
        }
    })
    .await;
    world.last = Some(response.clone());
    response
}

/// Set-up for scenarios about orders once paid: an order placed by name (see `the customer
/// orders ...`; it is numbered and becomes the current order like any other), then awaited until
/// it is paid. Fails here, loudly, if the order is refused, cancelled or not paid in time.
#[given(expr = "the customer has a paid order of {int} {string}")]
async fn the_customer_has_a_paid_order(world: &mut ShopWorld, quantity: i64, product: String) {
    place_order(world, OrderRequest::of(vec![(quantity, product)])).await;
    wait_for_status(world, "paid").await;
}

#[given(expr = "the customer has a paid order of {int} {string} and {int} {string}")]
async fn the_customer_has_a_paid_order_of_two_products(
    world: &mut ShopWorld,
    first_quantity: i64,
    first_product: String,
    second_quantity: i64,
    second_product: String,
) {
    place_order(world, OrderRequest::of(vec![(first_quantity, first_product), (second_quantity, second_product)])).await;
    wait_for_status(world, "paid").await;
}

/// The ids of the orders in the last response, a list of orders.
fn listed_order_ids(world: &ShopWorld) -> Vec<&str> {
    let response = world.last_response();
    let orders = response.json().as_array().unwrap_or_else(|| panic!("not a list of orders: {}", response.text));
    orders.iter().map(|order| order["_id"].as_str().unwrap_or("?")).collect()
}

/// The last response, a list of orders, holds exactly one: the scenario's order `number`.
#[then(expr = "the response lists only order {int}")]
async fn lists_only_order(world: &mut ShopWorld, number: usize) {
    let expected = world.variable(&format!("ORDER_ID_{number}"));
    assert_eq!(
        listed_order_ids(world),
        [expected],
        "the orders listed, where only order {number} was expected: {}",
        world.last_response().text
    );
}

/// The last response, a list of orders, holds exactly these two, in this order. Orders are
/// numbered in the order they were placed, so "newest first" means the higher number first.
#[then(expr = "the response lists order {int} then order {int}, newest first")]
async fn lists_two_orders_newest_first(world: &mut ShopWorld, first: usize, second: usize) {
    assert!(first > second, "order {first} was placed before order {second}, so it is not the newer one");
    let expected = [world.variable(&format!("ORDER_ID_{first}")), world.variable(&format!("ORDER_ID_{second}"))];
    assert_eq!(listed_order_ids(world), expected, "the orders listed: {}", world.last_response().text);
}

#[then(expr = "the order is {word}")]
async fn the_order_is(world: &mut ShopWorld, status: String) {
    wait_for_status(world, &status).await;
}

/// The scenario's order number `number` (in the order they were placed) reaches `status`.
#[then(expr = "order {int} is {word}")]
async fn numbered_order_is(world: &mut ShopWorld, number: usize, status: String) {
    let order_id = world.variable(&format!("ORDER_ID_{number}")).to_owned();
    wait_for_status_of(world, &order_id, &status).await;
}

/// While the order service cannot store orders, a new order is refused with a JSON 503, at
/// once rather than after the gateway's timeout, and nothing of it is stored (see the order
/// count afterwards).
#[then("the customer cannot place an order while the orders are unavailable")]
async fn the_customer_cannot_place_an_order(world: &mut ShopWorld) {
    let response = send_order(world, &OrderRequest::of(vec![(1, "Premium Smartphone".into())])).await;
    assert_eq!(response.status, 503, "an order placed while orders cannot be stored: {}", response.text);
    assert!(response.field("detail").is_string(), "a 503 says why: {}", response.text);
    world.last = Some(response);
}

/// The inventory refused the order: it is cancelled, and its reason names the product that
/// was short.
#[then(expr = "the order is cancelled for lack of {string}")]
async fn the_order_is_cancelled_for_lack_of(world: &mut ShopWorld, product: String) {
    let order = wait_for_status(world, "cancelled").await;
    let reason = order.field("cancellation_reason").as_str().unwrap_or_else(|| panic!("no reason: {}", order.text)).to_owned();
    let product = product_named(world, &product).await;
    assert!(
        reason.contains("insufficient stock") && reason.contains(&product.id),
        "the reason does not say that {} was short: {reason:?}",
        product.id
    );
}

/// A status change asked of the current order, by its customer or by the member of staff; the
/// next steps check the answer (it may be refused).
#[when(expr = "{actor} tries to move the order to {word}")]
async fn tries_to_move_the_order(world: &mut ShopWorld, actor: Actor, status: String) {
    let path = format!("/api/v1/orders/{}/status", current_order(world));
    actor.tries(world, Method::PUT, &path, Body::Json(json!({ "status": status }).to_string())).await;
}

#[when("the customer cancels the order")]
async fn the_customer_cancels_the_order(world: &mut ShopWorld) {
    let order_id = current_order(world);
    cancel(world, &order_id).await;
}

/// Cancels the scenario's order `number` (in the order they were placed).
#[when(expr = "the customer cancels order {int}")]
async fn the_customer_cancels_a_numbered_order(world: &mut ShopWorld, number: usize) {
    let order_id = world.variable(&format!("ORDER_ID_{number}")).to_owned();
    cancel(world, &order_id).await;
}

async fn cancel(world: &mut ShopWorld, order_id: &str) {
    let response = world.send(Method::DELETE, &format!("/api/v1/orders/{order_id}"), Body::None, Credentials::Current).await;
    assert_eq!(response.status, 204, "cancelling the order {order_id} failed: {}", response.text);
    world.last = Some(response);
}

async fn assert_order_count(world: &ShopWorld, whose: &str, credentials: Credentials, count: usize) {
    let response = world.send(Method::GET, "/api/v1/orders/", Body::None, credentials).await;
    assert_eq!(response.status, 200, "listing the orders of {whose} failed: {}", response.text);
    let orders = response.json().as_array().unwrap_or_else(|| panic!("not a list: {}", response.text));
    assert_eq!(orders.len(), count, "the orders of {whose}: {}", response.text);
}

/// The current customer's order list holds exactly `count` orders.
#[then(expr = "the customer has {int} order(s)")]
async fn the_customer_has_orders(world: &mut ShopWorld, count: usize) {
    assert_order_count(world, "the customer", Credentials::Current, count).await;
}

/// The order list of the customer with this email (logged in for a moment, without changing who
/// the scenario is logged in as) holds exactly `count` orders.
#[then(expr = "{string} has {int} order(s)")]
async fn customer_has_orders(world: &mut ShopWorld, email: String, count: usize) {
    let session = session_of(world, &email).await;
    assert_order_count(world, &email, Credentials::Token(session.access_token), count).await;
}
