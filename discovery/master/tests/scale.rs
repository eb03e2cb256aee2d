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

#[path = "../../../bench/plan/synthetic.rs"]
mod synthetic;

/// The master's resident memory with issue 11's cluster (plan-bench's synthetic cluster:
/// 5,000 services x 500 workers, seed 1) and `GATEWAYS` gateways (default 2,000): every
/// gateway's payload v2 content planned (`sdwan_plan::v2::zones`) and handed to the
/// publisher, which publishes (and keeps) a snapshot per gateway. Prints RSS before and
/// after, per gateway, and the bytes published.
/// `GATEWAYS=200 cargo nextest run -p sdwan-discovery --test scale --run-ignored only
/// --no-capture publisher_memory`
#[test]
#[ignore = "measurement, run by hand"]
fn publisher_memory_at_issue_11_scale() {
    use sdwan_contract::v2::Version;
    use sdwan_discovery::publish::{Config, Input, Now, Publisher};
    use sdwan_plan::{Snapshot, Topology};
    use sdwan_testsupport::Rng;
    use synthetic::{node, replicas, service, slice, ZONES};

    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }
    let gateways: usize = std::env::var("GATEWAYS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(2000);
    let (services, nodes) = (5000, 500);
    let mut rng = Rng::new(1);
    let mut snapshot = Snapshot::new();
    for i in 0..nodes {
        snapshot.apply_node(&node(i, rng.chance(5), true)).unwrap();
    }
    for s in 0..services {
        let ns = format!("team-{:02}", s % 50);
        let name = format!("svc-{s:05}");
        let ports = 1 + usize::from(rng.chance(30));
        snapshot
            .apply_service(&service(&ns, &name, ports, s))
            .unwrap();
        let h = replicas(&mut rng, nodes);
        snapshot.apply_slice(&slice(&ns, &name, &h)).unwrap();
    }
    let mut topo = String::new();
    for g in 0..gateways {
        topo.push_str(&format!(
            "[[gateway]]\nid = \"gw-{g:05}\"\nzone = \"zone-{:02}\"\n",
            rng.below(ZONES)
        ));
    }
    let topology = Topology::from_toml(&topo).unwrap();
    let t0 = Instant::now();
    let zones = sdwan_plan::v2::zones(&snapshot, &topology);
    let rss0 = rss_kib();
    let mut p = Publisher::new(Config {
        status_wait: Duration::ZERO,
        max_unknown: gateways + 64,
        ..Config::default()
    });
    let now = || Now {
        mono: Instant::now(),
        wall_ms: 1_764_694_800_000,
    };
    p.handle(now(), Input::Connected);
    p.handle(now(), Input::Lead);
    let mut bytes = 0usize;
    for g in 0..gateways {
        let snap = zones.snapshot(&format!("gw-{g:05}"), Version(0)).unwrap();
        let out = p.handle(now(), Input::Desired(Box::new(snap)));
        bytes += out.publishes.iter().map(|x| x.payload.len()).sum::<usize>();
    }
    let rss1 = rss_kib();
    // One service's endpoints move: every gateway's content changes (the master hands the
    // publisher each gateway `Zones::changed_since` names), each a delta.
    let t1 = Instant::now();
    snapshot
        .apply_slice(&slice("team-01", "svc-00001", &[7, 8]))
        .unwrap();
    let zones2 = sdwan_plan::v2::zones(&snapshot, &topology);
    let changed = zones2.changed_since(Some(&zones));
    let t_build = Instant::now();
    for gw in &changed {
        std::hint::black_box(zones2.snapshot(gw, Version(0)));
    }
    let build = t_build.elapsed();
    let before = p.egress();
    for gw in &changed {
        let snap = zones2.snapshot(gw, Version(0)).unwrap();
        p.handle(
            Now {
                mono: Instant::now() + Duration::from_secs(1),
                wall_ms: 1_764_694_801_000,
            },
            Input::Desired(Box::new(snap)),
        );
    }
    let after = p.egress();
    eprintln!(
        "one service moved: {} gateways changed, planned and handed over in {:?} (building \
         the snapshots alone: {build:?}); {} deltas, {} delta bytes, {} tail bytes",
        changed.len(),
        t1.elapsed() - build,
        after.deltas.messages - before.deltas.messages,
        after.deltas.bytes - before.deltas.bytes,
        after.tails.bytes - before.tails.bytes
    );
    eprintln!(
        "{services} services x {nodes} workers, {gateways} gateways: planned and published in \
         {:?}, {bytes} bytes; RSS {} MiB before the publisher, {} MiB after: {} KiB per gateway",
        t0.elapsed(),
        rss0 / 1024,
        rss1 / 1024,
        (rss1 - rss0) / gateways as u64
    );
}

/// The workers' proxy publisher with issue 11's cluster (5,000 services x 500 workers, seed
/// 1): every worker's proxy payload v2 content planned (`sdwan_plan::proxy_v2`) and handed
/// to a `Publisher<ProxySnapshot>`; then one service's endpoints move and every worker's
/// content is planned and handed over again, as the controller does. Prints times, bytes and
/// RSS.
/// `cargo nextest run -p sdwan-discovery --test scale --run-ignored only --no-capture
/// proxy_publisher`
#[test]
#[ignore = "measurement, run by hand"]
fn proxy_publisher_at_issue_11_scale() {
    use sdwan_contract::v2::proxy::ProxySnapshot;
    use sdwan_contract::v2::Version;
    use sdwan_discovery::publish::{Config, Input, Now, Publisher};
    use sdwan_plan::{Change, Planner, Snapshot, Topology};
    use sdwan_testsupport::Rng;
    use synthetic::{node, replicas, service, slice};

    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }
    let (services, nodes) = (5000, 500);
    let mut rng = Rng::new(1);
    let mut snapshot = Snapshot::new();
    for i in 0..nodes {
        snapshot.apply_node(&node(i, rng.chance(5), true)).unwrap();
    }
    for s in 0..services {
        let ns = format!("team-{:02}", s % 50);
        let name = format!("svc-{s:05}");
        let ports = 1 + usize::from(rng.chance(30));
        snapshot
            .apply_service(&service(&ns, &name, ports, s))
            .unwrap();
        let h = replicas(&mut rng, nodes);
        snapshot.apply_slice(&slice(&ns, &name, &h)).unwrap();
    }
    let mut planner = Planner::new(snapshot, Topology::from_toml("").unwrap());
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let proxies = sdwan_plan::proxy_v2::proxies(planner.snapshot(), planner.plan());
    let mut p: Publisher<ProxySnapshot> = Publisher::new(Config {
        status_wait: Duration::ZERO,
        ..Config::default()
    });
    let now = |s: u64| Now {
        mono: Instant::now() + Duration::from_secs(s),
        wall_ms: 1_764_694_800_000 + s * 1000,
    };
    p.handle(now(0), Input::Connected);
    p.handle(now(0), Input::Lead);
    let (mut bytes, mut largest, mut workers) = (0usize, 0usize, 0usize);
    let names: Vec<String> = proxies.nodes().map(str::to_string).collect();
    for n in &names {
        let snap = proxies.snapshot(n, Version(0)).unwrap();
        let out = p.handle(now(0), Input::Desired(Box::new(snap)));
        bytes += out.publishes.iter().map(|x| x.payload.len()).sum::<usize>();
        largest = largest.max(out.publishes.iter().map(|x| x.payload.len()).max().unwrap());
        workers += 1;
    }
    let first = t0.elapsed();
    let rss1 = rss_kib();
    // One service's endpoints move (as the controller: the planner's changed nodes).
    let t1 = Instant::now();
    let changed = planner.update([Change::Slice(Box::new(slice(
        "team-01",
        "svc-00001",
        &[7, 8],
    )))]);
    let proxies = sdwan_plan::proxy_v2::proxies(planner.snapshot(), planner.plan());
    let before = p.egress();
    for n in &changed.nodes {
        if let Some(snap) = proxies.snapshot(n, Version(0)) {
            p.handle(now(1), Input::Desired(Box::new(snap)));
        }
    }
    let after = p.egress();
    eprintln!(
        "{services} services x {workers} workers: first publish planned and encoded in \
         {first:?}: {bytes} bytes, largest message {largest}; RSS {} MiB before the \
         publisher, {} MiB after ({} KiB per worker)",
        rss0 / 1024,
        rss1 / 1024,
        (rss1 - rss0) / workers as u64
    );
    eprintln!(
        "one service moved: {} workers changed, planned and handed over in {:?}: {} deltas, \
         {} delta bytes, {} tail bytes, {} snapshot parts",
        changed.nodes.len(),
        t1.elapsed(),
        after.deltas.messages - before.deltas.messages,
        after.deltas.bytes - before.deltas.bytes,
        after.tails.bytes - before.tails.bytes,
        after.parts.messages - before.parts.messages
    );
}
