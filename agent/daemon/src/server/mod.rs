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
use std::sync::{mpsc, Arc};
use std::time::Duration;

use log::info;
use socket2::{Domain, Socket, Type};

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
        let udp = bind_socket(addr, Type::DGRAM).map_err(|error| BindError {
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
        let tcp = bind_socket(tcp_addr, Type::STREAM).map_err(|error| BindError {
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

/// Opens a socket of `ty` bound to `addr`: close-on-exec (socket2 sets `SOCK_CLOEXEC`),
/// v6-only for IPv6, SO_REUSEADDR and listening (backlog 128) for TCP.
fn bind_socket(addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.bind(&addr.into())?;
    if ty == Type::STREAM {
        socket.listen(128)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    /// `O_CLOEXEC` as `/proc/self/fdinfo` shows it (octal `flags:` line).
    const O_CLOEXEC: u32 = 0o2000000;

    fn cloexec(fd: &impl std::os::fd::AsRawFd) -> bool {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .expect("fdinfo has a flags line");
        u32::from_str_radix(flags.trim(), 8).unwrap() & O_CLOEXEC != 0
    }

    #[test]
    fn listeners_are_v6_only_reuse_address_close_on_exec_and_share_the_port() {
        let v6 = bind(&["[::1]:0".parse().unwrap()]).unwrap().remove(0);
        let port = v6.udp.local_addr().unwrap().port();
        assert_eq!(
            v6.tcp.local_addr().unwrap().port(),
            port,
            "TCP takes UDP's port"
        );
        assert!(SockRef::from(&v6.udp).only_v6().unwrap());
        assert!(SockRef::from(&v6.tcp).only_v6().unwrap());
        assert!(SockRef::from(&v6.tcp).reuse_address().unwrap());
        assert!(cloexec(&v6.udp) && cloexec(&v6.tcp));
        // v6-only: the IPv4 wildcard can take the same port beside it.
        let v4 = bind(&[SocketAddr::from(([0, 0, 0, 0], port))])
            .unwrap()
            .remove(0);
        assert_eq!(v4.udp.local_addr().unwrap().port(), port);
        assert!(SockRef::from(&v4.tcp).reuse_address().unwrap());
        assert!(cloexec(&v4.udp) && cloexec(&v4.tcp));
        // The TCP listener accepts.
        let c = std::net::TcpStream::connect(v6.tcp.local_addr().unwrap()).unwrap();
        let (s, _) = v6.tcp.accept().unwrap();
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    }

    #[test]
    fn an_address_in_use_names_the_address_and_protocol() {
        let first = bind(&["127.0.0.1:0".parse().unwrap()]).unwrap().remove(0);
        let addr = first.udp.local_addr().unwrap();
        let e = bind(&[addr]).unwrap_err();
        assert_eq!(e.addr, addr);
        assert_eq!(e.proto, "UDP");
        assert_eq!(e.error.kind(), io::ErrorKind::AddrInUse);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot listen on UDP {addr}: ")),
            "{e}"
        );
    }
}
