//! The payload parser and compiler: any bytes as a payload. Must never panic; whatever it
//! accepts loads as a zone and answers a query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdwan_agent_core::{answer, compile, compiled_size_bound, Transport, Zone};

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; compiled_size_bound(data.len())];
    if let Ok(n) = compile(data, &mut out) {
        let zone = Zone::from_compiled(&out[..n]).expect("what compile writes loads");
        // Ask for the apex SOA of whatever origin it has.
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in zone.origin().split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 6, 0, 1]);
        let mut resp = [0u8; 512];
        let n = answer(Some(&zone), &q, &mut resp, Transport::Udp).expect("an answer");
        assert!(n > 12);
    }
    // Compiled bytes themselves, as storage.
    if let Ok(zone) = Zone::from_compiled(data) {
        let _ = (
            zone.serial(),
            zone.gateway(),
            zone.origin(),
            zone.record_count(),
        );
    }
});
