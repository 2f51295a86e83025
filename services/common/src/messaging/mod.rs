//! Messaging over RabbitMQ: the one topology every service declares, the typed messages that
//! cross it, a publisher with confirms, a supervised consumer with bounded retries and
//! dead-lettering, and the outbox relay that turns stored events into published messages.
//!
//! Delivery is at least once everywhere; every consumer is idempotent on a business key (an
//! order id, a product id), so a message delivered twice changes nothing the second time.

pub mod consumer;
pub mod dead_letters;
#[cfg(feature = "mongodb")]
pub mod document_outbox;
pub mod events;
mod failure_streak;
pub mod handler_error;
pub mod outbox;
pub mod publisher;
pub mod topology;

pub use consumer::{Attempt, ConsumerSettings, consume};
pub use events::Message;
pub use handler_error::HandlerError;
pub use outbox::{OutboxMessage, OutboxRelay, OutboxStore, RelayWake};
pub use publisher::{PublishFailure, Publisher};

use lapin::{Connection, ConnectionProperties};

/// Opens a connection named after the service, so the management UI shows who is connected.
///
/// Every connection asks for a heartbeat of [`HEARTBEAT_SECONDS`] unless its URL sets one
/// (`?heartbeat=N`): a connection that goes silent without closing (a broker that hangs, a
/// network partition) is then given up by both sides within two heartbeats, and the service
/// reconnects, instead of after RabbitMQ's default of two minutes during which the consumers
/// would hold their messages and the publisher would wait on confirms that never come.
pub async fn connect(url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(mut uri) => {
            uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
            Connection::connect_uri(uri, properties).await
        }
        // Not a URL lapin reads: its own connect says why, as it always did.
        Err(_) => Connection::connect(url, properties).await,
    }
}

/// The RabbitMQ user a connection to `url` logs in as: the URL's user, or `guest` when it names
/// none (as lapin then does). What the connection may stamp as a message's `user_id`.
pub fn broker_user_of(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.authority.userinfo.username)
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "guest".to_owned())
}

/// The heartbeat every connection asks for, in seconds: RabbitMQ's guidance is 5 to 20 s; the
/// low end, because a hung link costs orders their time to payment until it is noticed.
pub const HEARTBEAT_SECONDS: u16 = 5;

#[cfg(test)]
mod tests {
    #[test]
    fn the_broker_user_is_the_urls_decoded_user_or_guest() {
        assert_eq!(super::broker_user_of("amqp://order:secret@broker:5672/%2f"), "order");
        assert_eq!(super::broker_user_of("amqp://shop%2Dorder:secret@broker/shop"), "shop-order");
        assert_eq!(super::broker_user_of("amqp://broker:5672"), "guest");
    }
}
