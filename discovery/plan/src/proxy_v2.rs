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

use std::collections::HashMap;

use sdwan_contract::v2::proxy::{
    Protocol as V2Protocol, ProxyHeader, ProxyPort, ProxyService, ProxySnapshot, MAX_PROXY_LINKS,
};
use sdwan_contract::v2::{
    is_gateway_id, is_label, is_node_name, is_port_label, Str, Version, MAX_NODES, MAX_SERVICES,
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
}

/// Plans every worker's proxy content from `plan` (of `snapshot`).
pub fn proxies(snapshot: &Snapshot, plan: &Plan) -> Proxies {
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
    Proxies {
        slots,
        slot_of,
        nodes,
    }
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
