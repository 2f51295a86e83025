//! Waiting for asynchronous effects without bare sleeps: poll until a probe succeeds or a
//! deadline passes, and on timeout say what was last seen.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a probe runs.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `probe` until it returns `Ok`, for at most `timeout`. On timeout, panics with `what` and
/// the last `Err` the probe returned (the last value it saw).
///
/// The deadline is kept: a probe still waiting when it passes (a request to a service that does
/// not answer, say) is abandoned, so the wait never overruns by a probe's own timeout. A probe
/// reports failures it should retry (a refused connection, an unexpected status) as `Err`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_seen = String::from("nothing: no probe finished");
    loop {
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(seen)) => last_seen = seen,
            Err(_) => last_seen = format!("a probe still waiting for its answer at the deadline; before it: {last_seen}"),
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("{what} did not happen within {timeout:?}; last seen: {last_seen}");
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}
