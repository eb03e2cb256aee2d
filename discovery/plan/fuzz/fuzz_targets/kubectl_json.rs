//! The kubectl JSON reader: any bytes as `kubectl get ... -o json` output. Must never panic;
//! a refused document leaves the snapshot it was merged into as it was; merging the same
//! document twice changes nothing more; whatever is accepted plans into zone payloads the
//! agent core accepts.
#![no_main]

#[path = "../checks.rs"]
mod checks;
#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::kubectl_json(data));
