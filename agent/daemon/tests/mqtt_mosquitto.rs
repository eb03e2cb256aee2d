//! Issue 3 against a real mosquitto (Debian) with TLS, client certificates (CN = gateway id)
//! and the design's ACL: isolation, refusal of strangers, bad payloads, broker restarts and
//! outages, kill -9 during updates, and no failed query while zones are swapped.

mod mqtt_common;

use std::process::Command;
use std::time::Duration;

use mqtt_common::*;
use sdwan_link::rumqttc::{Client, Event, Packet};
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
    master.publish_zone("gw-a", zone("gw-a", 1));
    master.publish_zone("gw-b", zone("gw-b", 500));

    let agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &tmp.join("state-a")));
    wait_serving(agent.dns, 1);
    let st = master.wait_status("gw-a", "online with serial 1", |s| {
        s.state == State::Online && s.serial == Some(1)
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
        &topics.gateway_zone("gw-a"),
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
        &topics.gateway_zone("gw-b"),
    );
    assert_eq!(other, "", "gw-a read gw-b's zone");
    // No certificate, or one from another CA: refused.
    let (ok, text) = sub_once(&pki, &broker, None, None, &topics.gateway_zone("gw-a"));
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
        &topics.gateway_zone("gw-a"),
    );
    assert!(
        !ok && text.is_empty(),
        "client with a foreign certificate got {text:?}"
    );
    // The agent with a foreign certificate never comes online.
    let mut args = tls_agent_args(&pki, &broker, "gw-c", &tmp.join("state-c"));
    args.client = Some(pki.foreign.client("gw-c"));
    let mut stranger = Agent::start(args);
    master.publish_zone("gw-c", zone("gw-c", 3));
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
        let (_client, mut conn) = Client::new(o.mqtt_options().unwrap(), 4);
        match conn.recv().unwrap() {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(()),
            Ok(other) => Err(format!("unexpected {other:?}")),
            Err(e) => Err(e.to_string()),
        }
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

    let big_txt = zone("gw-a", 11).replace("sdwan-discovery", &"x".repeat(300));
    let many = {
        let recs: Vec<String> = (0..10_001)
            .map(|i| format!(r#"{{"name":"h{i}","type":"A","data":"10.9.0.1"}}"#))
            .collect();
        format!(
            r#"{{"version":1,"serial":11,"gateway":"gw-a","origin":"k8s.internal","ttl":30,"records":[{}]}}"#,
            recs.join(",")
        )
    };
    let mut garbage = vec![0u8; 1024 * 1024];
    let mut rng = sdwan_testsupport::Rng::new(0x2545_f491);
    for chunk in garbage.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    // (case, payload, text the status error must hold)
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed JSON",
            br#"{"version":1,"serial":11,"#.to_vec(),
            "invalid payload",
        ),
        ("wrong gateway", zone("gw-b", 11).into_bytes(), "\"gw-b\""),
        ("stale serial", zone("gw-a", 9).into_bytes(), "stale"),
        (
            "TXT over 255 bytes",
            big_txt.into_bytes(),
            "invalid payload",
        ),
        ("10,001 records", many.into_bytes(), "invalid payload"),
        ("1 MiB of garbage", garbage, "invalid payload"),
    ];
    let mut serial = 10;
    for (case, payload, want) in cases {
        master.publish_zone("gw-a", payload);
        let st = master.wait_status("gw-a", &format!("{case}: error {want:?}"), |s| {
            s.error.as_deref().is_some_and(|e| e.contains(want))
        });
        assert_eq!(st.serial, Some(serial), "{case}: serial in use changed");
        assert_eq!(st.state, State::Online);
        let a = query_a(agent.dns, NAME, Duration::from_secs(1)).unwrap();
        assert_eq!(a.a, [ip_for(serial)], "{case}: old zone not answering");
        // A good payload clears the error again.
        serial += 1;
        master.publish_zone("gw-a", zone("gw-a", serial));
        master.wait_status(
            "gw-a",
            &format!("after {case}: serial {serial}, no error"),
            |s| s.serial == Some(serial) && s.error.is_none(),
        );
        wait_serving(agent.dns, serial);
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
    master.publish_zone("gw-a", zone("gw-a", 2));
    wait_serving(agent.dns, 2);
    master.wait_status("gw-a", "online with serial 2", |s| {
        s.state == State::Online && s.serial == Some(2)
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
    master.publish_zone("gw-a", zone("gw-a", 3));
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
    // Large payloads (about 200 kB) so that the kill often lands during a write.
    let padded = |serial: u32| {
        let pad: Vec<String> = (0..2000)
            .map(|i| {
                format!(
                    r#"{{"name":"pad{i}","type":"TXT","data":"{}"}}"#,
                    "p".repeat(60)
                )
            })
            .collect();
        zone("gw-a", serial).replace("]}", &format!(",{}]}}", pad.join(",")))
    };
    let mut serial = 0;
    for round in 0..3 {
        let first = serial + 1;
        for _ in 0..40 {
            serial += 1;
            master.publish_zone("gw-a", padded(serial));
        }
        // Kill while the stream is being applied, once one zone of it is on disk (the agent
        // swaps before it persists, and in round 0 it may have joined the stream late: a
        // zone served is not yet a zone saved).
        wait_until(SOON, "agent applying the stream", || {
            query_a(agent.dns, NAME, Duration::from_millis(300))
                .ok()
                .and_then(|a| a.a.first().copied())
                .is_some_and(|ip| ip >= ip_for(first + 5))
                && sdwan_agent::persist::load(&state, Some("gw-a"))
                    .is_some_and(|(z, _)| z.serial() >= first)
        });
        agent.child.kill();
        let (zone, _) = sdwan_agent::persist::load(&state, Some("gw-a"))
            .unwrap_or_else(|| panic!("round {round}: no whole state file after kill -9"));
        let saved = zone.serial();
        assert!(
            (first..=serial).contains(&saved),
            "round {round}: saved serial {saved}"
        );
        // Restarted without a broker, it serves exactly what the file holds.
        broker.stop();
        agent.restart();
        wait_serving(agent.dns, saved);
        broker.start_again();
        agent.child.kill();
        agent.restart();
        wait_serving(agent.dns, serial);
    }
}

#[test]
fn no_failed_query_during_swaps() {
    let rig = GatewayRig::start("mqtt-swaps", false, 1);
    let GatewayRig { agent, master, .. } = &rig;
    let queries = QueryLoop::start(agent.dns);
    let last = 300;
    for serial in 2..=last {
        master.publish_zone("gw-a", zone("gw-a", serial));
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
    let whole = zone("gw-a", 4);
    std::fs::write(
        state.join("zone.json"),
        &whole.as_bytes()[..whole.len() / 2],
    )
    .unwrap();
    let mut agent = Agent::start(tls_agent_args(&pki, &broker, "gw-a", &state));
    agent
        .child
        .wait_stderr(SOON, "corrupt or truncated, ignored");
    let a = query_a(agent.dns, NAME, Duration::from_secs(1)).unwrap();
    assert_eq!((a.rcode, a.a.len()), (5, 0), "no zone yet: REFUSED");
    master.publish_zone("gw-a", zone("gw-a", 5));
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
    master.publish_zone("gw-a", zone("gw-a", 1));
    master.publish_zone("gw-b", zone("gw-b", 7));
    let b = Agent::start(tls_agent_args(&pki, &broker, "gw-b", &tmp.join("state-b")));
    wait_serving(b.dns, 7);
    master.wait_status("gw-b", "online with serial 7", |s| {
        s.state == State::Online && s.serial == Some(7)
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
            &topics.gateway_zone("gw-a"),
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
    master.publish_zone("gw-b", zone("gw-b", 8));
    wait_serving(b.dns, 8);
    master.wait_status("gw-b", "online with serial 8", |s| {
        s.state == State::Online && s.serial == Some(8)
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

/// Issue 12, reconnect storm: a retained zone over the agent's packet limit (1 MiB + 64 KiB)
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
    master.publish_zone("gw-a", vec![b'x'; limit + 10_000]);

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
