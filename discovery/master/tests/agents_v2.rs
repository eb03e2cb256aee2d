//! Payload v2 end to end with real agents (issue 11): fake API server -> sdwan-discovery ->
//! mosquitto -> `sdwan-agent` processes -> `dig`. Each test checks the answers with dig and the
//! master's convergence metrics (by digest). Needs mosquitto, dig (Debian: mosquitto,
//! bind9-dnsutils) and the sdwan-agent binary (built by `cargo build -p sdwan-agent`, which
//! `cargo nextest run --workspace` does).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sdwan_discovery::metrics::SharedMetrics;
use sdwan_testsupport::{dig, free_port, require_tool, ChildGuard};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-discovery");

/// [`Rig`] for tests that ask real agents with dig.
async fn rig(name: &str) -> Rig {
    require_tool("dig");
    Rig::start(name).await
}

impl Rig {
    /// `sdwan-agent --gateway-id GW` with the state directory `state-GW-RUN` (new: empty).
    fn agent(&self, gw: &str, run: usize) -> (ChildGuard, SocketAddr) {
        let state = self.dir.join(format!("state-{gw}-{run}"));
        std::fs::create_dir_all(&state).unwrap();
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(agent_bin());
        cmd.env("RUST_LOG", "info")
            .args(["--broker", &format!("mqtt://{}", self.addr())])
            .args(["--gateway-id", gw, "--topic-prefix", PREFIX])
            // The cluster's workers (192.0.2.x) are not on loopback: no probes to them.
            .args(["--probe", "off"])
            .args(["--listen", &dns.to_string()])
            .arg("--state-dir")
            .arg(&state);
        (
            ChildGuard::spawn(&format!("sdwan-agent {gw} (run {run})"), &mut cmd),
            dns,
        )
    }
}

/// Waits (deadline `timeout`) until `dns` answers `name` A with exactly `want`.
async fn wait_answer(dns: SocketAddr, name: &str, want: &[&str], timeout: Duration, what: &str) {
    let fqdn = format!("{name}.k8s.internal");
    let deadline = Instant::now() + timeout;
    loop {
        let f = fqdn.clone();
        let got = tokio::task::spawn_blocking(move || dig(dns, &[&f, "A"]))
            .await
            .unwrap();
        if got.answer_data("A") == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {fqdn} A: want {want:?}, got {:?} after {timeout:?}\n{}",
            got.answer_data("A"),
            got.stdout
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the master's metrics say `gateways` converged (the digest each reports is the
/// desired one) and online.
async fn wait_converged(m: &SharedMetrics, gateways: &[&str], timeout: Duration, what: &str) {
    wait_until(timeout, what, || {
        let mm = m.lock().unwrap();
        gateways.iter().all(|g| {
            mm.gateways
                .get(*g)
                .is_some_and(|c| c.converged() && c.online && c.desired_digest.is_some())
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_converge_again_after_a_broker_restart_without_retained_state() {
    let mut rig = rig("agents-v2-broker").await;
    let m = Master::start(&rig.args(&[])).await;
    let (_a, dns_a) = rig.agent("gw-a", 1);
    let (b, dns_b) = rig.agent("gw-b", 1);
    for dns in [dns_a, dns_b] {
        wait_answer(
            dns,
            "web.default",
            &["192.0.2.1"],
            Duration::from_secs(15),
            "start",
        )
        .await;
    }
    wait_converged(
        &m.metrics,
        &["gw-a", "gw-b"],
        Duration::from_secs(15),
        "converged",
    )
    .await;

    // The broker loses every retained message; the cluster changes meanwhile; gw-b is
    // restarted with an empty state directory, so it needs a snapshot the broker no longer
    // has (it asks with "want":"snapshot").
    rig.broker.stop();
    drop(b);
    let plans = m.plans();
    rig.api.apply(slice("default", "web", &["w2"]));
    wait_until(Duration::from_secs(10), "the change planned", || {
        m.plans() > plans
    })
    .await;
    rig.broker.start_again();
    let (_b, dns_b) = rig.agent("gw-b", 2);
    for dns in [dns_a, dns_b] {
        wait_answer(
            dns,
            "web.default",
            &["192.0.2.2"],
            Duration::from_secs(40),
            "after the broker restart",
        )
        .await;
    }
    wait_converged(
        &m.metrics,
        &["gw-a", "gw-b"],
        Duration::from_secs(15),
        "converged after the broker restart",
    )
    .await;
    m.stop().await;
}

fn all_converged(text: &str) -> bool {
    ["gw-a", "gw-b"]
        .iter()
        .all(|g| metric(text, &format!("sdwan_gateway_converged{{gateway=\"{g}\"}}")) == Some(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_get_the_change_after_the_master_is_killed_and_restarted() {
    let rig = rig("agents-v2-kill9").await;
    let (_a, dns_a) = rig.agent("gw-a", 1);
    let (_b, dns_b) = rig.agent("gw-b", 1);
    let spawn = |run: usize| {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(BIN);
        cmd.args(rig.args(&["--metrics", &metrics.to_string()]))
            .env("RUST_LOG", "info");
        (
            ChildGuard::spawn(&format!("sdwan-discovery run {run}"), &mut cmd),
            metrics,
        )
    };
    let (mut master, maddr) = spawn(1);
    for dns in [dns_a, dns_b] {
        wait_answer(
            dns,
            "web.default",
            &["192.0.2.1"],
            Duration::from_secs(15),
            "start",
        )
        .await;
    }
    wait_metrics(maddr, "first master converged", all_converged).await;

    master.signal(9);
    master.wait_exit(Duration::from_secs(10));
    rig.api.apply(slice("default", "web", &["w2"]));
    rig.api.apply(service("default", "api", 30090));
    rig.api.apply(slice("default", "api", &["w1"]));
    let (master, maddr) = spawn(2);
    for dns in [dns_a, dns_b] {
        wait_answer(
            dns,
            "web.default",
            &["192.0.2.2"],
            Duration::from_secs(15),
            "moved",
        )
        .await;
        wait_answer(
            dns,
            "api.default",
            &["192.0.2.1"],
            Duration::from_secs(15),
            "new",
        )
        .await;
    }
    let text = wait_metrics(maddr, "restarted master converged", all_converged).await;
    // The start read the two retained statuses and no zone.
    assert_eq!(
        metric(&text, "sdwan_start_read_statuses"),
        Some(2.0),
        "{text}"
    );
    let bytes = metric(&text, "sdwan_start_read_bytes{kind=\"gateway_status\"}").unwrap();
    assert!(bytes > 100.0 && bytes < 2000.0, "{bytes} bytes of statuses");
    let log = master.stderr();
    assert!(
        log.contains("read 2 retained gateway statuses") && log.contains("no zones"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_at_once_never_move_a_real_agent_back() {
    let rig = rig("agents-v2-two").await;
    let rec = Recorder::start(Recorder::plain(rig.addr(), "rec-agents-two")).await;
    let (_a, dns_a) = rig.agent("gw-a", 1);
    let (_b, dns_b) = rig.agent("gw-b", 1);
    let m1 = Master::start(&rig.args(&["--client-id", "master-1"])).await;
    wait_converged(
        &m1.metrics,
        &["gw-a", "gw-b"],
        Duration::from_secs(15),
        "m1",
    )
    .await;
    let m2 = Master::start(&rig.args(&["--client-id", "master-2"])).await;
    for i in 0..12u16 {
        let name = format!("s{i}");
        rig.api.apply(service("default", &name, 31000 + i));
        rig.api.apply(slice(
            "default",
            &name,
            &[if i % 2 == 0 { "w1" } else { "w2" }],
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for dns in [dns_a, dns_b] {
        wait_answer(
            dns,
            "s11.default",
            &["192.0.2.2"],
            Duration::from_secs(20),
            "s11",
        )
        .await;
    }
    wait_converged(
        &m1.metrics,
        &["gw-a", "gw-b"],
        Duration::from_secs(20),
        "m1",
    )
    .await;
    wait_converged(
        &m2.metrics,
        &["gw-a", "gw-b"],
        Duration::from_secs(20),
        "m2",
    )
    .await;
    // Each agent's reported version never went back (RFC 1982), and the content it reported
    // (its digest, looked up in what was published) never went back to fewer services:
    // read from its status documents, in order.
    let mut services: BTreeMap<String, usize> = BTreeMap::new();
    for gw in ["gw-a", "gw-b"] {
        for z in rec.zone(gw) {
            services.insert(format!("{:016x}", z.digest().0), z.snap.services.len());
        }
    }
    let mut served: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for s in rec.seen.lock().unwrap().iter() {
        let Some(gw) = s
            .topic
            .strip_prefix(&format!("{PREFIX}/gateways/"))
            .and_then(|t| t.strip_suffix("/status"))
        else {
            continue;
        };
        let Some(held) = s.json()["held"].as_u64() else {
            continue;
        };
        if let Some(&before) = last.get(gw) {
            assert!(
                held == before
                    || sdwan_contract::v2::Version(held)
                        .is_newer_than(sdwan_contract::v2::Version(before)),
                "{gw}: reported version {held} after {before}\n{}",
                rec.dump(gw)
            );
        }
        last.insert(gw.to_string(), held);
        if let Some(n) = s.json()["digest"].as_str().and_then(|d| services.get(d)) {
            served.entry(gw.to_string()).or_default().push(*n);
        }
    }
    assert_eq!(last.len(), 2, "{last:?}");
    for (gw, counts) in &served {
        assert!(
            counts.windows(2).all(|w| w[1] >= w[0]),
            "{gw}: went back to older content (services served: {counts:?})\n{}",
            rec.dump(gw)
        );
    }
    m1.stop().await;
    m2.stop().await;
}
