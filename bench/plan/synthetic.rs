//! The synthetic cluster of the plan benchmark and the payload v2 scale test: workers in
//! zones, NodePort services with ports, EndpointSlices on a random set of workers. Included
//! by bench/plan/main.rs and discovery/plan/tests/v2_scale.rs (`#[path]`), so both measure
//! the same cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sdwan_testsupport::Rng;

/// Topology zones the workers are spread over.
pub const ZONES: usize = 20;

pub fn node(i: usize, v6: bool, ready: bool) -> Node {
    let name = format!("worker{i:04}");
    let mut addresses = vec![NodeAddress {
        type_: "InternalIP".into(),
        address: format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256),
    }];
    if v6 {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: format!("fd00::{:x}", i + 1),
        });
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([(
                "topology.kubernetes.io/zone".to_owned(),
                format!("zone-{:02}", i % ZONES),
            )])),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(addresses),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "Unknown" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(ns: &str, name: &str, ports: usize, base: usize) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("NodePort".into()),
            ports: Some(
                (0..ports)
                    .map(|p| ServicePort {
                        name: Some(["http", "metrics"][p].into()),
                        port: [80, 9090][p],
                        node_port: Some((30000 + (base * 2 + p) % 2768) as i32),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn slice(ns: &str, svc: &str, nodes: &[usize]) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        metadata: ObjectMeta {
            name: Some(format!("{svc}-abcde")),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                svc.to_owned(),
            )])),
            ..Default::default()
        },
        endpoints: Some(
            nodes
                .iter()
                .enumerate()
                .map(|(k, n)| Endpoint {
                    addresses: vec![format!("10.244.{}.{}", k / 250, k % 250 + 1)],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    node_name: Some(format!("worker{n:04}")),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: None,
    }
}

pub fn replicas(rng: &mut Rng, nodes: usize) -> Vec<usize> {
    let n = if rng.chance(1) {
        nodes
    } else {
        1 + rng.below(3)
    };
    let mut v: Vec<usize> = if n == nodes {
        (0..nodes).collect()
    } else {
        (0..n).map(|_| rng.below(nodes)).collect()
    };
    v.sort_unstable();
    v.dedup();
    v
}
