//! Child processes that never outlive their test, nor do the processes they fork.
//!
//! Each child starts in a process group of its own (its pid is the group id), so everything it
//! forks (nginx's workers, dnsmasq's TCP children) can be found and stopped with it. Dropping
//! the guard stops the child with its own stop signal ([`ChildGuard::stop_signal`]; SIGKILL
//! unless set), waits until no process of the group is left, and SIGKILLs the whole group when
//! that takes longer than [`STOP_GRACE`].

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{wait_for, TempDir};

/// How long a child may take to stop after its stop signal before its group gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A spawned process with stdout and stderr going to files, in its own process group. On drop
/// it is stopped (see the module doc) and reaped, with every process of its group; if the test
/// is failing, what it wrote is printed first, so the failure shows the peer's side too.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    stop_signal: i32,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _logs: TempDir,
}

/// The pids of the live processes (zombies not counted) in process group `pgid`, read from
/// `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    live_processes(|_ppid, pgrp| pgrp == pgid)
}

/// The pids of the live processes (zombies not counted) whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    live_processes(|ppid, _pgrp| ppid == pid)
}

/// Live processes (not zombies) for which `keep(ppid, pgrp)` holds.
fn live_processes(keep: impl Fn(u32, u32) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|s| s.parse::<u32>().ok());
        let pgrp = fields.next().and_then(|s| s.parse::<u32>().ok());
        if let (Some(ppid), Some(pgrp)) = (ppid, pgrp) {
            if state != Some("Z") && state != Some("X") && keep(ppid, pgrp) {
                pids.push(pid);
            }
        }
    }
    pids
}

impl ChildGuard {
    /// Spawns `cmd` (stdin from /dev/null, stdout and stderr to files); `name` labels it in
    /// messages. Panics when it cannot be started.
    #[track_caller]
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        Self::spawn_with_stdout(name, cmd, None)
    }

    #[track_caller]
    fn spawn_with_stdout(name: &str, cmd: &mut Command, stdout: Option<Stdio>) -> ChildGuard {
        let logs = TempDir::new(&format!("{name}-logs"));
        let stdout_path = logs.join("stdout");
        let stderr_path = logs.join("stderr");
        let out = match stdout {
            Some(s) => s,
            None => std::fs::File::create(&stdout_path)
                .expect("create stdout file")
                .into(),
        };
        let err = std::fs::File::create(&stderr_path).expect("create stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_string(),
            child: Some(child),
            status: None,
            stop_signal: libc::SIGKILL,
            stdout_path,
            stderr_path,
            _logs: logs,
        }
    }

    /// Stops the child with `signal` instead of SIGKILL on drop (nginx: SIGTERM, which its
    /// master passes on to its workers before it exits).
    pub fn stop_signal(mut self, signal: i32) -> ChildGuard {
        self.stop_signal = signal;
        self
    }

    /// The process id, which is also the id of its process group.
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

    /// Kills the process and every process of its group (SIGKILL, as a crash would) and
    /// reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.kill_group();
        if let Some(c) = self.child.as_mut() {
            if self.status.is_none() {
                let _ = c.kill();
                self.status = c.wait().ok();
            }
        }
        self.status
    }

    /// Stops the process with its stop signal, waits (at most [`STOP_GRACE`]) until it has
    /// exited and no process of its group is left, then SIGKILLs what remains. Returns the
    /// child's exit status; leaves no process of its group behind.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.child.is_none() {
            return self.status;
        }
        if self.stop_signal == libc::SIGKILL || self.try_exit().is_some() {
            // Nothing to wait for: the child is gone (what it forked may not be) or is to be
            // killed anyway.
            self.kill();
        } else {
            self.signal(self.stop_signal);
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut pause = Duration::from_millis(5);
        while Instant::now() < deadline {
            if self.try_exit().is_some() && group_members(self.id()).is_empty() {
                return self.status;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        eprintln!(
            "{} (pid {}) and its group still running {STOP_GRACE:?} after signal {}: SIGKILL",
            self.name,
            self.id(),
            self.stop_signal
        );
        self.kill();
        // SIGKILL cannot be caught; only a process stuck in the kernel could outlast this.
        let deadline = Instant::now() + STOP_GRACE;
        while !group_members(self.id()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.status
    }

    fn kill_group(&self) {
        if self.child.is_some() && !group_members(self.id()).is_empty() {
            // SAFETY: plain syscall on the process group our own child leads.
            unsafe {
                libc::kill(-(self.id() as libc::pid_t), libc::SIGKILL);
            }
        }
    }
}

/// Runs `cmd` with its stdout a pipe whose reader is already gone (as in `cmd | head -c 10`
/// once `head` has exited: every write fails with EPIPE, SIGPIPE being ignored by Rust
/// programs), waits up to 10 s for it to exit and returns its exit status and stderr.
#[track_caller]
pub fn run_into_closed_pipe(cmd: &mut Command) -> (ExitStatus, String) {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two fds on success; each is owned exactly once below.
    let (read, write) = unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0, "pipe2");
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    let mut child = ChildGuard::spawn_with_stdout("closed-pipe", cmd, Some(write.into()));
    let status = child.wait_exit(Duration::from_secs(10));
    (status, child.stderr())
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
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
    use crate::wait_until;

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

    fn wait_members(c: &ChildGuard, n: usize) {
        wait_until(Duration::from_secs(10), "the child's group to fill", || {
            group_members(c.id()).len() >= n
        });
    }

    #[test]
    fn drop_leaves_no_forked_process_of_the_group() {
        let c = ChildGuard::spawn(
            "sh",
            Command::new("sh").args(["-c", "sleep 600 & sleep 600 & wait"]),
        );
        let pgid = c.id();
        wait_members(&c, 3);
        drop(c);
        assert_eq!(group_members(pgid), Vec::<u32>::new());
    }

    #[test]
    fn drop_after_the_child_exited_still_stops_what_it_forked() {
        let mut c = ChildGuard::spawn(
            "sh",
            Command::new("sh").args(["-c", "sleep 600 & echo forked"]),
        );
        let pgid = c.id();
        assert!(c.wait_exit(Duration::from_secs(10)).success());
        assert_eq!(group_members(pgid).len(), 1, "the forked sleep");
        drop(c);
        assert_eq!(group_members(pgid), Vec::<u32>::new());
    }

    #[test]
    fn stop_signal_is_sent_first_and_sigkill_follows_when_ignored() {
        // Polite child: exits 0 on SIGTERM.
        let mut polite = ChildGuard::spawn(
            "sh",
            Command::new("sh").args([
                "-c",
                "trap 'exit 0' TERM; echo up; while :; do sleep 1; done",
            ]),
        )
        .stop_signal(libc::SIGTERM);
        wait_until(Duration::from_secs(10), "the trap to be set", || {
            polite.stdout().contains("up")
        });
        assert_eq!(polite.stop().and_then(|s| s.code()), Some(0));
        assert_eq!(group_members(polite.id()), Vec::<u32>::new());

        // Stubborn child (and its sleep) ignore SIGTERM: the group is killed after the grace.
        let mut stubborn = ChildGuard::spawn(
            "sh",
            Command::new("sh").args(["-c", "trap '' TERM; sleep 600 & wait"]),
        )
        .stop_signal(libc::SIGTERM);
        wait_members(&stubborn, 2);
        let start = Instant::now();
        let st = stubborn.stop().expect("reaped");
        assert!(start.elapsed() >= STOP_GRACE, "{:?}", start.elapsed());
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL)
        );
        assert_eq!(group_members(stubborn.id()), Vec::<u32>::new());
    }

    #[test]
    fn closed_pipe_gives_the_writer_epipe() {
        let (st, err) = run_into_closed_pipe(Command::new("sh").args([
            "-c",
            "trap '' PIPE; echo hello || echo write-failed >&2; exit 7",
        ]));
        assert_eq!(st.code(), Some(7));
        assert!(err.contains("write-failed"), "{err}");
    }
}
