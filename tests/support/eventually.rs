//! Waiting for asynchronous effects without bare sleeps: poll until a probe succeeds or a
//! deadline passes, and on timeout say what was last seen.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a probe runs.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `probe` until it returns `Ok`, for at most `timeout`. On timeout, panics with `what` and
/// the last `Err` the probe returned (the last value it saw).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last_seen) if Instant::now() >= deadline => {
                panic!("{what} did not happen within {timeout:?}; last seen: {last_seen}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}
