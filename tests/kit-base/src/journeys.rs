//! Whole journeys through the shop's API, for the checks that run against a system brought up
//! some other way than the harness's (`cargo xtask compose check`, `cargo xtask fuzz`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::api::Client;
use crate::model::{Address, NewOrder, NewProduct, OrderLine, Registration};

/// A new customer registers and logs in, creates a product of 5 units (open writes: the default
/// development setup), orders 2 of them, and the order is polled until paid; then the stock must
/// be 3 available and 2 reserved. Returns a line saying how long POST-to-paid took.
pub async fn one_order_to_paid(shop: &Client) -> anyhow::Result<String> {
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_millis()).unwrap_or(0);
    let registration = Registration::customer(format!("order-check-{stamp}@example.com"), "Password123", "Order", "Check");
    let customer = shop.sign_up(&registration).await?;
    let token = &customer.tokens.access_token;
    let product = NewProduct {
        name: "Order Check Kettle".into(),
        description: Some("A kettle".into()),
        category: "Kitchen".into(),
        price: 25.5,
        quantity: 5,
    };
    let product = shop.create_product(token, &product).await?;
    // The product's stock is made asynchronously (a product event); an order before it exists
    // waits for it in a delay queue, which would be measured here too.
    let waited = Instant::now();
    loop {
        match shop.stock(token, &product.id).await {
            Ok(_) => break,
            Err(error) if error.status() == Some(404) && waited.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error).context("the new product's stock"),
        }
    }
    let order = NewOrder {
        user_id: customer.user.id.to_string(),
        items: vec![OrderLine { product_id: product.id.clone(), quantity: 2, price: product.price }],
        shipping_address: Address {
            line1: "1 Check Street".into(),
            line2: None,
            city: "Checkville".into(),
            state: "CK".into(),
            postal_code: "12345".into(),
            country: "Checkland".into(),
        },
    };
    let sent = Instant::now();
    let placed = shop.place_order(token, None, &order).await?.order;
    let mut status = placed.status.clone();
    while status != "paid" && sent.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = shop.order(token, &placed.id).await?.status;
    }
    let paid_after = sent.elapsed();
    if status != "paid" {
        bail!("order {} is still {status} after 60 s", placed.id);
    }
    let stock = shop.stock(token, &product.id).await?;
    if (stock.available_quantity, stock.reserved_quantity) != (3, 2) {
        bail!("stock after the order of 2 of 5: {stock:?}");
    }
    Ok(format!("order {} paid {:.2} s after its POST; stock 3 available, 2 reserved", placed.id, paid_after.as_secs_f64()))
}
