//! The invariants checked once the run has settled: what the shop promised its customers, judged
//! order by order from what the customers saw, what the order service lists, and what the
//! inventory's history says happened to the stock (see the run's documentation in main.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shop_testkit::base::model::Order;
use shop_testkit::system::ServiceName;

use crate::driver::{Action, Customers, Exchange, Outcome};
use crate::faults::{FaultRecord, services_hit};
use crate::plan::{Plan, Target};
use crate::{ALWAYS_IN_STOCK, GRACE};

pub struct Invariant {
    pub name: &'static str,
    pub failures: Vec<String>,
}

impl fmt::Display for Invariant {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            write!(formatter, "  held    {}", self.name)
        } else {
            write!(formatter, "  FAILED  {}:", self.name)?;
            for failure in self.failures.iter().take(20) {
                write!(formatter, "\n            {failure}")?;
            }
            if self.failures.len() > 20 {
                write!(formatter, "\n            ... and {} more", self.failures.len() - 20)?;
            }
            Ok(())
        }
    }
}

/// One change to a product's stock, as `GET /inventory/{id}/history` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub available_delta: i64,
    pub reserved_delta: i64,
    pub change: String,
    pub order_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What the run reads from the shop once it has settled.
pub struct EndState {
    pub listed: BTreeMap<String, Order>,
    /// Per product (the plan's numbering): available, reserved.
    pub stock: Vec<Result<(i64, i64), String>>,
    /// Per product, oldest first.
    pub history: Vec<Result<Vec<HistoryEntry>, String>>,
    /// What each dead-letter queue held, by queue.
    pub dead_letters: BTreeMap<String, Result<Vec<Vec<u8>>, String>>,
    /// Whether the system settled: nothing left in any queue or outbox.
    pub settled: Result<(), String>,
}

pub struct Judged {
    pub invariants: Vec<Invariant>,
    /// 5xx answers excused by a fault, by the fault's kind and target.
    pub excused: BTreeMap<String, usize>,
}

pub fn check(customers: &Customers, plan: &Plan, faults: &[FaultRecord], end: &EndState, run_end: Instant) -> Judged {
    let mut invariants = vec![
        Invariant { name: "every fault was proved in effect, then proved healed", failures: fault_proofs(faults) },
        Invariant { name: "every fault kind met every target of the plan", failures: coverage(plan, faults) },
        Invariant {
            name: "every accepted order ended as what its customer and staff did with it says",
            failures: final_states(customers, end),
        },
        Invariant {
            name: "every cancellation by the shop was for a product short at the time (from the inventory's history)",
            failures: justified_cancellations(customers, end),
        },
        Invariant {
            name: "one order per order request, whether its client hung up or retried",
            failures: one_order_per_request(customers, end),
        },
        Invariant {
            name: "per order: its lines reserved once and released at most once, held exactly while it holds stock",
            failures: per_order_accounting(customers, end),
        },
        Invariant {
            name: "per product: initial stock = available + reserved, reserved = what the orders holding stock hold",
            failures: per_product_stock(customers, plan, end),
        },
        Invariant {
            name: "nothing left in any queue; the dead letters are exactly the poison messages injected",
            failures: queues(customers, end),
        },
    ];
    let (answers, excused) = judge_answers(customers, faults, run_end);
    invariants.push(Invariant {
        name: "no 5xx but a 502/503/504 on a faulted service's routes (never a GET while a healthy replica remained), no 4xx to a valid request",
        failures: answers,
    });
    Judged { invariants, excused }
}

fn fault_proofs(faults: &[FaultRecord]) -> Vec<String> {
    faults
        .iter()
        .filter(|fault| !fault.problems.is_empty())
        .map(|fault| format!("{:?} on {}: {}", fault.kind, fault.target, fault.problems.join("; ")))
        .collect()
}

fn coverage(plan: &Plan, faults: &[FaultRecord]) -> Vec<String> {
    let proved: BTreeSet<_> = faults
        .iter()
        .filter(|fault| fault.problems.is_empty() && fault.verified_at.is_some() && fault.healed_at.is_some())
        .map(|fault| (fault.kind, fault.target))
        .collect();
    plan.coverage()
        .into_iter()
        .filter(|pair| !proved.contains(pair))
        .map(|(kind, target)| format!("{kind:?} on {target} never proved"))
        .collect()
}

/// The statuses an order may end in: the one its last accepted action gives (paid when none,
/// or cancelled by the shop), and any an uncertain action after it would give.
fn allowed_statuses(actions: &[(Action, Outcome)]) -> (BTreeSet<&'static str>, bool) {
    let last_accepted = actions.iter().rposition(|(_, outcome)| *outcome == Outcome::Accepted);
    let mut allowed = BTreeSet::new();
    let shop_may_cancel = last_accepted.is_none();
    allowed.insert(last_accepted.map_or("paid", |index| actions[index].0.status()));
    let after = last_accepted.map_or(0, |index| index + 1);
    for (action, outcome) in &actions[after..] {
        if *outcome == Outcome::Uncertain {
            allowed.insert(action.status());
        }
    }
    // An uncertain ship followed by an accepted deliver cannot be told apart from an accepted
    // ship: the accepted one decides. Anything before the last accepted action is overtaken.
    (allowed, shop_may_cancel)
}

fn final_states(customers: &Customers, end: &EndState) -> Vec<String> {
    let mut failures: Vec<String> = end.settled.clone().err().into_iter().collect();
    for (number, request) in customers.requests.iter().enumerate() {
        let Some(id) = &request.order_id else { continue };
        let Some(stored) = end.listed.get(id) else {
            failures.push(format!("order {id} (request {number}) was accepted and is not listed"));
            continue;
        };
        let (allowed, shop_may_cancel) = allowed_statuses(&request.actions);
        let by_the_shop = stored.cancellation_reason.is_some();
        let fine =
            if by_the_shop { shop_may_cancel && stored.status == "cancelled" } else { allowed.contains(stored.status.as_str()) };
        if !fine {
            failures.push(format!(
                "order {id} (request {number}) is {}{}; asked: {:?}",
                stored.status,
                stored.cancellation_reason.as_deref().map(|reason| format!(" by the shop ({reason})")).unwrap_or_default(),
                request.actions
            ));
        }
    }
    // Orders stored without a 201 (a try cut by a fault) had nothing asked of them: paid, or
    // cancelled by the shop (judged by the next invariant).
    for (id, stored) in &end.listed {
        if customers.requests.iter().any(|request| request.order_id.as_deref() == Some(id)) {
            continue;
        }
        let fine = stored.status == "paid" || (stored.status == "cancelled" && stored.cancellation_reason.is_some());
        if !fine {
            failures.push(format!("order {id}, stored without a 201, is {}", stored.status));
        }
    }
    if customers.tally.accepted_orders == 0 {
        failures.push("the shop accepted no order at all: the run proved nothing".to_owned());
    }
    failures
}

/// The available quantity of a product over time: after each history entry.
fn available_over_time(history: &[HistoryEntry]) -> Vec<(DateTime<Utc>, i64)> {
    let mut available = 0;
    history
        .iter()
        .map(|entry| {
            available += entry.available_delta;
            (entry.created_at, available)
        })
        .collect()
}

/// Whether the product's available quantity was `quantity` at some moment between `from` and
/// `to` (with a second's slack either side: the history stamps a change with its transaction's
/// start).
fn was_available_at_some_point(timeline: &[(DateTime<Utc>, i64)], from: DateTime<Utc>, to: DateTime<Utc>, quantity: i64) -> bool {
    let slack = chrono::Duration::seconds(1);
    let (from, to) = (from - slack, to + slack);
    let in_effect_at_start = timeline.iter().take_while(|(at, _)| *at <= from).last().map(|(_, available)| *available);
    in_effect_at_start == Some(quantity)
        || timeline.iter().any(|(at, available)| *at >= from && *at <= to && *available == quantity)
}

fn justified_cancellations(customers: &Customers, end: &EndState) -> Vec<String> {
    let mut failures = Vec::new();
    let product_number = |id: &str| customers.products.iter().position(|product| product.id == id);
    for (id, stored) in &end.listed {
        let Some(reason) = &stored.cancellation_reason else { continue };
        let created = DateTime::parse_from_rfc3339(&stored.created_at).map(|at| at.with_timezone(&Utc));
        let cancelled = DateTime::parse_from_rfc3339(&stored.updated_at).map(|at| at.with_timezone(&Utc));
        let (Ok(created), Ok(cancelled)) = (created, cancelled) else {
            failures.push(format!("order {id}: timestamps that do not parse: {stored:?}"));
            continue;
        };
        let Some(shortages) = reason.strip_prefix("insufficient stock for ") else {
            failures.push(format!("order {id} was cancelled by the shop for {reason:?}, which is not a stock-out"));
            continue;
        };
        for shortage in shortages.split("; ") {
            let parsed = (|| {
                let rest = shortage.strip_prefix("product ")?;
                let (product, rest) = rest.split_once(": requested ")?;
                let (requested, available) = rest.split_once(", available ")?;
                Some((product.to_owned(), requested.parse::<i64>().ok()?, available.parse::<i64>().ok()?))
            })();
            let Some((product, requested, available)) = parsed else {
                failures.push(format!("order {id}: a shortage that does not read as one: {shortage:?}"));
                continue;
            };
            let Some(number) = product_number(&product) else {
                failures.push(format!("order {id}: cancelled for product {product}, not one of the run's"));
                continue;
            };
            let ordered = stored.items.iter().find(|item| item.product_id == product).map(|item| item.quantity);
            if ordered != Some(requested) || available >= requested {
                failures.push(format!("order {id}: {shortage:?}, but it ordered {ordered:?} of it"));
                continue;
            }
            if number < ALWAYS_IN_STOCK {
                failures.push(format!("order {id}: cancelled for product {number}, which never runs short: {shortage:?}"));
                continue;
            }
            match &end.history[number] {
                Ok(history) => {
                    if !was_available_at_some_point(&available_over_time(history), created, cancelled, available) {
                        failures.push(format!(
                            "order {id}: cancelled because product {number} had {available} available, which its history never shows between {created} and {cancelled}"
                        ));
                    }
                }
                Err(error) => failures.push(format!("order {id}: product {number}'s history: {error}")),
            }
        }
    }
    failures
}

fn one_order_per_request(customers: &Customers, end: &EndState) -> Vec<String> {
    // The orders stored without a 201 are at most the requests that never got one. Without
    // idempotent retries, a retry after a lost answer would place a second order and break this.
    let answered: BTreeSet<&str> = customers.requests.iter().filter_map(|request| request.order_id.as_deref()).collect();
    let stored_without_answer = end.listed.keys().filter(|id| !answered.contains(id.as_str())).count();
    if stored_without_answer > customers.tally.unanswered_orders {
        vec![format!(
            "{stored_without_answer} orders were stored without a 201, but only {} requests went unanswered: a retry placed a second order",
            customers.tally.unanswered_orders
        )]
    } else {
        Vec::new()
    }
}

/// Whether an order holds stock in the end: reserved and not released. Paid, shipped and
/// delivered orders do; so does an order refunded after it shipped (shipped goods are gone). A
/// cancelled order, and one refunded while paid, do not.
fn holds_stock(stored: &Order, shipped: Option<bool>) -> Option<bool> {
    match stored.status.as_str() {
        "paid" | "shipped" | "delivered" => Some(true),
        "cancelled" => Some(false),
        // Whether it shipped first decides; unknown when the ship was uncertain.
        "refunded" => shipped,
        _ => Some(false),
    }
}

/// Whether the order shipped before its refund: known when the ship was accepted or never
/// asked; unknown when it was asked and unanswered.
fn shipped_before_refund(customers: &Customers, id: &str) -> Option<bool> {
    let Some(request) = customers.requests.iter().find(|request| request.order_id.as_deref() == Some(id)) else {
        return Some(false);
    };
    let ships: Vec<Outcome> =
        request.actions.iter().filter(|(action, _)| *action == Action::Ship).map(|(_, outcome)| *outcome).collect();
    if ships.contains(&Outcome::Accepted) {
        Some(true)
    } else if ships.contains(&Outcome::Uncertain) {
        None
    } else {
        Some(false)
    }
}

fn per_order_accounting(customers: &Customers, end: &EndState) -> Vec<String> {
    let mut failures = Vec::new();
    // Per order, per product: (reserved, released) quantities and how many entries of each.
    let mut moves: BTreeMap<(String, String), Vec<&HistoryEntry>> = BTreeMap::new();
    for (number, history) in end.history.iter().enumerate() {
        let Ok(history) = history else { continue };
        for entry in history {
            if let Some(order) = &entry.order_id {
                moves.entry((order.clone(), customers.products[number].id.clone())).or_default().push(entry);
            }
        }
    }
    for ((order, product), entries) in &moves {
        let Some(stored) = end.listed.get(order) else {
            failures.push(format!("the history moves stock of product {product} for order {order}, which does not exist"));
            continue;
        };
        let Some(line) = stored.items.iter().find(|item| &item.product_id == product) else {
            failures.push(format!("the history moves stock of product {product} for order {order}, which has no such line"));
            continue;
        };
        let reserves: Vec<&&HistoryEntry> = entries.iter().filter(|entry| entry.change == "order_reserved").collect();
        let releases: Vec<&&HistoryEntry> = entries.iter().filter(|entry| entry.change == "order_released").collect();
        let describe = || {
            entries
                .iter()
                .map(|entry| format!("{} {:+}/{:+}", entry.change, entry.available_delta, entry.reserved_delta))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if reserves.len() > 1 || releases.len() > 1 || reserves.len() + releases.len() != entries.len() {
            failures.push(format!("order {order}, product {product}: reserved or released more than once: {}", describe()));
            continue;
        }
        let quantity = line.quantity;
        if reserves.iter().any(|entry| entry.reserved_delta != quantity || entry.available_delta != -quantity)
            || releases.iter().any(|entry| entry.reserved_delta != -quantity || entry.available_delta != quantity)
        {
            failures.push(format!("order {order}, product {product}: moves other than its {quantity}: {}", describe()));
            continue;
        }
        if releases.len() == 1 && (reserves.is_empty() || releases[0].id < reserves[0].id) {
            failures.push(format!("order {order}, product {product}: released without being reserved: {}", describe()));
            continue;
        }
        let held = reserves.len() == 1 && releases.is_empty();
        match holds_stock(stored, shipped_before_refund(customers, order)) {
            Some(should_hold) if should_hold != held => failures.push(format!(
                "order {order} is {} and {} product {product}: {}",
                stored.status,
                if held { "holds" } else { "does not hold" },
                describe()
            )),
            _ => {}
        }
        if stored.cancellation_reason.is_some() {
            failures.push(format!("order {order} was refused for want of stock, yet its stock moved: {}", describe()));
        }
    }
    // An order that holds stock holds every line (all or none).
    for (id, stored) in &end.listed {
        if holds_stock(stored, shipped_before_refund(customers, id)) != Some(true) {
            continue;
        }
        for item in &stored.items {
            if !moves.contains_key(&(id.clone(), item.product_id.clone())) {
                failures.push(format!(
                    "order {id} is {} but its line of product {} was never reserved",
                    stored.status, item.product_id
                ));
            }
        }
    }
    failures
}

fn per_product_stock(customers: &Customers, plan: &Plan, end: &EndState) -> Vec<String> {
    let mut failures = Vec::new();
    for (number, product) in customers.products.iter().enumerate() {
        let (available, reserved) = match &end.stock[number] {
            Ok(stock) => *stock,
            Err(error) => {
                failures.push(error.clone());
                continue;
            }
        };
        let mut held = 0;
        let mut unknown = 0;
        for (id, stored) in &end.listed {
            let quantity: i64 = stored.items.iter().filter(|item| item.product_id == product.id).map(|item| item.quantity).sum();
            match holds_stock(stored, shipped_before_refund(customers, id)) {
                Some(true) => held += quantity,
                Some(false) => {}
                None => unknown += quantity,
            }
        }
        let initial = plan.initial_stock[number];
        if available + reserved != initial || reserved < held || reserved > held + unknown {
            failures.push(format!(
                "product {number}: initial {initial}, available {available} + reserved {reserved}; the orders holding stock hold {held} (and {unknown} more may)"
            ));
        }
    }
    failures
}

fn queues(customers: &Customers, end: &EndState) -> Vec<String> {
    let mut failures: Vec<String> = end.settled.clone().err().into_iter().collect();
    let expected: BTreeSet<usize> = customers.tally.poison.iter().copied().collect();
    for (queue, held) in &end.dead_letters {
        let held = match held {
            Ok(held) => held,
            Err(error) => {
                failures.push(format!("{queue}: {error}"));
                continue;
            }
        };
        let order_created = common::messaging::topology::dead_letter_queue(common::messaging::topology::ORDER_CREATED);
        let mut found = BTreeSet::new();
        for body in held {
            let message: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
            let number = message["number"].as_u64().map(|number| number as usize);
            match number {
                Some(number)
                    if *queue == order_created && message["poisoned_by"] == "the chaos run" && expected.contains(&number) =>
                {
                    if !found.insert(number) {
                        failures.push(format!("{queue}: poison message {number} dead-lettered twice"));
                    }
                }
                _ => failures.push(format!("{queue}: a message the run did not poison: {}", String::from_utf8_lossy(body))),
            }
        }
        if *queue == order_created {
            for missing in expected.difference(&found) {
                failures.push(format!("{queue}: poison message {missing} was published and never dead-lettered"));
            }
        }
    }
    failures
}

/// Judges every answer against the faults' proved windows: a 5xx or no answer is excused only
/// when it is a 502, 503 or 504, on the routes of a service the fault takes down, while the fault
/// was in effect or within [`GRACE`] of its proved heal; and never on a GET while a replica of the
/// service was healthy (the gateway retries a GET on another replica).
fn judge_answers(customers: &Customers, faults: &[FaultRecord], run_end: Instant) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut failures: Vec<String> = customers.tally.violations.clone();
    let mut excused: BTreeMap<String, usize> = BTreeMap::new();
    let exchanges: &[Exchange] = &customers.exchanges;
    for exchange in exchanges {
        let failed = exchange.status.is_none_or(|status| status >= 500);
        if !failed {
            continue;
        }
        let gateway_status = exchange.status.is_some_and(|status| [502, 503, 504].contains(&status));
        let overlapping: Vec<&FaultRecord> = faults
            .iter()
            .filter(|fault| {
                let (start, end) = fault.window(run_end);
                start <= exchange.answered && exchange.sent <= end + GRACE
            })
            .filter(|fault| services_hit(fault.target).contains(&exchange.service))
            .collect();
        let a_replica_remained = |service: ServiceName| {
            let replicas = if matches!(service, ServiceName::Order | ServiceName::Inventory) { 2 } else { 1 };
            let down: BTreeSet<usize> = overlapping
                .iter()
                .filter_map(|fault| match fault.target {
                    Target::Replica(instance) if instance.service == service => Some(instance.replica),
                    _ => None,
                })
                .collect();
            let server_down = overlapping.iter().any(|fault| matches!(fault.target, Target::Server(_)));
            !server_down && down.len() < replicas
        };
        // Named by the server fault when one overlaps: it is what left no replica to retry on.
        let first = overlapping.iter().find(|fault| matches!(fault.target, Target::Server(_))).or(overlapping.first());
        let excuse = first.filter(|_| gateway_status && !(exchange.idempotent && a_replica_remained(exchange.service)));
        match excuse {
            Some(fault) => *excused.entry(format!("{:?} on {}", fault.kind, fault.target)).or_default() += 1,
            None => failures.push(format!(
                "{} at {:.2} s answered {} {} (faults in effect on its service: {})",
                exchange.what,
                exchange.sent.saturating_duration_since(customers.began).as_secs_f64(),
                exchange.status.map_or("nothing".to_owned(), |status| status.to_string()),
                exchange.detail,
                if overlapping.is_empty() {
                    "none".to_owned()
                } else {
                    overlapping.iter().map(|fault| format!("{:?} on {}", fault.kind, fault.target)).collect::<Vec<_>>().join(", ")
                }
            )),
        }
    }
    (failures, excused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_ends_as_its_last_accepted_action_says_or_as_an_uncertain_one_after_it() {
        use Action::*;
        use Outcome::*;
        let statuses = |actions: &[(Action, Outcome)]| allowed_statuses(actions).0.into_iter().collect::<Vec<_>>();
        assert_eq!(statuses(&[]), ["paid"]);
        assert!(allowed_statuses(&[]).1, "nothing asked: the shop may cancel for want of stock");
        assert_eq!(statuses(&[(Ship, Accepted), (Deliver, Refused)]), ["shipped"]);
        assert_eq!(statuses(&[(Ship, Accepted), (Refund, Uncertain)]), ["refunded", "shipped"]);
        assert_eq!(statuses(&[(Cancel, Uncertain), (Ship, Accepted)]), ["shipped"]);
        assert!(!allowed_statuses(&[(Cancel, Accepted)]).1, "a customer's cancel is not the shop's");
    }

    #[test]
    fn a_quantity_counts_as_available_only_if_the_history_shows_it_in_the_window() {
        let at = |second: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + second, 0).expect("a time");
        let timeline = vec![(at(0), 10), (at(10), 7), (at(20), 2), (at(30), 0)];
        assert!(was_available_at_some_point(&timeline, at(5), at(12), 10), "in effect when the window opened");
        assert!(was_available_at_some_point(&timeline, at(5), at(12), 7));
        assert!(!was_available_at_some_point(&timeline, at(5), at(12), 2), "only later");
        assert!(!was_available_at_some_point(&timeline, at(5), at(12), 0), "never in the window");
        assert!(!was_available_at_some_point(&timeline, at(5), at(40), 5), "never at all");
    }
}
