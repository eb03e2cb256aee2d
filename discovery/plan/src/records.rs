//! Record generation: the records of one gateway's zone from the shared `Cluster` and the
//! gateway class's `Order`, streamed into a `Sink` (nothing is collected unless asked:
//! [`ZoneContent::records`]).

use std::fmt::Write as _;

use crate::content::{
    Cluster, Order, Record, RecordType, ServiceView, SvcPlan, Worker, ZoneContent, APEX_TXT,
};
use crate::topology::Family;

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
    pub(crate) fn svc_ttl(&self) -> Option<u32> {
        (self.service_ttl != self.ttl).then_some(self.service_ttl)
    }

    /// The nearest host (by `order`) that is a candidate under the order's policy: the one
    /// node all of a name's addresses come from (issue 13).
    pub(crate) fn nearest(&self, hosts: &[u32], order: &Order) -> Option<u32> {
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
    pub(crate) fn emit_worker(
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
    pub(crate) fn emit_address(
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
    pub(crate) fn srv_targets(&self, svc: &SvcPlan, order: &Order) -> Vec<u32> {
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

impl ZoneContent {
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
}
