//! The end of a system's life, shared by the features and the chaos run: what it must not leave
//! behind, checked before its data is removed.

use std::time::Duration;

use crate::logs;
use crate::system::System;

/// Checks that the scenario left nothing behind, then removes its system. Panics (failing the
/// scenario) on leftovers, unexpected errors, or a service that would not stop cleanly.
///
/// Work is looked for twice: while the services run (giving them time to finish what they were
/// doing: the system must settle), and after they stopped, when any message a consumer still
/// held unacknowledged has gone back to its queue and is counted, and every dead-letter queue is
/// empty unless the scenario drained what it expected there.
pub async fn tear_down(mut system: System, expected_errors: &[String]) {
    let settled = system.wait_until_settled(Duration::from_secs(15)).await;
    let stopped = system.stop_everything().await;
    let leftovers_after_stop = leftover_work(&system).await;
    let unexpected_errors: Vec<String> = logs::take_errors(&system.id)
        .into_iter()
        .filter(|error| !expected_errors.iter().any(|expected| error.contains(expected.as_str())))
        .collect();
    logs::forget(&system.id);
    let removed = system.remove_data().await;
    if let Err(error) = settled {
        panic!("the scenario left work behind: {error:#}");
    }
    assert!(leftovers_after_stop.is_empty(), "work was left once the services stopped: {}", leftovers_after_stop.join(", "));
    assert!(
        unexpected_errors.is_empty(),
        "the services logged errors the scenario did not expect:\n{}",
        unexpected_errors.join("\n")
    );
    if let Err(error) = stopped.and(removed) {
        panic!("{error:#}");
    }
}

/// Every queue, dead-letter queue and delay queue of the scenario's vhost that holds messages,
/// and every outbox that holds events.
pub async fn leftover_work(system: &System) -> Vec<String> {
    let mut leftovers = Vec::new();
    for queue in common::messaging::topology::QUEUES {
        use common::messaging::topology::{dead_letter_queue, delay_queue};
        for queue in [queue.to_string(), dead_letter_queue(queue), delay_queue(queue)] {
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
