//! The fuzz targets' checks (`fuzz/checks.rs`, docs/fuzzing.md) over their seed corpus
//! (`fuzz/corpus/TARGET/`) and over every input a fuzzer found a bug with
//! (`tests/regressions/TARGET/`, one file each, named after what it found). The `answer` and
//! `payload` targets check "no panic" and are covered by `robustness.rs`.

#[path = "../fuzz/checks.rs"]
mod checks;

use sdwan_testsupport::fuzz::{check_fuzz_inputs, Check};
use std::path::Path;

const TARGETS: &[(&str, Check)] = &[
    ("tcp_frames", checks::tcp_frames),
    ("payload_nesting", checks::payload_nesting),
];

#[test]
fn fuzz_inputs_pass_the_fuzz_checks() {
    check_fuzz_inputs(Path::new(env!("CARGO_MANIFEST_DIR")), TARGETS);
}
