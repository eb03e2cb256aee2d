//! The topology reader: any bytes as a topology file. Must never panic; an error names a line
//! inside the file; an accepted topology plans (with an empty cluster) into payloads the agent
//! core accepts.
#![no_main]

#[path = "../checks.rs"]
mod checks;
#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::topology(data));
