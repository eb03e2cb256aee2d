//! The fuzz targets' checks (`fuzz/checks.rs`, docs/fuzzing.md) over their seed corpus
//! (`fuzz/corpus/TARGET/`) and over every input a fuzzer found a bug with
//! (`tests/regressions/TARGET/`, one file each, named after what it found).

#[path = "../fuzz/checks.rs"]
mod checks;

use sdwan_testsupport::fuzz::{check_fuzz_inputs, Check};
use std::path::Path;

const TARGETS: &[(&str, Check)] = &[
    ("broker_url", checks::broker_url),
    ("topics", checks::topics),
    ("status", checks::status),
    ("mqtt_packet", checks::mqtt_packet),
];

#[test]
fn fuzz_inputs_pass_the_fuzz_checks() {
    check_fuzz_inputs(Path::new(env!("CARGO_MANIFEST_DIR")), TARGETS);
}
