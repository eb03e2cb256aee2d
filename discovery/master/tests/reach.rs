//! Issue 14, visibility: a gateway's status carries its view of the workers (`reach`), and the
//! master turns it into the reachability matrix on `/metrics` and a log line per change. Here a
//! real mosquitto with the design's ACL, the master process, and gateway gw-a publishing its
//! own status documents (as its agent would): a worker seen down appears as one pair, a name
//! that is no node of the cluster is only counted, a status listing more than 32 names is
//! refused and changes nothing, and the pair goes when the worker is up again. Needs mosquitto.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use sdwan_testsupport::mosquitto::MosquittoConfig;
use sdwan_testsupport::{free_port, wait_for, ChildGuard};

fn status(down: &[&str], more: u32) -> String {
    let names: Vec<String> = down.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        r#"{{"state":"online","serial":null,"error":null,"reach":{{"workers":2,"down":[{}],"more":{more},"rtt_ms":[3,5,8]}},"version":"0.1.0"}}"#,
        names.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reach_becomes_the_matrix_on_metrics_and_one_log_line_per_change() {
    // The API server lives as long as `_api`.
    let Rig {
        api: _api,
        dir,
        broker,
    } = Rig::start_with(
        "reach-metrics",
        &MosquittoConfig {
            acl: Some(MosquittoConfig::design_acl(PREFIX)),
            ..Default::default()
        },
    )
    .await;
    let url = broker.url();
    let maddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdwan-discovery"));
    cmd.args(args(
        &dir.join("kubeconfig"),
        &dir.join("topology.toml"),
        &url,
        &["--username", "master", "--metrics", &maddr.to_string()],
    ))
    .env("RUST_LOG", "info");
    let master = ChildGuard::spawn("master", &mut cmd);
    wait_metrics(maddr, "the first plan", |t| t.contains("\nsdwan_ready 1\n")).await;

    let topic = format!("{PREFIX}/gateways/gw-a/status");
    let pair = "sdwan_gateway_worker_down{gateway=\"gw-a\",worker=\"w1\"} 1\n";
    // gw-a sees w1 down, and a name the cluster does not have.
    publish_as(&url, "gw-a", &topic, status(&["w1", "zz-not-a-node"], 0)).await;
    let text = wait_metrics(maddr, "the pair gw-a/w1", |t| t.contains(pair)).await;
    for want in [
        "sdwan_gateway_workers_probed{gateway=\"gw-a\"} 2\n",
        "sdwan_gateway_workers_down{gateway=\"gw-a\"} 2\n",
        "sdwan_gateway_workers_down_unknown{gateway=\"gw-a\"} 1\n",
        "sdwan_worker_down_gateways{worker=\"w1\"} 1\n",
        "sdwan_gateway_probe_rtt_ms{gateway=\"gw-a\",quantile=\"0.9\"} 5\n",
    ] {
        assert!(text.contains(want), "want {want:?} in\n{text}");
    }
    assert!(!text.contains("zz-not-a-node"), "{text}");
    assert!(!text.contains("gateway=\"gw-b\",worker="), "{text}");
    wait_for(Duration::from_secs(10), "the down log line", || {
        master
            .stderr()
            .contains("gateway gw-a sees worker \"w1\" down (2 of 2 workers)")
            .then_some(())
    });

    // The same view again: no second log line. A status naming 33 workers is refused (the
    // status door's bound) and leaves the matrix as it was.
    publish_as(&url, "gw-a", &topic, status(&["w1", "zz-not-a-node"], 0)).await;
    let many: Vec<String> = (0..33).map(|i| format!("x{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    publish_as(&url, "gw-a", &topic, status(&many, 0)).await;
    wait_for(Duration::from_secs(10), "the refusal", || {
        master
            .stderr()
            .contains("gateways/gw-a/status: status document")
            .then_some(())
    });
    let text = wait_metrics(maddr, "the pair still there", |t| t.contains(pair)).await;
    assert!(!text.contains("x32"), "{text}");

    // w1 up again: the pair and the per-worker count go, one "up again" line.
    publish_as(&url, "gw-a", &topic, status(&[], 0)).await;
    let text = wait_metrics(maddr, "the pair gone", |t| {
        !t.contains("worker=\"w1\"")
            && t.contains("sdwan_gateway_workers_down{gateway=\"gw-a\"} 0\n")
    })
    .await;
    assert!(!text.contains("sdwan_worker_down_gateways{"), "{text}");
    wait_for(Duration::from_secs(10), "the up-again log line", || {
        master
            .stderr()
            .contains("gateway gw-a sees worker \"w1\" up again (0 of 2 workers down)")
            .then_some(())
    });
    let e = master.stderr();
    assert_eq!(
        e.matches("sees worker \"w1\" down").count(),
        1,
        "a repeated view is logged again:\n{e}"
    );
}
