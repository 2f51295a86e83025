//! How many attempts in a row have failed, and how long to wait after them: the back-off and the
//! log throttling of the loops that keep trying while a dependency is away (the consumer's
//! reconnection loop and outage probes, and the outbox relay).

use std::time::Duration;

/// Consecutive failures; a success ends the streak.
#[derive(Debug, Default)]
pub(crate) struct FailureStreak(u32);

impl FailureStreak {
    pub(crate) fn record_failure(&mut self) {
        self.0 = self.0.saturating_add(1);
    }

    pub(crate) fn record_success(&mut self) {
        self.0 = 0;
    }

    /// Failures since the last success.
    pub(crate) fn count(&self) -> u32 {
        self.0
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.0 > 0
    }

    /// The first failure of a streak and every 20th after it: an outage shows in the log
    /// without flooding it.
    pub(crate) fn worth_logging(&self) -> bool {
        self.0 == 1 || self.0.is_multiple_of(20)
    }
}

/// The wait after the `failures`-th consecutive failure: `first`, doubling, at most `cap`.
pub(crate) fn capped_backoff(first: Duration, failures: u32, cap: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    first.saturating_mul(2u32.saturating_pow(doublings)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_counts_failures_until_a_success_and_never_overflows() {
        let mut streak = FailureStreak::default();
        assert!(!streak.is_failing());
        assert_eq!(streak.count(), 0);
        streak.record_failure();
        streak.record_failure();
        assert!(streak.is_failing());
        assert_eq!(streak.count(), 2);
        streak.record_success();
        assert!(!streak.is_failing());
        assert_eq!(streak.count(), 0);
        let mut endless = FailureStreak(u32::MAX);
        endless.record_failure();
        assert_eq!(endless.count(), u32::MAX);
    }

    #[test]
    fn a_failure_streak_is_logged_at_its_first_failure_and_every_twentieth() {
        let mut streak = FailureStreak::default();
        let logged: Vec<u32> = (1..=60)
            .filter(|_| {
                streak.record_failure();
                streak.worth_logging()
            })
            .collect();
        assert_eq!(logged, vec![1, 20, 40, 60]);
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let first = Duration::from_millis(100);
        let cap = Duration::from_secs(30);
        assert_eq!(capped_backoff(first, 1, cap), Duration::from_millis(100));
        assert_eq!(capped_backoff(first, 3, cap), Duration::from_millis(400));
        assert_eq!(capped_backoff(first, 40, cap), cap);
    }
}
