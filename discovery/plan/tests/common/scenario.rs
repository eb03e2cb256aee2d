//! The schema of `tests/scenarios/*.toml` (a cluster in compact form, a topology, steps of
//! watch events and what each gateway must answer after each), read by tests/scenarios.rs and
//! tests/v2.rs, and the watch events a step stands for.

use std::collections::BTreeMap;

use sdwan_plan::Change;
use serde::Deserialize;

use super::{node, service, service_slice, slice, NodeSpec, ServiceSpec, SliceSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows.
    pub description: String,
    /// The topology file's text.
    pub topology: String,
    #[serde(default)]
    pub node: Vec<NodeSpec>,
    #[serde(default)]
    pub service: Vec<ServiceSpec>,
    #[serde(default)]
    pub slice: Vec<SliceSpec>,
    pub step: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default)]
    pub changes: Vec<ChangeSpec>,
    /// gateway -> "name TYPE" -> data in payload order (`[]`: no such records).
    #[serde(default)]
    pub expect: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// gateway -> every owner name in the zone, sorted, apex TXT left out.
    #[serde(default)]
    pub names: BTreeMap<String, Vec<String>>,
    /// Ready workers that get a proxy payload.
    pub proxy_nodes: Option<Vec<String>>,
    /// node -> "namespace/name" of the services it holds (proxy payload).
    #[serde(default)]
    pub proxy_local: BTreeMap<String, Vec<String>>,
    /// Substrings each expected in some warning.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Gateways that must be reported changed by this step.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Gateways that must not be reported changed by this step.
    #[serde(default)]
    pub unchanged: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    pub node: Option<NodeSpec>,
    pub delete_node: Option<String>,
    pub service: Option<ServiceSpec>,
    /// `namespace/name`
    pub delete_service: Option<String>,
    pub slice: Option<SliceSpec>,
    /// `namespace/name`
    pub delete_slice: Option<String>,
}

pub fn split(s: &str) -> (String, String) {
    let (a, b) = s.split_once('/').expect("namespace/name");
    (a.to_owned(), b.to_owned())
}

impl ChangeSpec {
    pub fn changes(&self) -> Vec<Change> {
        let mut v = Vec::new();
        if let Some(n) = &self.node {
            v.push(Change::Node(Box::new(node(n))));
        }
        if let Some(n) = &self.delete_node {
            v.push(Change::NodeDeleted(n.clone()));
        }
        if let Some(s) = &self.service {
            v.push(Change::Service(Box::new(service(s))));
            if !(s.ready.is_empty() && s.unready.is_empty() && s.terminating.is_empty()) {
                v.push(Change::Slice(Box::new(slice(&service_slice(s)))));
            }
        }
        if let Some(s) = &self.delete_service {
            let (namespace, name) = split(s);
            v.push(Change::ServiceDeleted { namespace, name });
        }
        if let Some(s) = &self.slice {
            v.push(Change::Slice(Box::new(slice(s))));
        }
        if let Some(s) = &self.delete_slice {
            let (namespace, name) = split(s);
            v.push(Change::SliceDeleted { namespace, name });
        }
        v
    }
}

/// The scenario files (`tests/scenarios/*.toml`), sorted.
pub fn scenario_files() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}
