//! What a message handler says when it could not process a message, and which failures are the
//! message's fault and which are the infrastructure's.
//!
//! The distinction decides what happens to the message (see [`super::consumer`]): a message that
//! is wrong is tried a bounded number of times and then dead-lettered; a message that met a
//! dependency that is down (a database, the broker, another service) is kept, and the consumer
//! pauses until the dependency answers again, however long that takes. An outage must never cost
//! a message its tries, or a database failover would fill the dead-letter queues with good orders.
//!
//! The classification is by type, never by error text: [`is_infrastructure_failure`] walks an
//! error's cause chain looking for the error types of the drivers (sqlx, mongodb, lapin), I/O and
//! timeout errors, and the marker [`DependencyUnavailable`]. It deliberately does not guess about
//! errors it does not know: those count against the message's tries, which is the safe side for a
//! bug (bounded work) but would be the wrong side for an outage, so every driver error a handler
//! can meet during an outage must be recognised here.

use std::time::Duration;

/// What a handler says about a message it could not process.
#[derive(Debug)]
pub enum HandlerError {
    /// A dependency did not answer (a database, the broker or another service unreachable, timing
    /// out, or out of pooled connections). Nothing is known to be wrong with the message: it is
    /// neither acknowledged, rejected nor re-published, it does not use up one of its tries, and
    /// it is never dead-lettered. The consumer pauses (stops starting handlers), retries this
    /// message with a backoff capped at [`super::ConsumerSettings::max_outage_backoff`], and
    /// resumes once a handler gets past the dependency again.
    Unavailable(anyhow::Error),
    /// The message failed for a reason that may not repeat (a deadlock, a lock timeout, an
    /// unexpected state): it is tried again after a short backoff, up to
    /// [`super::ConsumerSettings::max_attempts`] times in all, then dead-lettered.
    Retry(anyhow::Error),
    /// The message can never succeed (undecodable, impossible, breaks a business rule): it is
    /// dead-lettered at once.
    Reject(anyhow::Error),
    /// Something the message needs is not there yet but is on its way (an order that overtook its
    /// product's stock record). The message is set aside in its queue's delay queue for
    /// [`super::ConsumerSettings::not_yet_recheck_interval`] (no prefetch slot is held meanwhile)
    /// and delivered again, for as long as [`super::Attempt::may_keep_waiting`] says; it does not
    /// use up a try. A handler must give its final answer once `may_keep_waiting` is false: a
    /// `NotYet` then dead-letters the message.
    NotYet(anyhow::Error),
}

impl HandlerError {
    /// The underlying error, whatever the variant.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            HandlerError::Unavailable(error)
            | HandlerError::Retry(error)
            | HandlerError::Reject(error)
            | HandlerError::NotYet(error) => error,
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            HandlerError::Unavailable(_) => "dependency unavailable",
            HandlerError::Retry(_) => "failed",
            HandlerError::Reject(_) => "rejected",
            HandlerError::NotYet(_) => "not yet",
        };
        write!(formatter, "{kind}: {:#}", self.error())
    }
}

/// A handler's `?` on an infrastructure call lands here: infrastructure failures (by the types in
/// the cause chain, see [`is_infrastructure_failure`]) become [`HandlerError::Unavailable`],
/// everything else [`HandlerError::Retry`].
impl From<anyhow::Error> for HandlerError {
    fn from(error: anyhow::Error) -> Self {
        if is_infrastructure_failure(&error) { HandlerError::Unavailable(error) } else { HandlerError::Retry(error) }
    }
}

impl From<lapin::Error> for HandlerError {
    fn from(error: lapin::Error) -> Self {
        anyhow::Error::from(error).into()
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        anyhow::Error::from(error).into()
    }
}

#[cfg(feature = "mongodb")]
impl From<mongodb::error::Error> for HandlerError {
    fn from(error: mongodb::error::Error) -> Self {
        anyhow::Error::from(error).into()
    }
}

/// A marker for "a dependency did not answer", for code that detects an outage itself (a
/// timeout around a call, a client that answered 503). Wrap it in an `anyhow::Error` (or put it
/// in the cause chain with `.context`) and the handler's `?` classifies it as
/// [`HandlerError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[error("{dependency} is unavailable")]
pub struct DependencyUnavailable {
    /// What did not answer, for the log: "PostgreSQL", "the catalog".
    pub dependency: String,
}

impl DependencyUnavailable {
    pub fn new(dependency: impl Into<String>) -> Self {
        Self { dependency: dependency.into() }
    }
}

/// Whether anything in `error`'s cause chain says a dependency failed rather than the message.
pub fn is_infrastructure_failure(error: &anyhow::Error) -> bool {
    error.chain().any(is_infrastructure_cause)
}

fn is_infrastructure_cause(cause: &(dyn std::error::Error + 'static)) -> bool {
    if cause.is::<DependencyUnavailable>() || cause.is::<tokio::time::error::Elapsed>() {
        return true;
    }
    if let Some(failure) = cause.downcast_ref::<super::publisher::PublishFailure>() {
        return failure.is_infrastructure();
    }
    // Every I/O error a handler meets is a connection that failed, not its message.
    if cause.is::<std::io::Error>() {
        return true;
    }
    // Every lapin error is about the broker or the connection to it, never about a message's
    // content (a message the broker refuses shows up as a nack or a return, not as an error).
    if cause.is::<lapin::Error>() {
        return true;
    }
    if let Some(error) = cause.downcast_ref::<reqwest::Error>() {
        return error.is_connect() || error.is_timeout();
    }
    #[cfg(feature = "postgres")]
    if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
        return is_infrastructure_sqlx_error(error);
    }
    #[cfg(feature = "mongodb")]
    if let Some(error) = cause.downcast_ref::<mongodb::error::Error>() {
        return is_infrastructure_mongodb_error(error);
    }
    false
}

#[cfg(feature = "postgres")]
fn is_infrastructure_sqlx_error(error: &sqlx::Error) -> bool {
    match error {
        // The connection broke, could not be made, or the pool had none to give in time.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database_error) => database_error.code().is_some_and(|code| is_infrastructure_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs that describe the server's condition, not the statement: class 08 (connection
/// exception), class 53 (insufficient resources: out of connections, disk or memory), 57P01-57P03
/// (the server is shutting down, crashed or still starting: what a restart or failover looks
/// like), 57014 (the statement timed out) and class 58 (system error, I/O).
#[cfg(feature = "postgres")]
fn is_infrastructure_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("58")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014")
}

#[cfg(feature = "mongodb")]
fn is_infrastructure_mongodb_error(error: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match error.kind.as_ref() {
        // No server to talk to, the connection broke or timed out, or the pool was cleared after
        // a network error.
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. } => true,
        // The server answered, but only to say it cannot serve now: shutting down, stepping down,
        // not (yet) primary, or over its time limit.
        ErrorKind::Command(command_error) => {
            matches!(command_error.code, 6 | 7 | 50 | 89 | 91 | 189 | 262 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436)
        }
        _ => error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR),
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
    use anyhow::Context;

    #[test]
    fn an_io_error_anywhere_in_the_chain_is_infrastructure() {
        let error = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            .context("failed to reserve stock for order 1")
            .unwrap_err();
        assert!(matches!(HandlerError::from(error), HandlerError::Unavailable(_)));
    }

    #[test]
    fn an_error_of_unknown_type_counts_against_the_message() {
        let error = anyhow::anyhow!("order 1 has the unexpected reservation state \"weird\"");
        assert!(matches!(HandlerError::from(error), HandlerError::Retry(_)));
    }

    #[test]
    fn the_marker_and_timeouts_are_infrastructure() {
        let marker = anyhow::Error::new(DependencyUnavailable::new("the catalog")).context("failed to check the price");
        assert!(is_infrastructure_failure(&marker));
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn pool_timeouts_are_infrastructure_and_row_not_found_is_not() {
        assert!(matches!(HandlerError::from(sqlx::Error::PoolTimedOut), HandlerError::Unavailable(_)));
        assert!(matches!(HandlerError::from(sqlx::Error::RowNotFound), HandlerError::Retry(_)));
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
