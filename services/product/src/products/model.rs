//! The product as the API shows it, as clients send it, and as MongoDB stores it, with the
//! validation that runs before anything reaches the database.
//!
//! Request types deny unknown fields, so neither a body (`{"$where": ...}`, `{"outbox": [...]}`)
//! nor a query string (`category[$ne]=x`) can smuggle in anything but the plain values below; and
//! every value is typed (a string, an integer, a price), so `{"name": {"$gt": ""}}` is a 422 and
//! never a MongoDB operator.

use bson::oid::ObjectId;
use chrono::{DateTime, Utc};
use common::error::FieldError;
use common::money::Cents;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Longest accepted name, category and description, so a client cannot store (or search with)
/// megabytes of text.
pub const MAXIMUM_NAME_LENGTH: usize = 200;
pub const MAXIMUM_CATEGORY_LENGTH: usize = 100;
pub const MAXIMUM_DESCRIPTION_LENGTH: usize = 5_000;
/// The inventory service keeps stock in a PostgreSQL `integer`, so a product's quantity must fit.
pub const MAXIMUM_QUANTITY: i64 = i32::MAX as i64;
/// The page size when the client names none, and the largest it may ask for.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAXIMUM_PAGE_SIZE: u64 = 100;

/// `POST /api/v1/products/`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub category: String,
    /// At most two decimals, not negative.
    #[schema(value_type = f64, example = 899.99)]
    pub price: Cents,
    /// The initial stock: the inventory service creates the product's stock record with it.
    pub quantity: i64,
}

impl NewProduct {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        validate_name(&self.name, &mut errors);
        validate_category(&self.category, &mut errors);
        if let Some(description) = &self.description {
            validate_description(description, &mut errors);
        }
        validate_quantity(self.quantity, &mut errors);
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// `PUT /api/v1/products/{id}`: a partial update. A field that is absent (or `null`) keeps its
/// value. `quantity` may be sent only with the product's current value (so that a client may
/// send back what it read): stock belongs to the inventory service, which is changed with
/// `POST /api/v1/inventory/{product_id}/adjust`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<f64>, example = 849.99)]
    pub price: Option<Cents>,
    #[serde(default)]
    pub quantity: Option<i64>,
}

impl ProductUpdate {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name {
            validate_name(name, &mut errors);
        }
        if let Some(category) = &self.category {
            validate_category(category, &mut errors);
        }
        if let Some(description) = &self.description {
            validate_description(description, &mut errors);
        }
        if let Some(quantity) = self.quantity {
            validate_quantity(quantity, &mut errors);
        }
        let names_a_field = self.name.is_some()
            || self.description.is_some()
            || self.category.is_some()
            || self.price.is_some()
            || self.quantity.is_some();
        if !names_a_field {
            errors.push(FieldError::new("body", "body", "the update names no field to change"));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

fn validate_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.trim().is_empty() {
        errors.push(FieldError::new("body", "name", "name must not be empty"));
    } else if name.chars().count() > MAXIMUM_NAME_LENGTH {
        errors.push(FieldError::new("body", "name", format!("name must have at most {MAXIMUM_NAME_LENGTH} characters")));
    } else if name.chars().any(char::is_control) {
        errors.push(FieldError::new("body", "name", "name must not contain control characters"));
    }
}

fn validate_category(category: &str, errors: &mut Vec<FieldError>) {
    if category.trim().is_empty() {
        errors.push(FieldError::new("body", "category", "category must not be empty"));
    } else if category.chars().count() > MAXIMUM_CATEGORY_LENGTH {
        errors.push(FieldError::new(
            "body",
            "category",
            format!("category must have at most {MAXIMUM_CATEGORY_LENGTH} characters"),
        ));
    } else if category.chars().any(char::is_control) {
        errors.push(FieldError::new("body", "category", "category must not contain control characters"));
    }
}

fn validate_description(description: &str, errors: &mut Vec<FieldError>) {
    if description.chars().count() > MAXIMUM_DESCRIPTION_LENGTH {
        errors.push(FieldError::new(
            "body",
            "description",
            format!("description must have at most {MAXIMUM_DESCRIPTION_LENGTH} characters"),
        ));
    } else if description.chars().any(|character| character.is_control() && !matches!(character, '\n' | '\r' | '\t')) {
        // Line breaks and tabs are text in a description; other control characters are not.
        errors.push(FieldError::new("body", "description", "description must not contain control characters"));
    }
}

fn validate_quantity(quantity: i64, errors: &mut Vec<FieldError>) {
    if !(0..=MAXIMUM_QUANTITY).contains(&quantity) {
        errors.push(FieldError::new("body", "quantity", format!("quantity must be between 0 and {MAXIMUM_QUANTITY}")));
    }
}

/// The query string of `GET /api/v1/products/`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductFilters {
    /// Exact category.
    pub category: Option<String>,
    /// Lowest price, inclusive.
    pub min_price: Option<f64>,
    /// Highest price, inclusive.
    pub max_price: Option<f64>,
    /// Case-insensitive substring of the name, matched literally (not as a pattern).
    pub name: Option<String>,
    /// How many matching products to leave out (for paging).
    #[param(maximum = 9223372036854775807_u64)]
    pub skip: Option<u64>,
    /// How many products to return: 1 to 100, 100 by default.
    pub limit: Option<u64>,
    /// Only these products: up to 100 comma-separated ids, in either case. An id that names no
    /// product is left out of the answer (how the order service checks an order's prices with
    /// one request).
    #[param(example = "6824f1c1a1b2c3d4e5f60718,6824f1c1a1b2c3d4e5f60719")]
    pub ids: Option<String>,
}

/// [`ProductFilters`] checked and turned into exact values.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuery {
    /// Only these products (`ids`), when given.
    pub ids: Option<Vec<ObjectId>>,
    pub category: Option<String>,
    pub minimum_price: Option<Cents>,
    pub maximum_price: Option<Cents>,
    pub name_contains: Option<String>,
    pub skip: u64,
    pub limit: u64,
}

impl ProductFilters {
    pub fn validate(self) -> Result<ProductQuery, Vec<FieldError>> {
        let mut errors = Vec::new();
        let minimum_price = self.min_price.and_then(|amount| match price_bound(amount, Rounding::Up) {
            Some(cents) => Some(cents),
            None => {
                errors.push(FieldError::new("query", "min_price", "min_price must be a number of at least 0"));
                None
            }
        });
        let maximum_price = self.max_price.and_then(|amount| match price_bound(amount, Rounding::Down) {
            Some(cents) => Some(cents),
            None => {
                errors.push(FieldError::new("query", "max_price", "max_price must be a number of at least 0"));
                None
            }
        });
        if self.name.as_ref().is_some_and(|name| name.chars().count() > MAXIMUM_NAME_LENGTH) {
            errors.push(FieldError::new("query", "name", format!("name must have at most {MAXIMUM_NAME_LENGTH} characters")));
        }
        if self.category.as_ref().is_some_and(|category| category.chars().count() > MAXIMUM_CATEGORY_LENGTH) {
            errors.push(FieldError::new(
                "query",
                "category",
                format!("category must have at most {MAXIMUM_CATEGORY_LENGTH} characters"),
            ));
        }
        let ids = self.ids.as_deref().map(|ids| {
            let parsed: Vec<ObjectId> =
                ids.split(',').filter_map(|id| ObjectId::parse_str(id.trim().to_ascii_lowercase()).ok()).collect();
            let given = ids.split(',').count();
            if parsed.len() != given {
                errors.push(FieldError::new("query", "ids", "ids must be comma-separated product ids (24 hexadecimal digits)"));
            } else if given > MAXIMUM_PAGE_SIZE as usize {
                errors.push(FieldError::new("query", "ids", format!("ids may name at most {MAXIMUM_PAGE_SIZE} products")));
            }
            parsed
        });
        if self.skip.is_some_and(|skip| skip > common::limits::MAXIMUM_SKIP) {
            errors.push(FieldError::new("query", "skip", format!("skip must be at most {}", common::limits::MAXIMUM_SKIP)));
        }
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAXIMUM_PAGE_SIZE).contains(&limit) {
            errors.push(FieldError::new("query", "limit", format!("limit must be between 1 and {MAXIMUM_PAGE_SIZE}")));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ProductQuery {
            ids,
            category: self.category,
            minimum_price,
            maximum_price,
            // An empty name filter matches every name, so it is no filter at all.
            name_contains: self.name.filter(|name| !name.is_empty()),
            skip: self.skip.unwrap_or(0),
            limit,
        })
    }
}

enum Rounding {
    Up,
    Down,
}

/// A price bound in cents. A bound with more than two decimals is fine in a filter (it is not a
/// price anyone pays), so it is rounded towards the inside of the range: `min_price=99.999` means
/// 100.00 and up, `max_price=100.005` means up to 100.00. Float noise (`249.99 * 100` is
/// `24998.999999999996`) is not mistaken for a third decimal.
fn price_bound(amount: f64, rounding: Rounding) -> Option<Cents> {
    if !amount.is_finite() || !(0.0..=1e13).contains(&amount) {
        return None;
    }
    let scaled = amount * 100.0;
    let nearest = scaled.round();
    let cents = if (scaled - nearest).abs() < 1e-6 {
        nearest
    } else {
        match rounding {
            Rounding::Up => scaled.ceil(),
            Rounding::Down => scaled.floor(),
        }
    };
    Some(Cents(cents as i64))
}

/// Escapes every character that means something in a regular expression (PCRE, as MongoDB uses,
/// and the common subsets), so the user's text is matched literally.
pub fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() * 2);
    for character in text.chars() {
        if matches!(
            character,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' | '#' | '&' | '-' | '~'
        ) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// A product as the API shows it: exactly the guide's fields, in the guide's order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductResponse {
    pub name: String,
    pub description: Option<String>,
    pub category: String,
    #[schema(value_type = f64, example = 899.99)]
    pub price: Cents,
    pub quantity: i64,
    /// The product id: a MongoDB ObjectId as 24 hexadecimal digits.
    #[serde(rename = "_id")]
    #[schema(example = "665f1c2b9d3e4a0012345678")]
    pub id: String,
}

/// A product as MongoDB stores it. The document also carries an `outbox` array of pending events
/// (see `common::messaging::document_outbox`), which this type deliberately leaves out so that no
/// read can ever show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductDocument {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    pub description: Option<String>,
    pub category: String,
    /// Whole cents, so that range filters and order totals are exact integer comparisons.
    pub price_cents: i64,
    pub quantity: i64,
    /// A deleted product stays as a hidden tombstone until its `ProductDeleted` event has been
    /// published (then the outbox relay removes it): the deletion and its event are one write.
    pub deleted: bool,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
}

impl From<ProductDocument> for ProductResponse {
    fn from(document: ProductDocument) -> Self {
        Self {
            name: document.name,
            description: document.description,
            category: document.category,
            price: Cents(document.price_cents),
            quantity: document.quantity,
            id: document.id.to_hex(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_product() -> NewProduct {
        serde_json::from_value(serde_json::json!({
            "name": "Premium Smartphone",
            "description": "Latest model",
            "category": "Electronics",
            "price": 899.99,
            "quantity": 50
        }))
        .unwrap()
    }

    #[test]
    fn control_characters_are_refused_except_line_breaks_and_tabs_in_a_description() {
        let with = |name: &str, category: &str, description: &str| NewProduct {
            name: name.into(),
            category: category.into(),
            description: Some(description.into()),
            ..valid_product()
        };
        let messages = |product: NewProduct| -> Vec<String> {
            product.validate().err().unwrap_or_default().into_iter().map(|error| error.msg).collect()
        };
        assert_eq!(
            messages(with("Lamp\u{0}", "Home\u{7}", "a\u{1b}b")),
            [
                "name must not contain control characters",
                "category must not contain control characters",
                "description must not contain control characters"
            ]
        );
        assert!(messages(with("Lamp", "Home", "First line\nsecond line,\tindented\r\n")).is_empty());
    }

    #[test]
    fn the_guides_product_is_valid_and_its_price_is_exact() {
        let product = valid_product();
        assert!(product.validate().is_ok());
        assert_eq!(product.price, Cents(89_999));
    }

    #[test]
    fn operators_wrong_types_and_unknown_fields_do_not_deserialize() {
        for body in [
            serde_json::json!({"name": {"$gt": ""}, "category": "a", "price": 1, "quantity": 1}),
            serde_json::json!({"name": "a", "category": "a", "price": "1", "quantity": 1}),
            serde_json::json!({"name": "a", "category": "a", "price": 1, "quantity": 1.5}),
            serde_json::json!({"name": "a", "category": "a", "price": 1, "quantity": 1, "$where": "1"}),
            serde_json::json!({"name": "a", "category": "a", "price": 1, "quantity": 1, "outbox": []}),
            serde_json::json!({"name": "a", "category": "a", "price": -1, "quantity": 1}),
            serde_json::json!({"name": "a", "category": "a", "price": 1.005, "quantity": 1}),
        ] {
            assert!(serde_json::from_value::<NewProduct>(body.clone()).is_err(), "{body} was accepted");
        }
    }

    #[test]
    fn negative_quantities_and_blank_names_are_field_errors() {
        let mut product = valid_product();
        product.quantity = -1;
        product.name = "  ".into();
        let errors = product.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|error| error.loc[1].as_str()).collect();
        assert_eq!(fields, ["name", "quantity"]);
    }

    #[test]
    fn an_empty_update_is_refused() {
        assert!(ProductUpdate::default().validate().is_err());
        let update = ProductUpdate { price: Some(Cents(100)), ..ProductUpdate::default() };
        assert!(update.validate().is_ok());
    }

    #[test]
    fn price_bounds_round_towards_the_inside_of_the_range() {
        assert_eq!(price_bound(100.0, Rounding::Up), Some(Cents(10_000)));
        assert_eq!(price_bound(249.99, Rounding::Down), Some(Cents(24_999)));
        assert_eq!(price_bound(249.99, Rounding::Up), Some(Cents(24_999)));
        assert_eq!(price_bound(99.999, Rounding::Up), Some(Cents(10_000)));
        assert_eq!(price_bound(100.005, Rounding::Down), Some(Cents(10_000)));
        assert_eq!(price_bound(-1.0, Rounding::Up), None);
        assert_eq!(price_bound(f64::NAN, Rounding::Up), None);
    }

    #[test]
    fn filters_refuse_out_of_range_limits_and_default_to_one_hundred() {
        assert_eq!(ProductFilters::default().validate().unwrap().limit, 100);
        assert!(ProductFilters { limit: Some(0), ..Default::default() }.validate().is_err());
        assert!(ProductFilters { limit: Some(101), ..Default::default() }.validate().is_err());
        assert!(ProductFilters { min_price: Some(-5.0), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn an_ids_filter_takes_up_to_a_hundred_ids_in_either_case_and_nothing_else() {
        let id = "6824F1C1A1B2C3D4E5F60718";
        let query = ProductFilters { ids: Some(format!("{id}, 6824f1c1a1b2c3d4e5f60719")), ..Default::default() };
        let ids = query.validate().unwrap().ids.unwrap();
        assert_eq!(
            ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            ["6824f1c1a1b2c3d4e5f60718", "6824f1c1a1b2c3d4e5f60719"]
        );
        assert!(ProductFilters { ids: Some(format!("{id},x")), ..Default::default() }.validate().is_err());
        assert!(ProductFilters { ids: Some(String::new()), ..Default::default() }.validate().is_err());
        let hundred: Vec<String> = (0..100).map(|number| format!("{number:024x}")).collect();
        assert!(ProductFilters { ids: Some(hundred.join(",")), ..Default::default() }.validate().is_ok());
        let too_many = format!("{},{:024x}", hundred.join(","), 100);
        assert!(ProductFilters { ids: Some(too_many), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn operator_keys_in_a_query_string_are_refused() {
        assert!(serde_urlencoded::from_str::<ProductFilters>("category[$ne]=x").is_err());
        assert!(serde_urlencoded::from_str::<ProductFilters>("category=Audio&category=Wearables").is_err());
        assert!(serde_urlencoded::from_str::<ProductFilters>("min_price=abc").is_err());
        assert!(serde_urlencoded::from_str::<ProductFilters>("category=Audio&min_price=1.5").is_ok());
    }

    #[test]
    fn regular_expression_characters_are_matched_literally() {
        assert_eq!(escape_regex("a.b*c"), r"a\.b\*c");
        assert_eq!(escape_regex("(x|y)"), r"\(x\|y\)");
        assert_eq!(escape_regex("Smart Watch"), "Smart Watch");
        assert_eq!(escape_regex(r"\d+$"), r"\\d\+\$");
    }
}
