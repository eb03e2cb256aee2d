//! Proxy payload v2 per worker (`sdwan_plan::proxy_v2`, issue 11 item 6) against proxy
//! payload v1: the files a worker renders from its v2 content are the files v1 carries; the
//! content crosses the wire (encode, decode, assemble) unchanged; a worker going NotReady is a
//! one-slot delta; at 5,000 services x 500 workers every message fits.
//!
//! `cargo nextest run -p sdwan-plan --test proxy_v2 --no-capture` prints the figures.

mod common;

use std::collections::BTreeMap;

use common::walk::random_change;
use sdwan_contract::v2::proxy::{decode, ProxyDelta, ProxyMessage, ProxySnapshot};
use sdwan_contract::v2::{Version, MAX_MESSAGE_BYTES};
use sdwan_plan::{plan, proxy_v2, Change, Planner, Snapshot, Topology};
use sdwan_testsupport::Rng;

#[path = "../../../bench/plan/synthetic.rs"]
#[allow(dead_code)]
mod synthetic;

fn example() -> (Snapshot, Topology) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let cluster = std::fs::read(format!("{root}/cluster.json")).unwrap();
    let topo = std::fs::read_to_string(format!("{root}/topology.toml")).unwrap();
    (
        Snapshot::from_kubectl_json(&cluster).unwrap(),
        Topology::from_toml(&topo).unwrap(),
    )
}

fn wire(s: &ProxySnapshot) -> ProxySnapshot {
    let parts = s.encode().unwrap();
    assert!(parts.iter().all(|p| p.len() <= MAX_MESSAGE_BYTES));
    let msgs: Vec<ProxyMessage> = parts.iter().map(|p| decode(p).unwrap()).collect();
    ProxySnapshot::assemble(&msgs).unwrap()
}

/// Each worker of the example, with the example topology and with a `[proxy]` table that
/// changes every setting: what it renders from v2 is byte for byte what v1 carries.
#[test]
fn a_worker_renders_from_v2_the_files_v1_carries() {
    let (s, t) = example();
    let extra = "[proxy]\nlisten_port = 8080\nupstream_host = \"::1\"\ndir = \"/srv/sdwan/\"\n";
    let t2 = Topology::from_toml(&format!(
        "{}\n{extra}",
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/topology.toml"
        ))
        .unwrap()
    ))
    .unwrap();
    for topo in [&t, &t2] {
        let p = plan(&s, topo);
        let proxies = proxy_v2::proxies(&s, &p);
        assert_eq!(
            proxies.nodes().collect::<Vec<_>>(),
            p.nodes.keys().map(String::as_str).collect::<Vec<_>>()
        );
        for (node, content) in &p.nodes {
            let v1: serde_json::Value = serde_json::from_slice(&content.render(node, 1)).unwrap();
            let snap = proxies.snapshot(node, Version(7)).unwrap();
            snap.check().unwrap();
            let back = wire(&snap);
            assert_eq!(back, snap, "{node}");
            assert_eq!(
                sdwan_render::render_conf(&back),
                v1["files"]["sdwan.conf"].as_str().unwrap(),
                "{node}: sdwan.conf"
            );
            assert_eq!(
                sdwan_render::render_help(&back),
                v1["files"]["help.html"].as_str().unwrap(),
                "{node}: help.html"
            );
            // `here` is what v1 lists as this worker's services.
            let here: Vec<&str> = back.here().map(|s| s.name.as_str()).collect();
            let v1_here: Vec<&str> = v1["services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect();
            assert_eq!(here, v1_here, "{node}");
        }
    }
    assert!(proxy_v2::proxies(&s, &plan(&s, &t))
        .snapshot("cp1", Version(1))
        .is_none());
}

/// A small synthetic cluster: `nodes` workers, `services` services on 1-3 of them.
fn small(nodes: usize, services: usize, not_ready: Option<usize>) -> (Snapshot, Topology) {
    let mut rng = Rng::new(5);
    let mut s = Snapshot::new();
    for i in 0..nodes {
        s.apply_node(&synthetic::node(i, i % 2 == 0, Some(i) != not_ready))
            .unwrap();
    }
    for k in 0..services {
        let ns = format!("team-{}", k % 3);
        let name = format!("svc-{k:03}");
        s.apply_service(&synthetic::service(&ns, &name, 1 + k % 2, k))
            .unwrap();
        let hosts: Vec<usize> = (0..1 + rng.below(3)).map(|_| rng.below(nodes)).collect();
        let mut hosts = hosts;
        hosts.sort_unstable();
        hosts.dedup();
        s.apply_slice(&synthetic::slice(&ns, &name, &hosts))
            .unwrap();
    }
    let t = Topology::from_toml("[[gateway]]\nid = \"gw-1\"\nzone = \"zone-00\"\n").unwrap();
    (s, t)
}

/// A worker going NotReady empties its slot: for every other worker a delta (`node_drop` of
/// that slot and the services whose links or `here` change), never a new snapshot.
#[test]
fn a_worker_going_not_ready_is_a_one_slot_delta() {
    let (s1, t) = small(12, 40, None);
    let (s2, _) = small(12, 40, Some(3));
    let (p1, p2) = (plan(&s1, &t), plan(&s2, &t));
    let (a, b) = (proxy_v2::proxies(&s1, &p1), proxy_v2::proxies(&s2, &p2));
    assert!(b.snapshot("worker0003", Version(2)).is_none());
    for node in b.nodes() {
        let before = a.snapshot(node, Version(1)).unwrap();
        let after = b.snapshot(node, Version(2)).unwrap();
        let d = ProxyDelta::between(&before, &after).expect("a delta, not a snapshot");
        assert_eq!(d.node_drop, [3], "{node}");
        assert!(d.node_set.is_empty());
        // Services that linked to worker0003 lose the link; those only there are gone.
        for svc in &d.set {
            let old = before
                .services
                .iter()
                .find(|o| o.key() == svc.key())
                .unwrap();
            assert!(
                old.nodes.contains(&3) && !svc.nodes.contains(&3),
                "{node}: {svc:?}"
            );
        }
        for (ns, name) in &d.del {
            let old = before
                .services
                .iter()
                .find(|o| o.key() == (ns.as_str(), name.as_str()))
                .unwrap();
            assert_eq!(old.nodes, [3], "{node}");
        }
        let bytes = d.encode().unwrap();
        let ProxyMessage::Delta(back) = decode(&bytes).unwrap() else {
            panic!()
        };
        let mut applied = before.clone();
        applied.apply(&back).unwrap();
        assert_eq!(applied, after, "{node}");
    }
}

/// Issue 11's scale with plan-bench's synthetic cluster: every worker's snapshot encodes into
/// parts within the message limit, and one service moving is a small delta per worker.
#[test]
fn every_worker_at_5000_services_fits_in_messages_of_255_kib() {
    const NODES: usize = 500;
    const SERVICES: usize = 5000;
    let mut rng = Rng::new(1);
    let mut s = Snapshot::new();
    for i in 0..NODES {
        s.apply_node(&synthetic::node(i, rng.chance(5), true))
            .unwrap();
    }
    let mut names = Vec::new();
    for k in 0..SERVICES {
        let ns = format!("team-{:02}", k % 50);
        let name = format!("svc-{k:05}");
        let ports = 1 + usize::from(rng.chance(30));
        s.apply_service(&synthetic::service(&ns, &name, ports, k))
            .unwrap();
        let h = synthetic::replicas(&mut rng, NODES);
        s.apply_slice(&synthetic::slice(&ns, &name, &h)).unwrap();
        names.push((ns, name, h));
    }
    let t = Topology::from_toml("[[gateway]]\nid = \"gw-1\"\nzone = \"zone-00\"\n").unwrap();
    let p = plan(&s, &t);
    let proxies = proxy_v2::proxies(&s, &p);
    let (mut total, mut largest, mut parts_max, mut workers) = (0usize, 0usize, 0usize, 0usize);
    let mut before = Vec::new();
    for node in proxies.nodes() {
        let snap = proxies.snapshot(node, Version(1)).unwrap();
        let parts = snap.encode().unwrap();
        parts_max = parts_max.max(parts.len());
        for part in &parts {
            assert!(part.len() <= MAX_MESSAGE_BYTES, "{node}: {}", part.len());
            largest = largest.max(part.len());
            total += part.len();
        }
        workers += 1;
        before.push(snap);
    }
    println!(
        "{workers} workers, {SERVICES} services: {total} bytes of snapshots, at most {parts_max} parts, largest message {largest} bytes"
    );
    assert_eq!(workers, NODES);
    // One service's endpoint moves to another worker.
    let (ns, name, h) = &names[17];
    let mut moved = h.clone();
    let to = (0..NODES).find(|x| !moved.contains(x)).unwrap();
    moved[0] = to;
    moved.sort_unstable();
    s.apply_slice(&synthetic::slice(ns, name, &moved)).unwrap();
    let p2 = plan(&s, &t);
    let proxies2 = proxy_v2::proxies(&s, &p2);
    let mut egress = 0;
    let mut changed = 0;
    for old in &before {
        let new = proxies2.snapshot(&old.node, Version(2)).unwrap();
        let d = ProxyDelta::between(old, &new).unwrap();
        if !d.is_empty() {
            changed += 1;
            egress += d.encode().unwrap().len();
        }
    }
    println!("an endpoint moves: {changed} workers get a delta, {egress} bytes in all");
    assert!(egress < 500_000, "{egress} bytes");
}

/// The shared form the master's publisher keeps (`Proxies::proxy`, planned with
/// `Proxies::next` from the plan before) is the same content as `Proxies::snapshot` through
/// a random walk of cluster changes: snapshot, digest, comparison, and the delta from the
/// plan before and from one up to 25 plans back (as from the retained snapshot) equal to
/// `ProxyDelta::between` two whole snapshots.
#[test]
fn the_shared_form_is_the_same_content_through_a_random_walk() {
    let topology = Topology::from_toml("").unwrap();
    let (mut deltas, mut compared) = (0, 0);
    for seed in [20261203, 5, 6] {
        let mut rng = Rng::new(seed);
        let mut planner = Planner::new(Snapshot::new(), topology.clone());
        let mut version = Version(1);
        let mut prev = proxy_v2::proxies(planner.snapshot(), planner.plan());
        let mut kept: BTreeMap<String, proxy_v2::WorkerProxy> = BTreeMap::new();
        for step in 0..300 {
            let batch: Vec<Change> = (0..1 + rng.below(3))
                .map(|_| random_change(&mut rng))
                .collect();
            let what = format!("seed {seed} step {step}: {batch:?}");
            planner.update(batch);
            let next = version.next(0);
            let proxies = prev.next(planner.snapshot(), planner.plan());
            let scratch = proxy_v2::proxies(planner.snapshot(), planner.plan());
            for node in proxies.nodes() {
                let new = proxies.snapshot(node, next).unwrap();
                assert_eq!(Some(&new), scratch.snapshot(node, next).as_ref(), "{what}");
                let nz = proxies.proxy(node, next).unwrap();
                assert_eq!(nz.snapshot(), new, "{node} after {what}");
                assert_eq!(nz.digest(), new.digest(), "{node} after {what}");
                if let Some(oz) = prev.proxy(node, version) {
                    let old = prev.snapshot(node, version).unwrap();
                    let d = proxy_v2::WorkerProxy::delta(&oz, &nz);
                    assert_eq!(d, ProxyDelta::between(&old, &new), "{node} after {what}");
                    deltas += usize::from(d.is_some_and(|d| !d.is_empty()));
                    let mut same = old.clone();
                    same.version = next;
                    assert_eq!(oz.same_content(&nz), same == new, "{node} after {what}");
                }
                if let Some(k) = kept.get(node) {
                    let ks = k.snapshot();
                    assert_eq!(
                        proxy_v2::WorkerProxy::delta(k, &nz),
                        ProxyDelta::between(&ks, &new),
                        "{node}, kept, after {what}"
                    );
                    compared += 1;
                }
                if step % 25 == 0 || !kept.contains_key(node) {
                    kept.insert(node.to_string(), nz);
                }
            }
            prev = proxies;
            version = next;
        }
    }
    assert!(
        deltas > 300 && compared > 2000,
        "{deltas} deltas, {compared} compared"
    );
}
