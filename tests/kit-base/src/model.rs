//! What the shop's API takes and answers, typed: the fields the tests, the chaos run, the load
//! tests and xtask use. Unknown fields in an answer are ignored, so a field added by a service
//! breaks no caller; a field renamed or retyped is an error naming the call.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/auth/register`.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Registration {
    /// A customer with a made-up name.
    pub fn customer(email: impl Into<String>, password: impl Into<String>, first_name: &str, last_name: &str) -> Self {
        Self {
            email: email.into(),
            password: password.into(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            phone: None,
        }
    }
}

/// What a login or a refresh answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
}

/// `GET /api/v1/users/me`, and what a registration answers.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
}

/// A postal address: an order's shipping address, and the body of a user's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub country: String,
}

/// `POST /api/v1/users/me/addresses`.
#[derive(Debug, Clone, Serialize)]
pub struct NewAddress {
    #[serde(flatten)]
    pub address: Address,
    pub is_default: bool,
}

/// A user's stored address.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredAddress {
    pub id: i64,
    #[serde(flatten)]
    pub address: Address,
    pub is_default: bool,
}

/// `POST /api/v1/products/`.
#[derive(Debug, Clone, Serialize)]
pub struct NewProduct {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub category: String,
    /// In the currency's units, at most two decimals (the services refuse more).
    pub price: f64,
    pub quantity: i64,
}

/// A product as the catalog answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub category: String,
    pub price: f64,
    pub quantity: i64,
}

/// A product's stock, as the inventory service answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Stock {
    pub product_id: String,
    pub available_quantity: i64,
    pub reserved_quantity: i64,
}

/// One line of an order, as sent and as answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
    pub price: f64,
}

/// `POST /api/v1/orders/`.
#[derive(Debug, Clone, Serialize)]
pub struct NewOrder {
    /// The customer's id, as a string.
    pub user_id: String,
    pub items: Vec<OrderLine>,
    pub shipping_address: Address,
}

/// An order as the order service answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub items: Vec<OrderLine>,
    pub total_price: f64,
    /// `pending`, `processing`, `paid`, `shipped`, `delivered`, `cancelled` or `refunded`.
    pub status: String,
    pub shipping_address: Address,
    /// Set when the shop cancelled the order itself (out of stock, unknown product, ...).
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    /// RFC 3339 with microseconds.
    pub created_at: String,
    pub updated_at: String,
}

/// What an order's POST answered: the order, and whether it was a replay of an earlier try with
/// the same `Idempotency-Key` (`Idempotent-Replayed: true`).
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: Order,
    pub replayed: bool,
}
