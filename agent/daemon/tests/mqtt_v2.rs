//! Issue 11, payload v2, the gateway agent's side, against a real mosquitto with TLS, client
//! certificates and the design's ACL; answers checked with dig and kdig, and the status
//! document's `held`/`digest` as the master reads it. The test plays the master: it encodes
//! with `sdwan_contract::v2::encode` and publishes as user `master`.

mod mqtt_common;

#[path = "../../contract/tests/v2_common/mod.rs"]
mod v2_common;

use std::time::Duration;

use mqtt_common::*;
use sdwan_contract::v2::encode::{Delta, Service, Snapshot};
use sdwan_contract::v2::{Digest, Version};
use sdwan_link::Status;
use sdwan_testsupport::dig::{dig, kdig};
use sdwan_testsupport::{wait_for, wait_until, TempDir};

/// What the status must say: version `v`, digest of `snap`, no `want`.
fn holds(s: &Status, snap: &Snapshot) -> bool {
    s.held == Some(snap.version.0)
        && s.digest.as_deref() == Some(snap.digest().to_string().as_str())
        && s.serial.is_none()
}

/// Waits until the agent's log holds `needle` at least `n` times.
#[track_caller]
fn wait_log(agent: &Agent, needle: &str, n: usize) {
    wait_until(
        SOON,
        &format!("{n} x {needle:?} in the agent's log"),
        || agent.child.stderr().matches(needle).count() >= n,
    );
}

/// The broker confirmed the agent's `n`th unsubscription from the snapshot topics.
const LEFT: &str = "unsubscription confirmed by the broker";

#[track_caller]
fn wait_held(master: &Master, snap: &Snapshot) -> Status {
    master.wait_status(
        &snap.gateway,
        &format!("held {} digest {}", snap.version.0, snap.digest()),
        |s| holds(s, snap),
    )
}

/// `snap` moved to `version` with `svc` answering `ip_for(serial)`.
fn moved(snap: &Snapshot, version: u64, serial: u32) -> Snapshot {
    let mut s = snap.clone();
    s.version = Version(version);
    if let Some(Some(n)) = s.nodes.get_mut(0) {
        n.v4 = Some(ip_for(serial));
    }
    s
}

/// The synthetic 5,000-service zone for `gw-a`, with a short service `svc` on slot 0, and
/// slot 0's address [`ip_for`]`(serial)`.
fn big(seed: u64, version: u64, serial: u32) -> Snapshot {
    let mut s = v2_common::snapshot(seed);
    s.gateway = "gw-a".into();
    s.version = Version(version);
    s.services.retain(|x| x.name != "svc");
    for x in &mut s.services {
        x.short = false;
    }
    let svc = Service {
        ns: "default".into(),
        name: "svc".into(),
        short: true,
        ports: vec![],
        hosts: vec![0],
    };
    let at = s
        .services
        .binary_search_by(|x| (x.ns.as_str(), x.name.as_str()).cmp(&("default", "svc")))
        .unwrap_err();
    s.services.insert(at, svc);
    if let Some(Some(n)) = s.nodes.get_mut(0) {
        n.v4 = Some(ip_for(serial));
    }
    s
}

struct Rig {
    agent: Agent,
    master: Master,
    broker: sdwan_testsupport::mosquitto::Mosquitto,
    pki: Pki,
    tmp: TempDir,
}

/// A TLS mosquitto with the design's ACL (`persistence` as given), the test master, and an
/// agent for `gw-a` with its state in `<tmp>/state`.
fn rig(name: &str, persistence: bool) -> Rig {
    let tmp = TempDir::new(name);
    let pki = Pki::new(tmp.path());
    let broker = pki.broker(tmp.path(), persistence);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    let agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &tmp.join("state")));
    Rig {
        agent,
        master,
        broker,
        pki,
        tmp,
    }
}

#[test]
fn a_snapshot_in_several_parts_serves_every_record_of_5000_services() {
    let mut r = rig("v2-big", false);
    let snap = big(42, 1_764_694_800_123, 7);
    let parts = r.master.publish_snapshot(&snap);
    assert!(parts >= 3, "{parts} parts");
    wait_held(&r.master, &snap);
    wait_serving(r.agent.dns, 7);

    // An SRV set on every worker: whole over TCP (dig and kdig), TC over UDP.
    let ds = snap
        .services
        .iter()
        .find(|s| s.hosts.len() == v2_common::WORKERS && !s.ports.is_empty())
        .expect("a DaemonSet");
    let port = &ds.ports[0];
    let srv = format!(
        "_{}._{}.{}.{}.k8s.internal",
        port.label.as_str(),
        port.proto.as_str(),
        ds.name,
        ds.ns
    );
    for (tool, ans) in [
        ("dig", dig(r.agent.dns, &["+tcp", &srv, "SRV"])),
        ("kdig", kdig(r.agent.dns, &["+tcp", &srv, "SRV"])),
    ] {
        assert_eq!(
            ans.status.as_deref(),
            Some("NOERROR"),
            "{tool}: {}",
            ans.stdout
        );
        assert_eq!(
            ans.answer_data("SRV").len(),
            v2_common::WORKERS,
            "{tool} {srv}"
        );
    }
    let udp = dig(r.agent.dns, &["+ignore", "+notcp", &srv, "SRV"]);
    assert!(
        udp.has_flag("tc"),
        "UDP answer not truncated: {}",
        udp.stdout
    );

    // Names of services, nodes with both families, from the zone's own data.
    let svc = &snap.services[snap.services.len() / 2];
    let first = snap.nodes[usize::from(svc.hosts[0])].unwrap();
    let a = dig(
        r.agent.dns,
        &[&format!("{}.{}.k8s.internal", svc.name, svc.ns), "A"],
    );
    assert_eq!(a.answer_data("A"), [first.v4.unwrap().to_string()]);
    let dual = snap
        .nodes
        .iter()
        .flatten()
        .find(|n| n.v6.is_some())
        .unwrap();
    let aaaa = kdig(
        r.agent.dns,
        &[&format!("{}.k8s.internal", dual.name.as_str()), "AAAA"],
    );
    assert_eq!(aaaa.answer_data("AAAA"), [dual.v6.unwrap().to_string()]);
    r.agent.child.wait_stderr(
        SOON,
        &format!(
            "applied snapshot {} digest {} in {parts} parts",
            snap.version.0,
            snap.digest()
        ),
    );
}

#[test]
fn a_delta_on_its_base_applies_and_a_delta_for_another_base_resyncs() {
    let mut r = rig("v2-delta", false);
    let s1 = r.master.publish_serial("gw-a", 1);
    wait_serving(r.agent.dns, 1);
    wait_held(&r.master, &s1);
    wait_log(&r.agent, LEFT, 1);
    // On its base: applied.
    let s2 = moved(&s1, 2, 2);
    r.master.publish_v2("gw-a", "delta", delta_v2(&s1, &s2));
    wait_serving(r.agent.dns, 2);
    wait_held(&r.master, &s2);
    r.agent.child.wait_stderr(SOON, "applied delta 1->2");

    // The retained snapshot moves to 3 and the tail to 4 without the agent seeing it (no
    // notice); then a delta from 3: not its base. The agent resyncs and ends on snapshot 3
    // plus tail 3->4.
    let s3 = moved(&s1, 3, 3);
    let s4 = moved(&s1, 4, 4);
    for (k, p) in s3.encode().unwrap().into_iter().enumerate() {
        r.master.publish_v2("gw-a", &format!("part/{k}"), p);
    }
    r.master.publish_v2("gw-a", "tail", delta_v2(&s3, &s4));
    r.master.publish_v2("gw-a", "delta", delta_v2(&s3, &s4));
    wait_held(&r.master, &s4);
    wait_serving(r.agent.dns, 4);
    r.agent.child.wait_stderr(SOON, "resync because delta 3->4");
    r.agent.child.wait_stderr(SOON, "current at version 4");
    wait_log(&r.agent, LEFT, 2);

    // Current again, it left the snapshot topics: a retained snapshot 9 it is not told
    // about stays unread, and the next delta on its base (4->5) is what it serves.
    let s9 = moved(&s1, 9, 9);
    for (k, p) in s9.encode().unwrap().into_iter().enumerate() {
        r.master.publish_v2("gw-a", &format!("part/{k}"), p);
    }
    let s5 = moved(&s1, 5, 5);
    r.master.publish_v2("gw-a", "delta", delta_v2(&s4, &s5));
    wait_held(&r.master, &s5);
    wait_serving(r.agent.dns, 5);
}

#[test]
fn an_agent_offline_through_50_changes_catches_up() {
    let mut r = rig("v2-offline", false);
    // The retained snapshot is 100; the agent follows deltas to 105, then stops.
    let s100 = r.master.publish_serial("gw-a", 100);
    wait_held(&r.master, &s100);
    let mut cur = s100.clone();
    let publish_change = |master: &Master, cur: &mut Snapshot, v: u64| {
        let next = moved(&s100, v, v as u32);
        master.publish_v2("gw-a", "tail", delta_v2(&s100, &next));
        master.publish_v2("gw-a", "delta", delta_v2(cur, &next));
        *cur = next;
    };
    for v in 101..=105 {
        publish_change(&r.master, &mut cur, v);
    }
    wait_held(&r.master, &cur);
    r.agent.child.kill();
    // 50 changes while it is stopped; the retained snapshot stays at 100, the tail follows.
    for v in 106..=155 {
        publish_change(&r.master, &mut cur, v);
    }
    r.master.clear_statuses();
    r.agent.restart();
    wait_held(&r.master, &cur);
    wait_serving(r.agent.dns, 155);
    r.agent.child.wait_stderr(SOON, "current at version 155");
}

#[test]
fn a_version_at_its_maximum_moves_on_to_zero() {
    let r = rig("v2-max", false);
    let top = snapshot_v2("gw-a", u64::MAX - 1, 1);
    r.master.publish_snapshot(&top);
    wait_held(&r.master, &top);
    // (delta from, to, the serial its content answers)
    let cases: [(u64, u64, u32); 3] = [(u64::MAX - 1, u64::MAX, 2), (u64::MAX, 0, 3), (0, 1, 4)];
    let mut cur = top;
    for (from, to, serial) in cases {
        assert_eq!(cur.version.0, from);
        let next = moved(&cur, to, serial);
        r.master.publish_v2("gw-a", "delta", delta_v2(&cur, &next));
        wait_held(&r.master, &next);
        wait_serving(r.agent.dns, serial);
        cur = next;
    }
    // A snapshot after the wrap, announced by a notice, is newer too.
    let s2 = moved(&cur, 2, 5);
    r.master.publish_snapshot(&s2);
    wait_held(&r.master, &s2);
    wait_serving(r.agent.dns, 5);
}

#[test]
fn a_notice_resyncs_a_replay_is_ignored_and_a_reused_version_is_rejected() {
    let mut r = rig("v2-rules", false);
    let s10 = r.master.publish_serial("gw-a", 10);
    wait_held(&r.master, &s10);
    wait_log(&r.agent, LEFT, 1);
    // A notice of a newer snapshot: resync, serve it.
    let s11 = r.master.publish_serial("gw-a", 11);
    wait_held(&r.master, &s11);
    wait_serving(r.agent.dns, 11);
    r.agent
        .child
        .wait_stderr(SOON, "resync because a notice of version 11");
    let s12 = moved(&s11, 12, 12);
    r.master.publish_v2("gw-a", "delta", delta_v2(&s11, &s12));
    wait_held(&r.master, &s12);
    // A replay (the same delta again, an old notice): nothing happens. Then version 12
    // again with other content: rejected, reported, 12's content stays in use.
    r.master.publish_v2("gw-a", "delta", delta_v2(&s11, &s12));
    r.master.notice(&s11);
    let other = moved(&s11, 12, 99);
    r.master.publish_v2("gw-a", "delta", delta_v2(&s11, &other));
    let st = r
        .master
        .wait_status("gw-a", "an error", |s| s.error.is_some());
    let e = st.error.clone().unwrap();
    assert!(
        e.contains("version 12 reused with other content"),
        "error: {e}"
    );
    assert!(holds(&st, &s12), "{st:?}");
    let statuses = r.master.statuses_of("gw-a");
    let errors: Vec<_> = statuses.iter().filter_map(|s| s.error.clone()).collect();
    assert_eq!(errors.len(), 1, "replays reported: {errors:?}");
    wait_serving(r.agent.dns, 12);
    // A notice of the held version with another digest is reported too.
    r.master.notice(&other);
    wait_until(SOON, "a second error", || {
        r.master
            .statuses_of("gw-a")
            .iter()
            .filter(|s| s.error.as_deref().is_some_and(|e| e.starts_with("notice")))
            .count()
            == 1
    });
    // The next good delta clears the error.
    let s13 = moved(&s12, 13, 13);
    r.master.publish_v2("gw-a", "delta", delta_v2(&s12, &s13));
    let st = wait_held(&r.master, &s13);
    assert_eq!(st.error, None);
}

#[test]
fn parts_of_two_versions_interleaved_never_serve_a_mixed_zone() {
    let mut r = rig("v2-torn", false);
    let s20 = r.master.publish_serial("gw-a", 20);
    wait_held(&r.master, &s20);
    wait_log(&r.agent, LEFT, 1);
    let a = big(1, 21, 21);
    let b = big(2, 22, 22);
    let (pa, pb) = (a.encode().unwrap(), b.encode().unwrap());
    assert!(pa.len() >= 2 && pb.len() >= 2);
    // Answers seen while the parts come (a timeout on a loaded machine is no answer, not a
    // wrong one): each must be 20's or 22's.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let (stop, dns) = (stop.clone(), r.agent.dns);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(a) = query_a(dns, NAME, Duration::from_secs(2)) {
                    seen.push((a.rcode, a.a));
                }
            }
            seen
        })
    };
    // The agent learns of 22 and reads parts; parts of 21 and 22 come interleaved.
    r.master.notice(&b);
    r.agent
        .child
        .wait_stderr(SOON, "resync because a notice of version 22");
    for k in 0..pa.len().max(pb.len()) {
        if let Some(p) = pa.get(k) {
            r.master.publish_v2("gw-a", &format!("part/{k}"), p.clone());
        }
        if let Some(p) = pb.get(k) {
            r.master.publish_v2("gw-a", &format!("part/{k}"), p.clone());
        }
    }
    wait_held(&r.master, &b);
    wait_serving(r.agent.dns, 22);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = asker.join().unwrap();
    assert!(!seen.is_empty(), "no answer at all");
    for (rcode, a) in &seen {
        assert!(
            *rcode == 0 && (a == &[ip_for(20)] || a == &[ip_for(22)]),
            "an answer of neither whole version: rcode {rcode}, {a:?}"
        );
    }
    // Only whole versions were ever held: 20, then 22.
    let held: Vec<_> = r
        .master
        .statuses_of("gw-a")
        .iter()
        .filter_map(|s| Some((s.held?, s.digest.clone()?)))
        .collect();
    for (v, d) in &held {
        let want = match v {
            20 => s20.digest(),
            22 => b.digest(),
            _ => panic!("held version {v} ({d}): {held:?}"),
        };
        assert_eq!(Digest::parse_hex(d), Some(want), "{held:?}");
    }
}

#[test]
fn boot_with_the_broker_down_serves_the_persisted_zone_and_a_bad_file_is_ignored() {
    let mut r = rig("v2-boot", true);
    let s7 = r.master.publish_serial("gw-a", 7);
    wait_held(&r.master, &s7);
    let file = r.tmp.join("state").join("zone-v2.jsonl");
    wait_until(SOON, "zone-v2.jsonl written", || file.exists());
    let good = std::fs::read(&file).unwrap();
    r.broker.stop();
    // (case, file contents, what the agent serves: Some(serial) or None = REFUSED, log line)
    let other_gw = {
        let mut s = s7.clone();
        s.gateway = "gw-b".into();
        s.encode().unwrap().concat()
    };
    let cases: Vec<(&str, Vec<u8>, Option<u32>, &str)> = vec![
        ("whole", good.clone(), Some(7), "zone loaded from"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            None,
            "is corrupt or truncated, ignored",
        ),
        (
            "garbage",
            vec![0xff; 4096],
            None,
            "is corrupt or truncated, ignored",
        ),
        (
            "another gateway's",
            other_gw,
            None,
            "another gateway's message",
        ),
        (
            "digest that does not match",
            String::from_utf8(good.clone())
                .unwrap()
                .replace(&s7.digest().to_string(), &Digest(1).to_string())
                .into_bytes(),
            None,
            "is corrupt or truncated, ignored",
        ),
    ];
    for (case, contents, serves, log) in cases {
        std::fs::write(&file, &contents).unwrap();
        r.agent.restart();
        r.agent.child.wait_stderr(SOON, log);
        match serves {
            Some(serial) => wait_serving(r.agent.dns, serial),
            None => {
                let a = wait_for(SOON, &format!("{case}: an answer"), || {
                    query_a(r.agent.dns, NAME, Duration::from_millis(300)).ok()
                });
                assert_eq!(a.rcode, 5, "{case}: {a:?}");
            }
        }
    }
    // The broker back: the agent takes the retained snapshot.
    r.broker.start_again();
    wait_serving(r.agent.dns, 7);
}

#[test]
fn without_a_snapshot_the_status_asks_for_one_and_empty_messages_are_nothing() {
    let r = rig("v2-want", false);
    let st = r.master.wait_status("gw-a", "online", |_| true);
    assert_eq!((st.held, st.want.clone()), (None, None));
    let st = wait_for(Duration::from_secs(20), "want snapshot", || {
        r.master
            .status("gw-a")
            .filter(|s| s.want.as_deref() == Some("snapshot"))
    });
    assert_eq!(st.held, None);
    // Empty messages (a part or tail deleted, an empty delta) are "nothing here": no error.
    for leaf in ["part/3", "tail", "delta"] {
        r.master.publish_v2("gw-a", leaf, Vec::new());
    }
    // The master answers with the snapshot: taken (the agent is still subscribed), want
    // cleared.
    let s3 = r.master.publish_serial("gw-a", 3);
    let st = wait_held(&r.master, &s3);
    assert_eq!(st.want, None);
    wait_serving(r.agent.dns, 3);
    let errors: Vec<_> = r
        .master
        .statuses_of("gw-a")
        .into_iter()
        .filter_map(|s| s.error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!r.agent.child.stderr().contains("rejected"));
}

#[test]
fn a_gateway_cannot_read_another_gateways_v2_topics() {
    let r = rig("v2-acl", false);
    r.master.publish_serial("gw-a", 1);
    r.master.publish_serial("gw-b", 2);
    let b_tail = {
        let s = snapshot_v2("gw-b", 2, 2);
        Delta::between(&s, &moved(&s, 3, 3))
            .unwrap()
            .encode()
            .unwrap()
    };
    r.master.publish_v2("gw-b", "tail", b_tail);
    wait_serving(r.agent.dns, 1);
    let topics = sdwan_link::Topics::new(PREFIX).unwrap();
    let gw_a = r.pki.ca.client("gw-a");
    let read = |topic: &str| {
        let out = std::process::Command::new(sdwan_testsupport::require_tool("mosquitto_sub"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &r.broker.port().to_string(),
                "-t",
                topic,
            ])
            .args(["-C", "1", "-W", "2", "-q", "1", "-i", "gw-b"])
            .arg("--cafile")
            .arg(r.pki.ca.cert())
            .arg("--cert")
            .arg(&gw_a.cert)
            .arg("--key")
            .arg(&gw_a.key)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(read(&topics.gateway_v2("gw-a", "part/0")).contains("\"gw-a\""));
    for leaf in ["part/0", "tail", "part/+", "#"] {
        let got = read(&topics.gateway_v2("gw-b", leaf));
        assert_eq!(got, "", "gw-a read gw-b's v2/{leaf}");
    }
    // gw-a still serves its own zone.
    let a = query_a(r.agent.dns, NAME, Duration::from_secs(1)).unwrap();
    assert_eq!(a.a, [ip_for(1)]);
}

/// `VmRSS` and `VmHWM` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Issue 11 item 2: the agent's memory with the 5,000-service x 500-worker zone. Prints the
/// figures; asserts the 4 MiB (RSS and peak) only for a release build (`SDWAN_AGENT_BIN`,
/// the static musl x86_64 build: `docs/agent.md`, "Memory with the 5,000-service zone").
#[test]
#[ignore = "measurement: SDWAN_AGENT_BIN=<static musl release build>"]
fn rss_with_the_5000_service_zone() {
    let mut r = rig("v2-rss", false);
    let snap = big(42, 1_000, 7);
    let parts = r.master.publish_snapshot(&snap);
    wait_held(&r.master, &snap);
    wait_serving(r.agent.dns, 7);
    wait_log(&r.agent, LEFT, 1);
    let pid = r.agent.child.id();
    // Queries over UDP and TCP (every SRV set of a DaemonSet), then deltas.
    let ds = snap
        .services
        .iter()
        .find(|s| s.hosts.len() == v2_common::WORKERS && !s.ports.is_empty())
        .unwrap();
    let p = &ds.ports[0];
    let srv = format!(
        "_{}._{}.{}.{}.k8s.internal",
        p.label.as_str(),
        p.proto.as_str(),
        ds.name,
        ds.ns
    );
    assert_eq!(
        dig(r.agent.dns, &["+tcp", &srv, "SRV"])
            .answer_data("SRV")
            .len(),
        v2_common::WORKERS
    );
    let after_snapshot = rss_kib(pid);
    println!("after the snapshot: VmRSS, VmHWM {after_snapshot:?} KiB");
    let mut cur = snap.clone();
    for v in 1_001..=1_020u64 {
        let next = moved(&cur, v, v as u32);
        r.master.publish_v2("gw-a", "delta", delta_v2(&cur, &next));
        cur = next;
    }
    wait_held(&r.master, &cur);
    wait_serving(r.agent.dns, 1_020);
    let after_deltas = rss_kib(pid);
    println!("after 20 deltas: VmRSS, VmHWM {after_deltas:?} KiB");
    for line in r
        .agent
        .child
        .stderr()
        .lines()
        .filter(|l| l.contains("applied"))
    {
        println!("agent: {line}");
    }
    // And again from the persisted file (deltas are written at most every 5 s), with the
    // broker down.
    let state = r.tmp.join("state");
    wait_until(SOON, "version 1020 persisted", || {
        sdwan_agent::persist::load_v2_zone(&state, "gw-a")
            .and_then(|z| z.held())
            .is_some_and(|h| h.version.0 == 1_020)
    });
    r.broker.stop();
    r.agent.restart();
    wait_serving(r.agent.dns, 1_020);
    let at_boot = rss_kib(r.agent.child.id());
    println!(
        "agent RSS with the {}-service zone ({parts} parts): after the snapshot {} KiB \
         (peak {} KiB), after 20 deltas {} KiB (peak {} KiB), booted from the persisted \
         zone {} KiB (peak {} KiB)",
        snap.services.len(),
        after_snapshot.0,
        after_snapshot.1,
        after_deltas.0,
        after_deltas.1,
        at_boot.0,
        at_boot.1
    );
    if std::env::var_os("SDWAN_AGENT_BIN").is_some() {
        for (what, (rss, _)) in [
            ("after the snapshot", after_snapshot),
            ("after deltas", after_deltas),
            ("at boot", at_boot),
        ] {
            assert!(rss <= 4096, "{what}: RSS {rss} KiB over 4 MiB");
        }
        for (what, (_, peak)) in [
            ("until after the deltas", after_deltas),
            ("at boot", at_boot),
        ] {
            assert!(peak <= 4096, "{what}: peak RSS {peak} KiB over 4 MiB");
        }
    }
}
