//! The seeded random walk over cluster changes that tests/incremental.rs and tests/v2.rs
//! replay: a small set of names, so changes collide often (the same node, service or slice
//! changed, deleted and recreated).

use sdwan_plan::Change;
use sdwan_testsupport::Rng;

use super::{node, service, slice, NodeSpec, PortSpec, ServiceSpec, SliceSpec};

pub const NODES: [&str; 7] = [
    "worker1", "worker2", "worker3", "worker4", "worker5", "cp1", "ghost",
];
pub const NAMESPACES: [&str; 3] = ["default", "staging", "kube-system"];
pub const SERVICES: [&str; 5] = ["web", "api", "db", "worker1", "local"];

/// Each of `v` with a chance of 1 in 3.
fn subset(rng: &mut Rng, v: &[&str]) -> Vec<String> {
    v.iter()
        .filter(|_| rng.below(3) == 0)
        .map(|s| s.to_string())
        .collect()
}

fn random_node(rng: &mut Rng) -> NodeSpec {
    let name = rng.pick(&NODES).to_string();
    let i = NODES.iter().position(|n| *n == name).unwrap() + 1;
    NodeSpec {
        zone: Some(rng.pick(&["espoo", "oulu"]).to_string()).filter(|_| rng.below(4) != 0),
        ipv4: Some(format!("10.0.0.{i}")).filter(|_| rng.below(5) != 0),
        ipv6: Some(format!("fd00::{i}")).filter(|_| rng.below(3) == 0),
        ready: rng.below(5) != 0,
        control_plane: name == "cp1",
        name,
    }
}

fn random_service(rng: &mut Rng) -> ServiceSpec {
    let ports = (0..rng.below(3))
        .map(|p| PortSpec {
            name: Some(["http", "grpc"][p].to_string()).filter(|_| rng.below(4) != 0),
            protocol: rng.pick(&["TCP", "TCP", "UDP"]).to_string(),
            port: 80 + p as i64,
            node_port: Some(30000 + rng.below(100) as i64).filter(|_| rng.below(6) != 0),
        })
        .collect();
    ServiceSpec {
        namespace: rng.pick(&NAMESPACES).to_string(),
        name: rng.pick(&SERVICES).to_string(),
        type_: rng
            .pick(&["NodePort", "LoadBalancer", "ClusterIP"])
            .to_string(),
        expose: rng
            .pick(&[None, None, None, Some("false"), Some("true")])
            .map(String::from),
        ports,
        ready: Vec::new(),
        unready: Vec::new(),
        terminating: Vec::new(),
    }
}

fn random_slice(rng: &mut Rng) -> SliceSpec {
    let service = rng.pick(&SERVICES).to_string();
    SliceSpec {
        namespace: rng.pick(&NAMESPACES).to_string(),
        name: format!("{service}-{}", rng.below(2)),
        service: if rng.below(10) == 0 {
            rng.pick(&SERVICES).to_string()
        } else {
            service
        },
        ready: subset(rng, &NODES),
        unready: subset(rng, &NODES),
        terminating: subset(rng, &NODES),
    }
}

pub fn random_change(rng: &mut Rng) -> Change {
    match rng.below(9) {
        0 | 1 => Change::Node(Box::new(node(&random_node(rng)))),
        2 => Change::NodeDeleted(rng.pick(&NODES).to_string()),
        3 | 4 => Change::Service(Box::new(service(&random_service(rng)))),
        5 => Change::ServiceDeleted {
            namespace: rng.pick(&NAMESPACES).to_string(),
            name: rng.pick(&SERVICES).to_string(),
        },
        6 | 7 => Change::Slice(Box::new(slice(&random_slice(rng)))),
        _ => {
            let s = rng.pick(&SERVICES).to_string();
            Change::SliceDeleted {
                namespace: rng.pick(&NAMESPACES).to_string(),
                name: format!("{s}-{}", rng.below(2)),
            }
        }
    }
}
