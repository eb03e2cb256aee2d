//! DNS over TCP (RFC 7766): each message is preceded by its length in two bytes; a client may
//! send several queries on one connection without waiting (pipelining; answered in order);
//! a connection idle for the idle timeout is closed; beyond the connection cap, new
//! connections are accepted and closed at once. Answers can use the full 65535 bytes.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use sdwan_agent_core::framing::TcpFramer;
use sdwan_agent_core::{answer, Transport};

use super::TcpLimits;
use crate::store::ZoneStore;

/// Largest query accepted over TCP; a longer one closes the connection (no real DNS query is
/// anywhere near this).
pub const QUERY_MAX: usize = 4096;
/// Largest TCP answer (the 2-byte length prefix allows no more).
pub const ANSWER_MAX: usize = 65535;
/// Stack of a connection thread: buffers live on the heap, the answer path is shallow.
const CONNECTION_STACK: usize = 256 * 1024;

/// Accepts connections on `listener` for ever, one thread each, at most
/// `limits.max_connections` at once (counted in `active`, shared by all listeners).
/// Returns only on a fatal error.
pub fn serve_listener(
    listener: TcpListener,
    store: Arc<ZoneStore>,
    limits: TcpLimits,
    active: Arc<AtomicUsize>,
) -> io::Error {
    let mut refused: u64 = 0;
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
        if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            refused += 1;
            if refused.is_power_of_two() {
                warn!(
                    "tcp: {} connections open (the cap); closed the one from {peer} ({refused} so far)",
                    limits.max_connections
                );
            }
            drop(stream);
            continue;
        }
        let slot = Slot(active.clone());
        let store = store.clone();
        let spawned = std::thread::Builder::new()
            .name("tcp conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let result = serve_connection(&stream, &store, limits.idle_timeout);
                // Give the place back before the client can see the connection close, so a
                // client that reconnects at once is not refused by the cap.
                drop(slot);
                drop(stream);
                match result {
                    Ok(()) => debug!("tcp {peer}: closed"),
                    Err(e) => debug!("tcp {peer}: {e}"),
                }
            });
        if let Err(e) = spawned {
            warn!("tcp: cannot start a connection thread: {e}");
        }
    }
}

/// Holds one place under the connection cap; gives it back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection until the client closes it, it stays idle for `idle`, or it sends
/// something that is not DNS over TCP. `idle` bounds the time from one complete query (or the
/// connection's start) to the next complete query, so a client that trickles bytes cannot hold
/// a connection slot for ever. Buffers are allocated once per connection; nothing is allocated
/// per query.
pub fn serve_connection(stream: &TcpStream, store: &ZoneStore, idle: Duration) -> io::Result<()> {
    let mut stream = stream;
    stream.set_read_timeout(Some(idle))?;
    stream.set_write_timeout(Some(idle))?;
    stream.set_nodelay(true)?;
    let mut inbuf = vec![0u8; 2 + QUERY_MAX];
    let mut frames = TcpFramer::new(&mut inbuf);
    let mut out = vec![0u8; 2 + ANSWER_MAX];
    let mut last_query = Instant::now();
    let mut timeout = idle;
    loop {
        // Answer every complete message received.
        loop {
            let query = match frames.next_message() {
                Ok(Some(q)) => q,
                Ok(None) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            };
            last_query = Instant::now();
            let result = {
                let zone = store.load();
                answer(zone.as_deref(), query, &mut out[2..], Transport::Tcp)
            };
            if let Ok(k) = result {
                let k = k.min(ANSWER_MAX);
                out[..2].copy_from_slice(&(k as u16).to_be_bytes());
                stream.write_all(&out[..2 + k])?;
            }
        }
        // Waiting for a new message: the full idle time. In the middle of one: what is left.
        let wanted = if !frames.in_message() {
            idle
        } else {
            match idle.checked_sub(last_query.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
            }
        };
        if wanted != timeout {
            stream.set_read_timeout(Some(wanted))?;
            timeout = wanted;
        }
        match stream.read(frames.space()) {
            Ok(0) => return Ok(()),
            Ok(n) => frames.filled(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
            }
            Err(e) => return Err(e),
        }
    }
}
