//! Planning benchmark (issue 4): 5,000 services x 500 nodes x 2,000 gateways.
//!
//! `cargo run --release -p sdwan-plan --example plan-bench [-- --services N --nodes N
//! --gateways N --seed N --changes N]`
//!
//! Synthesises a cluster with a seeded RNG (20 zones, 5 % dual-stack workers, 1-3 replicas per
//! service and a few DaemonSet-like services on every node, 1-2 ports each), a topology where
//! every gateway has a zone and 30 % have their own `near` list, then measures: the full plan,
//! re-planning after one service's endpoints move or it gains a replica, and rendering.
//! Wall time and the thread's CPU time are both printed: on a busy shared machine the wall
//! time's tail is other processes, the CPU time is the work. Prints a Markdown table for
//! docs/benchmarks.md.

use std::time::{Duration, Instant};

use sdwan_plan::{Change, Planner, Snapshot, Topology};
use sdwan_testsupport::Rng;

mod synthetic;
use synthetic::{node, replicas, service, slice, ZONES};

struct Args {
    services: usize,
    nodes: usize,
    gateways: usize,
    seed: u64,
    changes: usize,
}

fn args() -> Args {
    let mut a = Args {
        services: 5000,
        nodes: 500,
        gateways: 2000,
        seed: 1,
        changes: 200,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for pair in v.chunks(2) {
        let n = || pair.get(1).and_then(|s| s.parse().ok()).expect("a number");
        match pair[0].as_str() {
            "--services" => a.services = n() as usize,
            "--nodes" => a.nodes = n() as usize,
            "--gateways" => a.gateways = n() as usize,
            "--seed" => a.seed = n(),
            "--changes" => a.changes = n() as usize,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// CPU time of this thread: what the work costs, whatever else the machine runs.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let a = args();
    let mut rng = Rng::new(a.seed);
    let mut snapshot = Snapshot::new();
    for i in 0..a.nodes {
        snapshot.apply_node(&node(i, rng.chance(5), true)).unwrap();
    }
    let mut svcs = Vec::new();
    let mut hosts_of: Vec<Vec<usize>> = Vec::new();
    for s in 0..a.services {
        let ns = format!("team-{:02}", s % 50);
        let name = format!("svc-{s:05}");
        let ports = 1 + usize::from(rng.chance(30));
        snapshot
            .apply_service(&service(&ns, &name, ports, s))
            .unwrap();
        let hosts = replicas(&mut rng, a.nodes);
        snapshot.apply_slice(&slice(&ns, &name, &hosts)).unwrap();
        svcs.push((ns, name));
        hosts_of.push(hosts);
    }
    let mut topo = String::new();
    for g in 0..a.gateways {
        topo.push_str(&format!(
            "[[gateway]]\nid = \"gw-{g:05}\"\nzone = \"zone-{:02}\"\n",
            rng.below(ZONES)
        ));
        if rng.chance(30) {
            topo.push_str(&format!(
                "near = [\"worker{:04}\", \"worker{:04}\"]\n",
                rng.below(a.nodes),
                rng.below(a.nodes)
            ));
        }
    }
    let topology = Topology::from_toml(&topo).unwrap();

    // Full plan (from a ready snapshot; the clone is outside the timing).
    let mut full = Vec::new();
    let mut full_cpu = Vec::new();
    let mut planner = None;
    for _ in 0..5 {
        let s = snapshot.clone();
        let t = topology.clone();
        let start = Instant::now();
        let cpu = cpu_now();
        let p = Planner::new(s, t);
        full_cpu.push(cpu_now() - cpu);
        full.push(start.elapsed());
        planner = Some(p);
    }
    let mut planner = planner.unwrap();
    let truncation: Vec<String> = planner
        .plan()
        .warnings
        .iter()
        .filter(|w| matches!(w, sdwan_plan::Warning::ZoneTruncated { .. }))
        .map(|w| w.to_string())
        .collect();

    // One service changes: its endpoints move to other nodes, or it gains one replica.
    let mut update = [Vec::new(), Vec::new()];
    let mut update_cpu = [Vec::new(), Vec::new()];
    let mut changed_gw = [Vec::new(), Vec::new()];
    for i in 0..a.changes * 2 {
        let kind = i % 2;
        let s = rng.below(svcs.len());
        let (ns, name) = &svcs[s];
        let hosts = if kind == 0 {
            replicas(&mut rng, a.nodes)
        } else {
            let mut h = hosts_of[s].clone();
            h.push(rng.below(a.nodes));
            h.sort_unstable();
            h.dedup();
            h
        };
        hosts_of[s] = hosts.clone();
        let change = Change::Slice(Box::new(slice(ns, name, &hosts)));
        let start = Instant::now();
        let cpu = cpu_now();
        let c = planner.update([change]);
        update_cpu[kind].push(cpu_now() - cpu);
        update[kind].push(start.elapsed());
        changed_gw[kind].push(c.gateways.len());
    }
    // What the master does after an update: compare each gateway's new content with the
    // one it published.
    let before = planner.plan().clone();
    let s = rng.below(svcs.len());
    let mut h = hosts_of[s].clone();
    h.push(rng.below(a.nodes));
    h.sort_unstable();
    h.dedup();
    planner.update([Change::Slice(Box::new(slice(&svcs[s].0, &svcs[s].1, &h)))]);
    let start = Instant::now();
    let differing = planner
        .plan()
        .gateways
        .iter()
        .filter(|(id, z)| before.gateways[*id] != **z)
        .count();
    let compare = start.elapsed();
    let plan = planner.plan();
    let (id, zone) = plan.gateways.iter().next().unwrap();
    let mut render = Vec::new();
    let mut bytes = 0;
    for i in 0..20 {
        let start = Instant::now();
        let b = zone.render(id, i + 1);
        render.push(start.elapsed());
        bytes = b.len();
    }
    let records = zone.records().len();
    let (nid, proxy) = plan.nodes.iter().next().unwrap();
    let start = Instant::now();
    let pbytes = proxy.render(nid, 1).len();
    let prender = start.elapsed();
    let classes = {
        let mut orders: Vec<Vec<&str>> = plan.gateways.values().map(|z| z.nearness()).collect();
        orders.sort();
        orders.dedup();
        orders.len()
    };
    let mean = |v: &Vec<usize>| v.iter().sum::<usize>() as f64 / v.len() as f64;

    println!(
        "| {} services x {} nodes x {} gateways (seed {}) | |",
        a.services, a.nodes, a.gateways, a.seed
    );
    println!("|---|---|");
    println!("| distinct nearness orders (gateway classes) | {classes} |");
    println!(
        "| full plan (`Planner::new`), median of 5: wall / CPU | {} / {} |",
        ms(median(full)),
        ms(median(full_cpu))
    );
    for (k, what) in ["its endpoints move to other nodes", "it gains one replica"]
        .iter()
        .enumerate()
    {
        println!(
            "| re-plan after one service changes ({what}), `Planner::update`, of {}: wall median / p99, CPU median / p99 | {} / {}, {} / {} |",
            a.changes,
            ms(pct(&update[k], 0.5)),
            ms(pct(&update[k], 0.99)),
            ms(pct(&update_cpu[k], 0.5)),
            ms(pct(&update_cpu[k], 0.99))
        );
        println!(
            "| gateways reported changed per such update, mean | {:.0} |",
            mean(&changed_gw[k])
        );
        println!(
            "| payload bytes to publish for one such change (changed gateways x payload size) | {:.0} MB |",
            mean(&changed_gw[k]) * bytes as f64 / 1e6
        );
    }
    println!(
        "| compare every gateway's content with the previous plan's (`ZoneContent == ZoneContent`, {} gateways, {differing} differ) | {} |",
        a.gateways,
        ms(compare)
    );
    println!(
        "| render one zone payload ({records} records, {bytes} bytes), median | {} |",
        ms(median(render))
    );
    println!(
        "| render one proxy payload ({pbytes} bytes) | {} |",
        ms(prender)
    );
    for t in truncation {
        println!("| warning | {t} |");
    }
}
