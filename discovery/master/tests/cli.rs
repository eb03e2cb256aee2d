//! The `sdwan-discovery` binary: `plan` on the bundled example, its errors, and `run
//! --cluster-file` with the embedded broker serving an agent (README command 1).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::agent_bin;
use sdwan_testsupport::{dig, free_port, require_tool, wait_for, ChildGuard, TempDir};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-discovery");

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn plan(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("plan")
        .arg("--cluster-file")
        .arg(example("cluster.json"))
        .arg("--topology")
        .arg(example("topology.toml"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn records(path: &Path, name: &str, rtype: &str) -> Vec<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out: Vec<String> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == name && r["type"] == rtype)
        .map(|r| r["data"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn fqdn(name: &str) -> String {
    format!("{name}.k8s.internal")
}

/// `plan --serial SERIAL` of the example into a new temporary directory's `out`, which must
/// succeed; the agents it is served with are queried with `dig`.
fn planned(name: &str, serial: &str) -> (TempDir, PathBuf) {
    require_tool("dig");
    let dir = TempDir::new(name);
    let out = dir.join("out");
    let o = plan(&out, &["--serial", serial]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (dir, out)
}

#[test]
fn plan_writes_zones_the_agent_serves() {
    let (_dir, out) = planned("plan", "7");
    let mut files: Vec<String> = std::fs::read_dir(out.join("gateways"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "gw-espoo.json",
            "gw-espoo.v2.jsonl",
            "gw-oulu.json",
            "gw-oulu.v2.jsonl",
            "gw-tampere.json",
            "gw-tampere.v2.jsonl"
        ]
    );
    let gateways: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.ends_with(".json"))
        .map(|f| out.join("gateways").join(f))
        .collect();
    assert!(std::fs::read_dir(out.join("nodes")).unwrap().count() >= 1);
    for zone in &gateways {
        let (_agent, addr) = serve(zone);
        let want = records(zone, "local", "A");
        assert!(!want.is_empty());
        let soa = dig(addr, &["k8s.internal", "SOA"]).answer_data("SOA")[0].clone();
        assert!(
            soa.contains(" 7 "),
            "SOA serial is not the --serial 7: {soa}"
        );
        assert_eq!(
            dig(addr, &[&fqdn("local"), "A"]).answer_data("A"),
            want,
            "{}",
            zone.display()
        );
    }
}

/// Starts an agent serving `zone` (`--zone-file`) on a free loopback port; waits until it
/// answers the apex SOA. `--probe off`: the example's workers (192.168.x) are not here, and
/// a test sends nothing beyond loopback.
fn serve(zone: &Path) -> (ChildGuard, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(agent_bin());
    cmd.arg("--zone-file")
        .arg(zone)
        .args(["--listen", &addr.to_string(), "--probe", "off"]);
    let agent = ChildGuard::spawn("sdwan-agent --zone-file", &mut cmd);
    wait_for(Duration::from_secs(10), "agent answers", || {
        (dig(addr, &["k8s.internal", "SOA"]).answer_data("SOA").len() == 1).then_some(())
    });
    (agent, addr)
}

/// `plan` writes each gateway's payload v2 snapshot beside its v1 zone; an agent given it
/// with `--zone-file` answers every name of the v1 zone the same (the v1 records of the
/// example are all within v1's limits, so nothing there is truncated).
#[test]
fn plan_v2_snapshots_answer_as_the_v1_zones() {
    let (dir, out) = planned("plan-v2", "9");
    for id in ["gw-espoo", "gw-oulu", "gw-tampere"] {
        let v1 = out.join(format!("gateways/{id}.json"));
        let v2 = out.join(format!("gateways/{id}.v2.jsonl"));
        let (_a1, addr1) = serve(&v1);
        let (_a2, addr2) = serve(&v2);
        let v: Value = serde_json::from_slice(&std::fs::read(&v1).unwrap()).unwrap();
        let mut names: Vec<(String, String)> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| ["A", "AAAA", "SRV"].contains(&r["type"].as_str().unwrap()))
            .map(|r| {
                let name = r["name"].as_str().unwrap();
                (fqdn(name), r["type"].as_str().unwrap().to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        assert!(names.len() >= 10, "{id}: only {} names", names.len());
        for (name, rtype) in &names {
            let mut a = dig(addr1, &[name, rtype]).answer_data(rtype);
            let mut b = dig(addr2, &[name, rtype]).answer_data(rtype);
            a.sort();
            b.sort();
            assert!(!a.is_empty(), "{id}: v1 zone has no {name} {rtype}");
            assert_eq!(a, b, "{id}: {name} {rtype}: v1 zone vs v2 snapshot");
        }
        // Not a snapshot of this gateway in full: a clear refusal at start, not a half zone.
        let text = std::fs::read_to_string(&v2).unwrap();
        let cut = dir.join(format!("{id}-cut.v2.jsonl"));
        std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
        let o = Command::new(agent_bin())
            .arg("--zone-file")
            .arg(&cut)
            .args(["--listen", "127.0.0.1:0", "--probe", "off"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{id}: a cut snapshot was served");
        assert!(
            err.contains("rejected as a payload v2 snapshot: line 1"),
            "{id}: {err}"
        );
    }
}

#[test]
fn plan_errors_name_the_file_object_and_field() {
    let dir = TempDir::new("plan-bad");
    let text = std::fs::read_to_string(example("cluster.json")).unwrap();
    let bad = text.replacen("\"nodePort\": 30080", "\"nodePort\": \"thirty\"", 1);
    assert_ne!(bad, text);
    let file = dir.write("cluster.json", bad);
    let o = Command::new(BIN)
        .arg("plan")
        .arg("--cluster-file")
        .arg(&file)
        .arg("--topology")
        .arg(example("topology.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("Service") && err.contains("nodePort"), "{err}");

    let o = Command::new(BIN)
        .args(["plan", "--cluster-file", "x.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--topology"));
}

/// README command 1: the master with its embedded broker over the bundled example, and an
/// agent subscribing to it; answers equal the offline plan's.
#[test]
fn run_cluster_file_with_embedded_broker_feeds_an_agent() {
    require_tool("dig");
    let dir = TempDir::new("static");
    let o = plan(&dir.join("out"), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let planned = dir.join("out/gateways/gw-espoo.json");

    let mqtt = free_port();
    let metrics = free_port();
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg("--cluster-file")
        .arg(example("cluster.json"))
        .arg("--topology")
        .arg(example("topology.toml"))
        .args(["--embedded-broker", &format!("127.0.0.1:{mqtt}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics}")]);
    let mut master = ChildGuard::spawn("sdwan-discovery run --cluster-file", &mut cmd);
    master.wait_stderr(Duration::from_secs(10), "embedded MQTT broker");

    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(agent_bin());
    cmd.args([
        "--broker",
        &format!("mqtt://127.0.0.1:{mqtt}"),
        "--gateway-id",
        "gw-espoo",
        // The example cluster's workers are not on loopback: no probes to them.
        "--probe",
        "off",
    ])
    .args(["--listen", &dns.to_string()]);
    let _agent = ChildGuard::spawn("sdwan-agent gw-espoo", &mut cmd);

    for (name, rtype) in [
        ("local", "A"),
        ("api.default", "A"),
        ("_http._tcp.api.default", "SRV"),
    ] {
        let want: Vec<String> = records(&planned, name, rtype)
            .into_iter()
            .map(|d| {
                if rtype == "SRV" {
                    format!("{d}.k8s.internal.")
                } else {
                    d
                }
            })
            .collect();
        assert!(!want.is_empty(), "{name} {rtype} not in the example plan");
        wait_until_answer(dns, name, rtype, &want);
    }
    master.wait_stderr(
        Duration::from_secs(10),
        // "gateway gw-espoo: online, holds version V digest D, desired version V digest D:
        // converged, N ms after publish": only gw-espoo has an agent.
        "converged, ",
    );
}

fn wait_until_answer(dns: SocketAddr, name: &str, rtype: &str, want: &[String]) {
    wait_for(
        Duration::from_secs(10),
        &format!("{name} {rtype} = {want:?}"),
        || (dig(dns, &[&fqdn(name), rtype]).answer_data(rtype) == want).then_some(()),
    );
}
