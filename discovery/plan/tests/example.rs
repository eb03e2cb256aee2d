//! The bundled example (examples/cluster.json + examples/topology.toml) plans as documented.

use sdwan_plan::{plan, RecordType, Snapshot, Topology, Warning, ZoneContent};

fn load() -> (Snapshot, Topology) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let cluster = std::fs::read(format!("{root}/cluster.json")).unwrap();
    let topo = std::fs::read_to_string(format!("{root}/topology.toml")).unwrap();
    (
        Snapshot::from_kubectl_json(&cluster).unwrap(),
        Topology::from_toml(&topo).unwrap(),
    )
}

fn answers(z: &ZoneContent, name: &str, t: RecordType) -> Vec<String> {
    z.records()
        .into_iter()
        .filter(|r| r.name == name && r.type_ == t)
        .map(|r| r.data)
        .collect()
}

#[test]
fn example_plans_as_documented() {
    let (s, t) = load();
    let p = plan(&s, &t);
    let espoo = &p.gateways["gw-espoo"];
    let oulu = &p.gateways["gw-oulu"];
    let tampere = &p.gateways["gw-tampere"];
    assert_eq!(answers(espoo, "local", RecordType::A), ["192.168.200.11"]);
    assert_eq!(answers(oulu, "local", RecordType::A), ["192.168.201.13"]);
    assert_eq!(answers(tampere, "local", RecordType::A), ["192.168.200.12"]);
    assert_eq!(
        answers(oulu, "hello-world.default", RecordType::A),
        ["192.168.201.13"]
    );
    assert_eq!(
        answers(espoo, "_http._tcp.hello-world.default", RecordType::Srv),
        ["0 0 30080 worker1", "1 0 30080 worker3"]
    );
    // Unready endpoint on worker1 does not count; control plane, NotReady node never answer.
    assert_eq!(answers(espoo, "api", RecordType::A), ["192.168.200.12"]);
    assert!(answers(espoo, "cp1", RecordType::A).is_empty());
    assert!(answers(espoo, "worker4", RecordType::A).is_empty());
    // Excluded namespace, expose annotation, no ready endpoint: nothing.
    for z in [espoo, oulu, tampere] {
        let names: Vec<String> = z.records().into_iter().map(|r| r.name).collect();
        assert!(!names.iter().any(|n| n.contains("metrics-server")
            || n.contains("internal-admin")
            || n.contains("reports")
            || n.contains("kubernetes")));
        // `web` exists in two namespaces: no short name.
        assert!(!names.iter().any(|n| n == "web"));
    }
    assert!(p.warnings.contains(&Warning::UnknownNearNode {
        gateway: "gw-tampere".into(),
        node: "worker9".into()
    }));
    assert_eq!(
        p.nodes.keys().collect::<Vec<_>>(),
        ["worker1", "worker2", "worker3", "worker5"]
    );
}

/// The example's payloads, byte for byte, against `tests/golden/` (serial 1). After an
/// intended change, regenerate with `SDWAN_UPDATE_GOLDEN=1 cargo test -p sdwan-plan --test
/// example` and review the diff.
#[test]
fn example_payloads_match_golden_files() {
    let (s, t) = load();
    let p = plan(&s, &t);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let update = std::env::var_os("SDWAN_UPDATE_GOLDEN").is_some();
    let mut files = Vec::new();
    for (id, z) in &p.gateways {
        files.push((format!("{dir}/gateways/{id}.json"), z.render(id, 1)));
    }
    for (n, c) in &p.nodes {
        files.push((format!("{dir}/nodes/{n}.json"), c.render(n, 1)));
    }
    let mut mismatches = Vec::new();
    for (path, bytes) in files {
        if update {
            std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            mismatches.push(path);
        }
    }
    assert!(mismatches.is_empty(), "payloads differ from {mismatches:?}");
}
