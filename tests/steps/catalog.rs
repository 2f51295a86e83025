//! Steps about the catalog and its stock that the generic HTTP steps cannot express: creating
//! the guide's three products as a precondition (the scenarios that show the creation requests
//! themselves spell them out), and waiting for an asynchronous effect that ends in a status
//! other than 200 (a deleted product's stock record disappearing).

use std::time::Duration;

use cucumber::{given, then};
use reqwest::Method;
use serde_json::json;

use crate::support::eventually::eventually;
use crate::support::world::{Body, Credentials, ShopWorld};

/// The products of the guide's steps 3.1 to 3.3, in order.
fn guide_products() -> [serde_json::Value; 3] {
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

/// Creates the guide's three products with the current token, one after the other (so their
/// creation order is the guide's), and remembers their ids as PRODUCT_ID_1 to PRODUCT_ID_3.
#[given("the guide's three products have been created")]
async fn the_guides_three_products_have_been_created(world: &mut ShopWorld) {
    for (index, product) in guide_products().iter().enumerate() {
        let response = world.send(Method::POST, "/api/v1/products/", Body::Json(product.to_string()), Credentials::Current).await;
        assert_eq!(response.status, 201, "creating {} failed: {}", product["name"], response.text);
        let id = response.field("_id").as_str().expect("_id is a string").to_owned();
        world.remember(&format!("PRODUCT_ID_{}", index + 1), id);
    }
}

/// Polls `GET url` (with the current token) until it answers `status`.
#[then(expr = "within {int} seconds GET {string} answers {int}")]
async fn within_seconds_get_answers(world: &mut ShopWorld, seconds: u64, url: String, status: u16) {
    let world_ref = &*world;
    let response = eventually(Duration::from_secs(seconds), &format!("GET {url} answering {status}"), || {
        let url = url.clone();
        async move {
            let response = world_ref.send(Method::GET, &url, Body::None, Credentials::Current).await;
            if response.status == status { Ok(response) } else { Err(format!("{} {}", response.status, response.text)) }
        }
    })
    .await;
    world.last = Some(response);
}
