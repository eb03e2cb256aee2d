//! Issue 12, item 1: a gateway may publish on its own status topic (the design's broker ACL
//! allows it), and the master reads every status. A retained status nested 200,000 levels
//! deep (400 KB) made the master abort with a stack overflow, at every start. Here a real
//! mosquitto with the design's ACL holds such documents, retained, from a gateway and from a
//! worker node; the master process starts (twice), warns naming each of them, and keeps
//! planning and publishing zones.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use sdwan_testsupport::mosquitto::MosquittoConfig;
use sdwan_testsupport::{wait_for, ChildGuard};

/// A status document with an unknown field nested `depth` arrays deep.
fn deep_status(depth: usize) -> Vec<u8> {
    format!(
        r#"{{"state":"online","serial":1,"error":null,"version":"0.1.0","x":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
    .into_bytes()
}

fn start_master(args: &[String]) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdwan-discovery"));
    cmd.args(args).env("RUST_LOG", "info");
    ChildGuard::spawn("master", &mut cmd)
}

fn a(s: &Zone, name: &str) -> Vec<String> {
    s.data_of(name, "A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_retained_status_does_not_take_the_master_down_nor_flood_its_log() {
    let Rig { api, dir, broker } = Rig::start_with(
        "hostile-status",
        &MosquittoConfig {
            acl: Some(MosquittoConfig::design_acl(PREFIX)),
            ..Default::default()
        },
    )
    .await;
    let url = broker.url();
    let mut rec_link = Recorder::plain(
        format!("127.0.0.1:{}", broker.port()).parse().unwrap(),
        "rec-hostile",
    );
    rec_link.username = Some("master".into());
    let rec = Recorder::start(rec_link).await;

    // The attack, within the ACL: gateway gw-b and worker w2 each write their own status.
    let gw_topic = format!("{PREFIX}/gateways/gw-b/status");
    let node_topic = format!("{PREFIX}/nodes/w2/status");
    let huge = deep_status(200_000);
    assert!(huge.len() > 400_000);
    publish_as(&url, "gw-b", &gw_topic, huge.clone()).await;
    // Under the size limit, so it is the depth that is refused.
    publish_as(&url, "w2", &node_topic, deep_status(8_000)).await;
    wait_until(Duration::from_secs(10), "both retained statuses", || {
        rec.on(&gw_topic).last().is_some_and(|s| s.payload == huge)
            && !rec.on(&node_topic).is_empty()
    })
    .await;

    let args = args(
        &dir.join("kubeconfig"),
        &dir.join("topology.toml"),
        &url,
        &["--username", "master"],
    );
    for (round, (slice_on, want)) in [("w2", "192.0.2.2"), ("w1", "192.0.2.1")]
        .into_iter()
        .enumerate()
    {
        let mut master = start_master(&args);
        // It reads the retained statuses at start and warns, naming the gateway and the node.
        wait_for(
            Duration::from_secs(20),
            "warnings about both statuses",
            || {
                if let Some(st) = master.try_exit() {
                    panic!("round {round}: master exited ({st}):\n{}", master.stderr());
                }
                let e = master.stderr();
                (e.contains("gateways/gw-b/status: status document: 4")
                    && e.contains("bytes, the limit is 16384")
                    && e.contains(
                        "nodes/w2/status: status document: nested deeper than 4 levels of arrays \
                     and objects",
                    ))
                .then_some(())
            },
        );
        assert!(master.try_exit().is_none(), "round {round}: master exited");
        // And keeps planning and publishing: a service moves, both gateways hear of it.
        api.apply(slice("default", "web", &[slice_on]));
        for gw in ["gw-a", "gw-b"] {
            rec.wait_zone(gw, &format!("round {round}: web on {slice_on}"), |z| {
                a(z, "web.default") == [want]
            })
            .await;
        }
        if round == 0 {
            // The same gateway sending garbage again and again is warned about once: three
            // more from w2, then one from w9 as a marker that the master has read them all.
            for _ in 0..3 {
                publish_as(&url, "w2", &node_topic, deep_status(8_000)).await;
            }
            let marker = format!("{PREFIX}/nodes/w9/status");
            publish_as(&url, "w9", &marker, deep_status(8_000)).await;
            wait_for(Duration::from_secs(10), "the marker's warning", || {
                master
                    .stderr()
                    .contains("nodes/w9/status: status document")
                    .then_some(())
            });
            let e = master.stderr();
            assert_eq!(
                e.matches("nodes/w2/status: status document").count(),
                1,
                "one gateway's repeated garbage floods the log:\n{e}"
            );
        }
        assert!(
            master.try_exit().is_none(),
            "round {round}: master exited:\n{}",
            master.stderr()
        );
        drop(master);
    }
}
