//! Ports on loopback.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

/// A port that is free on 127.0.0.1 for both UDP and TCP right now (the kernel picks it, so
/// parallel tests do not collide; another process could still take it before you bind it).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket on 127.0.0.1");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 100 tries");
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_port_is_bindable_twice() {
        let p = super::free_port();
        std::net::UdpSocket::bind(("127.0.0.1", p)).unwrap();
        std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
    }
}
