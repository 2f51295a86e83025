//! goose load tests against a running system (`cargo xtask up`, or docker-compose), replacing
//! the guide's bash load script.
//!
//! Each simulated shopper registers its own account and logs in once (on start), then browses the
//! catalog, reads a product, places an order for one unit, and reads its order back. A product
//! with ample stock is created once before the test starts. Every request checks its status, so a
//! 4xx or 5xx counts as an error in goose's report.
//!
//! ```text
//! cargo xtask load --host http://localhost --users 20 --increase-rate 20 --run-time 30s \
//!     --no-telnet --no-websocket --report-file target/load-report.md
//! ```
//!
//! Hosts: only point this at a system you run yourself on this machine.

use std::sync::OnceLock;

use goose::prelude::*;
use serde_json::{Value, json};

/// The product every shopper orders, created once by `create_catalog`.
static PRODUCT: OnceLock<(String, f64)> = OnceLock::new();

/// What each shopper remembers between transactions.
#[derive(Clone)]
struct Shopper {
    token: String,
    user_id: String,
    last_order_id: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    GooseAttack::initialize()?
        .test_start(transaction!(create_catalog))
        .register_scenario(
            scenario!("Shopper")
                .register_transaction(transaction!(register_and_log_in).set_on_start().set_name("register and log in"))
                .register_transaction(transaction!(browse_catalog).set_weight(4)?.set_name("GET /products/"))
                .register_transaction(transaction!(read_product).set_weight(2)?.set_name("GET /products/{id}"))
                .register_transaction(transaction!(place_order).set_weight(2)?.set_name("POST /orders/"))
                .register_transaction(transaction!(read_order).set_weight(1)?.set_name("GET /orders/{id}")),
        )
        .set_default(GooseDefault::Host, "http://localhost")?
        .execute()
        .await?;
    Ok(())
}

async fn register(user: &mut GooseUser, email: &str) -> TransactionResult {
    let body = json!({
        "email": email, "password": "LoadTest123", "first_name": "Load", "last_name": "Shopper", "phone": "555-000-0000"
    });
    let builder = user.get_request_builder(&GooseMethod::Post, "/api/v1/auth/register")?.json(&body);
    user.request(GooseRequest::builder().set_request_builder(builder).name("/auth/register").expect_status_code(201).build())
        .await?;
    Ok(())
}

async fn log_in(user: &mut GooseUser, email: &str) -> Result<(String, String), Box<TransactionError>> {
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/v1/auth/login")?
        .form(&[("username", email), ("password", "LoadTest123")]);
    let response = user.request(GooseRequest::builder().set_request_builder(builder).name("/auth/login").build()).await?;
    let tokens: Value = response.response?.json().await.map_err(|error| Box::new(TransactionError::Reqwest(error)))?;
    let token = tokens["access_token"].as_str().unwrap_or_default().to_owned();
    let builder = user.get_request_builder(&GooseMethod::Get, "/api/v1/users/me")?.bearer_auth(&token);
    let response = user.request(GooseRequest::builder().set_request_builder(builder).name("/users/me").build()).await?;
    let me: Value = response.response?.json().await.map_err(|error| Box::new(TransactionError::Reqwest(error)))?;
    Ok((token, me["id"].to_string()))
}

/// Runs once before the shoppers start: an account to create the product with, and the product.
async fn create_catalog(user: &mut GooseUser) -> TransactionResult {
    let email = format!("load-admin-{}@example.com", uuid::Uuid::new_v4().simple());
    register(user, &email).await?;
    let (token, _) = log_in(user, &email).await?;
    let price = 19.99;
    let body = json!({
        "name": "Load Test Widget", "description": "Created by the goose load test", "category": "LoadTest",
        "price": price, "quantity": 1_000_000
    });
    let builder = user.get_request_builder(&GooseMethod::Post, "/api/v1/products/")?.bearer_auth(&token).json(&body);
    let response = user
        .request(GooseRequest::builder().set_request_builder(builder).name("/products/").expect_status_code(201).build())
        .await?;
    let product: Value = response.response?.json().await.map_err(|error| Box::new(TransactionError::Reqwest(error)))?;
    let _ = PRODUCT.set((product["_id"].as_str().unwrap_or_default().to_owned(), price));
    Ok(())
}

async fn register_and_log_in(user: &mut GooseUser) -> TransactionResult {
    let email = format!("shopper-{}@example.com", uuid::Uuid::new_v4().simple());
    register(user, &email).await?;
    let (token, user_id) = log_in(user, &email).await?;
    user.set_session_data(Shopper { token, user_id, last_order_id: None });
    Ok(())
}

async fn browse_catalog(user: &mut GooseUser) -> TransactionResult {
    user.get_named("/api/v1/products/?category=LoadTest", "/products/?category=").await?;
    Ok(())
}

async fn read_product(user: &mut GooseUser) -> TransactionResult {
    let Some((product_id, _)) = PRODUCT.get() else { return Ok(()) };
    user.get_named(&format!("/api/v1/products/{product_id}"), "/products/{id}").await?;
    Ok(())
}

async fn place_order(user: &mut GooseUser) -> TransactionResult {
    let Some((product_id, price)) = PRODUCT.get() else { return Ok(()) };
    let shopper = user.get_session_data_unchecked::<Shopper>();
    let (token, user_id) = (shopper.token.clone(), shopper.user_id.clone());
    let body = json!({
        "user_id": user_id,
        "items": [{ "product_id": product_id, "quantity": 1, "price": price }],
        "shipping_address": {
            "line1": "123 Test St", "city": "Test City", "state": "TS", "postal_code": "12345", "country": "Test Country"
        }
    });
    // Sent with an Idempotency-Key and retried with it after a 5xx or no answer, as a careful
    // client does: a retry of an order that was placed answers with that order, never a second.
    let key = uuid::Uuid::new_v4().to_string();
    for try_number in 1..=ORDER_TRIES {
        let builder = user
            .get_request_builder(&GooseMethod::Post, "/api/v1/orders/")?
            .bearer_auth(&token)
            .header("idempotency-key", &key)
            .json(&body);
        let name = if try_number == 1 { "/orders/" } else { "/orders/ (retry)" };
        let response =
            user.request(GooseRequest::builder().set_request_builder(builder).name(name).expect_status_code(201).build()).await?;
        match response.response {
            Ok(response) if response.status().is_server_error() => continue,
            Ok(response) => {
                if let Ok(order) = response.json::<Value>().await {
                    user.get_session_data_unchecked_mut::<Shopper>().last_order_id = order["_id"].as_str().map(str::to_owned);
                }
                return Ok(());
            }
            Err(_no_answer) => continue,
        }
    }
    Ok(())
}

/// How many times the load test sends one order (the same request and key) before giving up.
const ORDER_TRIES: u32 = 3;

async fn read_order(user: &mut GooseUser) -> TransactionResult {
    let shopper = user.get_session_data_unchecked::<Shopper>();
    let Some(order_id) = shopper.last_order_id.clone() else { return Ok(()) };
    let token = shopper.token.clone();
    let builder = user.get_request_builder(&GooseMethod::Get, &format!("/api/v1/orders/{order_id}"))?.bearer_auth(&token);
    user.request(GooseRequest::builder().set_request_builder(builder).name("/orders/{id}").build()).await?;
    Ok(())
}
