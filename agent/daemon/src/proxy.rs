//! Worker mode's files: the proxy directory (`docs/proxy.md`). Cargo feature `worker`.
//!
//! [`ProxyApplier::put_live`] is the file apply (the payload v2 driver, [`crate::worker`],
//! hands it the files it rendered): write the new files atomically
//! ([`crate::persist::write_atomic`]), run `--check-cmd`, then `--reload-cmd`; when either
//! fails, the last known-good files are written back (nginx is not reloaded) and the error,
//! with the command's stderr, goes into the status document. The known-good set (the files
//! last checked and reloaded) is kept in [`KNOWN_GOOD_DIR`], out of the files nginx includes,
//! so it survives a crash in the middle of an apply: at start, [`ProxyApplier::new`] compares
//! the live files with it and, when they differ, checks the live files and keeps them only if
//! the check passes ([`ProxyApplier::recover`]).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::persist;

/// The files a proxy payload carries, and the only names it may carry.
pub const FILES: [&str; 2] = ["sdwan.conf", "help.html"];
/// Files the proxy reads on every request (the help page, served from the directory): when
/// nothing else changed since this process last checked and reloaded, they are written without
/// running `--check-cmd` and `--reload-cmd`. A service on another node changes only the help
/// page, so most payloads on a busy cluster cost a worker no reload.
pub const SERVED_FROM_DISK: [&str; 1] = ["help.html"];
/// Largest single file accepted, in bytes.
pub const MAX_FILE: usize = 4 * 1024 * 1024;
/// Subdirectory of the proxy directory holding the last known-good [`FILES`] (a file missing
/// there: none is live). nginx's `include DIR/*.conf` does not reach into it.
pub const KNOWN_GOOD_DIR: &str = ".sdwan-known-good";
/// How long `--check-cmd` and `--reload-cmd` may run before they are killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a failing command's stderr goes into the error.
const STDERR_KEPT: usize = 2000;

/// Runs `cmd` with `sh -c`, stdin and stdout from/to /dev/null, in a process group of its own
/// that is killed as a whole after `timeout` (the shell and whatever it started, e.g. a hung
/// `nginx -t`). `Err` carries the exit status (or the timeout) and the start of stderr.
pub fn run_command(cmd: &str, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    let (tx, rx) = mpsc::channel();
    if let Some(mut err) = child.stderr.take() {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&child);
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("`{cmd}`: cannot wait: {e}")),
        }
    };
    // A child that left a process holding stderr open must not hang the agent.
    let stderr = rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    let mut text = String::from_utf8_lossy(&stderr).trim().to_string();
    if text.len() > STDERR_KEPT {
        let mut end = STDERR_KEPT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" ...");
    }
    match status {
        Some(st) if st.success() => Ok(()),
        Some(st) => Err(format!("`{cmd}` failed ({st}): {text}")),
        None => Err(format!("`{cmd}` killed after {timeout:?}: {text}")),
    }
}

/// The files of `f` that the proxy reads only when it is reloaded.
fn loaded_by_reload<'a>(
    files: &'a [(&'static str, String)],
) -> impl Iterator<Item = &'a (&'static str, String)> {
    files
        .iter()
        .filter(|(name, _)| !SERVED_FROM_DISK.contains(name))
}

/// SIGKILL to the process group `child` leads (it was spawned with `process_group(0)`).
fn kill_group(child: &std::process::Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers; a negative pid names the process group, which is
    // the child's own (its pid), so nothing outside the command is signalled.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The contents of each of [`FILES`] in a directory, `None` where it is absent.
type FileSet = Vec<(&'static str, Option<Vec<u8>>)>;

/// Reads [`FILES`] from `dir` (a missing `dir`: all absent). A link in place of a file, a file
/// above [`MAX_FILE`] or anything else unreadable is an error.
fn read_set(dir: &Path) -> io::Result<FileSet> {
    let mut set = Vec::new();
    for name in FILES {
        let path = dir.join(name);
        let contents = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => Some(crate::persist::read_at_most(f, MAX_FILE)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is above {MAX_FILE} bytes", path.display()),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        set.push((name, contents));
    }
    Ok(set)
}

/// Writes `set` into `dir` with [`persist::write_atomic`]; a file absent from it is removed.
fn put_set(dir: &Path, set: &FileSet) -> io::Result<()> {
    for (name, contents) in set {
        match contents {
            Some(b) => persist::write_atomic(dir, name, b)?,
            None => match fs::remove_file(dir.join(name)) {
                Ok(()) => fs::File::open(dir)?.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

/// Puts files live in the proxy directory and keeps the error for the status document.
#[derive(Debug)]
pub struct ProxyApplier {
    dir: PathBuf,
    check_cmd: Option<String>,
    reload_cmd: Option<String>,
    timeout: Duration,
    last_error: Option<String>,
    /// The files nginx loads (all but [`SERVED_FROM_DISK`]) of the last payload this process
    /// checked and reloaded: `None` until the first one (files found on disk at start may never
    /// have been loaded, so they do not count).
    loaded: Option<Vec<(&'static str, String)>>,
}

impl ProxyApplier {
    /// An applier writing into `dir`; live files an interrupted apply left are checked
    /// ([`ProxyApplier::recover`]).
    pub fn new(dir: &Path, check_cmd: Option<String>, reload_cmd: Option<String>) -> ProxyApplier {
        let mut a = ProxyApplier {
            dir: dir.to_path_buf(),
            check_cmd,
            reload_cmd,
            timeout: COMMAND_TIMEOUT,
            last_error: None,
            loaded: None,
        };
        a.recover();
        a
    }

    /// Makes the live files a known-good set again after a crash (`kill -9`, power cut) in the
    /// middle of an apply, which can leave unchecked files live. When the live files differ
    /// from the known-good set, they are checked with `--check-cmd`: kept (and made the
    /// known-good set) when it passes, replaced by the known-good set when it fails (or when
    /// they cannot be read). The outcome is logged, and a failure to restore goes into the
    /// status document. Nothing is reloaded: nginx still runs what it last loaded, and the
    /// first payload after start is checked and reloaded in any case.
    pub fn recover(&mut self) {
        let good = match read_set(&self.known_good_dir()) {
            Ok(g) => g,
            Err(e) => {
                let msg = format!("known-good proxy files unreadable: {e}");
                warn!("{msg}");
                self.last_error = Some(msg);
                return;
            }
        };
        let live = read_set(&self.dir);
        if live.as_ref().is_ok_and(|l| *l == good) {
            return;
        }
        let checked =
            live.map_err(|e| format!("cannot read them: {e}"))
                .and_then(|live| match &self.check_cmd {
                    Some(cmd) => run_command(cmd, self.timeout).map(|()| live),
                    None => Ok(live),
                });
        let dir = self.dir.display();
        match checked {
            Ok(live) => {
                info!(
                    "proxy files in {dir} differ from the last known-good set (an apply was \
                     interrupted?); they pass the check and are now the known-good set"
                );
                if let Err(e) = self.save_known_good(&live) {
                    warn!("cannot save the known-good proxy files: {e}");
                }
            }
            Err(e) => match self.restore(&good) {
                Ok(()) => warn!(
                    "proxy files in {dir} differ from the last known-good set (an apply was \
                     interrupted?) and fail the check ({e}); restored the last known-good files"
                ),
                Err(r) => {
                    let msg = format!(
                        "proxy files in {dir} fail the check ({e}) and restoring the last \
                         known-good files failed: {r}"
                    );
                    warn!("{msg}");
                    self.last_error = Some(msg);
                }
            },
        }
    }

    fn known_good_dir(&self) -> PathBuf {
        self.dir.join(KNOWN_GOOD_DIR)
    }

    /// Makes `set` the known-good set: each file written atomically into [`KNOWN_GOOD_DIR`]
    /// (created when missing), a file absent from `set` removed there.
    fn save_known_good(&self, set: &FileSet) -> io::Result<()> {
        let kg = self.known_good_dir();
        match fs::symlink_metadata(&kg) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is not a directory", kg.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&kg)?,
            Err(e) => return Err(e),
        }
        put_set(&kg, set)
    }

    /// The file apply both payload versions share: writes `files` into the directory,
    /// checks and reloads (unless only [`SERVED_FROM_DISK`] files changed since the last
    /// reload), rolls back to the known-good set on failure, and makes `files` the
    /// known-good set on success. `label` names the content in logs and errors ("version 9
    /// digest ..."). Sets or clears the error of the status document; `Err`
    /// carries it.
    pub fn put_live(
        &mut self,
        files: &[(&'static str, String)],
        label: &str,
    ) -> Result<(), String> {
        let reload = self.needs_reload(files);
        if let Err(msg) = self.apply(files, reload) {
            let msg = format!("{label} not applied: {msg}");
            warn!("{msg}; keeping what was live");
            self.last_error = Some(msg.clone());
            return Err(msg);
        }
        info!(
            "proxy {label} applied in {}{}",
            self.dir.display(),
            if reload {
                ""
            } else {
                " (help page only: not checked, not reloaded)"
            }
        );
        if reload {
            self.loaded = Some(loaded_by_reload(files).cloned().collect());
        }
        self.last_error = None;
        let set: FileSet = files
            .iter()
            .map(|(n, t)| (*n, Some(t.as_bytes().to_vec())))
            .collect();
        if let Err(e) = self.save_known_good(&set) {
            let msg = format!("{label} applied but not saved as the known-good set: {e}");
            warn!("{msg}");
            self.last_error = Some(msg);
        }
        Ok(())
    }

    /// Whether applying `new` needs the check and the reload: always for the first payload of
    /// this process, then when a file outside [`SERVED_FROM_DISK`] differs from the last one
    /// reloaded.
    fn needs_reload(&self, new: &[(&'static str, String)]) -> bool {
        match &self.loaded {
            None => true,
            Some(last) => !last.iter().eq(loaded_by_reload(new)),
        }
    }

    /// Writes the files, checks and reloads (when `reload`); on failure puts the last
    /// known-good files back.
    fn apply(&self, new: &[(&'static str, String)], reload: bool) -> Result<(), String> {
        // Read before anything is written: when it cannot be read, nothing is touched.
        let good = read_set(&self.known_good_dir())
            .map_err(|e| format!("known-good proxy files unreadable: {e}"))?;
        let result = self.write_check_reload(new, reload);
        if let Err(e) = &result {
            match self.restore(&good) {
                Ok(()) => return Err(format!("{e}; previous files restored, proxy not reloaded")),
                Err(r) => return Err(format!("{e}; restoring the previous files failed: {r}")),
            }
        }
        result
    }

    fn write_check_reload(
        &self,
        new: &[(&'static str, String)],
        reload: bool,
    ) -> Result<(), String> {
        for (name, text) in new {
            persist::write_atomic(&self.dir, name, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", self.dir.join(name).display()))?;
        }
        if !reload {
            return Ok(());
        }
        if let Some(cmd) = &self.check_cmd {
            run_command(cmd, self.timeout).map_err(|e| format!("check failed: {e}"))?;
        }
        if let Some(cmd) = &self.reload_cmd {
            run_command(cmd, self.timeout).map_err(|e| format!("reload failed: {e}"))?;
        }
        Ok(())
    }

    /// Puts `set` live (a file absent from it is removed).
    fn restore(&self, set: &FileSet) -> io::Result<()> {
        put_set(&self.dir, set)
    }

    /// The last error, `None` after a successful apply.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Sets the error of the status document (a refused message of the payload v2 driver).
    pub fn set_error(&mut self, error: Option<String>) {
        self.last_error = error;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two files, as a renderer hands them to [`ProxyApplier::put_live`].
    fn files(conf: &str, help: &str) -> Vec<(&'static str, String)> {
        vec![("sdwan.conf", conf.into()), ("help.html", help.into())]
    }

    #[test]
    fn failing_check_restores_the_previous_files() {
        let tmp = sdwan_testsupport::TempDir::new("proxy-apply");
        let dir = tmp.path();
        let d = dir.to_str().unwrap();
        // The check refuses any configuration containing "bad".
        let check = format!("! grep -q bad {d}/sdwan.conf || {{ echo 'bad config' >&2; exit 3; }}");
        let reload = format!("echo reloaded >> {d}/reloads");
        let mut a = ProxyApplier::new(dir, Some(check), Some(reload));
        assert!(a.put_live(&files("good 1", "h"), "version 1").is_ok());
        assert_eq!(a.last_error(), None);
        assert!(a.put_live(&files("bad 2", "h"), "version 2").is_err());
        let err = a.last_error().unwrap().to_string();
        assert!(
            err.contains("version 2 not applied: check failed")
                && err.contains("bad config")
                && err.contains("previous files restored"),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(dir.join("sdwan.conf")).unwrap(),
            "good 1"
        );
        assert_eq!(
            fs::read_to_string(dir.join("reloads")).unwrap(),
            "reloaded\n"
        );
        // The next good files are applied normally and clear the error.
        assert!(a.put_live(&files("good 3", "h"), "version 3").is_ok());
        assert_eq!(a.last_error(), None);
        assert_eq!(
            fs::read_to_string(dir.join("sdwan.conf")).unwrap(),
            "good 3"
        );
    }

    #[test]
    fn an_apply_interrupted_by_a_crash_is_undone_at_start() {
        let tmp = sdwan_testsupport::TempDir::new("proxy-crash");
        let dir = tmp.path();
        let d = dir.to_str().unwrap();
        let check = format!("! grep -q bad {d}/sdwan.conf || {{ echo 'bad config' >&2; exit 3; }}");
        let conf = || fs::read_to_string(dir.join("sdwan.conf")).unwrap();
        let known_good =
            || fs::read_to_string(dir.join(KNOWN_GOOD_DIR).join("sdwan.conf")).unwrap();
        let mut a = ProxyApplier::new(dir, Some(check.clone()), None);
        assert!(a.put_live(&files("good 1", "help 1"), "version 1").is_ok());
        assert_eq!(known_good(), "good 1");
        // Killed after writing version 2's files, before its check ended: unchecked files live.
        fs::write(dir.join("sdwan.conf"), "bad 2").unwrap();
        fs::write(dir.join("help.html"), "help 2").unwrap();
        let mut b = ProxyApplier::new(dir, Some(check.clone()), None);
        assert_eq!(conf(), "good 1", "the known-good set is live again");
        assert_eq!(fs::read_to_string(dir.join("help.html")).unwrap(), "help 1");
        assert_eq!(b.last_error(), None);
        // The retained version 2 comes again: refused, and rolled back to the known-good set
        // (before, "previous files restored" put back the unchecked files found on disk).
        assert!(b.put_live(&files("bad 2", "help 2"), "version 2").is_err());
        assert!(b.last_error().unwrap().contains("check failed"));
        assert_eq!(conf(), "good 1");
        // Interrupted files that pass the check stay, and become the known-good set.
        fs::write(dir.join("sdwan.conf"), "good 3").unwrap();
        drop(ProxyApplier::new(dir, Some(check.clone()), None));
        assert_eq!(
            (conf().as_str(), known_good().as_str()),
            ("good 3", "good 3")
        );
        // A link in place of a live file is replaced by the known-good file, not followed.
        let victim = tmp.write("victim", "precious");
        fs::remove_file(dir.join("sdwan.conf")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("sdwan.conf")).unwrap();
        drop(ProxyApplier::new(dir, Some(check), None));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(dir.join("sdwan.conf"))
            .unwrap()
            .is_file());
        assert_eq!(conf(), "good 3");
    }

    #[test]
    fn a_new_help_page_alone_is_written_without_check_or_reload() {
        let tmp = sdwan_testsupport::TempDir::new("proxy-help-only");
        let dir = tmp.path();
        let d = dir.to_str().unwrap();
        let check = format!("echo checked >> {d}/commands");
        let reload = format!("echo reloaded >> {d}/commands");
        let commands = || fs::read_to_string(dir.join("commands")).unwrap_or_default();
        let help = || fs::read_to_string(dir.join("help.html")).unwrap();
        let mut a = ProxyApplier::new(dir, Some(check.clone()), Some(reload.clone()));
        // (conf, help; commands run so far)
        let steps = [
            ("conf A", "help 1", "checked\nreloaded\n"),
            ("conf A", "help 2", "checked\nreloaded\n"),
            ("conf B", "help 2", "checked\nreloaded\nchecked\nreloaded\n"),
            ("conf B", "help 3", "checked\nreloaded\nchecked\nreloaded\n"),
        ];
        for (i, (conf, page, want)) in steps.into_iter().enumerate() {
            assert!(a.put_live(&files(conf, page), "content").is_ok());
            assert_eq!(a.last_error(), None);
            assert_eq!(help(), page, "step {i}");
            assert_eq!(commands(), want, "step {i}");
        }
        // A new process has not reloaded anything yet: its first apply is checked and
        // reloaded even when the configuration on disk is the same.
        let mut b = ProxyApplier::new(dir, Some(check), Some(reload));
        assert!(b.put_live(&files("conf B", "help 4"), "content").is_ok());
        assert_eq!(commands().lines().count(), 6);
    }

    #[test]
    fn first_apply_that_fails_leaves_no_files_and_commands_time_out() {
        let tmp = sdwan_testsupport::TempDir::new("proxy-first");
        let dir = tmp.path();
        let mut a = ProxyApplier::new(dir, Some("exit 1".into()), None);
        assert!(a.put_live(&files("x", "h"), "version 1").is_err());
        assert!(!dir.join("sdwan.conf").exists() && !dir.join("help.html").exists());
        let e = run_command("sleep 5", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("killed after 200ms"), "{e}");
        // What the shell started goes too: the sleep below would keep the file's writer open.
        let marker = dir.join("grandchild");
        let m = marker.to_str().unwrap();
        let cmd = format!("(sleep 30; echo late > {m}) & echo $! > {m}.pid; wait");
        let started = Instant::now();
        assert!(run_command(&cmd, Duration::from_millis(200)).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not held up by the grandchild"
        );
        let pid = fs::read_to_string(format!("{m}.pid")).unwrap();
        let alive = Path::new(&format!("/proc/{}", pid.trim())).exists();
        let zombie_or_gone = !alive
            || fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true);
        assert!(
            zombie_or_gone,
            "the command's background job survived the timeout"
        );
    }
}
