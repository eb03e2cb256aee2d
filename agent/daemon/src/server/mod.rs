//! The DNS servers: sockets and threads around `sdwan_agent_core::answer`.
//!
//! - [`bind`] opens a UDP socket and a TCP listener on every listen address (IPv6 sockets are
//!   v6-only, so `0.0.0.0:53` and `[::]:53` can both be given).
//! - [`spawn`] starts one thread per UDP socket ([`udp::serve`]: batched `recvmmsg`/`sendmmsg`,
//!   buffers allocated once) and one accept thread per TCP listener ([`tcp::serve_listener`]:
//!   RFC 7766, one thread per connection, idle timeout; when the connection table is full, or
//!   an address has its share of it, the oldest idle connection makes room: [`tcp::Table`]).
//! - [`user::switch_to`] drops root after binding.

pub mod tcp;
pub mod udp;
pub mod user;

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use log::info;

use crate::store::ZoneStore;

/// Sockets bound for one listen address.
#[derive(Debug)]
pub struct Bound {
    /// The address as configured.
    pub addr: SocketAddr,
    /// UDP socket.
    pub udp: UdpSocket,
    /// TCP listener.
    pub tcp: TcpListener,
}

/// Why a listen address could not be bound.
#[derive(Debug)]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// `"UDP"` or `"TCP"`.
    pub proto: &'static str,
    /// The OS error.
    pub error: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot listen on {} {}: {}",
            self.proto, self.addr, self.error
        )?;
        if self.error.kind() == io::ErrorKind::PermissionDenied && self.addr.port() < 1024 {
            write!(f, " (ports below 1024 need root or CAP_NET_BIND_SERVICE)")?;
        }
        Ok(())
    }
}

impl std::error::Error for BindError {}

/// Limits of the TCP side.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// A connection with no query answered for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent connections over all listeners; a new one beyond this closes the oldest
    /// idle connection.
    pub max_connections: usize,
}

impl TcpLimits {
    /// Concurrent connections from one client address: a quarter of the table, at least 1. A
    /// new connection beyond this closes the oldest idle connection of the same address, so
    /// one address can never hold more than its share.
    pub fn per_address(&self) -> usize {
        (self.max_connections / 4).max(1)
    }
}

/// Binds UDP and TCP on every address, in order; the first failure stops and is returned.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<Bound>, BindError> {
    let mut out = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let udp = bind_socket(addr, libc::SOCK_DGRAM).map_err(|error| BindError {
            addr,
            proto: "UDP",
            error,
        })?;
        let udp = UdpSocket::from(udp);
        // With port 0, TCP takes the port UDP got, so both serve the same address.
        let tcp_addr = match addr.port() {
            0 => udp.local_addr().unwrap_or(addr),
            _ => addr,
        };
        let tcp = bind_socket(tcp_addr, libc::SOCK_STREAM).map_err(|error| BindError {
            addr,
            proto: "TCP",
            error,
        })?;
        let tcp = TcpListener::from(tcp);
        out.push(Bound { addr, udp, tcp });
    }
    Ok(out)
}

/// The running server threads.
#[derive(Debug)]
pub struct Running {
    ended: mpsc::Receiver<(String, io::Error)>,
}

impl Running {
    /// Waits until a server thread stops (they only stop on a fatal socket error) and returns
    /// its error.
    pub fn wait(self) -> io::Error {
        match self.ended.recv() {
            Ok((name, e)) => io::Error::new(e.kind(), format!("{name}: {e}")),
            Err(_) => io::Error::other("every server thread ended"),
        }
    }
}

/// Starts the server threads on the bound sockets, logging each listening address.
pub fn spawn(bound: Vec<Bound>, store: Arc<ZoneStore>, limits: TcpLimits) -> io::Result<Running> {
    let table = Arc::new(tcp::Table::new(limits));
    let (tx, ended) = mpsc::channel();
    for b in bound {
        let udp_addr = b.udp.local_addr()?;
        let tcp_addr = b.tcp.local_addr()?;
        let name = format!("udp {udp_addr}");
        let (s, t) = (store.clone(), tx.clone());
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let e = udp::serve(&b.udp, &s);
                let _ = t.send((name, e));
            })?;
        info!("listening on udp {udp_addr}");
        let name = format!("tcp {tcp_addr}");
        let (s, t, a) = (store.clone(), tx.clone(), table.clone());
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let e = tcp::serve_listener(b.tcp, s, a);
                let _ = t.send((name, e));
            })?;
        info!("listening on tcp {tcp_addr}");
    }
    Ok(Running { ended })
}

/// Opens a socket of `ty` bound to `addr`: close-on-exec, v6-only for IPv6, SO_REUSEADDR and
/// listening for TCP.
fn bind_socket(addr: SocketAddr, ty: libc::c_int) -> io::Result<OwnedFd> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    if addr.is_ipv6() {
        setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    if ty == libc::SOCK_STREAM {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    let r = unsafe { libc::bind(raw, &storage as *const _ as *const libc::sockaddr, len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if ty == libc::SOCK_STREAM {
        // SAFETY: plain syscall on our socket.
        if unsafe { libc::listen(raw, 128) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

fn setsockopt_int(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` is a c_int that lives across the call, and we pass its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `addr` as a C sockaddr.
fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
