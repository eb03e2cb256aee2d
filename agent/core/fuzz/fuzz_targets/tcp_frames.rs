//! DNS over TCP framing (`checks::tcp_frames`): any bytes as a connection's stream, read in
//! chunks whose sizes the input picks.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tcp_frames(data));
