//! No heap allocation per query: the real UDP and TCP server loops of the lib run on threads
//! of this test, and a counting global allocator counts every allocation made on those
//! threads. After a warm-up, thousands of mixed queries (answers, NXDOMAIN, NODATA, REFUSED,
//! truncation, FORMERR, EDNS, pipelined TCP) must add zero.

mod dns_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use dns_common::{answer_queries, example_store, query};
use sdwan_agent::server::{tcp, udp};
use sdwan_testsupport::alloc::{allocations, count_this_thread, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Queries built before the measured window: (bytes, expects an answer).
fn queries() -> Vec<Vec<u8>> {
    let mut v = answer_queries();
    v.extend([
        query(5, "local.k8s.internal", 16, None),
        query(6, "_tcp.hello-world.default.k8s.internal", 33, None),
        query(7, "example.com", 1, None),
        query(8, "k8s.internal", 6, Some(1232)),
        query(9, "k8s.internal", 255, None),
        query(10, "dashboard.k8s.internal", 1, None),
    ]);
    // FORMERR: two questions.
    let mut two = query(11, "local.k8s.internal", 1, None);
    two[5] = 2;
    v.push(two);
    v
}

#[test]
fn udp_server_allocates_nothing_per_query() {
    let store = example_store();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let s = store.clone();
    std::thread::spawn(move || {
        count_this_thread(true);
        udp::serve(&server, &s)
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let qs = queries();
    let mut buf = vec![0u8; 4096];
    let mut ask_all = |rounds: usize, burst: bool| -> usize {
        let mut answers = 0;
        for _ in 0..rounds {
            if burst {
                for q in &qs {
                    client.send_to(q, addr).unwrap();
                }
                for _ in &qs {
                    client.recv(&mut buf).expect("an answer");
                    answers += 1;
                }
            } else {
                for q in &qs {
                    client.send_to(q, addr).unwrap();
                    let n = client.recv(&mut buf).expect("an answer");
                    assert_eq!(&buf[..2], &q[..2], "answer to another query");
                    assert!(n >= 12);
                    answers += 1;
                }
            }
        }
        answers
    };
    ask_all(20, false);
    ask_all(20, true);
    let before = allocations();
    let n = ask_all(200, false) + ask_all(300, true);
    let after = allocations();
    assert!(n >= 5000, "only {n} answers");
    assert_eq!(
        after - before,
        0,
        "allocations on the UDP server thread over {n} queries"
    );
    // The counter does count on that thread: the first load of a new zone's guard etc. are
    // not per query, but a server thread that had never been counted would prove nothing.
    assert!(
        before > 0,
        "counting allocator saw nothing on the server thread at all"
    );
}

#[test]
fn tcp_connection_allocates_nothing_per_query() {
    let store = example_store();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let s = store.clone();
    std::thread::spawn(move || {
        count_this_thread(true);
        let (stream, _) = listener.accept().unwrap();
        tcp::serve_connection(&stream, &s, Duration::from_secs(30))
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let qs = queries();
    let mut framed = Vec::new();
    for q in &qs {
        framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
        framed.extend_from_slice(q);
    }
    let mut buf = vec![0u8; 65537];
    let mut round = |c: &mut TcpStream| {
        c.write_all(&framed).unwrap(); // pipelined: all queries in one write
        for q in &qs {
            let mut len = [0u8; 2];
            c.read_exact(&mut len).unwrap();
            let n = u16::from_be_bytes(len) as usize;
            c.read_exact(&mut buf[..n]).unwrap();
            assert_eq!(&buf[..2], &q[..2]);
        }
    };
    for _ in 0..20 {
        round(&mut c);
    }
    let before = allocations();
    for _ in 0..300 {
        round(&mut c);
    }
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "allocations on the TCP connection thread over {} queries",
        300 * qs.len()
    );
    assert!(
        before > 0,
        "counting allocator saw nothing on the connection thread"
    );
}
