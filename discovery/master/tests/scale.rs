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

/// Live heap bytes of this test binary (and their peak): the publishers' memory measured
/// exactly, beside VmRSS / VmHWM.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Counting;
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    fn grow(n: usize) {
        let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    // SAFETY: forwards every call to the system allocator with the same arguments; only
    // counts bytes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            grow(l.size());
            // SAFETY: same contract as ours.
            unsafe { System.alloc(l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            grow(l.size());
            // SAFETY: same contract as ours.
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            if n >= l.size() {
                grow(n - l.size());
            } else {
                LIVE.fetch_sub(l.size() - n, Ordering::Relaxed);
            }
            // SAFETY: same contract as ours.
            unsafe { System.realloc(p, l, n) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(p, l) }
        }
    }

    /// Live heap bytes now.
    pub fn live() -> usize {
        LIVE.load(Ordering::Relaxed)
    }

    /// Starts a new peak from now.
    pub fn reset_peak() {
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The most live heap bytes since the last `reset_peak`.
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }
}

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The master's gateway and worker streams at issue 11's scale (plan-bench's synthetic
/// cluster: 5,000 services x 500 workers, seed 1; `GATEWAYS` gateways, default 2,000, in 20
/// zones, 30 % with a `near` list), planned and published as the controller does: `v2::Zones` and
/// `proxy_v2::Proxies` planned (again with `next` from the plan before), every gateway's
/// `Zone` and every worker's `WorkerProxy` handed to its `Publisher`. Prints the first
/// publish (time, bytes, heap and RSS), then for three isolated changes (an endpoint moves,
/// a replica is added, a worker goes NotReady) the planning and publisher time, the streams
/// handed over and what they published, and the memory at the end. Asserts the memory and
/// per-change budgets of issue 11 (with a margin for a busy machine) and that each change is
/// published as deltas to every stream, without a snapshot.
/// `cargo nextest run --release -p sdwan-discovery --test scale --run-ignored only
/// --no-capture master_streams`
#[test]
#[ignore = "measurement, run by hand"]
fn master_streams_at_issue_11_scale() {
    use sdwan_contract::v2::Version;
    use sdwan_discovery::publish::{Config, Egress, Input, Now, Publisher};
    use sdwan_plan::proxy_v2::WorkerProxy;
    use sdwan_plan::v2::Zone;
    use sdwan_plan::{Change, Planner, Snapshot, Topology};
    use sdwan_testsupport::Rng;
    use synthetic::{node, replicas, service, slice, ZONES};

    let gateways: usize = std::env::var("GATEWAYS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(2000);
    let (services, nodes) = (5000, 500);
    let mut rng = Rng::new(1);
    let mut snapshot = Snapshot::new();
    let mut v6 = Vec::new();
    for i in 0..nodes {
        v6.push(rng.chance(5));
        snapshot.apply_node(&node(i, v6[i], true)).unwrap();
    }
    let mut hosts = Vec::new();
    for s in 0..services {
        let ns = format!("team-{:02}", s % 50);
        let name = format!("svc-{s:05}");
        let ports = 1 + usize::from(rng.chance(30));
        snapshot
            .apply_service(&service(&ns, &name, ports, s))
            .unwrap();
        let h = replicas(&mut rng, nodes);
        snapshot.apply_slice(&slice(&ns, &name, &h)).unwrap();
        hosts.push(h);
    }
    // As plan-bench: every gateway in a zone, 30 % with their own `near` list (655 slot
    // orders among 2,000 gateways).
    let mut topo = String::new();
    for g in 0..gateways {
        topo.push_str(&format!(
            "[[gateway]]\nid = \"gw-{g:05}\"\nzone = \"zone-{:02}\"\n",
            rng.below(ZONES)
        ));
        if rng.chance(30) {
            topo.push_str(&format!(
                "near = [\"worker{:04}\", \"worker{:04}\"]\n",
                rng.below(nodes),
                rng.below(nodes)
            ));
        }
    }
    let topology = Topology::from_toml(&topo).unwrap();
    let mut planner = Planner::new(snapshot, topology);
    let (rss0, heap0) = (status_kib("VmRSS:"), heap::live());
    heap::reset_peak();

    let cfg = Config {
        status_wait: Duration::ZERO,
        max_unknown: gateways + 64,
        ..Config::default()
    };
    let mut zp: Publisher<Zone> = Publisher::new(cfg.clone());
    let mut pp: Publisher<WorkerProxy> = Publisher::new(cfg);
    let start = Instant::now();
    let now = |s: u64| Now {
        mono: start + Duration::from_secs(s),
        wall_ms: 1_764_694_800_000 + s * 1000,
    };
    for input in [Input::Connected, Input::Lead] {
        zp.handle(now(0), input.clone());
    }
    pp.handle(now(0), Input::Connected);
    pp.handle(now(0), Input::Lead);

    // First publish: every stream's snapshot.
    let t0 = Instant::now();
    let mut zones = sdwan_plan::v2::zones(planner.snapshot(), planner.topology());
    let mut proxies = sdwan_plan::proxy_v2::proxies(planner.snapshot(), planner.plan());
    let (mut bytes, mut largest) = (0usize, 0usize);
    let mut count = |out: sdwan_discovery::publish::Outputs| {
        for p in &out.publishes {
            bytes += p.payload.len();
            largest = largest.max(p.payload.len());
        }
    };
    let gws: Vec<String> = zones.gateways().map(str::to_string).collect();
    for gw in &gws {
        let z = zones.zone(gw, Version(0)).unwrap();
        count(zp.handle(now(0), Input::Desired(Box::new(z))));
    }
    let t_gw = t0.elapsed();
    let workers: Vec<String> = proxies.nodes().map(str::to_string).collect();
    for n in &workers {
        let p = proxies.proxy(n, Version(0)).unwrap();
        count(pp.handle(now(0), Input::Desired(Box::new(p))));
    }
    let first = t0.elapsed();
    let (rss1, heap1, peak1) = (status_kib("VmRSS:"), heap::live(), heap::peak());
    eprintln!(
        "{services} services x {nodes} workers, {} gateways ({} classes) + {} workers: first \
         publish planned and encoded in {first:?} (gateways {t_gw:?}), {bytes} bytes, largest \
         message {largest}",
        gws.len(),
        zones.classes(),
        workers.len()
    );
    eprintln!(
        "memory after the first publish: heap {} live beyond the cluster model and planner \
         (peak {} while publishing), RSS {} MiB -> {} MiB, VmHWM {} MiB",
        mib(heap1 - heap0),
        mib(peak1 - heap0),
        rss0 / 1024,
        rss1 / 1024,
        status_kib("VmHWM:") / 1024
    );
    assert_eq!(zp.converged_count().0, gws.len());

    // Isolated changes, each planned and published as the controller does.
    let two = hosts.iter().position(|h| h.len() == 2).unwrap();
    let (ns2, name2) = (format!("team-{:02}", two % 50), format!("svc-{two:05}"));
    let mut grown = hosts[two].clone();
    grown.push((0..nodes).find(|n| !grown.contains(n)).unwrap());
    grown.sort_unstable();
    let down = hosts[3].first().copied().unwrap_or(3);
    let changes: Vec<(&str, Change)> = vec![
        (
            "an endpoint moves",
            Change::Slice(Box::new(slice("team-01", "svc-00001", &[7, 8]))),
        ),
        (
            "a replica is added",
            Change::Slice(Box::new(slice(&ns2, &name2, &grown))),
        ),
        (
            "a worker goes NotReady",
            Change::Node(Box::new(node(down, v6[down], false))),
        ),
    ];
    let mut worst = Duration::ZERO;
    for (k, (what, change)) in changes.into_iter().enumerate() {
        let at = now(10 * (k as u64 + 1));
        let (zb, pb) = (zp.egress(), pp.egress());
        let t = Instant::now();
        let changed = planner.update([change]);
        let t_update = t.elapsed();
        let zones2 = zones.next(planner.snapshot(), planner.topology());
        let t_zones = t.elapsed() - t_update;
        let proxies2 = proxies.next(planner.snapshot(), planner.plan());
        let plan_time = t.elapsed();
        let t_proxies = plan_time - t_update - t_zones;
        let gw_changed: Vec<String> = zones2
            .changed_since(Some(&zones))
            .into_iter()
            .map(str::to_string)
            .collect();
        let mut nodes_changed = changed.nodes.clone();
        if proxies2.slots() != proxies.slots() {
            nodes_changed.extend(proxies2.nodes().map(str::to_string));
        }
        let t_pub = Instant::now();
        for gw in &gw_changed {
            let z = zones2.zone(gw, Version(0)).unwrap();
            zp.handle(at, Input::Desired(Box::new(z)));
        }
        let gw_time = t_pub.elapsed();
        for n in &nodes_changed {
            if let Some(p) = proxies2.proxy(n, Version(0)) {
                pp.handle(at, Input::Desired(Box::new(p)));
            } else {
                pp.handle(at, Input::Forget(n.clone()));
            }
        }
        let total = t.elapsed();
        worst = worst.max(total);
        let d = |a: Egress, b: Egress| {
            (
                a.deltas.messages - b.deltas.messages,
                a.deltas.bytes - b.deltas.bytes,
                a.tails.bytes - b.tails.bytes,
                a.snapshots - b.snapshots,
            )
        };
        let (zd, pd) = (d(zp.egress(), zb), d(pp.egress(), pb));
        eprintln!(
            "{what}: {total:?} in all: planning {plan_time:?} (Planner::update {t_update:?}, \
             Zones::next {t_zones:?}, Proxies::next {t_proxies:?}), gateways' publisher \
             {gw_time:?} \
             ({} gateways: {} deltas, {} delta bytes, {} tail bytes, {} snapshots), workers' \
             publisher {:?} ({} workers: {} deltas, {} delta bytes, {} tail bytes, {} \
             snapshots)",
            gw_changed.len(),
            zd.0,
            zd.1,
            zd.2,
            zd.3,
            total - plan_time - gw_time,
            nodes_changed.len(),
            pd.0,
            pd.1,
            pd.2,
            pd.3,
        );
        assert_eq!(zd.0 as usize, gws.len(), "{what}: a delta per gateway");
        assert_eq!(zd.3, 0, "{what}: no gateway snapshot");
        assert_eq!(pd.3, 0, "{what}: no worker snapshot");
        zones = zones2;
        proxies = proxies2;
    }
    let (rss2, heap2) = (status_kib("VmRSS:"), heap::live());
    eprintln!(
        "memory after the changes: heap {} live beyond the cluster model and planner, RSS {} \
         MiB, VmHWM {} MiB; slowest change {worst:?}",
        mib(heap2 - heap0),
        rss2 / 1024,
        status_kib("VmHWM:") / 1024
    );
    // Issue 11's budgets, with a margin for a busy 2-core machine.
    if gateways >= 2000 {
        assert!(
            heap2 - heap0 < 400 << 20,
            "{} of publisher memory",
            mib(heap2 - heap0)
        );
        assert!(
            worst < Duration::from_millis(600),
            "a change took {worst:?}"
        );
    }
}
