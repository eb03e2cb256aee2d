//! Proxy payload v2 (`docs/payload-v2.md`, "Proxy payload v2 (workers)") end to end on owned
//! data at issue 11's scale: 5,000 services, 500 workers. Run with
//! `cargo nextest run -p sdwan-contract --test proxy_v2 --no-capture` to see the figures.

mod v2_common;

use sdwan_contract::v2::accept::{self, DeltaAction, Held, NoticeAction, PartAction};
use sdwan_contract::v2::encode::EncodeError;
use sdwan_contract::v2::proxy::{
    decode, ProxyDelta, ProxyHeader, ProxyMessage, ProxyPort, ProxyService, ProxySnapshot,
    MAX_PROXY_LINKS,
};
use sdwan_contract::v2::{Version, MAX_MESSAGE_BYTES};
use sdwan_testsupport::Rng;

/// The proxy content of worker slot `me` in the synthetic cluster of `seed`: node slots are
/// the workers by name, every service once, `here` where it has a ready endpoint on `me`,
/// and up to 8 other workers holding it for the help page.
fn proxy(seed: u64, me: usize) -> ProxySnapshot {
    let zone = v2_common::snapshot(seed);
    // Slots by name, as the planner orders workers; map the zone's slots onto them.
    let mut by_name: Vec<(String, usize)> = zone
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.unwrap().name.as_str().to_string(), i))
        .collect();
    by_name.sort();
    let mut slot_of = vec![0u16; by_name.len()];
    for (k, (_, i)) in by_name.iter().enumerate() {
        slot_of[*i] = k as u16;
    }
    let services = zone
        .services
        .iter()
        .map(|s| {
            let mut hosts: Vec<u16> = s.hosts.iter().map(|&h| slot_of[usize::from(h)]).collect();
            hosts.sort_unstable();
            let here = hosts.binary_search(&(me as u16)).is_ok();
            let nodes: Vec<u16> = hosts
                .iter()
                .copied()
                .filter(|&h| usize::from(h) != me)
                .take(MAX_PROXY_LINKS)
                .collect();
            let ports = s
                .ports
                .iter()
                .map(|p| {
                    // An unnamed port's label is its number; named ones get port 80.
                    let label = p.label.as_str();
                    let port = label.parse::<u16>().unwrap_or(80);
                    ProxyPort::parse(&format!("{label}/TCP/{port}:{}", p.node_port)).unwrap()
                })
                .collect();
            ProxyService {
                ns: s.ns.clone(),
                name: s.name.clone(),
                unique: s.short,
                ports,
                here,
                nodes,
            }
        })
        .collect();
    ProxySnapshot {
        node: by_name[me].0.clone(),
        version: Version(1_764_694_800_123),
        proxy: ProxyHeader {
            suffix: "k8s.internal".into(),
            local: "local".into(),
            listen_port: 80,
            upstream_host: "127.0.0.1".into(),
            dir: "/etc/nginx/sdwan".into(),
            ipv6: me % 2 == 0,
            nodes: by_name.len() as u16,
        },
        nodes: by_name.into_iter().map(|(n, _)| Some(n)).collect(),
        services,
    }
}

fn decode_all(parts: &[Vec<u8>]) -> Vec<ProxyMessage> {
    parts.iter().map(|p| decode(p).unwrap()).collect()
}

#[test]
fn a_worker_proxy_at_scale_fits_in_parts_and_round_trips_in_any_order() {
    let snap = proxy(1, 17);
    let parts = snap.encode().unwrap();
    let total: usize = parts.iter().map(Vec::len).sum();
    println!(
        "proxy of {} ({} services here), {} services, {} workers",
        snap.node,
        snap.here().count(),
        snap.services.len(),
        snap.nodes.len()
    );
    for (k, p) in parts.iter().enumerate() {
        println!("part {k}: {} bytes", p.len());
    }
    println!(
        "total: {total} bytes in {} parts, {:.0} bytes per service",
        parts.len(),
        total as f64 / snap.services.len() as f64
    );
    assert!(parts.len() > 1, "this proxy needs several parts");
    assert!(parts.iter().all(|p| p.len() <= MAX_MESSAGE_BYTES));
    // v1 carried 3.6-4.4 MB of rendered files per worker for this cluster.
    assert!(total < 700_000, "{total} bytes");
    let mut msgs = decode_all(&parts);
    for (m, p) in msgs.iter().zip(&parts) {
        assert_eq!(&m.encode().unwrap(), p, "one spelling per content");
    }
    let mut rng = Rng::new(7);
    for _ in 0..3 {
        for i in (1..msgs.len()).rev() {
            msgs.swap(i, rng.below(i + 1));
        }
        let back = ProxySnapshot::assemble(&msgs).unwrap();
        assert_eq!(back, snap);
    }
}

/// Every worker's snapshot at 5,000 services x 500 workers: every message within the limit.
#[test]
fn every_message_of_500_workers_is_at_most_261120_bytes() {
    let base = proxy(2, 0);
    let mut biggest = 0;
    let mut total = 0;
    for me in 0..base.nodes.len() {
        // The same cluster seen from each worker: only `here`, `nodes` and the name change.
        let mut s = base.clone();
        s.node = s.nodes[me].clone().unwrap();
        for (svc, orig) in s.services.iter_mut().zip(&base.services) {
            let mut hosts = orig.nodes.clone();
            if orig.here {
                hosts.push(0);
                hosts.sort_unstable();
            }
            svc.here = hosts.binary_search(&(me as u16)).is_ok();
            svc.nodes = hosts
                .into_iter()
                .filter(|&h| usize::from(h) != me)
                .take(MAX_PROXY_LINKS)
                .collect();
        }
        for p in s.encode().unwrap() {
            assert!(
                p.len() <= MAX_MESSAGE_BYTES,
                "worker {me}: {} bytes",
                p.len()
            );
            biggest = biggest.max(p.len());
            total += p.len();
        }
    }
    println!("500 workers: {total} bytes of snapshots, largest message {biggest} bytes");
}

/// Issue 11: one service change travels as a small delta to each worker.
#[test]
fn one_service_change_is_a_small_delta_to_every_worker() {
    let snap = proxy(4, 17);
    let here = snap.services.iter().position(|s| s.here).unwrap();
    let far = snap
        .services
        .iter()
        .position(|s| !s.here && s.nodes.len() == 2)
        .unwrap();
    type Change = fn(&mut ProxySnapshot, usize);
    let cases: [(&str, usize, Change); 4] = [
        ("the endpoint here moves away", here, |s, i| {
            s.services[i].here = false;
        }),
        ("an endpoint elsewhere moves", far, |s, i| {
            let n = &mut s.services[i].nodes;
            n[0] = if n[0] == 0 { 1 } else { 0 };
            n.sort_unstable();
            n.dedup();
        }),
        ("a service is deleted", far, |s, i| {
            s.services.remove(i);
        }),
        ("a port's NodePort changes", here, |s, i| {
            let p = &mut s.services[i].ports[0];
            p.node_port = if p.node_port == 30000 { 30001 } else { 30000 };
        }),
    ];
    for (what, i, change) in cases {
        let mut next = snap.clone();
        change(&mut next, i);
        next.version = Version(snap.version.0 + 1);
        let d = ProxyDelta::between(&snap, &next).unwrap();
        let bytes = d.encode().unwrap();
        println!(
            "{what}: delta {} bytes, x 500 workers = {} bytes",
            bytes.len(),
            bytes.len() * 500
        );
        assert!(bytes.len() < 400, "{what}: {} bytes", bytes.len());
        let ProxyMessage::Delta(back) = decode(&bytes).unwrap() else {
            panic!("not a delta");
        };
        assert_eq!(back, d);
        let mut applied = snap.clone();
        applied.apply(&back).unwrap();
        assert_eq!(applied, next);
    }
}

/// One random change of the kinds the master makes.
fn mutate(s: &mut ProxySnapshot, rng: &mut Rng) {
    let slots = s.nodes.len();
    let i = rng.below(s.services.len());
    match rng.below(7) {
        0 => {
            s.services.remove(i);
        }
        1 => {
            let mut svc = s.services[i].clone();
            svc.name = format!("new-{}", rng.next_u64() % 1_000_000);
            if let Err(at) = s
                .services
                .binary_search_by(|x| x.key().cmp(&(svc.ns.as_str(), svc.name.as_str())))
            {
                s.services.insert(at, svc);
            }
        }
        2 => s.services[i].here = !s.services[i].here,
        3 => {
            let x = rng.below(slots) as u16;
            let n = &mut s.services[i].nodes;
            match n.binary_search(&x) {
                Ok(k) => {
                    n.remove(k);
                }
                Err(k) if n.len() < MAX_PROXY_LINKS => n.insert(k, x),
                Err(_) => {}
            }
        }
        4 => s.services[i].unique = !s.services[i].unique,
        5 => s.nodes[rng.below(slots)] = None,
        _ => {
            let k = rng.below(slots);
            s.nodes[k] = Some(format!("back-{k}"));
        }
    }
}

#[test]
fn deltas_apply_only_on_their_base_and_with_their_digest() {
    let mut rng = Rng::new(11);
    let mut cur = proxy(3, 5);
    for round in 0..60 {
        let mut next = cur.clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut next, &mut rng);
        }
        next.version = Version(cur.version.0 + 1 + rng.below(3) as u64);
        let d = ProxyDelta::between(&cur, &next).unwrap();
        let ProxyMessage::Delta(d) = decode(&d.encode().unwrap()).unwrap() else {
            panic!("not a delta");
        };
        // Not on another base.
        let mut other = cur.clone();
        other.version = Version(cur.version.0 - 1);
        assert_eq!(
            other.apply(&d),
            Err(EncodeError::WrongBase),
            "round {round}"
        );
        // Not on other content under the same version (the digest catches it); the content
        // stays as it was.
        let k0 = (cur.services[0].ns.clone(), cur.services[0].name.clone());
        let touched =
            d.set.iter().any(|s| (&s.ns, &s.name) == (&k0.0, &k0.1)) || d.del.contains(&k0);
        if !touched {
            let mut mixed = cur.clone();
            mixed.services[0].unique = !mixed.services[0].unique;
            let before = mixed.clone();
            assert_eq!(
                mixed.apply(&d),
                Err(EncodeError::DigestMismatch),
                "round {round}"
            );
            assert_eq!(mixed, before);
        }
        cur.apply(&d).unwrap();
        assert_eq!(cur, next, "round {round}");
    }
}

/// The zone's acceptance rules decide for proxy streams too: they read only the version and
/// the digest a worker holds.
#[test]
fn the_zone_acceptance_rules_decide_for_proxy_messages() {
    let snap = proxy(5, 3);
    let held = Some(Held {
        version: snap.version,
        digest: snap.digest(),
    });
    let mut next = snap.clone();
    next.services[0].here = !next.services[0].here;
    next.version = Version(snap.version.0 + 1);
    let d = ProxyDelta::between(&snap, &next).unwrap();
    assert_eq!(
        accept::delta(held, d.base, d.version, d.digest),
        DeltaAction::Apply
    );
    let mut later = next.clone();
    later.version = Version(next.version.0 + 1);
    later.services[1].unique = !later.services[1].unique;
    let gap = ProxyDelta::between(&next, &later).unwrap();
    assert_eq!(
        accept::delta(held, gap.base, gap.version, gap.digest),
        DeltaAction::Gap
    );
    assert_eq!(
        accept::part(held, None, snap.version, snap.digest()),
        PartAction::Replay
    );
    assert_eq!(
        accept::part(held, None, snap.version, next.digest()),
        PartAction::Conflict
    );
    assert_eq!(
        accept::notice(held, later.version, later.digest()),
        NoticeAction::Resync
    );
}

#[test]
fn parts_that_do_not_make_one_snapshot_are_refused() {
    let snap = proxy(6, 9);
    let msgs = decode_all(&snap.encode().unwrap());
    assert!(msgs.len() >= 2);
    assert_eq!(
        ProxySnapshot::assemble(&msgs[1..]),
        Err(EncodeError::Parts("a part is missing"))
    );
    let mut twice = msgs.clone();
    twice.push(msgs[0].clone());
    assert_eq!(
        ProxySnapshot::assemble(&twice),
        Err(EncodeError::Parts("a part twice"))
    );
    let mut later = snap.clone();
    later.version = Version(snap.version.0 + 1);
    let other = decode_all(&later.encode().unwrap());
    assert_eq!(
        ProxySnapshot::assemble(&[msgs[0].clone(), other[1].clone()]),
        Err(EncodeError::Parts("parts of different snapshots"))
    );
    // Torn: a part of other content under the same version and digest.
    let mut changed = snap.clone();
    changed.services.pop();
    let parts = changed.encode().unwrap();
    let last = parts.len() - 1;
    let text = String::from_utf8(parts[last].clone()).unwrap().replace(
        &format!("\"digest\":\"{}\"", changed.digest()),
        &format!("\"digest\":\"{}\"", snap.digest()),
    );
    let mut torn = msgs.clone();
    torn[last] = decode(text.as_bytes()).unwrap();
    assert_eq!(
        ProxySnapshot::assemble(&torn),
        Err(EncodeError::DigestMismatch)
    );
}

/// The JSON examples of the proxy section of docs/payload-v2.md are messages this decoder
/// accepts, and re-encode to the same content.
#[test]
fn the_documented_proxy_examples_decode() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/payload-v2.md"
    ))
    .unwrap();
    let section = doc.split("## Proxy payload v2 (workers)").nth(1).unwrap();
    let mut n = 0;
    for block in section.split("```json").skip(1) {
        let json = block.split("```").next().unwrap();
        let m = decode(json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(decode(&m.encode().unwrap()).unwrap(), m);
        n += 1;
    }
    assert_eq!(n, 3, "a part, a delta and a notice");
}

mod follow {
    use super::*;
    use sdwan_contract::v2::proxy::encode_notice;
    use sdwan_contract::v2::proxy::follow::{Follower, Source, Step};

    fn serve(steps: Vec<Step>) -> ProxySnapshot {
        match &steps[..] {
            [Step::Serve(s)] => s.clone(),
            other => panic!("expected one Serve, got {other:?}"),
        }
    }

    fn next(s: &ProxySnapshot, rng: &mut Rng) -> ProxySnapshot {
        let mut n = s.clone();
        super::mutate(&mut n, rng);
        n.version = Version(s.version.0 + 1);
        n
    }

    fn delta(a: &ProxySnapshot, b: &ProxySnapshot) -> Vec<u8> {
        ProxyDelta::between(a, b).unwrap().encode().unwrap()
    }

    /// Booting: the retained snapshot's parts in any order and the retained tail give the
    /// current content, served once whole; then the resync ends.
    #[test]
    fn a_booting_worker_serves_snapshot_and_tail_once_whole() {
        let mut rng = Rng::new(21);
        let snap = proxy(7, 4);
        let current = next(&snap, &mut rng);
        let (mut f, first) = Follower::new(&snap.node, None);
        assert_eq!(first, Step::Resync);
        // The tail may come before the parts.
        assert!(f.handle(Source::Tail, &delta(&snap, &current)).is_empty());
        let mut parts = snap.encode().unwrap();
        parts.reverse();
        let last = parts.pop().unwrap();
        for p in &parts {
            assert!(f.handle(Source::Part, p).is_empty(), "not whole yet");
        }
        let served = serve(f.handle(Source::Part, &last));
        assert_eq!(served, current, "snapshot and tail together");
        assert_eq!(f.served(served), Some(Step::Synced));
        assert_eq!(f.held().unwrap().digest, current.digest());
        // The retained parts seen again (a re-subscription) change nothing.
        for p in snap.encode().unwrap() {
            assert!(f.handle(Source::Part, &p).is_empty());
        }
    }

    /// Deltas in order are served one by one; one for another base is a gap: a resync that
    /// ends when the retained snapshot reaches the delta's version.
    #[test]
    fn deltas_apply_in_order_and_a_gap_resyncs() {
        let mut rng = Rng::new(22);
        let v1 = proxy(8, 2);
        let (mut f, _) = Follower::new(&v1.node, Some(v1.clone()));
        let mut cur = v1.clone();
        for _ in 0..5 {
            let n = next(&cur, &mut rng);
            let s = serve(f.handle(Source::Delta, &delta(&cur, &n)));
            assert_eq!(s, n);
            f.served(s);
            cur = n;
        }
        // The same delta again: a replay.
        let n = next(&cur, &mut rng);
        let d = delta(&cur, &n);
        let s = serve(f.handle(Source::Delta, &d));
        f.served(s);
        assert!(f.handle(Source::Delta, &d).is_empty());
        cur = n;
        // Missed one: the next is a gap.
        let missed = next(&cur, &mut rng);
        let after = next(&missed, &mut rng);
        assert_eq!(
            f.handle(Source::Delta, &delta(&missed, &after)),
            [Step::Resync]
        );
        assert!(f.resyncing());
        assert_eq!(
            f.held().unwrap().version,
            cur.version,
            "nothing torn served"
        );
        // The master's retained snapshot at `after` ends it.
        let mut got = Vec::new();
        for p in after.encode().unwrap() {
            got.extend(f.handle(Source::Part, &p));
        }
        let s = serve(got);
        assert_eq!(s, after);
        assert_eq!(f.served(s), Some(Step::Synced));
    }

    /// Torn content, content for another node, another worker's bytes, a reused version: refused,
    /// nothing served, the held content stays.
    #[test]
    fn torn_foreign_and_reused_content_is_refused() {
        let snap = proxy(9, 6);
        let (mut f, _) = Follower::new(&snap.node, Some(snap.clone()));
        f.served(snap.clone());
        // Parts of a newer snapshot, one of them from other content under the same digest.
        let mut newer = snap.clone();
        newer.version = Version(snap.version.0 + 10);
        let mut other = newer.clone();
        other.services.pop();
        let parts = newer.encode().unwrap();
        let mut torn = other.encode().unwrap();
        let last = torn.len() - 1;
        torn[last] = String::from_utf8(torn[last].clone())
            .unwrap()
            .replace(&other.digest().to_string(), &newer.digest().to_string())
            .into_bytes();
        let mut steps = Vec::new();
        for p in parts[..last].iter().chain([&torn[last]]) {
            steps.extend(f.handle(Source::Part, p));
        }
        assert!(
            matches!(&steps[..], [Step::Refused(e)] if e.contains("digest")),
            "{steps:?}"
        );
        assert_eq!(f.held().unwrap().version, snap.version);
        // Another node's message.
        let mut theirs = snap.clone();
        theirs.node = "worker-999".into();
        let steps = f.handle(Source::Part, &theirs.encode().unwrap()[0]);
        assert!(matches!(&steps[..], [Step::Refused(e)] if e.contains("worker-999")));
        // The held version announced with other content.
        let n = encode_notice(&snap.node, snap.version, other.digest()).unwrap();
        assert!(matches!(
            &f.handle(Source::Delta, &n)[..],
            [Step::Refused(_)]
        ));
        // Bytes that are not a message.
        assert!(
            matches!(&f.handle(Source::Delta, b"{\"schema\":3}")[..], [Step::Refused(e)] if e.contains("unsupported schema 3"))
        );
        // An empty retained message is "nothing here".
        assert!(f.handle(Source::Part, b"").is_empty());
        assert_eq!(f.held().unwrap().digest, snap.digest());
    }

    /// A notice of a newer snapshot starts a resync; one of the held version does not.
    #[test]
    fn a_notice_of_a_newer_snapshot_resyncs() {
        let snap = proxy(10, 1);
        let (mut f, _) = Follower::new(&snap.node, Some(snap.clone()));
        f.served(snap.clone());
        assert!(!f.resyncing());
        let same = encode_notice(&snap.node, snap.version, snap.digest()).unwrap();
        assert!(f.handle(Source::Delta, &same).is_empty());
        assert!(!f.resyncing());
        let newer = encode_notice(&snap.node, Version(snap.version.0 + 5), snap.digest()).unwrap();
        assert_eq!(f.handle(Source::Delta, &newer), [Step::Resync]);
        assert!(f.resyncing());
    }
}
