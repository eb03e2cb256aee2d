//! Broker URL parsing: any text as `--broker`. Must never panic; an accepted URL prints
//! (Display) as a URL that parses to the same broker, and the error names the URL.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::broker_url(data));
