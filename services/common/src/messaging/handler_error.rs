//! What a message handler says when it could not process a message.
//!
//! The answer decides what happens to the message (see [`super::consumer`]): a message that is
//! wrong is tried a bounded number of times and then dead-lettered; a message that met a
//! dependency that is down (a database, the broker, another service) is kept, and the consumer
//! pauses until the dependency answers again, however long that takes. An outage must never cost
//! a message its tries, or a database failover would fill the dead-letter queues with good orders.
//! A handler's `?` decides between the two by the error's types, with
//! [`crate::failure::is_infrastructure_failure`] (the same rule that turns an HTTP handler's
//! failure into a 503 rather than a 500).

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
/// the cause chain, see [`crate::failure::is_infrastructure_failure`]) become [`HandlerError::Unavailable`],
/// everything else [`HandlerError::Retry`].
impl From<anyhow::Error> for HandlerError {
    fn from(error: anyhow::Error) -> Self {
        if crate::failure::is_infrastructure_failure(&error) {
            HandlerError::Unavailable(error)
        } else {
            HandlerError::Retry(error)
        }
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

    #[cfg(feature = "postgres")]
    #[test]
    fn pool_timeouts_are_infrastructure_and_row_not_found_is_not() {
        assert!(matches!(HandlerError::from(sqlx::Error::PoolTimedOut), HandlerError::Unavailable(_)));
        assert!(matches!(HandlerError::from(sqlx::Error::RowNotFound), HandlerError::Retry(_)));
    }

    #[test]
    fn the_message_of_a_handler_error_names_its_kind_and_the_whole_cause_chain() {
        let cause = || Err::<(), _>(std::io::Error::other("connection refused")).context("failed to reserve stock for order 1");
        let unavailable = HandlerError::from(cause().unwrap_err());
        assert_eq!(unavailable.to_string(), "dependency unavailable: failed to reserve stock for order 1: connection refused");
        let rejected = HandlerError::Reject(anyhow::anyhow!("order id \"x\" is not an ObjectId"));
        assert_eq!(rejected.to_string(), "rejected: order id \"x\" is not an ObjectId");
        assert_eq!(HandlerError::NotYet(anyhow::anyhow!("no stock record")).to_string(), "not yet: no stock record");
        assert_eq!(HandlerError::Retry(anyhow::anyhow!("deadlock")).to_string(), "failed: deadlock");
    }
}
