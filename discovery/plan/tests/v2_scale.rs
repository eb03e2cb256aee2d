//! Payload v2 at issue 11's scale: plan-bench's synthetic cluster (`bench/plan/main.rs`:
//! 5,000 services x 500 workers, 2,000 gateways, seed 1). Every gateway's snapshot encodes
//! into parts within the message limit; one service change and one node going NotReady are
//! deltas within the 2 MB budget summed over all gateways. Figures are printed
//! (`--no-capture`), times are not asserted.
//!
//! `cargo nextest run -p sdwan-plan --test v2_scale --no-capture` (add
//! `--cargo-profile bench-release` for the times in `docs/planning.md`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sdwan_contract::v2::digest::header_hash;
use sdwan_contract::v2::encode::Delta;
use sdwan_contract::v2::{Version, ZoneHeader, MAX_MESSAGE_BYTES};
use sdwan_plan::{v2, Snapshot, Topology};
use sdwan_testsupport::Rng;

#[path = "../../../bench/plan/synthetic.rs"]
mod synthetic;
use synthetic::{node, replicas, service, slice, ZONES};

const SERVICES: usize = 5000;
const NODES: usize = 500;
const GATEWAYS: usize = 2000;

type ChangeFn<'a> = dyn Fn(&mut Snapshot) + 'a;
/// Issue 11: one service change delivered to all sessions together.
const DELTA_BUDGET: usize = 2_000_000;

struct Cluster {
    snapshot: Snapshot,
    topology: Topology,
    services: Vec<(String, String)>,
    hosts: Vec<Vec<usize>>,
    rng: Rng,
}

fn cluster() -> Cluster {
    let mut rng = Rng::new(1);
    let mut snapshot = Snapshot::new();
    for i in 0..NODES {
        snapshot.apply_node(&node(i, rng.chance(5), true)).unwrap();
    }
    let mut services = Vec::new();
    let mut hosts = Vec::new();
    for s in 0..SERVICES {
        let ns = format!("team-{:02}", s % 50);
        let name = format!("svc-{s:05}");
        let ports = 1 + usize::from(rng.chance(30));
        snapshot
            .apply_service(&service(&ns, &name, ports, s))
            .unwrap();
        let h = replicas(&mut rng, NODES);
        snapshot.apply_slice(&slice(&ns, &name, &h)).unwrap();
        services.push((ns, name));
        hosts.push(h);
    }
    let mut topo = String::new();
    for g in 0..GATEWAYS {
        topo.push_str(&format!(
            "[[gateway]]\nid = \"gw-{g:05}\"\nzone = \"zone-{:02}\"\n",
            rng.below(ZONES)
        ));
        if rng.chance(30) {
            topo.push_str(&format!(
                "near = [\"worker{:04}\", \"worker{:04}\"]\n",
                rng.below(NODES),
                rng.below(NODES)
            ));
        }
    }
    Cluster {
        snapshot,
        topology: Topology::from_toml(&topo).unwrap(),
        services,
        hosts,
        rng,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[test]
fn at_scale_every_part_fits_and_each_change_is_a_delta_within_budget() {
    let mut c = cluster();
    let start = Instant::now();
    let zones = v2::zones(&c.snapshot, &c.topology);
    let plan_time = start.elapsed();
    assert!(zones.warnings().is_empty(), "{:?}", zones.warnings());
    assert_eq!(zones.gateways().count(), GATEWAYS);

    // Every gateway's snapshot, encoded. An unoptimised build encodes one gateway per slot
    // order, the one with the longest id (gateways of a class differ only in `gateway`):
    // encoding all 2,000 takes minutes there.
    let all = !cfg!(debug_assertions);
    let mut longest: BTreeMap<usize, &str> = BTreeMap::new();
    for gw in zones.gateways() {
        let l = longest.entry(zones.class_of(gw).unwrap()).or_insert(gw);
        if gw.len() > l.len() {
            *l = gw;
        }
    }
    let chosen: Vec<&str> = if all {
        zones.gateways().collect()
    } else {
        longest.values().copied().collect()
    };
    let (mut build, mut encode) = (Duration::ZERO, Duration::ZERO);
    let (mut parts_hist, mut largest, mut total) = (BTreeMap::new(), 0, 0usize);
    let version = Version(1_764_694_800_000);
    let mut entries = 0;
    for &gw in &chosen {
        let t = Instant::now();
        let s = zones.snapshot(gw, version).unwrap();
        build += t.elapsed();
        let t = Instant::now();
        let parts = s.encode().unwrap_or_else(|e| panic!("{gw}: {e}"));
        encode += t.elapsed();
        for p in &parts {
            assert!(
                p.len() <= MAX_MESSAGE_BYTES,
                "{gw}: part of {} bytes",
                p.len()
            );
            largest = largest.max(p.len());
            total += p.len();
        }
        *parts_hist.entry(parts.len()).or_insert(0) += 1;
        entries = s.services.iter().map(|s| s.hosts.len()).sum::<usize>();
        assert_eq!(s.services.len(), SERVICES);
        assert_eq!(s.nodes.len(), NODES);
    }
    let n = chosen.len() as u32;
    println!(
        "{SERVICES} services x {NODES} workers x {GATEWAYS} gateways: {} slot orders",
        zones.classes()
    );
    println!("plan (v2::zones): {}", ms(plan_time));
    println!(
        "snapshot per gateway (Zones::snapshot): {} mean, x {GATEWAYS} = {}",
        ms(build / n),
        ms(build / n * GATEWAYS as u32)
    );
    println!(
        "encode per gateway (Snapshot::encode): {} mean, x {GATEWAYS} = {}",
        ms(encode / n),
        ms(encode / n * GATEWAYS as u32)
    );
    println!(
        "{n} gateways encoded: parts per snapshot {parts_hist:?}, largest part {largest} bytes (limit {MAX_MESSAGE_BYTES}), {} bytes per snapshot on average, {entries} host entries in the last",
        total / n as usize
    );

    // Three changes. A service with two replicas: its endpoints move; it gains one; a
    // worker hosting DaemonSets goes NotReady.
    let two = (0..SERVICES).find(|&s| c.hosts[s].len() == 2).unwrap();
    let free = |h: &[usize], rng: &mut Rng| loop {
        let n = rng.below(NODES);
        if !h.contains(&n) {
            return n;
        }
    };
    let mut moved = c.hosts[two].clone();
    moved[1] = free(&moved, &mut c.rng);
    moved.sort_unstable();
    let mut grown = c.hosts[two].clone();
    grown.push(free(&grown, &mut c.rng));
    grown.sort_unstable();
    let (ns, name) = c.services[two].clone();
    let down = 42;
    let changes: [(&str, Box<ChangeFn>); 3] = [
        (
            "a 2-replica service's endpoint moves",
            Box::new(|s: &mut Snapshot| s.apply_slice(&slice(&ns, &name, &moved)).unwrap()),
        ),
        (
            "a 2-replica service gains a replica",
            Box::new(|s: &mut Snapshot| s.apply_slice(&slice(&ns, &name, &grown)).unwrap()),
        ),
        (
            "a worker goes NotReady",
            Box::new(move |s: &mut Snapshot| {
                let v6 = s.nodes()[&format!("worker{down:04}")].ipv6.is_some();
                s.apply_node(&node(down, v6, false)).unwrap()
            }),
        ),
    ];
    let next = Version(version.0 + 1);
    // The digest each gateway holds: per class from one whole snapshot, the gateway's own
    // header swapped in (the digest is a sum over items).
    let mut digests: BTreeMap<usize, (String, sdwan_contract::v2::Digest)> = BTreeMap::new();
    let mut header: BTreeMap<usize, ZoneHeader> = BTreeMap::new();
    for gw in zones.gateways() {
        let class = zones.class_of(gw).unwrap();
        digests.entry(class).or_insert_with(|| {
            let s = zones.snapshot(gw, version).unwrap();
            header.insert(class, s.zone);
            (gw.to_owned(), s.digest())
        });
    }
    for (what, change) in &changes {
        let mut after = c.snapshot.clone();
        change(&mut after);
        let t = Instant::now();
        let zones2 = v2::zones(&after, &c.topology);
        let replan = t.elapsed();
        let mut delta_time = Duration::ZERO;
        // Each gateway's delta from the services that changed (`Zones::delta`); on every
        // 97th gateway the same as `Delta::between` two whole snapshots, and applying it
        // gives the new snapshot.
        let (mut sum, mut min, mut max) = (0usize, usize::MAX, 0usize);
        for (k, gw) in zones2.gateways().enumerate() {
            let class = zones2.class_of(gw).unwrap();
            assert_eq!(Some(class), zones.class_of(gw));
            let (rep, digest) = &digests[&class];
            let digest = digest
                .without(header_hash(rep, &header[&class]))
                .with(header_hash(gw, &header[&class]));
            let t = Instant::now();
            let d = zones2
                .delta(&zones, gw, version, digest, next)
                .unwrap_or_else(|| panic!("{what}: no delta for {gw}"));
            delta_time += t.elapsed();
            if k % 97 == 0 {
                let old = zones.snapshot(gw, version).unwrap();
                assert_eq!(old.digest(), digest);
                let new = zones2.snapshot(gw, next).unwrap();
                assert_eq!(Delta::between(&old, &new).as_ref(), Some(&d), "{gw}");
                let mut applied = old;
                applied.apply(&d).unwrap();
                assert_eq!(applied, new);
            }
            let bytes = d.encode().unwrap().len();
            sum += bytes;
            min = min.min(bytes);
            max = max.max(bytes);
        }
        println!(
            "delta, {what}: {min}..{max} bytes per gateway, {sum} bytes over {GATEWAYS} gateways (budget {DELTA_BUDGET}); v2::zones {}, Zones::delta for all gateways {}",
            ms(replan),
            ms(delta_time)
        );
        assert!(sum <= DELTA_BUDGET, "{what}: {sum} bytes");
    }
}
