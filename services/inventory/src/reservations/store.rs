//! Reserving and releasing stock for orders, in PostgreSQL transactions.
//!
//! Everything done for one order starts by inserting (or, if it exists, locking) the order's row
//! in `reservations`, so two messages about the same order (a redelivery, or a cancel racing its
//! reservation) run one after the other, never interleaved. Stock rows are then locked in
//! `product_id` order, the same order in every transaction, so two orders sharing products wait
//! for each other instead of deadlocking. Availability is checked under those locks, so no
//! interleaving can oversell; the CHECK constraints would refuse it anyway.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use common::messaging::events::{OrderCreated, OrderLine};
use sqlx::{PgPool, Postgres, Transaction};

use crate::inventory::model::is_product_id;

/// How the reason of an order refused for lack of stock begins.
pub use common::messaging::events::INSUFFICIENT_STOCK;

/// What inventory answers about an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationOutcome {
    /// Every line is held: publish `InventoryReserved`.
    Reserved,
    /// Nothing is held: publish `InventoryFailed` with this reason.
    Failed { reason: String },
    /// The order was cancelled (its release came first, or came after and was done): publish
    /// nothing, the order service has moved on.
    OrderCancelled,
    /// Some products have no stock record yet and the caller asked to wait for them: nothing was
    /// recorded, ask again later. (The order service only accepts products the catalog has, and
    /// their stock records follow from `product_created` within moments.)
    ProductsNotKnownYet { reason: String },
}

/// What to do about products that have no stock record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownProducts {
    /// Record the reservation as failed.
    Fail,
    /// Record nothing and answer `ProductsNotKnownYet`: their `product_created` may be on its way.
    WaitForThem,
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The order's reserved lines were given back.
    Released { lines: usize },
    /// Nothing was reserved yet: a tombstone now makes the late `order_created` reserve nothing.
    RecordedBeforeReservation,
    /// The reservation had failed: nothing to give back.
    NothingHeld,
    /// Released before: a redelivery.
    AlreadyReleased,
}

/// Reserves every line of `order`, or none. A second call for the same order changes nothing
/// and returns the recorded outcome.
pub async fn reserve(
    pool: &PgPool,
    order: &OrderCreated,
    unknown_products: UnknownProducts,
) -> anyhow::Result<ReservationOutcome> {
    let order_id = order.order_id.as_str();
    let context = || format!("failed to reserve stock for order {order_id}");
    let mut transaction = pool.begin().await.with_context(context)?;

    if !claim_order(&mut transaction, order_id, "pending", None).await.with_context(context)? {
        let (state, reason) = locked_state(&mut transaction, order_id).await.with_context(context)?;
        transaction.commit().await.with_context(context)?;
        return match state.as_str() {
            "reserved" => Ok(ReservationOutcome::Reserved),
            "failed" => Ok(ReservationOutcome::Failed { reason: reason.unwrap_or_default() }),
            "released" | "cancelled" => Ok(ReservationOutcome::OrderCancelled),
            other => bail!("order {order_id} has the unexpected reservation state {other:?}"),
        };
    }

    let outcome = match wanted_lines(&order.items) {
        Err(reason) => ReservationOutcome::Failed { reason },
        Ok(lines) => hold_stock(&mut transaction, order_id, &lines, unknown_products).await.with_context(context)?,
    };
    let (state, reason) = match &outcome {
        ReservationOutcome::Reserved => ("reserved", None),
        ReservationOutcome::Failed { reason } => ("failed", Some(reason.as_str())),
        ReservationOutcome::OrderCancelled => unreachable!("a new reservation is never cancelled"),
        ReservationOutcome::ProductsNotKnownYet { .. } => {
            // Nothing was held; undo the claim so that the next attempt starts afresh.
            transaction.rollback().await.with_context(context)?;
            return Ok(outcome);
        }
    };
    sqlx::query("UPDATE reservations SET state = $2, reason = $3, updated_at = now() WHERE order_id = $1")
        .bind(order_id)
        .bind(state)
        .bind(reason)
        .execute(&mut *transaction)
        .await
        .with_context(context)?;
    transaction.commit().await.with_context(context)?;
    Ok(outcome)
}

/// Gives back exactly what the order holds, once. A release that arrives before the order's
/// reservation leaves a tombstone instead, so that the reservation never happens.
pub async fn release(pool: &PgPool, order_id: &str) -> anyhow::Result<ReleaseOutcome> {
    let context = || format!("failed to release the stock of order {order_id}");
    let mut transaction = pool.begin().await.with_context(context)?;

    if claim_order(&mut transaction, order_id, "cancelled", Some("released before the order was reserved"))
        .await
        .with_context(context)?
    {
        transaction.commit().await.with_context(context)?;
        return Ok(ReleaseOutcome::RecordedBeforeReservation);
    }
    let (state, _) = locked_state(&mut transaction, order_id).await.with_context(context)?;
    let outcome = match state.as_str() {
        "reserved" => {
            let lines = give_back(&mut transaction, order_id).await.with_context(context)?;
            sqlx::query("UPDATE reservations SET state = 'released', updated_at = now() WHERE order_id = $1")
                .bind(order_id)
                .execute(&mut *transaction)
                .await
                .with_context(context)?;
            ReleaseOutcome::Released { lines }
        }
        "failed" => ReleaseOutcome::NothingHeld,
        "released" | "cancelled" => ReleaseOutcome::AlreadyReleased,
        other => bail!("order {order_id} has the unexpected reservation state {other:?}"),
    };
    transaction.commit().await.with_context(context)?;
    Ok(outcome)
}

/// Inserts the order's reservation row with `state`; returns false if it exists already. A
/// concurrent transaction inserting the same order waits here until this one ends.
async fn claim_order(
    transaction: &mut Transaction<'_, Postgres>,
    order_id: &str,
    state: &str,
    reason: Option<&str>,
) -> sqlx::Result<bool> {
    let inserted =
        sqlx::query("INSERT INTO reservations (order_id, state, reason) VALUES ($1, $2, $3) ON CONFLICT (order_id) DO NOTHING")
            .bind(order_id)
            .bind(state)
            .bind(reason)
            .execute(&mut **transaction)
            .await?
            .rows_affected();
    Ok(inserted == 1)
}

/// Locks the order's existing reservation row and reads its state and reason.
async fn locked_state(transaction: &mut Transaction<'_, Postgres>, order_id: &str) -> sqlx::Result<(String, Option<String>)> {
    sqlx::query_as("SELECT state, reason FROM reservations WHERE order_id = $1 FOR UPDATE")
        .bind(order_id)
        .fetch_one(&mut **transaction)
        .await
}

/// The quantity wanted per product (lines for the same product added up), sorted by product id;
/// or why the order cannot be reserved at all.
fn wanted_lines(items: &[OrderLine]) -> Result<BTreeMap<String, i32>, String> {
    if items.is_empty() {
        return Err("the order has no items".to_owned());
    }
    let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
    for item in items {
        if item.quantity <= 0 {
            return Err(format!("invalid quantity {} for product {}", item.quantity, item.product_id));
        }
        *wanted.entry(item.product_id.clone()).or_default() += item.quantity;
    }
    wanted
        .into_iter()
        .map(|(product_id, quantity)| match i32::try_from(quantity) {
            Ok(quantity) => Ok((product_id, quantity)),
            Err(_) => Err(format!("quantity {quantity} for product {product_id} is more than can ever be in stock")),
        })
        .collect()
}

/// Locks the products' stock rows in product id order, checks every line, and holds them all
/// (or returns why not, changing nothing).
async fn hold_stock(
    transaction: &mut Transaction<'_, Postgres>,
    order_id: &str,
    lines: &BTreeMap<String, i32>,
    unknown_products: UnknownProducts,
) -> sqlx::Result<ReservationOutcome> {
    let product_ids: Vec<String> = lines.keys().cloned().collect();
    let quantities: Vec<i32> = lines.values().copied().collect();
    let available: BTreeMap<String, i32> = sqlx::query_as::<_, (String, i32)>(
        "SELECT product_id, available_quantity FROM inventory
         WHERE product_id = ANY($1) AND discontinued_at IS NULL
         ORDER BY product_id
         FOR UPDATE",
    )
    .bind(&product_ids)
    .fetch_all(&mut **transaction)
    .await?
    .into_iter()
    .collect();

    let unknown: Vec<&str> =
        product_ids.iter().filter(|product_id| !available.contains_key(*product_id)).map(String::as_str).collect();
    if !unknown.is_empty() {
        let kind = if unknown.iter().all(|product_id| is_product_id(product_id)) { "unknown" } else { "unknown or invalid" };
        let reason = format!("{kind} products: {}", unknown.join(", "));
        return Ok(match unknown_products {
            UnknownProducts::Fail => ReservationOutcome::Failed { reason },
            UnknownProducts::WaitForThem => ReservationOutcome::ProductsNotKnownYet { reason },
        });
    }
    let shortages: Vec<String> = lines
        .iter()
        .filter_map(|(product_id, &wanted)| {
            let in_stock = available[product_id];
            (in_stock < wanted).then(|| format!("product {product_id}: requested {wanted}, available {in_stock}"))
        })
        .collect();
    if !shortages.is_empty() {
        return Ok(ReservationOutcome::Failed { reason: format!("{INSUFFICIENT_STOCK} for {}", shortages.join("; ")) });
    }

    sqlx::query(
        "WITH line AS (SELECT * FROM UNNEST($1::text[], $2::integer[]) AS line(product_id, quantity)),
         held AS (
             UPDATE inventory AS stock
             SET available_quantity = stock.available_quantity - line.quantity,
                 reserved_quantity = stock.reserved_quantity + line.quantity,
                 updated_at = now()
             FROM line WHERE stock.product_id = line.product_id
             RETURNING stock.product_id, line.quantity
         ), recorded AS (
             INSERT INTO inventory_history (product_id, available_delta, reserved_delta, change, order_id)
             SELECT product_id, -quantity, quantity, 'order_reserved', $3 FROM held
         )
         INSERT INTO reservation_lines (order_id, product_id, quantity)
         SELECT $3, product_id, quantity FROM held",
    )
    .bind(&product_ids)
    .bind(&quantities)
    .bind(order_id)
    .execute(&mut **transaction)
    .await?;
    Ok(ReservationOutcome::Reserved)
}

/// Locks the rows the order holds stock in (product id order), and gives back exactly its
/// lines: reserved goes down; available goes up unless the product was deleted meanwhile (then
/// the units are written off with it). Returns how many lines were given back.
async fn give_back(transaction: &mut Transaction<'_, Postgres>, order_id: &str) -> sqlx::Result<usize> {
    let locked: Vec<String> = sqlx::query_scalar(
        "SELECT stock.product_id FROM inventory AS stock
         JOIN reservation_lines AS line ON line.product_id = stock.product_id
         WHERE line.order_id = $1
         ORDER BY stock.product_id
         FOR UPDATE OF stock",
    )
    .bind(order_id)
    .fetch_all(&mut **transaction)
    .await?;

    sqlx::query(
        "WITH released AS (
             UPDATE inventory AS stock
             SET reserved_quantity = stock.reserved_quantity - line.quantity,
                 available_quantity = stock.available_quantity
                     + CASE WHEN stock.discontinued_at IS NULL THEN line.quantity ELSE 0 END,
                 updated_at = now()
             FROM reservation_lines AS line
             WHERE line.order_id = $1 AND stock.product_id = line.product_id
             RETURNING stock.product_id,
                       CASE WHEN stock.discontinued_at IS NULL THEN line.quantity ELSE 0 END AS available_delta,
                       line.quantity AS released
         )
         INSERT INTO inventory_history (product_id, available_delta, reserved_delta, change, order_id)
         SELECT product_id, available_delta, -released, 'order_released', $1 FROM released",
    )
    .bind(order_id)
    .execute(&mut **transaction)
    .await?;
    Ok(locked.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product_id: &str, quantity: i64) -> OrderLine {
        OrderLine { product_id: product_id.to_owned(), quantity }
    }

    #[test]
    fn lines_for_the_same_product_are_added_up_and_sorted() {
        let wanted = wanted_lines(&[line("b", 2), line("a", 1), line("b", 3)]).unwrap();
        assert_eq!(wanted.into_iter().collect::<Vec<_>>(), [("a".to_owned(), 1), ("b".to_owned(), 5)]);
    }

    #[test]
    fn empty_orders_and_non_positive_quantities_cannot_be_reserved() {
        assert!(wanted_lines(&[]).is_err());
        assert!(wanted_lines(&[line("a", 0)]).unwrap_err().contains("invalid quantity 0"));
        assert!(wanted_lines(&[line("a", -2)]).is_err());
        assert!(wanted_lines(&[line("a", i64::from(i32::MAX)), line("a", 1)]).is_err());
    }
}
