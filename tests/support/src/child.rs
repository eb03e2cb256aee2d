//! Child processes that never outlive their test.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{wait_for, TempDir};

/// A spawned process with stdout and stderr going to files. On drop it is killed (SIGKILL)
/// and reaped; if the test is failing, what it wrote is printed first, so the failure shows
/// the peer's side too.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _logs: TempDir,
}

impl ChildGuard {
    /// Spawns `cmd` (stdin from /dev/null, stdout and stderr to files); `name` labels it in
    /// messages. Panics when it cannot be started.
    #[track_caller]
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        let logs = TempDir::new(&format!("{name}-logs"));
        let stdout_path = logs.join("stdout");
        let stderr_path = logs.join("stderr");
        let out = std::fs::File::create(&stdout_path).expect("create stdout file");
        let err = std::fs::File::create(&stderr_path).expect("create stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_string(),
            child: Some(child),
            status: None,
            stdout_path,
            stderr_path,
            _logs: logs,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                self.status = c.try_wait().expect("try_wait");
            }
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit by itself; panics (showing its stderr)
    /// if it does not.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        wait_for(timeout, &what, || self.try_exit())
    }

    /// Waits up to `timeout` until stderr contains `needle`; panics if the process exits first
    /// or the time runs out. Returns the whole stderr.
    #[track_caller]
    pub fn wait_stderr(&mut self, timeout: Duration, needle: &str) -> String {
        let what = format!("{} to write {needle:?} to stderr", self.name);
        wait_for(timeout, &what, || {
            let err = self.stderr();
            if err.contains(needle) {
                return Some(err);
            }
            if let Some(st) = self.try_exit() {
                panic!(
                    "{} exited ({st}) before writing {needle:?}; stderr:\n{err}",
                    self.name
                );
            }
            None
        })
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: plain syscall on our own child's pid.
            unsafe {
                libc::kill(self.id() as libc::pid_t, signal);
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut() {
            if self.status.is_none() {
                let _ = c.kill();
                self.status = c.wait().ok();
            }
        }
        self.status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- {} (pid {}) stderr ----\n{}---- {} stdout ----\n{}----",
                self.name,
                self.id(),
                self.stderr(),
                self.name,
                self.stdout()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_exit_status() {
        let mut c = ChildGuard::spawn(
            "sh",
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        );
        let st = c.wait_exit(Duration::from_secs(10));
        assert_eq!(st.code(), Some(3));
        assert_eq!(c.stdout(), "out\n");
        assert_eq!(c.stderr(), "err\n");
    }

    #[test]
    fn kills_on_drop() {
        let c = ChildGuard::spawn("sleep", Command::new("sleep").arg("600"));
        let pid = c.id() as libc::pid_t;
        drop(c);
        // SAFETY: signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "sleep {pid} still alive after drop");
    }
}
