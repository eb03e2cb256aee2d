//! Size budgets: which prefix of each level of records (node names, `<service>.<namespace>`,
//! short names, SRV sets and their target cap) fits the contract's limits, computed once per
//! plan from upper bounds of each record's rendered bytes.

use std::sync::Arc;

use crate::content::{
    Budget, RecordType, SvcPlan, Worker, APEX_TXT, MAX_PAYLOAD_BYTES, MAX_RECORDS, MAX_SRV_TARGETS,
};

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
