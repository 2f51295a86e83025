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
use load_tests::{decode, send};
use shop_testkit_base::api::paths;
use shop_testkit_base::model::{Address, NewOrder, NewProduct, Order, OrderLine, Registration, Tokens, User};
use shop_testkit_base::{Call, Client};

/// The product every shopper orders, created once by `create_catalog`.
static PRODUCT: OnceLock<(String, f64)> = OnceLock::new();
const PASSWORD: &str = "LoadTest123";

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

fn registration(email: &str) -> Registration {
    Registration { phone: Some("555-000-0000".into()), ..Registration::customer(email, PASSWORD, "Load", "Shopper") }
}

/// Runs once before the shoppers start: an account to create the product with, and the product,
/// through the typed client (set-up, not measured).
async fn create_catalog(user: &mut GooseUser) -> TransactionResult {
    let shop = Client::new(user.base_url.as_str());
    let email = format!("load-admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let set_up = async {
        let admin = shop.sign_up(&registration(&email)).await?;
        let product = NewProduct {
            name: "Load Test Widget".into(),
            description: Some("Created by the goose load test".into()),
            category: "LoadTest".into(),
            price: 19.99,
            quantity: 1_000_000,
        };
        shop.create_product(&admin.tokens.access_token, &product).await
    };
    match set_up.await {
        Ok(product) => {
            let _ = PRODUCT.set((product.id, product.price));
            Ok(())
        }
        Err(error) => Err(Box::new(TransactionError::Custom(format!("creating the catalog: {error}")))),
    }
}

async fn register_and_log_in(user: &mut GooseUser) -> TransactionResult {
    let email = format!("shopper-{}@example.com", uuid::Uuid::new_v4().simple());
    send(user, &Call::register(&registration(&email)), "/auth/register", Some(201)).await?;
    let tokens: Tokens = decode(send(user, &Call::log_in(&email, PASSWORD), "/auth/login", None).await?).await?;
    let me: User = decode(send(user, &Call::me(&tokens.access_token), "/users/me", None).await?).await?;
    user.set_session_data(Shopper { token: tokens.access_token, user_id: me.id.to_string(), last_order_id: None });
    Ok(())
}

async fn browse_catalog(user: &mut GooseUser) -> TransactionResult {
    send(user, &Call::get(format!("{}?category=LoadTest", paths::PRODUCTS)), "/products/?category=", None).await?;
    Ok(())
}

async fn read_product(user: &mut GooseUser) -> TransactionResult {
    let Some((product_id, _)) = PRODUCT.get() else { return Ok(()) };
    send(user, &Call::product(product_id), "/products/{id}", None).await?;
    Ok(())
}

async fn place_order(user: &mut GooseUser) -> TransactionResult {
    let Some((product_id, price)) = PRODUCT.get() else { return Ok(()) };
    let shopper = user.get_session_data_unchecked::<Shopper>();
    let (token, user_id) = (shopper.token.clone(), shopper.user_id.clone());
    let order = NewOrder {
        user_id,
        items: vec![OrderLine { product_id: product_id.clone(), quantity: 1, price: *price }],
        shipping_address: Address {
            line1: "123 Test St".into(),
            line2: None,
            city: "Test City".into(),
            state: "TS".into(),
            postal_code: "12345".into(),
            country: "Test Country".into(),
        },
    };
    // Sent with an Idempotency-Key and retried with it after a 5xx or no answer, as a careful
    // client does: a retry of an order that was placed answers with that order, never a second.
    let key = uuid::Uuid::new_v4().to_string();
    let call = Call::place_order(&token, Some(&key), &order);
    for try_number in 1..=ORDER_TRIES {
        let name = if try_number == 1 { "/orders/" } else { "/orders/ (retry)" };
        let response = send(user, &call, name, Some(201)).await?;
        match response.response {
            Ok(response) if response.status().is_server_error() => continue,
            Ok(response) => {
                if let Ok(order) = response.json::<Order>().await {
                    user.get_session_data_unchecked_mut::<Shopper>().last_order_id = Some(order.id);
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
    send(user, &Call::order(&token, &order_id), "/orders/{id}", None).await?;
    Ok(())
}
