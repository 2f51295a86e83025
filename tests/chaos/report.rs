//! What the run prints at its end: operations, faults, order requests and their outcomes, timing,
//! and every invariant, held or failed.

use std::time::Duration;

use crate::driver::Chaos;
use crate::invariants::Invariant;

pub fn print_report(chaos: &Chaos, invariants: &[Invariant], operations_done: Duration, total: Duration) {
    let tally = &chaos.tally;
    println!("chaos: operations:");
    for (name, count) in &tally.operations {
        println!("  {count:>6}  {name}");
    }
    println!("chaos: faults injected:");
    for (kind, count) in &tally.faults {
        println!("  {count:>6}  {kind:?}");
    }
    println!(
        "chaos: {} order requests: {} first tries hung up, {} retries answered with the order an earlier try placed",
        tally.order_requests, tally.hung_up, tally.replayed
    );
    println!(
        "chaos: {} orders accepted, {} refused during outages, {} 5xx inside outage windows, {} cancels and {} refunds accepted, {} poison messages",
        tally.accepted_orders,
        tally.refused_in_outage,
        tally.unavailable_in_window,
        tally.cancels_accepted,
        tally.refunds_accepted,
        tally.poison
    );
    println!(
        "chaos: operations took {:.1} s, settling and checking {:.1} s",
        operations_done.as_secs_f64(),
        (total - operations_done).as_secs_f64()
    );
    println!("chaos: invariants:");
    for invariant in invariants {
        println!("{invariant}");
    }
}
