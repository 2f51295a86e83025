//! Which failures say that a dependency is down rather than that the work was wrong: the one
//! rule behind both a message handler's answer (an outage pauses the consumer and keeps the
//! message, see [`crate::messaging::HandlerError`]) and an HTTP handler's (an outage is a 503 the
//! client may retry, a bug a 500, see [`crate::ApiError`]).
//!
//! The classification is by type, never by error text: [`is_infrastructure_failure`] walks an
//! error's cause chain looking for the error types of the drivers (sqlx, mongodb, lapin, reqwest),
//! I/O and timeout errors, and the marker [`DependencyUnavailable`] (which the publisher's
//! failures carry). It deliberately does not guess about errors it does not know: those count
//! against a message's tries, which is the safe side for a bug (bounded work) but would be the
//! wrong side for an outage, so every driver error a handler can meet during an outage must be
//! recognised here.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_and_timeouts_are_infrastructure() {
        let marker = anyhow::Error::new(DependencyUnavailable::new("the catalog")).context("failed to check the price");
        assert!(is_infrastructure_failure(&marker));
    }

    #[tokio::test]
    async fn a_refused_connection_to_another_service_is_infrastructure_and_a_malformed_request_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let refused = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/")).send().await.unwrap_err();
        assert!(refused.is_connect() && !refused.is_timeout(), "{refused:?}");
        // The reqwest error itself, not the I/O error in its cause chain, which is recognised anyway.
        assert!(is_infrastructure_cause(&refused));
        let malformed = reqwest::Client::new().get("http://[::1/").send().await.unwrap_err();
        assert!(!is_infrastructure_cause(&malformed), "{malformed:?}");
    }

    /// A PostgreSQL error answered by the server, with its SQLSTATE.
    #[cfg(feature = "postgres")]
    #[derive(Debug)]
    struct ServerError(&'static str);

    #[cfg(feature = "postgres")]
    impl std::fmt::Display for ServerError {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "the server answered SQLSTATE {}", self.0)
        }
    }

    #[cfg(feature = "postgres")]
    impl std::error::Error for ServerError {}

    #[cfg(feature = "postgres")]
    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "the server answered with an error"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn sqlstates_of_the_servers_condition_are_infrastructure_and_those_of_the_statement_are_not() {
        let answered =
            |code| anyhow::Error::from(sqlx::Error::Database(Box::new(ServerError(code)))).context("failed to reserve");
        // Connection lost, too many connections, shutting down, starting up, statement timeout, I/O.
        for code in ["08006", "53300", "57P01", "57P03", "57014", "58030"] {
            assert!(is_infrastructure_failure(&answered(code)), "{code} is the server's condition");
        }
        // Unique violation, deadlock, undefined table, an operator intervention that is not a shutdown.
        for code in ["23505", "40P01", "42P01", "57000"] {
            assert!(!is_infrastructure_failure(&answered(code)), "{code} is about the statement");
        }
    }

    #[cfg(feature = "mongodb")]
    #[test]
    fn a_broken_connection_to_mongodb_is_infrastructure_and_an_error_of_the_code_is_not() {
        let broken = mongodb::error::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_infrastructure_mongodb_error(&broken), "{broken:?}");
        let custom = mongodb::error::Error::custom("an unexpected document");
        assert!(!is_infrastructure_mongodb_error(&custom), "{custom:?}");
    }
}
