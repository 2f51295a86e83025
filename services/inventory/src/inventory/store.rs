//! Every query on stock records and their history (the order side lives in
//! `reservations::store`). Each change is one statement (a data-modifying CTE writes the record
//! and its history row together) or one transaction that locks the row first: never a read, a
//! computation in Rust and a write that another request could interleave with.

use anyhow::Context;
use sqlx::PgPool;

use super::model::{HistoryEntry, InventoryRecord, Page, reorder_threshold_for};

/// A product's visible (not discontinued) stock record.
pub async fn find(pool: &PgPool, product_id: &str) -> anyhow::Result<Option<InventoryRecord>> {
    sqlx::query_as(
        "SELECT product_id, available_quantity, reserved_quantity, reorder_threshold, id, created_at, updated_at
         FROM inventory WHERE product_id = $1 AND discontinued_at IS NULL",
    )
    .bind(product_id)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("failed to read the stock of product {product_id}"))
}

/// Visible stock records in creation order, optionally only those at or below their threshold.
pub async fn list(pool: &PgPool, low_stock_only: bool, page: Page) -> anyhow::Result<Vec<InventoryRecord>> {
    // Two fixed statements rather than one with `$1 OR ...`, so the low-stock one can use its
    // partial index.
    let statement = if low_stock_only {
        "SELECT product_id, available_quantity, reserved_quantity, reorder_threshold, id, created_at, updated_at
         FROM inventory
         WHERE available_quantity <= reorder_threshold AND discontinued_at IS NULL
         ORDER BY id OFFSET $1 LIMIT $2"
    } else {
        "SELECT product_id, available_quantity, reserved_quantity, reorder_threshold, id, created_at, updated_at
         FROM inventory WHERE discontinued_at IS NULL
         ORDER BY id OFFSET $1 LIMIT $2"
    };
    sqlx::query_as(statement).bind(page.skip).bind(page.limit).fetch_all(pool).await.context("failed to list stock records")
}

/// Whether the product has a stock record at all, discontinued or not.
pub async fn exists(pool: &PgPool, product_id: &str) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inventory WHERE product_id = $1)")
        .bind(product_id)
        .fetch_one(pool)
        .await
        .with_context(|| format!("failed to look up the stock record of product {product_id}"))
}

/// A product's history, oldest first.
pub async fn history(pool: &PgPool, product_id: &str, page: Page) -> anyhow::Result<Vec<HistoryEntry>> {
    sqlx::query_as(
        "SELECT id, product_id, available_delta, reserved_delta, change, reason, order_id, created_at
         FROM inventory_history WHERE product_id = $1
         ORDER BY id OFFSET $2 LIMIT $3",
    )
    .bind(product_id)
    .bind(page.skip)
    .bind(page.limit)
    .fetch_all(pool)
    .await
    .with_context(|| format!("failed to read the history of product {product_id}"))
}

/// Adds `quantity_change` to the available quantity and records why, in one statement, unless
/// that would take it below zero, or the record's whole stock (available + reserved) past the
/// columns' range: a later release moves reserved units back to available, and must always fit
/// (see the `inventory_total_fits` constraint). `None` when nothing changed: there is no visible
/// record, or the change does not fit.
pub async fn adjust(
    pool: &PgPool,
    product_id: &str,
    quantity_change: i32,
    reason: &str,
) -> anyhow::Result<Option<InventoryRecord>> {
    sqlx::query_as(
        "WITH adjusted AS (
             UPDATE inventory
             SET available_quantity = available_quantity + $2::integer, updated_at = now()
             WHERE product_id = $1 AND discontinued_at IS NULL
               AND available_quantity::bigint + $2::integer >= 0
               AND available_quantity::bigint + reserved_quantity + $2::integer <= 2147483647
             RETURNING product_id, available_quantity, reserved_quantity, reorder_threshold, id, created_at, updated_at
         ), recorded AS (
             INSERT INTO inventory_history (product_id, available_delta, reserved_delta, change, reason)
             SELECT product_id, $2::integer, 0, 'adjustment', $3 FROM adjusted
         )
         SELECT * FROM adjusted",
    )
    .bind(product_id)
    .bind(quantity_change)
    .bind(reason)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("failed to adjust the stock of product {product_id} by {quantity_change}"))
}

/// Creates a product's stock record from its `ProductCreated` event: available = the initial
/// quantity, nothing reserved, the reorder threshold from the decisions. Exactly once: a
/// record that exists already (a redelivered event, or a product deleted before its creation
/// event arrived) is left as it is, and then no history row is written either. Returns whether a
/// record was created.
pub async fn create_for_new_product(pool: &PgPool, product_id: &str, initial_quantity: i32) -> anyhow::Result<bool> {
    let created: Option<String> = sqlx::query_scalar(
        "WITH created AS (
             INSERT INTO inventory (product_id, available_quantity, reserved_quantity, reorder_threshold)
             VALUES ($1, $2, 0, $3)
             ON CONFLICT (product_id) DO NOTHING
             RETURNING product_id, available_quantity
         ), recorded AS (
             INSERT INTO inventory_history (product_id, available_delta, reserved_delta, change)
             SELECT product_id, available_quantity, 0, 'product_created' FROM created
         )
         SELECT product_id FROM created",
    )
    .bind(product_id)
    .bind(initial_quantity)
    .bind(reorder_threshold_for(initial_quantity))
    .fetch_optional(pool)
    .await
    .with_context(|| format!("failed to create the stock record of product {product_id}"))?;
    Ok(created.is_some())
}

/// What retiring a product's stock record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discontinued {
    /// The record was retired: its available stock written off, the record hidden.
    Retired,
    /// No record yet (the deletion overtook the creation event): a hidden, empty record now
    /// stands in its place, so the late creation event creates nothing.
    RecordedBeforeCreation,
    /// Already retired: a redelivered event.
    AlreadyDiscontinued,
}

/// Retires a product's stock record after its `ProductDeleted` event. Available units are
/// written off (they can no longer be sold); reserved units stay reserved, so that releasing a
/// cancelled order still finds exactly what it holds.
pub async fn discontinue(pool: &PgPool, product_id: &str) -> anyhow::Result<Discontinued> {
    let context = || format!("failed to discontinue the stock record of product {product_id}");
    let mut transaction = pool.begin().await.with_context(context)?;
    let inserted = sqlx::query(
        "INSERT INTO inventory (product_id, available_quantity, reserved_quantity, reorder_threshold, discontinued_at)
         VALUES ($1, 0, 0, 0, now())
         ON CONFLICT (product_id) DO NOTHING",
    )
    .bind(product_id)
    .execute(&mut *transaction)
    .await
    .with_context(context)?
    .rows_affected()
        == 1;
    if inserted {
        transaction.commit().await.with_context(context)?;
        return Ok(Discontinued::RecordedBeforeCreation);
    }

    let retired: Option<i32> = sqlx::query_scalar(
        "WITH current AS (
             SELECT product_id, available_quantity FROM inventory
             WHERE product_id = $1 AND discontinued_at IS NULL
             FOR UPDATE
         ), retired AS (
             UPDATE inventory SET available_quantity = 0, discontinued_at = now(), updated_at = now()
             FROM current WHERE inventory.product_id = current.product_id
             RETURNING current.available_quantity AS written_off
         ), recorded AS (
             INSERT INTO inventory_history (product_id, available_delta, reserved_delta, change)
             SELECT $1, -written_off, 0, 'product_deleted' FROM retired
         )
         SELECT written_off FROM retired",
    )
    .bind(product_id)
    .fetch_optional(&mut *transaction)
    .await
    .with_context(context)?;
    transaction.commit().await.with_context(context)?;
    Ok(if retired.is_some() { Discontinued::Retired } else { Discontinued::AlreadyDiscontinued })
}
