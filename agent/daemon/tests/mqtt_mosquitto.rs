//! Issue 3 against a real mosquitto (Debian) with TLS, client certificates (CN = gateway id)
//! and the design's ACL: isolation, refusal of strangers, bad payloads, broker restarts and
//! outages, kill -9 during updates, and no failed query while zones are swapped.

mod mqtt_common;

use std::process::Command;
use std::time::Duration;

use mqtt_common::*;
use sdwan_contract::v2::encode::Snapshot;
use sdwan_contract::v2::Version;
use sdwan_link::{BrokerUrl, LinkOptions, State};
use sdwan_testsupport::certs::CertFiles;
use sdwan_testsupport::mosquitto::{BrokerTls, Mosquitto, MosquittoConfig};
use sdwan_testsupport::{require_tool, wait_until, TempDir};

/// `mosquitto_sub` reading one message from `topic` within 2 s, as the holder of `client`
/// (or of no certificate), with client id `id` when given. Returns (exit status success,
/// message text).
fn sub_once(
    pki: &Pki,
    broker: &Mosquitto,
    client: Option<&CertFiles>,
    id: Option<&str>,
    topic: &str,
) -> (bool, String) {
    let mut cmd = Command::new(require_tool("mosquitto_sub"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port().to_string(),
        "-t",
        topic,
    ])
    .args(["-C", "1", "-W", "2", "-q", "1"])
    .arg("--cafile")
    .arg(pki.ca.cert());
    if let Some(id) = id {
        cmd.args(["-i", id]);
    }
    if let Some(c) = client {
        cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn gateway_gets_only_its_own_zone_and_strangers_are_refused() {
    let tmp = TempDir::new("mqtt-acl");
    let pki = Pki::new(tmp.path());
    let broker = pki.broker(tmp.path(), false);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    master.publish_serial("gw-a", 1);
    master.publish_serial("gw-b", 500);

    let agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &tmp.join("state-a")));
    wait_serving(agent.dns, 1);
    let st = master.wait_status("gw-a", "online holding version 1", |s| {
        s.state == State::Online && s.held == Some(1)
    });
    assert_eq!(st.error, None);
    assert_eq!(st.version, env!("CARGO_PKG_VERSION"));

    let topics = sdwan_link::Topics::new(PREFIX).unwrap();
    let gw_a = pki.ca.client("gw-a");
    // gw-a's certificate reads its own retained zone ...
    let (ok, own) = sub_once(
        &pki,
        &broker,
        Some(&gw_a),
        None,
        &topics.gateway_v2("gw-a", "part/0"),
    );
    assert!(
        ok && own.contains("\"gw-a\""),
        "gw-a cannot read its own zone: {own:?}"
    );
    // ... but not gw-b's, even when it says it is gw-b in its client id.
    let (_, other) = sub_once(
        &pki,
        &broker,
        Some(&gw_a),
        Some("gw-b"),
        &topics.gateway_v2("gw-b", "part/0"),
    );
    assert_eq!(other, "", "gw-a read gw-b's zone");
    // No certificate, or one from another CA: refused.
    let (ok, text) = sub_once(
        &pki,
        &broker,
        None,
        None,
        &topics.gateway_v2("gw-a", "part/0"),
    );
    assert!(
        !ok && text.is_empty(),
        "client without certificate got {text:?}"
    );
    let foreign = pki.foreign.client("gw-a");
    let (ok, text) = sub_once(
        &pki,
        &broker,
        Some(&foreign),
        None,
        &topics.gateway_v2("gw-a", "part/0"),
    );
    assert!(
        !ok && text.is_empty(),
        "client with a foreign certificate got {text:?}"
    );
    // The agent with a foreign certificate never comes online.
    let mut args = tls_agent_args(&pki, &broker, "gw-c", &tmp.join("state-c"));
    args.client = Some(pki.foreign.client("gw-c"));
    let mut stranger = Agent::start(args);
    master.publish_serial("gw-c", 3);
    stranger.child.wait_stderr(SOON, "cannot connect to");
    assert_eq!(master.status("gw-c"), None);
    // gw-a still serves its own zone, never gw-b's.
    let a = query_a(agent.dns, NAME, Duration::from_secs(1)).unwrap();
    assert_eq!(a.a, [ip_for(1)]);
}

#[test]
fn server_certificate_and_host_name_are_always_verified() {
    let tmp = TempDir::new("mqtt-verify");
    let pki = Pki::new(tmp.path());
    // A broker whose certificate is valid, but for another name than 127.0.0.1.
    let wrong_name = pki
        .ca
        .server_for("elsewhere", &["broker.elsewhere.example"]);
    let dir2 = tmp.join("b2");
    std::fs::create_dir_all(&dir2).unwrap();
    let misnamed = Mosquitto::start(
        &dir2,
        &MosquittoConfig {
            tls: Some(BrokerTls {
                ca: pki.ca.cert().to_path_buf(),
                server: wrong_name,
                require_client_cert: true,
            }),
            acl: None,
            persistence: false,
            max_packet_size: None,
        },
    );
    let broker = pki.broker(tmp.path(), false);
    let connect = |b: &Mosquitto, ca: &std::path::Path| -> Result<(), String> {
        let mut o = LinkOptions::new(BrokerUrl::parse(&b.url()).unwrap(), "master");
        o.ca = Some(ca.to_path_buf());
        o.cert = Some(pki.master.cert.clone());
        o.key = Some(pki.master.key.clone());
        // The agent's own client (sdwan_link::client), as the agent connects.
        let mut client = sdwan_link::client::Client::new(o.client_settings(None).unwrap());
        client.connect().map(|_| ()).map_err(|e| e.to_string())
    };
    connect(&broker, pki.ca.cert()).expect("the right CA and name connect");
    let e = connect(&broker, pki.foreign.cert()).unwrap_err();
    assert!(e.contains("certificate"), "foreign CA: {e}");
    let e = connect(&misnamed, pki.ca.cert()).unwrap_err();
    assert!(
        e.contains("certificate") || e.contains("name"),
        "wrong name: {e}"
    );
}

#[test]
fn bad_payloads_keep_the_old_zone_and_report_the_error() {
    let rig = GatewayRig::start("mqtt-bad", false, 10);
    let GatewayRig { agent, master, .. } = &rig;
    let mut cur = snapshot_v2("gw-a", 10, 10);
    fn next(cur: &Snapshot) -> Snapshot {
        snapshot_v2("gw-a", cur.version.0 + 1, cur.version.0 as u32 + 1)
    }
    fn good(cur: &Snapshot) -> String {
        String::from_utf8(delta_v2(cur, &next(cur))).unwrap()
    }

    let mut garbage = vec![0u8; 1024 * 1024];
    let mut rng = sdwan_testsupport::Rng::new(0x2545_f491);
    for chunk in garbage.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    // (case, message on the delta topic made from the next good delta, text the status
    // error must hold)
    type Make = Box<dyn Fn(&Snapshot) -> Vec<u8>>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "malformed JSON",
            Box::new(|_| br#"{"schema":2,"kind":"#.to_vec()),
            "message on the delta topic",
        ),
        (
            "wrong gateway",
            Box::new(move |c| {
                let mut o = c.clone();
                o.gateway = "gw-b".into();
                delta_v2(&o, &snapshot_v2("gw-b", c.version.0 + 1, 1))
            }),
            "\"gw-b\"",
        ),
        (
            "unsupported schema",
            Box::new(move |c| {
                good(c)
                    .replacen("\"schema\":2", "\"schema\":3", 1)
                    .into_bytes()
            }),
            "unsupported schema 3",
        ),
        (
            "unknown field",
            Box::new(move |c| good(c).replacen("{", "{\"x\":1,", 1).into_bytes()),
            "unknown field",
        ),
        (
            "digest that does not match",
            Box::new(move |c| {
                let d = next(c).digest().to_string();
                good(c).replacen(&d, "0000000000000001", 1).into_bytes()
            }),
            "has another digest",
        ),
        (
            "held version with other content",
            Box::new(move |c| {
                let mut other = snapshot_v2("gw-a", c.version.0, 99);
                other.version = c.version;
                let mut base = c.clone();
                base.version = Version(c.version.0 - 1);
                delta_v2(&base, &other)
            }),
            "reused with other content",
        ),
        (
            "1 MiB of garbage",
            Box::new(move |_| garbage.clone()),
            "document too large",
        ),
    ];
    for (case, make, want) in cases {
        let serial = cur.version.0 as u32;
        master.publish_v2("gw-a", "delta", make(&cur));
        let st = master.wait_status("gw-a", &format!("{case}: error {want:?}"), |s| {
            s.error.as_deref().is_some_and(|e| e.contains(want))
        });
        assert_eq!(
            st.held,
            Some(cur.version.0),
            "{case}: version in use changed"
        );
        assert_eq!(st.state, State::Online);
        let a = query_a(agent.dns, NAME, Duration::from_secs(1)).unwrap();
        assert_eq!(a.a, [ip_for(serial)], "{case}: old zone not answering");
        // A good delta clears the error again.
        let n = next(&cur);
        master.publish_v2("gw-a", "delta", delta_v2(&cur, &n));
        master.wait_status(
            "gw-a",
            &format!("after {case}: version {}, no error", n.version.0),
            |s| s.held == Some(n.version.0) && s.error.is_none(),
        );
        wait_serving(agent.dns, n.version.0 as u32);
        cur = n;
    }
}

#[test]
fn broker_restart_and_outage_are_survived() {
    let mut rig = GatewayRig::start("mqtt-restart", true, 1);
    let GatewayRig {
        agent,
        master,
        broker,
        ..
    } = &mut rig;

    // Restart mid-run: DNS keeps answering throughout, the agent reconnects and takes updates.
    let queries = QueryLoop::start(agent.dns);
    broker.restart();
    master.publish_serial("gw-a", 2);
    wait_serving(agent.dns, 2);
    master.wait_status("gw-a", "online holding version 2", |s| {
        s.state == State::Online && s.held == Some(2)
    });
    let (ok, failures) = queries.finish();
    assert!(
        failures.is_empty(),
        "{} failed queries: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 0);
    agent.child.wait_stderr(SOON, "disconnected from");

    // Broker down, agent restarted: it serves its persisted zone at once.
    broker.stop();
    agent.restart();
    wait_serving(agent.dns, 2);
    agent.child.wait_stderr(SOON, "cannot connect to");
    // The broker comes back: the agent connects and takes the next zone.
    broker.start_again();
    wait_until(SOON, "master reconnected", || {
        master.status("gw-a").is_some()
    });
    master.publish_serial("gw-a", 3);
    wait_serving(agent.dns, 3);
}

#[test]
fn kill_9_during_updates_leaves_a_whole_state_file() {
    let tmp = TempDir::new("mqtt-kill");
    let pki = Pki::new(tmp.path());
    // Persistent, so the retained zone outlives the broker stops below.
    let mut broker = pki.broker(tmp.path(), true);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    let state = tmp.join("state");
    let mut agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &state));
    // A large zone (about 400 kB persisted) so that the kill often lands during a write:
    // a snapshot at 1, then changes as the master sends them (the tail from 1, then the
    // delta), each moving the address `svc` answers.
    let big = |serial: u32| {
        let mut s = snapshot_v2("gw-a", serial.into(), serial);
        s.services
            .extend((0..3000).map(|i| sdwan_contract::v2::encode::Service {
                ns: "pad".into(),
                name: format!("pad-{i:04}"),
                short: false,
                ports: vec![sdwan_contract::v2::Port::parse("_http._tcp:30080").unwrap()],
                hosts: vec![0],
            }));
        s.services
            .sort_by(|a, b| (&a.ns, &a.name).cmp(&(&b.ns, &b.name)));
        s
    };
    let first_snapshot = big(1);
    master.publish_snapshot(&first_snapshot);
    wait_serving(agent.dns, 1);
    let mut cur = first_snapshot.clone();
    let held_on_disk = |state: &std::path::Path| {
        sdwan_agent::persist::load_v2_zone(state, "gw-a")
            .and_then(|z| z.held())
            .map(|h| h.version.0 as u32)
    };
    let mut serial = 1;
    for round in 0..3 {
        let first = serial + 1;
        for _ in 0..40 {
            serial += 1;
            let next = big(serial);
            master.publish_v2("gw-a", "tail", delta_v2(&first_snapshot, &next));
            master.publish_v2("gw-a", "delta", delta_v2(&cur, &next));
            cur = next;
        }
        // Kill while the stream is being applied, once one zone of it is on disk (the agent
        // swaps before it persists).
        wait_until(SOON, "agent applying the stream", || {
            query_a(agent.dns, NAME, Duration::from_millis(300))
                .ok()
                .and_then(|a| a.a.first().copied())
                .is_some_and(|ip| ip >= ip_for(first + 5))
                && held_on_disk(&state).is_some_and(|v| v >= first)
        });
        agent.child.kill();
        let saved = held_on_disk(&state)
            .unwrap_or_else(|| panic!("round {round}: no whole state file after kill -9"));
        assert!(
            (first..=serial).contains(&saved),
            "round {round}: saved version {saved}"
        );
        // Restarted without a broker, it serves exactly what the file holds.
        broker.stop();
        agent.restart();
        wait_serving(agent.dns, saved);
        broker.start_again();
        agent.child.kill();
        agent.restart();
        // The retained snapshot (1) and tail (1 -> last) bring it to the last version.
        wait_serving(agent.dns, serial);
    }
}

#[test]
fn no_failed_query_during_swaps() {
    let rig = GatewayRig::start("mqtt-swaps", false, 1);
    let GatewayRig { agent, master, .. } = &rig;
    let queries = QueryLoop::start(agent.dns);
    let last = 300;
    let mut cur = snapshot_v2("gw-a", 1, 1);
    for serial in 2..=last {
        let next = snapshot_v2("gw-a", serial.into(), serial);
        master.publish_v2("gw-a", "delta", delta_v2(&cur, &next));
        cur = next;
    }
    wait_serving(agent.dns, last);
    let (ok, failures) = queries.finish();
    assert!(
        failures.is_empty(),
        "{} of {} queries failed during swaps: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 100, "only {ok} queries answered during the swaps");
}

#[test]
fn corrupt_state_file_is_ignored_and_the_broker_zone_taken() {
    let tmp = TempDir::new("mqtt-corrupt");
    let pki = Pki::new(tmp.path());
    let broker = pki.broker(tmp.path(), false);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let whole = snapshot_v2("gw-a", 4, 4).encode().unwrap().concat();
    std::fs::write(state.join("zone-v2.jsonl"), &whole[..whole.len() / 2]).unwrap();
    let mut agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &state));
    agent
        .child
        .wait_stderr(SOON, "corrupt or truncated, ignored");
    // The state file is read before the DNS sockets are bound: wait for them.
    agent.child.wait_stderr(SOON, "listening on udp");
    let a = query_a(agent.dns, NAME, Duration::from_secs(1)).unwrap();
    assert_eq!((a.rcode, a.a.len()), (5, 0), "no zone yet: REFUSED");
    master.publish_serial("gw-a", 5);
    wait_serving(agent.dns, 5);
    assert!(agent.child.try_exit().is_none(), "agent exited");
}

/// Issue 12: gateway A's certificate connecting with client id `gw-b` used to take B's
/// session over (B disconnected each time, a false "offline" will each time). With
/// `use_username_as_clientid` (docs/mqtt.md) the broker names A's session `gw-a`: B stays
/// connected, no offline will, and B keeps taking updates.
#[test]
fn client_id_takeover_with_another_gateways_certificate_is_refused() {
    let tmp = TempDir::new("mqtt-takeover");
    let pki = Pki::new(tmp.path());
    let broker = pki.broker(tmp.path(), false);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    master.publish_serial("gw-a", 1);
    master.publish_serial("gw-b", 7);
    let b = Agent::start(tls_agent_args(&pki, &broker, "gw-b", &tmp.join("state-b")));
    wait_serving(b.dns, 7);
    master.wait_status("gw-b", "online holding version 7", |s| {
        s.state == State::Online && s.held == Some(7)
    });
    let statuses_before = master.statuses_of("gw-b").len();

    let topics = sdwan_link::Topics::new(PREFIX).unwrap();
    let gw_a = pki.ca.client("gw-a");
    let attempts = 5;
    for i in 0..attempts {
        // A's certificate, B's client id; it reads A's own retained zone and leaves.
        let (ok, text) = sub_once(
            &pki,
            &broker,
            Some(&gw_a),
            Some("gw-b"),
            &topics.gateway_v2("gw-a", "part/0"),
        );
        assert!(
            ok && text.contains("\"gw-a\""),
            "attempt {i}: gw-a's own zone: {text:?}"
        );
    }
    // The broker named those sessions after the certificate.
    let log = broker.log();
    assert!(
        log.matches(" as gw-a (").count() >= attempts,
        "mosquitto did not name A's connections gw-a:\n{log}"
    );
    assert!(
        !log.contains("Client gw-b already connected"),
        "B's session was taken over:\n{log}"
    );
    // B is still connected and takes the next zone; it never went offline.
    master.publish_serial("gw-b", 8);
    wait_serving(b.dns, 8);
    master.wait_status("gw-b", "online holding version 8", |s| {
        s.state == State::Online && s.held == Some(8)
    });
    let after: Vec<_> = master.statuses_of("gw-b")[statuses_before..].to_vec();
    assert!(
        after.iter().all(|s| s.state == State::Online),
        "false offline will for gw-b: {after:?}"
    );
    let err = b.child.stderr();
    assert!(
        !err.contains("disconnected from"),
        "gw-b was disconnected:\n{err}"
    );
}

/// Issue 12, reconnect storm: a retained message (a snapshot part) over the agent's packet limit (1 MiB + 64 KiB)
/// on a broker whose `max_packet_size` is larger breaks the agent's connection at each
/// delivery, right after the CONNACK. The reconnects used to come every 250-500 ms (23 in
/// 8 s); now the backoff grows, and the log and the status document say why.
#[test]
fn oversize_retained_payload_backs_off_and_names_the_reason() {
    let tmp = TempDir::new("mqtt-oversize");
    let pki = Pki::new(tmp.path());
    let broker = Mosquitto::start(
        tmp.path(),
        &MosquittoConfig {
            tls: Some(BrokerTls {
                ca: pki.ca.cert().to_path_buf(),
                server: pki.server.clone(),
                require_client_cert: true,
            }),
            acl: Some(MosquittoConfig::design_acl(PREFIX)),
            persistence: false,
            max_packet_size: Some(2 * 1024 * 1024),
        },
    );
    let mut options = Master::tls_options(&pki, &broker);
    options.max_packet = 4 * 1024 * 1024;
    let master = Master::connect(options);
    let limit = sdwan_link::options::DEFAULT_MAX_PACKET;
    master.publish_v2("gw-a", "part/0", vec![b'x'; limit + 10_000]);

    let mut agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &tmp.join("state")));
    let connections = || broker.log().matches(" as gw-a (").count();
    wait_until(SOON, "gw-a's first connection", || connections() >= 1);
    // Watch a fixed window, noting when each new connection shows in the broker's log.
    let window = Duration::from_secs(7);
    let t0 = std::time::Instant::now();
    let mut seen = vec![Duration::ZERO];
    while t0.elapsed() < window {
        let n = connections();
        while seen.len() < n {
            seen.push(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("{} connections in {window:?}, gaps {gaps:?}", seen.len());
    // Delays drawn from the upper half of 0.5, 1, 2, 4 s windows: the 6th connection comes
    // 7.75 s after the first at the earliest, so at most 5 in 7 s.
    assert!(
        seen.len() <= 5,
        "{} connections in {window:?} (gaps {gaps:?}): reconnect storm",
        seen.len()
    );
    assert!(
        gaps.len() >= 2,
        "too few reconnects to see a backoff: {gaps:?}"
    );
    // Each window doubles: the last gap is at least about twice the first.
    assert!(
        gaps.last().unwrap().as_secs_f64() >= 1.5 * gaps[0].as_secs_f64(),
        "the backoff did not grow: {gaps:?}"
    );
    // The log and the status say why (the status goes out on the next connection).
    agent
        .child
        .wait_stderr(SOON, "over this client's limit of 1114112 bytes");
    // (Each online document is followed by the offline will of the drop it then suffers.)
    let reason = sdwan_testsupport::wait_for(SOON, "a gw-a status with the drop's reason", || {
        master
            .statuses_of("gw-a")
            .into_iter()
            .find_map(|s| s.disconnect)
    });
    assert!(
        reason.contains("over this client's limit") && reason.contains("max_packet_size"),
        "{reason}"
    );
}

/// The agent's blocking client (`sdwan_link::client`) keeps an idle connection up with
/// PINGREQs (mosquitto drops a client that sends nothing for 1.5 keepalive intervals) and
/// still receives what is published to it afterwards.
#[test]
fn the_agents_client_keeps_an_idle_connection_alive() {
    let tmp = TempDir::new("mqtt-keepalive");
    let pki = Pki::new(tmp.path());
    let broker = pki.broker(tmp.path(), false);
    let master = Master::connect(Master::tls_options(&pki, &broker));
    let gw = pki.ca.client("gw-a");
    let mut o = LinkOptions::new(BrokerUrl::parse(&broker.url()).unwrap(), "gw-a");
    o.ca = Some(pki.ca.cert().to_path_buf());
    o.cert = Some(gw.cert.clone());
    o.key = Some(gw.key.clone());
    o.keep_alive = Duration::from_secs(1);
    let mut client = sdwan_link::client::Client::new(o.client_settings(None).unwrap());
    client.connect().expect("connects");
    let topic = sdwan_link::Topics::new(PREFIX)
        .unwrap()
        .gateway_v2("gw-a", "delta");
    client.subscribe(std::slice::from_ref(&topic));
    let t0 = std::time::Instant::now();
    loop {
        match client.poll(Duration::from_millis(200)) {
            Ok(Some(sdwan_link::client::Incoming::SubAck { refused })) => {
                assert!(!refused, "the design ACL lets gw-a read its own topics");
                break;
            }
            Ok(_) => assert!(t0.elapsed() < SOON, "no SUBACK within {SOON:?}"),
            Err(e) => panic!("connection failed before the SUBACK: {e}"),
        }
    }
    // Idle for four keepalive intervals: only PINGREQs go out.
    let idle = std::time::Instant::now();
    while idle.elapsed() < Duration::from_secs(4) {
        if let Err(e) = client.poll(Duration::from_millis(300)) {
            panic!("idle connection dropped after {:?}: {e}", idle.elapsed());
        }
    }
    master.publish_v2("gw-a", "delta", b"after the idle time".to_vec());
    let t0 = std::time::Instant::now();
    loop {
        match client.poll(Duration::from_millis(200)) {
            Ok(Some(sdwan_link::client::Incoming::Publish(p))) => {
                assert_eq!(p.topic, topic);
                assert_eq!(&p.payload[..], b"after the idle time");
                break;
            }
            Ok(_) => assert!(t0.elapsed() < SOON, "the message did not come"),
            Err(e) => panic!("connection failed: {e}"),
        }
    }
}
