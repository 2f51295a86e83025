//! The invariants checked once the run has settled (see the run's documentation in main.rs).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::driver::Chaos;
use crate::plan::Plan;

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

pub async fn check(chaos: &Chaos, plan: &Plan, routed: Result<(), String>, settled: anyhow::Result<()>) -> Vec<Invariant> {
    let mut invariants = Vec::new();

    let mut final_states: Vec<String> = routed.err().into_iter().collect();
    let listed = match chaos.listed_orders().await {
        Ok(listed) => listed,
        Err(error) => {
            final_states.push(error);
            HashMap::new()
        }
    };
    for order in &chaos.orders {
        let Some(stored) = listed.get(&order.id) else {
            final_states.push(format!("accepted order {} is not listed", order.id));
            continue;
        };
        let status = stored.status.as_str();
        let allowed = match status {
            "refunded" => order.refunded,
            "cancelled" => order.cancelled_by_customer || (!order.refunded && stored.cancellation_reason.is_some()),
            "paid" => !order.refunded && !order.cancelled_by_customer,
            _ => false,
        };
        if !allowed {
            final_states.push(format!(
                "order {} is {status} (cancel accepted: {}, refund accepted: {}): {stored:?}",
                order.id, order.cancelled_by_customer, order.refunded
            ));
        }
    }
    // Orders the shop stored although the client saw no 201 (a request cut by a fault) must end
    // in an allowed state too.
    for (id, stored) in &listed {
        if !chaos.orders.iter().any(|order| &order.id == id) {
            let status = stored.status.as_str();
            if !["paid", "cancelled"].contains(&status) {
                final_states.push(format!("order {id}, stored without a 201, is {status}"));
            }
        }
    }
    // Each request placed at most one order, however often it was sent: the orders stored
    // without a 201 are at most the requests that never got one. Without idempotent retries, a
    // retry after a lost answer would place a second order and break this.
    let stored_without_answer = listed.keys().filter(|id| !chaos.orders.iter().any(|order| &order.id == *id)).count();
    let mut one_order_per_request = Vec::new();
    if stored_without_answer > chaos.tally.refused_in_outage {
        one_order_per_request.push(format!(
            "{stored_without_answer} orders were stored without a 201, but only {} requests went unanswered: a retry placed a second order",
            chaos.tally.refused_in_outage
        ));
    }
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for stored in listed.values() {
        let mut status = stored.status.clone();
        if stored.cancellation_reason.is_some() {
            status.push_str(" by the shop");
        }
        *statuses.entry(status).or_default() += 1;
    }
    println!(
        "chaos: orders stored, by final status: {}",
        statuses.iter().map(|(status, count)| format!("{count} {status}")).collect::<Vec<_>>().join(", ")
    );
    if chaos.orders.is_empty() {
        final_states.push("the shop accepted no order at all: the run proved nothing".to_owned());
    }
    invariants
        .push(Invariant { name: "every order ended paid, cancelled or refunded, as its customer asked", failures: final_states });
    invariants.push(Invariant {
        name: "one order per order request, whether its client hung up or retried",
        failures: one_order_per_request,
    });

    let mut stock = Vec::new();
    let token = &chaos.customers[0].token;
    for (index, product) in chaos.products.iter().enumerate() {
        let (available, reserved) = match chaos.shop.stock(token, &product.id).await {
            Ok(stock) => (stock.available_quantity, stock.reserved_quantity),
            Err(error) => {
                stock.push(error.to_string());
                continue;
            }
        };
        let held_by_paid: i64 = listed
            .values()
            .filter(|order| order.status == "paid")
            .flat_map(|order| &order.items)
            .filter(|item| item.product_id == product.id)
            .map(|item| item.quantity)
            .sum();
        let initial = plan.initial_stock[index];
        if available + reserved != initial || reserved != held_by_paid {
            stock.push(format!(
                "product {index}: initial {initial}, available {available} + reserved {reserved}; paid orders hold {held_by_paid}"
            ));
        }
    }
    invariants.push(Invariant {
        name: "per product, initial stock = available + reserved, reserved = what paid orders hold",
        failures: stock,
    });

    let mut queues = Vec::new();
    if let Err(error) = settled {
        queues.push(format!("{error:#}"));
    }
    for queue in common::messaging::topology::QUEUES {
        let dead_letters = common::messaging::topology::dead_letter_queue(queue);
        let expected = if queue == common::messaging::topology::ORDER_CREATED { chaos.tally.poison } else { 0 };
        match chaos.system.vhost.ready_messages(&dead_letters).await {
            Ok(count) if count as usize == expected => {}
            Ok(count) => queues.push(format!("{dead_letters}: {count} dead-lettered, {expected} poison messages injected")),
            Err(error) => queues.push(format!("{error:#}")),
        }
    }
    invariants.push(Invariant { name: "no message left in any queue; only the injected poison dead-lettered", failures: queues });

    invariants.push(Invariant {
        name: "no 5xx outside an outage window, no 4xx to a valid request",
        failures: chaos.tally.violations.clone(),
    });
    invariants
}
