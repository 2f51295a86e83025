//! A TCP proxy between one service of a scenario and one of its dependencies (PostgreSQL,
//! MongoDB or RabbitMQ), to take that dependency away from that service only, the way a network
//! or a failover would: Toxiproxy's model, in the few lines the harness needs.
//!
//! Modes:
//! - `Pass`: bytes flow both ways.
//! - `Cut`: every open connection is reset and every new one is closed at once: the dependency
//!   is down (a crashed server, a failover in progress).
//! - `Blackhole`: connections stay open, but nothing reaches the other side and nothing comes
//!   back: the dependency hangs (a partition). A close on either side still closes the other, so
//!   a service that dies behind a blackhole is seen to die by the server.
//! - `HangNew`: open connections go on working; a new one is accepted and then hangs as in a
//!   blackhole (a server that stopped taking connections, or a lazily opened connection that
//!   meets a partition).
//!
//! A connection that lost bytes in a blackhole cannot carry its protocol any further: it is
//! reset when the mode changes again, as a partition that heals after a timeout would leave it.
//!
//! Every change of mode returns once it has taken effect: after `cut`, no connection is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Cut,
    Blackhole,
    HangNew,
}

/// One proxy: listens on 127.0.0.1 at a port of its own and forwards to `upstream`.
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Connections currently open through the proxy.
    open: Arc<AtomicUsize>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("failed to bind a proxy port")?;
        let port = listener.local_addr()?.port();
        let (mode, mode_watch) = watch::channel(Mode::Pass);
        let open = Arc::new(AtomicUsize::new(0));
        let acceptor = tokio::spawn(accept_loop(listener, upstream, mode_watch, Arc::clone(&open)));
        Ok(Self { port, mode, open, acceptor })
    }

    /// Rewrites `url` (`scheme://user:pass@host:port/rest`) to go through this proxy.
    pub fn url_through(&self, url: &str) -> anyhow::Result<String> {
        let mut parsed = url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
        parsed.set_host(Some("127.0.0.1")).map_err(|error| anyhow::anyhow!("{error}"))?;
        parsed.set_port(Some(self.port)).map_err(|()| anyhow::anyhow!("{url} cannot have a port"))?;
        Ok(parsed.to_string())
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Switches mode and returns once it holds: after `Cut`, every connection is closed and a new
    /// one is closed at once. (`Pass`, `Blackhole` and `HangNew` hold for every connection that
    /// reads the mode after this call.)
    pub async fn set(&self, mode: Mode) -> anyhow::Result<()> {
        self.mode.send_replace(mode);
        match mode {
            Mode::Cut => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while self.open_connections() > 0 {
                    if tokio::time::Instant::now() >= deadline {
                        bail!("{} connection(s) still open 10 s after the cut", self.open_connections());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // A new connection must be refused: closed (read 0) or reset (an error, possibly
                // already while connecting). Only data or silence would mean it is not cut.
                if let Ok(mut probe) = TcpStream::connect(("127.0.0.1", self.port)).await {
                    let mut byte = [0u8; 1];
                    let read = tokio::time::timeout(Duration::from_secs(5), probe.read(&mut byte)).await;
                    if !matches!(read, Ok(Ok(0) | Err(_))) {
                        bail!("a connection through the cut proxy was not closed: {read:?}");
                    }
                }
            }
            Mode::Pass | Mode::Blackhole | Mode::HangNew => {}
        }
        Ok(())
    }

    pub fn stop(self) {
        self.mode.send_replace(Mode::Cut);
        self.acceptor.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, mode: watch::Receiver<Mode>, open: Arc<AtomicUsize>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        if *mode.borrow() == Mode::Cut {
            reset(client);
            continue;
        }
        let hung = *mode.borrow() == Mode::HangNew;
        let (upstream, mode, open) = (upstream.clone(), mode.clone(), Arc::clone(&open));
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let _ = forward(client, &upstream, mode, hung).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Closes a connection with a reset, as a dead server's host would.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Forwards one connection until either side closes or the proxy is cut. A connection `hung`
/// from its start (opened under `HangNew`) never reaches the server.
async fn forward(client: TcpStream, upstream: &str, mut mode: watch::Receiver<Mode>, hung: bool) -> anyhow::Result<()> {
    if hung {
        return hang(client, mode).await;
    }
    let server = TcpStream::connect(upstream).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    let mut lost_bytes = false;
    loop {
        let current = *mode.borrow_and_update();
        let swallowing = current == Mode::Blackhole;
        if current == Mode::Cut || (lost_bytes && !swallowing) {
            reset(client_read.reunite(client_write)?);
            reset(server_read.reunite(server_write)?);
            return Ok(());
        }
        let forwarding = !swallowing;
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            read = client_read.read(&mut from_client) => {
                let count = read?;
                if count == 0 {
                    return Ok(());
                }
                // In a blackhole the bytes are swallowed; only a close still gets through.
                if forwarding {
                    server_write.write_all(&from_client[..count]).await?;
                } else {
                    lost_bytes = true;
                }
            }
            read = server_read.read(&mut from_server) => {
                let count = read?;
                if count == 0 {
                    return Ok(());
                }
                if forwarding {
                    client_write.write_all(&from_server[..count]).await?;
                } else {
                    lost_bytes = true;
                }
            }
        }
    }
}

/// Holds a connection opened under `HangNew` without ever reaching the server: what the client
/// sends is swallowed, nothing comes back. Reset once the mode changes.
async fn hang(mut client: TcpStream, mut mode: watch::Receiver<Mode>) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow_and_update() != Mode::HangNew {
                    reset(client);
                    return Ok(());
                }
            }
            read = client.read(&mut buffer) => {
                if read? == 0 {
                    return Ok(());
                }
            }
        }
    }
}
