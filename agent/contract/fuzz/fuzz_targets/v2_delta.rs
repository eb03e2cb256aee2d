//! Payload v2 content and changes (`checks::v2_delta`): the fuzzer's bytes choose a small zone
//! and a chain of changes.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::v2_delta(data));
