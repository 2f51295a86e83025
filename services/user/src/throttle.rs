//! Login throttling per account: after [`FAILURES_ALLOWED`] wrong passwords for one email within
//! [`WINDOW`], every login attempt for that email is answered 429 with `Retry-After` until the
//! window of the oldest counted failure has passed, whatever password it carries. A successful
//! login clears the account's record.
//!
//! The record is in PostgreSQL (`login_attempts`), so every replica of the service counts the same
//! attempts, and the clock is the database's. An attempt is claimed before its password is
//! checked, under a lock per account: concurrent guesses for one account, on one replica or many,
//! get [`FAILURES_ALLOWED`] checks between them, not one each. The claim counts as a failure
//! unless the login succeeds, which clears the account's record.
//!
//! The other half is at the gateway: nginx limits login requests per client address
//! (`limit_req`, answered with the same JSON 429), and [`crate::passwords`] bounds how many
//! password hashes run at once, so that no client can make this service spend all its CPU on
//! argon2.

use std::time::Duration;

use sqlx::PgPool;

/// Wrong passwords allowed per account within [`WINDOW`].
pub const FAILURES_ALLOWED: i64 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct LoginThrottle {
    pool: PgPool,
}

impl LoginThrottle {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Claims a login attempt for `email`: `Ok` when it may go on (the attempt now counts as a
    /// failure until [`Self::record_success`]), `Err(wait)` when the account may not try again
    /// for `wait` (nothing is counted).
    pub async fn claim(&self, email: &str) -> sqlx::Result<Result<(), Duration>> {
        let email = key(email);
        let window = window_seconds();
        let mut transaction = self.pool.begin().await?;
        // One claim per account at a time, across replicas: held until the commit.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('login_attempts:' || $1, 0))")
            .bind(&email)
            .execute(&mut *transaction)
            .await?;
        // The most recent attempts that still count, and when the oldest of them stops counting.
        let (counted, seconds_left): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM min(attempted_at) + make_interval(secs => $2) - clock_timestamp())::float8 \
             FROM (SELECT attempted_at FROM login_attempts \
                   WHERE email = $1 AND attempted_at > clock_timestamp() - make_interval(secs => $2) \
                   ORDER BY attempted_at DESC LIMIT $3) AS recent",
        )
        .bind(&email)
        .bind(window)
        .bind(FAILURES_ALLOWED)
        .fetch_one(&mut *transaction)
        .await?;
        if counted >= FAILURES_ALLOWED {
            transaction.commit().await?;
            return Ok(Err(Duration::from_secs_f64(seconds_left.unwrap_or(0.0).max(0.0))));
        }
        sqlx::query("INSERT INTO login_attempts (email) VALUES ($1)").bind(&email).execute(&mut *transaction).await?;
        // What stopped counting goes, this account's and anyone's: the table holds one window.
        sqlx::query("DELETE FROM login_attempts WHERE attempted_at <= clock_timestamp() - make_interval(secs => $1)")
            .bind(window)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(Ok(()))
    }

    /// The login succeeded: the account's record is cleared.
    pub async fn record_success(&self, email: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM login_attempts WHERE email = $1").bind(key(email)).execute(&self.pool).await?;
        Ok(())
    }
}

fn window_seconds() -> f64 {
    WINDOW.as_secs_f64()
}

/// The account an attempt counts against: the email as logins match it (trimmed, any case). A
/// login for text no account can have is still counted, under a key the database can hold: a
/// control character (PostgreSQL refuses a NUL in text) is written out as `\u{..}`, and text
/// longer than any email is cut there (a key per megabyte of made-up username would let one
/// client fill the table).
fn key(email: &str) -> String {
    let longest = crate::validation::MAXIMUM_EMAIL_LENGTH + 1;
    let mut key = String::new();
    for character in email.trim().to_lowercase().chars().take(longest) {
        if character.is_control() {
            key.push_str(&format!("\\u{{{:x}}}", u32::from(character)));
        } else {
            key.push(character);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_key_is_its_email_in_any_case_and_text_no_account_can_have_is_still_a_key_the_database_holds() {
        assert_eq!(key(" Customer@Example.COM "), "customer@example.com");
        assert_eq!(key("\0customer@example.com"), "\\u{0}customer@example.com");
        assert_ne!(key("\0customer@example.com"), key("customer@example.com"), "it names no account, so it counts against none");
        assert_eq!(key(&"a".repeat(1_000_000)).chars().count(), crate::validation::MAXIMUM_EMAIL_LENGTH + 1);
    }
}
