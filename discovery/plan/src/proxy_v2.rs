//! Proxy payload v2 content per worker (issue 11 item 6, `docs/payload-v2.md`, "Proxy
//! payload v2 (workers)"): what the worker agent renders `sdwan.conf` and the help page from
//! (`sdwan-render`), as `sdwan_contract::v2::proxy::ProxySnapshot`.
//!
//! [`proxies`] takes a [`Plan`] (the same services, `unique` flags, ports and hosts as proxy
//! payload v1) and the cluster [`Snapshot`] (for the node slots), and
//! [`Proxies::snapshot`] builds one worker's content on demand. Pure: same inputs, same
//! output. The content of a worker holds, as v1 does:
//! - node slots: every node that is not control plane and has a Kubernetes node name, by
//!   name, each holding the name while the node is a Ready worker (else empty), so a worker
//!   going NotReady is a one-slot `node_drop`, not a new snapshot with other slot numbers;
//! - every exposed service with a ready endpoint on this worker (`here`: `sdwan.conf`
//!   proxies exactly these) or on another worker with a `<node>` name (`nodes`: up to 8 of
//!   those, by name, for the help page's links), with its ports that have a NodePort and
//!   `unique` when no other exposed service has its name.
//!
//! Left out, as the contract requires: services whose namespace or name is not a DNS label
//! (v1 counts them in `sdwan.conf`'s comment; neither proxies them), port names that are not
//! IANA service names (written as unnamed ports: the port is still proxied and listed),
//! workers whose name is not a topic id ([`sdwan_contract::v2::is_gateway_id`]: at most 64
//! characters), slots past 4,096 and services past 16,384.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sdwan_contract::v2::encode::EncodeError;
use sdwan_contract::v2::proxy::{
    header_hash, node_hash, service_hash, Protocol as V2Protocol, ProxyDelta, ProxyHeader,
    ProxyPort, ProxyService, ProxySnapshot, MAX_PROXY_LINKS,
};
use sdwan_contract::v2::{
    is_gateway_id, is_label, is_node_name, is_port_label, Digest, Str, Version, MAX_NODES,
    MAX_SERVICES,
};

use crate::content::{PortPlan, SvcPlan};
use crate::plan::{Plan, ProxyContent};
use crate::snapshot::{Protocol, Snapshot};

/// Every worker's proxy content, built per worker on demand.
#[derive(Debug, Clone)]
pub struct Proxies {
    /// Node slots: names by name; `None` while the node is not a Ready worker.
    slots: Vec<Option<String>>,
    /// Slot of each Ready worker.
    slot_of: HashMap<String, u16>,
    /// The plan's content per Ready worker.
    nodes: Vec<(String, ProxyContent)>,
    /// The same content in the form the master's publisher keeps.
    shared: Shared,
}

/// Plans every worker's proxy content from `plan` (of `snapshot`).
pub fn proxies(snapshot: &Snapshot, plan: &Plan) -> Proxies {
    build(snapshot, plan, None)
}

fn build(snapshot: &Snapshot, plan: &Plan, prev: Option<&Proxies>) -> Proxies {
    let mut slots = Vec::new();
    let mut slot_of = HashMap::new();
    for n in snapshot.nodes().values().filter(|n| !n.control_plane) {
        if !is_node_name(&n.name) || slots.len() >= MAX_NODES {
            continue;
        }
        if n.is_ready_worker() {
            slot_of.insert(n.name.clone(), slots.len() as u16);
            slots.push(Some(n.name.clone()));
        } else {
            slots.push(None);
        }
    }
    let nodes = plan
        .nodes
        .iter()
        .filter(|(name, _)| is_gateway_id(name))
        .map(|(name, c)| (name.clone(), c.clone()))
        .collect();
    let mut p = Proxies {
        slots,
        slot_of,
        nodes,
        shared: Shared::empty(),
    };
    p.shared = shared(snapshot, plan, &p, prev);
    p
}

fn port(p: &PortPlan) -> Option<ProxyPort> {
    if p.port == 0 || p.node_port == 0 {
        return None;
    }
    let name = p
        .name
        .as_deref()
        .filter(|n| is_port_label(n) && !n.bytes().all(|c| c.is_ascii_digit()))
        .and_then(Str::new);
    Some(ProxyPort {
        name,
        protocol: match p.protocol {
            Protocol::Tcp => V2Protocol::Tcp,
            Protocol::Udp => V2Protocol::Udp,
            Protocol::Sctp => V2Protocol::Sctp,
        },
        port: p.port,
        node_port: p.node_port,
    })
}

impl Proxies {
    /// The workers with proxy content (Ready workers whose name is a topic id), by name.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|(n, _)| n.as_str())
    }

    /// The node slots every worker's content has (a name while the node is a Ready worker):
    /// when they change, every worker's content changes.
    pub fn slots(&self) -> &[Option<String>] {
        &self.slots
    }

    /// Plans again after a change: the same as [`proxies`]`(snapshot, plan)`, but services
    /// that stayed the same are shared with `self` (so the publisher finds what changed by
    /// pointer, and the content it keeps from both plans is stored once).
    pub fn next(&self, snapshot: &Snapshot, plan: &Plan) -> Proxies {
        build(snapshot, plan, Some(self))
    }

    /// The same content as [`Proxies::snapshot`], as a [`WorkerProxy`] (pointers into what
    /// every worker shares).
    pub fn proxy(&self, node: &str, version: Version) -> Option<WorkerProxy> {
        let w = &self.shared.workers[self
            .shared
            .workers
            .binary_search_by(|w| w.name.as_str().cmp(node))
            .ok()?];
        Some(WorkerProxy {
            node: w.name.clone(),
            version,
            id: w.id,
            ipv6: w.ipv6,
            sum: w.sum,
            base: self.shared.base.clone(),
        })
    }

    /// Worker `node`'s content at `version`, or `None` when it has none (not a Ready worker).
    pub fn snapshot(&self, node: &str, version: Version) -> Option<ProxySnapshot> {
        let at = self
            .nodes
            .binary_search_by(|(n, _)| n.as_str().cmp(node))
            .ok()?;
        let content = &self.nodes[at].1;
        let cluster = &content.cluster;
        let me = content.node;
        let mut services = Vec::new();
        for s in &cluster.services {
            if services.len() >= MAX_SERVICES {
                break;
            }
            if let Some(svc) = self.service(content, s, me) {
                services.push(svc);
            }
        }
        services.sort_by(|a: &ProxyService, b| a.key().cmp(&b.key()));
        Some(ProxySnapshot {
            node: node.to_string(),
            version,
            proxy: ProxyHeader {
                suffix: cluster.origin.clone(),
                local: cluster.local_label.clone(),
                listen_port: cluster.proxy.listen_port,
                upstream_host: cluster.proxy.upstream_host.clone(),
                dir: cluster.proxy.dir_trimmed().to_string(),
                ipv6: content.has_ipv6(),
                nodes: self.slots.len() as u16,
            },
            nodes: self.slots.clone(),
            services,
        })
    }

    fn service(&self, content: &ProxyContent, s: &SvcPlan, me: u32) -> Option<ProxyService> {
        if !is_label(&s.namespace) || !is_label(&s.name) {
            return None;
        }
        let workers = &content.cluster.workers;
        let here = s.hosts.binary_search(&me).is_ok();
        let mut nodes: Vec<u16> = if here {
            Vec::new()
        } else {
            s.hosts
                .iter()
                .map(|&h| &workers[h as usize])
                .filter(|w| w.named)
                .filter_map(|w| self.slot_of.get(&w.name).copied())
                .take(MAX_PROXY_LINKS)
                .collect()
        };
        if !here && nodes.is_empty() {
            return None;
        }
        nodes.sort_unstable();
        let mut ports: Vec<ProxyPort> = Vec::new();
        for p in s.ports.iter().filter_map(port) {
            let dup = ports
                .iter()
                .any(|q| (q.name, q.protocol, q.port) == (p.name, p.protocol, p.port));
            if !dup && ports.len() < sdwan_contract::v2::MAX_PORTS {
                ports.push(p);
            }
        }
        Some(ProxyService {
            ns: s.namespace.clone(),
            name: s.name.clone(),
            unique: s.unique,
            ports,
            here,
            nodes,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Shared form: what the master's publisher keeps per worker

/// A service as every worker carries it, but for `here`: the two forms a worker can get
/// (with `here`, or with up to 8 links to the workers holding it) and their item hashes.
#[derive(Debug, PartialEq, Eq)]
struct SharedService {
    ns: String,
    name: String,
    unique: bool,
    ports: Vec<ProxyPort>,
    /// Host ids ([`host_ids`]) of the workers holding a ready endpoint, ascending.
    hosts: Vec<u32>,
    /// The links a worker not holding it gets (node slots, ascending); empty: such a worker
    /// does not carry it.
    links: Vec<u16>,
    /// Item hash of the form with `here`.
    here_hash: u64,
    /// Item hash of the form with links, if any.
    other_hash: Option<u64>,
}

impl SharedService {
    /// The service as worker `me` (a host id) carries it.
    fn item(&self, me: u32) -> Option<ProxyService> {
        let here = self.hosts.binary_search(&me).is_ok();
        if !here && self.links.is_empty() {
            return None;
        }
        Some(ProxyService {
            ns: self.ns.clone(),
            name: self.name.clone(),
            unique: self.unique,
            ports: self.ports.clone(),
            here,
            nodes: if here { Vec::new() } else { self.links.clone() },
        })
    }
}

/// What every worker's content shares in one plan.
#[derive(Debug, PartialEq, Eq)]
struct SharedBase {
    /// The header, `ipv6` false (it is the worker's own).
    header: ProxyHeader,
    slots: Vec<Option<String>>,
    /// Ascending by (namespace, name); shared with the plan before while a service stays
    /// the same.
    services: Vec<Arc<SharedService>>,
}

impl Shared {
    /// No workers, no services (a cluster without nodes).
    fn empty() -> Shared {
        Shared {
            base: Arc::new(SharedBase {
                header: ProxyHeader {
                    suffix: String::new(),
                    local: String::new(),
                    listen_port: 0,
                    upstream_host: String::new(),
                    dir: String::new(),
                    ipv6: false,
                    nodes: 0,
                },
                slots: Vec::new(),
                services: Vec::new(),
            }),
            workers: Vec::new(),
        }
    }
}

/// A worker with content in the shared form.
#[derive(Debug, Clone)]
struct SharedWorker {
    name: String,
    /// Its host id.
    id: u32,
    ipv6: bool,
    /// The sum of its node slot and service item hashes.
    sum: u64,
}

/// Every worker's proxy content in the shared form ([`Proxies::proxy`]).
#[derive(Debug, Clone)]
struct Shared {
    base: Arc<SharedBase>,
    /// By name.
    workers: Vec<SharedWorker>,
}

/// A worker's host id: its node slot, or (a Ready worker without one) 4,096 + its index
/// among the Ready workers. A service carries the host ids of the workers holding it, so
/// that it stays the same when workers come and go elsewhere.
fn host_ids(workers: &[crate::content::Worker], slot_of: &HashMap<String, u16>) -> Vec<u32> {
    workers
        .iter()
        .enumerate()
        .map(|(i, w)| match slot_of.get(&w.name) {
            Some(&k) => u32::from(k),
            None => MAX_NODES as u32 + i as u32,
        })
        .collect()
}

fn shared(snapshot: &Snapshot, plan: &Plan, proxies: &Proxies, prev: Option<&Proxies>) -> Shared {
    let Some((_, any)) = plan.nodes.iter().next() else {
        return Shared::empty();
    };
    let _ = snapshot;
    let cluster = &any.cluster;
    let ids = host_ids(&cluster.workers, &proxies.slot_of);
    let prev_services: &[Arc<SharedService>] = prev.map_or(&[], |p| &p.shared.base.services[..]);
    let mut services: Vec<Arc<SharedService>> = Vec::new();
    let mut j = 0;
    for s in &cluster.services {
        if !is_label(&s.namespace) || !is_label(&s.name) {
            continue;
        }
        let mut hosts: Vec<u32> = s.hosts.iter().map(|&h| ids[h as usize]).collect();
        hosts.sort_unstable();
        let mut links: Vec<u16> = s
            .hosts
            .iter()
            .map(|&h| &cluster.workers[h as usize])
            .filter(|w| w.named)
            .filter_map(|w| proxies.slot_of.get(&w.name).copied())
            .take(MAX_PROXY_LINKS)
            .collect();
        links.sort_unstable();
        let mut ports: Vec<ProxyPort> = Vec::new();
        for p in s.ports.iter().filter_map(port) {
            let dup = ports
                .iter()
                .any(|q| (q.name, q.protocol, q.port) == (p.name, p.protocol, p.port));
            if !dup && ports.len() < sdwan_contract::v2::MAX_PORTS {
                ports.push(p);
            }
        }
        let mut svc = SharedService {
            ns: s.namespace.clone(),
            name: s.name.clone(),
            unique: s.unique,
            ports,
            hosts,
            links,
            here_hash: 0,
            other_hash: None,
        };
        while j < prev_services.len()
            && (&prev_services[j].ns, &prev_services[j].name) < (&svc.ns, &svc.name)
        {
            j += 1;
        }
        if let Some(p) = prev_services.get(j) {
            if (&p.ns, &p.name, p.unique, &p.ports, &p.hosts, &p.links)
                == (
                    &svc.ns, &svc.name, svc.unique, &svc.ports, &svc.hosts, &svc.links,
                )
            {
                services.push(p.clone());
                continue;
            }
        }
        let here = ProxyService {
            ns: svc.ns.clone(),
            name: svc.name.clone(),
            unique: svc.unique,
            ports: svc.ports.clone(),
            here: true,
            nodes: Vec::new(),
        };
        svc.here_hash = service_hash(&here);
        if !svc.links.is_empty() {
            let other = ProxyService {
                here: false,
                nodes: svc.links.clone(),
                ..here
            };
            svc.other_hash = Some(service_hash(&other));
        }
        services.push(Arc::new(svc));
    }
    // As the snapshot: ascending, at most MAX_SERVICES.
    services.sort_by(|a, b| (&a.ns, &a.name).cmp(&(&b.ns, &b.name)));
    services.truncate(MAX_SERVICES);
    let base = SharedBase {
        header: ProxyHeader {
            suffix: cluster.origin.clone(),
            local: cluster.local_label.clone(),
            listen_port: cluster.proxy.listen_port,
            upstream_host: cluster.proxy.upstream_host.clone(),
            dir: cluster.proxy.dir_trimmed().to_string(),
            ipv6: false,
            nodes: proxies.slots.len() as u16,
        },
        slots: proxies.slots.clone(),
        services,
    };
    let base = match prev {
        Some(p) if same_shared(&p.shared.base, &base) => p.shared.base.clone(),
        _ => Arc::new(base),
    };
    // Item sums per worker: every service's linked form, then for the services a worker
    // holds, its `here` form instead.
    let nodes_sum = base
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some(node_hash(i as u16, n.as_deref()?)))
        .fold(0u64, u64::wrapping_add);
    let others = base
        .services
        .iter()
        .filter_map(|s| s.other_hash)
        .fold(nodes_sum, u64::wrapping_add);
    let mut sums: HashMap<u32, u64> = HashMap::new();
    for s in &base.services {
        let d = s.here_hash.wrapping_sub(s.other_hash.unwrap_or(0));
        for &h in &s.hosts {
            let e = sums.entry(h).or_insert(others);
            *e = e.wrapping_add(d);
        }
    }
    let workers = proxies
        .nodes
        .iter()
        .map(|(name, c)| {
            let id = ids[c.node as usize];
            SharedWorker {
                name: name.clone(),
                id,
                ipv6: c.has_ipv6(),
                sum: sums.get(&id).copied().unwrap_or(others),
            }
        })
        .collect();
    Shared { base, workers }
}

fn same_shared(a: &SharedBase, b: &SharedBase) -> bool {
    a.header == b.header
        && a.slots == b.slots
        && a.services.len() == b.services.len()
        && a.services
            .iter()
            .zip(&b.services)
            .all(|(x, y)| Arc::ptr_eq(x, y))
}

/// One worker's proxy content ([`Proxies::proxy`]) in the form the master's publisher
/// keeps: the node name, a version, its host id and address family, and a pointer to what
/// every worker shares in one plan. [`WorkerProxy::snapshot`] builds the whole
/// `ProxySnapshot`; [`WorkerProxy::digest`] costs nothing (summed per plan for every worker
/// at once); [`WorkerProxy::delta`] compares two by the services that are not the same `Arc`
/// (plans made with [`Proxies::next`] share those that did not change).
#[derive(Clone)]
pub struct WorkerProxy {
    node: String,
    version: Version,
    id: u32,
    ipv6: bool,
    sum: u64,
    base: Arc<SharedBase>,
}

impl fmt::Debug for WorkerProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerProxy")
            .field("node", &self.node)
            .field("version", &self.version)
            .field("services", &self.base.services.len())
            .finish()
    }
}

impl WorkerProxy {
    /// The worker's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Gives the content `version`.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The settings.
    pub fn header(&self) -> ProxyHeader {
        ProxyHeader {
            ipv6: self.ipv6,
            ..self.base.header.clone()
        }
    }

    /// The digest, as `snapshot().digest()`.
    pub fn digest(&self) -> Digest {
        Digest(self.sum).with(header_hash(&self.node, &self.header()))
    }

    /// The whole content.
    pub fn snapshot(&self) -> ProxySnapshot {
        ProxySnapshot {
            node: self.node.clone(),
            version: self.version,
            proxy: self.header(),
            nodes: self.base.slots.clone(),
            services: self
                .base
                .services
                .iter()
                .filter_map(|s| s.item(self.id))
                .collect(),
        }
    }

    /// The checks of `ProxySnapshot::check` that depend on more than the planner: the node
    /// name and the settings.
    pub fn check(&self) -> Result<(), EncodeError> {
        if !is_gateway_id(&self.node) {
            return Err(EncodeError::Invalid {
                what: "node",
                item: None,
            });
        }
        self.header()
            .check()
            .map_err(|what| EncodeError::Invalid { what, item: None })
    }

    /// The same content, whatever the versions.
    pub fn same_content(&self, other: &WorkerProxy) -> bool {
        if self.node != other.node || self.ipv6 != other.ipv6 {
            return false;
        }
        if self.id == other.id && Arc::ptr_eq(&self.base, &other.base) {
            return true;
        }
        self.sum == other.sum
            && self.base.header == other.base.header
            && Self::changes(self, other, true).is_none()
    }

    /// The delta from `old` to `new`: the same as `ProxyDelta::between(&old.snapshot(),
    /// &new.snapshot())`, from the items that differ.
    pub fn delta(old: &WorkerProxy, new: &WorkerProxy) -> Option<ProxyDelta> {
        if old.node != new.node
            || old.header() != new.header()
            || !new.version.is_newer_than(old.version)
        {
            return None;
        }
        let mut d = Self::changes(old, new, false).unwrap_or_else(|| ProxyDelta {
            node: String::new(),
            base: Version(0),
            version: Version(0),
            digest: Digest(0),
            node_drop: Vec::new(),
            node_set: Vec::new(),
            del: Vec::new(),
            set: Vec::new(),
        });
        d.node = new.node.clone();
        d.base = old.version;
        d.version = new.version;
        d.digest = new.digest();
        Some(d)
    }

    /// What differs from `a` to `b` as a delta without envelope (`None`: nothing), same
    /// header assumed; with `first`, stops at the first difference.
    fn changes(a: &WorkerProxy, b: &WorkerProxy, first: bool) -> Option<ProxyDelta> {
        let mut d = ProxyDelta {
            node: String::new(),
            base: Version(0),
            version: Version(0),
            digest: Digest(0),
            node_drop: Vec::new(),
            node_set: Vec::new(),
            del: Vec::new(),
            set: Vec::new(),
        };
        let (x, y) = (&*a.base, &*b.base);
        if !(Arc::ptr_eq(&a.base, &b.base) || x.slots == y.slots) {
            for (i, (p, q)) in x.slots.iter().zip(&y.slots).enumerate() {
                match (p, q) {
                    (Some(_), None) => d.node_drop.push(i as u16),
                    (p, Some(q)) if p.as_ref() != Some(q) => d.node_set.push((i as u16, q.clone())),
                    _ => {}
                }
                if first && !d.is_empty() {
                    return Some(d);
                }
            }
        }
        let skip_same = a.id == b.id;
        let (s, t) = (&x.services, &y.services);
        let (mut i, mut j) = (0, 0);
        while i < s.len() || j < t.len() {
            let ord = match (s.get(i), t.get(j)) {
                (Some(p), Some(q)) => {
                    if skip_same && Arc::ptr_eq(p, q) {
                        i += 1;
                        j += 1;
                        continue;
                    }
                    (&p.ns, &p.name).cmp(&(&q.ns, &q.name))
                }
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            let (p, q) = match ord {
                Ordering::Less => {
                    i += 1;
                    (s[i - 1].item(a.id), None)
                }
                Ordering::Greater => {
                    j += 1;
                    (None, t[j - 1].item(b.id))
                }
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (s[i - 1].item(a.id), t[j - 1].item(b.id))
                }
            };
            match (p, q) {
                (Some(p), None) => d.del.push((p.ns, p.name)),
                (None, Some(q)) => d.set.push(q),
                (Some(p), Some(q)) if p != q => d.set.push(q),
                _ => {}
            }
            if first && !d.is_empty() {
                return Some(d);
            }
        }
        (!d.is_empty()).then_some(d)
    }
}
