//! Quick checks of the public API on the example payload of docs/payload.md.
use sdwan_agent_core::{compile, compiled_size_bound, Zone};

const EXAMPLE: &str = r#"{"version": 1, "serial": 42, "gateway": "gw-espoo", "origin": "k8s.internal", "ttl": 30,
 "records": [
   {"name": "local", "type": "A", "data": "192.168.200.2"},
   {"name": "worker2", "type": "AAAA", "data": "fd00::2"},
   {"name": "hello-world.default", "type": "A", "data": "192.168.200.2", "ttl": 10},
   {"name": "_http._tcp.hello-world.default", "type": "SRV", "data": "0 0 30080 worker1"},
   {"name": "@", "type": "TXT", "data": "sdwan-discovery"}]}"#;

#[test]
fn example_compiles_and_loads() {
    let mut out = vec![0u8; compiled_size_bound(EXAMPLE.len())];
    let n = compile(EXAMPLE.as_bytes(), &mut out).unwrap();
    let zone = Zone::from_compiled(&out[..n]).unwrap();
    assert_eq!(zone.serial(), 42);
    assert_eq!(zone.gateway(), "gw-espoo");
    assert_eq!(zone.origin(), "k8s.internal");
    assert_eq!(zone.record_count(), 5);
}
