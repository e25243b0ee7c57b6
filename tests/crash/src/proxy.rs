//! A TCP fault proxy for the PostgreSQL fault test (`tests/postgres_faults.rs`): it listens on
//! loopback, forwards every connection to the server, and injects seeded faults on the way.
//!
//! - **reset**: at a random moment (any chunk, either direction, mid-transaction or not) both
//!   sides of the connection are closed abortively (`SO_LINGER` 0: an RST);
//! - **commit_reset**: right after the client's `COMMIT` was forwarded, the client's side is
//!   reset while the server's side is only half-closed: the server reads the `COMMIT` and
//!   commits, the client never hears whether it did;
//! - **commit_reply_dropped**: the `COMMIT` is forwarded, the server's answer is read by the
//!   proxy and thrown away, then both sides are reset: the transaction committed for certain and
//!   the client sees a broken connection;
//! - **delay**: a chunk waits a few to tens of milliseconds before it is forwarded.
//!
//! `COMMIT` is found by following the client's side of the protocol message by message: the
//! untyped startup messages (and SSL/GSS requests), then typed messages, where a simple query
//! (`Q`) or a parse (`P`) whose text is `COMMIT` counts. (The synchronous `postgres` client sends
//! `COMMIT` as a simple query.) The connection must be plaintext (`sslmode=disable`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use oncely::backoff::JitterRng;

/// How often each fault happens.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// Chance that a forwarded chunk (either direction) resets the connection instead.
    pub reset: f64,
    /// Chance that a forwarded `COMMIT` is followed by a fault (`commit_reset` or
    /// `commit_reply_dropped`, half and half).
    pub commit: f64,
    /// Chance that a chunk is delayed before it is forwarded.
    pub delay: f64,
    /// The longest delay, in milliseconds (at least 2).
    pub max_delay_ms: u64,
}

/// What the proxy did, by kind.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused because the server could not be reached (while it restarts).
    pub upstream_down: AtomicU64,
    /// Random resets.
    pub reset: AtomicU64,
    /// Client side reset right after a `COMMIT` went to the server.
    pub commit_reset: AtomicU64,
    /// The server's answer to a `COMMIT` dropped, then the connection reset.
    pub commit_reply_dropped: AtomicU64,
    /// Delayed chunks.
    pub delay: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused because the server could not be reached.
    pub upstream_down: u64,
    /// Random resets.
    pub reset: u64,
    /// Client side reset right after a `COMMIT` went to the server.
    pub commit_reset: u64,
    /// The server's answer to a `COMMIT` dropped, then the connection reset.
    pub commit_reply_dropped: u64,
    /// Delayed chunks.
    pub delay: u64,
}

impl Counters {
    /// The counts so far.
    pub fn snapshot(&self) -> FaultCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultCounts {
            connections: get(&self.connections),
            upstream_down: get(&self.upstream_down),
            reset: get(&self.reset),
            commit_reset: get(&self.commit_reset),
            commit_reply_dropped: get(&self.commit_reply_dropped),
            delay: get(&self.delay),
        }
    }
}

/// A running proxy. Dropping it stops accepting; open connections end with their clients.
pub struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr, rates: FaultRates, seed: u64) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (s, c) = (stop.clone(), counters.clone());
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, upstream, rates, seed, s, c))?;
        Ok(Proxy { addr, stop, counters })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.counters.snapshot()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    rates: FaultRates,
    seed: u64,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        n += 1;
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let counters = counters.clone();
        let _ = std::thread::Builder::new().name(format!("fault-proxy-{n}")).spawn(move || {
            let _ = client.set_nonblocking(false);
            let _ = client.set_nodelay(true);
            let server = match TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) {
                Ok(s) => s,
                Err(_) => {
                    // The server is down (restarting): the client sees its connection closed.
                    counters.upstream_down.fetch_add(1, Ordering::Relaxed);
                    reset(&client);
                    return;
                }
            };
            let _ = server.set_nodelay(true);
            relay(client, server, rates, seed, n, counters);
        });
    }
}

/// One connection's shared state.
struct Link {
    client: TcpStream,
    server: TcpStream,
    /// A `COMMIT` was forwarded and its answer is to be dropped.
    drop_reply: AtomicBool,
    /// The connection was broken on purpose: both directions stop forwarding.
    broken: AtomicBool,
}

impl Link {
    fn break_both(&self) {
        self.broken.store(true, Ordering::SeqCst);
        reset(&self.client);
        reset(&self.server);
    }
}

/// Abortive close: RST instead of FIN once the last handle is gone; wakes a blocked reader.
fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
    let _ = s.shutdown(Shutdown::Both);
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    rates: FaultRates,
    seed: u64,
    n: u64,
    counters: Arc<Counters>,
) {
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { return };
    let link = Arc::new(Link {
        client: c2,
        server: s2,
        drop_reply: AtomicBool::new(false),
        broken: AtomicBool::new(false),
    });
    let back = {
        let (link, counters) = (link.clone(), counters.clone());
        let rng = JitterRng::for_key(seed, &format!("s2c-{n}"));
        std::thread::Builder::new()
            .name(format!("fault-proxy-{n}-back"))
            .spawn(move || server_to_client(server, &link, rates, rng, &counters))
    };
    let rng = JitterRng::for_key(seed, &format!("c2s-{n}"));
    client_to_server(client, &link, rates, rng, &counters);
    if let Ok(t) = back {
        let _ = t.join();
    }
}

fn delay(rates: FaultRates, rng: &mut JitterRng, counters: &Counters) {
    if rng.next_unit() < rates.delay {
        counters.delay.fetch_add(1, Ordering::Relaxed);
        let ms = 2 + (rng.next_unit() * (rates.max_delay_ms.max(2) - 1) as f64) as u64;
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn client_to_server(
    mut client: TcpStream,
    link: &Link,
    rates: FaultRates,
    mut rng: JitterRng,
    counters: &Counters,
) {
    let mut parser = Frontend::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if link.broken.load(Ordering::SeqCst) {
            break;
        }
        let commit = parser.feed(&buf[..n]);
        if rng.next_unit() < rates.reset {
            counters.reset.fetch_add(1, Ordering::Relaxed);
            link.break_both();
            return;
        }
        delay(rates, &mut rng, counters);
        if (&link.server).write_all(&buf[..n]).is_err() {
            break;
        }
        if commit && rng.next_unit() < rates.commit {
            if rng.next_unit() < 0.5 {
                // The server gets the COMMIT and then a FIN: it commits; the client is cut off
                // before any answer can reach it.
                counters.commit_reset.fetch_add(1, Ordering::Relaxed);
                link.broken.store(true, Ordering::SeqCst);
                reset(&link.client);
                let _ = link.server.shutdown(Shutdown::Write);
                return;
            }
            // The answer is dropped by the other direction, which then resets both sides.
            link.drop_reply.store(true, Ordering::SeqCst);
        }
    }
    // The client went away (or the server did): pass the end on.
    if !link.broken.load(Ordering::SeqCst) {
        let _ = link.server.shutdown(Shutdown::Write);
    }
}

fn server_to_client(
    mut server: TcpStream,
    link: &Link,
    rates: FaultRates,
    mut rng: JitterRng,
    counters: &Counters,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if link.broken.load(Ordering::SeqCst) {
            // After a commit_reset: the server's answer goes nowhere; read until it hangs up.
            continue;
        }
        if link.drop_reply.load(Ordering::SeqCst) {
            // The COMMIT's answer reached the proxy: it committed. The client never hears.
            counters.commit_reply_dropped.fetch_add(1, Ordering::Relaxed);
            link.break_both();
            return;
        }
        if rng.next_unit() < rates.reset {
            counters.reset.fetch_add(1, Ordering::Relaxed);
            link.break_both();
            return;
        }
        delay(rates, &mut rng, counters);
        if (&link.client).write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !link.broken.load(Ordering::SeqCst) {
        let _ = link.client.shutdown(Shutdown::Write);
    }
}

/// Follows the client's side of the PostgreSQL protocol (v3) to spot `COMMIT`.
#[derive(Default)]
struct Frontend {
    /// Past the startup message: messages have a type byte.
    typed: bool,
    /// Bytes of a message not complete yet.
    pending: Vec<u8>,
}

impl Frontend {
    /// The request codes of the untyped messages that are not a startup message.
    const SSL_REQUEST: u32 = 80_877_103;
    const GSS_REQUEST: u32 = 80_877_104;
    const CANCEL_REQUEST: u32 = 80_877_102;

    /// Takes the next chunk; whether it completed a message that commits.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        self.pending.extend_from_slice(chunk);
        let mut commit = false;
        loop {
            let header = if self.typed { 5 } else { 4 };
            if self.pending.len() < header {
                break;
            }
            let at = header - 4;
            let len = u32::from_be_bytes([
                self.pending[at],
                self.pending[at + 1],
                self.pending[at + 2],
                self.pending[at + 3],
            ]) as usize;
            let total = at + len.max(4);
            if self.pending.len() < total {
                break;
            }
            let message: Vec<u8> = self.pending.drain(..total).collect();
            if self.typed {
                commit |= is_commit(message[0], &message[5..]);
            } else if message.len() >= 8 {
                let code = u32::from_be_bytes([message[4], message[5], message[6], message[7]]);
                // A startup message (a protocol version, not a request code) ends the untyped part.
                self.typed = !matches!(code, Self::SSL_REQUEST | Self::GSS_REQUEST | Self::CANCEL_REQUEST);
            }
        }
        commit
    }
}

/// Whether a typed frontend message is a `COMMIT`: a simple query, or a parse of one.
fn is_commit(kind: u8, body: &[u8]) -> bool {
    let text = match kind {
        b'Q' => body,
        // Parse: statement name (NUL-terminated), then the query text.
        b'P' => match body.iter().position(|&b| b == 0) {
            Some(end) => &body[end + 1..],
            None => return false,
        },
        _ => return false,
    };
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(text);
    let text = text.trim().trim_end_matches(';').trim();
    text.eq_ignore_ascii_case("COMMIT") || text.eq_ignore_ascii_case("END")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn finds_commit_split_across_chunks() {
        let mut f = Frontend::default();
        let mut startup = Vec::new();
        startup.extend_from_slice(&8u32.to_be_bytes());
        startup.extend_from_slice(&Frontend::SSL_REQUEST.to_be_bytes());
        assert!(!f.feed(&startup));
        assert!(!f.typed);
        let mut s = Vec::new();
        s.extend_from_slice(&(8u32 + 5).to_be_bytes());
        s.extend_from_slice(&196_608u32.to_be_bytes());
        s.extend_from_slice(b"user\0");
        assert!(!f.feed(&s));
        assert!(f.typed);
        assert!(!f.feed(&typed(b'Q', b"BEGIN\0")));
        let commit = typed(b'Q', b"COMMIT\0");
        assert!(!f.feed(&commit[..3]));
        assert!(f.feed(&commit[3..]));
        assert!(f.feed(&typed(b'P', b"s1\0COMMIT\0\0\0")));
        assert!(!f.feed(&typed(b'Q', b"SELECT 'COMMIT'\0")));
    }
}
