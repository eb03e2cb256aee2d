//! Payload v2 content per gateway (issue 11, `docs/payload-v2.md`; the correspondence with
//! the v1 zone is in `docs/planning.md`, "Payload v2").
//!
//! [`zones`] plans every gateway at once: the gateway-independent part (node slots, exposed
//! services with their ports, short flags and hosting nodes) once, one slot order per
//! gateway class (gateways with the same `near` list, zone and address policy), and a
//! [`Zones::snapshot`] per gateway built from those on demand. Pure: same inputs, same output.
//!
//! v1 bakes the pick into records; v2 carries the candidates and the policy and the agent
//! picks. So a v2 zone holds, for this gateway:
//! - a slot for every node that is not control plane, in the gateway's nearness order
//!   (`near` list, then its zone, then the rest by name) with its tier; the slot is empty
//!   while the node is not a Ready worker (NotReady, or no address), so a node going NotReady
//!   is a one-slot delta, not a new snapshot;
//! - every exposed service with a ready endpoint on some slot's node, with its SRV ports,
//!   `short` when v1 would publish `<service>`, and its hosts as ascending slot indices
//!   (= nearest first).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use sdwan_contract::v2::digest::{header_hash, node_hash, service_hash};
use sdwan_contract::v2::encode::{Delta, EncodeError, Service, Snapshot as WireSnapshot};
use sdwan_contract::v2::{
    self, is_gateway_id, is_node_name, is_port_label, Digest, Node, Port, Proto, Str, Tier,
    Version, ZoneHeader, MAX_NODES, MAX_PORTS, MAX_SERVICES,
};

use crate::plan::{plan_service, set_short, Worker};
use crate::snapshot::{Protocol, Snapshot};
use crate::topology::{Family, Topology};

/// Something v2 cannot carry that v1 could, or a contract limit reached. Planning goes on.
/// (What v1 and v2 leave out alike is warned about by [`crate::Plan::warnings`].)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Warning {
    /// A node whose name is not a Kubernetes node name (1..=253 of `[a-z0-9.-]`, which the
    /// API server enforces): no slot, so it answers nothing (v1 would answer `local` and
    /// service names with its address).
    NodeNameNotCarried {
        /// Node name.
        node: String,
    },
    /// A port whose name is a DNS label but not an IANA service name (at most 15
    /// characters, a letter among them, no `--`; the API server enforces it): no SRV set.
    PortNameNotCarried {
        /// Namespace.
        namespace: String,
        /// Service name.
        service: String,
        /// Port name.
        port: String,
    },
    /// More SRV ports than the contract's 32 (`MAX_PORTS`): the first 32 by owner are kept.
    TooManyPorts {
        /// Namespace.
        namespace: String,
        /// Service name.
        service: String,
        /// Ports with an SRV set.
        ports: usize,
    },
    /// More node slots than the contract's 4,096 (`MAX_NODES`): a gateway's farthest slots
    /// are left out.
    TooManyNodes {
        /// Nodes with a slot.
        nodes: usize,
    },
    /// More services than the contract's 16,384 (`MAX_SERVICES`): the last by
    /// (namespace, name) are left out.
    TooManyServices {
        /// Services with hosts.
        services: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NodeNameNotCarried { node } => write!(
                f,
                "node {node:?}: not a Kubernetes node name (a-z 0-9 . -): left out of payload v2"
            ),
            Warning::PortNameNotCarried {
                namespace,
                service,
                port,
            } => write!(
                f,
                "service {namespace}/{service}: port name {port:?} is not an IANA service name (at most 15 of a-z 0-9 -, a letter among them): no SRV in payload v2"
            ),
            Warning::TooManyPorts {
                namespace,
                service,
                ports,
            } => write!(
                f,
                "service {namespace}/{service}: {ports} SRV ports, payload v2 carries the first {MAX_PORTS}"
            ),
            Warning::TooManyNodes { nodes } => write!(
                f,
                "{nodes} nodes, payload v2 carries each gateway's nearest {MAX_NODES}"
            ),
            Warning::TooManyServices { services } => write!(
                f,
                "{services} services, payload v2 carries the first {MAX_SERVICES}"
            ),
        }
    }
}

/// A node with a slot (not control plane, a carriable name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotNode {
    name: String,
    zone: Option<String>,
    /// The addresses while the node is a Ready worker; `None`: the slot is empty.
    addrs: Option<(Option<Ipv4Addr>, Option<Ipv6Addr>)>,
}

/// A service as every gateway carries it, but for its hosts' slot numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BaseService {
    ns: String,
    name: String,
    short: bool,
    ports: Vec<Port>,
    /// Indices into `Base::nodes`, ascending, not empty.
    hosts: Vec<u32>,
}

/// The gateway-independent part.
#[derive(Debug)]
struct Base {
    suffix: Str<{ v2::MAX_SUFFIX }>,
    local: Str<{ v2::MAX_LABEL }>,
    ttl: u32,
    service_ttl: u32,
    /// The workers' nginx port: the port gateways probe (issue 14).
    probe: u16,
    /// Shared with the plan before while the same (compared by pointer first).
    nodes: Arc<Vec<SlotNode>>,
    /// Shared with the plans before while a service stays the same, so that content built
    /// from two plans is compared by pointer first.
    services: Vec<Arc<BaseService>>,
}

/// One slot order, shared by the gateways with the same `near` list, zone and policy.
#[derive(Debug, PartialEq, Eq)]
struct Class {
    family: v2::Family,
    /// (index into `Base::nodes`, tier), nearest first.
    slots: Vec<(u32, Tier)>,
    /// Slot per index into `Base::nodes` (`u16::MAX`: none).
    slot_of: Vec<u16>,
}

/// What the gateways of one class share in one plan: the base, the slot order, and the sum
/// of the item hashes of node slots and services (the digest without the header, computed
/// once per class, or from the plan before and the services that changed).
#[derive(Debug)]
struct View {
    base: Arc<Base>,
    class: Arc<Class>,
    /// (node slots, services) item hash sums.
    body: OnceLock<(u64, u64)>,
}

impl View {
    fn body(&self) -> (u64, u64) {
        *self.body.get_or_init(|| {
            let services = self
                .base
                .services
                .iter()
                .filter_map(|s| item(&self.base, &self.class, s))
                .fold(0u64, |d, s| d.wrapping_add(service_hash(&s.as_ref())));
            (nodes_sum(&self.base, &self.class), services)
        })
    }
}

fn nodes_sum(b: &Base, c: &Class) -> u64 {
    c.slots
        .iter()
        .enumerate()
        .filter_map(|(k, &(i, tier))| Some(node_hash(k as u16, &wire_node(b, i, tier)?)))
        .fold(0u64, u64::wrapping_add)
}

fn wire_node(b: &Base, i: u32, tier: Tier) -> Option<Node> {
    let n = &b.nodes[i as usize];
    n.addrs.map(|(v4, v6)| Node {
        name: Str::new(&n.name).unwrap_or_default(),
        tier,
        v4,
        v6,
    })
}

/// Payload v2 content of every gateway of a topology; see the module documentation.
#[derive(Debug, Clone)]
pub struct Zones {
    base: Arc<Base>,
    classes: Vec<Arc<Class>>,
    /// Per class.
    views: Vec<Arc<View>>,
    /// Gateway id -> class.
    gateways: BTreeMap<String, usize>,
    warnings: Vec<Warning>,
}

/// Plans payload v2 for every gateway of `topology` (pure: same inputs, same output).
pub fn zones(snapshot: &Snapshot, topology: &Topology) -> Zones {
    build(snapshot, topology, None)
}

fn build(snapshot: &Snapshot, topology: &Topology, prev: Option<&Zones>) -> Zones {
    let mut warnings = Vec::new();
    // Node slots: every node but the control plane, by name.
    let mut nodes = Vec::new();
    for n in snapshot.nodes().values().filter(|n| !n.control_plane) {
        if !is_node_name(&n.name) {
            warnings.push(Warning::NodeNameNotCarried {
                node: n.name.clone(),
            });
            continue;
        }
        nodes.push(SlotNode {
            name: n.name.clone(),
            zone: n.zone.clone(),
            addrs: n.is_ready_worker().then_some((n.ipv4, n.ipv6)),
        });
    }
    let index: HashMap<&str, u32> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i as u32))
        .collect();
    // The v1 rules for what a service publishes (exposure, names, ports, short names); the
    // short-name rule counts Ready workers as v1 does. `plan_service` is given no workers:
    // the hosts are taken below over the slot nodes, and its warnings are v1's own
    // (`Plan::warnings`).
    let workers: Vec<Worker> = Vec::new();
    let ready: HashMap<String, u32> = snapshot
        .nodes()
        .values()
        .filter(|n| n.is_ready_worker())
        .map(|n| (n.name.clone(), 0))
        .collect();
    let mut planned = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut ignored = Vec::new();
    for (ns, name) in snapshot.services().keys() {
        if let Some(s) = plan_service(
            snapshot,
            topology,
            &HashMap::new(),
            &workers,
            ns,
            name,
            &mut ignored,
        ) {
            *by_name.entry(name.clone()).or_default() += 1;
            planned.push(s);
        }
    }
    let mut services = Vec::new();
    for mut s in planned {
        let same_name = by_name[&s.name];
        set_short(&mut s, same_name, topology, &ready, &mut ignored);
        if !s.fq_ok {
            continue;
        }
        let mut hosts: Vec<u32> = snapshot
            .ready_nodes_of(&s.namespace, &s.name)
            .into_iter()
            .filter_map(|n| index.get(n).copied())
            .collect();
        hosts.sort_unstable();
        if hosts.is_empty() {
            continue;
        }
        let mut ports = Vec::new();
        for p in s.ports.iter().filter(|p| p.srv.is_some()) {
            let label = p.name.clone().unwrap_or_else(|| p.port.to_string());
            let proto = match p.protocol {
                Protocol::Tcp => Proto::Tcp,
                Protocol::Udp => Proto::Udp,
                Protocol::Sctp => continue,
            };
            match Str::new(&label).filter(|_| is_port_label(&label)) {
                Some(label) => ports.push(Port {
                    label,
                    proto,
                    node_port: p.node_port,
                }),
                None => warnings.push(Warning::PortNameNotCarried {
                    namespace: s.namespace.clone(),
                    service: s.name.clone(),
                    port: label,
                }),
            }
        }
        ports.sort_by_key(owner);
        ports.dedup_by_key(|p| owner(p));
        if ports.len() > MAX_PORTS {
            warnings.push(Warning::TooManyPorts {
                namespace: s.namespace.clone(),
                service: s.name.clone(),
                ports: ports.len(),
            });
            ports.truncate(MAX_PORTS);
        }
        services.push(BaseService {
            ns: s.namespace,
            name: s.name,
            short: s.short,
            ports,
            hosts,
        });
    }
    if services.len() > MAX_SERVICES {
        warnings.push(Warning::TooManyServices {
            services: services.len(),
        });
        services.truncate(MAX_SERVICES);
    }
    if nodes.len() > MAX_NODES {
        warnings.push(Warning::TooManyNodes { nodes: nodes.len() });
    }
    // Slot orders per class.
    type Key = (Vec<u32>, Option<String>, Family);
    let mut by_key: HashMap<Key, usize> = HashMap::new();
    let mut classes = Vec::new();
    let mut gateways = BTreeMap::new();
    for g in &topology.gateways {
        let mut near: Vec<u32> = Vec::new();
        for n in &g.near {
            if let Some(&i) = index.get(n.as_str()) {
                if !near.contains(&i) {
                    near.push(i);
                }
            }
        }
        let zone = g
            .zone
            .clone()
            .filter(|z| nodes.iter().any(|n| n.zone.as_ref() == Some(z)));
        let key = (near, zone, g.family);
        let next = classes.len();
        let c = *by_key.entry(key.clone()).or_insert(next);
        if c == next {
            let new = class(&nodes, &key.0, key.1.as_deref(), key.2);
            // The same slot order as this gateway's class in the plan before: share it.
            let old = prev.and_then(|p| Some(&p.classes[*p.gateways.get(&g.id)?]));
            classes.push(match old {
                Some(o) if **o == new => o.clone(),
                _ => Arc::new(new),
            });
        }
        gateways.insert(g.id.clone(), c);
    }
    warnings.sort();
    warnings.dedup();
    let base = Base {
        suffix: Str::new(&topology.suffix).unwrap_or_default(),
        local: Str::new(&topology.local_label).unwrap_or_default(),
        ttl: topology.ttl,
        service_ttl: topology.service_ttl,
        probe: topology.proxy.listen_port,
        nodes: match prev {
            Some(p) if *p.base.nodes == nodes => p.base.nodes.clone(),
            _ => Arc::new(nodes),
        },
        services: intern(services, prev.map(|p| &p.base.services[..])),
    };
    let base = match prev {
        Some(p) if same_base(&p.base, &base) => p.base.clone(),
        _ => Arc::new(base),
    };
    // The services that changed since the plan before (not the same `Arc`), found once.
    let mut changed: Vec<(Option<&BaseService>, Option<&BaseService>)> = Vec::new();
    let mut old_views: HashMap<*const Class, &Arc<View>> = HashMap::new();
    if let Some(p) = prev {
        walk(&p.base.services, &base.services, true, |a, b| {
            changed.push((a, b));
            true
        });
        old_views = p.views.iter().map(|v| (Arc::as_ptr(&v.class), v)).collect();
    }
    // The node indices whose slot content changed (`None`: other nodes, or as many).
    let changed_nodes: Option<Vec<u32>> = prev.and_then(|p| {
        let (a, b) = (&p.base.nodes, &base.nodes);
        (a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.name == y.name)).then(|| {
            (0..a.len() as u32)
                .filter(|&i| a[i as usize].addrs != b[i as usize].addrs)
                .collect()
        })
    });
    let views = classes
        .iter()
        .map(|c| {
            let old = old_views.get(&Arc::as_ptr(c)).copied();
            view(&base, c, old, &changed, changed_nodes.as_deref())
        })
        .collect();
    Zones {
        base,
        classes,
        views,
        gateways,
        warnings,
    }
}

/// Services as `Arc`s, the plan before's where a service is the same.
fn intern(services: Vec<BaseService>, prev: Option<&[Arc<BaseService>]>) -> Vec<Arc<BaseService>> {
    let prev = prev.unwrap_or_default();
    let mut j = 0;
    services
        .into_iter()
        .map(|s| {
            while j < prev.len() && (&prev[j].ns, &prev[j].name) < (&s.ns, &s.name) {
                j += 1;
            }
            match prev.get(j) {
                Some(p) if **p == s => p.clone(),
                _ => Arc::new(s),
            }
        })
        .collect()
}

fn same_base(a: &Base, b: &Base) -> bool {
    a.suffix == b.suffix
        && a.local == b.local
        && a.ttl == b.ttl
        && a.service_ttl == b.service_ttl
        && a.probe == b.probe
        && a.nodes == b.nodes
        && a.services.len() == b.services.len()
        && a.services
            .iter()
            .zip(&b.services)
            .all(|(x, y)| Arc::ptr_eq(x, y))
}

/// The view of class `c` over `base`: `old`'s (the plan before's view of the same class)
/// when the base is the same, else a new one whose item sums follow from `old`'s: the node
/// slots' when the nodes are the same, the services' from the services that changed.
fn view(
    base: &Arc<Base>,
    c: &Arc<Class>,
    old: Option<&Arc<View>>,
    changed: &[(Option<&BaseService>, Option<&BaseService>)],
    changed_nodes: Option<&[u32]>,
) -> Arc<View> {
    if let Some(o) = old {
        if Arc::ptr_eq(&o.base, base) {
            return o.clone();
        }
    }
    let v = View {
        base: base.clone(),
        class: c.clone(),
        body: OnceLock::new(),
    };
    if let Some((o, &(nodes, services))) = old.and_then(|o| Some((o, o.body.get()?))) {
        let mut sum = services;
        for &(a, b) in changed {
            if let Some(s) = a.and_then(|a| item(&o.base, c, a)) {
                sum = sum.wrapping_sub(service_hash(&s.as_ref()));
            }
            if let Some(s) = b.and_then(|b| item(base, c, b)) {
                sum = sum.wrapping_add(service_hash(&s.as_ref()));
            }
        }
        let nodes = match changed_nodes {
            _ if Arc::ptr_eq(&o.base.nodes, &base.nodes) => nodes,
            // The same nodes by name (so the same slots): swap the changed slots' hashes.
            Some(changed) => changed.iter().fold(nodes, |sum, &i| {
                let k = c.slot_of[i as usize];
                if k == u16::MAX {
                    return sum;
                }
                let tier = c.slots[usize::from(k)].1;
                let hash = |b: &Base| wire_node(b, i, tier).map_or(0, |n| node_hash(k, &n));
                sum.wrapping_sub(hash(&o.base)).wrapping_add(hash(base))
            }),
            None => nodes_sum(base, c),
        };
        let _ = v.body.set((nodes, sum));
    }
    Arc::new(v)
}

/// Walks two service lists (ascending by key) and calls `f(old, new)` for each key (`None`:
/// not in that list), until `f` says `false`; with `skip_same`, not for entries that are the
/// same `Arc` in both (their items are the same under one slot order).
fn walk<'a>(
    a: &'a [Arc<BaseService>],
    b: &'a [Arc<BaseService>],
    skip_same: bool,
    mut f: impl FnMut(Option<&'a BaseService>, Option<&'a BaseService>) -> bool,
) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => {
                if skip_same && Arc::ptr_eq(x, y) {
                    i += 1;
                    j += 1;
                    continue;
                }
                (&x.ns, &x.name).cmp(&(&y.ns, &y.name))
            }
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let go = match ord {
            Ordering::Less => {
                i += 1;
                f(Some(&a[i - 1]), None)
            }
            Ordering::Greater => {
                j += 1;
                f(None, Some(&b[j - 1]))
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
                f(Some(&a[i - 1]), Some(&b[j - 1]))
            }
        };
        if !go {
            return;
        }
    }
}

/// The sort key of a port: its SRV owner's first two labels.
fn owner(p: &Port) -> ([u8; 24], usize) {
    let mut b = [0u8; 24];
    let n = p.owner(&mut b);
    (b, n)
}

fn class(nodes: &[SlotNode], near: &[u32], zone: Option<&str>, family: Family) -> Class {
    let mut slot_of = vec![u16::MAX; nodes.len()];
    let mut slots = Vec::with_capacity(nodes.len().min(MAX_NODES));
    let mut push = |i: u32, tier: Tier, slots: &mut Vec<(u32, Tier)>| {
        if slot_of[i as usize] == u16::MAX && slots.len() < MAX_NODES {
            slot_of[i as usize] = slots.len() as u16;
            slots.push((i, tier));
        }
    };
    for &i in near {
        push(i, Tier::Near, &mut slots);
    }
    if let Some(zone) = zone {
        for (i, n) in nodes.iter().enumerate() {
            if n.zone.as_deref() == Some(zone) {
                push(i as u32, Tier::Zone, &mut slots);
            }
        }
    }
    for i in 0..nodes.len() as u32 {
        push(i, Tier::Other, &mut slots);
    }
    Class {
        family,
        slots,
        slot_of,
    }
}

impl Zones {
    /// The gateway ids, ascending.
    pub fn gateways(&self) -> impl Iterator<Item = &str> {
        self.gateways.keys().map(String::as_str)
    }

    /// What v2 could not carry, sorted.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The number of distinct slot orders (gateway classes). Gateways of one class get the
    /// same content but for the `gateway` field (and so the digest).
    pub fn classes(&self) -> usize {
        self.classes.len()
    }

    /// The class of a gateway (see [`Zones::classes`]).
    pub fn class_of(&self, gateway: &str) -> Option<usize> {
        self.gateways.get(gateway).copied()
    }

    /// The gateways whose content may differ from `old`'s (all of them without `old`),
    /// ascending: those of a class whose slot order or address policy changed, and every
    /// gateway when the settings, the nodes or the services changed. Cheap (compares the
    /// planned parts once, builds no snapshot), so the master asks the publisher to compare
    /// whole snapshots only for these.
    pub fn changed_since(&self, old: Option<&Zones>) -> Vec<&str> {
        let Some(old) = old else {
            return self.gateways().collect();
        };
        let base_same = Arc::ptr_eq(&self.base, &old.base) || {
            let (a, b) = (&*self.base, &*old.base);
            a.suffix == b.suffix
                && a.local == b.local
                && a.ttl == b.ttl
                && a.service_ttl == b.service_ttl
                && a.nodes == b.nodes
                && a.services == b.services
        };
        self.gateways
            .iter()
            .filter(|(gw, &c)| {
                let Some(&o) = old.gateways.get(*gw) else {
                    return true;
                };
                let (cn, co) = (&self.classes[c], &old.classes[o]);
                !(base_same && cn.family == co.family && cn.slots == co.slots)
            })
            .map(|(gw, _)| gw.as_str())
            .collect()
    }

    /// The payload v2 content of `gateway` at `version`, or `None` for a gateway the
    /// topology does not name. It passes `Snapshot::check` (the tests hold it to that).
    pub fn snapshot(&self, gateway: &str, version: Version) -> Option<WireSnapshot> {
        Some(self.zone(gateway, version)?.snapshot())
    }

    /// The same content as [`Zones::snapshot`], as a [`Zone`]: a few pointers into what the
    /// gateways of its class share (the publisher keeps these, not whole snapshots).
    pub fn zone(&self, gateway: &str, version: Version) -> Option<Zone> {
        let c = *self.gateways.get(gateway)?;
        Some(Zone {
            gateway: gateway.to_owned(),
            version,
            view: self.views[c].clone(),
        })
    }

    /// Plans again after a change: the same as [`zones`]`(snapshot, topology)`, but services
    /// and slot orders that stayed the same are shared with `self` (so the publisher finds
    /// what changed by pointer, and the content it keeps from both plans is stored once),
    /// and each class's digest follows from `self`'s and the services that changed.
    pub fn next(&self, snapshot: &Snapshot, topology: &Topology) -> Zones {
        build(snapshot, topology, Some(self))
    }

    /// The delta for `gateway` from `old`'s content at `base` (whose digest is
    /// `base_digest`, as published) to this content at `version`: the same as
    /// `Delta::between(old.snapshot(gateway, base), self.snapshot(gateway, version))` with
    /// that digest, but built from the services that differ, not from two whole snapshots
    /// (when the nodes with a slot and this gateway's slot order are the same; otherwise it
    /// builds both). `None` where `Delta::between` gives none: publish a snapshot.
    pub fn delta(
        &self,
        old: &Zones,
        gateway: &str,
        base: Version,
        base_digest: Digest,
        version: Version,
    ) -> Option<Delta> {
        let cn = &self.classes[*self.gateways.get(gateway)?];
        let co = &old.classes[*old.gateways.get(gateway)?];
        let same_slots = cn.slots == co.slots
            && self.base.nodes.len() == old.base.nodes.len()
            && self
                .base
                .nodes
                .iter()
                .zip(old.base.nodes.iter())
                .all(|(a, b)| a.name == b.name);
        if !same_slots || header(&self.base, cn) != header(&old.base, co) {
            return Delta::between(
                &old.snapshot(gateway, base)?,
                &self.snapshot(gateway, version)?,
            );
        }
        // Same slots and slot order: a service's content here differs iff its base entry does.
        let (mut was, mut is) = (Vec::new(), Vec::new());
        walk(&old.base.services, &self.base.services, true, |a, b| {
            if a.is_some() && a == b {
                // The same service under the same slot order: the same item.
                return true;
            }
            was.extend(a.and_then(|a| item(&old.base, co, a)));
            is.extend(b.and_then(|b| item(&self.base, cn, b)));
            true
        });
        let was = wire(&old.base, co, gateway, base, was);
        let is = wire(&self.base, cn, gateway, version, is);
        let mut d = Delta::between(&was, &is)?;
        // The digest is a sum over items: swap the changed items' part.
        d.digest = base_digest.without(was.digest().0).with(is.digest().0);
        Some(d)
    }
}

fn header(b: &Base, c: &Class) -> ZoneHeader {
    ZoneHeader {
        suffix: b.suffix,
        local: b.local,
        ttl: b.ttl,
        service_ttl: b.service_ttl,
        family: c.family,
        nodes: c.slots.len() as u16,
        probe: Some(b.probe).filter(|&p| p != 0),
    }
}

fn wire(
    b: &Base,
    c: &Class,
    gateway: &str,
    version: Version,
    services: Vec<Service>,
) -> WireSnapshot {
    WireSnapshot {
        gateway: gateway.to_owned(),
        version,
        zone: header(b, c),
        nodes: c
            .slots
            .iter()
            .map(|&(i, tier)| wire_node(b, i, tier))
            .collect(),
        services,
    }
}

/// A service as class `c` carries it (`None`: none of its hosts has a slot).
fn item(b: &Base, c: &Class, s: &BaseService) -> Option<Service> {
    let n = b.nodes.len();
    let hosts: Vec<u16> = if c.slots.len() == n && s.hosts.len() == n {
        (0..n as u16).collect()
    } else {
        let mut h: Vec<u16> = s
            .hosts
            .iter()
            .map(|&i| c.slot_of[i as usize])
            .filter(|&k| k != u16::MAX)
            .collect();
        h.sort_unstable();
        h
    };
    (!hosts.is_empty()).then(|| Service {
        ns: s.ns.clone(),
        name: s.name.clone(),
        short: s.short,
        ports: s.ports.clone(),
        hosts,
    })
}

/// One gateway's payload v2 content ([`Zones::zone`]): the gateway id, a version and the
/// class view it shares with the gateways of its class (base and slot order of one plan).
/// Cloning it copies the id and two pointers. [`Zone::snapshot`] builds the whole
/// `encode::Snapshot`; [`Zone::digest`] reads the class's item sum (computed once per class
/// and plan); [`Zone::delta`] compares two zones by the services that are not the same
/// `Arc` (plans made with [`Zones::next`] share the services that did not change).
#[derive(Clone)]
pub struct Zone {
    gateway: String,
    version: Version,
    view: Arc<View>,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zone")
            .field("gateway", &self.gateway)
            .field("version", &self.version)
            .field("services", &self.view.base.services.len())
            .finish()
    }
}

/// What differs between two zones' items (node slots and services).
#[derive(Default)]
struct Changes {
    node_drop: Vec<u16>,
    node_set: Vec<(u16, Node)>,
    was: Vec<Service>,
    is: Vec<Service>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.node_drop.is_empty()
            && self.node_set.is_empty()
            && self.was.is_empty()
            && self.is.is_empty()
    }
}

impl Zone {
    /// The gateway id.
    pub fn gateway(&self) -> &str {
        &self.gateway
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
    pub fn header(&self) -> ZoneHeader {
        header(&self.view.base, &self.view.class)
    }

    /// The digest, as `snapshot().digest()` (without building the snapshot).
    pub fn digest(&self) -> Digest {
        let (nodes, services) = self.view.body();
        Digest(nodes.wrapping_add(services)).with(header_hash(&self.gateway, &self.header()))
    }

    /// The whole content.
    pub fn snapshot(&self) -> WireSnapshot {
        let (b, c) = (&*self.view.base, &*self.view.class);
        let services = b.services.iter().filter_map(|s| item(b, c, s)).collect();
        wire(b, c, &self.gateway, self.version, services)
    }

    /// The checks of `Snapshot::check` that depend on more than the planner (which builds
    /// node slots and services by the schema's rules): the gateway id and the settings.
    pub fn check(&self) -> Result<(), EncodeError> {
        if !is_gateway_id(&self.gateway) {
            return Err(EncodeError::Invalid {
                what: "gateway",
                item: None,
            });
        }
        self.header()
            .check()
            .map_err(|what| EncodeError::Invalid { what, item: None })
    }

    /// The same content (gateway, settings, node slots, services), whatever the versions.
    pub fn same_content(&self, other: &Zone) -> bool {
        if self.gateway != other.gateway {
            return false;
        }
        if Arc::ptr_eq(&self.view, &other.view) {
            return true;
        }
        self.header() == other.header()
            && self.digest() == other.digest()
            && Self::changes(self, other, true).is_empty()
    }

    /// The delta from `old` to `new`: the same as `Delta::between(&old.snapshot(),
    /// &new.snapshot())`, from the items that differ.
    pub fn delta(old: &Zone, new: &Zone) -> Option<Delta> {
        if old.gateway != new.gateway
            || old.header() != new.header()
            || !new.version.is_newer_than(old.version)
        {
            return None;
        }
        let ch = Self::changes(old, new, false);
        let h = new.header();
        let part = |services| WireSnapshot {
            gateway: new.gateway.clone(),
            version: Version(0),
            zone: h,
            nodes: Vec::new(),
            services,
        };
        let (mut was, mut is) = (part(ch.was), part(ch.is));
        was.version = old.version;
        is.version = new.version;
        let mut d = Delta::between(&was, &is)?;
        d.node_drop = ch.node_drop;
        d.node_set = ch.node_set;
        d.digest = new.digest();
        Some(d)
    }

    /// The items of `b` that differ from `a`'s (same header assumed); with `first`, stops
    /// at the first.
    fn changes(a: &Zone, b: &Zone, first: bool) -> Changes {
        let mut ch = Changes::default();
        let (va, vb) = (&*a.view, &*b.view);
        if Arc::ptr_eq(&a.view, &b.view) {
            return ch;
        }
        let same_class = Arc::ptr_eq(&va.class, &vb.class) || va.class == vb.class;
        let same_nodes = same_class && Arc::ptr_eq(&va.base.nodes, &vb.base.nodes);
        if !same_nodes {
            for (k, (&(i, ti), &(j, tj))) in va.class.slots.iter().zip(&vb.class.slots).enumerate()
            {
                let (x, y) = (&va.base.nodes[i as usize], &vb.base.nodes[j as usize]);
                if ti == tj && x.name == y.name && x.addrs == y.addrs {
                    continue;
                }
                match (wire_node(&va.base, i, ti), wire_node(&vb.base, j, tj)) {
                    (Some(_), None) => ch.node_drop.push(k as u16),
                    (x, Some(y)) if x != Some(y) => ch.node_set.push((k as u16, y)),
                    _ => {}
                }
                if first && !ch.is_empty() {
                    return ch;
                }
            }
        }
        walk(&va.base.services, &vb.base.services, same_class, |x, y| {
            if same_class && x.is_some() && x == y {
                return true;
            }
            let x = x.and_then(|x| item(&va.base, &va.class, x));
            let y = y.and_then(|y| item(&vb.base, &vb.class, y));
            if x != y {
                ch.was.extend(x);
                ch.is.extend(y);
            }
            !first || ch.is_empty()
        });
        ch
    }
}

/// The payload v2 content of one gateway: [`zones`] for one. `None` when the topology does
/// not name `gateway`.
pub fn snapshot(
    snapshot: &Snapshot,
    topology: &Topology,
    gateway: &str,
    version: Version,
) -> Option<WireSnapshot> {
    zones(snapshot, topology).snapshot(gateway, version)
}
