//! End to end: fake API server -> sdwan-discovery -> mosquitto with TLS, client certificates
//! and an ACL -> two sdwan-agent processes -> dig. The scenario is `tests/data/e2e.toml`.
//! Needs mosquitto and dig (Debian: mosquitto, bind9-dnsutils) and the sdwan-agent binary
//! (built by `cargo build -p sdwan-agent`, which `cargo nextest run --workspace` does).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::certs::Ca;
use sdwan_testsupport::mosquitto::{BrokerTls, Mosquitto, MosquittoConfig};
use sdwan_testsupport::{free_port, require_tool, ChildGuard, TempDir};
use serde_json::Value;

/// Expands the shorthand of tests/data/e2e.toml into a Kubernetes object.
fn object(spec: &str) -> Value {
    let w: Vec<&str> = spec.split_whitespace().collect();
    match w.as_slice() {
        ["node", name, ip, zone, state] => node(name, ip, zone, *state == "ready"),
        ["control-plane", name, ip] => control_plane(name, ip),
        ["service", ns, name, port] => service(ns, name, port.parse().unwrap()),
        ["slice", ns, svc, nodes @ ..] => slice(ns, svc, nodes),
        _ => panic!("bad object shorthand {spec:?}"),
    }
}

fn delete(api: &FakeApiServer, spec: &str) {
    let w: Vec<&str> = spec.split_whitespace().collect();
    let [kind, ns, name] = w.as_slice() else {
        panic!("bad deletion {spec:?}")
    };
    assert!(api.delete(kind, ns, name), "{spec}: no such object");
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_changes_reach_dig_through_mosquitto_tls_and_two_agents() {
    require_tool("dig");
    let agent = agent_bin();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/e2e.toml"))
        .unwrap();
    let scenario: toml::Value = toml::from_str(&text).unwrap();

    let dir = TempDir::new("e2e");
    let ca = Ca::new(dir.path(), "e2e");
    let server = ca.server("broker");
    let broker = Mosquitto::start(
        dir.path(),
        &MosquittoConfig {
            tls: Some(BrokerTls {
                ca: ca.cert().to_path_buf(),
                server,
                require_client_cert: true,
            }),
            acl: Some(MosquittoConfig::design_acl(PREFIX)),
            persistence: false,
            max_packet_size: None,
        },
    );
    let broker_url = format!("mqtts://127.0.0.1:{}", broker.port());

    let api = FakeApiServer::start().await.unwrap();
    for spec in scenario["initial"].as_array().unwrap() {
        api.apply(object(spec.as_str().unwrap()));
    }
    let kubeconfig = write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
    let topology = write_file(
        dir.path(),
        "topology.toml",
        scenario["topology"].as_str().unwrap(),
    );
    let master_cert = ca.client("master");
    let (cert, key) = (
        master_cert.cert.display().to_string(),
        master_cert.key.display().to_string(),
    );
    let ca_path = ca.cert().display().to_string();
    let m = Master::start(&args(
        &kubeconfig,
        &topology,
        &broker_url,
        &[
            "--ca",
            &ca_path,
            "--cert",
            &cert,
            "--key",
            &key,
            "--metrics",
            "127.0.0.1:0",
        ],
    ))
    .await;

    let mut agents: BTreeMap<String, (SocketAddr, ChildGuard)> = BTreeMap::new();
    for gw in ["gw-a", "gw-b"] {
        let c = ca.client(gw);
        let port = free_port();
        let state = dir.join(format!("state-{gw}"));
        std::fs::create_dir_all(&state).unwrap();
        let mut cmd = Command::new(&agent);
        cmd.env("RUST_LOG", "info")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--broker",
                &broker_url,
            ])
            .args(["--gateway-id", gw, "--topic-prefix", PREFIX])
            // The cluster's workers are not on loopback: no probes to them.
            .args(["--probe", "off"])
            .arg("--ca")
            .arg(ca.cert())
            .arg("--cert")
            .arg(&c.cert)
            .arg("--key")
            .arg(&c.key)
            .arg("--state-dir")
            .arg(&state);
        let child = ChildGuard::spawn(&format!("sdwan-agent {gw}"), &mut cmd);
        agents.insert(
            gw.to_string(),
            (SocketAddr::from(([127, 0, 0, 1], port)), child),
        );
    }

    for step in scenario["step"].as_array().unwrap() {
        let what = step["what"].as_str().unwrap();
        let t0 = Instant::now();
        for spec in step
            .get("apply")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            api.apply(object(spec.as_str().unwrap()));
        }
        for spec in step
            .get("delete")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            delete(&api, spec.as_str().unwrap());
        }
        for (gw, expect) in step["expect"].as_table().unwrap() {
            let (dns, _) = &agents[gw];
            for (query, want) in expect.as_table().unwrap() {
                let (name, rtype) = query.split_once(' ').unwrap();
                let fqdn = format!("{name}.k8s.internal");
                let want: Vec<String> = want
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                let (dns, rtype2) = (*dns, rtype.to_string());
                let deadline = Instant::now() + Duration::from_secs(15);
                loop {
                    let (f, r) = (fqdn.clone(), rtype2.clone());
                    let got =
                        tokio::task::spawn_blocking(move || sdwan_testsupport::dig(dns, &[&f, &r]))
                            .await
                            .unwrap();
                    if got.answer_data(&rtype2) == want {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "step {what:?}: {gw} {fqdn} {rtype}: want {want:?}, got {:?}\n{}",
                        got.answer_data(&rtype2),
                        got.stdout
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        eprintln!("step {what:?}: all answers right after {:?}", t0.elapsed());
    }

    // Convergence: both gateways report the desired serial; /metrics says so.
    wait_until(Duration::from_secs(10), "both gateways converged", || {
        let mm = m.metrics.lock().unwrap();
        ["gw-a", "gw-b"].iter().all(|g| {
            mm.gateways
                .get(*g)
                .is_some_and(|c| c.converged() && c.online)
        })
    })
    .await;
    let addr = m.metrics_addr.unwrap();
    let text = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    for line in [
        "sdwan_gateway_converged{gateway=\"gw-a\"} 1",
        "sdwan_gateway_online{gateway=\"gw-b\"} 1",
        "sdwan_broker_connected 1",
        "sdwan_ready 1",
    ] {
        assert!(text.contains(line), "/metrics lacks {line:?}:\n{text}");
    }
    let (applied, sum) = {
        let mm = m.metrics.lock().unwrap();
        (mm.publish_to_applied.count(), mm.publish_to_applied.sum())
    };
    eprintln!(
        "publish -> applied (mosquitto TLS, agent status): {applied} observations, mean {:.1} ms",
        sum * 1e3 / applied.max(1) as f64
    );
    assert!(
        applied >= 2,
        "publish_to_applied has {applied} observations"
    );
    let ready = tokio::task::spawn_blocking(move || http_get(addr, "/readyz"))
        .await
        .unwrap();
    assert!(
        ready.starts_with("HTTP/1.0 200") || ready.starts_with("HTTP/1.1 200"),
        "{ready}"
    );
    m.stop().await;
    drop(broker);
}
