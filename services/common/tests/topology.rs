//! The queue topology against a real RabbitMQ, declared the way a system starts: every consumer
//! and publisher of every service declares it at once, on connections of their own, into a
//! vhost where none of it exists yet.
//!
//! RabbitMQ 3.10 answers a declaration that races another one for the same classic queue with
//! `NOT_FOUND - home node ... of durable queue ... is down or inaccessible` while the winner's
//! queue process is still starting. `topology::declare` must ride that out instead of failing the
//! session (which a consumer then logs as a broker in trouble, and retries seconds later).
//!
//! The broker is `E2E_RABBITMQ_URL` with its management API at `E2E_RABBITMQ_MANAGEMENT_URL`.

use common::messaging::topology::{self, QUEUES, dead_letter_queue, delay_queue};
use futures::future::join_all;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use shop_testkit_base::TestVirtualHost;

/// As many declarers as a system has at start-up (the four services' consumers and publishers
/// number about fifteen), several rounds, each in a new vhost.
const DECLARERS: usize = 16;
const ROUNDS: usize = 8;

#[tokio::test]
async fn declarers_starting_together_in_a_new_vhost_all_succeed() {
    for round in 0..ROUNDS {
        let vhost = TestVirtualHost::create("topology-race").await;
        let outcomes = join_all((0..DECLARERS).map(|declarer| {
            let url = vhost.amqp_url.clone();
            async move {
                let connection = common::messaging::connect(&url, &format!("declarer {declarer}")).await?;
                let outcome = topology::declare(&connection, &QUEUES).await;
                let _ = connection.close(200, "done".into()).await;
                outcome.map_err(anyhow::Error::from)
            }
        }))
        .await;
        let failures: Vec<String> = outcomes.into_iter().filter_map(Result::err).map(|error| format!("{error:#}")).collect();
        assert!(failures.is_empty(), "round {round}: {} of {DECLARERS} declarers failed: {failures:#?}", failures.len());

        // And what they declared is all there, durable.
        let (connection, channel) = vhost.channel().await;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        for queue in QUEUES {
            for name in [queue.to_owned(), dead_letter_queue(queue), delay_queue(queue)] {
                channel
                    .queue_declare(name.as_str().into(), passive, FieldTable::default())
                    .await
                    .unwrap_or_else(|error| panic!("round {round}: queue {name} is missing: {error}"));
            }
        }
        let _ = connection.close(200, "done".into()).await;
        vhost.delete().await;
    }
}
