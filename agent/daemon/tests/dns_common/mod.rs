//! Shared pieces of the DNS tests of the agent: the example zone in a store, raw queries for
//! the allocation tests, and the case-table schema (`dns_cases.toml`, `tap_cases.toml`) with
//! its check against a dig/kdig answer.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use sdwan_agent::store::{load_payload, ZoneStore};
use sdwan_testsupport::{dig, kdig, DigAnswer, Rr};
use serde::Deserialize;

/// A store holding `examples/zone.json`.
pub fn example_store() -> Arc<ZoneStore> {
    let store = ZoneStore::new();
    let zone =
        load_payload(include_bytes!("../../../../examples/zone.json")).expect("example zone");
    store.swap(zone);
    Arc::new(store)
}

/// A DNS query: id, name, type, optional EDNS UDP size; RD set.
pub fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if let Some(size) = edns {
        m.extend_from_slice(&[0, 0, 41]);
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    m
}

/// The queries both allocation tests start with (ids 1 to 4), for the example zone: A; AAAA
/// in mixed letter case with EDNS; SRV with EDNS 4096; NXDOMAIN with EDNS 512.
pub fn answer_queries() -> Vec<Vec<u8>> {
    vec![
        query(1, "local.k8s.internal", 1, None),
        query(2, "LOCAL.K8s.Internal", 28, Some(1232)),
        query(
            3,
            "_http._tcp.hello-world.default.k8s.internal",
            33,
            Some(4096),
        ),
        query(4, "nope.k8s.internal", 1, Some(512)),
    ]
}

/// A case table: `[[case]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub case: Vec<Case>,
}

/// One case; the fields are described at the top of `dns_cases.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default = "both_clients")]
    pub clients: Vec<String>,
    pub args: Vec<String>,
    pub status: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub not_flags: Vec<String>,
    pub answer: Option<Vec<String>>,
    pub answer_count: Option<usize>,
    pub answer_owner: Option<String>,
    pub answer_ttl: Option<u32>,
    pub authority: Option<Vec<String>>,
    pub additional: Option<Vec<String>>,
    pub soa_serial: Option<u32>,
    #[serde(default)]
    pub stdout_has: Vec<String>,
    #[serde(default)]
    pub stdout_lacks: Vec<String>,
}

fn both_clients() -> Vec<String> {
    vec!["dig".into(), "kdig".into()]
}

/// "TYPE data" of each record, sorted.
pub fn typed(rrs: &[Rr]) -> Vec<String> {
    let mut v: Vec<String> = rrs
        .iter()
        .map(|r| format!("{} {}", r.rtype, r.data))
        .collect();
    v.sort();
    v
}

/// Every way `got` differs from `case`.
pub fn check(case: &Case, got: &DigAnswer) -> Vec<String> {
    let mut bad = Vec::new();
    if got.status.as_deref() != Some(case.status.as_str()) {
        bad.push(format!("status {:?}, want {}", got.status, case.status));
    }
    for f in &case.flags {
        if !got.has_flag(f) {
            bad.push(format!("flag {f} missing (flags {:?})", got.flags));
        }
    }
    for f in &case.not_flags {
        if got.has_flag(f) {
            bad.push(format!("flag {f} set (flags {:?})", got.flags));
        }
    }
    if let Some(want) = &case.answer {
        let mut want = want.clone();
        want.sort();
        let have = typed(&got.answer);
        if have != want {
            bad.push(format!("answer {have:?}, want {want:?}"));
        }
    }
    if let Some(n) = case.answer_count {
        if got.answer.len() != n {
            bad.push(format!("{} answer records, want {n}", got.answer.len()));
        }
    }
    if let Some(owner) = &case.answer_owner {
        if got.answer.is_empty() || got.answer.iter().any(|r| &r.name != owner) {
            bad.push(format!("answer owners {:?}, want {owner}", got.answer));
        }
    }
    if let Some(ttl) = case.answer_ttl {
        if got.answer.is_empty() || got.answer.iter().any(|r| r.ttl != ttl) {
            bad.push(format!("answer TTLs {:?}, want {ttl}", got.answer));
        }
    }
    if let Some(want) = &case.authority {
        let have: Vec<&str> = got.authority.iter().map(|r| r.rtype.as_str()).collect();
        if have != *want {
            bad.push(format!("authority types {have:?}, want {want:?}"));
        }
    }
    if let Some(want) = &case.additional {
        let mut want = want.clone();
        want.sort();
        let have = typed(&got.additional);
        if have != want {
            bad.push(format!("additional {have:?}, want {want:?}"));
        }
    }
    if let Some(serial) = case.soa_serial {
        let soa = got.answer.iter().find(|r| r.rtype == "SOA");
        let have = soa.and_then(|r| r.data.split_whitespace().nth(2)?.parse::<u32>().ok());
        if have != Some(serial) {
            bad.push(format!("SOA serial {have:?}, want {serial}"));
        }
    }
    for s in &case.stdout_has {
        if !got.stdout.contains(s.as_str()) {
            bad.push(format!("output lacks {s:?}"));
        }
    }
    for s in &case.stdout_lacks {
        if got.stdout.contains(s.as_str()) {
            bad.push(format!("output has {s:?}"));
        }
    }
    bad
}

/// Asks the agent at `dns` every case of `cases` with each of the case's clients (dig,
/// kdig). Returns how many questions were asked and a report per wrong answer, each starting
/// with `label` (empty, or e.g. the gateway and a colon).
pub fn ask_cases(dns: SocketAddr, cases: &[Case], label: &str) -> (usize, Vec<String>) {
    let (mut asked, mut failures) = (0, Vec::new());
    for case in cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        for client in &case.clients {
            let got = match client.as_str() {
                "dig" => dig(dns, &args),
                "kdig" => kdig(dns, &args),
                other => panic!("case {:?}: unknown client {other}", case.name),
            };
            asked += 1;
            let bad = check(case, &got);
            if !bad.is_empty() {
                failures.push(format!(
                    "{label}{client} {:?} ({}):\n  {}\n{}",
                    case.name,
                    case.args.join(" "),
                    bad.join("\n  "),
                    got.stdout
                ));
            }
        }
    }
    (asked, failures)
}
