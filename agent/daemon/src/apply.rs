//! Applying a zone payload received from the broker.
//!
//! [`decide`] is the pure policy: full validation by the core, `gateway` must equal this
//! gateway's id, `serial` must be greater than the serial in use (a stale or replayed retained
//! message never rolls the zone back; the same serial again is a replay and is ignored quietly).
//! [`Applier::handle`] carries the decision out: swap, then persist (the caller publishes the
//! status after both); or keep the current zone and remember the error for the status document.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use log::{info, warn};
use sdwan_agent_core::PayloadError;

use crate::persist;
use crate::store::{load_payload, OwnedZone, ZoneStore};

/// Why a payload was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a valid zone payload v1 (schema or limits); names the record when there is one.
    Invalid(PayloadError),
    /// The payload is for another gateway.
    WrongGateway {
        /// The payload's `gateway`.
        got: String,
        /// This agent's `--gateway-id`.
        want: String,
    },
    /// The payload's serial is below the serial in use.
    Stale {
        /// The payload's serial.
        got: u32,
        /// The serial in use.
        in_use: u32,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Invalid(e) => write!(f, "invalid payload: {e}"),
            Rejection::WrongGateway { got, want } => {
                write!(f, "payload is for gateway {got:?}, this is {want:?}")
            }
            Rejection::Stale { got, in_use } => {
                write!(
                    f,
                    "stale payload: serial {got} is older than {in_use} in use"
                )
            }
        }
    }
}

/// What to do with a payload.
#[derive(Debug)]
pub enum Decision {
    /// Valid and newer: persist and swap in.
    Apply(OwnedZone),
    /// Same serial as the one in use (a retained message seen again): nothing to do.
    Replay(u32),
    /// Keep the current zone; report this.
    Reject(Rejection),
}

/// The policy, without effects.
pub fn decide(payload: &[u8], gateway_id: &str, in_use: Option<u32>) -> Decision {
    let zone = match load_payload(payload) {
        Ok(z) => z,
        Err(e) => return Decision::Reject(Rejection::Invalid(e)),
    };
    if zone.gateway() != gateway_id {
        return Decision::Reject(Rejection::WrongGateway {
            got: zone.gateway().to_string(),
            want: gateway_id.to_string(),
        });
    }
    match in_use {
        Some(cur) if zone.serial() == cur => Decision::Replay(cur),
        Some(cur) if zone.serial() < cur => Decision::Reject(Rejection::Stale {
            got: zone.serial(),
            in_use: cur,
        }),
        _ => Decision::Apply(zone),
    }
}

/// What [`Applier::handle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new zone is in use.
    Applied(u32),
    /// Nothing changed (replayed serial).
    Unchanged(u32),
    /// The payload was rejected; the old zone stays.
    Rejected,
}

/// Carries out decisions against the store and the state directory, and keeps the last error
/// for the status document.
#[derive(Debug)]
pub struct Applier {
    gateway_id: String,
    state_dir: Option<PathBuf>,
    store: Arc<ZoneStore>,
    last_error: Option<String>,
}

impl Applier {
    /// An applier for `gateway_id`, persisting into `state_dir` when given.
    pub fn new(gateway_id: &str, state_dir: Option<PathBuf>, store: Arc<ZoneStore>) -> Applier {
        Applier {
            gateway_id: gateway_id.to_string(),
            state_dir,
            store,
            last_error: None,
        }
    }

    /// Decides and applies one payload.
    pub fn handle(&mut self, payload: &[u8]) -> Outcome {
        match decide(payload, &self.gateway_id, self.store.serial()) {
            Decision::Apply(zone) => {
                let serial = zone.serial();
                let records = zone.record_count();
                // Swap first, then persist: the fsyncs (two, ~16 ms on the test machine's
                // disk) stay off the publish-to-answer path. The status (the master's
                // acknowledgement) is published after both, so an acknowledged zone is on
                // disk. A crash between swap and rename leaves the previous whole file, and
                // the broker's retained message brings the new zone back on reconnect.
                self.store.swap(zone);
                self.last_error = None;
                if let Some(dir) = &self.state_dir {
                    if let Err(e) = persist::save(dir, payload) {
                        let msg = format!(
                            "serial {serial} applied but not persisted to {}: {e}",
                            dir.display()
                        );
                        warn!("{msg}");
                        self.last_error = Some(msg);
                    }
                }
                info!("zone serial {serial} applied ({records} records)");
                Outcome::Applied(serial)
            }
            Decision::Replay(serial) => {
                log::debug!("zone serial {serial} received again; already in use");
                Outcome::Unchanged(serial)
            }
            Decision::Reject(r) => {
                let msg = r.to_string();
                warn!(
                    "zone payload ({} bytes) rejected, keeping serial {:?}: {msg}",
                    payload.len(),
                    self.store.serial()
                );
                self.last_error = Some(msg);
                Outcome::Rejected
            }
        }
    }

    /// The last error, `None` after a successful apply.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Serial in use.
    pub fn serial(&self) -> Option<u32> {
        self.store.serial()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(gw: &str, serial: u32) -> Vec<u8> {
        format!(
            r#"{{"version":1,"serial":{serial},"gateway":"{gw}","origin":"k8s.internal","ttl":30,"records":[{{"name":"svc","type":"A","data":"10.0.0.1"}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn policy() {
        // (case, payload, serial in use, expected: "apply N" | "replay N" | "reject <text>")
        let cases: Vec<(&str, Vec<u8>, Option<u32>, &str)> = vec![
            ("first zone", payload("gw-a", 1), None, "apply 1"),
            ("newer", payload("gw-a", 5), Some(4), "apply 5"),
            ("same serial again", payload("gw-a", 4), Some(4), "replay 4"),
            (
                "older",
                payload("gw-a", 3),
                Some(4),
                "reject stale payload: serial 3 is older than 4",
            ),
            (
                "other gateway",
                payload("gw-b", 9),
                Some(4),
                "reject payload is for gateway \"gw-b\"",
            ),
            (
                "not JSON",
                b"garbage".to_vec(),
                Some(4),
                "reject invalid payload",
            ),
            ("empty", Vec::new(), None, "reject invalid payload"),
        ];
        for (case, p, in_use, want) in cases {
            let got = match decide(&p, "gw-a", in_use) {
                Decision::Apply(z) => format!("apply {}", z.serial()),
                Decision::Replay(s) => format!("replay {s}"),
                Decision::Reject(r) => format!("reject {r}"),
            };
            assert!(got.starts_with(want), "{case}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn applier_keeps_the_zone_on_rejection_and_persists_on_apply() {
        let dir = sdwan_testsupport::TempDir::new("apply");
        let store = Arc::new(ZoneStore::new());
        let mut a = Applier::new("gw-a", Some(dir.path().to_path_buf()), store.clone());
        assert_eq!(a.handle(&payload("gw-a", 2)), Outcome::Applied(2));
        assert_eq!(a.last_error(), None);
        assert_eq!(a.handle(&payload("gw-a", 1)), Outcome::Rejected);
        assert!(a.last_error().unwrap().contains("stale"));
        assert_eq!(store.serial(), Some(2));
        assert_eq!(a.handle(&payload("gw-a", 2)), Outcome::Unchanged(2));
        assert_eq!(a.handle(&payload("gw-a", 3)), Outcome::Applied(3));
        assert_eq!(a.last_error(), None);
        let (z, _) = persist::load(dir.path(), Some("gw-a")).unwrap();
        assert_eq!(z.serial(), 3);
        // A state directory that vanished: applied anyway, the error says it was not persisted.
        let gone = Applier::new("gw-a", Some(dir.join("gone")), store.clone());
        let mut gone = gone;
        assert_eq!(gone.handle(&payload("gw-a", 4)), Outcome::Applied(4));
        assert!(gone.last_error().unwrap().contains("not persisted"));
        assert_eq!(store.serial(), Some(4));
    }
}
