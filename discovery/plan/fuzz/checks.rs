//! The checks behind the fuzz targets, one function per target: each takes the fuzzer's
//! bytes and panics when a property does not hold. Shared with the crate's regression test
//! (`tests/regressions.rs`), which runs them over the seed corpus and every input a fuzzer
//! found (`tests/regressions/TARGET/`). Expects the root module to declare `mod common`
//! (`tests/common/mod.rs`).

// Each fuzz target uses one of these.
#![allow(dead_code)]

use crate::common::*;
use sdwan_plan::{plan, Change, Planner, Snapshot, Topology};
use std::sync::OnceLock;

const BASE: &str = include_str!("corpus/kubectl_json/list.json");

fn base() -> &'static Snapshot {
    static BASE_SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    BASE_SNAPSHOT.get_or_init(|| Snapshot::from_kubectl_json(BASE.as_bytes()).expect("seed loads"))
}

/// Gateways of each address policy (issue 13).
fn gateways() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(|| {
        Topology::from_toml(
            "[[gateway]]\nid = \"gw-a\"\nzone = \"espoo\"\n[[gateway]]\nid = \"gw-b\"\nnear = [\"worker2\"]\n\
             [[gateway]]\nid = \"gw-c\"\nzone = \"espoo\"\nfamily = \"ipv4\"\n\
             [[gateway]]\nid = \"gw-d\"\nnear = [\"worker2\"]\nfamily = \"ipv6\"\n",
        )
        .expect("topology loads")
    })
}

/// The kubectl JSON reader: any bytes as `kubectl get ... -o json` output. Must never panic;
/// a refused document leaves the snapshot it was merged into as it was; merging the same
/// document twice changes nothing more; whatever is accepted plans into zone payloads the
/// agent core accepts.
pub fn kubectl_json(data: &[u8]) {
    let fresh = Snapshot::from_kubectl_json(data);
    let mut merged = base().clone();
    match merged.merge_kubectl_json(data) {
        Err(e) => {
            assert_eq!(&merged, base(), "a refused document changed the snapshot");
            assert!(fresh.is_err(), "refused on merge, accepted alone");
            let _ = e.to_string();
        }
        Ok(()) => {
            let once = merged.clone();
            merged
                .merge_kubectl_json(data)
                .expect("accepted once, accepted twice");
            assert_eq!(merged, once, "merging the same document twice");
            for s in [&merged, &fresh.expect("accepted on merge, refused alone")] {
                let p = plan(s, gateways());
                for (id, z) in &p.gateways {
                    let bytes = z.render(id, 1);
                    if let Err(e) = agent_accepts(&bytes) {
                        panic!("{id}: the agent refuses the payload: {e}");
                    }
                }
                for (n, c) in &p.nodes {
                    let _ = c.render(n, 1);
                }
            }
        }
    }
}

/// The topology reader: any bytes as a topology file. Must never panic; an error names a line
/// inside the file; an accepted topology plans (with an empty cluster) into payloads the agent
/// core accepts.
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Topology::from_toml(text) {
        Err(e) => {
            if let Some(line) = e.line {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {line}"
                );
            }
            let _ = e.to_string();
        }
        Ok(t) => {
            let p = plan(&Snapshot::new(), &t);
            assert_eq!(p.gateways.len(), t.gateways.len());
            for (id, z) in &p.gateways {
                let bytes = z.render(id, 1);
                let mut out = vec![0u8; sdwan_agent_core::compiled_size_bound(bytes.len())];
                if let Err(e) = sdwan_agent_core::compile(&bytes, &mut out) {
                    panic!("{id}: the agent refuses the payload: {e}");
                }
            }
        }
    }
}

const NODES: [&str; 6] = ["worker1", "worker2", "worker3", "cp1", "ghost", "Bad_Name"];
const NAMESPACES: [&str; 3] = ["default", "staging", "kube-system"];
const SERVICES: [&str; 5] = ["web", "api", "worker1", "local", "x--y"];
const TOPOLOGIES: [&str; 3] = [
    "[[gateway]]\nid = \"gw-espoo\"\nzone = \"espoo\"\n[[gateway]]\nid = \"gw-oulu\"\nzone = \"oulu\"\nnear = [\"worker3\", \"ghost\"]\n[[gateway]]\nid = \"gw-any\"\n",
    "local_label = \"worker1\"\nservice_ttl = 0\n[[gateway]]\nid = \"gw-espoo\"\nnear = [\"worker2\", \"worker2\"]\n",
    "suffix = \"a.b\"\nexclude_namespaces = []\n[[gateway]]\nid = \"g\"\nzone = \"oulu\"\n",
];

/// Reads the input a byte at a time; zeros after the end.
struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn pick<'t>(&mut self, v: &[&'t str]) -> &'t str {
        v[self.byte() as usize % v.len()]
    }
    fn subset(&mut self) -> Vec<String> {
        let mask = self.byte();
        NODES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| n.to_string())
            .collect()
    }
}

fn change(b: &mut Bytes, op: u8) -> Change {
    match op % 6 {
        0 => {
            let i = b.byte() as usize % NODES.len();
            let f = b.byte();
            Change::Node(Box::new(node(&NodeSpec {
                name: NODES[i].to_string(),
                zone: [None, Some("espoo"), Some("oulu"), Some("")][(f & 3) as usize]
                    .map(String::from),
                ipv4: Some(format!("10.0.0.{}", i + 1)).filter(|_| f & 4 != 0),
                ipv6: Some(format!("fd00::{}", i + 1)).filter(|_| f & 8 != 0),
                ready: f & 16 != 0,
                control_plane: f & 32 != 0,
            })))
        }
        1 => Change::NodeDeleted(b.pick(&NODES).to_string()),
        2 => {
            let namespace = b.pick(&NAMESPACES).to_string();
            let name = b.pick(&SERVICES).to_string();
            let f = b.byte();
            let ports = (0..(f >> 6))
                .map(|p| {
                    let g = b.byte();
                    PortSpec {
                        name: [None, Some("http"), Some("grpc"), Some("")][(g & 3) as usize]
                            .map(String::from),
                        protocol: ["TCP", "UDP", "SCTP", "TCP"][((g >> 2) & 3) as usize].into(),
                        port: [80, 443, 0, 80][((g >> 4) & 3) as usize] + i64::from(p),
                        node_port: [None, Some(30080), Some(30081), Some(0)][(g >> 6) as usize],
                    }
                })
                .collect();
            Change::Service(Box::new(service(&ServiceSpec {
                namespace,
                name,
                type_: ["NodePort", "LoadBalancer", "ClusterIP", "ExternalName"][(f & 3) as usize]
                    .into(),
                expose: [None, Some("false"), Some("true"), None][((f >> 2) & 3) as usize]
                    .map(String::from),
                ports,
                ready: Vec::new(),
                unready: Vec::new(),
                terminating: Vec::new(),
            })))
        }
        3 => Change::ServiceDeleted {
            namespace: b.pick(&NAMESPACES).to_string(),
            name: b.pick(&SERVICES).to_string(),
        },
        4 => {
            let namespace = b.pick(&NAMESPACES).to_string();
            let service = b.pick(&SERVICES).to_string();
            let k = b.byte() % 2;
            Change::Slice(Box::new(slice(&SliceSpec {
                namespace,
                name: format!("s-{k}"),
                service,
                ready: b.subset(),
                unready: b.subset(),
                terminating: b.subset(),
            })))
        }
        _ => Change::SliceDeleted {
            namespace: b.pick(&NAMESPACES).to_string(),
            name: format!("s-{}", b.byte() % 2),
        },
    }
}

/// The incremental planner: bytes decoded into batches of watch events (nodes, services and
/// EndpointSlices applied and deleted, over small name pools so that they collide). After every
/// batch the planner's plan must equal planning the same snapshot from scratch, every changed
/// payload must be reported, and every zone payload must be accepted by the agent core.
pub fn planner(data: &[u8]) {
    let mut b = Bytes(data);
    let mut topology = Topology::from_toml(b.pick(&TOPOLOGIES)).expect("topology loads");
    let mut planner = Planner::new(Snapshot::new(), topology.clone());
    let mut steps = 0;
    while !b.0.is_empty() && steps < 64 {
        steps += 1;
        let before = planner.plan().clone();
        let head = b.byte();
        // 0xf0.. replaces the topology; otherwise a batch of 1..=4 changes.
        let changed = if head >= 0xf0 {
            topology = Topology::from_toml(b.pick(&TOPOLOGIES)).expect("topology loads");
            planner.set_topology(topology.clone())
        } else {
            let batch: Vec<Change> = (0..1 + (head >> 6))
                .map(|_| {
                    let op = b.byte();
                    change(&mut b, op)
                })
                .collect();
            planner.update(batch)
        };
        let fresh = plan(planner.snapshot(), &topology);
        let p = planner.plan();
        assert_eq!(p.warnings, fresh.warnings, "step {steps}");
        assert!(p.nodes.keys().eq(fresh.nodes.keys()), "step {steps}");
        assert!(p.gateways.keys().eq(fresh.gateways.keys()), "step {steps}");
        for (id, z) in &p.gateways {
            let bytes = z.render(id, 1);
            assert_eq!(bytes, fresh.gateways[id].render(id, 1), "{id} step {steps}");
            assert!(z == &fresh.gateways[id], "{id}: PartialEq step {steps}");
            let same = before.gateways.get(id).map(|z| z.render(id, 1)) == Some(bytes.clone());
            if let Some(old) = before.gateways.get(id) {
                assert_eq!(old == z, same, "{id}: PartialEq vs bytes step {steps}");
            }
            assert!(
                same || changed.gateways.contains(id),
                "{id} not reported step {steps}"
            );
            if let Err(e) = agent_accepts(&bytes) {
                panic!("{id}: the agent refuses the payload: {e} (step {steps})");
            }
        }
        for (n, c) in &p.nodes {
            let bytes = c.render(n, 1);
            assert_eq!(bytes, fresh.nodes[n].render(n, 1), "proxy {n} step {steps}");
            let same = before.nodes.get(n).map(|c| c.render(n, 1)) == Some(bytes);
            if let Some(old) = before.nodes.get(n) {
                assert_eq!(old == c, same, "proxy {n}: PartialEq vs bytes step {steps}");
            }
            assert!(
                same || changed.nodes.contains(n),
                "proxy {n} not reported step {steps}"
            );
        }
    }
}
