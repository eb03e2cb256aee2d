//! Status documents: any bytes as a retained status message (the master reads those of every
//! agent). Must never panic; an accepted document re-emitted with `to_json` parses to the same
//! status, and so does every status built from the accepted one's text fields.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::status(data));
