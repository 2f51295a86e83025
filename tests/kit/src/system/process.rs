//! Process emulation: a service run as a process of its own would be (its own runtime and
//! thread, killed as a whole), and the closed door a stopped service's socket keeps.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::Instrument as _;

use super::addresses::*;

/// A service's configuration, ready to be built in the service's own runtime.
pub(super) enum ServiceConfig {
    User(user_service::Config),
    Product(product_service::Config),
    Inventory(inventory_service::Config),
    Order(order_service::Config),
}

impl ServiceConfig {
    /// Builds the service (telling `ready` whether that worked) and serves until `shutdown`.
    pub(super) async fn build_and_run(
        self,
        shutdown: WaitForCancellationFutureOwned,
        ready: oneshot::Sender<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        macro_rules! build_and_run {
            ($service:ident, $config:expr) => {{
                match $service::build($config).await {
                    Ok(application) => {
                        let _ = ready.send(Ok(()));
                        application.run_until_stopped(shutdown).await
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error.context(concat!(stringify!($service), " failed to start"))));
                        Ok(())
                    }
                }
            }};
        }
        match self {
            ServiceConfig::User(config) => build_and_run!(user_service, config),
            ServiceConfig::Product(config) => build_and_run!(product_service, config),
            ServiceConfig::Inventory(config) => build_and_run!(inventory_service, config),
            ServiceConfig::Order(config) => build_and_run!(order_service, config),
        }
    }
}

/// A service running as if it were a process of its own: in a tokio runtime of its own, on a
/// thread of its own, so that killing it drops every task it spawned (HTTP connections,
/// consumers, the relay, mid-message), as the end of a process would. A task of the harness's
/// runtime could only be aborted alone, leaving what it spawned running.
pub(super) struct RunningService {
    /// Cancelled to ask the service to stop; its `run_until_stopped` resolves when it has.
    stop: CancellationToken,
    /// Sent to kill the service: its runtime is then shut down without waiting for anything.
    kill: oneshot::Sender<()>,
    /// The service's outcome, once its runtime is gone.
    finished: oneshot::Receiver<anyhow::Result<()>>,
}

impl RunningService {
    pub(super) async fn start(instance: Instance, config: ServiceConfig, span: tracing::Span) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let (kill, killed) = oneshot::channel::<()>();
        let (finish, finished) = oneshot::channel();
        let (ready, started) = oneshot::channel();
        std::thread::Builder::new().name(instance.to_string()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = finish.send(Err(anyhow::Error::from(error).context("failed to build the service's runtime")));
                    return;
                }
            };
            let outcome = runtime.block_on(async move {
                let service = tokio::spawn(config.build_and_run(shutdown, ready).instrument(span));
                tokio::select! {
                    joined = service => joined.unwrap_or_else(|error| Err(anyhow::anyhow!("the service panicked: {error}"))),
                    _ = killed => Err(anyhow::anyhow!("killed")),
                }
            });
            // Drops every task still in the runtime, wherever it is, without waiting for any.
            runtime.shutdown_background();
            let _ = finish.send(outcome);
        })?;
        started.await.context("the service's thread ended before the service started")??;
        Ok(Self { stop, kill, finished })
    }

    /// Asks the service to stop and waits until it has (at most `patience`).
    pub(super) async fn stop_gracefully(self, patience: Duration) -> anyhow::Result<()> {
        self.stop.cancel();
        match tokio::time::timeout(patience, self.finished).await {
            Ok(Ok(outcome)) => outcome.context("the service failed while stopping"),
            Ok(Err(_)) => bail!("the service's thread ended without an outcome"),
            Err(_) => bail!("the service did not stop within {patience:?}"),
        }
    }

    pub(super) async fn kill(self) {
        let _ = self.kill.send(());
        let _ = self.finished.await;
    }
}

/// A stopped service's socket, kept listening by the system: it accepts each connection and
/// closes it at once, as a dead process would have (nginx turns that into its 503).
pub(super) struct ClosedDoor {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ClosedDoor {
    pub(super) fn open_on(listener: &std::net::TcpListener) -> anyhow::Result<Self> {
        let duplicate = listener.try_clone()?;
        duplicate.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(duplicate)?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => drop(accepted),
                }
            }
        });
        Ok(Self { stop, task })
    }

    pub(super) async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
