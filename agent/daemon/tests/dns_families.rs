//! Issue 13 end to end on loopback: one mixed cluster (an IPv4-only and an IPv6-only worker
//! in espoo, a dual-stack worker in oulu) planned by `sdwan-plan` for gateways of each
//! address policy, each zone served by the built `sdwan-agent`, asked with dig and kdig: A,
//! AAAA, SRV with its additional section, NODATA with the SOA. Cases: `dns_families.toml`.

mod dns_common;

use std::collections::BTreeMap;

use dns_common::{ask_cases, CaseFile};
use sdwan_testsupport::{Agent, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-agent");

const TOPOLOGY: &str = r#"
suffix = "k8s.internal"
family = "ipv4"
[[gateway]]
id = "gw-dual"
zone = "espoo"
family = "dual"
near = ["v4-espoo"]
[[gateway]]
id = "gw-v4"
zone = "espoo"
near = ["v6-espoo"]
[[gateway]]
id = "gw-v6"
zone = "espoo"
family = "ipv6"
near = ["v4-espoo"]
[[gateway]]
id = "gw-oulu"
zone = "oulu"
family = "dual"
"#;

fn node(name: &str, zone: &str, addrs: &[&str]) -> serde_json::Value {
    let addresses: Vec<_> = addrs
        .iter()
        .map(|a| serde_json::json!({"type": "InternalIP", "address": a}))
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"addresses": addresses, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn service(name: &str, node_port: u16, on: &[&str]) -> [serde_json::Value; 2] {
    let endpoints: Vec<_> = on
        .iter()
        .map(|n| {
            serde_json::json!({"addresses": ["10.244.0.9"], "nodeName": n,
            "conditions": {"ready": true}})
        })
        .collect();
    [
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80,
                "protocol": "TCP", "nodePort": node_port}]}}),
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {"name": format!("{name}-1"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": name}},
            "endpoints": endpoints}),
    ]
}

/// Zone payload per gateway, as the master would publish them.
fn zones() -> BTreeMap<String, Vec<u8>> {
    let mut items = vec![
        node("v4-espoo", "espoo", &["10.1.0.1"]),
        node("v6-espoo", "espoo", &["fd00:1::2"]),
        node("dual-oulu", "oulu", &["10.2.0.3", "fd00:2::3"]),
    ];
    items.extend(service("both", 30001, &["v4-espoo", "dual-oulu"]));
    items.extend(service("six", 30002, &["v6-espoo", "dual-oulu"]));
    items.extend(service("v6only", 30004, &["v6-espoo"]));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let snapshot = sdwan_plan::Snapshot::from_kubectl_json(list.to_string().as_bytes()).unwrap();
    let topology = sdwan_plan::Topology::from_toml(TOPOLOGY).unwrap();
    let plan = sdwan_plan::plan(&snapshot, &topology);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    plan.gateways
        .iter()
        .map(|(id, z)| (id.clone(), z.render(id, 3)))
        .collect()
}

#[test]
fn each_address_policy_answers_through_a_real_agent() {
    let tables: BTreeMap<String, CaseFile> =
        toml::from_str(include_str!("dns_families.toml")).expect("dns_families.toml parses");
    let zones = zones();
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        zones.keys().collect::<Vec<_>>(),
        "a case table per gateway"
    );
    let dir = TempDir::new("families");
    let (mut asked, mut failures) = (0, Vec::new());
    for (gw, cases) in &tables {
        let path = dir.write(format!("{gw}.json"), &zones[gw]);
        let agent = Agent::start(BIN, &["--zone-file", path.to_str().unwrap()]);
        let (n, bad) = ask_cases(agent.dns, &cases.case, &format!("{gw}: "));
        asked += n;
        failures.extend(bad);
    }
    assert!(asked >= 40, "only {asked} queries");
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
