//! Topic prefixes and topic parsing: the input split at its first newline into a prefix
//! and a topic (or a gateway id / node name). Must never panic; a topic built for a valid
//! segment parses back to that segment and kind; a parsed topic rebuilds to itself.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::topics(data));
