//! The query path allocates nothing: a counting global allocator sees no allocation during
//! thousands of `answer` calls (queries built and the zone compiled before counting starts).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use sdwan_agent_core::{answer, Transport};

struct Counting;
thread_local! {
    // Only this test's thread counts: the test harness allocates on its own threads.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn answer_does_not_allocate() {
    let p = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cases/zone_main.json"
    ))
    .unwrap();
    let zone = common::zone(&p);
    let names = [
        ("local.kubernetes.services", "A"),
        ("_http._tcp.hello-world.default.kubernetes.services", "SRV"),
        ("alias2.kubernetes.services", "A"),
        ("kubernetes.services", "SOA"),
        ("many.kubernetes.services", "A"),
        ("nope.kubernetes.services", "AAAA"),
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
    COUNTING.with(|c| c.set(true));
    for _ in 0..1000 {
        for q in &queries {
            total += answer(Some(&zone), q, &mut out, Transport::Udp).unwrap_or(0);
            total += answer(Some(&zone), q, &mut out, Transport::Tcp).unwrap_or(0);
        }
    }
    COUNTING.with(|c| c.set(false));
    assert!(total > 0);
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations on the query path"
    );
}
