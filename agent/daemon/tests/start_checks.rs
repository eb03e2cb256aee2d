//! What the `sdwan-agent` binary does with a command line that cannot work as meant, before it
//! serves anything (issue 12, item 11): settings that would be silently ignored, a state
//! directory it cannot write, and `--help` into a pipe nobody reads.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use sdwan_testsupport::child::run_into_closed_pipe;
use sdwan_testsupport::{Agent, ChildGuard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-agent");

/// Runs the agent with `args` (on a free port, so a start that is not refused has somewhere
/// to listen) and expects it to stop by itself; returns its exit code and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let port = sdwan_testsupport::free_port();
    let mut child = ChildGuard::spawn(
        "sdwan-agent",
        Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args),
    );
    let st = child.wait_exit(Duration::from_secs(10));
    (st.code(), child.stderr())
}

#[test]
fn help_and_version_into_a_closed_pipe_exit_0_quietly() {
    for flag in ["--help", "-h", "--version"] {
        let (st, err) = run_into_closed_pipe(Command::new(BIN).arg(flag));
        assert_eq!(st.code(), Some(0), "{flag}: {st}, stderr: {err}");
        assert_eq!(err, "", "{flag}");
    }
}

#[test]
fn mqtt_settings_without_broker_are_refused_not_ignored() {
    // (arguments, what stderr must say)
    let cases: &[(&[&str], &str)] = &[
        (
            &["--gateway-id", "gw-espoo"],
            "--gateway-id: only used with --broker",
        ),
        (
            &["--topic-prefix", "sdwan/v1/lab", "--ca", "/etc/ca.pem"],
            "--topic-prefix, --ca: only used with --broker",
        ),
        (
            &["--cert", "c.pem", "--key", "c.key", "--username", "u"],
            "--cert, --key, --username: only used with --broker",
        ),
        (
            &["--password-file", "/etc/pw"],
            "--password-file: only used with --broker",
        ),
    ];
    for (args, want) in cases {
        let (code, err) = refused(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: got {err:?}, want {want:?}");
        assert!(!err.contains("listening"), "{args:?} served anyway: {err}");
    }
}

#[test]
fn state_dir_that_cannot_be_created_or_written_is_refused_at_start() {
    let tmp = TempDir::new("state-refused");
    let file = tmp.write("a-file", "not a directory");
    let under_file = file.join("state");
    for dir in [&file, &under_file] {
        let d = dir.to_str().unwrap();
        let (code, err) = refused(&["--state-dir", d]);
        assert_eq!(code, Some(1), "{d}: {err}");
        assert!(
            err.contains(&format!("--state-dir {d}: cannot create or write it")),
            "{d}: {err}"
        );
        assert!(!err.contains("listening on"), "{d} served anyway: {err}");
    }
}

#[test]
fn missing_state_dir_is_created_private() {
    let tmp = TempDir::new("state-created");
    let dir = tmp.join("var/lib/sdwan-agent");
    let d = dir.to_str().unwrap();
    let _agent = Agent::start(BIN, &["--state-dir", d]);
    let meta = std::fs::metadata(&dir).expect("state dir created");
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "probe file left"
    );
}
