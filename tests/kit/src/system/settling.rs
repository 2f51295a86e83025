//! Settling: whatever the system is still doing (queues, messages in flight, outboxes), and
//! waiting until it is idle.

use std::time::Duration;

use anyhow::{Context, bail};

use super::addresses::*;
use super::*;

impl System {
    /// The events waiting in `service`'s outbox (product or order), as `queue` names.
    pub async fn outbox_events(&self, service: ServiceName) -> anyhow::Result<Vec<String>> {
        use common::messaging::document_outbox::OUTBOX_FIELD;
        use futures::TryStreamExt as _;
        let (database, collection) = match service {
            ServiceName::Product => ("products", "products"),
            ServiceName::Order => ("orders", "orders"),
            other => bail!("the {other:?} service keeps no outbox"),
        };
        let documents: Vec<bson::Document> = self
            .mongodb
            .database(&self.mongodb_database(database))
            .collection::<bson::Document>(collection)
            .find(bson::doc! { format!("{OUTBOX_FIELD}.id"): { "$exists": true } })
            .projection(bson::doc! { OUTBOX_FIELD: 1 })
            .await?
            .try_collect()
            .await
            .with_context(|| format!("failed to read the outbox of {collection}"))?;
        Ok(documents
            .iter()
            .filter_map(|document| document.get_array(OUTBOX_FIELD).ok())
            .flatten()
            .map(|event| event.as_document().and_then(|event| event.get_str("queue").ok()).unwrap_or("(no queue)").to_owned())
            .collect())
    }

    /// Events stored in the MongoDB services' outboxes and not yet published, one line per
    /// service that has any (empty when there are none).
    pub async fn pending_outbox_events(&self) -> anyhow::Result<Vec<String>> {
        let mut pending = Vec::new();
        for service in [ServiceName::Product, ServiceName::Order] {
            let events = self.outbox_events(service).await?;
            if !events.is_empty() {
                pending.push(format!("{service:?} outbox: {events:?}"));
            }
        }
        Ok(pending)
    }

    /// Whatever the system is still doing, one line per thing: messages ready in a queue or its
    /// delay queue (counted exactly), messages a consumer holds, events waiting in an outbox. Empty
    /// when the system is idle.
    pub async fn unsettled_work(&self) -> anyhow::Result<Vec<String>> {
        let mut work = Vec::new();
        for queue in common::messaging::topology::QUEUES {
            // A message in a queue's delay queue is work postponed, not done.
            for queue in [queue.to_owned(), common::messaging::topology::delay_queue(queue)] {
                let ready = self.vhost.ready_messages(&queue).await?;
                if ready > 0 {
                    work.push(format!("{queue}: {ready} ready"));
                }
            }
        }
        for (queue, count) in crate::logs::messages_in_flight(&self.id) {
            work.push(format!("{queue}: {count} being handled"));
        }
        work.extend(self.pending_outbox_events().await?);
        Ok(work)
    }

    /// Waits until the system has settled: nothing ready in any queue, no message being handled
    /// and no event waiting in an outbox, seen twice in a row a quarter of a second apart (a
    /// message on its way from the broker to a consumer is in none of those places for an
    /// instant; it cannot stay there that long).
    pub async fn wait_until_settled(&self, patience: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut idle_before = false;
        loop {
            let work = self.unsettled_work().await?;
            if work.is_empty() && idle_before {
                return Ok(());
            }
            idle_before = work.is_empty();
            if tokio::time::Instant::now() >= deadline && !work.is_empty() {
                bail!("the system did not settle within {patience:?}; still going on: {}", work.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
