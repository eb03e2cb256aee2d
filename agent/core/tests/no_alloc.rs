//! The query path allocates nothing: a counting global allocator sees no allocation during
//! thousands of `answer` calls (queries built and the zone compiled before counting starts).

mod common;

use sdwan_agent_core::{answer, Transport};
use sdwan_testsupport::alloc::{allocations, count_this_thread, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn answer_does_not_allocate() {
    let p = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cases/zone_main.json"
    ))
    .unwrap();
    let zone = common::zone(&p);
    let names = [
        ("local.k8s.internal", "A"),
        ("_http._tcp.hello-world.default.k8s.internal", "SRV"),
        ("alias2.k8s.internal", "A"),
        ("k8s.internal", "SOA"),
        ("many.k8s.internal", "A"),
        ("nope.k8s.internal", "AAAA"),
        ("example.org", "A"),
    ];
    let queries: Vec<Vec<u8>> = names
        .iter()
        .map(|(n, t)| {
            common::Query {
                name: (*n).into(),
                qtype: (*t).into(),
                class: 1,
                id: 9,
                rd: true,
                cd: false,
                opcode: 0,
                qdcount: None,
                edns: Some(common::Edns {
                    size: 1232,
                    ..Default::default()
                }),
                two_opts: false,
            }
            .bytes()
        })
        .collect();
    let mut out = [0u8; 4096];
    let mut total = 0;
    count_this_thread(true);
    for _ in 0..1000 {
        for q in &queries {
            total += answer(Some(&zone), q, &mut out, Transport::Udp).unwrap_or(0);
            total += answer(Some(&zone), q, &mut out, Transport::Tcp).unwrap_or(0);
        }
    }
    count_this_thread(false);
    assert!(total > 0);
    assert_eq!(allocations(), 0, "allocations on the query path");
}
