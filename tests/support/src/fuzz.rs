//! The fuzz targets' checks over the inputs kept in the repository: each crate's
//! `tests/regressions.rs` calls [`check_fuzz_inputs`] with its targets' check functions
//! (`fuzz/checks.rs`, shared with the fuzz targets; docs/fuzzing.md).

use std::path::Path;

/// A fuzz target's check: panics when the input shows a bug.
pub type Check = fn(&[u8]);

/// Runs every target's check over its seed corpus (`fuzz/corpus/TARGET/`) and over every input
/// a fuzzer found a bug with (`tests/regressions/TARGET/`, one file each, named after what it
/// found), both below `crate_root`. Panics listing every input whose check failed, or when a
/// target has no inputs at all.
pub fn check_fuzz_inputs(crate_root: &Path, targets: &[(&str, Check)]) {
    let mut failed = Vec::new();
    for (target, check) in targets {
        let mut seen = 0;
        for dir in [
            crate_root.join("fuzz/corpus").join(target),
            crate_root.join("tests/regressions").join(target),
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
