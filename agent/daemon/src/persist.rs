//! The last applied zone payload on disk (`--state-dir`), so the agent serves it at boot,
//! before and without the broker.
//!
//! [`save`] writes `zone.json.tmp`, fsyncs it, renames it over `zone.json` and fsyncs the
//! directory: after a power cut or `kill -9` the file is the old payload or the new one, whole.
//! [`load`] re-validates the file with the core like any payload from the broker; a missing,
//! unreadable, corrupt or truncated file is logged and ignored, never fatal.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::store::{load_payload, OwnedZone};

/// The persisted payload's file name inside the state directory.
pub const STATE_FILE: &str = "zone.json";
/// The temporary file written before the rename.
pub const TEMP_FILE: &str = "zone.json.tmp";

/// Path of the persisted payload.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Makes sure the agent can keep zones in `dir`: creates it (and its parents; mode 0700) when
/// missing, then creates and removes [`TEMP_FILE`] in it, as [`save`] will. Called at start,
/// after privileges are dropped, so a directory the agent cannot write is refused at once
/// instead of failing at the first zone.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if !dir.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    let probe = dir.join(TEMP_FILE);
    File::create(&probe)?;
    fs::remove_file(&probe)
}

/// Writes `payload` atomically and durably as the persisted zone.
pub fn save(dir: &Path, payload: &[u8]) -> io::Result<()> {
    write_atomic(dir, STATE_FILE, payload)
}

/// Writes `dir/name` atomically and durably: `dir/name.tmp`, fsync, rename, fsync of `dir`.
/// Readers see the old contents or the new, whole (also used for the proxy files).
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Loads and validates the persisted zone. `gateway_id`, when given, must match the payload's
/// `gateway`. Returns `None` (after logging why) when there is nothing usable.
pub fn load(dir: &Path, gateway_id: Option<&str>) -> Option<(OwnedZone, Vec<u8>)> {
    let path = state_file(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            info!("no persisted zone in {}", dir.display());
            return None;
        }
        Err(e) => {
            warn!("persisted zone {} unreadable, ignored: {e}", path.display());
            return None;
        }
    };
    let zone = match load_payload(&bytes) {
        Ok(z) => z,
        Err(e) => {
            warn!(
                "persisted zone {} is corrupt or truncated, ignored: {e}",
                path.display()
            );
            return None;
        }
    };
    if let Some(id) = gateway_id {
        if zone.gateway() != id {
            warn!(
                "persisted zone {} is for gateway {:?}, not {id:?}; ignored",
                path.display(),
                zone.gateway()
            );
            return None;
        }
    }
    Some((zone, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(gw: &str, serial: u32) -> String {
        format!(
            r#"{{"version":1,"serial":{serial},"gateway":"{gw}","origin":"kubernetes.services","ttl":30,"records":[{{"name":"svc","type":"A","data":"10.0.0.1"}}]}}"#
        )
    }

    fn tmp() -> sdwan_testsupport::TempDir {
        sdwan_testsupport::TempDir::new("persist")
    }

    #[test]
    fn save_then_load_round_trips_and_replaces() {
        let dir = tmp();
        save(dir.path(), payload("gw-a", 1).as_bytes()).unwrap();
        save(dir.path(), payload("gw-a", 2).as_bytes()).unwrap();
        let (zone, bytes) = load(dir.path(), Some("gw-a")).unwrap();
        assert_eq!(zone.serial(), 2);
        assert_eq!(bytes, payload("gw-a", 2).as_bytes());
        assert!(!dir.join(TEMP_FILE).exists(), "temporary file left behind");
    }

    #[test]
    fn unusable_state_is_ignored_not_fatal() {
        let good = payload("gw-a", 7);
        // (case, state file contents, gateway id checked)
        type Case<'a> = (&'a str, Option<Vec<u8>>, Option<&'a str>);
        let cases: [Case; 6] = [
            ("missing", None, Some("gw-a")),
            ("empty", Some(Vec::new()), Some("gw-a")),
            (
                "truncated",
                Some(good.as_bytes()[..good.len() / 2].to_vec()),
                Some("gw-a"),
            ),
            ("garbage", Some(vec![0xff; 4096]), Some("gw-a")),
            (
                "other gateway",
                Some(payload("gw-b", 7).into_bytes()),
                Some("gw-a"),
            ),
            ("a directory", None, None),
        ];
        for (case, contents, gw) in cases {
            let dir = tmp();
            match (&contents, case) {
                (Some(c), _) => fs::write(state_file(dir.path()), c).unwrap(),
                (None, "a directory") => fs::create_dir(state_file(dir.path())).unwrap(),
                (None, _) => {}
            }
            assert!(load(dir.path(), gw).is_none(), "{case}: loaded");
        }
    }

    #[test]
    fn save_into_a_missing_directory_fails_cleanly() {
        let dir = tmp();
        let e = save(&dir.join("nope"), b"{}").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
