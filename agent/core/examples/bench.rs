//! A timing loop for `answer()` (no criterion): prints nanoseconds per call for typical
//! queries on a 20-record and a 1,000-record zone.
//!
//! `cargo run --release -p sdwan-agent-core --example bench`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

use sdwan_agent_core::{answer, compile, compiled_size_bound, Transport, Zone};

fn payload(n: usize) -> String {
    let mut r = vec![
        r#"{"name":"local","type":"A","data":"192.168.200.2"}"#.to_string(),
        r#"{"name":"worker1","type":"A","data":"192.168.200.1"}"#.to_string(),
        r#"{"name":"worker2","type":"AAAA","data":"fd00::2"}"#.to_string(),
        r#"{"name":"_http._tcp.hello-world.default","type":"SRV","data":"0 0 30080 worker1"}"#
            .to_string(),
        r#"{"name":"_http._tcp.hello-world.default","type":"SRV","data":"1 0 30080 worker2"}"#
            .to_string(),
        r#"{"name":"hello-world.default","type":"A","data":"192.168.200.2"}"#.to_string(),
    ];
    let mut i = 0;
    while r.len() < n {
        r.push(format!(
            r#"{{"name":"svc{i}.ns{}","type":"A","data":"10.0.{}.{}"}}"#,
            i % 7,
            i / 250,
            i % 250
        ));
        i += 1;
    }
    format!(
        r#"{{"version":1,"serial":1,"gateway":"gw","origin":"k8s.internal","ttl":30,"records":[{}]}}"#,
        r.join(",")
    )
}

fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut v = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, edns as u8];
    for l in name.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&[0, 1]);
    if edns {
        v.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
    }
    v
}

fn main() {
    let iters: u32 = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    println!("| zone | query | ns per answer() |");
    println!("|---|---|---|");
    for n in [20, 1000] {
        let p = payload(n);
        let mut buf = vec![0u8; compiled_size_bound(p.len())];
        let t = Instant::now();
        let len = compile(p.as_bytes(), &mut buf).unwrap();
        let compile_us = t.elapsed().as_secs_f64() * 1e6;
        let zone = Zone::from_compiled(&buf[..len]).unwrap();
        for (what, q) in [
            ("A hit", query("hello-world.default.k8s.internal", 1, false)),
            ("A hit, EDNS", query("Local.K8s.Internal", 1, true)),
            ("AAAA NODATA", query("local.k8s.internal", 28, true)),
            ("NXDOMAIN", query("missing.default.k8s.internal", 1, true)),
            (
                "SRV + additional",
                query("_http._tcp.hello-world.default.k8s.internal", 33, true),
            ),
            ("SOA", query("k8s.internal", 6, true)),
        ] {
            let mut out = [0u8; 1232];
            let t = Instant::now();
            for _ in 0..iters {
                black_box(answer(Some(&zone), black_box(&q), &mut out, Transport::Udp)).unwrap();
            }
            let ns = t.elapsed().as_nanos() as f64 / iters as f64;
            println!("| {n} records | {what} | {ns:.0} |");
        }
        println!(
            "| {n} records | compile ({} bytes) | {compile_us:.0} us |",
            p.len()
        );
    }
}
