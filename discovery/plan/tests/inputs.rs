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

/// Issue 12: every door of the master refuses nesting it did not ask for with a clear error,
/// never a stack overflow: the topology file (toml's parser stops at its own recursion limit;
/// dotted keys and table headers of any length too) and the cluster file (the checked door,
/// 64 levels, before serde_json).
#[test]
fn deeply_nested_inputs_are_a_clear_error() {
    const N: usize = 100_000;
    let arrays = format!("{}1{}", "[".repeat(N), "]".repeat(N));
    let tables = format!("{}1{}", "{a=".repeat(N), "}".repeat(N));
    let dotted = vec!["a"; N].join(".");
    // (case, topology text)
    let topologies = [
        ("arrays", format!("exclude_namespaces = {arrays}\n")),
        (
            "arrays in a gateway",
            format!("[[gateway]]\nid = \"g\"\nnear = {arrays}\n"),
        ),
        ("inline tables", format!("proxy = {tables}\n")),
        ("dotted key", format!("{dotted} = 1\n")),
        ("table header", format!("[{dotted}]\n")),
        ("array of tables header", format!("[[{dotted}]]\n")),
    ];
    for (case, text) in &topologies {
        let e = Topology::from_toml(text).unwrap_err().to_string();
        assert!(e.starts_with("topology: "), "{case}: {e}");
    }
    let e = Topology::from_toml(&" ".repeat(sdwan_plan::topology::MAX_TOPOLOGY_BYTES + 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bytes, the limit is"), "{e}");

    // (case, cluster document, error text)
    let deep = format!("{}1{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    let list = |item: &str| format!(r#"{{"apiVersion":"v1","kind":"List","items":[{item}]}}"#);
    let docs = [
        (
            "an annotation 1,000,000 arrays deep",
            list(&format!(
                r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"n","annotations":{{"x":{deep}}}}}}}"#
            )),
            "document: not JSON: nested deeper than 64 levels of arrays and objects at byte 176",
        ),
        (
            "objects 65 deep",
            format!("{}1{}", "{\"a\":".repeat(65), "}".repeat(65)),
            "document: not JSON: nested deeper than 64 levels",
        ),
        (
            "a raw control character in a name",
            list("{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"n\u{1}\"}}"),
            "document: not JSON: raw control character in a string at byte 96",
        ),
    ];
    for (case, doc, want) in &docs {
        let e = Snapshot::from_kubectl_json(doc.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{case}: {e}");
    }
}
