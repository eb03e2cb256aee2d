//! The size of payload v2 at issue 11's scale (docs/payload-v2.md, "Measured"): run with
//! `cargo nextest run -p sdwan-contract --test v2_size --no-capture` to see the figures.

mod v2_common;

use sdwan_contract::v2::MAX_MESSAGE_BYTES;

#[test]
fn snapshot_of_5000_services_fits_in_few_parts() {
    let snap = v2_common::snapshot(1);
    let parts = snap.encode().unwrap();
    let total: usize = parts.iter().map(Vec::len).sum();
    let hosts: usize = snap.services.iter().map(|s| s.hosts.len()).sum();
    let ports: usize = snap.services.iter().map(|s| s.ports.len()).sum();
    println!(
        "{} workers, {} services ({} ports, {} host entries)",
        snap.nodes.len(),
        snap.services.len(),
        ports,
        hosts
    );
    for (k, p) in parts.iter().enumerate() {
        println!("part {k}: {} bytes", p.len());
    }
    println!(
        "total: {total} bytes in {} parts, {:.0} bytes per service",
        parts.len(),
        total as f64 / snap.services.len() as f64
    );
    assert!(parts.iter().all(|p| p.len() <= MAX_MESSAGE_BYTES));
    // Issue 11: v1 needed ~0.7 MB per gateway and still truncated; v2 carries everything.
    assert!(total < 700_000, "{total} bytes");
}
