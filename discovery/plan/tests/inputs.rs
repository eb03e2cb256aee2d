//! Bad input gives errors that name the object and the field; good input in all its shapes
//! is read. Cases are data files: `tests/data/topology.toml`, `tests/data/input.toml`.

use sdwan_plan::{Snapshot, Topology};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases<T> {
    case: Vec<T>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyCase {
    name: String,
    text: String,
    error: Option<String>,
    suffix: Option<String>,
    /// Gateway id -> the address policy it must end up with (`dual`, `ipv4`, `ipv6`).
    #[serde(default)]
    family: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputCase {
    name: String,
    json: String,
    error: Option<String>,
    nodes: Option<usize>,
}

fn cases<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let c: Cases<T> = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(!c.case.is_empty());
    c.case
}

#[test]
fn topology_cases() {
    let mut failures = Vec::new();
    for c in cases::<TopologyCase>("topology.toml") {
        match (Topology::from_toml(&c.text), &c.error) {
            (Ok(t), None) => {
                if let Some(s) = &c.suffix {
                    if &t.suffix != s {
                        failures.push(format!("{}: suffix {:?}, want {s:?}", c.name, t.suffix));
                    }
                }
                for (id, want) in &c.family {
                    let got = t.gateways.iter().find(|g| &g.id == id).map(|g| g.family);
                    if got.map(|f| f.as_str()) != Some(want.as_str()) {
                        failures.push(format!("{}: {id}: family {got:?}, want {want}", c.name));
                    }
                }
            }
            (Ok(_), Some(e)) => failures.push(format!("{}: accepted, want error {e:?}", c.name)),
            (Err(e), None) => failures.push(format!("{}: refused: {e}", c.name)),
            (Err(e), Some(want)) => {
                if !e.to_string().contains(want.as_str()) {
                    failures.push(format!(
                        "{}: error {:?}, want it to contain {want:?}",
                        c.name,
                        e.to_string()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn input_cases() {
    let mut failures = Vec::new();
    for c in cases::<InputCase>("input.toml") {
        match (Snapshot::from_kubectl_json(c.json.as_bytes()), &c.error) {
            (Ok(s), None) => {
                if let Some(n) = c.nodes {
                    if s.nodes().len() != n {
                        failures.push(format!("{}: {} nodes, want {n}", c.name, s.nodes().len()));
                    }
                }
            }
            (Ok(_), Some(e)) => failures.push(format!("{}: accepted, want error {e:?}", c.name)),
            (Err(e), None) => failures.push(format!("{}: refused: {e}", c.name)),
            (Err(e), Some(want)) => {
                if !e.to_string().contains(want.as_str()) {
                    failures.push(format!(
                        "{}: error {:?}, want it to contain {want:?}",
                        c.name,
                        e.to_string()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn merging_files_adds_and_replaces() {
    let mut s = Snapshot::from_kubectl_json(
        br#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"w1","labels":{"topology.kubernetes.io/zone":"a"}}}"#,
    )
    .unwrap();
    s.merge_kubectl_json(
        br#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Node","metadata":{"name":"w1","labels":{"topology.kubernetes.io/zone":"b"}}},
            {"apiVersion":"v1","kind":"Node","metadata":{"name":"w2"}}]}"#,
    )
    .unwrap();
    assert_eq!(s.nodes().len(), 2);
    assert_eq!(s.nodes()["w1"].zone.as_deref(), Some("b"));
    // A failed merge leaves the snapshot as it was.
    let before = s.clone();
    assert!(s
        .merge_kubectl_json(br#"{"kind":"List","items":[{"apiVersion":"v1","kind":"Node","metadata":{"name":"w3"}},{"kind":"Pod"}]}"#)
        .is_err());
    assert_eq!(s, before);
}
