//! The one place that declares queues. Every service calls [`declare`] whenever it (re)connects:
//! declarations are idempotent, and a queue declared by the publisher exists before its consumer
//! ever starts, so messages wait in it while the consumer is down.
//!
//! Messages go through the default exchange, routed by queue name, so each queue name below is
//! also the routing key. Every queue has a dead-letter queue named `<queue>.dead_letter` that
//! receives what its consumer rejects, and a delay queue named `<queue>.delayed` where a
//! consumer sets aside a message that cannot be handled yet (see
//! [`super::HandlerError::NotYet`]): nobody consumes a delay queue; each message in it carries
//! its own expiration, and when that passes the broker dead-letters it back into its work queue.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ErrorKind};

/// A new order, for inventory to reserve its items.
pub const ORDER_CREATED: &str = "order_created";
/// Inventory reserved every item of an order.
pub const INVENTORY_RESERVED: &str = "inventory_reserved";
/// Inventory could not reserve an order (not enough stock); carries the reason.
pub const INVENTORY_FAILED: &str = "inventory_failed";
/// An order's (simulated) payment went through.
pub const ORDER_PROCESSED: &str = "order_processed";
/// An order was cancelled: release whatever stock it holds.
pub const INVENTORY_RELEASE: &str = "inventory_release";
/// A product was created: create its inventory record.
pub const PRODUCT_CREATED: &str = "product_created";
/// A product was deleted: retire its inventory record.
pub const PRODUCT_DELETED: &str = "product_deleted";

/// Every work queue, in flow order.
pub const QUEUES: [&str; 7] =
    [ORDER_CREATED, INVENTORY_RESERVED, INVENTORY_FAILED, ORDER_PROCESSED, INVENTORY_RELEASE, PRODUCT_CREATED, PRODUCT_DELETED];

/// A service that speaks on the broker. Each connects as a RabbitMQ user of its own, named after
/// it ([`Service::broker_user`]), and stamps that name on every message it publishes as the AMQP
/// `user_id` property, which RabbitMQ refuses unless it is the connection's own user. So a
/// message's `user_id` says which service's credentials published it, and every consumer takes an
/// event only from the service that owns it ([`owner`]; see `super::consumer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Order,
    Inventory,
    Product,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Order, Service::Inventory, Service::Product];

    /// The RabbitMQ user the service connects as, and the `user_id` of the events it owns.
    pub const fn broker_user(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Inventory => "inventory",
            Service::Product => "product",
        }
    }

    /// The work queues of the events this service owns and publishes.
    pub const fn publishes(self) -> &'static [&'static str] {
        match self {
            Service::Order => &[ORDER_CREATED, ORDER_PROCESSED, INVENTORY_RELEASE],
            Service::Inventory => &[INVENTORY_RESERVED, INVENTORY_FAILED],
            Service::Product => &[PRODUCT_CREATED, PRODUCT_DELETED],
        }
    }

    /// The work queues this service consumes.
    pub const fn consumes(self) -> &'static [&'static str] {
        match self {
            Service::Order => &[INVENTORY_RESERVED, INVENTORY_FAILED, ORDER_PROCESSED],
            Service::Inventory => &[ORDER_CREATED, INVENTORY_RELEASE, PRODUCT_CREATED, PRODUCT_DELETED],
            Service::Product => &[],
        }
    }

    /// The queues the service declares: those it publishes to (so that its events wait there
    /// while their consumer is down) and those it consumes, each with its dead-letter and delay
    /// queues.
    pub fn declares(self) -> Vec<&'static str> {
        let mut queues: Vec<&'static str> = self.publishes().iter().chain(self.consumes()).copied().collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }

    /// The service's rights on its vhost, as RabbitMQ's configure, write and read patterns: what a
    /// deployment grants its broker user (`cargo xtask up`, the harness, docker-compose's
    /// definitions all take them from here).
    ///
    /// - **configure**: the queues it declares ([`Self::declares`]) and nothing else: it cannot
    ///   create, delete or redefine any other queue or exchange.
    /// - **read**: the same queues. Reading its own events' queues is more than it consumes, but
    ///   RabbitMQ asks for it: declaring a queue that dead-letters (every queue here does) needs
    ///   read on that queue. It lets a service take its own events only, which it could as well
    ///   not have published; no service can read another's events.
    /// - **write**: the default exchange, through which every message is routed by queue name.
    ///   RabbitMQ checks a publish against the exchange, not the queue it reaches, so this cannot
    ///   be narrowed per queue: what stops a service publishing another's events is the `user_id`
    ///   check of every consumer.
    pub fn permissions(self) -> Permissions {
        let queues = self.declares().join("|");
        let queues = format!("^({queues})(\\.dead_letter|\\.delayed)?$");
        Permissions { configure: queues.clone(), write: "^amq\\.default$".to_owned(), read: queues }
    }
}

/// A broker user's rights on a vhost (RabbitMQ's regular expressions over resource names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// The service whose events travel on `queue`: the only one whose `user_id` its consumer takes.
pub fn owner(queue: &str) -> Option<Service> {
    Service::ALL.into_iter().find(|service| service.publishes().contains(&queue))
}

/// The service that consumes `queue`: the one whose broker user replays its dead letters.
pub fn consumer(queue: &str) -> Option<Service> {
    Service::ALL.into_iter().find(|service| service.consumes().contains(&queue))
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead_letter")
}

/// Where a message of `queue` waits before it is delivered again (see the module doc).
pub fn delay_queue(queue: &str) -> String {
    format!("{queue}.delayed")
}

/// How many times a declaration that lost a race with another declarer is made again, the
/// first after [`RACE_PAUSE`], each next one after one more.
const RACE_RETRIES: u32 = 5;
const RACE_PAUSE: Duration = Duration::from_millis(100);

/// Declares `queues`, each with its dead-letter queue and its delay queue, on a channel of its own
/// (closed when done). A service declares [`Service::declares`]; tools and tests that act for
/// every service declare [`QUEUES`].
///
/// Every consumer and publisher of every service declares the topology when it connects, so a
/// system starting in a new vhost has a dozen declarers racing for each queue. RabbitMQ 3.10
/// can answer the loser of such a race `NOT_FOUND - home node ... of durable queue ... is down
/// or inaccessible` (it found the queue's durable record but not yet its live one) and close
/// the channel. That is not the broker in trouble: the declaration is made again on a new
/// channel, a few times, before the error is returned. A queue whose home node is really down
/// still fails, about a second and a half later.
pub async fn declare(connection: &Connection, queues: &[&str]) -> lapin::Result<()> {
    declare_riding_out_races(|| async {
        let channel = connection.create_channel().await?;
        declare_on(&channel, queues).await?;
        // Best effort: the declarations are done whatever becomes of this channel.
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(())
    })
    .await
}

/// Makes `attempt` again after a lost declaration race (see [`declare`]); any other outcome is
/// returned at once.
async fn declare_riding_out_races<A, F>(attempt: A) -> lapin::Result<()>
where
    A: Fn() -> F,
    F: Future<Output = lapin::Result<()>>,
{
    let mut lost = 0;
    loop {
        match attempt().await {
            Err(error) if lost < RACE_RETRIES && lost_a_declaration_race(&error) => {
                lost += 1;
                tracing::debug!(%error, lost, "a queue declaration raced another declarer; declaring again");
                tokio::time::sleep(RACE_PAUSE * lost).await;
            }
            outcome => return outcome,
        }
    }
}

/// Whether the broker refused a declaration because the queue's home node seemed down: what a
/// declarer that loses a race for a new queue is told (see [`declare`]).
fn lost_a_declaration_race(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(refusal)
        if *refusal.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
            && refusal.get_message().as_str().contains("is down or inaccessible"))
}

async fn declare_on(channel: &Channel, queues: &[&str]) -> lapin::Result<()> {
    // Durable: the queue definitions survive a broker restart (messages survive too because
    // every publisher marks them persistent).
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    for &queue in queues {
        let dead_letter = dead_letter_queue(queue);
        channel.queue_declare(dead_letter.as_str().into(), durable, FieldTable::default()).await?;

        let mut arguments = FieldTable::default();
        // A rejected message (undecodable, or out of retries) goes to the dead-letter queue
        // through the default exchange instead of being dropped or looping forever.
        arguments.insert(ShortString::from("x-dead-letter-exchange"), AMQPValue::LongString("".into()));
        arguments.insert(ShortString::from("x-dead-letter-routing-key"), AMQPValue::LongString(dead_letter.as_str().into()));
        channel.queue_declare(queue.into(), durable, arguments).await?;

        let mut arguments = FieldTable::default();
        // An expired message goes back to the end of its work queue, through the default
        // exchange. The delay is each message's own `expiration`, not a queue-wide
        // `x-message-ttl`, so that changing it needs no re-declaration (which the broker would
        // refuse for a queue declared with other arguments). Expiry happens at the head of the
        // queue only, so a consumer uses one delay per queue: then the head always expires first.
        arguments.insert(ShortString::from("x-dead-letter-exchange"), AMQPValue::LongString("".into()));
        arguments.insert(ShortString::from("x-dead-letter-routing-key"), AMQPValue::LongString(queue.into()));
        channel.queue_declare(delay_queue(queue).as_str().into(), durable, arguments).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use lapin::protocol::{AMQPError, AMQPHardError};

    use super::*;

    fn refusal(kind: AMQPErrorKind, message: &str) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(kind, message.into())).into()
    }

    fn lost_race() -> lapin::Error {
        refusal(
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
            "NOT_FOUND - home node 'rabbit@localhost' of durable queue 'product_deleted.delayed' in vhost 'e2e' is down or inaccessible",
        )
    }

    /// Runs `declare_riding_out_races` over attempts that answer `outcomes` in turn (then Ok);
    /// returns its outcome and how many attempts it made.
    async fn ride_out(outcomes: Vec<lapin::Error>) -> (lapin::Result<()>, usize) {
        let made = Cell::new(0);
        let outcome = declare_riding_out_races(|| {
            let next = outcomes.get(made.get()).cloned();
            made.set(made.get() + 1);
            async move { next.map_or(Ok(()), Err) }
        })
        .await;
        (outcome, made.get())
    }

    #[test]
    fn every_queue_has_one_owner_that_publishes_it_and_a_consumer_of_another_service_or_its_own() {
        for queue in QUEUES {
            let publishers: Vec<_> = Service::ALL.into_iter().filter(|service| service.publishes().contains(&queue)).collect();
            assert_eq!(publishers.len(), 1, "{queue} is published by {publishers:?}");
            assert_eq!(owner(queue), Some(publishers[0]));
            assert!(Service::ALL.iter().any(|service| service.consumes().contains(&queue)), "nobody consumes {queue}");
        }
        assert_eq!(owner("order_created.dead_letter"), None);
        assert_eq!(consumer(ORDER_CREATED), Some(Service::Inventory));
        assert_eq!(consumer(ORDER_PROCESSED), Some(Service::Order));
        assert_eq!(owner(INVENTORY_RELEASE), Some(Service::Order), "the order service asks for a release");
    }

    #[test]
    fn a_service_may_configure_and_read_only_the_queues_it_publishes_to_or_consumes() {
        let rights = Service::Product.permissions();
        let pattern = |text: &str| regex::Regex::new(text).expect("a valid pattern");
        let (configure, read, write) = (pattern(&rights.configure), pattern(&rights.read), pattern(&rights.write));
        for queue in ["product_created", "product_deleted.dead_letter", "product_created.delayed"] {
            assert!(configure.is_match(queue) && read.is_match(queue), "{queue}");
        }
        for queue in ["order_created", "inventory_reserved", "product_created.other", "xproduct_created", "amq.default"] {
            assert!(!configure.is_match(queue) && !read.is_match(queue), "{queue}");
        }
        assert!(write.is_match("amq.default") && !write.is_match("amq.direct") && !write.is_match("order_created"));
        let inventory = pattern(&Service::Inventory.permissions().read);
        assert!(inventory.is_match("order_created") && inventory.is_match("inventory_reserved.delayed"));
        assert!(!inventory.is_match("order_processed"), "inventory neither publishes nor consumes order_processed");
    }

    #[tokio::test]
    async fn a_lost_race_is_declared_again_until_it_succeeds() {
        let (outcome, attempts) = ride_out(vec![lost_race(), lost_race()]).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn a_home_node_that_stays_down_fails_after_the_retries() {
        let (outcome, attempts) = ride_out(vec![lost_race(); 10]).await;
        assert!(outcome.is_err_and(|error| lost_a_declaration_race(&error)));
        assert_eq!(attempts, 1 + RACE_RETRIES as usize);
    }

    #[tokio::test]
    async fn any_other_refusal_fails_at_once() {
        for other in [
            // A queue declared with other arguments: retrying cannot help.
            refusal(
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
                "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-routing-key'",
            ),
            refusal(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND), "NOT_FOUND - no queue 'order_created' in vhost 'e2e'"),
            refusal(
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
                "ACCESS_REFUSED - access to queue 'order_created' refused",
            ),
            refusal(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED), "CONNECTION_FORCED - broker forced connection closure"),
        ] {
            let (outcome, attempts) = ride_out(vec![other.clone()]).await;
            assert!(outcome.is_err(), "{other:?}");
            assert_eq!(attempts, 1, "{other:?}");
        }
    }
}
