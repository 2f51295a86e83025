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
pub async fn connect(url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    Connection::connect(url, properties).await
}
