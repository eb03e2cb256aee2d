//! Scale measurement (ignored by default; takes a while in debug builds):
//! `SCALE=services,nodes,gateways cargo nextest run -p sdwan-discovery --test scale
//! --run-ignored only --no-capture` (default 1000,100,100). Prints the time to the first
//! complete publish, and for one service change: payloads and MQTT payload bytes published,
//! event -> publish latency.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn one_service_change_at_scale() {
    let spec = std::env::var("SCALE").unwrap_or_else(|_| "1000,100,100".into());
    let n: Vec<usize> = spec.split(',').map(|x| x.parse().unwrap()).collect();
    let (services, nodes, gateways) = (n[0], n[1], n[2]);
    let api = FakeApiServer::start().await.unwrap();
    let zones = ["a", "b", "c", "d"];
    for i in 0..nodes {
        api.apply(node(
            &format!("w{i}"),
            &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            zones[i % 4],
            true,
        ));
    }
    for i in 0..services {
        let (a, b) = (
            format!("w{}", i % nodes),
            format!("w{}", (i * 7 + 3) % nodes),
        );
        api.apply(service(
            "apps",
            &format!("svc{i}"),
            30000 + (i % 2700) as u16,
        ));
        api.apply(slice("apps", &format!("svc{i}"), &[&a, &b]));
    }
    let mut topo = String::new();
    for g in 0..gateways {
        topo.push_str(&format!(
            "[[gateway]]\nid = \"gw{g}\"\nzone = \"{}\"\n\n",
            zones[g % 4]
        ));
    }
    let dir = TempDir::new("scale");
    let kubeconfig = write_file(dir.path(), "kubeconfig", &api.kubeconfig_yaml());
    let topology = write_file(dir.path(), "topology.toml", &topo);
    let broker = plain_broker();
    let t0 = Instant::now();
    let m = Master::start(&args(
        &kubeconfig,
        &topology,
        &format!("mqtt://{broker}"),
        &[],
    ))
    .await;
    wait_until(Duration::from_secs(600), "first publish", || {
        m.metrics.lock().unwrap().ready
    })
    .await;
    let (zones0, proxies0, bytes0) = {
        let mm = m.metrics.lock().unwrap();
        (mm.published_zones, mm.published_proxies, mm.published_bytes)
    };
    eprintln!(
        "{services} services x {nodes} nodes x {gateways} gateways: first publish after {:?}: \
         {zones0} zones + {proxies0} proxies, {bytes0} bytes",
        t0.elapsed()
    );
    let plans = m.plans();
    let e2p = m.metrics.lock().unwrap().event_to_publish.clone();
    let t1 = Instant::now();
    api.apply(slice("apps", "svc1", &["w5"]));
    wait_until(Duration::from_secs(600), "the change planned", || {
        m.plans() > plans
    })
    .await;
    {
        let mm = m.metrics.lock().unwrap();
        let (dz, dp, db) = (
            mm.published_zones - zones0,
            mm.published_proxies - proxies0,
            mm.published_bytes - bytes0,
        );
        let obs = mm.event_to_publish.count() - e2p.count();
        let mean = (mm.event_to_publish.sum() - e2p.sum()) / obs.max(1) as f64;
        eprintln!(
            "one service moved: {dz} zones + {dp} proxies republished, {db} payload bytes; \
             event -> last publish {:?}, mean event -> publish {:.1} ms",
            t1.elapsed(),
            mean * 1e3
        );
    }
    m.stop().await;
}
