//! Waiting out an outage: while a dependency is down the whole consumer pauses, one delivery at a
//! time probes it after a doubling back-off, and the first probe that gets past it resumes the
//! consumer (see the consumer's module documentation).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use lapin::message::Delivery;

use super::Attempt;
use super::delivery::{DeliveryContext, hand_back, run_handler};
use crate::messaging::failure_streak::capped_backoff;
use crate::messaging::{HandlerError, Message};

/// Shared by every delivery of one consumer: whether it is paused for an outage, and whose turn
/// it is to probe the dependency.
#[derive(Default)]
pub(super) struct OutageGate {
    /// Set by the first delivery whose handler answers `Unavailable`, cleared by the first that
    /// gets past the dependency again. While it is set no handler starts except a probe.
    paused: AtomicBool,
    /// Held by the one delivery probing while the consumer is paused, so a dependency that is
    /// down sees one attempt per backoff, not one per held delivery. Holds the number of failed
    /// probes of this outage, which sets the backoff.
    probe: tokio::sync::Mutex<u32>,
}

/// Runs the handler until it answers something other than `Unavailable`, pausing the consumer
/// while it does (see the module doc). `None` when the delivery was handed back instead: the
/// consumer is stopping, or the channel the delivery came on is gone.
pub(super) async fn run_through_outages<M, H, F>(
    delivery: &Delivery,
    handler: &H,
    attempt: Attempt,
    context: &DeliveryContext<'_>,
) -> Option<Result<(), HandlerError>>
where
    M: Message,
    H: Fn(M, Attempt) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let (settings, gate) = (context.settings, context.gate);
    loop {
        // While paused, wait for the turn to probe, then for the backoff.
        let mut probe_turn = None;
        if gate.paused.load(Ordering::SeqCst) {
            let turn = tokio::select! {
                turn = gate.probe.lock() => turn,
                () = context.cancel.cancelled() => return hand_back(delivery, "the consumer is stopping").await,
            };
            // The outage may have ended while this delivery waited for its turn.
            if gate.paused.load(Ordering::SeqCst) {
                let delay = capped_backoff(settings.outage_backoff, (*turn).max(1), settings.max_outage_backoff);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = context.cancel.cancelled() => return hand_back(delivery, "the consumer is stopping").await,
                }
                if !context.channel.status().connected() {
                    // The broker has requeued it already; the next session takes it again.
                    return None;
                }
                probe_turn = Some(turn);
            }
        }
        // Decoded afresh for each try: the handler takes the message by value.
        let message: M = serde_json::from_slice(&delivery.data).expect("decoded before");
        match run_handler(handler, message, attempt).await {
            Err(HandlerError::Unavailable(error)) => {
                let failed_probes = match probe_turn.as_mut() {
                    Some(turn) => {
                        **turn += 1;
                        **turn
                    }
                    None => 0,
                };
                if !gate.paused.swap(true, Ordering::SeqCst) {
                    if let Some(metrics) = &settings.metrics {
                        metrics.consumer_paused(M::QUEUE, true);
                    }
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "a dependency is unavailable; pausing the consumer until it answers (the message is kept)"
                    );
                } else if probe_failure_worth_logging(failed_probes) {
                    let next_wait = capped_backoff(settings.outage_backoff, failed_probes + 1, settings.max_outage_backoff);
                    tracing::warn!(
                        error = format!("{error:#}"),
                        failed_probes,
                        next_probe_in_seconds = next_wait.as_secs_f64(),
                        "a dependency is still unavailable; the consumer stays paused"
                    );
                }
            }
            outcome => {
                if let Some(mut turn) = probe_turn {
                    tracing::info!(failed_probes = *turn, "the dependency answers again; resuming the consumer");
                    *turn = 0;
                    gate.paused.store(false, Ordering::SeqCst);
                    if let Some(metrics) = &settings.metrics {
                        metrics.consumer_paused(M::QUEUE, false);
                    }
                }
                return Some(outcome);
            }
        }
    }
}

/// Which failed probes of one outage are logged: the 1st, 2nd, 4th, 8th, ... and every 20th, so a
/// long outage shows in the log without flooding it.
fn probe_failure_worth_logging(failed_probes: u32) -> bool {
    failed_probes.is_power_of_two() || failed_probes.is_multiple_of(20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_probes_are_logged_at_powers_of_two_and_every_twentieth() {
        let logged: Vec<u32> = (1..=100).filter(|&probes| probe_failure_worth_logging(probes)).collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16, 20, 32, 40, 60, 64, 80, 100]);
    }
}
