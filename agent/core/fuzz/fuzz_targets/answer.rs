//! The query path: any bytes as a query, against a fixed zone, over UDP and TCP, into buffers
//! of several sizes. Must never panic; a response always fits its limit. Both answer paths:
//! a v1 zone (`answer`) and a payload v2 zone (`answer_v2`, what gateways serve: the example
//! cluster's plan for gw-espoo, `zone_v2.jsonl`), the latter with every node up, with some
//! down, and failing closed while stale.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdwan_agent_core::v2zone::{PartStatus, Staging, Work};
use sdwan_agent_core::{
    answer, answer_v2, compile, compiled_size_bound, Health, Transport, Zone, ZoneV2,
};
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;

const PAYLOAD: &str = include_str!("../../tests/cases/zone_main.json");
/// `sdwan-discovery plan --cluster-file examples/cluster.json --topology
/// examples/topology.toml --serial 7`: gateways/gw-espoo.v2.jsonl.
const V2_SNAPSHOT: &str = include_str!("../zone_v2.jsonl");

fn zone() -> &'static Zone<Vec<u8>> {
    static ZONE: OnceLock<Zone<Vec<u8>>> = OnceLock::new();
    ZONE.get_or_init(|| {
        let mut out = vec![0u8; compiled_size_bound(PAYLOAD.len())];
        let n = compile(PAYLOAD.as_bytes(), &mut out).expect("zone compiles");
        out.truncate(n);
        Zone::from_compiled(out).expect("zone loads")
    })
}

fn zone_v2() -> &'static ZoneV2<Vec<u8>> {
    static ZONE: OnceLock<ZoneV2<Vec<u8>>> = OnceLock::new();
    ZONE.get_or_init(|| {
        let mut staging = Staging::new(vec![0u8; 1 << 20]);
        let mut work = Box::new(Work::new());
        for line in V2_SNAPSHOT.lines().filter(|l| !l.is_empty()) {
            match staging.part("gw-espoo", None, line.as_bytes(), &mut work) {
                Ok(PartStatus::Complete) => break,
                Ok(PartStatus::Waiting(_)) => {}
                other => panic!("the fixture snapshot does not stage: {other:?}"),
            }
        }
        let mut zone = ZoneV2::new(Vec::new());
        assert!(
            staging.swap_into(&mut zone),
            "the fixture snapshot is whole"
        );
        zone
    })
}

/// Checks what an answer path wrote into a buffer of `len` bytes for `data`.
fn check(
    r: Result<usize, sdwan_agent_core::wire::Error>,
    t: Transport,
    len: usize,
    data: &[u8],
    out: &[u8],
) {
    if let Ok(n) = r {
        assert!(n <= len);
        assert!(n >= 12);
        if t == Transport::Udp {
            assert!(n <= 1232);
        }
        assert_eq!(out[..2], data[..2]);
    }
}

fuzz_target!(|data: &[u8]| {
    let zone = zone();
    let v2 = zone_v2();
    // Slots 0 and 2 down; with fail-closed and stale, the SERVFAIL/EDE and TTL-cap branches.
    let down = [AtomicU32::new(0b101)];
    let healths = [
        Health::ALL_UP,
        Health::new(&down),
        Health::new(&down).with_fail_closed(true).with_stale(true),
    ];
    let mut out = [0u8; 65535];
    for (t, len) in [
        (Transport::Udp, 65535),
        (Transport::Tcp, 65535),
        (Transport::Tcp, 300),
        (Transport::Udp, 40),
    ] {
        let r = answer(Some(zone), data, &mut out[..len], t);
        check(r, t, len, data, &out);
        for h in healths {
            let r = answer_v2(Some(v2), data, &mut out[..len], t, h);
            check(r, t, len, data, &out);
        }
    }
    let _ = answer(None::<&Zone<Vec<u8>>>, data, &mut out, Transport::Udp);
    let _ = answer_v2(
        None::<&ZoneV2<Vec<u8>>>,
        data,
        &mut out,
        Transport::Udp,
        Health::ALL_UP,
    );
});
