//! Issue 12, item 2: nothing a master, a broker or a file sends takes the agent down. Zone
//! payloads nested tens of thousands of levels deep (an unknown field, `records` under an
//! unknown version, a record's data) overflowed the agent's stack; retained (or queued at
//! QoS 1) they did so again at every restart, and DNS was down on that branch. Now the
//! checked door refuses them: the real agent binary keeps answering (dig) with its previous
//! zone, reports the error in its status, and comes back after a restart with the hostile
//! payload still retained. `--zone-file` with such a file exits 1 with a clear message.

mod mqtt_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mqtt_common::*;
use sdwan_link::State;
use sdwan_testsupport::{dig, free_port, ChildGuard, TempDir};

/// `n` levels of `[` (arrays) or `{"a":` (objects) around `1`.
fn nested(n: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))
    } else {
        format!("{}1{}", "[".repeat(n), "]".repeat(n))
    }
}

/// The zone of `serial` for gw-a with `extra` spliced in after the version field.
fn zone_with(serial: u32, extra: &str) -> Vec<u8> {
    zone("gw-a", serial)
        .replacen("\"serial\"", &format!("{extra},\"serial\""), 1)
        .into_bytes()
}

/// The message `msg` with `extra` spliced in after its first `{`.
fn spliced(msg: &[u8], extra: &str) -> Vec<u8> {
    String::from_utf8(msg.to_vec())
        .unwrap()
        .replacen('{', &format!("{{{extra},"), 1)
        .into_bytes()
}

/// The agent answers `svc` with the address of `serial` (asked with dig).
fn dig_serves(dns: std::net::SocketAddr, serial: u32, what: &str) {
    let a = dig(dns, &[NAME, "A"]);
    assert_eq!(a.status.as_deref(), Some("NOERROR"), "{what}: {}", a.stdout);
    assert_eq!(
        a.answer_data("A"),
        [ip_for(serial).to_string()],
        "{what}: not the previous zone"
    );
}

#[test]
fn deeply_nested_zone_payloads_keep_the_previous_zone_served() {
    let mut rig = GatewayRig::start("hostile-zone", true, 10);
    let s10 = snapshot_v2("gw-a", 10, 10);
    let s11 = snapshot_v2("gw-a", 11, 11);
    let delta = delta_v2(&s10, &s11);
    let part = s11.encode().unwrap().remove(0);
    // (case, topic, message: valid but for its nesting, so only the door refuses it)
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "unknown field 30,000 objects deep",
            "delta",
            spliced(&delta, &format!("\"x\":{}", nested(30_000, true))),
        ),
        (
            "unknown field 100,000 arrays deep",
            "delta",
            spliced(&delta, &format!("\"x\":{}", nested(100_000, false))),
        ),
        (
            "node slots 30,000 deep",
            "delta",
            String::from_utf8(delta.clone())
                .unwrap()
                .replacen(
                    "\"node_set\":[",
                    &format!("\"node_set\":[{},", nested(30_000, false)),
                    1,
                )
                .into_bytes(),
        ),
        (
            "a retained part with a node 30,000 deep",
            "part/0",
            String::from_utf8(part.clone())
                .unwrap()
                .replacen(
                    "\"nodes\":[",
                    &format!("\"nodes\":[{},", nested(30_000, true)),
                    1,
                )
                .into_bytes(),
        ),
    ];
    for (case, leaf, payload) in &cases {
        if leaf.starts_with("part") {
            // The agent reads parts only while it resyncs: a notice makes it.
            rig.master.publish_v2("gw-a", leaf, payload.clone());
            rig.master.notice(&s11);
        } else {
            rig.master.publish_v2("gw-a", leaf, payload.clone());
        }
        let want = "nested too deeply";
        let st = rig
            .master
            .wait_status("gw-a", &format!("{case}: error {want:?}"), |s| {
                s.error.as_deref().is_some_and(|e| e.contains(want))
            });
        assert_eq!(st.state, State::Online, "{case}");
        assert_eq!(st.held, Some(10), "{case}: version in use changed");
        dig_serves(rig.agent.dns, 10, case);
        rig.master.clear_statuses();
    }

    // The last hostile part stays retained: the agent restarts, serves its persisted zone,
    // reads the part again and refuses it again.
    rig.agent.restart();
    wait_serving(rig.agent.dns, 10);
    rig.master
        .wait_status("gw-a", "after a restart: the retained part refused", |s| {
            s.state == State::Online
                && s.held == Some(10)
                && s.error
                    .as_deref()
                    .is_some_and(|e| e.contains("nested too deeply"))
        });
    dig_serves(rig.agent.dns, 10, "after a restart");
    assert!(rig.agent.child.try_exit().is_none(), "agent exited");

    // A good snapshot still goes through.
    rig.master.publish_serial("gw-a", 12);
    wait_serving(rig.agent.dns, 12);
}

/// Runs `sdwan-agent --zone-file FILE` and returns its exit code and stderr.
fn run_with_zone_file(dir: &Path, name: &str, content: &[u8]) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdwan-agent"));
    cmd.arg("--zone-file")
        .arg(&path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()));
    let mut child = ChildGuard::spawn(&format!("sdwan-agent --zone-file {name}"), &mut cmd);
    let status = child.wait_exit(Duration::from_secs(20));
    (status.code(), child.stderr())
}

#[test]
fn deeply_nested_zone_file_exits_1_with_a_clear_message() {
    let tmp = TempDir::new("hostile-zone-file");
    // (file, content, what stderr must say)
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "deep.json",
            zone_with(1, &format!("\"x\":{}", nested(150_000, false))),
            "deep.json rejected: nested deeper than 3 levels of arrays and objects at byte"
                .into(),
        ),
        (
            "control.json",
            zone("gw-a", 1).replace("sdwan-discovery", "a\u{1}b").into_bytes(),
            "control.json rejected: record 1 (\"@\"): field `data`: raw control character in a \
             string"
                .into(),
        ),
        (
            "loop.json",
            zone("gw-a", 1)
                .replace(
                    r#"{"name":"@","type":"TXT","data":"sdwan-discovery"}"#,
                    r#"{"name":"a","type":"CNAME","data":"b"},{"name":"b","type":"CNAME","data":"a"}"#,
                )
                .into_bytes(),
            "loop.json rejected: record 1 (\"a\"): CNAME loop".into(),
        ),
        (
            "big.json",
            vec![b' '; 3 * 1024 * 1024],
            "big.json rejected: payload is 3145728 bytes, the limit is 1048576".into(),
        ),
    ];
    for (name, content, want) in cases {
        let (code, stderr) = run_with_zone_file(tmp.path(), name, &content);
        assert_eq!(code, Some(1), "{name}: exit code\n{stderr}");
        assert!(stderr.contains(&want), "{name}: want {want:?} in\n{stderr}");
        assert!(!stderr.contains("overflow"), "{name}\n{stderr}");
    }
}
