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
use std::sync::Arc;

use sdwan_contract::v2::encode::{Delta, Service, Snapshot as WireSnapshot};
use sdwan_contract::v2::{
    self, is_node_name, is_port_label, Digest, Node, Port, Proto, Str, Tier, Version, ZoneHeader,
    MAX_NODES, MAX_PORTS, MAX_SERVICES,
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
    nodes: Vec<SlotNode>,
    services: Vec<BaseService>,
}

/// One slot order, shared by the gateways with the same `near` list, zone and policy.
#[derive(Debug)]
struct Class {
    family: v2::Family,
    /// (index into `Base::nodes`, tier), nearest first.
    slots: Vec<(u32, Tier)>,
    /// Slot per index into `Base::nodes` (`u16::MAX`: none).
    slot_of: Vec<u16>,
}

/// Payload v2 content of every gateway of a topology; see the module documentation.
#[derive(Debug, Clone)]
pub struct Zones {
    base: Arc<Base>,
    classes: Vec<Arc<Class>>,
    /// Gateway id -> class.
    gateways: BTreeMap<String, usize>,
    warnings: Vec<Warning>,
}

/// Plans payload v2 for every gateway of `topology` (pure: same inputs, same output).
pub fn zones(snapshot: &Snapshot, topology: &Topology) -> Zones {
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
            classes.push(Arc::new(class(&nodes, &key.0, key.1.as_deref(), key.2)));
        }
        gateways.insert(g.id.clone(), c);
    }
    warnings.sort();
    warnings.dedup();
    Zones {
        base: Arc::new(Base {
            suffix: Str::new(&topology.suffix).unwrap_or_default(),
            local: Str::new(&topology.local_label).unwrap_or_default(),
            ttl: topology.ttl,
            service_ttl: topology.service_ttl,
            probe: topology.proxy.listen_port,
            nodes,
            services,
        }),
        classes,
        gateways,
        warnings,
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
        let c = &self.classes[*self.gateways.get(gateway)?];
        let services = self
            .base
            .services
            .iter()
            .filter_map(|s| self.service(c, s))
            .collect();
        Some(self.wire(c, gateway, version, services))
    }

    fn header(&self, c: &Class) -> ZoneHeader {
        let b = &*self.base;
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
        &self,
        c: &Class,
        gateway: &str,
        version: Version,
        services: Vec<Service>,
    ) -> WireSnapshot {
        let b = &*self.base;
        let nodes = c
            .slots
            .iter()
            .map(|&(i, tier)| {
                let n = &b.nodes[i as usize];
                n.addrs.map(|(v4, v6)| Node {
                    name: Str::new(&n.name).unwrap_or_default(),
                    tier,
                    v4,
                    v6,
                })
            })
            .collect();
        WireSnapshot {
            gateway: gateway.to_owned(),
            version,
            zone: self.header(c),
            nodes,
            services,
        }
    }

    /// A service as class `c` carries it (`None`: none of its hosts has a slot).
    fn service(&self, c: &Class, s: &BaseService) -> Option<Service> {
        let n = self.base.nodes.len();
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
                .zip(&old.base.nodes)
                .all(|(a, b)| a.name == b.name);
        if !same_slots || self.header(cn) != old.header(co) {
            return Delta::between(
                &old.snapshot(gateway, base)?,
                &self.snapshot(gateway, version)?,
            );
        }
        // Same slots and slot order: a service's content here differs iff its base entry does.
        let (a, b) = (&old.base.services, &self.base.services);
        let (mut i, mut j) = (0, 0);
        let (mut was, mut is) = (Vec::new(), Vec::new());
        while i < a.len() || j < b.len() {
            let ord = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => (&x.ns, &x.name).cmp(&(&y.ns, &y.name)),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    was.extend(old.service(co, &a[i]));
                    i += 1;
                }
                Ordering::Greater => {
                    is.extend(self.service(cn, &b[j]));
                    j += 1;
                }
                Ordering::Equal => {
                    if a[i] != b[j] {
                        was.extend(old.service(co, &a[i]));
                        is.extend(self.service(cn, &b[j]));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        let was = old.wire(co, gateway, base, was);
        let is = self.wire(cn, gateway, version, is);
        let mut d = Delta::between(&was, &is)?;
        // The digest is a sum over items: swap the changed items' part.
        d.digest = base_digest.without(was.digest().0).with(is.digest().0);
        Some(d)
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
