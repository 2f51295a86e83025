//! Process emulation: a service run as a process of its own would be (its own runtime and
//! thread, killed as a whole), and the port a stopped service's system keeps, refusing
//! connections.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::oneshot;
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

/// A new listening socket on 127.0.0.1 at a free port, for an instance's first start. It has
/// `SO_REUSEPORT`, so that a [`RefusingPort`] can take the port over while it still listens (see
/// there).
pub(super) fn listen_on_a_free_port() -> anyhow::Result<std::net::TcpListener> {
    let socket = port_socket()?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).context("failed to bind a port for a service")?;
    socket.listen(1024).context("failed to listen on a service's port")?;
    Ok(socket.into())
}

fn port_socket() -> anyhow::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_port(true).context("failed to set SO_REUSEPORT")?;
    socket.set_cloexec(true)?;
    Ok(socket)
}

/// A stopped or killed instance's port, held by the system: a socket bound to it that does not
/// listen, so every connection to the port is refused, as to a dead process's port (nginx then
/// tries the service's next replica and answers 502, which the gateway maps to its JSON 503),
/// and nobody else can bind the port meanwhile. Starting the instance again listens on this very
/// socket, so there is no moment at which the port is free.
///
/// The socket has `SO_REUSEPORT` and, unlike a listener, no `SO_REUSEADDR`: Linux lets a socket
/// with `SO_REUSEADDR` bind a port whose other sockets all have it and none listens, so with it
/// anyone's `bind` (Rust's std sets it) would take the port. `SO_REUSEPORT` on both this socket
/// and the instance's listener lets this one bind while the listener still listens (no gap
/// between the two), and TIME_WAIT connections left by the listener do not stand in its way;
/// only a socket that sets `SO_REUSEPORT` itself could share the port.
pub(super) struct RefusingPort {
    socket: socket2::Socket,
}

impl RefusingPort {
    /// Binds 127.0.0.1:`port` without listening (the listener there may still be open).
    pub(super) fn hold(port: u16) -> anyhow::Result<Self> {
        let socket = port_socket()?;
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
            .with_context(|| format!("failed to hold port {port} for a stopped instance"))?;
        Ok(Self { socket })
    }

    /// Listens on the held port again, for the instance's next start.
    pub(super) fn listen(self) -> anyhow::Result<std::net::TcpListener> {
        self.socket.listen(1024).context("failed to listen again on a stopped instance's port")?;
        Ok(self.socket.into())
    }
}

/// Waits until connections to 127.0.0.1:`port` are refused: every descriptor of the instance's
/// listener is closed (the system's, and the duplicate the service served on, which a killed
/// service's runtime drops just after it is gone).
pub(super) async fn wait_until_port_refuses(port: u16, patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match port_refuses(port).await {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                bail!("port {port} still does not refuse connections after {patience:?}: {error:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Ok if a connection to 127.0.0.1:`port` is refused; else what happened instead.
pub(super) async fn port_refuses(port: u16) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Ok(Err(error)) => bail!("connecting to port {port} failed otherwise than refused: {error}"),
        Ok(Ok(_)) => bail!("a connection to port {port} was accepted"),
        Err(_) => bail!("a connection to port {port} hung for 2 s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(port: u16) -> bool {
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_ok()
    }

    fn refused(port: u16) -> bool {
        matches!(
            std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused
        )
    }

    /// Whether a socket with `SO_REUSEADDR` (as Rust's std listeners have) can bind `port`.
    fn anyone_can_bind(port: u16) -> bool {
        let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        other.set_reuse_address(true).unwrap();
        other.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).is_ok()
    }

    #[test]
    fn a_held_port_refuses_connections_nobody_can_bind_it_and_it_listens_again_on_restart() {
        let listener = listen_on_a_free_port().unwrap();
        let port = listener.local_addr().unwrap().port();

        // Held while the listener still listens: no moment at which the port is free.
        let held = RefusingPort::hold(port).unwrap();
        assert!(accepts(port), "the listener stopped listening when the port was held");
        drop(listener);
        assert!(refused(port), "a held port did not refuse a connection");
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err(), "std could bind a held port");
        assert!(!anyone_can_bind(port), "a socket with SO_REUSEADDR could bind a held port");

        let listener = held.listen().unwrap();
        assert_eq!(listener.local_addr().unwrap().port(), port);
        assert!(accepts(port), "the port does not listen again after the restart");
    }

    #[test]
    fn a_port_is_held_even_with_the_time_wait_of_connections_the_service_closed() {
        let listener = listen_on_a_free_port().unwrap();
        let port = listener.local_addr().unwrap().port();
        // A connection closed by the server first (as after a graceful stop) leaves a TIME_WAIT.
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        drop(listener.accept().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        drop(client);
        drop(listener);
        let held = RefusingPort::hold(port).expect("the port is held despite the TIME_WAIT");
        assert!(refused(port));
        assert!(accepts_after_listening(held, port));
    }

    fn accepts_after_listening(held: RefusingPort, port: u16) -> bool {
        let _listener = held.listen().unwrap();
        accepts(port)
    }

    #[tokio::test]
    async fn waiting_for_a_port_to_refuse_fails_while_anything_still_listens_on_it() {
        let listener = listen_on_a_free_port().unwrap();
        let port = listener.local_addr().unwrap().port();
        let _held = RefusingPort::hold(port).unwrap();
        // The duplicate a service would serve on keeps the socket listening.
        let duplicate = listener.try_clone().unwrap();
        drop(listener);
        let error = wait_until_port_refuses(port, Duration::from_millis(300)).await.unwrap_err();
        assert!(format!("{error:#}").contains("accepted"), "{error:#}");
        drop(duplicate);
        wait_until_port_refuses(port, Duration::from_secs(2)).await.unwrap();
    }
}
