//! Zone payloads with nesting of any depth and container kinds around valid records
//! (issue 12): the check is `checks::payload_nesting`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::payload_nesting(data));
