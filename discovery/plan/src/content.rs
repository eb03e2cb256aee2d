//! What a plan is made of: the contract's limits, [`Record`]s and [`Warning`]s, the
//! gateway-independent `Cluster` (Ready workers, exposed services, the record budget), the
//! nearness `Order` of a gateway class, and the two results built from them: [`ZoneContent`]
//! per gateway and [`ProxyContent`] per worker, with their accessors. Records are generated
//! in `records`, sized in `budget`, rendered in `render`, compared in `equality`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::listing::{ProxyPort, ProxyService};
use crate::nginx::ProxySettings;
use crate::snapshot::Protocol;
use crate::topology::Family;

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
    pub(crate) fn a_records(&self) -> usize {
        if self.hosts.is_empty() || !self.fq_ok {
            return 0;
        }
        usize::from(self.has_v4) + usize::from(self.has_v6)
    }
    pub(crate) fn srv_sets(&self) -> impl Iterator<Item = &PortPlan> {
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
    pub proxy: ProxySettings,
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
    pub(crate) fn admits(&self, w: &Worker) -> bool {
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

impl ZoneContent {
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

impl fmt::Debug for ZoneContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneContent")
            .field("origin", &self.cluster.origin)
            .field("nearness", &self.nearness())
            .field("services", &self.cluster.services.len())
            .finish()
    }
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

    pub(crate) fn service(s: &SvcPlan) -> ProxyService {
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
}

impl fmt::Debug for ProxyContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyContent")
            .field("node", &self.node())
            .field("local_services", &self.local_services().len())
            .finish()
    }
}
