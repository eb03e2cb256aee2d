//! Proxy payload v2 messages (`checks::proxy_v2`): any bytes through the door and the decoder.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::proxy_v2(data));
