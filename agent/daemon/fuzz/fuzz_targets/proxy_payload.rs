//! A proxy payload from the broker (worker mode): must never panic; an accepted payload is for
//! this node and directory, newer, with exactly the known files inside the limits.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::proxy_payload(data));
