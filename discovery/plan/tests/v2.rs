//! Payload v2 against v1: every scenario of `tests/scenarios` and the random walk of
//! `tests/incremental.rs` are planned both ways; each v2 snapshot is encoded, decoded and
//! assembled again (the wire), then expanded into the v1 records it stands for by a
//! reference written here from the rules (`docs/planning.md`, "Payload v2"), and compared
//! with the v1 planner's zone. The differences by design are asserted as such.

mod common;

use std::collections::BTreeMap;

use common::scenario::*;
use common::walk::*;
use common::*;
use sdwan_contract::v2::encode::{decode_owned, Delta, Message, Snapshot as Wire};
use sdwan_contract::v2::{self, Version, MAX_MESSAGE_BYTES};
use sdwan_plan::{plan, v2 as pv2, Change, Planner, RecordType, Snapshot, Topology};
use sdwan_testsupport::Rng;

type Rec = (String, RecordType, String, Option<u32>);

/// The v1 records a v2 snapshot stands for, from the rules:
/// - the apex TXT is a constant of every zone (not carried);
/// - a candidate is a present slot with an address of a family the policy gives out;
/// - `local`: the first candidate's addresses, of the families the policy gives out;
/// - `<node>`: every present slot whose name is a DNS label other than the local label, its
///   own addresses of the policy's families;
/// - a service's names (`<service>.<ns>`, and `<service>` when `short`): the first candidate
///   among its hosts (ascending slot = nearest first), both families from that node; none
///   when no host is a candidate; `service_ttl` when it differs from `ttl`;
/// - per port, SRV `<rank> 0 <node_port> <node>` over the hosts that are candidates with a
///   `<node>` name, nearest first, rank counted among those; `srv_cap` keeps the nearest (v1's
///   cap; `None`: all, as v2 answers).
fn expand(s: &Wire, srv_cap: Option<usize>) -> Vec<Rec> {
    let z = &s.zone;
    let (v4, v6) = match z.family {
        v2::Family::Dual => (true, true),
        v2::Family::Ipv4 => (true, false),
        v2::Family::Ipv6 => (false, true),
    };
    let cand = |i: u16| {
        s.nodes[usize::from(i)].filter(|n| (v4 && n.v4.is_some()) || (v6 && n.v6.is_some()))
    };
    let mut out: Vec<Rec> = vec![("@".into(), RecordType::Txt, "sdwan-discovery".into(), None)];
    let addr = |out: &mut Vec<Rec>, name: &str, n: &v2::Node, ttl: Option<u32>| {
        if let Some(a) = n.v4.filter(|_| v4) {
            out.push((name.into(), RecordType::A, a.to_string(), ttl));
        }
        if let Some(a) = n.v6.filter(|_| v6) {
            out.push((name.into(), RecordType::Aaaa, a.to_string(), ttl));
        }
    };
    if let Some(n) = (0..z.nodes).find_map(cand) {
        addr(&mut out, z.local.as_str(), &n, None);
    }
    for n in s.nodes.iter().flatten().filter(|n| n.is_named(z)) {
        addr(&mut out, n.name.as_str(), n, None);
    }
    let ttl = (z.service_ttl != z.ttl).then_some(z.service_ttl);
    for svc in &s.services {
        let fq = format!("{}.{}", svc.name, svc.ns);
        let Some(first) = svc.hosts.iter().find_map(|&h| cand(h)) else {
            continue;
        };
        addr(&mut out, &fq, &first, ttl);
        if svc.short {
            addr(&mut out, &svc.name, &first, ttl);
        }
        let targets: Vec<v2::Node> = svc
            .hosts
            .iter()
            .filter_map(|&h| cand(h))
            .filter(|n| n.is_named(z))
            .take(srv_cap.unwrap_or(usize::MAX))
            .collect();
        for p in &svc.ports {
            let owner = format!("_{}._{}.{fq}", p.label, p.proto.as_str());
            for (rank, t) in targets.iter().enumerate() {
                let data = format!("{rank} 0 {} {}", p.node_port, t.name);
                out.push((owner.clone(), RecordType::Srv, data, ttl));
            }
        }
    }
    out.sort();
    out
}

fn v1_records(p: &sdwan_plan::Plan, gw: &str) -> Vec<Rec> {
    let mut v: Vec<Rec> = p.gateways[gw]
        .records()
        .into_iter()
        .map(|r| (r.name, r.type_, r.data, r.ttl))
        .collect();
    v.sort();
    v
}

/// The cluster as v2 carries it: without the nodes whose names Kubernetes never gives
/// (`v2::Warning::NodeNameNotCarried`). Planned with v1, it must give the same records as
/// the expansion, but for SRV sets of ports whose names Kubernetes never gives
/// (`PortNameNotCarried`), which the comparison leaves out of the v1 side.
fn carried(s: &Snapshot) -> Snapshot {
    let mut t = s.clone();
    for n in s.nodes().keys().filter(|n| !v2::is_node_name(n)) {
        t.delete_node(n);
    }
    t
}

fn without_uncarried_ports(mut v: Vec<Rec>) -> Vec<Rec> {
    v.retain(|(name, t, _, _)| {
        *t != RecordType::Srv
            || name
                .split('.')
                .next()
                .and_then(|l| l.strip_prefix('_'))
                .is_some_and(v2::is_port_label)
    });
    v
}

/// Through the wire: encode, decode every part, assemble. Returns the assembled snapshot.
fn wire(s: &Wire) -> Wire {
    s.check().unwrap_or_else(|e| panic!("{}: {e}", s.gateway));
    let parts = s.encode().unwrap();
    let mut decoded = Vec::new();
    for p in &parts {
        assert!(p.len() <= MAX_MESSAGE_BYTES);
        let m = decode_owned(p).unwrap();
        assert!(matches!(m, Message::Part(_)), "not a part: {m:?}");
        decoded.push(m);
    }
    let back = Wire::assemble(&decoded).unwrap();
    assert_eq!(&back, s, "{}: the wire changed the snapshot", s.gateway);
    back
}

/// Checks one state; returns the number of differences v1 has from the expansion, all of
/// them explained (asserted here).
fn check_state(snapshot: &Snapshot, topology: &Topology, what: &str) -> usize {
    let p1 = plan(snapshot, topology);
    let p1c = plan(&carried(snapshot), topology);
    let zones = pv2::zones(snapshot, topology);
    let mut explained = 0;
    for gw in zones.gateways() {
        let s = zones.snapshot(gw, Version(7)).unwrap();
        let s = wire(&s);
        let truncated = p1
            .warnings
            .iter()
            .any(|w| matches!(w, sdwan_plan::Warning::ZoneTruncated { .. }));
        assert!(!truncated, "{what}: v1 truncated; compare only whole zones");
        let v1 = without_uncarried_ports(v1_records(&p1c, gw));
        let got = expand(&s, Some(sdwan_plan::plan::MAX_SRV_TARGETS));
        if got != v1 {
            let only_v1: Vec<&Rec> = v1.iter().filter(|r| !got.contains(r)).collect();
            let only_v2: Vec<&Rec> = got.iter().filter(|r| !v1.contains(r)).collect();
            panic!("{what}: {gw}: v1 only {only_v1:#?}\nv2 only {only_v2:#?}");
        }
        let full = v1_records(&p1, gw);
        if full != v1 {
            explained += 1;
        }
    }
    explained
}

#[test]
fn every_scenario_expands_to_the_v1_zone() {
    let files = scenario_files();
    assert!(files.len() >= 6, "scenarios: {files:?}");
    let mut states = 0;
    let mut explained = BTreeMap::new();
    for f in &files {
        let sc: Scenario = toml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let topology = Topology::from_toml(&sc.topology).unwrap();
        let mut snapshot = Snapshot::new();
        for n in &sc.node {
            snapshot.apply_node(&node(n)).unwrap();
        }
        for s in &sc.service {
            snapshot.apply_service(&service(s)).unwrap();
            snapshot.apply_slice(&slice(&service_slice(s))).unwrap();
        }
        for s in &sc.slice {
            snapshot.apply_slice(&slice(s)).unwrap();
        }
        let mut planner = Planner::new(snapshot, topology.clone());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for step in &sc.step {
            planner.update(step.changes.iter().flat_map(ChangeSpec::changes));
            let what = format!("{name} step {:?}", step.name);
            *explained.entry(name.clone()).or_insert(0) +=
                check_state(planner.snapshot(), &topology, &what);
            states += 1;
        }
    }
    assert!(states > 20, "{states} states");
    // The one scenario with a node name the API server never gives (`Worker3`): v1 answers
    // with it, v2 leaves it out (documented); nowhere else do the zones differ.
    let differing: Vec<&String> = explained
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(f, _)| f)
        .collect();
    assert_eq!(differing, ["names.toml"], "{explained:?}");
}

#[test]
fn a_node_name_the_api_server_never_gives_is_left_out_with_a_warning() {
    let mut s = Snapshot::new();
    for (name, ip) in [("worker1", "10.0.0.1"), ("Worker3", "10.0.0.3")] {
        s.apply_node(&node(&NodeSpec {
            name: name.into(),
            zone: None,
            ipv4: Some(ip.into()),
            ipv6: None,
            ready: true,
            control_plane: false,
        }))
        .unwrap();
    }
    let svc = ServiceSpec {
        namespace: "default".into(),
        name: "syslog".into(),
        type_: "NodePort".into(),
        expose: None,
        ports: vec![PortSpec {
            name: Some("syslog".into()),
            protocol: "UDP".into(),
            port: 514,
            node_port: Some(30514),
        }],
        ready: vec!["Worker3".into()],
        unready: Vec::new(),
        terminating: Vec::new(),
    };
    s.apply_service(&service(&svc)).unwrap();
    s.apply_slice(&slice(&service_slice(&svc))).unwrap();
    let t = Topology::from_toml("[[gateway]]\nid = \"gw-1\"\n").unwrap();
    let z = pv2::zones(&s, &t);
    assert_eq!(
        z.warnings(),
        [pv2::Warning::NodeNameNotCarried {
            node: "Worker3".into()
        }]
    );
    let snap = z.snapshot("gw-1", Version(1)).unwrap();
    assert_eq!(snap.nodes.len(), 1);
    assert!(snap.services.is_empty(), "{:?}", snap.services);
    // v1 answers syslog.default with Worker3's address.
    let v1 = v1_records(&plan(&s, &t), "gw-1");
    assert!(v1
        .iter()
        .any(|r| r.0 == "syslog.default" && r.2 == "10.0.0.3"));
}

#[test]
fn a_port_name_the_api_server_never_gives_gets_no_srv_set_with_a_warning() {
    let mut s = Snapshot::new();
    s.apply_node(&node(&NodeSpec {
        name: "worker1".into(),
        zone: None,
        ipv4: Some("10.0.0.1".into()),
        ipv6: None,
        ready: true,
        control_plane: false,
    }))
    .unwrap();
    let svc = ServiceSpec {
        namespace: "default".into(),
        name: "web".into(),
        type_: "NodePort".into(),
        expose: None,
        ports: vec![
            PortSpec {
                name: Some("a-port-name-longer-than-fifteen".into()),
                protocol: "TCP".into(),
                port: 80,
                node_port: Some(30080),
            },
            PortSpec {
                name: Some("http".into()),
                protocol: "TCP".into(),
                port: 81,
                node_port: Some(30081),
            },
        ],
        ready: vec!["worker1".into()],
        unready: Vec::new(),
        terminating: Vec::new(),
    };
    s.apply_service(&service(&svc)).unwrap();
    s.apply_slice(&slice(&service_slice(&svc))).unwrap();
    let t = Topology::from_toml("[[gateway]]\nid = \"gw-1\"\n").unwrap();
    let z = pv2::zones(&s, &t);
    assert!(
        matches!(z.warnings(), [pv2::Warning::PortNameNotCarried { port, .. }] if port == "a-port-name-longer-than-fifteen"),
        "{:?}",
        z.warnings()
    );
    let snap = z.snapshot("gw-1", Version(1)).unwrap();
    let ports: Vec<String> = snap.services[0]
        .ports
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(ports, ["_http._tcp:30081"]);
    // Everything else is v1's.
    assert_eq!(check_state(&s, &t, "port name"), 1);
}

/// Every state of the random walk expands to its v1 zone; between two states, a delta
/// exists unless the node slots or the settings changed, and applied to the old snapshot it
/// gives the new one (digest checked by `apply`); `Zones::delta` gives the same delta.
#[test]
fn random_walk_expands_to_the_v1_zone_and_deltas_apply() {
    let topology = Topology::from_toml(
        r#"
        [[gateway]]
        id = "gw-espoo"
        zone = "espoo"
        [[gateway]]
        id = "gw-oulu"
        zone = "oulu"
        near = ["worker5", "ghost"]
        [[gateway]]
        id = "gw-any"
        [[gateway]]
        id = "gw-oulu-v4"
        zone = "oulu"
        near = ["worker5"]
        family = "ipv4"
        [[gateway]]
        id = "gw-any-v6"
        family = "ipv6"
        "#,
    )
    .unwrap();
    let (mut deltas, mut snapshots, mut non_empty) = (0, 0, 0);
    for seed in [20261128, 1, 2, 3] {
        let mut rng = Rng::new(seed);
        let mut planner = Planner::new(Snapshot::new(), topology.clone());
        let mut version = Version(1);
        let mut prev = pv2::zones(planner.snapshot(), &topology);
        // A zone kept from an earlier plan per gateway (as the publisher keeps the retained
        // snapshot), renewed every 25 steps.
        let mut kept: BTreeMap<String, pv2::Zone> = BTreeMap::new();
        for step in 0..400 {
            let batch: Vec<Change> = (0..1 + rng.below(3))
                .map(|_| random_change(&mut rng))
                .collect();
            let what = format!("seed {seed} step {step}: {batch:?}");
            let slots_before = slot_nodes(planner.snapshot());
            planner.update(batch);
            check_state(planner.snapshot(), &topology, &what);
            let next_version = version.next(0);
            // Planned again from the plan before (services shared where unchanged): the same
            // content as planning from scratch.
            let zones = prev.next(planner.snapshot(), &topology);
            let scratch = pv2::zones(planner.snapshot(), &topology);
            let changed = zones.changed_since(Some(&prev));
            for gw in zones.gateways() {
                let old = prev.snapshot(gw, version).unwrap();
                let new = zones.snapshot(gw, next_version).unwrap();
                assert_eq!(Some(&new), scratch.snapshot(gw, next_version).as_ref());
                // The shared form: digest, delta and comparison without whole snapshots.
                let (oz, nz) = (
                    prev.zone(gw, version).unwrap(),
                    zones.zone(gw, next_version).unwrap(),
                );
                assert_eq!(nz.digest(), new.digest(), "{gw} after {what}");
                assert_eq!(
                    pv2::Zone::delta(&oz, &nz),
                    Delta::between(&old, &new),
                    "Zone::delta: {gw} after {what}"
                );
                let same = {
                    let mut o = old.clone();
                    o.version = next_version;
                    o == new
                };
                assert_eq!(oz.same_content(&nz), same, "{gw} after {what}");
                let k = kept.entry(gw.to_string()).or_insert_with(|| oz.clone());
                if k.version() != next_version {
                    let ks = k.snapshot();
                    assert_eq!(
                        pv2::Zone::delta(k, &nz),
                        Delta::between(&ks, &new),
                        "Zone::delta from {} steps back: {gw} after {what}",
                        step % 25
                    );
                }
                if step % 25 == 0 {
                    kept.insert(gw.to_string(), nz.clone());
                }
                // Zones::changed_since never misses a change (the master hands the publisher
                // only those gateways).
                if !changed.contains(&gw) {
                    let mut same = old.clone();
                    same.version = next_version;
                    assert_eq!(same, new, "changed_since missed {gw} after {what}");
                }
                if !new.services.is_empty() {
                    non_empty += 1;
                }
                let fast = zones.delta(&prev, gw, version, old.digest(), next_version);
                assert_eq!(
                    fast,
                    Delta::between(&old, &new),
                    "Zones::delta: {gw} after {what}"
                );
                match Delta::between(&old, &new) {
                    Some(d) => {
                        let mut applied = old.clone();
                        applied
                            .apply(&decoded_delta(&d))
                            .unwrap_or_else(|e| panic!("{gw}: {e} after {what}"));
                        assert_eq!(applied, new, "{gw} after {what}");
                        deltas += 1;
                    }
                    None => {
                        // Only when the slot nodes changed (added, deleted, control plane).
                        assert_ne!(
                            slots_before,
                            slot_nodes(planner.snapshot()),
                            "{gw}: no delta after {what}"
                        );
                        snapshots += 1;
                    }
                }
            }
            prev = zones;
            version = next_version;
        }
    }
    assert!(
        deltas > 2000 && snapshots > 50,
        "{deltas} deltas, {snapshots} snapshots"
    );
    assert!(non_empty > 1000, "only {non_empty} non-trivial zones");
}

#[test]
fn changed_since_names_every_gateway_at_first_and_none_without_a_change() {
    let topology = Topology::from_toml(
        "[[gateway]]\nid = \"gw-a\"\nzone = \"a\"\n[[gateway]]\nid = \"gw-b\"\n",
    )
    .unwrap();
    let mut rng = Rng::new(7);
    let mut planner = Planner::new(Snapshot::new(), topology.clone());
    planner.update((0..30).map(|_| random_change(&mut rng)).collect::<Vec<_>>());
    let zones = pv2::zones(planner.snapshot(), &topology);
    assert_eq!(zones.changed_since(None), ["gw-a", "gw-b"]);
    let again = pv2::zones(planner.snapshot(), &topology);
    assert!(again.changed_since(Some(&zones)).is_empty());
}

/// The nodes that have a slot, whether Ready or not.
fn slot_nodes(s: &Snapshot) -> Vec<String> {
    s.nodes()
        .values()
        .filter(|n| !n.control_plane)
        .map(|n| n.name.clone())
        .collect()
}

fn decoded_delta(d: &Delta) -> Delta {
    match decode_owned(&d.encode().unwrap()).unwrap() {
        Message::Delta(d) => d,
        m => panic!("not a delta: {m:?}"),
    }
}

/// A node going NotReady empties its slot and nothing else: the services it hosts keep it
/// among their hosts (the agent skips empty slots) until their endpoints change.
#[test]
fn a_node_going_not_ready_is_a_one_slot_delta() {
    let spec = |ready| NodeSpec {
        name: "worker2".into(),
        zone: Some("espoo".into()),
        ipv4: Some("10.0.0.2".into()),
        ipv6: None,
        ready,
        control_plane: false,
    };
    let mut s = Snapshot::new();
    for n in ["worker1", "worker3"] {
        s.apply_node(&node(&NodeSpec {
            name: n.into(),
            zone: Some("espoo".into()),
            ipv4: Some(format!("10.0.0.{}", &n[6..])),
            ipv6: None,
            ready: true,
            control_plane: false,
        }))
        .unwrap();
    }
    s.apply_node(&node(&spec(true))).unwrap();
    let svc = ServiceSpec {
        namespace: "default".into(),
        name: "web".into(),
        type_: "NodePort".into(),
        expose: None,
        ports: vec![PortSpec {
            name: Some("http".into()),
            protocol: "TCP".into(),
            port: 80,
            node_port: Some(30080),
        }],
        ready: vec!["worker2".into(), "worker3".into()],
        unready: Vec::new(),
        terminating: Vec::new(),
    };
    s.apply_service(&service(&svc)).unwrap();
    s.apply_slice(&slice(&service_slice(&svc))).unwrap();
    let t = Topology::from_toml("[[gateway]]\nid = \"gw-1\"\nzone = \"espoo\"\n").unwrap();
    let before = pv2::snapshot(&s, &t, "gw-1", Version(1)).unwrap();
    s.apply_node(&node(&spec(false))).unwrap();
    let after = pv2::snapshot(&s, &t, "gw-1", Version(2)).unwrap();
    let d = Delta::between(&before, &after).unwrap();
    assert_eq!(d.node_drop, [1]);
    assert!(d.node_set.is_empty() && d.set.is_empty() && d.del.is_empty() && d.hosts.is_empty());
    assert_eq!(after.services[0].hosts, [1, 2]);
    // What it answers is v1's: worker3 for web.default.
    check_state(&s, &t, "worker2 NotReady");
    let recs = expand(&after, None);
    assert!(recs.contains(&(
        "web.default".into(),
        RecordType::A,
        "10.0.0.3".into(),
        Some(10)
    )));
}

/// A node name that is a DNS label but too long for a DNS name with the suffix gets no
/// `<node>` record and is no SRV target in v1; v2's `Node::is_named` says the same.
#[test]
fn a_node_name_too_long_with_the_suffix_is_not_named_in_either() {
    let long = "n".repeat(63);
    let mut s = Snapshot::new();
    for (name, ip) in [(long.as_str(), "10.0.0.1"), ("worker2", "10.0.0.2")] {
        s.apply_node(&node(&NodeSpec {
            name: name.into(),
            zone: None,
            ipv4: Some(ip.into()),
            ipv6: None,
            ready: true,
            control_plane: false,
        }))
        .unwrap();
    }
    let svc = ServiceSpec {
        namespace: "default".into(),
        name: "web".into(),
        type_: "NodePort".into(),
        expose: None,
        ports: vec![PortSpec {
            name: Some("http".into()),
            protocol: "TCP".into(),
            port: 80,
            node_port: Some(30080),
        }],
        ready: vec![long.clone(), "worker2".into()],
        unready: Vec::new(),
        terminating: Vec::new(),
    };
    s.apply_service(&service(&svc)).unwrap();
    s.apply_slice(&slice(&service_slice(&svc))).unwrap();
    let suffix = ["s".repeat(63), "t".repeat(63), "u".repeat(63)].join(".");
    let t = Topology::from_toml(&format!(
        "suffix = \"{suffix}\"\n[[gateway]]\nid = \"gw-1\"\n"
    ))
    .unwrap();
    assert_eq!(check_state(&s, &t, "long node name"), 0);
    let recs = v1_records(&plan(&s, &t), "gw-1");
    assert!(!recs.iter().any(|r| r.0 == long || r.2.ends_with(&long)));
    assert!(recs.iter().any(|r| r.0 == "worker2"));
}
