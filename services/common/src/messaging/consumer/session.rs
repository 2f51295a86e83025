//! One session of a consumer: a connection, the topology declared, the queue consumed with a
//! bounded prefetch and its deliveries handled concurrently, until the connection is lost or the
//! consumer is cancelled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use super::delivery::{DeliveryContext, handle_delivery};
use super::outage::OutageGate;
use super::{Attempt, ConsumerSettings};
use crate::health::ConsumerStatus;
use crate::messaging::{HandlerError, Message, topology};

pub(super) async fn consume_until_disconnected<M, H, F>(
    url: &str,
    settings: &ConsumerSettings,
    handler: &Arc<H>,
    gate: &Arc<OutageGate>,
    status: &ConsumerStatus,
    cancel: &CancellationToken,
) -> anyhow::Result<()>
where
    M: Message,
    H: Fn(M, Attempt) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    let connection_name = format!("{} ({})", settings.consumer_name, M::QUEUE);
    let connection = crate::messaging::connect(url, &connection_name).await.context("failed to connect to RabbitMQ")?;
    // Its own queue only: all its broker user may declare of what it consumes.
    topology::declare(&connection, &[M::QUEUE]).await.context("failed to declare the queue topology")?;
    let own_user = crate::messaging::broker_user_of(url);
    let own_user = own_user.as_str();
    let channel = connection.create_channel().await.context("failed to open a channel")?;
    // The prefetch bounds what this consumer holds unacknowledged (see `ConsumerSettings`);
    // global: false applies it per consumer, which on this one-consumer channel is the same.
    channel.basic_qos(settings.prefetch, BasicQosOptions::default()).await.context("failed to set the prefetch")?;
    // Retries and delayed copies are re-published on a channel of their own in confirm mode, so
    // the original is acknowledged only once its replacement is safely queued.
    let retry_channel = connection.create_channel().await.context("failed to open the retry channel")?;
    retry_channel.confirm_select(ConfirmSelectOptions::default()).await.context("failed to enable confirms")?;

    let consumer = channel
        .basic_consume(
            M::QUEUE.into(),
            settings.consumer_name.as_str().into(),
            // Manual acknowledgements (the default, `no_ack: false`): a message leaves the queue
            // only after its handler is done.
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("failed to consume {}", M::QUEUE))?;
    tracing::info!(queue = M::QUEUE, consumer = %settings.consumer_name, "consuming");
    status.set_consuming(true);

    let outcome = consumer
        .take_until(cancel.cancelled())
        .map_err(anyhow::Error::from)
        .try_for_each_concurrent(usize::from(settings.prefetch.max(1)), |delivery| {
            let handler = Arc::clone(handler);
            let (channel, retry_channel) = (channel.clone(), retry_channel.clone());
            async move {
                let context =
                    DeliveryContext { channel: &channel, retry_channel: &retry_channel, settings, gate, cancel, own_user };
                handle_delivery::<M, H, F>(delivery, &handler, &context).await;
                Ok(())
            }
        })
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), connection.close(200, "consumer stopping".into())).await;
    outcome.context("consumer stream failed")
}
