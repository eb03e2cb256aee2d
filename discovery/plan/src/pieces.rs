//! Building a plan's pieces from the snapshot and topology (used by the `Planner`): the
//! Ready workers, one service's plan, the short-name flags, a gateway class's nearness order.

use std::collections::{BTreeSet, HashMap};

use crate::content::{Order, PortPlan, SvcPlan, Warning, Worker};
use crate::dns;
use crate::snapshot::{Protocol, Snapshot};
use crate::topology::{Family, Topology};

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
