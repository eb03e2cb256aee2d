//! Incremental planning: a [`Planner`] keeps the snapshot, the topology and the current
//! [`Plan`], applies watch events and re-plans only what they touch, returning which
//! gateways and nodes may have new payloads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::budget::compute_budget;
use crate::content::{
    Budget, Cluster, Order, Plan, ProxyContent, RecordType, SvcPlan, Warning, Worker, ZoneContent,
};
use crate::pieces::{build_order, plan_service, plan_workers, set_short};
use crate::snapshot::{InputError, Snapshot};
use crate::topology::Topology;

/// One watch event.
#[derive(Debug, Clone)]
pub enum Change {
    /// A node was added or modified.
    Node(Box<Node>),
    /// A node was deleted.
    NodeDeleted(String),
    /// A service was added or modified.
    Service(Box<Service>),
    /// A service was deleted.
    ServiceDeleted {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// An EndpointSlice was added or modified.
    Slice(Box<EndpointSlice>),
    /// An EndpointSlice was deleted.
    SliceDeleted {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// What an update touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// Gateways whose zone content may differ from before: a superset of those whose
    /// rendered payload changed (exact for service and slice events, all gateways when the
    /// set of Ready workers changed).
    pub gateways: BTreeSet<String>,
    /// Nodes whose proxy content may differ. A name here that is no longer a key of
    /// `Plan::nodes` stopped being a Ready worker.
    pub nodes: BTreeSet<String>,
    /// Objects applied only partly or not at all (see [`Snapshot::apply_node`]).
    pub input_errors: Vec<InputError>,
}

/// Keeps the cluster snapshot, the topology and the current plan.
#[derive(Debug)]
pub struct Planner {
    topology: Topology,
    snapshot: Snapshot,
    cluster: Arc<Cluster>,
    worker_index: HashMap<String, u32>,
    classes: Vec<Arc<Order>>,
    gateway_class: Vec<usize>,
    /// Exposed, validly named services: name -> namespaces.
    by_name: HashMap<String, BTreeSet<String>>,
    worker_warnings: Vec<Warning>,
    gateway_warnings: Vec<Warning>,
    service_warnings: BTreeMap<(String, String), Vec<Warning>>,
    plan: Plan,
}

type Key = (String, String);
/// A service before and after an update.
type Pair = (Option<Arc<SvcPlan>>, Option<Arc<SvcPlan>>);

impl Planner {
    /// Plans `snapshot` under `topology` from scratch.
    pub fn new(snapshot: Snapshot, topology: Topology) -> Planner {
        let mut p = Planner {
            topology,
            snapshot,
            cluster: Arc::new(Cluster {
                origin: String::new(),
                local_label: String::new(),
                ttl: 0,
                service_ttl: 0,
                proxy: Default::default(),
                workers: Vec::new(),
                services: Vec::new(),
                budget: compute_budget("", "", 0, 0, &[], &[]),
            }),
            worker_index: HashMap::new(),
            classes: Vec::new(),
            gateway_class: Vec::new(),
            by_name: HashMap::new(),
            worker_warnings: Vec::new(),
            gateway_warnings: Vec::new(),
            service_warnings: BTreeMap::new(),
            plan: Plan::default(),
        };
        p.rebuild();
        p
    }

    /// The current plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The topology in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Replaces the topology and re-plans everything.
    pub fn set_topology(&mut self, topology: Topology) -> Changed {
        let before = self.all_names();
        self.topology = topology;
        self.rebuild();
        let after = self.all_names();
        Changed {
            gateways: before.0.union(&after.0).cloned().collect(),
            nodes: before.1.union(&after.1).cloned().collect(),
            input_errors: Vec::new(),
        }
    }

    /// Replaces the whole snapshot (after a relist) and re-plans everything.
    pub fn set_snapshot(&mut self, snapshot: Snapshot) -> Changed {
        let before = self.all_names();
        self.snapshot = snapshot;
        self.rebuild();
        let after = self.all_names();
        Changed {
            gateways: before.0.union(&after.0).cloned().collect(),
            nodes: before.1.union(&after.1).cloned().collect(),
            input_errors: Vec::new(),
        }
    }

    fn all_names(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        (
            self.plan.gateways.keys().cloned().collect(),
            self.plan.nodes.keys().cloned().collect(),
        )
    }

    /// Applies watch events and re-plans what they touch.
    pub fn update(&mut self, changes: impl IntoIterator<Item = Change>) -> Changed {
        let mut out = Changed::default();
        let mut dirty: BTreeSet<Key> = BTreeSet::new();
        let mut nodes_touched = false;
        let note = |r: Result<(), InputError>, out: &mut Changed| {
            if let Err(e) = r {
                out.input_errors.push(e);
            }
        };
        for change in changes {
            match change {
                Change::Node(n) => {
                    nodes_touched = true;
                    note(self.snapshot.apply_node(&n), &mut out);
                }
                Change::NodeDeleted(name) => {
                    nodes_touched = true;
                    self.snapshot.delete_node(&name);
                }
                Change::Service(s) => {
                    if let (Some(ns), Some(n)) = (&s.metadata.namespace, &s.metadata.name) {
                        dirty.insert((ns.clone(), n.clone()));
                    }
                    note(self.snapshot.apply_service(&s), &mut out);
                }
                Change::ServiceDeleted { namespace, name } => {
                    self.snapshot.delete_service(&namespace, &name);
                    dirty.insert((namespace, name));
                }
                Change::Slice(s) => {
                    if let (Some(ns), Some(n)) = (&s.metadata.namespace, &s.metadata.name) {
                        if let Some(svc) =
                            self.snapshot.slice(ns, n).and_then(|o| o.service.clone())
                        {
                            dirty.insert((ns.clone(), svc));
                        }
                    }
                    note(self.snapshot.apply_slice(&s), &mut out);
                    if let (Some(ns), Some(n)) = (&s.metadata.namespace, &s.metadata.name) {
                        if let Some(svc) =
                            self.snapshot.slice(ns, n).and_then(|o| o.service.clone())
                        {
                            dirty.insert((ns.clone(), svc));
                        }
                    }
                }
                Change::SliceDeleted { namespace, name } => {
                    if let Some(svc) = self
                        .snapshot
                        .slice(&namespace, &name)
                        .and_then(|o| o.service.clone())
                    {
                        dirty.insert((namespace.clone(), svc));
                    }
                    self.snapshot.delete_slice(&namespace, &name);
                }
            }
        }
        if nodes_touched {
            let (workers, _) = plan_workers(&self.snapshot, &self.topology);
            if workers != self.cluster.workers {
                let before = self.all_names();
                self.rebuild();
                out.gateways = before.0.union(&self.all_names().0).cloned().collect();
                out.nodes = before.1.union(&self.all_names().1).cloned().collect();
                return out;
            }
            // Same workers: only warnings about `near` names can differ.
            self.build_classes();
            self.collect_warnings();
        }
        if !dirty.is_empty() {
            self.update_services(dirty, &mut out);
        }
        out
    }

    /// Full re-plan.
    fn rebuild(&mut self) {
        let (workers, ww) = plan_workers(&self.snapshot, &self.topology);
        self.worker_warnings = ww;
        self.worker_index = workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.clone(), i as u32))
            .collect();
        self.service_warnings.clear();
        self.by_name.clear();
        let mut planned: Vec<SvcPlan> = Vec::new();
        let keys: Vec<Key> = self.snapshot.services().keys().cloned().collect();
        for (ns, name) in keys {
            let mut w = Vec::new();
            if let Some(s) = plan_service(
                &self.snapshot,
                &self.topology,
                &self.worker_index,
                &workers,
                &ns,
                &name,
                &mut w,
            ) {
                self.by_name
                    .entry(name.clone())
                    .or_default()
                    .insert(ns.clone());
                planned.push(s);
            }
            if !w.is_empty() {
                self.service_warnings.insert((ns, name), w);
            }
        }
        let services: Vec<Arc<SvcPlan>> = planned
            .into_iter()
            .map(|mut s| {
                let n = self.by_name.get(&s.name).map_or(0, |v| v.len());
                let mut w = Vec::new();
                set_short(&mut s, n, &self.topology, &self.worker_index, &mut w);
                if !w.is_empty() {
                    self.service_warnings
                        .entry((s.namespace.clone(), s.name.clone()))
                        .or_default()
                        .extend(w);
                }
                Arc::new(s)
            })
            .collect();
        self.install(workers, services);
        self.build_classes();
        self.assemble();
    }

    fn install(&mut self, workers: Vec<Worker>, services: Vec<Arc<SvcPlan>>) {
        let t = &self.topology;
        let budget = compute_budget(
            &t.suffix,
            &t.local_label,
            t.ttl,
            t.service_ttl,
            &workers,
            &services,
        );
        self.cluster = Arc::new(Cluster {
            origin: t.suffix.clone(),
            local_label: t.local_label.clone(),
            ttl: t.ttl,
            service_ttl: t.service_ttl,
            proxy: t.proxy.clone(),
            workers,
            services,
            budget,
        });
    }

    /// Nearness order per gateway class, and the warnings about `near` lists.
    fn build_classes(&mut self) {
        type ClassKey = (Vec<u32>, Option<String>, crate::topology::Family);
        let mut by_key: HashMap<ClassKey, usize> = HashMap::new();
        self.classes.clear();
        self.gateway_class.clear();
        self.gateway_warnings.clear();
        for g in &self.topology.gateways {
            let mut near = Vec::with_capacity(g.near.len());
            for n in &g.near {
                match self.worker_index.get(n) {
                    Some(&i) => near.push(i),
                    None if !self.snapshot.nodes().contains_key(n) => {
                        self.gateway_warnings.push(Warning::UnknownNearNode {
                            gateway: g.id.clone(),
                            node: n.clone(),
                        })
                    }
                    None => {}
                }
            }
            // Zones no worker is in give the same order as no zone.
            let zone = g.zone.clone().filter(|z| {
                self.cluster
                    .workers
                    .iter()
                    .any(|w| w.zone.as_ref() == Some(z))
            });
            let key = (near, zone, g.family);
            let workers = &self.cluster.workers;
            if !workers.is_empty()
                && !workers.iter().any(|w| {
                    (g.family.v4() && w.ipv4.is_some()) || (g.family.v6() && w.ipv6.is_some())
                })
            {
                self.gateway_warnings.push(Warning::NoCandidate {
                    gateway: g.id.clone(),
                    family: g.family,
                });
            }
            let next = self.classes.len();
            let class = *by_key.entry(key.clone()).or_insert(next);
            if class == next {
                self.classes.push(Arc::new(build_order(
                    &self.cluster.workers,
                    &key.0,
                    key.1.as_deref(),
                    key.2,
                )));
            }
            self.gateway_class.push(class);
        }
    }

    fn collect_warnings(&mut self) {
        let mut w: Vec<Warning> = self
            .worker_warnings
            .iter()
            .chain(&self.gateway_warnings)
            .chain(self.service_warnings.values().flatten())
            .cloned()
            .collect();
        let b = &self.cluster.budget;
        if b.dropped > 0 {
            w.push(Warning::ZoneTruncated {
                srv_cap: b.srv_cap,
                dropped_records: b.dropped,
            });
        }
        w.sort();
        w.dedup();
        self.plan.warnings = w;
    }

    /// Builds `self.plan` from the cluster and classes.
    fn assemble(&mut self) {
        self.plan.gateways = self
            .topology
            .gateways
            .iter()
            .zip(&self.gateway_class)
            .map(|(g, &c)| {
                (
                    g.id.clone(),
                    ZoneContent {
                        cluster: self.cluster.clone(),
                        order: self.classes[c].clone(),
                    },
                )
            })
            .collect();
        self.plan.nodes = self
            .cluster
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    w.name.clone(),
                    ProxyContent {
                        cluster: self.cluster.clone(),
                        node: i as u32,
                    },
                )
            })
            .collect();
        self.collect_warnings();
    }

    /// Re-plans the given services (and those sharing a name with them).
    fn update_services(&mut self, mut dirty: BTreeSet<Key>, out: &mut Changed) {
        let workers = &self.cluster.workers;
        // Pass 1: exposure of the dirty services decides the name counts.
        let mut fresh: BTreeMap<Key, (Option<SvcPlan>, Vec<Warning>)> = BTreeMap::new();
        let mut names: BTreeSet<String> = BTreeSet::new();
        for key in &dirty {
            let mut w = Vec::new();
            let s = plan_service(
                &self.snapshot,
                &self.topology,
                &self.worker_index,
                workers,
                &key.0,
                &key.1,
                &mut w,
            );
            let set = self.by_name.entry(key.1.clone()).or_default();
            let changed = if s.is_some() {
                set.insert(key.0.clone())
            } else {
                set.remove(&key.0)
            };
            if set.is_empty() {
                self.by_name.remove(&key.1);
            }
            if changed {
                names.insert(key.1.clone());
            }
            fresh.insert(key.clone(), (s, w));
        }
        // Pass 2: services sharing a name whose count changed.
        for name in &names {
            for ns in self.by_name.get(name).into_iter().flatten() {
                let key = (ns.clone(), name.clone());
                if dirty.insert(key.clone()) {
                    let mut w = Vec::new();
                    let s = plan_service(
                        &self.snapshot,
                        &self.topology,
                        &self.worker_index,
                        workers,
                        ns,
                        name,
                        &mut w,
                    );
                    fresh.insert(key, (s, w));
                }
            }
        }
        // Finish them and splice them into the service list.
        let mut services = self.cluster.services.clone();
        let mut pairs: Vec<Pair> = Vec::new();
        let mut reshaped = false;
        for (key, (s, mut w)) in fresh {
            let new = s.map(|mut s| {
                let n = self.by_name.get(&s.name).map_or(0, |v| v.len());
                set_short(&mut s, n, &self.topology, &self.worker_index, &mut w);
                Arc::new(s)
            });
            if w.is_empty() {
                self.service_warnings.remove(&key);
            } else {
                self.service_warnings.insert(key.clone(), w);
            }
            let pos = services.binary_search_by(|s| {
                (s.namespace.as_str(), s.name.as_str()).cmp(&(key.0.as_str(), key.1.as_str()))
            });
            let old = match (pos, &new) {
                (Ok(i), Some(n)) => Some(std::mem::replace(&mut services[i], n.clone())),
                (Ok(i), None) => {
                    reshaped = true;
                    Some(services.remove(i))
                }
                (Err(i), Some(n)) => {
                    reshaped = true;
                    services.insert(i, n.clone());
                    None
                }
                (Err(_), None) => None,
            };
            if old.as_deref() != new.as_deref() {
                pairs.push((old, new));
            }
        }
        if pairs.is_empty() {
            self.collect_warnings();
            return;
        }
        let old_cluster = self.cluster.clone();
        self.install(old_cluster.workers.clone(), services);
        let new_cluster = self.cluster.clone();
        // Which gateways see different records. Without truncation a service's records
        // depend on nothing else; with it, only while the budget and every position stay.
        let (ob, nb) = (old_cluster.budget, new_cluster.budget);
        let untruncated = ob.dropped == 0 && nb.dropped == 0;
        let same_layout = Budget { dropped: 0, ..ob } == Budget { dropped: 0, ..nb } && !reshaped;
        let mut class_changed = vec![true; self.classes.len()];
        if untruncated || same_layout {
            let pos = |c: &Cluster, s: &Option<Arc<SvcPlan>>| match s {
                Some(s) if same_layout => c
                    .services
                    .binary_search_by(|x| {
                        (x.namespace.as_str(), x.name.as_str())
                            .cmp(&(s.namespace.as_str(), s.name.as_str()))
                    })
                    .unwrap_or(0),
                _ => 0,
            };
            for (c, order) in self.classes.iter().enumerate() {
                class_changed[c] = pairs.iter().any(|(old, new)| {
                    let view = |cl: &Cluster, s: &Option<Arc<SvcPlan>>| {
                        s.as_ref()
                            .map(|s| cl.service_view(pos(cl, &Some(s.clone())), s, order))
                    };
                    match (old, new) {
                        (Some(o), Some(n)) if o.same_static(n) => {
                            view(&old_cluster, old) != view(&new_cluster, new)
                        }
                        _ => {
                            service_records(
                                &old_cluster,
                                pos(&old_cluster, old),
                                old.as_deref(),
                                order,
                            ) != service_records(
                                &new_cluster,
                                pos(&new_cluster, new),
                                new.as_deref(),
                                order,
                            )
                        }
                    }
                });
            }
        }
        for (g, &c) in self.topology.gateways.iter().zip(&self.gateway_class) {
            if class_changed[c] {
                out.gateways.insert(g.id.clone());
            }
        }
        let proxy_changed = pairs.iter().any(|(old, new)| {
            let key = |s: &Option<Arc<SvcPlan>>| {
                s.as_ref()
                    .map(|s| (s.unique, s.hosts.clone(), s.ports.clone()))
                    .filter(|k| !k.1.is_empty())
            };
            key(old) != key(new)
        });
        if proxy_changed {
            out.nodes
                .extend(new_cluster.workers.iter().map(|w| w.name.clone()));
        }
        self.assemble();
    }
}

type Rec = (String, RecordType, String, Option<u32>);

/// The records of one service at position `pos` under `order`.
fn service_records(
    cluster: &Cluster,
    pos: usize,
    svc: Option<&SvcPlan>,
    order: &Order,
) -> Vec<Rec> {
    let mut v = Vec::new();
    if let Some(svc) = svc {
        cluster.emit_service(pos, svc, order, &mut |n: &str, t, d: &str, ttl| {
            v.push((n.to_owned(), t, d.to_owned(), ttl))
        });
    }
    v
}
