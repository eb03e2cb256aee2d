//! What a new user of `sdwan-discovery` is told (issue 12, item 11): `--help` into a pipe
//! nobody reads exits quietly, and the live master warns, once per cause, about a topology
//! that cannot work as meant: no gateway at all, a gateway `zone` no node carries, a status
//! from a gateway the topology does not name.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sdwan_testsupport::child::run_into_closed_pipe;
use sdwan_testsupport::{free_port, require_tool, ChildGuard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-discovery");
const PREFIX: &str = "sdwan/v1/default";
const STATUS: &str = r#"{"state":"online","serial":null,"error":null,"version":"0.1.0"}"#;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// The master over the bundled example cluster with `topology`, its embedded broker on a free
/// port (returned), up.
fn master(dir: &TempDir, topology: &str) -> (ChildGuard, u16) {
    let topo = dir.write("topology.toml", topology);
    let mqtt = free_port();
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg("--cluster-file")
        .arg(example("cluster.json"))
        .arg("--topology")
        .arg(&topo)
        .args(["--embedded-broker", &format!("127.0.0.1:{mqtt}")]);
    let mut m = ChildGuard::spawn("sdwan-discovery", &mut cmd);
    m.wait_stderr(Duration::from_secs(10), "embedded MQTT broker");
    (m, mqtt)
}

fn publish_status(mqtt: u16, gateway: &str) {
    let o = Command::new(require_tool("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &mqtt.to_string(), "-q", "1"])
        .args([
            "-t",
            &format!("{PREFIX}/gateways/{gateway}/status"),
            "-m",
            STATUS,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn help_and_version_into_a_closed_pipe_exit_0_quietly() {
    for flag in ["--help", "-h", "--version"] {
        let (st, err) = run_into_closed_pipe(Command::new(BIN).arg(flag));
        assert_eq!(st.code(), Some(0), "{flag}: {st}, stderr: {err}");
        assert_eq!(err, "", "{flag}");
    }
}

#[test]
fn zone_no_node_carries_and_unknown_gateway_status_are_warned_once() {
    let dir = TempDir::new("warn-once");
    let (mut m, mqtt) = master(
        &dir,
        "[[gateway]]\nid = \"gw-espoo\"\nzone = \"espoo\"\n\n\
         [[gateway]]\nid = \"gw-atlantis\"\nzone = \"atlantis\"\n",
    );
    let zone_warning = "gateway gw-atlantis: zone \"atlantis\" is carried by no node";
    m.wait_stderr(Duration::from_secs(10), zone_warning);
    for _ in 0..5 {
        publish_status(mqtt, "gw-ghost");
    }
    // A known gateway's status after them: once it is logged, the five were handled.
    publish_status(mqtt, "gw-espoo");
    let log = m.wait_stderr(Duration::from_secs(10), "gateway gw-espoo: online");
    let ghost = "status from gateway \"gw-ghost\", which the topology does not name";
    assert_eq!(log.matches(ghost).count(), 1, "{log}");
    assert_eq!(log.matches(zone_warning).count(), 1, "{log}");
    assert!(!log.contains("\"espoo\" is carried by no node"), "{log}");
    assert!(!log.contains("status from gateway \"gw-espoo\""), "{log}");
}

#[test]
fn empty_topology_is_warned() {
    let dir = TempDir::new("warn-empty");
    let (mut m, _) = master(&dir, "suffix = \"example.internal\"\n");
    m.wait_stderr(Duration::from_secs(10), "topology: no [[gateway]]");
}

#[test]
fn empty_topology_is_warned_by_plan_too() {
    let dir = TempDir::new("plan-empty");
    let topo = dir.write("topology.toml", "suffix = \"example.internal\"\n");
    let o = Command::new(BIN)
        .arg("plan")
        .arg("--cluster-file")
        .arg(example("cluster.json"))
        .arg("--topology")
        .arg(&topo)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: topology: no [[gateway]]: no zone written"),
        "{err}"
    );
}
