//! Scenario tests: each `tests/scenarios/*.toml` describes a cluster (compact form, turned
//! into real Kubernetes objects), a topology, and steps of watch events, with the answers
//! every gateway must give after each step. After every step the incremental planner must
//! agree byte for byte with planning from scratch, the agent core must accept every
//! payload, rendering must be deterministic, and every gateway whose answers changed must
//! be in the planner's changed set.

mod common;

use std::fmt::Write as _;

use common::scenario::*;
use common::*;
use sdwan_plan::{plan, Change, Planner, RecordType, Snapshot, Topology};

fn type_of(s: &str) -> RecordType {
    match s {
        "A" => RecordType::A,
        "AAAA" => RecordType::Aaaa,
        "SRV" => RecordType::Srv,
        "TXT" => RecordType::Txt,
        other => panic!("unknown record type {other}"),
    }
}

fn run(path: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let sc: Scenario = toml::from_str(&text).map_err(|e| e.to_string())?;
    let topology = Topology::from_toml(&sc.topology).map_err(|e| e.to_string())?;
    let mut snapshot = Snapshot::new();
    for n in &sc.node {
        snapshot.apply_node(&node(n)).map_err(|e| e.to_string())?;
    }
    for s in &sc.service {
        snapshot
            .apply_service(&service(s))
            .map_err(|e| e.to_string())?;
        snapshot
            .apply_slice(&slice(&service_slice(s)))
            .map_err(|e| e.to_string())?;
    }
    for s in &sc.slice {
        snapshot.apply_slice(&slice(s)).map_err(|e| e.to_string())?;
    }
    let mut planner = Planner::new(snapshot, topology.clone());
    let mut errors = String::new();
    let mut checks = 0;
    for step in &sc.step {
        let before = planner.plan().clone();
        let changes: Vec<Change> = step.changes.iter().flat_map(|c| c.changes()).collect();
        let changed = planner.update(changes);
        if !changed.input_errors.is_empty() {
            let _ = writeln!(
                errors,
                "step {:?}: input errors {:?}",
                step.name, changed.input_errors
            );
        }
        let p = planner.plan();
        let fresh = plan(planner.snapshot(), &topology);
        let mut err = |msg: String| {
            let _ = writeln!(errors, "step {:?}: {msg}", step.name);
        };
        // Incremental = from scratch, valid for the agent, deterministic.
        if p.gateways.keys().ne(fresh.gateways.keys()) || p.nodes.keys().ne(fresh.nodes.keys()) {
            err("incremental plan has other gateways/nodes than a fresh plan".into());
        }
        for (id, z) in &p.gateways {
            let bytes = z.render(id, 7);
            if fresh.gateways.get(id).map(|f| f.render(id, 7)) != Some(bytes.clone()) {
                err(format!(
                    "{id}: incremental payload differs from a fresh plan"
                ));
            }
            if z.render(id, 7) != bytes {
                err(format!("{id}: rendering is not deterministic"));
            }
            if let Err(e) = agent_accepts(&bytes) {
                err(format!("{id}: agent core refuses the payload: {e}"));
            }
            let was = before.gateways.get(id).map(|b| b.render(id, 7));
            if was.as_ref() != Some(&bytes) && !changed.gateways.contains(id) {
                err(format!(
                    "{id}: payload changed but the planner did not report it"
                ));
            }
            checks += 3;
        }
        for (n, c) in &p.nodes {
            if fresh.nodes.get(n).map(|f| f.render(n, 7)) != Some(c.render(n, 7)) {
                err(format!(
                    "node {n}: incremental proxy payload differs from a fresh plan"
                ));
            }
            let was = before.nodes.get(n).map(|b| b.render(n, 7));
            if was != Some(c.render(n, 7)) && !changed.nodes.contains(n) {
                err(format!(
                    "node {n}: proxy payload changed but the planner did not report it"
                ));
            }
            if serde_json::from_slice::<serde_json::Value>(&c.render(n, 7)).is_err() {
                err(format!("node {n}: proxy payload is not JSON"));
            }
        }
        if p.warnings != fresh.warnings {
            err(format!(
                "warnings differ from a fresh plan: {:?} vs {:?}",
                p.warnings, fresh.warnings
            ));
        }
        // The scenario's expectations.
        for (gw, answers) in &step.expect {
            let Some(z) = p.gateways.get(gw) else {
                err(format!("no gateway {gw}"));
                continue;
            };
            let records = z.records();
            for (key, want) in answers {
                let (name, t) = key.rsplit_once(' ').expect("\"name TYPE\"");
                let got: Vec<String> = records
                    .iter()
                    .filter(|r| r.name == name && r.type_ == type_of(t))
                    .map(|r| r.data.clone())
                    .collect();
                if &got != want {
                    err(format!("{gw}: {key}: got {got:?}, want {want:?}"));
                }
                checks += 1;
            }
        }
        for (gw, want) in &step.names {
            let Some(z) = p.gateways.get(gw) else {
                err(format!("no gateway {gw}"));
                continue;
            };
            let mut got: Vec<String> = z
                .records()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| n != "@")
                .collect();
            got.sort();
            got.dedup();
            if &got != want {
                err(format!("{gw}: names: got {got:?}, want {want:?}"));
            }
            checks += 1;
        }
        if let Some(want) = &step.proxy_nodes {
            let got: Vec<&String> = p.nodes.keys().collect();
            if got
                .iter()
                .map(|s| s.as_str())
                .ne(want.iter().map(|s| s.as_str()))
            {
                err(format!("proxy nodes: got {got:?}, want {want:?}"));
            }
            checks += 1;
        }
        for (n, want) in &step.proxy_local {
            let got: Vec<String> = p
                .nodes
                .get(n)
                .map(|c| {
                    c.local_services()
                        .iter()
                        .map(|s| format!("{}/{}", s.namespace, s.name))
                        .collect()
                })
                .unwrap_or_default();
            if &got != want {
                err(format!(
                    "proxy {n}: local services: got {got:?}, want {want:?}"
                ));
            }
            checks += 1;
        }
        for w in &step.warnings {
            if !p
                .warnings
                .iter()
                .any(|x| x.to_string().contains(w.as_str()))
            {
                err(format!("no warning containing {w:?} in {:?}", p.warnings));
            }
            checks += 1;
        }
        for g in &step.changed {
            if !changed.gateways.contains(g) {
                err(format!("{g} not reported changed: {:?}", changed.gateways));
            }
            checks += 1;
        }
        for g in &step.unchanged {
            if changed.gateways.contains(g) {
                err(format!("{g} reported changed: {:?}", changed.gateways));
            }
            checks += 1;
        }
    }
    if errors.is_empty() {
        Ok(checks)
    } else {
        Err(errors)
    }
}

#[test]
fn scenarios() {
    let files = scenario_files();
    assert!(!files.is_empty(), "no scenarios in tests/scenarios");
    let mut failures = String::new();
    for f in &files {
        match run(f) {
            Ok(n) => assert!(n > 0, "{}: checks nothing", f.display()),
            Err(e) => {
                let _ = write!(failures, "\n{}:\n{e}", f.display());
            }
        }
    }
    assert!(failures.is_empty(), "scenario failures:{failures}");
}
