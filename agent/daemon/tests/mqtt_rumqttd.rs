//! Issue 3 against rumqttd, the master's embedded broker, plain and with TLS (server
//! certificate verified by the agent, client certificates verified by the broker): the zone
//! arrives and answers, bad payloads are refused with the error in status, a newer zone
//! replaces it, and a restarted agent serves its persisted zone.

mod mqtt_common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mqtt_common::*;
use sdwan_link::{BrokerUrl, LinkOptions, State};
use sdwan_testsupport::certs::Ca;
use sdwan_testsupport::{free_port, wait_until, TempDir};

/// Starts rumqttd in this process on a free loopback port (it runs until the test exits),
/// with TLS when `tls` is `(ca, server cert, server key)`.
fn start_rumqttd(tls: Option<(&Path, &Path, &Path)>) -> SocketAddr {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut server = serde_json::json!({
        "name": "v4-1",
        "listen": addr.to_string(),
        "next_connection_delay_ms": 1,
        "connections": {
            "connection_timeout_ms": 60000,
            "max_payload_size": sdwan_link::options::DEFAULT_MAX_PACKET,
            "max_inflight_count": 100,
            "dynamic_filters": true,
        },
    });
    if let Some((ca, cert, key)) = tls {
        server["tls"] = serde_json::json!({
            "capath": ca, "certpath": cert, "keypath": key,
        });
    }
    let config = serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 100,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 104_857_600,
            "max_segment_count": 10,
        },
        "v4": {"1": server},
    });
    let config: rumqttd::Config = serde_json::from_value(config).unwrap();
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        let _ = broker.start();
    });
    wait_until(SOON, "rumqttd listening", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    addr
}

/// The flow every broker must carry.
fn flow(master: &Master, mut agent: Agent) {
    let s1 = master.publish_serial("gw-a", 1);
    wait_serving(agent.dns, 1);
    master.wait_status("gw-a", "online holding version 1", |s| {
        s.state == State::Online && s.held == Some(1) && s.error.is_none()
    });
    let s2 = snapshot_v2("gw-a", 2, 2);
    let mut other = s1.clone();
    other.gateway = "gw-b".into();
    for (case, payload, want) in [
        (
            "malformed",
            b"{\"schema\":".to_vec(),
            "message on the delta topic",
        ),
        (
            "wrong gateway",
            delta_v2(&other, &snapshot_v2("gw-b", 2, 2)),
            "\"gw-b\"",
        ),
    ] {
        master.publish_v2("gw-a", "delta", payload);
        let st = master.wait_status("gw-a", case, |s| {
            s.error.as_deref().is_some_and(|e| e.contains(want))
        });
        assert_eq!(st.held, Some(1), "{case}");
        let a = query_a(agent.dns, NAME, Duration::from_secs(1)).unwrap();
        assert_eq!(a.a, [ip_for(1)], "{case}: old zone not answering");
    }
    master.publish_v2("gw-a", "tail", delta_v2(&s1, &s2));
    master.publish_v2("gw-a", "delta", delta_v2(&s1, &s2));
    wait_serving(agent.dns, 2);
    master.wait_status("gw-a", "version 2 and no error", |s| {
        s.held == Some(2) && s.error.is_none()
    });
    // Restarted, it serves the persisted zone and takes the next one.
    agent.restart();
    wait_serving(agent.dns, 2);
    master.publish_serial("gw-a", 3);
    wait_serving(agent.dns, 3);
}

#[test]
fn rumqttd_plain() {
    let tmp = TempDir::new("rumqttd-plain");
    let addr = start_rumqttd(None);
    let url = format!("mqtt://{addr}");
    let master = Master::connect(LinkOptions::new(BrokerUrl::parse(&url).unwrap(), "master"));
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let agent = Agent::start(AgentArgs {
        gateway: "gw-a".into(),
        broker: url,
        ca: None,
        client: None,
        state_dir: state,
        listen_port: free_port(),
    });
    flow(&master, agent);
}

#[test]
fn rumqttd_tls() {
    let tmp = TempDir::new("rumqttd-tls");
    let ca = Ca::new(tmp.path(), "test");
    let server = ca.server("broker");
    let addr = start_rumqttd(Some((ca.cert(), &server.cert, &server.key)));
    let url = format!("mqtts://{addr}");
    let master_cert = ca.client("master");
    let mut o = LinkOptions::new(BrokerUrl::parse(&url).unwrap(), "master");
    o.ca = Some(ca.cert().to_path_buf());
    o.cert = Some(master_cert.cert);
    o.key = Some(master_cert.key);
    let master = Master::connect(o);
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let agent = Agent::start(AgentArgs {
        gateway: "gw-a".into(),
        broker: url,
        ca: Some(ca.cert().to_path_buf()),
        client: Some(ca.client("gw-a")),
        state_dir: state,
        listen_port: free_port(),
    });
    flow(&master, agent);
}
