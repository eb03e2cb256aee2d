//! Helpers shared by the test binaries: compact cluster descriptions turned into real
//! Kubernetes objects (through their JSON shape, as a watcher would deliver them), and the
//! agent core's validator.

#![allow(dead_code)]

pub mod scenario;
pub mod walk;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;
use serde_json::{json, Value};

/// A node in compact form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub zone: Option<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default)]
    pub control_plane: bool,
}

/// A service port in compact form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    pub port: i64,
    pub node_port: Option<i64>,
}

/// A service in compact form; `ready`/`unready`/`terminating` make one EndpointSlice
/// named `<name>-1`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default = "default_ns")]
    pub namespace: String,
    pub name: String,
    #[serde(default = "node_port", rename = "type")]
    pub type_: String,
    pub expose: Option<String>,
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub ready: Vec<String>,
    #[serde(default)]
    pub unready: Vec<String>,
    #[serde(default)]
    pub terminating: Vec<String>,
}

/// An EndpointSlice in compact form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceSpec {
    #[serde(default = "default_ns")]
    pub namespace: String,
    pub name: String,
    pub service: String,
    #[serde(default)]
    pub ready: Vec<String>,
    #[serde(default)]
    pub unready: Vec<String>,
    #[serde(default)]
    pub terminating: Vec<String>,
}

fn yes() -> bool {
    true
}
fn tcp() -> String {
    "TCP".into()
}
fn default_ns() -> String {
    "default".into()
}
fn node_port() -> String {
    "NodePort".into()
}

pub fn node_json(n: &NodeSpec) -> Value {
    let mut labels = json!({"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux"});
    if let Some(z) = &n.zone {
        labels["topology.kubernetes.io/zone"] = json!(z);
    }
    if n.control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    let mut addresses = Vec::new();
    for a in n.ipv4.iter().chain(&n.ipv6) {
        addresses.push(json!({"type": "InternalIP", "address": a}));
    }
    addresses.push(json!({"type": "Hostname", "address": n.name}));
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": labels, "resourceVersion": "1"},
        "status": {
            "addresses": addresses,
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": if n.ready { "True" } else { "Unknown" }}
            ]
        }
    })
}

pub fn node(n: &NodeSpec) -> Node {
    serde_json::from_value(node_json(n)).unwrap()
}

pub fn service_json(s: &ServiceSpec) -> Value {
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({"port": p.port, "protocol": p.protocol, "targetPort": p.port});
            if let Some(n) = &p.name {
                v["name"] = json!(n);
            }
            if let Some(np) = p.node_port {
                v["nodePort"] = json!(np);
            }
            v
        })
        .collect();
    let mut meta = json!({"name": s.name, "namespace": s.namespace, "resourceVersion": "1"});
    if let Some(e) = &s.expose {
        meta["annotations"] = json!({"sdwan.io/expose": e});
    }
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"type": s.type_, "ports": ports, "selector": {"app": s.name}},
        "status": {"loadBalancer": {}}
    })
}

pub fn service(s: &ServiceSpec) -> Service {
    serde_json::from_value(service_json(s)).unwrap()
}

pub fn slice_json(s: &SliceSpec) -> Value {
    let mut eps = Vec::new();
    let mut i = 0;
    let mut ep = |node: &str, ready: bool, terminating: bool| {
        i += 1;
        eps.push(json!({
            "addresses": [format!("10.244.0.{i}")],
            "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating},
            "nodeName": node,
            "targetRef": {"kind": "Pod", "name": format!("{}-{i}", s.service), "namespace": s.namespace}
        }));
    };
    for n in &s.ready {
        ep(n, true, false);
    }
    for n in &s.unready {
        ep(n, false, false);
    }
    for n in &s.terminating {
        ep(n, false, true);
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": s.name, "namespace": s.namespace, "resourceVersion": "1",
            "labels": {"kubernetes.io/service-name": s.service}},
        "endpoints": eps,
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]
    })
}

pub fn slice(s: &SliceSpec) -> EndpointSlice {
    serde_json::from_value(slice_json(s)).unwrap()
}

/// The slice a compact service description implies.
pub fn service_slice(s: &ServiceSpec) -> SliceSpec {
    SliceSpec {
        namespace: s.namespace.clone(),
        name: format!("{}-1", s.name),
        service: s.name.clone(),
        ready: s.ready.clone(),
        unready: s.unready.clone(),
        terminating: s.terminating.clone(),
    }
}

/// Runs the agent core's validator over a zone payload.
pub fn agent_accepts(payload: &[u8]) -> Result<(), String> {
    let mut out = vec![0u8; sdwan_agent_core::compiled_size_bound(payload.len())];
    sdwan_agent_core::compile(payload, &mut out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
