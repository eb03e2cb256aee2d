//! Runs the namespace testbed (`tests/testbed/run.sh`, docs/testbed.md) and asserts that every
//! check held: exit status 0 and a summary line with 0 failed.
//!
//! Needs root (network namespaces), iproute2, mosquitto, dig, curl, python3, and the binaries
//! `sdwan-agent`, `sdwan-discovery`, `sdwan-testbed` beside this test's target directory
//! (`cargo nextest run --workspace` builds them all). Without root the test fails, saying so;
//! locally (never in CI, where `CI` is set) `SDWAN_TESTBED_SKIP=1` turns that into a skip.

use std::path::PathBuf;
use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

#[test]
fn testbed_run_sh_passes_every_check() {
    if !is_root() {
        let skip = std::env::var_os("SDWAN_TESTBED_SKIP").is_some_and(|v| v == "1")
            && std::env::var_os("CI").is_none();
        if skip {
            eprintln!(
                "SKIPPED: not root and SDWAN_TESTBED_SKIP=1: the namespace testbed did not run"
            );
            return;
        }
        panic!(
            "the namespace testbed needs root (ip netns); run the tests as root (CI does), or \
             set SDWAN_TESTBED_SKIP=1 to skip it locally"
        );
    }
    let exe = std::env::current_exe().unwrap();
    let bin_dir: PathBuf = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/run.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("SDWAN_BIN_DIR", &bin_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && summary.starts_with("testbed: ") && summary.contains(" 0 failed"),
        "{script} failed ({}), summary {summary:?}\nstderr:\n{stderr}",
        out.status
    );
}
