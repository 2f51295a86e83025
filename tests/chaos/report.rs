//! What the run prints at its end: operations, orders by final state, faults by kind and target
//! with their proved lengths, the excused 5xx by fault, timing, and every invariant.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::driver::Customers;
use crate::faults::FaultRecord;
use crate::invariants::{EndState, Judged};

pub fn print(
    customers: &Customers,
    operations_run: usize,
    faults: &[FaultRecord],
    judged: &Judged,
    end: &EndState,
    operations_done: Duration,
    total: Duration,
) {
    let tally = &customers.tally;
    println!("chaos: {operations_run} operations run:");
    for (name, count) in &tally.operations {
        println!("  {count:>6}  {name}");
    }
    println!("chaos: {} skipped (their order request never got a 201)", tally.skipped);
    println!(
        "chaos: {} order requests: {} accepted, {} unanswered after {} tries, {} first tries hung up, {} retries answered with the order an earlier try placed",
        customers.requests.len(),
        tally.accepted_orders,
        tally.unanswered_orders,
        crate::ORDER_TRIES,
        tally.hung_up,
        tally.replayed
    );
    let actions: Vec<String> =
        tally.actions.iter().map(|((what, outcome), count)| format!("{what} {outcome}: {count}")).collect();
    println!("chaos: actions: {}", actions.join(", "));
    println!(
        "chaos: {} poison messages published, {} not{}",
        tally.poison.len(),
        tally.poison_not_published.len(),
        tally.poison_not_published.first().map(|error| format!(" (the first: {error})")).unwrap_or_default()
    );

    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for stored in end.listed.values() {
        let status = match &stored.cancellation_reason {
            Some(_) => "cancelled by the shop (out of stock)".to_owned(),
            None => stored.status.clone(),
        };
        *statuses.entry(status).or_default() += 1;
    }
    println!(
        "chaos: {} orders stored, by final state: {}",
        end.listed.len(),
        statuses.iter().map(|(status, count)| format!("{count} {status}")).collect::<Vec<_>>().join(", ")
    );

    println!("chaos: faults (kind on target: count, proved length min/mean/max):");
    let mut by_fault: BTreeMap<String, Vec<Option<Duration>>> = BTreeMap::new();
    for fault in faults {
        by_fault.entry(format!("{:?} on {}", fault.kind, fault.target)).or_default().push(fault.verified_length());
    }
    for (fault, lengths) in &by_fault {
        let proved: Vec<f64> = lengths.iter().flatten().map(Duration::as_secs_f64).collect();
        let summary = if proved.is_empty() {
            "never proved".to_owned()
        } else {
            let mean = proved.iter().sum::<f64>() / proved.len() as f64;
            let min = proved.iter().copied().fold(f64::MAX, f64::min);
            let max = proved.iter().copied().fold(0.0, f64::max);
            format!("{min:.1}/{mean:.1}/{max:.1} s")
        };
        println!("  {:>3}  {fault:<44} {summary}", lengths.len());
    }
    let excused: usize = judged.excused.values().sum();
    println!("chaos: {} requests sent, {excused} 5xx excused by a fault:", customers.exchanges.len());
    for (fault, count) in &judged.excused {
        println!("  {count:>6}  {fault}");
    }
    println!(
        "chaos: operations took {:.1} s, settling and checking {:.1} s",
        operations_done.as_secs_f64(),
        (total - operations_done).as_secs_f64()
    );
    println!("chaos: invariants:");
    for invariant in &judged.invariants {
        println!("{invariant}");
    }
}
