//! The checks of the contract's fuzz targets, shared by the targets (`fuzz_targets/*.rs`) and
//! the regression test over the kept inputs (`tests/regressions.rs`, docs/fuzzing.md).

// Each target uses one of the checks.
#![allow(dead_code)]

use sdwan_contract::v2::decode::{decode, decode_checked, PartDigest, Scratch};
use sdwan_contract::v2::encode::{decode_owned, Message};

/// Payload v2: any bytes as a message. The decoder never panics, not even without the door
/// (`decode_checked`); the heap-free decoder and
/// the owned one agree; what decodes re-encodes to bytes that decode to the same logical
/// content and re-encode to themselves (one spelling per content); a part's items sum to the
/// same digest before and after.
pub fn v2_decode(data: &[u8]) {
    let mut scratch = Box::new(Scratch::new());
    // The reader behind the door never panics, even on bytes the door would refuse.
    let _ = decode_checked(data, &mut scratch, &mut PartDigest::default());
    let mut sum = PartDigest::default();
    let heap_free = decode(data, &mut scratch, &mut sum);
    let owned = decode_owned(data);
    assert_eq!(
        heap_free.as_ref().err(),
        owned.as_ref().err(),
        "the two decodings disagree"
    );
    let Ok(msg) = owned else {
        return;
    };
    let bytes = msg.encode().expect("an accepted message encodes");
    let again = decode_owned(&bytes).expect("the re-encoded message decodes");
    assert_eq!(again, msg, "re-encoding changed the content");
    assert_eq!(
        again.encode().unwrap(),
        bytes,
        "two spellings of one content"
    );
    if let Message::Part(_) = msg {
        let mut sum2 = PartDigest::default();
        decode(&bytes, &mut scratch, &mut sum2).unwrap();
        assert_eq!(sum.sum, sum2.sum, "the digest depends on the spelling");
    }
}

use sdwan_contract::v2::accept::{self, PartAction, PartSet, Progress};
use sdwan_contract::v2::encode::{Delta, Service, Snapshot};
use sdwan_contract::v2::{Family, Node, Port, Str, Tier, Version, ZoneHeader};

/// The fuzzer's bytes as a stream of choices (zero when used up).
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }
}

const TIERS: [Tier; 3] = [Tier::Near, Tier::Zone, Tier::Other];
const PORTS: [&str; 4] = [
    "_53._udp:30053",
    "_dns._tcp:30054",
    "_http._tcp:30080",
    "_http._udp:30081",
];

fn gen_node(c: &mut Choices, i: usize, tier: Tier) -> Node {
    let b = c.byte();
    Node {
        name: Str::new(&format!("n{i}-{}", b % 3)).unwrap(),
        tier,
        v4: (b & 4 == 0).then(|| std::net::Ipv4Addr::new(10, 0, b, i as u8)),
        v6: (b & 12 != 0)
            .then(|| std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, u16::from(b), i as u16)),
    }
}

fn gen_service(c: &mut Choices, slots: usize) -> Service {
    let b = c.byte();
    let ports = PORTS
        .iter()
        .enumerate()
        .filter(|(k, _)| b & (1 << k) != 0)
        .map(|(_, p)| Port::parse(p).unwrap())
        .collect();
    let mut hosts: Vec<u16> = (0..slots as u16).filter(|_| c.byte() & 1 == 1).collect();
    if hosts.is_empty() {
        hosts.push(c.below(slots) as u16);
    }
    Service {
        ns: ["a", "b", "c"][c.below(3)].into(),
        name: ["x", "y", "z", "w"][c.below(4)].into(),
        short: b & 16 != 0,
        ports,
        hosts,
    }
}

fn insert(s: &mut Snapshot, svc: Service) {
    match s
        .services
        .binary_search_by(|x| (&x.ns[..], &x.name[..]).cmp(&(&svc.ns[..], &svc.name[..])))
    {
        Ok(k) => s.services[k] = svc,
        Err(k) => s.services.insert(k, svc),
    }
}

fn gen_snapshot(c: &mut Choices) -> Snapshot {
    let slots = 1 + c.below(12);
    let mut tier = Tier::Near;
    let mut nodes = Vec::new();
    for i in 0..slots {
        tier = tier.max(TIERS[c.below(3)]);
        nodes.push((c.byte() % 5 != 0).then(|| gen_node(c, i, tier)));
    }
    let mut s = Snapshot {
        gateway: "gw-1".into(),
        version: Version(u64::from(c.byte()).wrapping_sub(100)),
        zone: ZoneHeader {
            suffix: Str::new("k8s.internal").unwrap(),
            local: Str::new("local").unwrap(),
            ttl: 30,
            service_ttl: 10,
            family: [Family::Dual, Family::Ipv4, Family::Ipv6][c.below(3)],
            nodes: slots as u16,
            probe: None,
        },
        nodes,
        services: Vec::new(),
    };
    for _ in 0..c.below(8) {
        let svc = gen_service(c, slots);
        insert(&mut s, svc);
    }
    s
}

fn mutate(s: &mut Snapshot, c: &mut Choices) {
    let slots = s.nodes.len();
    let before = s.clone();
    match c.below(6) {
        0 => s.nodes[c.below(slots)] = None,
        1 => {
            let i = c.below(slots);
            let tier = TIERS[c.below(3)];
            s.nodes[i] = Some(gen_node(c, i, tier));
        }
        2 if !s.services.is_empty() => {
            let k = c.below(s.services.len());
            s.services.remove(k);
        }
        3 => {
            let svc = gen_service(c, slots);
            insert(s, svc);
        }
        4 if !s.services.is_empty() => {
            let k = c.below(s.services.len());
            let h = c.below(slots) as u16;
            let hosts = &mut s.services[k].hosts;
            match hosts.binary_search(&h) {
                Ok(at) if hosts.len() > 1 => {
                    hosts.remove(at);
                }
                Ok(_) => {}
                Err(at) => hosts.insert(at, h),
            }
        }
        _ if !s.services.is_empty() => {
            let k = c.below(s.services.len());
            s.services[k].short = !s.services[k].short;
        }
        _ => {}
    }
    if s.check().is_err() {
        *s = before;
    }
}

/// Payload v2 content from the fuzzer's choices: a small snapshot and a chain of changes.
/// Every snapshot encodes, decodes and assembles (heap-free `PartSet` and owned `assemble`)
/// back to itself; every delta between consecutive versions encodes, decodes to itself, and
/// applied to the older content gives exactly the newer, but not to any other version.
pub fn v2_delta(data: &[u8]) {
    let mut c = Choices(data);
    let mut cur = gen_snapshot(&mut c);
    if cur.check().is_err() {
        return; // e.g. two nodes with one name
    }
    for _ in 0..1 + c.below(6) {
        check_snapshot(&cur);
        let mut next = cur.clone();
        for _ in 0..1 + c.below(4) {
            mutate(&mut next, &mut c);
        }
        next.version = cur.version.next(u64::from(c.byte()));
        let d = Delta::between(&cur, &next).expect("same settings and slots");
        let bytes = d.encode().expect("a delta of valid content encodes");
        let Ok(Message::Delta(back)) = decode_owned(&bytes) else {
            panic!(
                "the delta does not decode: {}",
                String::from_utf8_lossy(&bytes)
            );
        };
        assert_eq!(back, d);
        let mut wrong = next.clone();
        assert!(wrong.apply(&back).is_err());
        assert_eq!(wrong, next);
        cur.apply(&back).expect("applies to its base");
        assert_eq!(cur, next);
    }
}

fn check_snapshot(s: &Snapshot) {
    let parts = s.encode().expect("valid content encodes");
    let msgs: Vec<Message> = parts
        .iter()
        .map(|p| decode_owned(p).expect("decodes"))
        .collect();
    assert_eq!(&Snapshot::assemble(&msgs).expect("assembles"), s);
    let mut scratch = Box::new(Scratch::new());
    let mut set = PartSet::new();
    let mut done = false;
    for p in &parts {
        let mut items = PartDigest::default();
        let env = decode(p, &mut scratch, &mut items).unwrap();
        if accept::part(None, set.staging(), env.version, env.digest) == PartAction::Restart {
            set.restart(&env);
        }
        done = set.add(&env, items.nodes, items.sum) == Ok(Progress::Complete);
    }
    assert!(done, "the parts do not complete");
}

use sdwan_contract::v2::proxy::{self as proxy_v2, ProxyMessage, ProxySnapshot};

/// Proxy payload v2: any bytes as a proxy message. The decoder never panics, not even without
/// the door; what decodes re-encodes to bytes that decode to the same content and re-encode
/// to themselves (one spelling per content); a part on its own assembles or is refused,
/// never panics, and what assembles encodes again.
pub fn proxy_v2(data: &[u8]) {
    let _ = proxy_v2::decode_checked(data);
    let Ok(msg) = proxy_v2::decode(data) else {
        return;
    };
    let bytes = msg.encode().expect("an accepted message encodes");
    let again = proxy_v2::decode(&bytes).expect("the re-encoded message decodes");
    assert_eq!(again, msg, "re-encoding changed the content");
    assert_eq!(
        again.encode().unwrap(),
        bytes,
        "two spellings of one content"
    );
    if let ProxyMessage::Part(_) = msg {
        if let Ok(snap) = ProxySnapshot::assemble(&[msg]) {
            let parts = snap.encode().expect("an assembled snapshot encodes");
            let msgs: Vec<ProxyMessage> = parts
                .iter()
                .map(|p| proxy_v2::decode(p).expect("an encoded part decodes"))
                .collect();
            assert_eq!(ProxySnapshot::assemble(&msgs).unwrap(), snap);
        }
    }
}

use sdwan_contract::v2::proxy::follow::{Follower, Source, Step};
use sdwan_contract::v2::proxy::{ProxyDelta, ProxyHeader, ProxyPort, ProxyService};

fn gen_proxy_service(c: &mut Choices, slots: usize) -> ProxyService {
    const PORTS: [&str; 4] = [
        "http/TCP/80:30080",
        "8080/TCP/8080:30081",
        "dns/UDP/53:30053",
        "sig/SCTP/9:30009",
    ];
    let b = c.byte();
    let mut nodes: Vec<u16> = (0..c.below(4)).map(|_| c.below(slots) as u16).collect();
    nodes.sort_unstable();
    nodes.dedup();
    ProxyService {
        ns: ["a", "b"][c.below(2)].to_string(),
        name: format!("s{}", c.below(6)),
        unique: b & 1 != 0,
        ports: PORTS[..c.below(PORTS.len() + 1)]
            .iter()
            .map(|p| ProxyPort::parse(p).unwrap())
            .collect(),
        here: b & 2 != 0,
        nodes: if slots == 0 { Vec::new() } else { nodes },
    }
}

fn put_proxy_service(s: &mut ProxySnapshot, svc: ProxyService) {
    match s
        .services
        .binary_search_by(|x| x.key().cmp(&(svc.ns.as_str(), svc.name.as_str())))
    {
        Ok(i) => s.services[i] = svc,
        Err(i) => s.services.insert(i, svc),
    }
}

fn mutate_proxy(s: &mut ProxySnapshot, c: &mut Choices) {
    let slots = s.nodes.len();
    match c.below(4) {
        0 if !s.services.is_empty() => {
            let i = c.below(s.services.len());
            s.services.remove(i);
        }
        1 if slots > 0 => {
            let i = c.below(slots);
            s.nodes[i] = if s.nodes[i].is_some() {
                None
            } else {
                Some(format!("w{i}"))
            };
        }
        _ => {
            let svc = gen_proxy_service(c, slots);
            put_proxy_service(s, svc);
        }
    }
}

/// Checks the steps of a follower: served content is what the master published at that
/// version, and versions only go forward.
fn check(
    published: &std::collections::BTreeMap<u64, ProxySnapshot>,
    f: &mut Follower,
    steps: Vec<Step>,
    last: &mut Option<Version>,
) {
    for s in steps {
        if let Step::Serve(content) = s {
            let want = published
                .get(&content.version.0)
                .expect("serves a version the master published");
            assert_eq!(&content, want, "served content differs from the master's");
            if let Some(l) = *last {
                assert!(content.version.is_newer_than(l), "went back or stood still");
            }
            *last = Some(content.version);
            f.served(content);
        }
    }
}

/// Delivers a retained snapshot (parts in an order the choices pick) and tail (before, after
/// or both), the steps of each message carried out before the next, as a driver does.
fn deliver_snapshot(
    published: &std::collections::BTreeMap<u64, ProxySnapshot>,
    f: &mut Follower,
    c: &mut Choices,
    last: &mut Option<Version>,
    snap: &ProxySnapshot,
    tail: Option<Vec<u8>>,
) {
    if let Some(t) = &tail {
        if c.byte() & 1 == 0 {
            let s = f.handle(Source::Tail, t);
            check(published, f, s, last);
        }
    }
    let mut parts = snap.encode().unwrap();
    for i in (1..parts.len()).rev() {
        parts.swap(i, c.below(i + 1));
    }
    for p in &parts {
        let s = f.handle(Source::Part, p);
        check(published, f, s, last);
    }
    if let Some(t) = &tail {
        let s = f.handle(Source::Tail, t);
        check(published, f, s, last);
    }
}

/// A worker following its proxy stream (`proxy::follow::Follower`) through what the
/// fuzzer's choices deliver: deltas lost, repeated or late, reconnections that read the
/// retained snapshot (parts in any order) and tail. It serves only content the master
/// published, at that content's version, never going back; after reading the current retained
/// snapshot it holds the current content.
pub fn proxy_follow(data: &[u8]) {
    let mut c = Choices(data);
    let slots = c.below(5);
    let mut cur = ProxySnapshot {
        node: "w0".into(),
        version: Version(u64::from(c.byte()) << 56),
        proxy: ProxyHeader {
            suffix: "k8s.internal".into(),
            local: "local".into(),
            listen_port: 80,
            upstream_host: "127.0.0.1".into(),
            dir: "/etc/nginx/sdwan".into(),
            ipv6: false,
            nodes: slots as u16,
        },
        nodes: (0..slots).map(|i| Some(format!("w{i}"))).collect(),
        services: Vec::new(),
    };
    for _ in 0..c.below(6) {
        let svc = gen_proxy_service(&mut c, slots);
        put_proxy_service(&mut cur, svc);
    }
    cur.check().expect("generated content is valid");
    let mut published = std::collections::BTreeMap::new();
    published.insert(cur.version.0, cur.clone());
    let retained = cur.clone();
    let (mut f, _) = Follower::new("w0", None);
    let mut deltas: Vec<Vec<u8>> = Vec::new();
    let mut last_served: Option<Version> = None;
    for _ in 0..1 + c.below(8) {
        let mut next = cur.clone();
        for _ in 0..1 + c.below(3) {
            mutate_proxy(&mut next, &mut c);
        }
        // The master's clock, 64 ms behind to 191 ms ahead of the current version (versions
        // more than 2^63 apart are not comparable, RFC 1982; a master never jumps that far).
        let clock = cur
            .version
            .0
            .wrapping_add(u64::from(c.byte()))
            .wrapping_sub(64);
        next.version = cur.version.next(clock);
        let d = ProxyDelta::between(&cur, &next).unwrap().encode().unwrap();
        published.insert(next.version.0, next.clone());
        deltas.push(d.clone());
        match c.below(5) {
            0 => {} // lost
            1 => {
                // delivered twice
                let s = f.handle(Source::Delta, &d);
                check(&published, &mut f, s, &mut last_served);
                let s = f.handle(Source::Delta, &d);
                check(&published, &mut f, s, &mut last_served);
            }
            2 if deltas.len() > 1 => {
                // an old one comes late
                let old = deltas[c.below(deltas.len())].clone();
                let s = f.handle(Source::Delta, &old);
                check(&published, &mut f, s, &mut last_served);
            }
            3 => {
                // a reconnection: the retained snapshot and tail
                let tail = ProxyDelta::between(&retained, &next).map(|t| t.encode().unwrap());
                deliver_snapshot(
                    &published,
                    &mut f,
                    &mut c,
                    &mut last_served,
                    &retained,
                    tail,
                );
            }
            _ => {
                let s = f.handle(Source::Delta, &d);
                check(&published, &mut f, s, &mut last_served);
            }
        }
        cur = next;
    }
    // The master republishes the snapshot at the current version: the worker catches up.
    deliver_snapshot(&published, &mut f, &mut c, &mut last_served, &cur, None);
    assert_eq!(
        f.content(),
        Some(&cur),
        "not current after reading the retained snapshot"
    );
}
