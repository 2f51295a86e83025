//! The catalog and its stock in the shop's words: the guide's three products, a product added by
//! name, and how much of a product is available and reserved.
//!
//! A product is named by its name, looked up in the scenario's catalog (every scenario has its
//! own system, so every product in it was created by the scenario). Stock is asserted by polling
//! until it reads as expected: a stock step is an "eventually" check, so a step that claims the
//! stock did NOT change must come after the event that could have changed it (or after `the shop
//! has settled`).

use std::str::FromStr;
use std::time::Duration;

use cucumber::{Parameter, given, then, when};
use reqwest::Method;
use serde_json::{Value, json};

use shop_testkit::eventually::eventually;
use shop_testkit::world::{Body, Credentials, Response, ShopWorld};

/// How long stock may take to reach what a step expects: a reservation or release travels
/// through two queues and an outbox relay, which takes well under a second on a quiet machine.
const STOCK_DEADLINE: Duration = Duration::from_secs(20);

/// The products of the guide's steps 3.1 to 3.3, in order.
fn guide_products() -> [Value; 3] {
    [
        json!({
            "name": "Premium Smartphone",
            "description": "Latest model with high-end camera and long battery life",
            "category": "Electronics",
            "price": 899.99,
            "quantity": 50
        }),
        json!({
            "name": "Wireless Noise-Cancelling Headphones",
            "description": "Premium headphones with active noise cancellation",
            "category": "Audio",
            "price": 249.99,
            "quantity": 100
        }),
        json!({
            "name": "Smart Fitness Watch",
            "description": "Waterproof fitness tracker with heart rate monitoring",
            "category": "Wearables",
            "price": 179.99,
            "quantity": 75
        }),
    ]
}

/// A product of the scenario's catalog.
pub struct Product {
    pub id: String,
    pub price: f64,
}

/// The one product of the catalog named exactly `name`.
pub async fn product_named(world: &ShopWorld, name: &str) -> Product {
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let path = format!("/api/v1/products/?name={encoded}&limit=100");
    let response = world.send(Method::GET, &path, Body::None, Credentials::Anonymous).await;
    assert_eq!(response.status, 200, "looking up {name:?} in the catalog failed: {}", response.text);
    let matches: Vec<&Value> =
        response.json().as_array().into_iter().flatten().filter(|product| product["name"] == name).collect();
    let [product] = matches.as_slice() else {
        panic!("expected exactly one product named {name:?} in the catalog: {}", response.text);
    };
    Product {
        id: product["_id"].as_str().expect("_id is a string").to_owned(),
        price: product["price"].as_f64().expect("price is a number"),
    }
}

/// Creates a product with the current token and checks the catalog's answer; returns its id.
async fn create_product(world: &ShopWorld, product: &Value) -> String {
    let response = world.send(Method::POST, "/api/v1/products/", Body::Json(product.to_string()), Credentials::Current).await;
    assert_eq!(response.status, 201, "creating {} failed: {}", product["name"], response.text);
    assert_eq!(response.field("name"), &product["name"], "the catalog answered another product: {}", response.text);
    response.field("_id").as_str().expect("_id is a string").to_owned()
}

/// Polls a product's stock record until it reads `available` and `reserved`; returns it.
pub(super) async fn wait_for_stock(world: &ShopWorld, what: &str, product_id: &str, available: i64, reserved: i64) -> Response {
    let path = format!("/api/v1/inventory/{product_id}");
    eventually(STOCK_DEADLINE, &format!("{what} having {available} available and {reserved} reserved"), || {
        let path = path.clone();
        async move {
            let response = world.try_send(Method::GET, &path, Body::None, Credentials::Current).await?;
            let reads = |field: &str| response.json.as_ref().and_then(|json| json[field].as_i64());
            if response.status == 200
                && reads("available_quantity") == Some(available)
                && reads("reserved_quantity") == Some(reserved)
            {
                Ok(response)
            } else {
                Err(format!("{} {}", response.status, response.text))
            }
        }
    })
    .await
}

/// Creates the guide's three products with the current token, one after the other (so their
/// creation order is the guide's), remembers their ids as PRODUCT_ID_1 to PRODUCT_ID_3, and
/// waits until each one's stock record exists with its whole quantity available.
#[given("the guide's catalog")]
async fn the_guides_catalog(world: &mut ShopWorld) {
    let products = guide_products();
    let mut created = Vec::new();
    for (index, product) in products.iter().enumerate() {
        let id = create_product(world, product).await;
        world.remember(&format!("PRODUCT_ID_{}", index + 1), id.clone());
        created.push((product, id));
    }
    for (product, id) in created {
        let name = product["name"].as_str().expect("name");
        wait_for_stock(world, name, &id, product["quantity"].as_i64().expect("quantity"), 0).await;
    }
}

/// Adds a product to the catalog (category "General", no description) and remembers its id as
/// its name in capitals with `_ID` ("Desk Lamp" is DESK_LAMP_ID). Its stock record appears
/// asynchronously; this step does not wait for it.
fn new_product(quantity: i64, name: &str, price: f64) -> Value {
    json!({"name": name, "description": "", "category": "General", "price": price, "quantity": quantity})
}

#[when(expr = "the customer adds {int} {string} at {float} to the catalog")]
async fn the_customer_adds_a_product(world: &mut ShopWorld, quantity: i64, name: String, price: f64) {
    let id = create_product(world, &new_product(quantity, &name, price)).await;
    let variable: String = name
        .chars()
        .map(|character| if character.is_ascii_alphanumeric() { character.to_ascii_uppercase() } else { '_' })
        .collect();
    world.remember(&format!("{variable}_ID"), id);
}

/// Waits until the product's stock reads exactly this; the stock record becomes the last
/// response, for a snapshot to follow.
#[then(expr = "{string} has {int} available and {int} reserved")]
async fn product_has_stock(world: &mut ShopWorld, name: String, available: i64, reserved: i64) {
    let product = product_named(world, &name).await;
    let response = wait_for_stock(world, &format!("{name:?}"), &product.id, available, reserved).await;
    world.last = Some(response);
}

/// The last response, a list of products, holds exactly the products with these names, in
/// whatever order: where which products a filter or a page matched is the point.
fn assert_lists_only_products(world: &ShopWorld, names: &[&str]) {
    let response = world.last_response();
    let items = response.json().as_array().unwrap_or_else(|| panic!("not a list of products: {}", response.text));
    let mut listed: Vec<&str> = items.iter().map(|product| product["name"].as_str().unwrap_or("?")).collect();
    let mut expected = names.to_vec();
    listed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(listed, expected, "the products listed: {}", response.text);
}

#[then(expr = "the response lists only the product {string}")]
async fn lists_only_the_product(world: &mut ShopWorld, name: String) {
    assert_lists_only_products(world, &[&name]);
}

#[then(expr = "the response lists only the products {string} and {string}")]
async fn lists_only_the_products(world: &mut ShopWorld, first: String, second: String) {
    assert_lists_only_products(world, &[&first, &second]);
}

/// The last response, a list of stock records, holds exactly one: the named product's.
#[then(expr = "the response lists only the stock of {string}")]
async fn lists_only_the_stock_of(world: &mut ShopWorld, name: String) {
    let product = product_named(world, &name).await;
    let response = world.last_response();
    let items = response.json().as_array().unwrap_or_else(|| panic!("not a list of stock records: {}", response.text));
    let listed: Vec<&str> = items.iter().map(|record| record["product_id"].as_str().unwrap_or("?")).collect();
    assert_eq!(listed, [product.id.as_str()], "the stock records listed, where only {name:?}'s was expected: {}", response.text);
}

/// The kinds of change in the product's stock history, oldest first, comma-separated
/// ("product_created, adjustment").
#[then(expr = "the stock history of {string} is {string}")]
async fn stock_history_is(world: &mut ShopWorld, name: String, expected: String) {
    let product = product_named(world, &name).await;
    let path = format!("/api/v1/inventory/{}/history", product.id);
    // Staff work where staff is required (it names other customers' orders): read as staff when
    // the scenario has a member of staff.
    let credentials = world.variables.get("STAFF_TOKEN").map_or(Credentials::Current, |token| Credentials::Token(token.clone()));
    let response = world.send(Method::GET, &path, Body::None, credentials).await;
    assert_eq!(response.status, 200, "GET {path} failed: {}", response.text);
    let changes: Vec<&str> =
        response.json().as_array().into_iter().flatten().map(|entry| entry["change"].as_str().unwrap_or("?")).collect();
    let expected: Vec<&str> = expected.split(',').map(str::trim).collect();
    assert_eq!(changes, expected, "the stock history of {name:?}: {}", response.text);
}

/// Who sends a write: the scenario's customer, or the member of staff.
#[derive(Debug, Clone, Copy, Parameter)]
#[param(name = "actor", regex = r"the customer|staff")]
pub enum Actor {
    Customer,
    Staff,
}

impl FromStr for Actor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "the customer" => Ok(Actor::Customer),
            "staff" => Ok(Actor::Staff),
            other => Err(format!("unknown actor {other:?}")),
        }
    }
}

impl Actor {
    pub fn credentials(self, world: &ShopWorld) -> Credentials {
        match self {
            Actor::Customer => Credentials::Current,
            Actor::Staff => Credentials::Token(world.variable("STAFF_TOKEN").to_owned()),
        }
    }

    /// Sends a write whose answer the next steps check (it may be refused).
    pub async fn tries(self, world: &mut ShopWorld, method: Method, path: &str, body: Body) {
        let credentials = self.credentials(world);
        world.last = Some(world.send(method, path, body, credentials).await);
    }
}

#[when(expr = "{actor} tries to add {int} {string} at {float} to the catalog")]
async fn tries_to_add_a_product(world: &mut ShopWorld, actor: Actor, quantity: i64, name: String, price: f64) {
    let body = Body::Json(new_product(quantity, &name, price).to_string());
    actor.tries(world, Method::POST, "/api/v1/products/", body).await;
}

#[when(expr = "{actor} tries to change the price of {string} to {float}")]
async fn tries_to_change_a_price(world: &mut ShopWorld, actor: Actor, name: String, price: f64) {
    let product = product_named(world, &name).await;
    let body = Body::Json(json!({ "price": price }).to_string());
    actor.tries(world, Method::PUT, &format!("/api/v1/products/{}", product.id), body).await;
}

#[when(expr = "{actor} tries to delete {string} from the catalog")]
async fn tries_to_delete_a_product(world: &mut ShopWorld, actor: Actor, name: String) {
    let product = product_named(world, &name).await;
    actor.tries(world, Method::DELETE, &format!("/api/v1/products/{}", product.id), Body::None).await;
}

/// A stock adjustment by hand (a delivery when positive, breakage when negative).
#[when(expr = "{actor} tries to add {int} units of {string} to the stock")]
async fn tries_to_adjust_stock(world: &mut ShopWorld, actor: Actor, units: i64, name: String) {
    let product = product_named(world, &name).await;
    let body = Body::Json(json!({ "quantity_change": units, "reason": "delivery" }).to_string());
    actor.tries(world, Method::POST, &format!("/api/v1/inventory/{}/adjust", product.id), body).await;
}

/// Where the product's price stands in the catalog.
#[then(expr = "{string} costs {float}")]
async fn product_costs(world: &mut ShopWorld, name: String, price: f64) {
    let product = product_named(world, &name).await;
    assert!((product.price - price).abs() < 1e-9, "{name:?} costs {}, not {price}", product.price);
}
