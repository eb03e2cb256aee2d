//! DNS over TCP (RFC 7766): each message is preceded by its length in two bytes; a client may
//! send several queries on one connection without waiting (pipelining; answered in order).
//! Answers can use the full 65535 bytes.
//!
//! Connections are kept in a [`Table`] shared by all listeners, with the limits of
//! [`TcpLimits`] (RFC 7766 6.2.3, as NSD and Knot do): a connection that has not had a query
//! answered for the idle timeout is closed; when the table is full, or the new connection's
//! address already has its share ([`TcpLimits::per_address`]), the oldest idle connection (of
//! that address, or of all) is closed to make room, so a new client is never refused because
//! others sit on connections. Only a query that gets an answer counts as activity: trickled
//! bytes, zero-length frames and messages that are not queries do not keep a connection open.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, warn};
use sdwan_agent_core::framing::TcpFramer;
use sdwan_agent_core::Transport;

use super::TcpLimits;
use crate::store::{answer, ZoneStore};

/// Largest query accepted over TCP; a longer one closes the connection (no real DNS query is
/// anywhere near this).
pub const QUERY_MAX: usize = 4096;
/// Largest TCP answer (the 2-byte length prefix allows no more).
pub const ANSWER_MAX: usize = 65535;
/// Stack of a connection thread: buffers live on the heap, the answer path is shallow.
const CONNECTION_STACK: usize = 256 * 1024;

/// When a connection last had a query answered (or was accepted): written by the
/// connection's thread, read by the accept thread when it picks the oldest idle connection.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch`, wrapping (32 bits: MIPS32 and ARMv7 have no 64-bit
    /// atomics). Only ages are compared, and an idle connection is closed long before an age
    /// reaches the 24 days where the wrap would matter.
    ms: AtomicU32,
}

impl Activity {
    /// Activity at `now`, measured from `epoch` (the same for every connection compared).
    pub fn new(epoch: Instant, now: Instant) -> Activity {
        let a = Activity {
            epoch,
            ms: AtomicU32::new(0),
        };
        a.touch(now);
        a
    }

    /// Records activity at `now`.
    pub fn touch(&self, now: Instant) {
        self.ms
            .store(wrapping_ms(self.epoch, now), Ordering::Relaxed);
    }

    /// Milliseconds since the last activity, seen at `now`: negative when the connection's
    /// thread recorded an activity after `now`. Ages are within 2^31 ms either way, so the
    /// wrapping difference read as signed is the age.
    fn age_ms(&self, now: Instant) -> i32 {
        wrapping_ms(self.epoch, now).wrapping_sub(self.ms.load(Ordering::Relaxed)) as i32
    }
}

/// `now - epoch` in milliseconds, modulo 2^32.
fn wrapping_ms(epoch: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(epoch).as_millis() as u32
}

/// One open connection as the table sees it.
#[derive(Debug)]
struct Entry {
    id: u64,
    ip: IpAddr,
    activity: Arc<Activity>,
    /// A second handle on the connection's socket, to shut it down when it is evicted.
    handle: TcpStream,
}

/// A connection closed to make room for a new one.
#[derive(Debug)]
pub struct Evicted {
    /// Its peer address.
    pub ip: IpAddr,
    /// Why: its address had its share, or the table was full.
    pub reason: EvictReason,
    /// Milliseconds since its last answered query (or its start).
    pub idle_ms: u64,
}

/// Why a connection was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictReason {
    /// Its address already had [`TcpLimits::per_address`] connections.
    PerAddress,
    /// The table held [`TcpLimits::max_connections`] connections.
    Full,
}

/// The open TCP connections of all listeners.
#[derive(Debug)]
pub struct Table {
    limits: TcpLimits,
    epoch: Instant,
    conns: Mutex<Vec<Entry>>,
    next_id: AtomicUsize,
}

impl Table {
    /// An empty table enforcing `limits`.
    pub fn new(limits: TcpLimits) -> Table {
        Table {
            limits,
            epoch: Instant::now(),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        // A panic elsewhere while holding the lock leaves a consistent Vec: keep going.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of connections in the table.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enters a connection from `ip` whose socket `handle` refers to (a clone). When the
    /// address already has its share, its oldest idle connection is shut down; otherwise
    /// when the table is full, the oldest idle connection of all is. Returns the new entry's
    /// id and activity, and what was evicted.
    pub fn admit(&self, ip: IpAddr, handle: TcpStream) -> (u64, Arc<Activity>, Option<Evicted>) {
        let ip = canonical(ip);
        let now = Instant::now();
        let activity = Arc::new(Activity::new(self.epoch, now));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        let mut conns = self.lock();
        let oldest = |filter: &dyn Fn(&Entry) -> bool| {
            conns
                .iter()
                .enumerate()
                .filter(|(_, e)| filter(e))
                .max_by_key(|(_, e)| (e.activity.age_ms(now), std::cmp::Reverse(e.id)))
                .map(|(i, _)| i)
        };
        let same = conns.iter().filter(|e| e.ip == ip).count();
        let victim = if same >= self.limits.per_address() {
            oldest(&|e| e.ip == ip).map(|i| (i, EvictReason::PerAddress))
        } else if conns.len() >= self.limits.max_connections {
            oldest(&|_| true).map(|i| (i, EvictReason::Full))
        } else {
            None
        };
        let evicted = victim.map(|(i, reason)| {
            let e = conns.swap_remove(i);
            // The connection's thread sees end of file (or a failed write) and ends.
            let _ = e.handle.shutdown(std::net::Shutdown::Both);
            Evicted {
                ip: e.ip,
                reason,
                idle_ms: u64::try_from(e.activity.age_ms(now)).unwrap_or(0),
            }
        });
        conns.push(Entry {
            id,
            ip,
            activity: activity.clone(),
            handle,
        });
        (id, activity, evicted)
    }

    /// Takes connection `id` out of the table (no-op when it was evicted).
    pub fn remove(&self, id: u64) {
        let mut conns = self.lock();
        if let Some(i) = conns.iter().position(|e| e.id == id) {
            conns.swap_remove(i);
        }
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Accepts connections on `listener` for ever, one thread each, entered in `table` (shared
/// by all listeners), which makes room by closing the oldest idle connection when needed.
/// Returns only on a fatal error.
pub fn serve_listener(
    listener: TcpListener,
    store: Arc<ZoneStore>,
    table: Arc<Table>,
) -> io::Error {
    let limits = table.limits;
    let mut evictions: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    warn!("tcp accept: {e}; pausing 100 ms");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => continue,
                _ => return e,
            },
        };
        let handle = match stream.try_clone() {
            Ok(h) => h,
            Err(e) => {
                warn!("tcp {peer}: {e}; connection closed");
                continue;
            }
        };
        let (id, activity, evicted) = table.admit(peer.ip(), handle);
        if let Some(ev) = evicted {
            evictions += 1;
            if evictions.is_power_of_two() {
                log_eviction(&ev, peer, limits, evictions);
            }
        }
        let (store, t) = (store.clone(), table.clone());
        let spawned = std::thread::Builder::new()
            .name("tcp conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let result = serve_tracked(&stream, &store, limits.idle_timeout, &activity);
                // Give the place back before the client can see the connection close, so a
                // client that reconnects at once does not push out another connection.
                t.remove(id);
                drop(stream);
                match result {
                    Ok(()) => debug!("tcp {peer}: closed"),
                    Err(e) => debug!("tcp {peer}: {e}"),
                }
            });
        if let Err(e) = spawned {
            table.remove(id);
            warn!("tcp: cannot start a connection thread: {e}");
        }
    }
}

fn log_eviction(ev: &Evicted, peer: SocketAddr, limits: TcpLimits, n: u64) {
    let why = match ev.reason {
        EvictReason::PerAddress => format!(
            "{} had {} connections (the per-address cap)",
            ev.ip,
            limits.per_address()
        ),
        EvictReason::Full => format!(
            "{} connections open (tcp-max-connections)",
            limits.max_connections
        ),
    };
    warn!(
        "tcp: {why}; closed the oldest idle one, from {} (idle {} ms), for {peer} ({n} so far)",
        ev.ip, ev.idle_ms
    );
}

/// Serves one connection until the client closes it, it has no query answered for `idle`, or
/// it sends something that is not DNS over TCP. Buffers are allocated once per connection;
/// nothing is allocated per query.
pub fn serve_connection(stream: &TcpStream, store: &ZoneStore, idle: Duration) -> io::Result<()> {
    let now = Instant::now();
    serve_tracked(stream, store, idle, &Activity::new(now, now))
}

/// [`serve_connection`], recording each answered query in `activity`. The connection is closed
/// at `idle` after its start or its last answered query: only an answer moves that deadline,
/// so a client that trickles bytes, sends zero-length frames or anything else that is not a
/// query, or does not read its answers, cannot hold a place in the table for ever.
pub fn serve_tracked(
    stream: &TcpStream,
    store: &ZoneStore,
    idle: Duration,
    activity: &Activity,
) -> io::Result<()> {
    let mut stream = stream;
    stream.set_nodelay(true)?;
    let mut inbuf = vec![0u8; 2 + QUERY_MAX];
    let mut frames = TcpFramer::new(&mut inbuf);
    let mut out = vec![0u8; 2 + ANSWER_MAX];
    let mut deadline = Instant::now() + idle;
    loop {
        // Answer every complete message received.
        loop {
            let query = match frames.next_message() {
                Ok(Some(q)) => q,
                Ok(None) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            };
            let result = {
                let zone = store.load();
                answer(zone.as_deref(), query, &mut out[2..], Transport::Tcp)
            };
            // No answer (a zero-length frame, a response, less than a header): not activity.
            if let Ok(k) = result {
                let now = Instant::now();
                deadline = now + idle;
                activity.touch(now);
                let k = k.min(ANSWER_MAX);
                out[..2].copy_from_slice(&(k as u16).to_be_bytes());
                write_by(stream, &out[..2 + k], deadline)?;
            }
        }
        stream.set_read_timeout(Some(time_left(deadline)?))?;
        match stream.read(frames.space()) {
            Ok(0) => return Ok(()),
            Ok(n) => frames.filled(n),
            // A timeout before the deadline cannot happen; the loop re-checks it anyway.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Time until `deadline`, or the idle timeout error once it has passed.
fn time_left(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    }
}

/// Writes all of `buf` before `deadline` (a client that does not read its answers is cut off
/// at the deadline, however the write is split).
fn write_by(mut stream: &TcpStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        stream.set_write_timeout(Some(time_left(deadline)?))?;
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A connected socket to stand in for an accepted connection's handle (the peer end is
    /// returned too, so it stays open).
    fn socket_pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let table = Table::new(TcpLimits {
            idle_timeout: Duration::from_secs(10),
            max_connections: 8,
        });
        assert_eq!(table.limits.per_address(), 2);
        let (a, b, c) = (
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 2]),
            IpAddr::from([10, 0, 0, 3]),
        );
        let mapped_a = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let mut peers = Vec::new();
        let mut admit = |ip: IpAddr| {
            let (server, client) = socket_pair(&listener);
            peers.push(client);
            let (id, activity, ev) = table.admit(ip, server);
            (id, activity, ev.map(|e| (e.ip, e.reason)))
        };
        // (address, evicted: its address and why); a's first connection answers a query
        // later than its second, so the second is a's oldest idle one when a third comes.
        let (_, a1, none) = admit(a);
        assert!(none.is_none());
        let (a2_id, _, none) = admit(a);
        assert!(none.is_none());
        a1.touch(Instant::now() + Duration::from_secs(1));
        let (_, _, ev) = admit(mapped_a);
        assert_eq!(ev, Some((a, EvictReason::PerAddress)), "a's second, not a1");
        assert_eq!(table.len(), 2);
        table.remove(a2_id); // already gone: no-op
        assert_eq!(table.len(), 2);
        for ip in [
            b,
            b,
            c,
            c,
            Ipv6Addr::LOCALHOST.into(),
            Ipv6Addr::LOCALHOST.into(),
        ] {
            assert!(admit(ip).2.is_none());
        }
        assert_eq!(table.len(), 8);
        // Full: the oldest of all goes, a's (entered as IPv4-mapped), then b's first; a1 was
        // touched later than everything.
        let (_, _, ev) = admit(IpAddr::from([10, 0, 0, 9]));
        assert_eq!(ev, Some((a, EvictReason::Full)));
        let (_, _, ev) = admit(IpAddr::from([10, 0, 0, 9]));
        assert_eq!(ev, Some((b, EvictReason::Full)));
        assert_eq!(table.len(), 8);
    }
}
