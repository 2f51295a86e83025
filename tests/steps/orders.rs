//! Steps about orders that the generic HTTP steps cannot express: placing many orders at once
//! (bounded concurrency, through the gateway, with the scenario's token) and waiting until they
//! have all settled, measuring how long each took from its `POST /api/v1/orders/` to `paid`.
//!
//! The timings are printed as one line per step (median and worst), so a run of the features
//! doubles as a rough latency measurement of the whole order flow.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cucumber::{then, when};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::world::{Body, Credentials, ShopWorld};

/// How many order requests are in flight at once: enough to make the orders race each other for
/// the same stock, few enough not to measure nginx's or the test client's queueing instead.
const CONCURRENT_REQUESTS: usize = 16;

/// How often the orders are polled while waiting for them to settle.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn order_body(world: &ShopWorld, product_id: &str, quantity: i64, price: f64) -> String {
    json!({
        "user_id": world.variable("USER_ID"),
        "items": [{ "product_id": product_id, "quantity": quantity, "price": price }],
        "shipping_address": {
            "line1": "123 Example Street",
            "line2": "Apt 4B",
            "city": "Example City",
            "state": "EX",
            "postal_code": "12345",
            "country": "Example Country"
        }
    })
    .to_string()
}

#[when(expr = "{int} order(s) of {int} unit(s) of {string} at {float} are placed concurrently")]
async fn orders_are_placed_concurrently(world: &mut ShopWorld, count: usize, quantity: i64, product: String, price: f64) {
    let product_id = world.interpolate(&product);
    let body = order_body(world, &product_id, quantity, price);
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

/// Every order of the current customer, by id, read page by page through the list endpoint.
async fn orders_by_id(world: &ShopWorld) -> Result<HashMap<String, Value>, String> {
    let mut orders = HashMap::new();
    let page_size = 100;
    loop {
        let path = format!("/api/v1/orders/?skip={}&limit={page_size}", orders.len());
        let response = world.send(Method::GET, &path, Body::None, Credentials::Current).await;
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

#[then(expr = "within {int} seconds {int} of those orders are {string} and {int} are {string}")]
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

#[then(expr = "within {int} seconds every one of those orders is {string}")]
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
