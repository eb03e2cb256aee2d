//! The fuzz targets' checks (`fuzz/checks.rs`, docs/fuzzing.md) over their seed corpus
//! (`fuzz/corpus/TARGET/`) and over every input a fuzzer found a bug with
//! (`tests/regressions/TARGET/`, one file each, named after what it found).

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("config", checks::config),
    ("cli", checks::cli),
    ("proxy_payload", checks::proxy_payload),
];

#[test]
fn fuzz_inputs_pass_the_fuzz_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failed = Vec::new();
    for (target, check) in TARGETS {
        let mut seen = 0;
        for dir in [
            root.join("fuzz/corpus").join(target),
            root.join("tests/regressions").join(target),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            files.sort();
            for file in files {
                let data = std::fs::read(&file).unwrap();
                seen += 1;
                if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failed.push(format!("{target}: {}: {msg}", file.display()));
                }
            }
        }
        assert!(seen > 0, "no inputs for fuzz target {target}");
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
