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

/// Writes `payload` atomically and durably as the persisted zone.
pub fn save(dir: &Path, payload: &[u8]) -> io::Result<()> {
    let tmp = dir.join(TEMP_FILE);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(payload)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, state_file(dir))?;
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
