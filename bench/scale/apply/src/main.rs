//! bench/scale's apply timer (issue 11): how long agent/core takes to load a v2 snapshot from
//! its parts ([`Staging::part`] for each part, then [`Staging::swap_into`]) and to apply one
//! delta into a spare zone ([`ZoneV2::apply_delta`]), on the machine it runs on. No heap use
//! of its own beyond the zone storage, no I/O besides reading the message files, so the same
//! program runs on x86_64 and, cross-built, on mipsel under qemu-user.
//!
//! `sdwan-bench-apply DIR [ROUNDS]` reads `DIR/gateway` (the gateway id), `DIR/part-K.json`
//! (the snapshot's parts) and `DIR/delta-NNN.json` (a chain of deltas, each on the version
//! the previous one makes), written by `sdwan-bench-scale messages DIR`. Prints one Markdown
//! table row: parts, bytes, snapshot load median / max of ROUNDS (default 10), delta apply
//! median / p99 / max over the chain.

use std::time::{Duration, Instant};

use sdwan_agent_core::v2zone::{PartStatus, Staging, Work};
use sdwan_agent_core::ZoneV2;
use sdwan_contract::v2::accept::DeltaAction;

/// Zone storage per zone: the synthetic zone uses ~0.5 MB of it.
const HEAP: usize = 2 << 20;

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("sdwan-bench-apply: cannot read {}: {e}", path.display());
        std::process::exit(2)
    })
}

fn numbered(dir: &std::path::Path, prefix: &str) -> Vec<Vec<u8>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            eprintln!("sdwan-bench-apply: cannot list {}: {e}", dir.display());
            std::process::exit(2)
        })
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
        .collect();
    // part-K / delta-NNN: numeric order.
    names.sort_by_key(|n| {
        n[prefix.len()..n.len() - 5]
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    names.iter().map(|n| read(&dir.join(n))).collect()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: sdwan-bench-apply DIR [ROUNDS]");
        std::process::exit(2)
    };
    let rounds: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .max(1);
    let dir = std::path::Path::new(dir);
    let gateway = String::from_utf8(read(&dir.join("gateway"))).unwrap_or_default();
    let gateway = gateway.trim();
    let parts = numbered(dir, "part-");
    let deltas = numbered(dir, "delta-");
    if parts.is_empty() {
        eprintln!("sdwan-bench-apply: no part-K.json in {}", dir.display());
        std::process::exit(2)
    }

    let mut staging = Box::new(Staging::new(vec![0u8; HEAP]));
    let mut work = Box::new(Work::new());
    let mut zone = Box::new(ZoneV2::new(vec![0u8; HEAP]));
    let mut spare = Box::new(ZoneV2::new(vec![0u8; HEAP]));

    let mut loads = Vec::new();
    for _ in 0..rounds {
        staging.reset();
        let t = Instant::now();
        let mut last = None;
        for p in &parts {
            last = Some(
                staging
                    .part(gateway, None, p, &mut work)
                    .unwrap_or_else(|e| {
                        eprintln!("sdwan-bench-apply: part refused: {e:?}");
                        std::process::exit(1)
                    }),
            );
        }
        let swapped = last == Some(PartStatus::Complete) && staging.swap_into(&mut zone);
        loads.push(t.elapsed());
        if !swapped {
            eprintln!("sdwan-bench-apply: the parts do not make a snapshot ({last:?})");
            std::process::exit(1)
        }
    }

    let mut applies = Vec::new();
    for (i, d) in deltas.iter().enumerate() {
        let t = Instant::now();
        let r = zone.apply_delta(&mut spare, gateway, d, &mut work);
        if r != Ok(DeltaAction::Apply) {
            eprintln!("sdwan-bench-apply: delta {i} not applied: {r:?}");
            std::process::exit(1)
        }
        core::mem::swap(&mut zone, &mut spare);
        applies.push(t.elapsed());
    }

    let bytes: usize = parts.iter().map(Vec::len).sum();
    let dbytes: usize = deltas.iter().map(Vec::len).sum();
    let (lmed, lmax) = (pct(&mut loads, 0.5), pct(&mut loads, 1.0));
    let row = if applies.is_empty() {
        "no deltas".to_string()
    } else {
        format!(
            "{} / {} / {} ({} deltas, {} bytes each on average)",
            ms(pct(&mut applies, 0.5)),
            ms(pct(&mut applies, 0.99)),
            ms(pct(&mut applies, 1.0)),
            applies.len(),
            dbytes / applies.len()
        )
    };
    println!(
        "| {} | {} services, {} parts, {bytes} bytes | {} / {} (of {rounds}) | {row} | {} bytes |",
        std::env::consts::ARCH,
        zone.service_count(),
        parts.len(),
        ms(lmed),
        ms(lmax),
        zone.used(),
    );
}
