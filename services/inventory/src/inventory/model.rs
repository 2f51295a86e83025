//! Stock records and their history as the API shows them, and the requests that read and change
//! them, with their validation.

use chrono::{DateTime, Utc};
use common::error::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAXIMUM_PAGE_SIZE: i64 = 100;
pub const MAXIMUM_REASON_LENGTH: usize = 500;
/// The smallest reorder threshold a new record gets, however small its stock.
pub const MINIMUM_REORDER_THRESHOLD: i32 = 5;

/// A new record's reorder threshold: a tenth of its initial stock, but at least 5
/// (50 -> 5, 100 -> 10, 75 -> 7).
pub fn reorder_threshold_for(initial_quantity: i32) -> i32 {
    (initial_quantity / 10).max(MINIMUM_REORDER_THRESHOLD)
}

/// Whether `text` is a product id as the catalog makes them: a MongoDB ObjectId, 24 lowercase
/// hexadecimal digits.
pub fn is_product_id(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// One product's stock, exactly as the guide shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct InventoryRecord {
    #[schema(example = "665f1c2b9d3e4a0012345678")]
    pub product_id: String,
    /// Units that can still be ordered.
    pub available_quantity: i32,
    /// Units held for orders that have not been cancelled.
    pub reserved_quantity: i32,
    /// `GET /api/v1/inventory/?low_stock=true` lists the records whose available quantity is at
    /// or below this.
    pub reorder_threshold: i32,
    pub id: i64,
    #[serde(with = "common::timestamp")]
    #[schema(value_type = String, example = "2025-05-15T11:40:00.123456+00:00")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "common::timestamp")]
    #[schema(value_type = String, example = "2025-05-15T11:40:00.123456+00:00")]
    pub updated_at: DateTime<Utc>,
}

/// One change to a product's stock.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct HistoryEntry {
    pub id: i64,
    pub product_id: String,
    /// How the available quantity changed (negative for a reservation).
    pub available_delta: i32,
    /// How the reserved quantity changed.
    pub reserved_delta: i32,
    /// What caused it: `product_created`, `product_deleted`, `order_reserved`, `order_released`
    /// or `adjustment`.
    pub change: String,
    /// The reason given with an adjustment.
    pub reason: Option<String>,
    /// The order behind a reservation or release.
    pub order_id: Option<String>,
    #[serde(with = "common::timestamp")]
    #[schema(value_type = String, example = "2025-05-15T11:40:00.123456+00:00")]
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/inventory/{product_id}/adjust`: a signed change to the available quantity
/// (a delivery, a stock count, breakage) and why.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    /// Added to the available quantity; negative to remove stock. Not zero.
    #[schema(example = 25)]
    pub quantity_change: i32,
    #[schema(example = "delivery from supplier")]
    pub reason: String,
}

impl StockAdjustment {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.quantity_change == 0 {
            errors.push(FieldError::new("body", "quantity_change", "quantity_change must not be zero"));
        }
        if self.reason.trim().is_empty() {
            errors.push(FieldError::new("body", "reason", "reason must not be empty"));
        } else if self.reason.chars().count() > MAXIMUM_REASON_LENGTH {
            errors.push(FieldError::new(
                "body",
                "reason",
                format!("reason must have at most {MAXIMUM_REASON_LENGTH} characters"),
            ));
        } else if self.reason.chars().any(char::is_control) {
            // PostgreSQL refuses a NUL in text; no reason needs any control character.
            errors.push(FieldError::new("body", "reason", "reason must not contain control characters"));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Paging for the list and history endpoints.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InventoryFilters {
    /// How many records to leave out.
    pub skip: Option<i64>,
    /// How many records to return: 1 to 100, 100 by default.
    pub limit: Option<i64>,
    /// Only records whose available quantity is at or below their reorder threshold.
    pub low_stock: Option<bool>,
}

/// Paging for the history endpoint.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryFilters {
    /// How many entries to leave out.
    pub skip: Option<i64>,
    /// How many entries to return: 1 to 100, 100 by default.
    pub limit: Option<i64>,
}

/// Checked paging values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub skip: i64,
    pub limit: i64,
}

impl Page {
    pub fn from_query(skip: Option<i64>, limit: Option<i64>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let skip = skip.unwrap_or(0);
        if skip < 0 {
            errors.push(FieldError::new("query", "skip", "skip must not be negative"));
        }
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAXIMUM_PAGE_SIZE).contains(&limit) {
            errors.push(FieldError::new("query", "limit", format!("limit must be between 1 and {MAXIMUM_PAGE_SIZE}")));
        }
        if errors.is_empty() { Ok(Self { skip, limit }) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_thresholds_follow_the_decisions() {
        assert_eq!(reorder_threshold_for(50), 5);
        assert_eq!(reorder_threshold_for(100), 10);
        assert_eq!(reorder_threshold_for(75), 7);
        assert_eq!(reorder_threshold_for(0), 5);
    }

    #[test]
    fn only_object_ids_are_product_ids() {
        assert!(is_product_id("665f1c2b9d3e4a0012345678"));
        assert!(!is_product_id("665f1c2b9d3e4a001234567"));
        assert!(!is_product_id("665F1C2B9D3E4A0012345678"));
        assert!(!is_product_id("not-an-object-id-at-all!"));
    }

    #[test]
    fn adjustments_need_a_change_and_a_reason() {
        let adjustment = StockAdjustment { quantity_change: 0, reason: " ".into() };
        assert_eq!(adjustment.validate().unwrap_err().len(), 2);
        assert!(StockAdjustment { quantity_change: -3, reason: "breakage".into() }.validate().is_ok());
        let errors = StockAdjustment { quantity_change: 1, reason: "a\u{0}b".into() }.validate().unwrap_err();
        assert_eq!(errors[0].msg, "reason must not contain control characters");
        assert!(serde_json::from_str::<StockAdjustment>(r#"{"quantity_change": 1.5, "reason": "x"}"#).is_err());
        assert!(serde_json::from_str::<StockAdjustment>(r#"{"quantity_change": 99999999999, "reason": "x"}"#).is_err());
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(Page::from_query(None, None).unwrap(), Page { skip: 0, limit: 100 });
        assert!(Page::from_query(Some(-1), None).is_err());
        assert!(Page::from_query(None, Some(101)).is_err());
        assert!(Page::from_query(None, Some(0)).is_err());
    }
}
