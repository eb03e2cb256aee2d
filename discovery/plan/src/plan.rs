//! The plan: cluster model + topology -> zone content per gateway, proxy content per worker.
//!
//! Structure (for scale, see `docs/planning.md`): one shared `Cluster` view per plan (Ready
//! workers, exposed services with their hosting workers, the record budget) and one nearness
//! `Order` per distinct gateway class (gateways with the same filtered `near` list and
//! `zone` and address policy share it). A [`ZoneContent`] is the pair; its records are
//! produced when rendered, so planning 2,000 gateways does not build 2,000 record lists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::dns;
use crate::snapshot::{Protocol, Snapshot};
use crate::topology::{Family, Topology};

/// Most records in one payload (contract).
pub const MAX_RECORDS: usize = 10_000;
/// Largest payload in bytes (contract).
pub const MAX_PAYLOAD_BYTES: usize = 1_048_576;
/// Most hosting nodes listed in one SRV RRset (contract).
pub const MAX_SRV_TARGETS: usize = 32;
/// Most workers listed per service in a proxy payload's `elsewhere`.
pub const MAX_PROXY_NODES: usize = 8;
/// Data of the apex TXT record.
pub const APEX_TXT: &str = "sdwan-discovery";

/// A record type the planner emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// `priority weight port target`.
    Srv,
    /// Text.
    Txt,
}

impl RecordType {
    /// The payload spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Srv => "SRV",
            RecordType::Txt => "TXT",
        }
    }
}

/// One record of a zone payload, names relative to the origin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Record {
    /// Owner name relative to the origin (`@` for the apex).
    pub name: String,
    /// Record type.
    pub type_: RecordType,
    /// Record data in payload form (`192.0.2.1`, `0 0 30080 worker1`).
    pub data: String,
    /// Record TTL when it differs from the document's.
    pub ttl: Option<u32>,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.name, self.type_.as_str(), self.data)
    }
}

/// Something the planner left out or could not honour. Planning goes on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Warning {
    /// A `near` entry of a gateway names no node in the cluster.
    UnknownNearNode {
        /// Gateway id.
        gateway: String,
        /// The unknown name.
        node: String,
    },
    /// A Ready worker whose name is not a DNS label (or is the local label): it gets no
    /// `<node>` record and is no SRV target, but still answers `local` and service names.
    NodeNameNotLabel {
        /// Node name.
        node: String,
    },
    /// An exposed service whose name or namespace is not a DNS label: no records.
    ServiceNameNotLabel {
        /// Namespace.
        namespace: String,
        /// Service name.
        name: String,
    },
    /// A port name that is not a DNS label: no SRV for that port.
    PortNameNotLabel {
        /// Namespace.
        namespace: String,
        /// Service name.
        service: String,
        /// Port name.
        port: String,
    },
    /// A name longer than 255 octets under the suffix: left out.
    NameTooLong {
        /// The relative name.
        name: String,
    },
    /// A service whose short name equals a node name or the local label: only
    /// `<service>.<namespace>` is published.
    ShortNameTaken {
        /// Namespace.
        namespace: String,
        /// Service name.
        name: String,
    },
    /// Ready workers exist, but none has an address of the family the gateway's policy gives
    /// out (`family = "ipv6"` on an IPv4-only cluster): its zone has no address at all.
    NoCandidate {
        /// Gateway id.
        gateway: String,
        /// The policy, `ipv4` or `ipv6`.
        family: Family,
    },
    /// The zone would exceed the payload limits; the least important records were dropped
    /// (SRV targets beyond `srv_cap`, then whole SRV sets, short names, service names, nodes).
    ZoneTruncated {
        /// SRV targets per RRset actually kept (32 when not reduced).
        srv_cap: usize,
        /// Records dropped from every gateway's zone.
        dropped_records: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownNearNode { gateway, node } => {
                write!(f, "gateway {gateway}: near node {node:?} is not in the cluster")
            }
            Warning::NodeNameNotLabel { node } => write!(
                f,
                "node {node:?}: name is not a DNS label: no {node:?} record, not an SRV target"
            ),
            Warning::ServiceNameNotLabel { namespace, name } => write!(
                f,
                "service {namespace}/{name}: name or namespace is not a DNS label: skipped"
            ),
            Warning::PortNameNotLabel {
                namespace,
                service,
                port,
            } => write!(
                f,
                "service {namespace}/{service}: port name {port:?} is not a DNS label: no SRV"
            ),
            Warning::NameTooLong { name } => {
                write!(f, "name {name:?} is longer than 255 octets with the suffix: skipped")
            }
            Warning::ShortNameTaken { namespace, name } => write!(
                f,
                "service {namespace}/{name}: short name {name:?} is a node name or the local label: only {name}.{namespace} published"
            ),
            Warning::NoCandidate { gateway, family } => write!(
                f,
                "gateway {gateway}: family = {:?} but no Ready worker has an {} address: its zone answers no name with an address",
                family.as_str(),
                if *family == Family::Ipv6 { "IPv6" } else { "IPv4" }
            ),
            Warning::ZoneTruncated {
                srv_cap,
                dropped_records,
            } => write!(
                f,
                "zones exceed the payload limits ({MAX_RECORDS} records, {MAX_PAYLOAD_BYTES} bytes): dropped {dropped_records} records per gateway, SRV sets capped at {srv_cap} targets"
            ),
        }
    }
}

/// A Ready worker in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Worker {
    pub name: String,
    /// The name is a DNS label distinct from the local label: `<node>` record, SRV target.
    pub named: bool,
    pub zone: Option<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// One port with a nodePort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortPlan {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: u16,
    /// SRV owner (`_http._tcp.web.default`), when the port gets one.
    pub srv: Option<String>,
}

/// An exposed service, planned independently of any gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SvcPlan {
    pub namespace: String,
    pub name: String,
    /// `<name>.<namespace>`.
    pub fq: String,
    /// No other exposed service has this name.
    pub unique: bool,
    /// `unique`, and the short name is free (no node, not the local label) and short enough.
    pub short: bool,
    /// The fq name fits under the suffix.
    pub fq_ok: bool,
    pub ports: Vec<PortPlan>,
    /// Indices into `Cluster::workers` of workers holding a ready endpoint, ascending.
    pub hosts: Vec<u32>,
    /// Whether some host has an IPv4 / IPv6 address.
    pub has_v4: bool,
    pub has_v6: bool,
    /// Hosts that can be SRV targets.
    pub named_hosts: usize,
}

impl SvcPlan {
    fn a_records(&self) -> usize {
        if self.hosts.is_empty() || !self.fq_ok {
            return 0;
        }
        usize::from(self.has_v4) + usize::from(self.has_v6)
    }
    fn srv_sets(&self) -> impl Iterator<Item = &PortPlan> {
        let on = !self.hosts.is_empty() && self.fq_ok && self.named_hosts > 0;
        self.ports.iter().filter(move |p| on && p.srv.is_some())
    }
}

/// What is kept when the zone would exceed the limits: a prefix of each level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub nodes: usize,
    pub fq: usize,
    pub short: usize,
    pub srv_services: usize,
    pub srv_cap: usize,
    pub dropped: usize,
}

/// The gateway-independent part of a plan, shared by every [`ZoneContent`] and
/// [`ProxyContent`] of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cluster {
    pub origin: String,
    pub local_label: String,
    pub ttl: u32,
    pub service_ttl: u32,
    pub proxy: crate::nginx::ProxySettings,
    pub workers: Vec<Worker>,
    pub services: Vec<Arc<SvcPlan>>,
    pub budget: Budget,
}

/// See [`Cluster::service_view`]. Worker indices are only comparable between clusters with
/// the same workers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ServiceView {
    pub fq: bool,
    pub short: bool,
    pub srv: bool,
    /// The worker whose addresses the service's names answer (under the order's policy).
    pub answer: Option<u32>,
    pub targets: Vec<u32>,
}

impl SvcPlan {
    /// Everything but the hosts.
    pub(crate) fn same_static(&self, other: &SvcPlan) -> bool {
        self.namespace == other.namespace
            && self.name == other.name
            && self.fq == other.fq
            && self.short == other.short
            && self.fq_ok == other.fq_ok
            && self.ports == other.ports
    }
}

/// A nearness order over `Cluster::workers`, with the address policy of the gateways that
/// share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Order {
    /// Worker indices, nearest first; every worker appears once.
    pub by_rank: Vec<u32>,
    /// Position in `by_rank` per worker index.
    pub rank: Vec<u32>,
    /// Which addresses the zone gives out.
    pub family: Family,
}

impl Order {
    /// Whether worker `w` is a candidate under the policy: it has an address the zone gives
    /// out (`dual`: any address, which every Ready worker has).
    fn admits(&self, w: &Worker) -> bool {
        (self.family.v4() && w.ipv4.is_some()) || (self.family.v6() && w.ipv6.is_some())
    }
}

/// What one gateway's zone holds. Cheap to clone; render it with [`ZoneContent::render`].
#[derive(Clone)]
pub struct ZoneContent {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) order: Arc<Order>,
}

/// What one worker's reverse proxy needs (`docs/payload-proxy.md`). Cheap to clone.
#[derive(Clone)]
pub struct ProxyContent {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) node: u32,
}

/// The result of planning.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Zone content per gateway id (every gateway of the topology).
    pub gateways: BTreeMap<String, ZoneContent>,
    /// Proxy content per Ready worker name.
    pub nodes: BTreeMap<String, ProxyContent>,
    /// What was left out, sorted.
    pub warnings: Vec<Warning>,
}

/// Plans from scratch: the pure entry point. For repeated planning use
/// [`crate::Planner`], which re-plans only what a change touches.
pub fn plan(snapshot: &Snapshot, topology: &Topology) -> Plan {
    crate::Planner::new(snapshot.clone(), topology.clone())
        .plan()
        .clone()
}

// ---------------------------------------------------------------------------------------
// Record generation

/// Receives records; `name` and `data` are only valid during the call.
pub(crate) trait Sink {
    fn record(&mut self, name: &str, type_: RecordType, data: &str, ttl: Option<u32>);
}

impl<F: FnMut(&str, RecordType, &str, Option<u32>)> Sink for F {
    fn record(&mut self, name: &str, type_: RecordType, data: &str, ttl: Option<u32>) {
        self(name, type_, data, ttl)
    }
}

impl Cluster {
    fn svc_ttl(&self) -> Option<u32> {
        (self.service_ttl != self.ttl).then_some(self.service_ttl)
    }

    /// The nearest host (by `order`) that is a candidate under the order's policy: the one
    /// node all of a name's addresses come from (issue 13).
    fn nearest(&self, hosts: &[u32], order: &Order) -> Option<u32> {
        let ok = |h: u32| order.admits(&self.workers[h as usize]);
        if hosts.len() == self.workers.len() {
            // Every worker: the first of the order.
            return order.by_rank.iter().copied().find(|&h| ok(h));
        }
        hosts
            .iter()
            .copied()
            .filter(|&h| ok(h))
            .min_by_key(|&h| order.rank[h as usize])
    }

    /// The A and AAAA records of worker `w` that the order's policy gives out, named `name`.
    fn emit_worker(
        &self,
        name: &str,
        w: &Worker,
        family: Family,
        ttl: Option<u32>,
        data: &mut String,
        sink: &mut impl Sink,
    ) {
        if let Some(v4) = w.ipv4.filter(|_| family.v4()) {
            data.clear();
            let _ = write!(data, "{v4}");
            sink.record(name, RecordType::A, data, ttl);
        }
        if let Some(v6) = w.ipv6.filter(|_| family.v6()) {
            data.clear();
            let _ = write!(data, "{v6}");
            sink.record(name, RecordType::Aaaa, data, ttl);
        }
    }

    /// A name that answers the nearest candidate among `hosts`: both families from one node.
    fn emit_address(
        &self,
        name: &str,
        hosts: &[u32],
        order: &Order,
        ttl: Option<u32>,
        data: &mut String,
        sink: &mut impl Sink,
    ) {
        if let Some(h) = self.nearest(hosts, order) {
            let w = &self.workers[h as usize];
            self.emit_worker(name, w, order.family, ttl, data, sink);
        }
    }

    /// The records of one service under `order`, as the budget allows for its position.
    pub(crate) fn emit_service(
        &self,
        pos: usize,
        svc: &SvcPlan,
        order: &Order,
        sink: &mut impl Sink,
    ) {
        if svc.hosts.is_empty() || !svc.fq_ok {
            return;
        }
        let b = &self.budget;
        let ttl = self.svc_ttl();
        let mut data = String::with_capacity(64);
        if pos < b.fq {
            self.emit_address(&svc.fq, &svc.hosts, order, ttl, &mut data, sink);
        }
        if pos < b.short && svc.short {
            self.emit_address(&svc.name, &svc.hosts, order, ttl, &mut data, sink);
        }
        if pos < b.srv_services && svc.named_hosts > 0 {
            let targets = self.srv_targets(svc, order);
            for p in svc.srv_sets() {
                let owner = p.srv.as_deref().unwrap_or_default();
                for (prio, h) in targets.iter().enumerate() {
                    data.clear();
                    let _ = write!(
                        data,
                        "{prio} 0 {} {}",
                        p.node_port, self.workers[*h as usize].name
                    );
                    sink.record(owner, RecordType::Srv, &data, ttl);
                }
            }
        }
    }

    /// The SRV targets of a service under `order`: its hosting workers with DNS-valid names
    /// that are candidates under the policy (a target's `<node>` name must have an address
    /// this zone gives out), nearest first, at most the budget's SRV cap.
    fn srv_targets(&self, svc: &SvcPlan, order: &Order) -> Vec<u32> {
        let mut ranked: Vec<(u32, u32)> = svc
            .hosts
            .iter()
            .filter(|&&h| {
                let w = &self.workers[h as usize];
                w.named && order.admits(w)
            })
            .map(|&h| (order.rank[h as usize], h))
            .collect();
        let cap = self.budget.srv_cap;
        if ranked.len() > cap {
            ranked.select_nth_unstable(cap);
            ranked.truncate(cap);
        }
        ranked.sort_unstable();
        ranked.into_iter().map(|(_, h)| h).collect()
    }

    /// What the records of one service under `order` depend on besides its own static
    /// fields: which names are included, the worker their addresses come from and the SRV
    /// targets in order. Two services with equal static fields and equal views emit equal
    /// records.
    pub(crate) fn service_view(&self, pos: usize, svc: &SvcPlan, order: &Order) -> ServiceView {
        let b = &self.budget;
        let on = !svc.hosts.is_empty() && svc.fq_ok;
        let fq = on && pos < b.fq;
        let short = on && pos < b.short && svc.short;
        let srv =
            on && pos < b.srv_services && svc.named_hosts > 0 && svc.srv_sets().next().is_some();
        let answer = if fq || short {
            self.nearest(&svc.hosts, order)
        } else {
            None
        };
        let targets = if srv {
            self.srv_targets(svc, order)
        } else {
            Vec::new()
        };
        // Under a one-family policy a service may have hosts and still no record here: the
        // flags say whether records are emitted, so such a service compares equal to none.
        ServiceView {
            fq: fq && answer.is_some(),
            short: short && answer.is_some(),
            srv: srv && !targets.is_empty(),
            answer,
            targets,
        }
    }

    /// Every record of the zone under `order`, in payload order.
    pub(crate) fn emit_zone(&self, order: &Order, sink: &mut impl Sink) {
        sink.record("@", RecordType::Txt, APEX_TXT, None);
        let all: Vec<u32> = (0..self.workers.len() as u32).collect();
        let mut data = String::with_capacity(64);
        self.emit_address(&self.local_label, &all, order, None, &mut data, sink);
        // `<node>`: the node's own addresses, of the families the policy gives out (so an
        // SRV target's additional data follows the policy too).
        for w in self
            .workers
            .iter()
            .filter(|w| w.named)
            .take(self.budget.nodes)
        {
            self.emit_worker(&w.name, w, order.family, None, &mut data, sink);
        }
        for (pos, svc) in self.services.iter().enumerate() {
            self.emit_service(pos, svc, order, sink);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Budget: stay inside the payload limits whatever the cluster.

/// Decimal digits of `n`.
fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Upper bound of one record's bytes in the rendered payload.
fn record_bytes(name: &str, type_: RecordType, data_len: usize, ttl: Option<u32>) -> usize {
    // {"name":"","type":"","data":""},\n  + ,"ttl":NNNNNNNNNN
    34 + name.len() + type_.as_str().len() + data_len + ttl.map_or(0, |t| 7 + digits(t as usize))
}

/// Upper bound of the payload bytes besides the records (gateway id at its longest).
fn header_bytes(origin: &str) -> usize {
    // {"version":1,"serial":4294967295,"gateway":"<64>","origin":"","ttl":2147483647,"records":[\n]}\n
    100 + 64 + origin.len() + 16
}

pub(crate) fn compute_budget(
    origin: &str,
    local_label: &str,
    ttl: u32,
    service_ttl: u32,
    workers: &[Worker],
    services: &[Arc<SvcPlan>],
) -> Budget {
    let svc_ttl = (service_ttl != ttl).then_some(service_ttl);
    let v4_len = 15;
    let v6_len = 39;
    let max_target = workers
        .iter()
        .filter(|w| w.named)
        .map(|w| w.name.len())
        .max()
        .unwrap_or(0);
    let mut records = 0usize;
    let mut bytes = header_bytes(origin);
    let fits = |r: usize, b: usize| r <= MAX_RECORDS && b <= MAX_PAYLOAD_BYTES;
    // Level 0: apex TXT and local.
    records += 3;
    bytes += record_bytes("@", RecordType::Txt, APEX_TXT.len(), None)
        + record_bytes(local_label, RecordType::A, v4_len, None)
        + record_bytes(local_label, RecordType::Aaaa, v6_len, None);
    let mut total = 3;
    let addr_cost = |name: &str, v4: bool, v6: bool, ttl: Option<u32>| {
        let mut r = 0;
        let mut b = 0;
        if v4 {
            r += 1;
            b += record_bytes(name, RecordType::A, v4_len, ttl);
        }
        if v6 {
            r += 1;
            b += record_bytes(name, RecordType::Aaaa, v6_len, ttl);
        }
        (r, b)
    };
    let mut budget = Budget {
        nodes: 0,
        fq: 0,
        short: 0,
        srv_services: 0,
        srv_cap: MAX_SRV_TARGETS,
        dropped: 0,
    };
    // Level 1: node names.
    let mut open = true;
    for w in workers.iter().filter(|w| w.named) {
        let (r, b) = addr_cost(&w.name, w.ipv4.is_some(), w.ipv6.is_some(), None);
        total += r;
        if open && fits(records + r, bytes + b) {
            records += r;
            bytes += b;
            budget.nodes += 1;
        } else {
            open = false;
        }
    }
    // Level 2: <service>.<namespace>; level 3: short names.
    for short in [false, true] {
        let mut kept = 0;
        let mut stop = !open;
        for svc in services {
            let n = svc.a_records();
            if short && !svc.short {
                if !stop {
                    kept += 1;
                }
                continue;
            }
            let (r, b) = if n == 0 {
                (0, 0)
            } else {
                addr_cost(
                    if short { &svc.name } else { &svc.fq },
                    svc.has_v4,
                    svc.has_v6,
                    svc_ttl,
                )
            };
            total += r;
            if !stop && fits(records + r, bytes + b) {
                records += r;
                bytes += b;
                kept += 1;
            } else {
                stop = true;
            }
        }
        if short {
            budget.short = kept;
        } else {
            budget.fq = kept;
        }
        open &= !stop;
    }
    // Level 4: SRV, with the cap lowered before whole sets are dropped.
    let srv_cost = |svc: &SvcPlan, cap: usize| {
        let targets = svc.named_hosts.min(cap);
        let prio_len = digits(targets.max(1) - 1);
        let mut r = 0;
        let mut b = 0;
        for p in svc.srv_sets() {
            let owner = p.srv.as_deref().unwrap_or_default();
            let data = prio_len + 3 + digits(usize::from(p.node_port)) + 1 + max_target;
            r += targets;
            b += targets * record_bytes(owner, RecordType::Srv, data, svc_ttl);
        }
        (r, b)
    };
    let full: (usize, usize) = services
        .iter()
        .map(|s| srv_cost(s, MAX_SRV_TARGETS))
        .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
    total += full.0;
    if open {
        let mut cap = MAX_SRV_TARGETS;
        loop {
            let (r, b) = services
                .iter()
                .map(|s| srv_cost(s, cap))
                .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
            if fits(records + r, bytes + b) {
                records += r;
                budget.srv_cap = cap;
                budget.srv_services = services.len();
                break;
            }
            if cap == 1 {
                budget.srv_cap = 1;
                for s in services {
                    let (r, b) = srv_cost(s, 1);
                    if !fits(records + r, bytes + b) {
                        break;
                    }
                    records += r;
                    bytes += b;
                    budget.srv_services += 1;
                }
                break;
            }
            cap = if cap > 4 { cap / 2 } else { cap - 1 };
        }
    }
    budget.dropped = total - records;
    budget
}

// ---------------------------------------------------------------------------------------
// Rendering

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(Bytes(out), "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

struct Bytes<'a>(&'a mut Vec<u8>);
impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl ZoneContent {
    /// The zone payload v1 (`docs/payload.md`) for `gateway_id` with `serial`: same content,
    /// id and serial give the same bytes.
    pub fn render(&self, gateway_id: &str, serial: u32) -> Vec<u8> {
        let c = &self.cluster;
        let mut out = Vec::with_capacity(4096);
        let _ = write!(
            Bytes(&mut out),
            "{{\"version\":1,\"serial\":{serial},\"gateway\":"
        );
        json_str(&mut out, gateway_id);
        out.extend_from_slice(b",\"origin\":");
        json_str(&mut out, &c.origin);
        let _ = write!(Bytes(&mut out), ",\"ttl\":{},\"records\":[", c.ttl);
        let mut first = true;
        c.emit_zone(
            &self.order,
            &mut |name: &str, t: RecordType, data: &str, ttl: Option<u32>| {
                out.extend_from_slice(if first { b"\n" } else { b",\n" });
                first = false;
                out.extend_from_slice(b"{\"name\":");
                json_str(&mut out, name);
                let _ = write!(Bytes(&mut out), ",\"type\":\"{}\",\"data\":", t.as_str());
                json_str(&mut out, data);
                if let Some(ttl) = ttl {
                    let _ = write!(Bytes(&mut out), ",\"ttl\":{ttl}");
                }
                out.push(b'}');
            },
        );
        out.extend_from_slice(b"\n]}\n");
        out
    }

    /// The records, in payload order.
    pub fn records(&self) -> Vec<Record> {
        let mut v = Vec::new();
        self.cluster.emit_zone(
            &self.order,
            &mut |name: &str, t: RecordType, data: &str, ttl: Option<u32>| {
                v.push(Record {
                    name: name.to_owned(),
                    type_: t,
                    data: data.to_owned(),
                    ttl,
                })
            },
        );
        v
    }

    /// The gateway's address policy.
    pub fn family(&self) -> Family {
        self.order.family
    }

    /// The Ready workers in this gateway's nearness order.
    pub fn nearness(&self) -> Vec<&str> {
        self.order
            .by_rank
            .iter()
            .map(|&i| self.cluster.workers[i as usize].name.as_str())
            .collect()
    }
}

impl PartialEq for ZoneContent {
    /// Equal when the records are (cheap when both come from the same plan and class).
    fn eq(&self, other: &ZoneContent) -> bool {
        let same_order = Arc::ptr_eq(&self.order, &other.order) || self.order == other.order;
        if Arc::ptr_eq(&self.cluster, &other.cluster) && same_order {
            return true;
        }
        let (a, b) = (&*self.cluster, &*other.cluster);
        let layout = |x: &Budget| Budget { dropped: 0, ..*x };
        if same_order
            && a.origin == b.origin
            && a.local_label == b.local_label
            && a.ttl == b.ttl
            && a.service_ttl == b.service_ttl
            && layout(&a.budget) == layout(&b.budget)
            && a.services.len() == b.services.len()
            && a.workers == b.workers
        {
            // Same workers, order and layout: `local` and the node records are equal, and a
            // service's records follow from its static fields and its view.
            let mut decided = true;
            for (i, (s, t)) in a.services.iter().zip(&b.services).enumerate() {
                if Arc::ptr_eq(s, t) || s == t {
                    continue;
                }
                if !s.same_static(t) {
                    decided = false;
                    break;
                }
                if a.service_view(i, s, &self.order) != b.service_view(i, t, &other.order) {
                    return false;
                }
            }
            if decided {
                return true;
            }
        }
        a.origin == b.origin
            && self.cluster.ttl == other.cluster.ttl
            && self.records() == other.records()
    }
}

impl fmt::Debug for ZoneContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneContent")
            .field("origin", &self.cluster.origin)
            .field("nearness", &self.nearness())
            .field("services", &self.cluster.services.len())
            .finish()
    }
}

/// One service port as the proxy payload lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProxyPort {
    /// Port name, if any.
    pub name: Option<String>,
    /// Protocol.
    pub protocol: Protocol,
    /// Service port.
    pub port: u16,
    /// NodePort to proxy to.
    pub node_port: u16,
}

/// A service as the proxy payload lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProxyService {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// No other exposed service has this name (so `/<name>/` may be used).
    pub unique: bool,
    /// Ports with a nodePort.
    pub ports: Vec<ProxyPort>,
}

impl ProxyContent {
    /// The worker's name.
    pub fn node(&self) -> &str {
        &self.cluster.workers[self.node as usize].name
    }

    /// Whether the worker has an IPv6 address (its proxy then listens on IPv6 too).
    pub fn has_ipv6(&self) -> bool {
        self.cluster.workers[self.node as usize].ipv6.is_some()
    }

    fn service(s: &SvcPlan) -> ProxyService {
        ProxyService {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            unique: s.unique,
            ports: s
                .ports
                .iter()
                .map(|p| ProxyPort {
                    name: p.name.clone(),
                    protocol: p.protocol,
                    port: p.port,
                    node_port: p.node_port,
                })
                .collect(),
        }
    }

    /// Services with a ready endpoint on this worker.
    pub fn local_services(&self) -> Vec<ProxyService> {
        self.cluster
            .services
            .iter()
            .filter(|s| s.hosts.binary_search(&self.node).is_ok())
            .map(|s| Self::service(s))
            .collect()
    }

    /// Exposed services with a ready endpoint elsewhere and none here, each with up to
    /// [`MAX_PROXY_NODES`] of the workers holding one (by name; only workers with a
    /// `<node>` record, since the help page links to `http://<node>.<suffix>/...`).
    pub fn elsewhere(&self) -> Vec<(ProxyService, Vec<String>)> {
        self.cluster
            .services
            .iter()
            .filter(|s| s.hosts.binary_search(&self.node).is_err())
            .filter_map(|s| {
                let nodes: Vec<String> = s
                    .hosts
                    .iter()
                    .map(|&h| &self.cluster.workers[h as usize])
                    .filter(|w| w.named)
                    .take(MAX_PROXY_NODES)
                    .map(|w| w.name.clone())
                    .collect();
                (!nodes.is_empty()).then(|| (Self::service(s), nodes))
            })
            .collect()
    }

    /// The proxy payload draft (`docs/payload-proxy.md`) for `node` with `serial`.
    pub fn render(&self, node: &str, serial: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let _ = write!(
            Bytes(&mut out),
            "{{\"version\":1,\"serial\":{serial},\"node\":"
        );
        json_str(&mut out, node);
        out.extend_from_slice(b",\"suffix\":");
        json_str(&mut out, &self.cluster.origin);
        out.extend_from_slice(b",\"local_label\":");
        json_str(&mut out, &self.cluster.local_label);
        out.extend_from_slice(b",\"services\":[");
        let write_svcs =
            |out: &mut Vec<u8>, svcs: &[ProxyService], nodes: Option<&[Vec<String>]>| {
                for (i, s) in svcs.iter().enumerate() {
                    out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
                    out.extend_from_slice(b"{\"namespace\":");
                    json_str(out, &s.namespace);
                    out.extend_from_slice(b",\"name\":");
                    json_str(out, &s.name);
                    let _ = write!(Bytes(out), ",\"unique\":{},\"ports\":[", s.unique);
                    for (j, p) in s.ports.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(b"{\"name\":");
                        match &p.name {
                            Some(n) => json_str(out, n),
                            None => out.extend_from_slice(b"null"),
                        }
                        let _ = write!(
                            Bytes(out),
                            ",\"protocol\":\"{}\",\"port\":{},\"node_port\":{}}}",
                            p.protocol.as_k8s(),
                            p.port,
                            p.node_port
                        );
                    }
                    out.push(b']');
                    if let Some(nodes) = nodes {
                        out.extend_from_slice(b",\"nodes\":[");
                        for (j, n) in nodes[i].iter().enumerate() {
                            if j > 0 {
                                out.push(b',');
                            }
                            json_str(out, n);
                        }
                        out.push(b']');
                    }
                    out.push(b'}');
                }
            };
        let local = self.local_services();
        write_svcs(&mut out, &local, None);
        out.extend_from_slice(b"],\"elsewhere\":[");
        let elsewhere = self.elsewhere();
        let (svcs, nodes): (Vec<ProxyService>, Vec<Vec<String>>) =
            elsewhere.iter().cloned().unzip();
        write_svcs(&mut out, &svcs, Some(&nodes));
        // Issue 5: the rendered files and the directory they are rendered for.
        let settings = &self.cluster.proxy;
        let view = crate::nginx::ProxyView {
            node,
            suffix: &self.cluster.origin,
            local_label: &self.cluster.local_label,
            settings,
            local: &local,
            elsewhere: &elsewhere,
        };
        out.extend_from_slice(b"],\n\"dir\":");
        json_str(&mut out, settings.dir_trimmed());
        out.extend_from_slice(b",\n\"files\":{\"sdwan.conf\":");
        json_str(
            &mut out,
            &crate::nginx::render_conf_listen(&view, self.has_ipv6()),
        );
        out.extend_from_slice(b",\n\"help.html\":");
        json_str(&mut out, &crate::nginx::render_help(&view));
        out.extend_from_slice(b"}}\n");
        out
    }
}

impl ProxyContent {
    /// What one service contributes to this worker's payload, besides its name and ports:
    /// listed here, listed elsewhere with these workers, or absent.
    fn contribution(&self, s: &SvcPlan) -> (bool, Vec<u32>) {
        if s.hosts.binary_search(&self.node).is_ok() {
            return (true, Vec::new());
        }
        let nodes = s
            .hosts
            .iter()
            .copied()
            .filter(|&h| self.cluster.workers[h as usize].named)
            .take(MAX_PROXY_NODES)
            .collect();
        (false, nodes)
    }
}

impl PartialEq for ProxyContent {
    fn eq(&self, other: &ProxyContent) -> bool {
        if Arc::ptr_eq(&self.cluster, &other.cluster) && self.node == other.node {
            return true;
        }
        let (a, b) = (&*self.cluster, &*other.cluster);
        if self.node == other.node
            && a.origin == b.origin
            && a.local_label == b.local_label
            && a.proxy == b.proxy
            && a.services.len() == b.services.len()
            && a.workers == b.workers
        {
            // Same workers and the same services in the same places: compare the services
            // that differ by what they contribute.
            let mut decided = true;
            for (s, t) in a.services.iter().zip(&b.services) {
                if Arc::ptr_eq(s, t) {
                    continue;
                }
                if s.namespace != t.namespace || s.name != t.name {
                    decided = false;
                    break;
                }
                let (cs, ct) = (self.contribution(s), other.contribution(t));
                let absent = |c: &(bool, Vec<u32>)| !c.0 && c.1.is_empty();
                if absent(&cs) && absent(&ct) {
                    continue;
                }
                if cs != ct || s.unique != t.unique || s.ports != t.ports {
                    return false;
                }
            }
            if decided {
                return true;
            }
        }
        self.node() == other.node()
            && self.has_ipv6() == other.has_ipv6()
            && self.cluster.origin == other.cluster.origin
            && self.cluster.local_label == other.cluster.local_label
            && self.cluster.proxy == other.cluster.proxy
            && self.local_services() == other.local_services()
            && self.elsewhere() == other.elsewhere()
    }
}

impl fmt::Debug for ProxyContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyContent")
            .field("node", &self.node())
            .field("local_services", &self.local_services().len())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Building the pieces (used by the Planner)

/// Ready workers sorted by name, with their warnings.
pub(crate) fn plan_workers(
    snapshot: &Snapshot,
    topology: &Topology,
) -> (Vec<Worker>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let workers = snapshot
        .nodes()
        .values()
        .filter(|n| n.is_ready_worker())
        .map(|n| {
            let named = dns::valid_label(&n.name)
                && n.name != topology.local_label
                && dns::wire_len(&n.name, &topology.suffix) <= dns::MAX_NAME_OCTETS;
            if !named {
                warnings.push(Warning::NodeNameNotLabel {
                    node: n.name.clone(),
                });
            }
            Worker {
                name: n.name.clone(),
                named,
                zone: n.zone.clone(),
                ipv4: n.ipv4,
                ipv6: n.ipv6,
            }
        })
        .collect();
    (workers, warnings)
}

/// Plans one service without its `unique`/`short` flags (set by [`set_short`]).
/// `None` when the service is not exposed.
pub(crate) fn plan_service(
    snapshot: &Snapshot,
    topology: &Topology,
    worker_index: &HashMap<String, u32>,
    workers: &[Worker],
    namespace: &str,
    name: &str,
    warnings: &mut Vec<Warning>,
) -> Option<SvcPlan> {
    let info = snapshot
        .services()
        .get(&(namespace.to_owned(), name.to_owned()))?;
    if !info.is_exposable() || topology.exclude_namespaces.contains(namespace) {
        return None;
    }
    if !dns::valid_label(namespace) || !dns::valid_label(name) {
        warnings.push(Warning::ServiceNameNotLabel {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
        return None;
    }
    let fq = format!("{name}.{namespace}");
    let fq_ok = dns::wire_len(&fq, &topology.suffix) <= dns::MAX_NAME_OCTETS;
    if !fq_ok {
        warnings.push(Warning::NameTooLong { name: fq.clone() });
    }
    let mut ports = Vec::new();
    for p in &info.ports {
        let Some(node_port) = p.node_port else {
            continue;
        };
        let proto = match p.protocol {
            Protocol::Tcp => Some("_tcp"),
            Protocol::Udp => Some("_udp"),
            Protocol::Sctp => None,
        };
        let srv = match (proto, &p.name) {
            (None, _) => None,
            (Some(proto), Some(pn)) if dns::valid_label(pn) => Some(format!("_{pn}.{proto}.{fq}")),
            (Some(_), Some(pn)) => {
                warnings.push(Warning::PortNameNotLabel {
                    namespace: namespace.to_owned(),
                    service: name.to_owned(),
                    port: pn.clone(),
                });
                None
            }
            (Some(proto), None) => Some(format!("_{}.{proto}.{fq}", p.port)),
        };
        let srv = srv.filter(|s| {
            let ok = dns::wire_len(s, &topology.suffix) <= dns::MAX_NAME_OCTETS;
            if !ok && fq_ok {
                warnings.push(Warning::NameTooLong { name: s.clone() });
            }
            ok
        });
        // Kubernetes refuses duplicate port names; crafted input could still repeat one,
        // which would double an SRV RRset.
        let srv = srv.filter(|s| !ports.iter().any(|q: &PortPlan| q.srv.as_ref() == Some(s)));
        ports.push(PortPlan {
            name: p.name.clone(),
            protocol: p.protocol,
            port: p.port,
            node_port,
            srv,
        });
    }
    let hosts: Vec<u32> = snapshot
        .ready_nodes_of(namespace, name)
        .into_iter()
        .filter_map(|n| worker_index.get(n).copied())
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
    let hw = || hosts.iter().map(|&h| &workers[h as usize]);
    Some(SvcPlan {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        fq,
        unique: false,
        short: false,
        fq_ok,
        ports,
        has_v4: hw().any(|w| w.ipv4.is_some()),
        has_v6: hw().any(|w| w.ipv6.is_some()),
        named_hosts: hw().filter(|w| w.named).count(),
        hosts,
    })
}

/// Sets `unique` and `short` given how many exposed services carry the name.
pub(crate) fn set_short(
    svc: &mut SvcPlan,
    same_name: usize,
    topology: &Topology,
    worker_index: &HashMap<String, u32>,
    warnings: &mut Vec<Warning>,
) {
    svc.unique = same_name == 1;
    let taken = worker_index.contains_key(&svc.name) || svc.name == topology.local_label;
    svc.short = svc.unique && !taken && svc.fq_ok;
    if svc.unique && taken {
        warnings.push(Warning::ShortNameTaken {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
        });
    }
}

/// The nearness order of one gateway class.
pub(crate) fn build_order(
    workers: &[Worker],
    near: &[u32],
    zone: Option<&str>,
    family: Family,
) -> Order {
    let n = workers.len();
    let mut rank = vec![u32::MAX; n];
    let mut by_rank = Vec::with_capacity(n);
    let mut push = |i: u32, by_rank: &mut Vec<u32>| {
        if rank[i as usize] == u32::MAX {
            rank[i as usize] = by_rank.len() as u32;
            by_rank.push(i);
        }
    };
    for &i in near {
        push(i, &mut by_rank);
    }
    if let Some(zone) = zone {
        for (i, w) in workers.iter().enumerate() {
            if w.zone.as_deref() == Some(zone) {
                push(i as u32, &mut by_rank);
            }
        }
    }
    for i in 0..n as u32 {
        push(i, &mut by_rank);
    }
    Order {
        by_rank,
        rank,
        family,
    }
}
