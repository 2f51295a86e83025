//! The end of a system's life, shared by the features and the chaos run: what it must not leave
//! behind, checked before its data is removed.
//!
//! After the services stopped, the teardown checks, and fails the scenario on any of:
//! - work left: a message in a work or delay queue, an event in an outbox;
//! - dead letters other than exactly those the scenario expected, message by message
//!   ([`ExpectedDeadLetter`]);
//! - stock that does not add up against the orders ([`check_stock`]);
//! - an ERROR line, unless it was logged while handling a message whose dead-lettering the
//!   scenario expected;
//! - in a scenario that injected no fault ([`Expectations::faults`] empty), a WARN line of a kind
//!   that means trouble ([`logs::WarningKind::fails_a_fault_free_scenario`]): a dependency retried,
//!   paused or reconnected, a handler retried, a stop that hung, or a warning nobody classified.
//!
//! Every WARN line is reported in the teardown's output, by kind, whether or not it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt as _;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Connection, ConnectionProperties};

use crate::logs::{self, LogLine, WarningKind};
use crate::system::System;

/// What a scenario did on purpose, which the teardown must not hold against it.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The faults the scenario injected (a service stopped or killed, a database or the broker
    /// cut or hung), one description each. Empty: a fault-free scenario, which fails on any
    /// warning about a dependency's trouble.
    pub faults: Vec<String>,
    /// The messages the scenario expects dead-lettered.
    pub dead_letters: Vec<ExpectedDeadLetter>,
    /// Orders a request moved to shipped or delivered: a refund after that keeps the stock
    /// reserved (decisions: a refund releases only from paid), so the stock check must know.
    pub shipped_orders: BTreeSet<String>,
}

/// One message the scenario expects in a dead-letter queue, named by the queue it was consumed
/// from and its correlation id (the order or product id it carries, or the id the step that
/// published it gave it). It excuses the ERROR and WARN lines its consumer logged while handling
/// that message, and no other line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDeadLetter {
    /// The work queue it was consumed from (`order_created`), not its dead-letter queue.
    pub queue: String,
    pub correlation_id: String,
    /// A step already took it out of the dead-letter queue (after checking it was there), so the
    /// teardown must not find it there any more.
    pub taken_out: bool,
}

impl Expectations {
    /// A scenario (or run) that injected faults.
    pub fn after_faults(description: impl Into<String>) -> Self {
        Self { faults: vec![description.into()], ..Self::default() }
    }

    /// Messages of `queue` with this correlation id were dead-lettered on purpose and already taken
    /// out of the dead-letter queue.
    pub fn with_dead_letters_taken_out(mut self, queue: &str, correlation_id: &str) -> Self {
        self.dead_letters.push(ExpectedDeadLetter {
            queue: queue.to_owned(),
            correlation_id: correlation_id.to_owned(),
            taken_out: true,
        });
        self
    }

    /// Whether `line` was logged while handling a message whose dead-lettering is expected.
    fn excuses(&self, line: &LogLine) -> bool {
        line.delivery.as_ref().is_some_and(|delivery| {
            self.dead_letters
                .iter()
                .any(|expected| expected.queue == delivery.queue && expected.correlation_id == delivery.correlation_id)
        })
    }
}

/// How long a scenario's system may take to settle before its leftovers count as left behind.
const SETTLING_PATIENCE: Duration = Duration::from_secs(30);

/// Checks that the scenario left nothing behind, then removes its system. Panics (failing the
/// scenario) on leftovers, unexpected dead letters, stock that does not add up, unexpected errors
/// or warnings, or a service that would not stop cleanly.
///
/// Work is looked for twice: while the services run (giving them time to finish what they were
/// doing: the system must settle), and after they stopped, when any message a consumer still
/// held unacknowledged has gone back to its queue and is counted.
pub async fn tear_down(mut system: System, expectations: &Expectations) {
    // A bound on liveness, not on speed: generous, because a loaded two-core machine running
    // four scenarios over Docker's port proxies can take many seconds to drain a busy one.
    let settled = system.wait_until_settled(SETTLING_PATIENCE).await;
    let stopped = system.stop_everything().await;
    let leftovers_after_stop = leftover_work(&system).await;
    let dead_letter_problems = check_dead_letters(&system, expectations).await;
    let checked_at = std::time::Instant::now();
    let stock_problems = check_stock(&system, &expectations.shipped_orders).await;
    let stock_check_cost = checked_at.elapsed();
    let lines = logs::take_lines(&system.id);
    logs::forget(&system.id);
    let verdict = judge_log_lines(&lines, expectations);
    if !verdict.report.is_empty() {
        println!("{}", verdict.report);
    }
    if std::env::var("E2E_TEARDOWN_TIMING").is_ok_and(|value| value == "1") {
        println!("teardown of {}: stock and orders checked in {stock_check_cost:?}", system.id);
    }
    system.release_signing_key();
    let removed = system.remove_data().await;
    // Every problem found, all at once: one break often shows in several checks (an unexpected
    // dead letter and its error lines), and each says something.
    let mut problems = Vec::new();
    if let Err(error) = settled {
        problems.push(format!("the scenario left work behind: {error:#}"));
    }
    let mut section = |title: &str, lines: &[String]| {
        if !lines.is_empty() {
            problems.push(format!("{title}:\n{}", lines.join("\n")));
        }
    };
    section("work was left once the services stopped", &leftovers_after_stop);
    section("dead letters other than expected", &dead_letter_problems);
    section("the stock does not add up against the orders", &stock_problems);
    section("the services logged errors the scenario did not expect", &verdict.unexpected_errors);
    section("the scenario injected no fault, and the services warned of trouble", &verdict.failing_warnings);
    if let Err(error) = stopped.and(removed) {
        problems.push(format!("{error:#}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every work queue and delay queue of the scenario's vhost that holds messages, and every
/// outbox that holds events. (Dead-letter queues are checked against the expected dead letters
/// by [`check_dead_letters`].)
pub async fn leftover_work(system: &System) -> Vec<String> {
    let mut leftovers = Vec::new();
    for queue in common::messaging::topology::QUEUES {
        use common::messaging::topology::delay_queue;
        for queue in [queue.to_string(), delay_queue(queue)] {
            match system.vhost.ready_messages(&queue).await {
                Ok(0) => {}
                Ok(count) => leftovers.push(format!("{queue}: {count}")),
                Err(error) => leftovers.push(format!("{queue}: {error:#}")),
            }
        }
    }
    match system.pending_outbox_events().await {
        Ok(pending) => leftovers.extend(pending),
        Err(error) => leftovers.push(format!("{error:#}")),
    }
    leftovers
}

/// Takes every message out of every dead-letter queue and compares them, by queue and
/// correlation id, with the dead letters the scenario expected and left there: each expected one
/// must be there exactly as often as expected, and nothing else. One line per difference.
pub async fn check_dead_letters(system: &System, expectations: &Expectations) -> Vec<String> {
    let mut problems = Vec::new();
    for queue in common::messaging::topology::QUEUES {
        let dead_letter_queue = common::messaging::topology::dead_letter_queue(queue);
        let mut expected: Vec<&str> = expectations
            .dead_letters
            .iter()
            .filter(|letter| letter.queue == queue && !letter.taken_out)
            .map(|letter| letter.correlation_id.as_str())
            .collect();
        let found = match drain_correlation_ids(&system.vhost.amqp_url, &dead_letter_queue).await {
            Ok(found) => found,
            Err(error) => {
                problems.push(format!("{dead_letter_queue}: {error:#}"));
                continue;
            }
        };
        let mut unexpected = Vec::new();
        for (correlation_id, payload) in found {
            match expected.iter().position(|expected| *expected == correlation_id) {
                Some(index) => {
                    expected.remove(index);
                }
                None => unexpected.push(format!("correlation id {correlation_id:?}: {payload}")),
            }
        }
        if !unexpected.is_empty() {
            problems.push(format!("{dead_letter_queue} holds messages nobody expected: {}", unexpected.join("; ")));
        }
        if !expected.is_empty() {
            problems.push(format!("{dead_letter_queue} lacks the expected dead letters with correlation ids {expected:?}"));
        }
    }
    problems
}

/// Takes every message out of `queue`: `(correlation id, payload)` of each.
async fn drain_correlation_ids(amqp_url: &str, queue: &str) -> anyhow::Result<Vec<(String, String)>> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default().with_connection_name("e2e teardown".into()))
        .await
        .context("failed to connect to the scenario's vhost")?;
    let channel = connection.create_channel().await?;
    let mut found = Vec::new();
    while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await? {
        message.delivery.ack(BasicAckOptions::default()).await?;
        let correlation_id = message.delivery.properties.correlation_id().as_ref().map(ToString::to_string).unwrap_or_default();
        found.push((correlation_id, String::from_utf8_lossy(&message.delivery.data).into_owned()));
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(found)
}

/// What the teardown makes of the scenario's ERROR and WARN lines.
#[derive(Debug, Default)]
struct LogVerdict {
    unexpected_errors: Vec<String>,
    failing_warnings: Vec<String>,
    /// Every warning, by kind, for the output (empty when there was none).
    report: String,
}

fn judge_log_lines(lines: &[LogLine], expectations: &Expectations) -> LogVerdict {
    let fault_free = expectations.faults.is_empty();
    let mut verdict = LogVerdict::default();
    let mut warnings: BTreeMap<WarningKind, Vec<&LogLine>> = BTreeMap::new();
    for line in lines {
        let excused = expectations.excuses(line);
        if line.level == tracing::Level::ERROR {
            if !excused {
                verdict.unexpected_errors.push(line.text.clone());
            }
            continue;
        }
        let kind = logs::classify_warning(line);
        warnings.entry(kind).or_default().push(line);
        if fault_free && !excused && kind.fails_a_fault_free_scenario() {
            verdict.failing_warnings.push(format!("[{kind:?}] {}", line.text));
        }
    }
    if !warnings.is_empty() {
        let faults = if fault_free {
            "no fault injected".to_owned()
        } else {
            format!("faults injected: {}", expectations.faults.join(", "))
        };
        let mut report = format!("      teardown: WARN lines of the services ({faults}):");
        for (kind, lines) in &warnings {
            report.push_str(&format!("\n        {kind:?}: {}", lines.len()));
            // The first few of each kind say what it was; the count says how often.
            for line in lines.iter().take(3) {
                let text: String = line.text.chars().take(300).collect();
                report.push_str(&format!("\n          {text}"));
            }
        }
        verdict.report = report;
    }
    verdict
}

/// Statuses in which an order holds the stock reserved for it: reserved once inventory confirmed
/// (processing), kept through payment and fulfilment. A refund after shipping keeps it too
/// (decided per order from [`Expectations::shipped_orders`]); pending holds nothing yet once the
/// system settled, and a cancel always releases.
const HOLDING_STATUSES: [&str; 4] = ["processing", "paid", "shipped", "delivered"];

/// The stock-against-orders invariant, read straight from the scenario's inventory database and
/// orders database (not through the fault proxies, not through the API). One line per violation:
///
/// - per product, the stock that came in and went out by hand (history entries `product_created`,
///   `adjustment`, `product_deleted`'s write-off, and units written off when an order holding a
///   deleted product's stock is released) equals available + reserved, and each of available and
///   reserved equals the sum of its history's deltas (no change without its history row);
/// - per product, reserved equals what the orders holding stock hold (processing, paid, shipped,
///   delivered, and refunded after shipping), as the orders in MongoDB say, and what the
///   reservations in state `reserved` hold;
/// - per order and product, at most one `order_reserved` and one `order_released` entry, a release
///   only after a reservation and of the same quantity, and each reservation row's state agreeing
///   with its history (reserved: reserved and not released; released: both; failed or cancelled:
///   neither);
/// - every order that holds stock has a reservation `reserved` with exactly its lines, every other
///   order none in that state, and no reservation that holds or held stock belongs to an order
///   the orders database does not have.
pub async fn check_stock(system: &System, shipped_orders: &BTreeSet<String>) -> Vec<String> {
    match read_stock_and_orders(system).await {
        Ok(state) => stock_violations(&state, shipped_orders),
        Err(error) => vec![format!("the stock and the orders could not be read: {error:#}")],
    }
}

/// What the stock check reads.
#[derive(Debug, Default)]
pub struct StockAndOrders {
    /// product id -> (available, reserved, discontinued).
    pub records: BTreeMap<String, (i64, i64, bool)>,
    pub history: Vec<HistoryRow>,
    /// order id -> reservation state.
    pub reservations: BTreeMap<String, String>,
    /// order id -> product id -> quantity held.
    pub reservation_lines: BTreeMap<String, BTreeMap<String, i64>>,
    /// order id -> (status, product id -> quantity ordered).
    pub orders: BTreeMap<String, (String, BTreeMap<String, i64>)>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub id: i64,
    pub product_id: String,
    pub available_delta: i32,
    pub reserved_delta: i32,
    pub change: String,
    pub order_id: Option<String>,
}

async fn read_stock_and_orders(system: &System) -> anyhow::Result<StockAndOrders> {
    use sqlx::Connection as _;
    let mut state = StockAndOrders::default();
    let mut inventory = sqlx::PgConnection::connect(&system.direct_database_url("inventory"))
        .await
        .context("failed to connect to the inventory database")?;
    let records: Vec<(String, i32, i32, bool)> =
        sqlx::query_as("SELECT product_id, available_quantity, reserved_quantity, discontinued_at IS NOT NULL FROM inventory")
            .fetch_all(&mut inventory)
            .await
            .context("failed to read the stock records")?;
    state.records = records
        .into_iter()
        .map(|(product, available, reserved, discontinued)| (product, (available.into(), reserved.into(), discontinued)))
        .collect();
    state.history = sqlx::query_as(
        "SELECT id, product_id, available_delta, reserved_delta, change, order_id FROM inventory_history ORDER BY id",
    )
    .fetch_all(&mut inventory)
    .await
    .context("failed to read the stock history")?;
    let reservations: Vec<(String, String)> = sqlx::query_as("SELECT order_id, state FROM reservations")
        .fetch_all(&mut inventory)
        .await
        .context("failed to read the reservations")?;
    state.reservations = reservations.into_iter().collect();
    let lines: Vec<(String, String, i32)> = sqlx::query_as("SELECT order_id, product_id, quantity FROM reservation_lines")
        .fetch_all(&mut inventory)
        .await
        .context("failed to read the reservation lines")?;
    for (order, product, quantity) in lines {
        state.reservation_lines.entry(order).or_default().insert(product, quantity.into());
    }
    let _ = inventory.close().await;

    let orders: Vec<bson::Document> = system
        .direct_mongodb_database("orders")
        .collection::<bson::Document>("orders")
        .find(bson::doc! {})
        .projection(bson::doc! { "status": 1, "items": 1 })
        .await
        .context("failed to read the orders")?
        .try_collect()
        .await
        .context("failed to read the orders")?;
    for order in orders {
        let id = match order.get("_id") {
            Some(bson::Bson::ObjectId(id)) => id.to_hex(),
            Some(other) => other.to_string(),
            None => continue,
        };
        let status = order.get_str("status").unwrap_or("(no status)").to_owned();
        let mut items: BTreeMap<String, i64> = BTreeMap::new();
        for item in order.get_array("items").map(|items| items.as_slice()).unwrap_or_default() {
            let Some(item) = item.as_document() else { continue };
            let product = item.get_str("product_id").unwrap_or_default().to_owned();
            let quantity = match item.get("quantity") {
                Some(bson::Bson::Int32(quantity)) => i64::from(*quantity),
                Some(bson::Bson::Int64(quantity)) => *quantity,
                Some(bson::Bson::Double(quantity)) => *quantity as i64,
                _ => 0,
            };
            *items.entry(product).or_default() += quantity;
        }
        state.orders.insert(id, (status, items));
    }
    Ok(state)
}

/// The violations of the invariants [`check_stock`] describes, in `state`.
pub fn stock_violations(state: &StockAndOrders, shipped_orders: &BTreeSet<String>) -> Vec<String> {
    let mut violations = Vec::new();

    // Per product: the history adds up to the record, and what came in by hand is all there is.
    #[derive(Default)]
    struct Sums {
        available: i64,
        reserved: i64,
        came_in: i64,
        adjustments: i64,
        written_off: i64,
    }
    let mut sums: BTreeMap<&str, Sums> = BTreeMap::new();
    // Per order and product: the reservation and release entries, in history order.
    let mut per_order: BTreeMap<(&str, &str), Vec<&HistoryRow>> = BTreeMap::new();
    for row in &state.history {
        let sum = sums.entry(row.product_id.as_str()).or_default();
        let (available, reserved) = (i64::from(row.available_delta), i64::from(row.reserved_delta));
        sum.available += available;
        sum.reserved += reserved;
        match row.change.as_str() {
            "product_created" => sum.came_in += available + reserved,
            "adjustment" => sum.adjustments += available + reserved,
            "product_deleted" => sum.written_off -= available + reserved,
            "order_reserved" | "order_released" => {
                let discontinued = state.records.get(&row.product_id).is_some_and(|record| record.2);
                let moved = available + reserved;
                let is_reservation = row.change == "order_reserved";
                let shape_is_right = if is_reservation {
                    reserved > 0 && moved == 0
                } else {
                    // A release gives the units back, or writes them off with a deleted product.
                    reserved < 0 && (moved == 0 || (discontinued && available == 0))
                };
                if !shape_is_right {
                    violations.push(format!(
                        "history entry {} ({} of order {:?} for {}) moves available {available:+} and reserved {reserved:+}",
                        row.id, row.change, row.order_id, row.product_id
                    ));
                }
                if !is_reservation && moved != 0 {
                    sum.written_off -= moved;
                }
                match &row.order_id {
                    Some(order) => per_order.entry((order.as_str(), row.product_id.as_str())).or_default().push(row),
                    None => violations.push(format!("history entry {} ({}) names no order", row.id, row.change)),
                }
            }
            other => violations.push(format!("history entry {} has an unknown change {other:?}", row.id)),
        }
    }

    // What the orders say each product's reserved stock must be.
    let holds = |order: &str, status: &str| {
        HOLDING_STATUSES.contains(&status) || (status == "refunded" && shipped_orders.contains(order))
    };
    let mut held_by_orders: BTreeMap<&str, i64> = BTreeMap::new();
    for (order, (status, items)) in &state.orders {
        if holds(order, status) {
            for (product, quantity) in items {
                *held_by_orders.entry(product.as_str()).or_default() += quantity;
            }
        }
    }
    let mut held_by_reservations: BTreeMap<&str, i64> = BTreeMap::new();
    for (order, reservation_state) in &state.reservations {
        if reservation_state == "reserved" {
            for (product, quantity) in state.reservation_lines.get(order).into_iter().flatten() {
                *held_by_reservations.entry(product.as_str()).or_default() += quantity;
            }
        }
    }

    let products: BTreeSet<&str> = state
        .records
        .keys()
        .map(String::as_str)
        .chain(sums.keys().copied())
        .chain(held_by_orders.keys().copied())
        .chain(held_by_reservations.keys().copied())
        .collect();
    for product in products {
        let (available, reserved, _) = state.records.get(product).copied().unwrap_or((0, 0, false));
        let sum = sums.remove(product).unwrap_or_default();
        if sum.available != available || sum.reserved != reserved {
            violations.push(format!(
                "{product}: the record says {available} available and {reserved} reserved, its history adds up to {} and {}",
                sum.available, sum.reserved
            ));
        }
        let expected_total = sum.came_in + sum.adjustments - sum.written_off;
        if expected_total != available + reserved {
            violations.push(format!(
                "{product}: initial stock {} + adjustments {} - written off {} = {expected_total}, but available {available} + reserved {reserved} = {}",
                sum.came_in,
                sum.adjustments,
                sum.written_off,
                available + reserved
            ));
        }
        let by_orders = held_by_orders.get(product).copied().unwrap_or(0);
        if reserved != by_orders {
            violations.push(format!(
                "{product}: {reserved} reserved, but the orders holding stock (processing, paid, shipped, delivered, refunded after shipping) hold {by_orders}"
            ));
        }
        let by_reservations = held_by_reservations.get(product).copied().unwrap_or(0);
        if reserved != by_reservations {
            violations
                .push(format!("{product}: {reserved} reserved, but the reservations in state reserved hold {by_reservations}"));
        }
    }

    // Per order and product: reserved at most once, released at most once, and only what was held.
    for ((order, product), rows) in &per_order {
        let reservations: Vec<&&HistoryRow> = rows.iter().filter(|row| row.change == "order_reserved").collect();
        let releases: Vec<&&HistoryRow> = rows.iter().filter(|row| row.change == "order_released").collect();
        if reservations.len() > 1 {
            violations.push(format!("order {order}: {product} reserved {} times", reservations.len()));
        }
        if releases.len() > 1 {
            violations.push(format!("order {order}: {product} released {} times", releases.len()));
        }
        if let Some(release) = releases.first() {
            match reservations.first() {
                None => violations.push(format!("order {order}: {product} released without being reserved")),
                Some(reservation) if reservation.id > release.id => {
                    violations.push(format!("order {order}: {product} released before it was reserved"))
                }
                Some(reservation) if reservation.reserved_delta != -release.reserved_delta => violations.push(format!(
                    "order {order}: {product} reserved {} and released {}",
                    reservation.reserved_delta, -release.reserved_delta
                )),
                Some(_) => {}
            }
        }
    }

    // Each reservation row against its history: what its state says happened, happened.
    let entries_of = |order: &str, change: &str| -> BTreeMap<String, i64> {
        per_order
            .iter()
            .filter(|((entry_order, _), _)| *entry_order == order)
            .flat_map(|((_, product), rows)| rows.iter().filter(|row| row.change == change).map(|row| (product.to_string(), row)))
            .map(|(product, row)| (product, i64::from(row.reserved_delta).abs()))
            .collect()
    };
    for (order, reservation_state) in &state.reservations {
        let lines = state.reservation_lines.get(order).cloned().unwrap_or_default();
        let reserved = entries_of(order, "order_reserved");
        let released = entries_of(order, "order_released");
        let consistent = match reservation_state.as_str() {
            "reserved" => reserved == lines && released.is_empty() && !lines.is_empty(),
            "released" => reserved == lines && released == lines && !lines.is_empty(),
            "failed" | "cancelled" => reserved.is_empty() && released.is_empty(),
            _ => false,
        };
        if !consistent {
            violations.push(format!(
                "order {order}: reservation {reservation_state:?} with lines {lines:?}, but its history reserved {reserved:?} and released {released:?}"
            ));
        }
        if matches!(reservation_state.as_str(), "reserved" | "released") && !state.orders.contains_key(order) {
            violations.push(format!(
                "order {order}: inventory {reservation_state} stock for an order the orders database does not have"
            ));
        }
    }

    // Each order against its reservation.
    for (order, (status, items)) in &state.orders {
        let reservation_state = state.reservations.get(order).map(String::as_str);
        if holds(order, status) {
            let lines = state.reservation_lines.get(order);
            if reservation_state != Some("reserved") || lines != Some(items) {
                violations.push(format!(
                    "order {order} is {status} and should hold {items:?}, but its reservation is {reservation_state:?} with {lines:?}"
                ));
            }
        } else if reservation_state == Some("reserved") {
            violations.push(format!("order {order} is {status}, yet its stock is still reserved"));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, product: &str, available: i32, reserved: i32, change: &str, order: Option<&str>) -> HistoryRow {
        HistoryRow {
            id,
            product_id: product.into(),
            available_delta: available,
            reserved_delta: reserved,
            change: change.into(),
            order_id: order.map(Into::into),
        }
    }

    /// 50 made, 10 delivered by hand, order A paid for 2, order B cancelled after holding 3.
    fn a_consistent_shop() -> StockAndOrders {
        let mut state = StockAndOrders::default();
        state.records.insert("p".into(), (58, 2, false));
        state.history = vec![
            row(1, "p", 50, 0, "product_created", None),
            row(2, "p", 10, 0, "adjustment", None),
            row(3, "p", -2, 2, "order_reserved", Some("a")),
            row(4, "p", -3, 3, "order_reserved", Some("b")),
            row(5, "p", 3, -3, "order_released", Some("b")),
        ];
        state.reservations = [("a".into(), "reserved".into()), ("b".into(), "released".into())].into();
        state.reservation_lines.insert("a".into(), [("p".into(), 2)].into());
        state.reservation_lines.insert("b".into(), [("p".into(), 3)].into());
        state.orders.insert("a".into(), ("paid".into(), [("p".into(), 2)].into()));
        state.orders.insert("b".into(), ("cancelled".into(), [("p".into(), 3)].into()));
        state
    }

    #[test]
    fn a_consistent_shop_passes() {
        assert_eq!(stock_violations(&a_consistent_shop(), &BTreeSet::new()), Vec::<String>::new());
    }

    #[test]
    fn a_release_written_twice_is_caught() {
        let mut state = a_consistent_shop();
        state.history.push(row(6, "p", 3, -3, "order_released", Some("b")));
        state.records.insert("p".into(), (61, -1, false));
        let violations = stock_violations(&state, &BTreeSet::new());
        assert!(violations.iter().any(|violation| violation.contains("released 2 times")), "{violations:?}");
    }

    #[test]
    fn a_paid_order_whose_stock_was_released_is_caught() {
        let mut state = a_consistent_shop();
        state.orders.insert("b".into(), ("paid".into(), [("p".into(), 3)].into()));
        let violations = stock_violations(&state, &BTreeSet::new());
        assert!(violations.iter().any(|violation| violation.contains("should hold")), "{violations:?}");
        assert!(violations.iter().any(|violation| violation.contains("the orders holding stock")), "{violations:?}");
    }

    #[test]
    fn a_refund_keeps_the_stock_only_after_shipping() {
        let mut state = a_consistent_shop();
        state.orders.insert("a".into(), ("refunded".into(), [("p".into(), 2)].into()));
        assert!(!stock_violations(&state, &BTreeSet::new()).is_empty(), "a refund from paid must have released");
        assert_eq!(stock_violations(&state, &["a".to_owned()].into()), Vec::<String>::new());
    }

    #[test]
    fn a_deleted_product_writes_off_its_stock_and_later_releases() {
        let mut state = a_consistent_shop();
        // Deleted: 58 available written off; then order a cancelled: its 2 written off too.
        state.records.insert("p".into(), (0, 0, true));
        state.history.push(row(6, "p", -58, 0, "product_deleted", None));
        state.history.push(row(7, "p", 0, -2, "order_released", Some("a")));
        state.reservations.insert("a".into(), "released".into());
        state.orders.insert("a".into(), ("cancelled".into(), [("p".into(), 2)].into()));
        assert_eq!(stock_violations(&state, &BTreeSet::new()), Vec::<String>::new());
    }

    #[test]
    fn stock_that_appears_without_history_is_caught() {
        let mut state = a_consistent_shop();
        state.records.insert("p".into(), (59, 2, false));
        let violations = stock_violations(&state, &BTreeSet::new());
        assert!(violations.iter().any(|violation| violation.contains("initial stock 50 + adjustments 10")), "{violations:?}");
    }
}
