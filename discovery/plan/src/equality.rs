//! Equality of plan results: is a gateway's zone, or a worker's proxy payload, the same as
//! in the previous plan? Cheap when both come from the same plan (pointer equality), or
//! when only some services changed (compare those services' views); otherwise the records or
//! listings are compared.

use std::sync::Arc;

use crate::content::{Budget, ProxyContent, SvcPlan, ZoneContent, MAX_PROXY_NODES};

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
