//! No heap allocation per query: the real UDP and TCP server loops of the lib run on threads
//! of this test, and a counting global allocator counts every allocation made on those
//! threads. After a warm-up, thousands of mixed queries (answers, NXDOMAIN, NODATA, REFUSED,
//! truncation, FORMERR, EDNS, pipelined TCP) must add zero, on a v1 zone and on a payload v2
//! zone alike.

mod dns_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use dns_common::{answer_queries, example_store, query};
use sdwan_agent::server::{tcp, udp};
use sdwan_agent::store::ZoneStore;
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
    udp_allocates_nothing(example_store());
}

#[test]
fn udp_server_allocates_nothing_per_query_on_a_v2_zone() {
    udp_allocates_nothing(v2_store());
}

#[test]
fn udp_server_allocates_nothing_per_query_with_per_service_probing() {
    udp_allocates_nothing(v2_store_probing_services());
}

#[test]
fn tcp_connection_allocates_nothing_per_query_with_per_service_probing() {
    tcp_allocates_nothing(v2_store_probing_services());
}

#[test]
fn tcp_connection_allocates_nothing_per_query() {
    tcp_allocates_nothing(example_store());
}

#[test]
fn tcp_connection_allocates_nothing_per_query_on_a_v2_zone() {
    tcp_allocates_nothing(v2_store());
}

/// A store holding a payload v2 zone with the example zone's names (`hello-world.default`
/// with `_http._tcp`, `local`, a node), built from the master's encoding through the
/// agent's door (`Staging`).
fn v2_store() -> Arc<ZoneStore> {
    v2_store_with(false)
}

/// [`v2_store`] answered with per-service bits (`--probe-port service`): hello-world's
/// NodePort on worker-1 down.
fn v2_store_probing_services() -> Arc<ZoneStore> {
    v2_store_with(true)
}

fn v2_store_with(services: bool) -> Arc<ZoneStore> {
    use sdwan_agent_core::v2zone::{PartStatus, Staging, Work};
    use sdwan_contract::v2::encode::{Service, Snapshot};
    use sdwan_contract::v2::{Family, Node, Port, Str, Tier, Version, ZoneHeader};
    let node = |name: &str, last: u8| {
        Some(Node {
            name: Str::new(name).unwrap(),
            tier: Tier::Near,
            v4: Some([192, 168, 200, last].into()),
            v6: Some([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(last)].into()),
        })
    };
    let snap = Snapshot {
        gateway: "gw-a".into(),
        version: Version(1),
        zone: ZoneHeader {
            suffix: Str::new("k8s.internal").unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 30,
            service_ttl: 10,
            family: Family::Dual,
            nodes: 2,
            probe: None,
        },
        nodes: vec![node("worker-1", 1), node("worker-2", 2)],
        services: vec![Service {
            ns: "default".into(),
            name: "hello-world".into(),
            short: true,
            ports: vec![Port::parse("_http._tcp:30080").unwrap()],
            hosts: vec![0, 1],
        }],
    };
    let mut staging = Box::new(Staging::new(sdwan_agent::gateway::heap()));
    let mut work = Box::new(Work::new());
    let mut done = false;
    for p in snap.encode().unwrap() {
        done = staging.part("gw-a", None, &p, &mut work).unwrap() == PartStatus::Complete;
    }
    assert!(done, "snapshot whole");
    let mut zone = Box::new(sdwan_agent::store::OwnedZoneV2::new(Box::default()));
    assert!(staging.swap_into(&mut zone));
    // Issue 14: answered with a branch view: worker-1 down, RTT order, stale answers.
    use sdwan_agent::probe::{layout, service_layout, service_targets, targets, MAX_PAIRS};
    use sdwan_agent::probe::{BranchView, Input, Params, Prober};
    let view = Arc::new(BranchView::new(false, true, services));
    let mut prober = Prober::new(Params::default(), 1);
    let st = service_targets(&zone, MAX_PAIRS);
    let t = if services {
        st.targets.clone()
    } else {
        targets(&zone, 80).0
    };
    let mut out = Vec::new();
    prober.handle(Duration::ZERO, Input::Zone(t.clone()), &mut out);
    for _ in 0..Params::default().down_after {
        let target = t[0].unwrap();
        prober.handle(
            Duration::ZERO,
            Input::Result { target, rtt: None },
            &mut out,
        );
    }
    assert!(prober.is_down(0));
    if services {
        let (l, sl) = (layout(&zone), service_layout(&zone));
        view.publish_services(l, sl, &prober, &st, true);
        assert!(view.health(l, sl).for_service(0).is_down_at(0, 0));
    } else {
        view.publish(layout(&zone), &prober, true);
    }
    assert!(view.update_stale(Some(Duration::ZERO)));
    let store = ZoneStore::with_view(view);
    store.swap_v2(zone);
    Arc::new(store)
}

fn udp_allocates_nothing(store: Arc<ZoneStore>) {
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

fn tcp_allocates_nothing(store: Arc<ZoneStore>) {
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
