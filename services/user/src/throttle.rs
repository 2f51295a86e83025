//! Login throttling per account: after [`FAILURES_ALLOWED`] wrong passwords for one email within
//! [`WINDOW`], every login attempt for that email is answered 429 with `Retry-After` until the
//! window of the oldest counted failure has passed, whatever password it carries. A successful
//! login clears the account's record.
//!
//! The other half is at the gateway: nginx limits login requests per client address
//! (`limit_req`, answered with the same JSON 429), and [`crate::passwords`] bounds how many
//! password hashes run at once, so that no client can make this service spend all its CPU on
//! argon2.
//!
//! The record is in memory, per process: with several replicas an attacker gets
//! `FAILURES_ALLOWED` tries per replica per window, which still turns an unbounded guessing rate
//! into a handful per quarter of an hour.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords allowed per account within [`WINDOW`].
pub const FAILURES_ALLOWED: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Accounts with recent failures remembered at most; beyond it the oldest records are dropped
/// (a flood of made-up emails cannot grow memory without bound).
const ACCOUNTS_REMEMBERED: usize = 100_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    /// Recent failures per normalised email, oldest first.
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// `Err(wait)` when `email` may not try again for `wait`.
    pub fn check(&self, email: &str, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(recent) = failures.get_mut(&key(email)) else { return Ok(()) };
        recent.retain(|failed_at| now.duration_since(*failed_at) < WINDOW);
        if recent.len() < FAILURES_ALLOWED {
            return Ok(());
        }
        let oldest = *recent.front().expect("at least FAILURES_ALLOWED entries");
        Err(WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    pub fn record_failure(&self, email: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= ACCOUNTS_REMEMBERED && !failures.contains_key(&key(email)) {
            failures.retain(|_, recent| recent.back().is_some_and(|last| now.duration_since(*last) < WINDOW));
            if failures.len() >= ACCOUNTS_REMEMBERED {
                failures.clear();
            }
        }
        let recent = failures.entry(key(email)).or_default();
        recent.push_back(now);
        while recent.len() > FAILURES_ALLOWED {
            recent.pop_front();
        }
    }

    pub fn record_success(&self, email: &str) {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key(email));
    }
}

/// Emails are matched case-insensitively, as logins are.
fn key(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_throttled_after_its_allowed_failures_until_the_oldest_leaves_the_window() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for attempt in 0..FAILURES_ALLOWED {
            assert_eq!(throttle.check("a@example.com", start), Ok(()), "attempt {attempt}");
            throttle.record_failure("a@example.com", start + Duration::from_secs(attempt as u64));
        }
        let later = start + Duration::from_secs(60);
        assert_eq!(throttle.check("A@Example.com ", later), Err(WINDOW - Duration::from_secs(60)), "same account, any case");
        assert_eq!(throttle.check("b@example.com", later), Ok(()), "other accounts are not affected");
        assert_eq!(throttle.check("a@example.com", start + WINDOW), Ok(()), "the oldest failure left the window");
    }

    #[test]
    fn an_account_stays_throttled_for_a_quarter_of_an_hour_after_its_oldest_counted_failure() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..FAILURES_ALLOWED {
            throttle.record_failure("a@example.com", start);
        }
        let quarter_of_an_hour = Duration::from_secs(15 * 60);
        let a_second_before = start + quarter_of_an_hour - Duration::from_secs(1);
        assert_eq!(throttle.check("a@example.com", a_second_before), Err(Duration::from_secs(1)));
        assert_eq!(throttle.check("a@example.com", start + quarter_of_an_hour), Ok(()));
    }

    #[test]
    fn a_successful_login_clears_the_record() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..FAILURES_ALLOWED - 1 {
            throttle.record_failure("a@example.com", now);
        }
        throttle.record_success("a@example.com");
        throttle.record_failure("a@example.com", now);
        assert_eq!(throttle.check("a@example.com", now), Ok(()));
    }

    /// A throttle remembering `accounts` accounts with one failure each at `failed_at`, filled
    /// directly (not through `record_failure`, whose own bound is under test).
    fn throttle_remembering(accounts: usize, failed_at: Instant) -> LoginThrottle {
        let throttle = LoginThrottle::default();
        let mut failures = throttle.failures.lock().unwrap();
        for account in 0..accounts {
            failures.insert(key(&format!("{account}@example.com")), VecDeque::from([failed_at]));
        }
        drop(failures);
        throttle
    }

    fn accounts_remembered(throttle: &LoginThrottle) -> usize {
        throttle.failures.lock().unwrap().len()
    }

    #[test]
    fn a_new_account_beyond_the_bound_never_grows_the_record_past_it() {
        let now = Instant::now();
        let throttle = throttle_remembering(ACCOUNTS_REMEMBERED, now);
        throttle.record_failure("new@example.com", now);
        assert!(accounts_remembered(&throttle) <= ACCOUNTS_REMEMBERED, "{} accounts", accounts_remembered(&throttle));
        assert!(throttle.failures.lock().unwrap().contains_key("new@example.com"), "the new failure is recorded");
    }

    #[test]
    fn a_full_record_drops_the_accounts_whose_failures_left_the_window_and_keeps_the_others() {
        let start = Instant::now();
        let throttle = throttle_remembering(ACCOUNTS_REMEMBERED, start);
        let later = start + WINDOW;
        for _ in 0..FAILURES_ALLOWED {
            throttle.record_failure("0@example.com", later);
        }
        throttle.record_failure("new@example.com", later);
        assert_eq!(accounts_remembered(&throttle), 2, "every account but the recent two is dropped");
        assert!(throttle.check("0@example.com", later).is_err(), "the account with recent failures is still throttled");
    }

    #[test]
    fn another_failure_of_an_account_in_a_full_record_drops_nobody() {
        let now = Instant::now();
        let throttle = throttle_remembering(ACCOUNTS_REMEMBERED, now);
        for _ in 1..FAILURES_ALLOWED {
            throttle.record_failure("0@example.com", now);
        }
        assert_eq!(accounts_remembered(&throttle), ACCOUNTS_REMEMBERED);
        assert!(throttle.check("0@example.com", now).is_err(), "its failures all counted");
    }
}
