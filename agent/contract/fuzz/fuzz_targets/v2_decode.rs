//! Payload v2 messages (`checks::v2_decode`): any bytes through the agent's decoder.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::v2_decode(data));
