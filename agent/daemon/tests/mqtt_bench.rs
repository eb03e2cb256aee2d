//! Issue 3 benchmarks (ignored in normal runs; `bench/mqtt/run.sh` runs them and prints the
//! tables): publish-to-answer latency through mosquitto with TLS on loopback, and zone swaps
//! under dnsperf load. Sizes come from the environment so the script can scale them:
//! `BENCH_UPDATES` (default 1000), `BENCH_SWAP_SECS` (60), `BENCH_SWAP_RATE` (20 per second).

mod mqtt_common;

use std::process::Command;
use std::time::{Duration, Instant};

use mqtt_common::*;
use sdwan_testsupport::require_tool;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

#[test]
#[ignore = "benchmark: bench/mqtt/run.sh"]
fn bench_publish_to_answer() {
    let updates = env_num("BENCH_UPDATES", 1000) as u32;
    let rig = GatewayRig::start("bench-p2a", false, 1);
    let GatewayRig { agent, master, .. } = &rig;
    let mut lat = Vec::with_capacity(updates as usize);
    let mut cur = snapshot_v2("gw-a", 1, 1);
    for serial in 2..=updates + 1 {
        let want = ip_for(serial);
        let next = snapshot_v2("gw-a", serial.into(), serial);
        let delta = delta_v2(&cur, &next);
        cur = next;
        let t0 = Instant::now();
        master.publish_v2("gw-a", "delta", delta);
        loop {
            if let Ok(a) = query_a(agent.dns, NAME, Duration::from_secs(1)) {
                if a.a == [want] {
                    break;
                }
            }
            assert!(t0.elapsed() < SOON, "serial {serial} never answered");
        }
        lat.push(t0.elapsed());
        // The next update starts once this one is acknowledged (persisted, status published),
        // as with a master that publishes changes, not a back-to-back stream.
        master.wait_status("gw-a", "acknowledged", |s| s.held == Some(serial.into()));
    }
    lat.sort();
    println!();
    println!("publish to first DNS answer with the new record, mosquitto + TLS on loopback, each update after the previous one's status");
    println!("| updates | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} |",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.9)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
}

#[test]
#[ignore = "benchmark: bench/mqtt/run.sh"]
fn bench_swaps_under_load() {
    let secs = env_num("BENCH_SWAP_SECS", 60);
    let rate = env_num("BENCH_SWAP_RATE", 20);
    let dnsperf = require_tool("dnsperf");
    let rig = GatewayRig::start("bench-swaps", false, 1);
    let GatewayRig {
        agent, master, tmp, ..
    } = &rig;
    let queries = tmp.write("queries", format!("{NAME} A\n"));
    let port = agent.dns.port().to_string();
    let perf = std::thread::spawn(move || {
        Command::new(dnsperf)
            .args(["-s", "127.0.0.1", "-p", &port, "-l", &secs.to_string()])
            .args(["-c", "4", "-T", "1", "-q", "100", "-t", "2"])
            .arg("-d")
            .arg(&queries)
            .output()
            .unwrap()
    });
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut serial = 1;
    let mut cur = snapshot_v2("gw-a", 1, 1);
    while start.elapsed() < Duration::from_secs(secs) {
        serial += 1;
        let next = snapshot_v2("gw-a", serial.into(), serial);
        master.publish_v2("gw-a", "delta", delta_v2(&cur, &next));
        cur = next;
        let next = start + period * (serial - 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // pacing the publisher, not waiting for a result
        }
    }
    let out = perf.join().unwrap();
    wait_serving(agent.dns, serial);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim_start()[key.len()..].trim().to_string())
            .unwrap_or_else(|| panic!("dnsperf printed no {key:?}:\n{text}"))
    };
    let (sent, completed, lost) = (
        field("Queries sent:"),
        field("Queries completed:"),
        field("Queries lost:"),
    );
    let codes = field("Response codes:");
    let qps = field("Queries per second:");
    println!();
    println!("zone swaps under dnsperf load (mosquitto + TLS on loopback)");
    println!(
        "| seconds | swaps | swaps/s | queries sent | completed | lost | response codes | QPS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {secs} | {} | {:.1} | {sent} | {completed} | {lost} | {codes} | {qps} |",
        serial - 1,
        (serial - 1) as f64 / secs as f64
    );
    assert!(lost.starts_with("0 "), "queries lost: {lost}");
    assert!(
        codes.starts_with("NOERROR") && !codes.contains(','),
        "other response codes: {codes}"
    );
}
