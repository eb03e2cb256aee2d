//! The incremental planner against planning from scratch, over seeded random event
//! sequences; and the payload limits on a cluster too large for one zone.

mod common;

use std::collections::BTreeMap;

use common::walk::*;
use common::*;
use sdwan_plan::{plan, Change, Planner, RecordType, Snapshot, Topology, Warning};
use sdwan_testsupport::Rng;

#[test]
fn incremental_planning_equals_planning_from_scratch() {
    for seed in [20261128, 1, 2, 3] {
        random_walk(seed);
    }
}

fn random_walk(seed: u64) {
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
        id = "gw-any-2"
        near = ["nobody"]
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
    let mut rng = Rng::new(seed);
    let mut planner = Planner::new(Snapshot::new(), topology.clone());
    let mut non_empty = 0;
    for step in 0..400 {
        let before = planner.plan().clone();
        let batch: Vec<Change> = (0..1 + rng.below(3))
            .map(|_| random_change(&mut rng))
            .collect();
        let what = format!("seed {seed} step {step}: {batch:?}");
        let changed = planner.update(batch);
        let fresh = plan(planner.snapshot(), &topology);
        let p = planner.plan();
        assert_eq!(p.warnings, fresh.warnings, "{what}");
        assert!(p.nodes.keys().eq(fresh.nodes.keys()), "{what}");
        for (id, z) in &p.gateways {
            let bytes = z.render(id, 1);
            assert_eq!(bytes, fresh.gateways[id].render(id, 1), "{id} after {what}");
            assert!(z == &fresh.gateways[id], "{id}: PartialEq after {what}");
            // PartialEq agrees with the bytes, across plans.
            let same_bytes = before.gateways[id].render(id, 1) == bytes;
            assert_eq!(
                &before.gateways[id] == z,
                same_bytes,
                "{id}: PartialEq vs bytes after {what}"
            );
            if !same_bytes {
                assert!(
                    changed.gateways.contains(id),
                    "{id} not reported after {what}"
                );
            }
            agent_accepts(&bytes).unwrap_or_else(|e| panic!("{id}: {e} after {what}"));
            if z.records().len() > 3 {
                non_empty += 1;
            }
        }
        for (n, c) in &p.nodes {
            let bytes = c.render(n, 1);
            assert_eq!(bytes, fresh.nodes[n].render(n, 1), "proxy {n} after {what}");
            let same_bytes = before.nodes.get(n).map(|b| b.render(n, 1)) == Some(bytes);
            if let Some(b) = before.nodes.get(n) {
                assert_eq!(
                    b == c,
                    same_bytes,
                    "proxy {n}: PartialEq vs bytes after {what}"
                );
            }
            if !same_bytes {
                assert!(
                    changed.nodes.contains(n),
                    "proxy {n} not reported after {what}"
                );
            }
        }
    }
    // The random walk did reach states with services to answer.
    assert!(non_empty > 100, "only {non_empty} non-trivial zones");
}

#[test]
fn a_zone_too_large_is_cut_to_the_limits() {
    let mut s = Snapshot::new();
    let nodes: Vec<String> = (0..60).map(|i| format!("worker{i:02}")).collect();
    for (i, n) in nodes.iter().enumerate() {
        s.apply_node(&node(&NodeSpec {
            name: n.clone(),
            zone: Some(format!("z{}", i % 3)),
            ipv4: Some(format!("10.0.{}.{}", i / 200, i % 200 + 1)),
            ipv6: Some(format!("fd00::{:x}", i + 1)),
            ready: true,
            control_plane: false,
        }))
        .unwrap();
    }
    for k in 0..2500 {
        let spec = ServiceSpec {
            namespace: format!("ns{}", k % 10),
            name: format!("service-with-a-rather-long-name-{k:04}"),
            type_: "NodePort".into(),
            expose: None,
            ports: vec![
                PortSpec {
                    name: Some("http".into()),
                    protocol: "TCP".into(),
                    port: 80,
                    node_port: Some(30000 + (k % 2000) as i64),
                },
                PortSpec {
                    name: Some("metrics".into()),
                    protocol: "TCP".into(),
                    port: 9090,
                    node_port: Some(32000 + (k % 700) as i64),
                },
            ],
            ready: (0..40).map(|j| nodes[(k + j) % 60].clone()).collect(),
            unready: Vec::new(),
            terminating: Vec::new(),
        };
        s.apply_service(&service(&spec)).unwrap();
        s.apply_slice(&slice(&service_slice(&spec))).unwrap();
    }
    let t = Topology::from_toml("[[gateway]]\nid = \"gw-1\"\nzone = \"z1\"\n").unwrap();
    let p = plan(&s, &t);
    assert!(
        p.warnings
            .iter()
            .any(|w| matches!(w, Warning::ZoneTruncated { .. })),
        "{:?}",
        p.warnings
    );
    let z = &p.gateways["gw-1"];
    let bytes = z.render("gw-1", u32::MAX);
    let records = z.records();
    assert!(bytes.len() <= 1_048_576, "{} bytes", bytes.len());
    assert!(records.len() <= 10_000, "{} records", records.len());
    let mut rrsets: BTreeMap<(&str, RecordType), usize> = BTreeMap::new();
    for r in &records {
        *rrsets.entry((&r.name, r.type_)).or_default() += 1;
    }
    assert!(rrsets.values().all(|&n| n <= 32));
    agent_accepts(&bytes).unwrap();
    // The most important records survive: local, every node, every service name.
    let has = |name: &str| records.iter().any(|r| r.name == name);
    assert!(has("local"));
    assert!(nodes.iter().all(|n| has(n)));
    assert!(has("service-with-a-rather-long-name-2499.ns9"));
    // And the payload is used up to the limits rather than cut to nothing.
    assert!(records.len() > 9_000 || bytes.len() > 900_000);
}
