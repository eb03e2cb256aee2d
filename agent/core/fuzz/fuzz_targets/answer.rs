//! The query path: any bytes as a query, against a fixed zone, over UDP and TCP, into buffers
//! of several sizes. Must never panic; a response always fits its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdwan_agent_core::{answer, compile, compiled_size_bound, Transport, Zone};
use std::sync::OnceLock;

const PAYLOAD: &str = include_str!("../../tests/cases/zone_main.json");

fn zone() -> &'static Zone<Vec<u8>> {
    static ZONE: OnceLock<Zone<Vec<u8>>> = OnceLock::new();
    ZONE.get_or_init(|| {
        let mut out = vec![0u8; compiled_size_bound(PAYLOAD.len())];
        let n = compile(PAYLOAD.as_bytes(), &mut out).expect("zone compiles");
        out.truncate(n);
        Zone::from_compiled(out).expect("zone loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let zone = zone();
    let mut out = [0u8; 65535];
    for (t, len) in [
        (Transport::Udp, 65535),
        (Transport::Tcp, 65535),
        (Transport::Tcp, 300),
        (Transport::Udp, 40),
    ] {
        if let Ok(n) = answer(Some(zone), data, &mut out[..len], t) {
            assert!(n <= len);
            assert!(n >= 12);
            if t == Transport::Udp {
                assert!(n <= 1232);
            }
            assert_eq!(out[..2], data[..2]);
        }
    }
    let _ = answer(None::<&Zone<Vec<u8>>>, data, &mut out, Transport::Udp);
});
