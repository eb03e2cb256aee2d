//! Issue 12, restarts and shutdown of the default deployment path:
//! - an agent restarted with the same gateway id (kill -9, or a clean stop) and an empty state
//!   directory gets its zone again from the master's embedded broker (rumqttd, the default when
//!   no `--broker` is given), and keeps receiving updates;
//! - the master stops within a bound on SIGTERM whatever the broker does, saying how many
//!   publishes it abandoned.
//!
//! Needs dig (Debian: bind9-dnsutils) and the sdwan-agent binary (built by
//! `cargo build -p sdwan-agent`, which `cargo nextest run --workspace` does).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::{dig, free_port, require_tool, ChildGuard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-discovery");
/// Linux signal numbers (no libc dependency here).
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Waits (deadline `timeout`) until `dns` answers `name` A with exactly `want`.
async fn wait_answer(dns: SocketAddr, name: &str, want: &str, timeout: Duration, what: &str) {
    let fqdn = format!("{name}.k8s.internal");
    let deadline = Instant::now() + timeout;
    loop {
        let f = fqdn.clone();
        let got = tokio::task::spawn_blocking(move || dig(dns, &[&f, "A"]))
            .await
            .unwrap();
        if got.answer_data("A") == [want] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {fqdn} A: want [{want}], got {:?} after {timeout:?}\n{}",
            got.answer_data("A"),
            got.stdout
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `sdwan-agent --gateway-id gw-a` against `broker`, with a fresh, empty state directory.
fn start_agent(broker: SocketAddr, dir: &TempDir, run: usize) -> (ChildGuard, SocketAddr) {
    let state = dir.join(format!("state-{run}"));
    std::fs::create_dir_all(&state).unwrap();
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(agent_bin());
    cmd.env("RUST_LOG", "info")
        .args(["--broker", &format!("mqtt://{broker}")])
        .args(["--gateway-id", "gw-a", "--topic-prefix", PREFIX])
        // The cluster's workers are not on loopback: no probes to them.
        .args(["--probe", "off"])
        .args(["--listen", &dns.to_string()])
        .arg("--state-dir")
        .arg(&state);
    (
        ChildGuard::spawn(&format!("sdwan-agent gw-a (run {run})"), &mut cmd),
        dns,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restarted_with_the_same_id_gets_its_zone_from_the_embedded_broker() {
    require_tool("dig");
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node("w1", "192.0.2.1", "a", true));
    api.apply(node("w2", "192.0.2.2", "b", true));
    api.apply(service("default", "web", 30080));
    api.apply(slice("default", "web", &["w1"]));
    let dir = TempDir::new("restart-embedded");
    let kubeconfig = write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
    let topology = write_file(dir.path(), "topology.toml", TOPOLOGY);
    let broker = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // README command 1's path: no --broker, so the master starts its embedded broker.
    let args: Vec<String> = [
        "run",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--topology",
        &topology.display().to_string(),
        "--topic-prefix",
        PREFIX,
        "--embedded-broker",
        &broker.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let master = Master::start(&args).await;

    let soon = Duration::from_secs(15);
    let (mut agent, mut dns) = start_agent(broker, &dir, 0);
    wait_answer(dns, "web.default", "192.0.2.1", soon, "first start").await;

    // (how the agent is stopped, the signal)
    let stops = [("kill -9", SIGKILL), ("clean stop", SIGTERM)];
    let mut on = "192.0.2.1";
    for (run, (how, signal)) in stops.into_iter().enumerate() {
        agent.signal(signal);
        agent.wait_exit(Duration::from_secs(10));
        (agent, dns) = start_agent(broker, &dir, run + 1);
        wait_answer(
            dns,
            "web.default",
            on,
            soon,
            &format!("restart after {how}: the retained zone"),
        )
        .await;
        // Updates keep coming after the restart.
        let (node, ip) = if on == "192.0.2.1" {
            ("w2", "192.0.2.2")
        } else {
            ("w1", "192.0.2.1")
        };
        api.apply(slice("default", "web", &[node]));
        on = ip;
        wait_answer(
            dns,
            "web.default",
            on,
            soon,
            &format!("update after the restart after {how}"),
        )
        .await;
    }
    drop(agent);
    master.stop().await;
}

/// A loopback "broker" that accepts TCP connections and, when `connack` is set, answers the
/// CONNECT with a CONNACK; then it never reads again. Counts accepted connections.
struct DeafBroker {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DeafBroker {
    fn start(connack: bool) -> DeafBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, stp) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut kept: Vec<TcpStream> = Vec::new();
            while !stp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        acc.fetch_add(1, Ordering::Relaxed);
                        s.set_nonblocking(false).unwrap();
                        if connack {
                            read_one_packet(&mut s);
                            let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]);
                        }
                        kept.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        DeafBroker {
            addr,
            accepted,
            stop,
        }
    }
}

impl Drop for DeafBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one MQTT packet (fixed header, remaining length, body) and discards it.
fn read_one_packet(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let (mut len, mut mult) = (0usize, 1usize);
    loop {
        s.read_exact(&mut b).unwrap();
        len += (b[0] & 0x7f) as usize * mult;
        mult *= 128;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
}

/// Issue 12: SIGTERM with ~1,500 large publishes queued to a broker that stopped reading (and
/// to one that never answered the CONNECT): the master exits within the bound and logs what
/// it abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_exits_on_sigterm_within_the_bound_whatever_the_broker_does() {
    // The bound: SHUTDOWN_GRACE for the controller, the runtime's 1 s, and process start-up
    // slack on a loaded machine.
    let bound = sdwan_discovery::SHUTDOWN_GRACE + Duration::from_secs(3);
    // (case, broker answers CONNECT, gateways, "published" lines to wait for before SIGTERM)
    let cases = [
        ("broker stops reading after CONNACK", true, 1500, 1100),
        ("broker never answers CONNECT", false, 2, 0),
    ];
    for (case, connack, gateways, published) in cases {
        let api = FakeApiServer::start().await.unwrap();
        api.apply(node("w1", "192.0.2.1", "a", true));
        api.apply(node("w2", "192.0.2.2", "b", true));
        // Large payloads: many services, each on both workers.
        for i in 0..40 {
            let name = format!("service-with-a-rather-long-name-{i:03}");
            api.apply(service("default", &name, 30000 + i));
            api.apply(slice("default", &name, &["w1", "w2"]));
        }
        let dir = TempDir::new("shutdown");
        let kubeconfig = write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
        let mut topo = String::new();
        for g in 0..gateways {
            topo.push_str(&format!(
                "[[gateway]]\nid = \"gw-{g:04}\"\nzone = \"a\"\n\n"
            ));
        }
        let topology = write_file(dir.path(), "topology.toml", &topo);
        let broker = DeafBroker::start(connack);
        let mut cmd = Command::new(BIN);
        // Each payload v2 message handed to the client is a debug line "published TOPIC".
        cmd.env("RUST_LOG", "info,sdwan_discovery::controller=debug")
            .arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--topology")
            .arg(&topology)
            .args(["--broker", &format!("mqtt://{}", broker.addr)])
            .args(["--topic-prefix", PREFIX, "--retained-wait", "500"]);
        let mut master = ChildGuard::spawn(&format!("sdwan-discovery ({case})"), &mut cmd);
        let what = format!("{case}: {published} publishes queued");
        wait_until(Duration::from_secs(120), &what, || {
            broker.accepted.load(Ordering::Relaxed) > 0
                && master.stderr().matches("published ").count() >= published
        })
        .await;
        let t0 = Instant::now();
        master.signal(SIGTERM);
        let status = master.wait_exit(bound);
        let took = t0.elapsed();
        let err = master.stderr();
        eprintln!("{case}: exited {status} {took:?} after SIGTERM");
        assert!(status.success(), "{case}: {status}\n{err}");
        let line = err
            .lines()
            .find(|l| l.contains("shutting down, "))
            .unwrap_or_else(|| panic!("{case}: no shutdown line in\n{err}"));
        let n: u64 = line
            .split("shutting down, ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{case}: {line}"));
        eprintln!("{case}: {line}");
        if connack {
            assert!(
                n > 0,
                "{case}: publishes were queued but none reported abandoned: {line}"
            );
        }
    }
}
