//! The one way a service of the shop runs: what each service's `Application` is made of.
//!
//! A service builds a [`Service`] (which binds its listener and holds its `/ready` checks and
//! `/metrics` registry), tells it its routes, its stores, its broker consumers and outbox relay
//! and any other background work, then runs it until the shutdown future resolves:
//!
//! ```text
//! let mut service = Service::bind(SERVICE_NAME, &config.http).await?;
//! service.postgres(pool.clone());                    // checked by /ready, closed at the end
//! let publisher = service.publisher(&config.rabbitmq_url, topology::Service::Order);
//! service.consume::<OrderCreated, _, _>(&config.rabbitmq_url, service.consumer_settings("order_created"), handler);
//! service.route(router(state, service.readiness(), service.metrics()));
//! service.run_until_stopped(common::shutdown::signal()).await
//! ```
//!
//! Stopping is one bounded drain, the same for every service: when the shutdown future resolves
//! the listener stops taking connections and requests in flight may finish; then the background
//! work (consumers, relay) is cancelled and may finish what it holds; all of it within
//! [`HttpSettings::drain_limit`] of the shutdown (10 s by default). Whatever is still running
//! then is abandoned: a request's connection is closed, a task is aborted. Nothing is lost that
//! way: an unacknowledged delivery is delivered again, an event still in an outbox is published
//! by the next relay, and a client whose request was cut retries it (with its `Idempotency-Key`
//! for an order). Last, the connections to the stores and the broker are closed, each within
//! [`CLOSE_LIMIT`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::HttpSettings;
use crate::health::Readiness;
use crate::messaging::{Attempt, ConsumerSettings, HandlerError, Message, OutboxRelay, OutboxStore, Publisher};
use crate::metrics::Metrics;

/// How long closing one connection (a pool, a client, the publisher) may take once the drain is
/// over. Closing waits for what is still checked out; anything abandoned by the drain may hold
/// a connection for ever.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Background work: started when the service runs, told to stop through its token.
type Task = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// A service being put together, then run. See the module documentation.
pub struct Service {
    name: &'static str,
    listener: TcpListener,
    port: u16,
    router: Router,
    drain_limit: Duration,
    readiness: Readiness,
    metrics: Metrics,
    background: Vec<Task>,
    /// Run in order once the drain is over, each within [`CLOSE_LIMIT`].
    closers: Vec<(&'static str, BoxFuture<'static, ()>)>,
}

impl Service {
    /// Binds the service's listener (port 0 picks a free port: read it back with [`Self::port`]).
    pub async fn bind(name: &'static str, http: &HttpSettings) -> anyhow::Result<Self> {
        let listener = crate::http::bind(http).await?;
        let port = listener.local_addr().context("failed to read the bound address")?.port();
        let (readiness, metrics) = (Readiness::default(), Metrics::new());
        metrics.watch_readiness(readiness.clone(), name);
        Ok(Self {
            name,
            listener,
            port,
            router: Router::new(),
            drain_limit: http.drain_limit,
            readiness,
            metrics,
            background: Vec::new(),
            closers: Vec::new(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What `/ready` checks; stores and consumers register themselves here.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The service's `/metrics` registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The service's routes: `/health`, `/ready` and `/metrics` come with
    /// [`crate::health::router`] and [`crate::http::finish`], which the router must include.
    pub fn route(&mut self, router: Router) {
        self.router = router;
    }

    /// Runs `task` in the background while the service runs. It must return soon after its
    /// token is cancelled; one that does not is aborted at the end of the drain.
    pub fn spawn<T, F>(&mut self, task: T)
    where
        T: FnOnce(CancellationToken) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.background.push(Box::new(move |cancel| Box::pin(task(cancel))));
    }

    /// Closes something once the drain is over (within [`CLOSE_LIMIT`]), after what was
    /// registered before it.
    pub fn on_stop(&mut self, what: &'static str, close: impl Future<Output = ()> + Send + 'static) {
        self.closers.push((what, Box::pin(close)));
    }

    /// The service's broker connection for publishing as `speaker` (declaring its queues),
    /// checked by `/ready`, closed at the end.
    pub fn publisher(&mut self, rabbitmq_url: &str, speaker: crate::messaging::topology::Service) -> Arc<Publisher> {
        let publisher = Arc::new(Publisher::new(rabbitmq_url, format!("{} publisher", self.name)).declaring(speaker.declares()));
        // "broker": the publisher's connection works (or can be made).
        let checked = Arc::clone(&publisher);
        self.readiness.check("broker", move || {
            let publisher = Arc::clone(&checked);
            async move { publisher.check().await }
        });
        let closing = Arc::clone(&publisher);
        self.on_stop("the broker connection", async move { closing.close().await });
        publisher
    }

    /// Settings for a consumer of `queue`, named after the service and the queue, reporting to
    /// the service's `/ready` and `/metrics`; adjust what the queue needs before [`Self::consume`].
    pub fn consumer_settings(&self, queue: &str) -> ConsumerSettings {
        ConsumerSettings {
            readiness: Some(self.readiness.clone()),
            metrics: Some(self.metrics.clone()),
            ..ConsumerSettings::new(format!("{}.{queue}", self.name))
        }
    }

    /// Consumes `M::QUEUE` in the background with `handler` (see [`crate::messaging::consumer`]).
    pub fn consume<M, H, F>(&mut self, rabbitmq_url: &str, settings: ConsumerSettings, handler: H)
    where
        M: Message,
        H: Fn(M, Attempt) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let url = rabbitmq_url.to_owned();
        self.spawn(move |cancel| crate::messaging::consumer::consume::<M, H, F>(url, settings, handler, cancel));
    }

    /// Runs an outbox relay in the background, recording into the service's `/metrics`.
    pub fn relay<S: OutboxStore>(&mut self, relay: OutboxRelay<S>) {
        let relay = relay.with_metrics(self.metrics.clone());
        self.spawn(move |cancel| relay.run(cancel));
    }

    /// Serves until `shutdown` resolves, then drains (see the module documentation).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { name, listener, router, drain_limit, background, closers, .. } = self;
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for task in background {
            // In the span the service was started in, so the tasks' logs keep its context.
            tasks.spawn(task(cancel.clone()).in_current_span());
        }

        let stopping = CancellationToken::new();
        let watcher = tokio::spawn({
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                stopping.cancel();
                Instant::now()
            }
        });
        let serving = crate::http::serve(listener, router, stopping.clone().cancelled_owned());
        let served = tokio::select! {
            served = serving => served,
            () = async { stopping.cancelled().await; tokio::time::sleep(drain_limit).await } => {
                tracing::warn!(service = name, limit = ?drain_limit, "requests still in flight at the end of the drain; closing their connections");
                Ok(())
            }
        };
        // The server also ends when it fails; then nothing has asked to stop, so stop here.
        let stopped_at = if stopping.is_cancelled() {
            watcher.await.unwrap_or_else(|_| Instant::now())
        } else {
            watcher.abort();
            Instant::now()
        };
        let deadline = stopped_at + drain_limit;

        cancel.cancel();
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(finished) = tasks.join_next().await {
                if let Err(error) = finished {
                    tracing::error!(service = name, %error, "a background task failed");
                }
            }
        })
        .await;
        if drained.is_err() {
            // A task stuck in a network call (a broker that stopped answering without closing
            // the connection) must not keep the process from stopping; what it held comes back.
            tracing::warn!(service = name, limit = ?drain_limit, "background tasks still running at the end of the drain; aborting them");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        for (what, close) in closers {
            if tokio::time::timeout(CLOSE_LIMIT, close).await.is_err() {
                tracing::warn!(service = name, what, limit = ?CLOSE_LIMIT, "closing took too long; left behind");
            }
        }
        served
    }
}

#[cfg(feature = "postgres")]
impl Service {
    /// The service's PostgreSQL pool: checked by `/ready`, closed at the end.
    pub fn postgres(&mut self, pool: sqlx::PgPool) {
        self.readiness.postgres(pool.clone());
        let watched = pool.clone();
        self.metrics.watch_pool("postgres", Arc::new(move || crate::postgres::usage(&watched)));
        self.on_stop("the PostgreSQL pool", async move { pool.close().await });
    }
}

#[cfg(feature = "mongodb")]
impl Service {
    /// The service's MongoDB client (see [`crate::mongo::connect`]): checked by `/ready`, its pool
    /// reported in `/metrics`, shut down at the end.
    pub fn mongodb(&mut self, connected: crate::mongo::Connected) {
        let crate::mongo::Connected { client, pool } = connected;
        self.readiness.mongodb(client.clone());
        self.metrics.watch_pool("mongodb", Arc::new(move || pool.usage()));
        // Immediate: the drain is over, so nothing still needs the connections.
        self.on_stop("the MongoDB client", async move { client.shutdown().immediate(true).await });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Set when dropped: a task that was aborted drops what it holds.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    async fn service(drain_limit: Duration) -> Service {
        let http = HttpSettings { host: "127.0.0.1".into(), port: 0, inherited_listener: None, drain_limit };
        Service::bind("test-service", &http).await.expect("bind")
    }

    /// A stop that never completes would hang the test; this turns the hang into a failure. Far
    /// longer than any drain limit below: it measures nothing.
    const HANG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_stop_ends_at_the_drain_limit_even_when_a_request_and_a_task_never_finish() {
        let mut service = service(Duration::from_millis(300)).await;
        let entered = Arc::new(tokio::sync::Notify::new());
        let handler_entered = Arc::clone(&entered);
        service.route(Router::new().route(
            "/forever",
            get(move || {
                let entered = Arc::clone(&handler_entered);
                async move {
                    entered.notify_one();
                    std::future::pending::<()>().await
                }
            }),
        ));
        let task_dropped = Arc::new(AtomicBool::new(false));
        let task_flag = DropFlag(Arc::clone(&task_dropped));
        service.spawn(move |_ignored_cancel| async move {
            let _held = task_flag;
            std::future::pending::<()>().await
        });
        let closed = Arc::new(AtomicBool::new(false));
        let closed_flag = Arc::clone(&closed);
        service.on_stop("a connection", async move { closed_flag.store(true, Ordering::SeqCst) });

        let address = format!("127.0.0.1:{}", service.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(service.run_until_stopped(async move { stopped.await.unwrap_or(()) }));
        let mut client = tokio::net::TcpStream::connect(&address).await.unwrap();
        client.write_all(b"GET /forever HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
        entered.notified().await;
        stop.send(()).unwrap();

        let result = tokio::time::timeout(HANG, running).await.expect("the service stopped").expect("no panic");
        assert!(result.is_ok(), "{result:?}");
        assert!(task_dropped.load(Ordering::SeqCst), "the task that ignored its stop was aborted");
        assert!(closed.load(Ordering::SeqCst), "the connections were closed after the drain");
        // The abandoned request got no answer; its connection is closed once the runtime that
        // served it drops its task (here, at the end of the test).
        drop(client);
    }

    #[tokio::test]
    async fn work_that_stops_when_asked_finishes_before_the_connections_close_and_in_flight_requests_are_answered() {
        let mut service = service(Duration::from_secs(30)).await;
        let release = Arc::new(tokio::sync::Notify::new());
        let (entered_tx, entered_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let handler_release = Arc::clone(&release);
        service.route(Router::new().route(
            "/slow",
            get(move || {
                let (release, entered) = (Arc::clone(&handler_release), entered_tx.clone());
                async move {
                    let _ = entered.send(());
                    release.notified().await;
                    "done"
                }
            }),
        ));
        let finished = Arc::new(AtomicBool::new(false));
        let task_finished = Arc::clone(&finished);
        service.spawn(move |cancel| async move {
            cancel.cancelled().await;
            task_finished.store(true, Ordering::SeqCst);
        });
        let finished_before_close = Arc::new(AtomicBool::new(false));
        let (seen, closing) = (Arc::clone(&finished), Arc::clone(&finished_before_close));
        service.on_stop("a connection", async move { closing.store(seen.load(Ordering::SeqCst), Ordering::SeqCst) });

        let address = format!("127.0.0.1:{}", service.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(service.run_until_stopped(async move { stopped.await.unwrap_or(()) }));
        let mut client = tokio::net::TcpStream::connect(&address).await.unwrap();
        client.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
        let mut entered = entered_rx;
        entered.recv().await.unwrap();
        stop.send(()).unwrap();
        // The request in flight when the stop came is still answered.
        release.notify_one();
        let mut answer = String::new();
        tokio::time::timeout(HANG, client.read_to_string(&mut answer)).await.expect("answered").unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");

        tokio::time::timeout(HANG, running).await.expect("the service stopped").unwrap().unwrap();
        assert!(finished.load(Ordering::SeqCst), "the task finished when asked");
        assert!(finished_before_close.load(Ordering::SeqCst), "the connections were closed after the task finished");
    }
}
