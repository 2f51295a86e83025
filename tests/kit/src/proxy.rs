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
//! - `Slow(delay)`: every chunk read on either side is passed on `delay` after it was read, and
//!   none is lost: latency (a slow network, an overloaded server). Chunks of one connection wait
//!   their turn, so the delay also bounds its throughput. Back to `Pass`, waiting chunks go on at
//!   once and the connection keeps working.
//!
//! A connection that lost bytes in a blackhole cannot carry its protocol any further: it is
//! reset when the mode changes again, as a partition that heals after a timeout would leave it.
//!
//! Every change of mode returns once it has taken effect: after `cut`, no connection is open.
//! Counters (cumulative over the proxy's life) let a fault be verified in effect: connections
//! refused or reset, bytes swallowed, chunks delayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    Slow(Duration),
}

/// What a proxy has done to its connections, cumulative over its life.
#[derive(Debug, Default)]
struct Counters {
    /// Connections accepted and passed on (or hung, under `HangNew`).
    accepted: AtomicU64,
    /// New connections closed at once under `Cut`.
    refused: AtomicU64,
    /// Open connections reset by a cut (or after losing bytes in a blackhole).
    reset: AtomicU64,
    /// Bytes read from either side and never passed on (`Blackhole`, `HangNew`).
    swallowed_bytes: AtomicU64,
    /// Chunks passed on only after a `Slow` delay.
    delayed_chunks: AtomicU64,
    /// Bytes passed on, either way.
    forwarded_bytes: AtomicU64,
}

/// Adds to a counter.
fn count(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::SeqCst);
}

/// One proxy: listens on 127.0.0.1 at a port of its own and forwards to `upstream`.
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Connections currently open through the proxy.
    open: Arc<AtomicUsize>,
    /// What the proxy has done so far, shared with every connection's task.
    counters: Arc<Counters>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("failed to bind a proxy port")?;
        let port = listener.local_addr()?.port();
        let (mode, mode_watch) = watch::channel(Mode::Pass);
        let open = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(Counters::default());
        let acceptor = tokio::spawn(accept_loop(listener, upstream, mode_watch, Arc::clone(&open), Arc::clone(&counters)));
        Ok(Self { port, mode, open, counters, acceptor })
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

    /// The mode in effect.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Connections accepted and passed on (or hung under `HangNew`) so far.
    pub fn accepted_connections(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// New connections closed at once under `Cut` so far.
    pub fn refused_connections(&self) -> u64 {
        self.counters.refused.load(Ordering::SeqCst)
    }

    /// Open connections reset so far (by a cut, or after losing bytes in a blackhole).
    pub fn reset_connections(&self) -> u64 {
        self.counters.reset.load(Ordering::SeqCst)
    }

    /// Bytes read and never passed on so far (`Blackhole`, `HangNew`).
    pub fn swallowed_bytes(&self) -> u64 {
        self.counters.swallowed_bytes.load(Ordering::SeqCst)
    }

    /// Chunks passed on after a `Slow` delay so far.
    pub fn delayed_chunks(&self) -> u64 {
        self.counters.delayed_chunks.load(Ordering::SeqCst)
    }

    /// Bytes passed on so far, either way.
    pub fn forwarded_bytes(&self) -> u64 {
        self.counters.forwarded_bytes.load(Ordering::SeqCst)
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
            Mode::Pass | Mode::Blackhole | Mode::HangNew | Mode::Slow(_) => {}
        }
        Ok(())
    }

    pub fn stop(self) {
        self.mode.send_replace(Mode::Cut);
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    mode: watch::Receiver<Mode>,
    open: Arc<AtomicUsize>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        if *mode.borrow() == Mode::Cut {
            count(&counters.refused, 1);
            reset(client);
            continue;
        }
        count(&counters.accepted, 1);
        let hung = *mode.borrow() == Mode::HangNew;
        let (upstream, mode, open, counters) = (upstream.clone(), mode.clone(), Arc::clone(&open), Arc::clone(&counters));
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let _ = forward(client, &upstream, mode, hung, &counters).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Closes a connection with a reset, as a dead server's host would.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// What became of a chunk read from one side.
enum Passed {
    /// Written to the other side (at once, or after its delay).
    On,
    /// Swallowed by a blackhole: the connection has lost bytes.
    Lost,
    /// The proxy was cut (or dropped) meanwhile: the connection must be reset.
    Cut,
}

/// Passes one chunk, read at `read_at`, on to `writer` as the mode says; a `Slow` chunk waits
/// until `read_at + delay`, watching the mode meanwhile (a cut resets at once, `Pass` sends at
/// once, a blackhole swallows it).
async fn pass_on(
    chunk: &[u8],
    read_at: tokio::time::Instant,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    mode: &mut watch::Receiver<Mode>,
    counters: &Counters,
) -> anyhow::Result<Passed> {
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Cut => return Ok(Passed::Cut),
            Mode::Blackhole => {
                count(&counters.swallowed_bytes, chunk.len() as u64);
                return Ok(Passed::Lost);
            }
            // An open connection goes on working under `HangNew`.
            Mode::Pass | Mode::HangNew => {
                writer.write_all(chunk).await?;
                count(&counters.forwarded_bytes, chunk.len() as u64);
                return Ok(Passed::On);
            }
            Mode::Slow(delay) => {
                tokio::select! {
                    () = tokio::time::sleep_until(read_at + delay) => {
                        writer.write_all(chunk).await?;
                        count(&counters.delayed_chunks, 1);
                        count(&counters.forwarded_bytes, chunk.len() as u64);
                        return Ok(Passed::On);
                    }
                    changed = mode.changed() => {
                        if changed.is_err() {
                            return Ok(Passed::Cut);
                        }
                    }
                }
            }
        }
    }
}

/// Forwards one connection until either side closes or the proxy is cut. A connection `hung`
/// from its start (opened under `HangNew`) never reaches the server.
async fn forward(
    client: TcpStream,
    upstream: &str,
    mut mode: watch::Receiver<Mode>,
    hung: bool,
    counters: &Counters,
) -> anyhow::Result<()> {
    if hung {
        return hang(client, mode, counters).await;
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
            count(&counters.reset, 1);
            reset(client_read.reunite(client_write)?);
            reset(server_read.reunite(server_write)?);
            return Ok(());
        }
        let passed = tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                continue;
            }
            read = client_read.read(&mut from_client) => {
                let count = read?;
                if count == 0 {
                    return Ok(());
                }
                pass_on(&from_client[..count], tokio::time::Instant::now(), &mut server_write, &mut mode, counters).await?
            }
            read = server_read.read(&mut from_server) => {
                let count = read?;
                if count == 0 {
                    return Ok(());
                }
                pass_on(&from_server[..count], tokio::time::Instant::now(), &mut client_write, &mut mode, counters).await?
            }
        };
        match passed {
            Passed::On => {}
            // In a blackhole the bytes are swallowed; only a close still gets through.
            Passed::Lost => lost_bytes = true,
            Passed::Cut => {
                count(&counters.reset, 1);
                reset(client_read.reunite(client_write)?);
                reset(server_read.reunite(server_write)?);
                return Ok(());
            }
        }
    }
}

/// Holds a connection opened under `HangNew` without ever reaching the server: what the client
/// sends is swallowed, nothing comes back. Reset once the mode changes.
async fn hang(mut client: TcpStream, mut mode: watch::Receiver<Mode>, counters: &Counters) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow_and_update() != Mode::HangNew {
                    count(&counters.reset, 1);
                    reset(client);
                    return Ok(());
                }
            }
            read = client.read(&mut buffer) => {
                let read = read?;
                if read == 0 {
                    return Ok(());
                }
                count(&counters.swallowed_bytes, read as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A server that sends back whatever it reads, on each connection.
    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(count) => {
                                if stream.write_all(&buffer[..count]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        address
    }

    async fn proxy_to_echo() -> Proxy {
        Proxy::start(echo_server().await).await.expect("the proxy starts")
    }

    async fn connect(proxy: &Proxy) -> TcpStream {
        TcpStream::connect(("127.0.0.1", proxy.port)).await.expect("connect to the proxy")
    }

    /// Sends `message` and reads as many bytes back, within `patience`.
    async fn round_trip(stream: &mut TcpStream, message: &[u8], patience: Duration) -> anyhow::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut answer = vec![0u8; message.len()];
        tokio::time::timeout(patience, stream.read_exact(&mut answer)).await.context("no answer")??;
        Ok(answer)
    }

    /// Whether the connection is closed or reset (a read ends with 0 or an error) within 2 s.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "not within 5 s: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_passing_proxy_forwards_both_ways_and_counts_the_bytes() {
        let proxy = proxy_to_echo().await;
        let mut stream = connect(&proxy).await;
        assert_eq!(round_trip(&mut stream, b"hello", Duration::from_secs(2)).await.unwrap(), b"hello");
        assert_eq!(proxy.accepted_connections(), 1);
        eventually("both ways are counted as forwarded", || proxy.forwarded_bytes() == 10).await;
        assert_eq!((proxy.refused_connections(), proxy.swallowed_bytes(), proxy.delayed_chunks()), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_cut_resets_open_connections_and_refuses_new_ones_until_it_passes_again() {
        let proxy = proxy_to_echo().await;
        let mut open = connect(&proxy).await;
        round_trip(&mut open, b"before", Duration::from_secs(2)).await.unwrap();
        proxy.set(Mode::Cut).await.unwrap();
        assert!(closed(&mut open).await, "the open connection survived the cut");
        assert_eq!(proxy.reset_connections(), 1);
        let refused_before = proxy.refused_connections();
        assert!(refused_before >= 1, "the cut's own probe was not counted as refused");
        let mut new = connect(&proxy).await;
        assert!(closed(&mut new).await, "a new connection was not closed under the cut");
        assert_eq!(proxy.refused_connections(), refused_before + 1);
        proxy.set(Mode::Pass).await.unwrap();
        let mut after = connect(&proxy).await;
        assert_eq!(round_trip(&mut after, b"after", Duration::from_secs(2)).await.unwrap(), b"after");
    }

    #[tokio::test]
    async fn a_blackhole_swallows_bytes_both_ways_and_resets_the_connection_when_it_heals() {
        let proxy = proxy_to_echo().await;
        let mut stream = connect(&proxy).await;
        round_trip(&mut stream, b"before", Duration::from_secs(2)).await.unwrap();
        proxy.set(Mode::Blackhole).await.unwrap();
        assert!(
            round_trip(&mut stream, b"lost", Duration::from_millis(300)).await.is_err(),
            "an answer came through the blackhole"
        );
        eventually("the blackhole counts the swallowed bytes", || proxy.swallowed_bytes() == 4).await;
        proxy.set(Mode::Pass).await.unwrap();
        assert!(closed(&mut stream).await, "a connection that lost bytes was not reset when the blackhole healed");
        let mut new = connect(&proxy).await;
        assert_eq!(round_trip(&mut new, b"again", Duration::from_secs(2)).await.unwrap(), b"again");
    }

    #[tokio::test]
    async fn hang_new_keeps_open_connections_working_and_hangs_new_ones() {
        let proxy = proxy_to_echo().await;
        let mut open = connect(&proxy).await;
        round_trip(&mut open, b"one", Duration::from_secs(2)).await.unwrap();
        proxy.set(Mode::HangNew).await.unwrap();
        assert_eq!(round_trip(&mut open, b"two", Duration::from_secs(2)).await.unwrap(), b"two");
        let mut new = connect(&proxy).await;
        assert!(round_trip(&mut new, b"hung", Duration::from_millis(300)).await.is_err(), "a new connection got an answer");
        eventually("the hung connection's bytes are counted as swallowed", || proxy.swallowed_bytes() == 4).await;
        proxy.set(Mode::Pass).await.unwrap();
        assert!(closed(&mut new).await, "the hung connection was not reset when the mode changed");
        assert_eq!(round_trip(&mut open, b"three", Duration::from_secs(2)).await.unwrap(), b"three");
    }

    #[tokio::test]
    async fn slow_delays_every_chunk_both_ways_without_losing_a_byte_and_pass_makes_it_fast_again() {
        let delay = Duration::from_millis(200);
        let proxy = proxy_to_echo().await;
        let mut stream = connect(&proxy).await;
        round_trip(&mut stream, b"warm", Duration::from_secs(2)).await.unwrap();
        proxy.set(Mode::Slow(delay)).await.unwrap();

        // One round trip crosses the proxy twice: at least two delays.
        let clock = Instant::now();
        assert_eq!(round_trip(&mut stream, b"ping", Duration::from_secs(5)).await.unwrap(), b"ping");
        assert!(clock.elapsed() >= 2 * delay, "a round trip took {:?}, less than two delays", clock.elapsed());
        eventually("both chunks are counted as delayed", || proxy.delayed_chunks() == 2).await;

        // Many chunks, every byte back in order.
        let message: Vec<u8> = (0..50_000).map(|index| (index % 251) as u8).collect();
        assert_eq!(round_trip(&mut stream, &message, Duration::from_secs(30)).await.unwrap(), message);
        assert_eq!(proxy.swallowed_bytes(), 0);

        proxy.set(Mode::Pass).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let delayed = proxy.delayed_chunks();
        let clock = Instant::now();
        assert_eq!(round_trip(&mut stream, b"fast", Duration::from_secs(2)).await.unwrap(), b"fast");
        assert!(clock.elapsed() < delay, "back to Pass, a round trip still took {:?}", clock.elapsed());
        assert_eq!(proxy.delayed_chunks(), delayed, "chunks were delayed after the mode went back to Pass");
    }

    #[tokio::test]
    async fn a_chunk_waiting_in_slow_goes_on_at_once_when_the_mode_passes_again() {
        let proxy = proxy_to_echo().await;
        let mut stream = connect(&proxy).await;
        proxy.set(Mode::Slow(Duration::from_secs(30))).await.unwrap();
        stream.write_all(b"held").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.set(Mode::Pass).await.unwrap();
        let mut answer = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer))
            .await
            .expect("the held chunk did not go on when the mode passed again")
            .unwrap();
        assert_eq!(&answer, b"held");
    }
}
