//! Bad input never panics (seeded, so a failure repeats): random bytes and mutated queries
//! through `answer`, mutated payloads through `compile`, mutated compiled zones through
//! `Zone::from_compiled` and `answer`. Every response must decode with hickory-proto.

mod common;

use hickory_proto::op::Message;
use sdwan_agent_core::{answer, compile, compiled_size_bound, Transport, Zone};
use sdwan_testsupport::Rng;

/// Mutates `v` in place: 1-4 of byte change, truncation, insertion, bit flip.
fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next_u64() as u8);
            }
            _ if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            _ => v.push(0),
        }
    }
}

fn main_zone() -> (String, Zone<Vec<u8>>) {
    let p = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cases/zone_main.json"
    ))
    .unwrap();
    let z = common::zone(&p);
    (p, z)
}

fn queries() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (name, t) in [
        ("local.k8s.internal", "A"),
        ("_http._tcp.hello-world.default.k8s.internal", "SRV"),
        ("alias2.k8s.internal", "A"),
        ("k8s.internal", "SOA"),
        ("many.k8s.internal", "A"),
        ("nope.k8s.internal", "AAAA"),
    ] {
        for edns in [
            None,
            Some(common::Edns {
                size: 1232,
                ..Default::default()
            }),
        ] {
            let q = common::Query {
                name: name.into(),
                qtype: t.into(),
                class: 1,
                id: 1,
                rd: true,
                cd: false,
                opcode: 0,
                qdcount: None,
                edns,
                two_opts: false,
            };
            v.push(q.bytes());
        }
    }
    v
}

fn check_response(resp: &[u8], query: &[u8], transport: Transport) {
    let m = Message::from_vec(resp)
        .unwrap_or_else(|e| panic!("undecodable response {resp:02x?} to {query:02x?}: {e}"));
    assert_eq!(resp[..2], query[..2], "id");
    if transport == Transport::Udp {
        assert!(resp.len() <= 1232);
    }
    let _ = m;
}

#[test]
fn random_bytes_never_panic() {
    let (_, zone) = main_zone();
    let mut rng = Rng::new(0x5eed_0001);
    let mut out = vec![0u8; 65535];
    for _ in 0..50_000 {
        let len = rng.below(80);
        let q: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        for t in [Transport::Udp, Transport::Tcp] {
            if let Ok(n) = answer(Some(&zone), &q, &mut out, t) {
                check_response(&out[..n], &q, t);
            }
        }
    }
}

#[test]
fn mutated_queries_never_panic() {
    let (_, zone) = main_zone();
    let base = queries();
    let mut rng = Rng::new(0x5eed_0002);
    let mut out = vec![0u8; 65535];
    for i in 0..100_000 {
        let mut q = base[i % base.len()].clone();
        mutate(&mut rng, &mut q);
        let t = if i % 3 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let out_len = if i % 7 == 0 {
            rng.below(600)
        } else {
            out.len()
        };
        if let Ok(n) = answer(Some(&zone), &q, &mut out[..out_len], t) {
            check_response(&out[..n], &q, t);
        }
        let _ = answer(None::<&Zone<Vec<u8>>>, &q, &mut out, t);
    }
}

#[test]
fn mutated_payloads_never_panic() {
    let (p, _) = main_zone();
    let mut rng = Rng::new(0x5eed_0003);
    let mut out = vec![0u8; compiled_size_bound(p.len() + 64)];
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut v = p.clone().into_bytes();
        mutate(&mut rng, &mut v);
        let out = &mut out[..compiled_size_bound(v.len()).min(p.len() + 1088)];
        if let Ok(n) = compile(&v, out) {
            accepted += 1;
            Zone::from_compiled(&out[..n]).expect("a compiled zone loads");
        }
    }
    // Some mutations (inside a TXT string, an address digit) keep the payload valid.
    assert!(accepted > 0);
}

#[test]
fn mutated_compiled_zones_never_panic() {
    let (p, _) = main_zone();
    let mut good = vec![0u8; compiled_size_bound(p.len())];
    let n = compile(p.as_bytes(), &mut good).unwrap();
    good.truncate(n);
    let base = queries();
    let mut rng = Rng::new(0x5eed_0004);
    let mut out = vec![0u8; 65535];
    for i in 0..20_000 {
        let mut z = good.clone();
        mutate(&mut rng, &mut z);
        if let Ok(zone) = Zone::from_compiled(&z[..]) {
            let _ = (
                zone.serial(),
                zone.gateway(),
                zone.origin(),
                zone.record_count(),
            );
            for q in &base {
                let _ = answer(Some(&zone), q, &mut out, Transport::Udp);
            }
        }
        let _ = i;
    }
}
