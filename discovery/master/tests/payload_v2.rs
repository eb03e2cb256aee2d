//! Payload v2 wiring (issue 11), the master's side: the master (in-process, or the binary
//! killed with SIGKILL) against the fake API server and a real mosquitto, with simulated
//! gateway agents ([`SimAgent`]: a subscriber that applies snapshots, tails and deltas as the
//! agent does and reports `held`/`digest`/`want` in its retained status). Each test checks
//! what the agents serve and the master's convergence metrics, which compare digests.
//! Needs mosquitto (Debian: mosquitto).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sdwan_discovery::metrics::SharedMetrics;
use sdwan_testsupport::{free_port, ChildGuard};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-discovery");

/// Waits until each agent serves the content the master desires for it, and the master's
/// metrics say so (converged, by digest).
async fn wait_converged(metrics: &SharedMetrics, agents: &[&SimAgent], what: &str) {
    wait_until(Duration::from_secs(20), what, || {
        let m = metrics.lock().unwrap();
        agents.iter().all(|a| {
            let Some(c) = m.gateways.get(&a.gateway) else {
                return false;
            };
            c.converged() && a.held().map(|h| h.1 .0) == c.desired_digest
        })
    })
    .await;
}

fn web(a: &SimAgent) -> Vec<String> {
    a.zone()
        .map(|z| z.data_of("web.default", "A"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarted_without_its_retained_state_agents_converge_again() {
    let mut rig = Rig::start("v2-broker-restart").await;
    let m = Master::start(&rig.args(&[])).await;
    let a = SimAgent::start(rig.addr(), "gw-a").await;
    let b = SimAgent::start(rig.addr(), "gw-b").await;
    wait_converged(&m.metrics, &[&a, &b], "both agents converged").await;
    assert_eq!(web(&a), ["192.0.2.1"]);

    // The broker goes away with every retained message; the cluster changes meanwhile, and
    // gw-b restarts with nothing (it needs a snapshot the broker no longer has).
    rig.broker.stop();
    drop(b);
    let plans = m.plans();
    rig.api.apply(slice("default", "web", &["w2"]));
    wait_until(Duration::from_secs(10), "the change planned", || {
        m.plans() > plans
    })
    .await;
    rig.broker.start_again();
    let b = SimAgent::start(rig.addr(), "gw-b").await;
    wait_converged(&m.metrics, &[&a, &b], "converged after the broker restart").await;
    assert_eq!(web(&a), ["192.0.2.2"]);
    assert_eq!(web(&b), ["192.0.2.2"]);
    a.assert_never_went_back();
    b.assert_never_went_back();
    m.stop().await;
}

/// The master binary with `--metrics` on a free port.
fn spawn_master(rig: &Rig, run: usize) -> (ChildGuard, SocketAddr) {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(BIN);
    cmd.args(rig.args(&["--metrics", &metrics.to_string()]))
        .env("RUST_LOG", "info");
    (
        ChildGuard::spawn(&format!("sdwan-discovery run {run}"), &mut cmd),
        metrics,
    )
}

fn all_converged(text: &str) -> bool {
    ["gw-a", "gw-b"]
        .iter()
        .all(|g| metric(text, &format!("sdwan_gateway_converged{{gateway=\"{g}\"}}")) == Some(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_and_restarted_on_a_changed_cluster_reads_only_statuses() {
    let rig = Rig::start("v2-kill9").await;
    let a = SimAgent::start(rig.addr(), "gw-a").await;
    let b = SimAgent::start(rig.addr(), "gw-b").await;
    let (mut master, maddr) = spawn_master(&rig, 1);
    wait_metrics(maddr, "first master converged", all_converged).await;
    assert_eq!(web(&a), ["192.0.2.1"]);
    let before = a.held().unwrap();

    master.signal(9);
    master.wait_exit(Duration::from_secs(10));
    rig.api.apply(slice("default", "web", &["w2"]));
    rig.api.apply(service("default", "api", 30090));
    rig.api.apply(slice("default", "api", &["w1"]));

    let (master, maddr) = spawn_master(&rig, 2);
    let text = wait_metrics(maddr, "restarted master converged", |t| {
        all_converged(t) && metric(t, "sdwan_published_total{kind=\"zone\"}") >= Some(2.0)
    })
    .await;
    assert_eq!(web(&a), ["192.0.2.2"]);
    assert_eq!(web(&b), ["192.0.2.2"]);
    for ag in [&a, &b] {
        let z = ag.zone().unwrap();
        assert_eq!(z.data_of("api.default", "A"), ["192.0.2.1"]);
    }
    assert!(a.held().unwrap().0.is_newer_than(before.0));
    a.assert_never_went_back();
    b.assert_never_went_back();
    // What the start read: the two retained statuses (~150 bytes each), no zone.
    let statuses = metric(&text, "sdwan_start_read_statuses").unwrap();
    let bytes = metric(&text, "sdwan_start_read_bytes{kind=\"gateway_status\"}").unwrap();
    assert_eq!(statuses, 2.0, "{text}");
    assert!(bytes > 100.0 && bytes < 1000.0, "{bytes} bytes of statuses");
    let log = master.stderr();
    assert!(
        log.contains("read 2 retained gateway statuses") && log.contains("no zones"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_publishing_at_once_never_move_an_agent_back_to_older_content() {
    let rig = Rig::start("v2-two-masters").await;
    let a = SimAgent::start(rig.addr(), "gw-a").await;
    let b = SimAgent::start(rig.addr(), "gw-b").await;
    let rec = Recorder::start(Recorder::plain(rig.addr(), "rec-two")).await;
    let m1 = Master::start(&rig.args(&["--client-id", "master-1"])).await;
    wait_converged(&m1.metrics, &[&a, &b], "converged on the first master").await;
    // A second master publishing too (a handover where the old leader still publishes, at
    // its worst: for the whole test).
    let m2 = Master::start(&rig.args(&["--client-id", "master-2"])).await;
    let services = |z: &Zone| z.snap.services.len();
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
    wait_until(Duration::from_secs(20), "all 13 services served", || {
        [&a, &b]
            .iter()
            .all(|g| g.zone().is_some_and(|z| services(&z) == 13))
    })
    .await;
    wait_converged(&m1.metrics, &[&a, &b], "converged on master 1").await;
    wait_converged(&m2.metrics, &[&a, &b], "converged on master 2").await;
    for g in [&a, &b] {
        g.assert_never_went_back();
    }
    // Content: services were only added, so the number served never went down.
    for g in [&a, &b] {
        let counts: Vec<usize> = g.history.lock().unwrap().iter().map(services).collect();
        if !counts.windows(2).all(|w| w[1] >= w[0]) {
            eprintln!("{}", rec.dump(&g.gateway));
        }
        assert!(
            counts.windows(2).all(|w| w[1] >= w[0]),
            "{}: went back to older content: {counts:?}",
            g.gateway
        );
    }
    m1.stop().await;
    m2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_metrics_never_say_converged_while_the_agent_holds_other_content() {
    let rig = Rig::start("v2-never-lie").await;
    let a = SimAgent::start(rig.addr(), "gw-a").await;
    let b = SimAgent::start(rig.addr(), "gw-b").await;
    let m = Master::start(&rig.args(&[])).await;
    wait_converged(&m.metrics, &[&a, &b], "converged").await;

    // Changes while sampling: whenever the metrics say converged, the agent (stable around
    // the sample) serves the desired digest.
    let mut samples = 0;
    let mut converged_samples = 0;
    for i in 0..20u16 {
        let on = if i % 2 == 0 { "w2" } else { "w1" };
        rig.api.apply(slice("default", "web", &[on]));
        let until = Instant::now() + Duration::from_millis(60);
        while Instant::now() < until {
            let held0 = a.held();
            let (conv, desired) = {
                let mm = m.metrics.lock().unwrap();
                let c = &mm.gateways["gw-a"];
                (c.converged(), c.desired_digest)
            };
            let held1 = a.held();
            if held0 == held1 {
                samples += 1;
                if conv {
                    converged_samples += 1;
                    assert_eq!(
                        held1.map(|h| h.1 .0),
                        desired,
                        "metrics said converged while the agent served other content"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(
        samples > 100 && converged_samples > 0,
        "{samples} {converged_samples}"
    );
    wait_converged(&m.metrics, &[&a, &b], "converged at the end").await;

    // An agent lying about its content (the desired version with another digest) is not
    // converged, whatever its version says.
    let (v, _) = a.held().unwrap();
    a.kill();
    let rec = Recorder::start(Recorder::plain(rig.addr(), "rec-lie")).await;
    rec.report("gw-a", Some((v, sdwan_contract::v2::Digest(0xdead_beef))))
        .await;
    wait_until(Duration::from_secs(10), "the lie seen", || {
        m.metrics.lock().unwrap().gateways["gw-a"].applied_digest == Some(0xdead_beef)
    })
    .await;
    {
        let mm = m.metrics.lock().unwrap();
        assert_eq!(mm.gateways["gw-a"].desired, Some(v.0));
        assert!(!mm.gateways["gw-a"].converged());
        assert!(mm
            .render()
            .contains("sdwan_gateway_converged{gateway=\"gw-a\"} 0\n"));
    }
    m.stop().await;
}
