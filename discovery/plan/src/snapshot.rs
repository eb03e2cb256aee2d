//! The cluster model: what planning needs from Nodes, Services and EndpointSlices.
//!
//! A [`Snapshot`] is filled incrementally from k8s-openapi objects (what a watcher delivers)
//! or in one go from `kubectl get nodes,services,endpointslices -A -o json` output. It keeps
//! only the fields planning reads, already checked: nodes with their Ready condition, role,
//! zone and InternalIPs; services with type, expose annotation and ports; EndpointSlices
//! reduced to the set of nodes holding a ready endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sdwan_contract::json;

/// Label naming a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Labels marking a control-plane node (the second is the legacy one).
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];
/// Annotation that hides a service when set to `"false"`.
pub const EXPOSE_ANNOTATION: &str = "sdwan.io/expose";
/// Label linking an EndpointSlice to its service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A node as planning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// The `Ready` condition has status `True`.
    pub ready: bool,
    /// Labelled `node-role.kubernetes.io/control-plane` (or the legacy `master`).
    pub control_plane: bool,
    /// `topology.kubernetes.io/zone`.
    pub zone: Option<String>,
    /// First InternalIP of the IPv4 family.
    pub ipv4: Option<Ipv4Addr>,
    /// First InternalIP of the IPv6 family.
    pub ipv6: Option<Ipv6Addr>,
}

impl NodeInfo {
    /// Whether this node can be an answer: Ready, not control plane, with an address.
    pub fn is_ready_worker(&self) -> bool {
        self.ready && !self.control_plane && (self.ipv4.is_some() || self.ipv6.is_some())
    }
}

/// Transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `TCP` (also the default when unset).
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
}

impl Protocol {
    /// The Kubernetes spelling: `TCP`, `UDP`, `SCTP`.
    pub fn as_k8s(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// `name` (required by Kubernetes when a service has several ports).
    pub name: Option<String>,
    /// `protocol`.
    pub protocol: Protocol,
    /// `port`: the service (cluster) port.
    pub port: u16,
    /// `nodePort`, when one is allocated.
    pub node_port: Option<u16>,
}

/// A service as planning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.type` (`ClusterIP` when unset).
    pub type_: String,
    /// The `sdwan.io/expose` annotation's value, if present.
    pub expose: Option<String>,
    /// `spec.ports`.
    pub ports: Vec<PortInfo>,
}

impl ServiceInfo {
    /// NodePort or LoadBalancer, not annotated `sdwan.io/expose: "false"`, and at least one
    /// nodePort. The namespace rule is the topology's and applied by the planner.
    pub fn is_exposable(&self) -> bool {
        (self.type_ == "NodePort" || self.type_ == "LoadBalancer")
            && self.expose.as_deref() != Some("false")
            && self.ports.iter().any(|p| p.node_port.is_some())
    }
}

/// An EndpointSlice reduced to what planning needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    /// The `kubernetes.io/service-name` label.
    pub service: Option<String>,
    /// Nodes holding at least one ready, not terminating endpoint of this slice.
    pub ready_nodes: BTreeSet<String>,
}

/// An input object that could not be used, or only partly. Names the object and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// `Node worker1`, `Service default/web`, `items[3]`, ...
    pub object: String,
    /// JSON path of the offending field inside the object (`spec.ports[0].nodePort`), or
    /// empty for the whole document.
    pub field: String,
    /// What is wrong.
    pub kind: InputErrorKind,
}

/// The reasons an input object is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputErrorKind {
    /// The bytes are not JSON at all.
    NotJson(String),
    /// The object does not have the shape of its kind (wrong type, bad value).
    Schema(String),
    /// `kind` is not Node, Service, EndpointSlice or List (with its apiVersion).
    UnsupportedKind(String),
    /// A required field is missing (`metadata.name`, `metadata.namespace`).
    Missing,
    /// A value that Kubernetes would never produce (not an IP, port out of range).
    BadValue(String),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object)?;
        if !self.field.is_empty() {
            write!(f, ", field {}", self.field)?;
        }
        match &self.kind {
            InputErrorKind::NotJson(e) => write!(f, ": not JSON: {e}"),
            InputErrorKind::Schema(e) => write!(f, ": {e}"),
            InputErrorKind::UnsupportedKind(k) => write!(
                f,
                ": unsupported kind {k} (expected v1 Node, v1 Service, discovery.k8s.io/v1 EndpointSlice or a v1 List of them)"
            ),
            InputErrorKind::Missing => write!(f, ": missing"),
            InputErrorKind::BadValue(e) => write!(f, ": {e}"),
        }
    }
}

impl std::error::Error for InputError {}

/// The door of `kubectl get -o json` dumps (issue 12): at most 1 GiB; 64 levels of nesting
/// (a List, an object, `metadata.managedFields[].fieldsV1` mirroring the object's own paths
/// stays well within it; serde_json would stop at 128 with an error of its own).
pub const CLUSTER_FILE: json::Limits = json::Limits {
    max_bytes: 1 << 30,
    max_depth: 64,
};

/// What planning knows about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    nodes: BTreeMap<String, NodeInfo>,
    services: BTreeMap<(String, String), ServiceInfo>,
    slices: BTreeMap<(String, String), SliceInfo>,
    /// (namespace, service) -> names of the slices labelled with it.
    slices_by_service: BTreeMap<(String, String), BTreeSet<String>>,
}

fn name_of(meta: &ObjectMeta, kind: &str) -> Result<String, InputError> {
    match meta.name.as_deref() {
        Some(n) if !n.is_empty() => Ok(n.to_owned()),
        _ => Err(InputError {
            object: kind.to_owned(),
            field: "metadata.name".into(),
            kind: InputErrorKind::Missing,
        }),
    }
}

fn ns_name_of(meta: &ObjectMeta, kind: &str) -> Result<(String, String), InputError> {
    let name = name_of(meta, kind)?;
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => Ok((ns.to_owned(), name)),
        _ => Err(InputError {
            object: format!("{kind} {name}"),
            field: "metadata.namespace".into(),
            kind: InputErrorKind::Missing,
        }),
    }
}

/// Reduces a Node. Bad fields are left out of the result and reported in the error.
fn node_info(node: &Node) -> Result<(NodeInfo, Option<InputError>), InputError> {
    let name = name_of(&node.metadata, "Node")?;
    let labels = node.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k));
    let mut info = NodeInfo {
        name: name.clone(),
        ready: false,
        control_plane: CONTROL_PLANE_LABELS.iter().any(|l| label(l).is_some()),
        zone: label(ZONE_LABEL).filter(|z| !z.is_empty()).cloned(),
        ipv4: None,
        ipv6: None,
    };
    let mut problem = None;
    if let Some(status) = &node.status {
        info.ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        for (i, a) in status.addresses.iter().flatten().enumerate() {
            if a.type_ != "InternalIP" {
                continue;
            }
            match a.address.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(v4)) => {
                    info.ipv4.get_or_insert(v4);
                }
                Ok(std::net::IpAddr::V6(v6)) => {
                    info.ipv6.get_or_insert(v6);
                }
                Err(_) => {
                    problem.get_or_insert(InputError {
                        object: format!("Node {name}"),
                        field: format!("status.addresses[{i}].address"),
                        kind: InputErrorKind::BadValue(format!(
                            "{:?} is not an IP address",
                            a.address
                        )),
                    });
                }
            }
        }
    }
    Ok((info, problem))
}

fn service_info(svc: &Service) -> Result<(ServiceInfo, Option<InputError>), InputError> {
    let (namespace, name) = ns_name_of(&svc.metadata, "Service")?;
    let object = format!("Service {namespace}/{name}");
    let mut problem = None;
    let spec = svc.spec.as_ref();
    let mut ports = Vec::new();
    for (i, p) in spec
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some(other) => {
                problem.get_or_insert(InputError {
                    object: object.clone(),
                    field: format!("spec.ports[{i}].protocol"),
                    kind: InputErrorKind::BadValue(format!("unknown protocol {other:?}")),
                });
                continue;
            }
        };
        let Ok(port) = u16::try_from(p.port) else {
            problem.get_or_insert(InputError {
                object: object.clone(),
                field: format!("spec.ports[{i}].port"),
                kind: InputErrorKind::BadValue(format!("{} is not a port number", p.port)),
            });
            continue;
        };
        let node_port = match p.node_port {
            None => None,
            Some(np) => match u16::try_from(np) {
                Ok(np) if np != 0 => Some(np),
                _ => {
                    problem.get_or_insert(InputError {
                        object: object.clone(),
                        field: format!("spec.ports[{i}].nodePort"),
                        kind: InputErrorKind::BadValue(format!("{np} is not a port number")),
                    });
                    continue;
                }
            },
        };
        ports.push(PortInfo {
            name: p.name.clone().filter(|n| !n.is_empty()),
            protocol,
            port,
            node_port,
        });
    }
    let info = ServiceInfo {
        namespace,
        name,
        type_: spec
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "ClusterIP".into()),
        expose: svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EXPOSE_ANNOTATION))
            .cloned(),
        ports,
    };
    Ok((info, problem))
}

fn slice_info(slice: &EndpointSlice) -> Result<((String, String), SliceInfo), InputError> {
    let key = ns_name_of(&slice.metadata, "EndpointSlice")?;
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|s| !s.is_empty())
        .cloned();
    let mut ready_nodes = BTreeSet::new();
    for ep in slice.endpoints.iter().flatten() {
        let c = ep.conditions.as_ref();
        // Kubernetes: "a nil value [of ready] should be interpreted as true".
        let ready = c.and_then(|c| c.ready).unwrap_or(true);
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        if let (true, false, Some(node)) = (ready, terminating, &ep.node_name) {
            if !node.is_empty() {
                ready_nodes.insert(node.clone());
            }
        }
    }
    Ok((
        key,
        SliceInfo {
            service,
            ready_nodes,
        },
    ))
}

impl Snapshot {
    /// An empty cluster.
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Adds or replaces a node. A node without a name is refused; a node with a bad field
    /// (an InternalIP that is not an address) is stored without that field and the error
    /// returned.
    pub fn apply_node(&mut self, node: &Node) -> Result<(), InputError> {
        let (info, problem) = node_info(node)?;
        self.nodes.insert(info.name.clone(), info);
        problem.map_or(Ok(()), Err)
    }

    /// Removes a node.
    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Adds or replaces a service. As [`Snapshot::apply_node`], bad ports are left out.
    pub fn apply_service(&mut self, svc: &Service) -> Result<(), InputError> {
        let (info, problem) = service_info(svc)?;
        self.services
            .insert((info.namespace.clone(), info.name.clone()), info);
        problem.map_or(Ok(()), Err)
    }

    /// Removes a service.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        self.services
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) -> Result<(), InputError> {
        let (key, info) = slice_info(slice)?;
        self.insert_slice(key, info);
        Ok(())
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(old) = self.slices.remove(&key) {
            self.unindex_slice(&key, &old);
        }
    }

    fn unindex_slice(&mut self, key: &(String, String), old: &SliceInfo) {
        if let Some(svc) = &old.service {
            let skey = (key.0.clone(), svc.clone());
            if let Some(set) = self.slices_by_service.get_mut(&skey) {
                set.remove(&key.1);
                if set.is_empty() {
                    self.slices_by_service.remove(&skey);
                }
            }
        }
    }

    pub(crate) fn insert_slice(&mut self, key: (String, String), info: SliceInfo) {
        if let Some(old) = self.slices.remove(&key) {
            self.unindex_slice(&key, &old);
        }
        if let Some(svc) = &info.service {
            self.slices_by_service
                .entry((key.0.clone(), svc.clone()))
                .or_default()
                .insert(key.1.clone());
        }
        self.slices.insert(key, info);
    }

    /// All nodes, by name.
    pub fn nodes(&self) -> &BTreeMap<String, NodeInfo> {
        &self.nodes
    }

    /// All services, by (namespace, name).
    pub fn services(&self) -> &BTreeMap<(String, String), ServiceInfo> {
        &self.services
    }

    /// All EndpointSlices, by (namespace, name).
    pub fn slices(&self) -> &BTreeMap<(String, String), SliceInfo> {
        &self.slices
    }

    /// The slice, if known.
    pub fn slice(&self, namespace: &str, name: &str) -> Option<&SliceInfo> {
        self.slices.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Nodes holding a ready endpoint of the service, over all its slices.
    pub fn ready_nodes_of(&self, namespace: &str, service: &str) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        let key = (namespace.to_owned(), service.to_owned());
        for slice in self.slices_by_service.get(&key).into_iter().flatten() {
            if let Some(s) = self.slices.get(&(namespace.to_owned(), slice.clone())) {
                out.extend(s.ready_nodes.iter().map(String::as_str));
            }
        }
        out
    }

    /// Parses `kubectl get nodes,services,endpointslices -A -o json` output (a v1 List of
    /// mixed kinds) or a single object of one of those kinds.
    pub fn from_kubectl_json(bytes: &[u8]) -> Result<Snapshot, InputError> {
        let mut s = Snapshot::new();
        s.merge_kubectl_json(bytes)?;
        Ok(s)
    }

    /// As [`Snapshot::from_kubectl_json`], adding to (and replacing objects in) this snapshot.
    /// Strict: the first bad object or field is an error and nothing is merged.
    /// The bytes pass the checked door first ([`CLUSTER_FILE`]: size, depth, RFC 8259).
    pub fn merge_kubectl_json(&mut self, bytes: &[u8]) -> Result<(), InputError> {
        json::check(bytes, CLUSTER_FILE).map_err(|e| InputError {
            object: "document".into(),
            field: String::new(),
            kind: InputErrorKind::NotJson(match e.kind {
                json::ErrorKind::TooLarge => format!(
                    "{} bytes, the limit is {}",
                    bytes.len(),
                    CLUSTER_FILE.max_bytes
                ),
                json::ErrorKind::TooDeep => format!(
                    "nested deeper than {} levels of arrays and objects at byte {}",
                    CLUSTER_FILE.max_depth, e.offset
                ),
                _ => e.to_string(),
            }),
        })?;
        let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| InputError {
            object: "document".into(),
            field: String::new(),
            kind: InputErrorKind::NotJson(e.to_string()),
        })?;
        let mut next = self.clone();
        let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind == "List" || kind.ends_with("List") {
            let items = doc
                .get("items")
                .and_then(|i| i.as_array())
                .ok_or_else(|| InputError {
                    object: format!("{kind} document"),
                    field: "items".into(),
                    kind: InputErrorKind::Missing,
                })?;
            for (i, item) in items.iter().enumerate() {
                // Typed lists (`NodeList`) leave `kind` out of their items.
                let item_kind = item
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .or_else(|| kind.strip_suffix("List").filter(|k| !k.is_empty()))
                    .unwrap_or("");
                next.merge_object(item, item_kind, &format!("items[{i}]"))?;
            }
        } else {
            next.merge_object(&doc, kind, "document")?;
        }
        *self = next;
        Ok(())
    }

    fn merge_object(
        &mut self,
        v: &serde_json::Value,
        kind: &str,
        at: &str,
    ) -> Result<(), InputError> {
        let api = v.get("apiVersion").and_then(|k| k.as_str());
        let label = |v: &serde_json::Value| {
            let m = v.get("metadata");
            let name = m.and_then(|m| m.get("name")).and_then(|n| n.as_str());
            let ns = m.and_then(|m| m.get("namespace")).and_then(|n| n.as_str());
            match (ns, name) {
                (Some(ns), Some(n)) => format!("{at} ({kind} {ns}/{n})"),
                (None, Some(n)) => format!("{at} ({kind} {n})"),
                _ => format!("{at} ({kind})"),
            }
        };
        let wrap = |e: InputError| InputError {
            object: label(v),
            ..e
        };
        match (kind, api) {
            ("Node", None | Some("v1")) => {
                let node: Node = typed(v, &label(v))?;
                self.apply_node(&node).map_err(wrap)
            }
            ("Service", None | Some("v1")) => {
                let svc: Service = typed(v, &label(v))?;
                self.apply_service(&svc).map_err(wrap)
            }
            ("EndpointSlice", None | Some("discovery.k8s.io/v1")) => {
                let slice: EndpointSlice = typed(v, &label(v))?;
                self.apply_slice(&slice).map_err(wrap)
            }
            _ => Err(InputError {
                object: at.to_owned(),
                field: "kind".into(),
                kind: InputErrorKind::UnsupportedKind(match api {
                    Some(a) => format!("{a} {kind:?}"),
                    None => format!("{kind:?}"),
                }),
            }),
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    v: &serde_json::Value,
    object: &str,
) -> Result<T, InputError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        InputError {
            object: object.to_owned(),
            field: if path == "." { String::new() } else { path },
            kind: InputErrorKind::Schema(e.into_inner().to_string()),
        }
    })
}
