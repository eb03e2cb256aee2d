//! The agent's acceptance rules (`docs/payload-v2.md`, "The agent: acceptance rules") as pure
//! decisions, and [`PartSet`], which follows the parts of the snapshot being assembled
//! without a heap. The agent's driver decodes a message, asks here what to do, and does it;
//! no I/O and no clock here.

use super::decode::Envelope;
use super::{Digest, Str, Version, ZoneHeader, MAX_GATEWAY, MAX_PARTS};

/// What an agent serves (or stages): a version and the digest of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The version.
    pub version: Version,
    /// The digest of the content.
    pub digest: Digest,
}

/// What to do with a snapshot part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartAction {
    /// It belongs to the snapshot being staged: decode its items into the staging area.
    Stage,
    /// A newer snapshot than the one staged (or none was): clear the staging area, then stage.
    Restart,
    /// Older than what is held or staged: drop it.
    Ignore,
    /// The held version and digest again (a retained message seen again): drop it quietly.
    Replay,
    /// The held or staged version with another digest: a version reused for other content.
    /// Refuse it and report; the master moves past the version it sees in the status.
    Conflict,
}

/// Decides about a part of version `version` with digest `digest`.
pub fn part(
    held: Option<Held>,
    staging: Option<Held>,
    version: Version,
    digest: Digest,
) -> PartAction {
    if let Some(h) = held {
        if version == h.version {
            return if digest == h.digest {
                PartAction::Replay
            } else {
                PartAction::Conflict
            };
        }
        if !version.is_newer_than(h.version) {
            return PartAction::Ignore;
        }
    }
    match staging {
        None => PartAction::Restart,
        Some(s) if version == s.version => {
            if digest == s.digest {
                PartAction::Stage
            } else {
                PartAction::Conflict
            }
        }
        Some(s) if version.is_newer_than(s.version) => PartAction::Restart,
        Some(_) => PartAction::Ignore,
    }
}

/// What to do with a delta (on `delta`) or a tail (applied to the held content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaAction {
    /// Its base is the held version: apply it, then check the digest before swapping.
    Apply,
    /// It makes the held version with the held digest: drop it quietly.
    Replay,
    /// It makes the held version with another digest: refuse and report.
    Conflict,
    /// It is newer but starts from another version: deltas were missed; resync (read the
    /// retained snapshot and tail).
    Gap,
    /// Older than what is held: drop it.
    Ignore,
    /// Nothing is held yet: drop it and keep waiting for the snapshot.
    Wait,
}

/// Decides about a delta from `base` to `version` with result digest `digest`.
pub fn delta(held: Option<Held>, base: Version, version: Version, digest: Digest) -> DeltaAction {
    let Some(h) = held else {
        return DeltaAction::Wait;
    };
    if version == h.version {
        return if digest == h.digest {
            DeltaAction::Replay
        } else {
            DeltaAction::Conflict
        };
    }
    if !version.is_newer_than(h.version) {
        return DeltaAction::Ignore;
    }
    if base == h.version {
        DeltaAction::Apply
    } else {
        DeltaAction::Gap
    }
}

/// What to do with a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeAction {
    /// A snapshot newer than what is held is retained: read it.
    Resync,
    /// Nothing to do (held already, or older).
    Ignore,
    /// The held version announced with another digest: report.
    Conflict,
}

/// Decides about a notice of `version` with `digest`.
pub fn notice(held: Option<Held>, version: Version, digest: Digest) -> NoticeAction {
    match held {
        None => NoticeAction::Resync,
        Some(h) if version == h.version && digest != h.digest => NoticeAction::Conflict,
        Some(h) if version.is_newer_than(h.version) => NoticeAction::Resync,
        Some(_) => NoticeAction::Ignore,
    }
}

/// Progress of a snapshot's assembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Parts are missing (how many).
    Waiting(usize),
    /// Every part is in, the node slots are consecutive and the digest matches: swap it in.
    Complete,
}

/// Why staged parts cannot make a snapshot (the staging is then worthless: clear it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssemblyError {
    /// A part that is not of the staged snapshot ([`PartSet::add`] without [`part`] first).
    NotStaged,
    /// A part whose settings, gateway or number of parts differ from the first part's.
    Inconsistent,
    /// The parts' node slots do not follow each other to cover `zone.nodes` exactly.
    NodeSlots,
    /// The items of all parts do not sum to the snapshot's digest (torn or mixed content).
    DigestMismatch,
}

/// The parts of the snapshot being staged: which are in, where their node slots are, and the
/// digest summed so far. Fixed size (~300 bytes), no heap.
#[derive(Debug, Clone)]
pub struct PartSet {
    staging: Option<Held>,
    gateway: Str<MAX_GATEWAY>,
    zone: Option<ZoneHeader>,
    parts: u8,
    have: u64,
    first_node: [u16; MAX_PARTS],
    nodes: [u16; MAX_PARTS],
    sum: Digest,
}

impl Default for PartSet {
    fn default() -> Self {
        PartSet::new()
    }
}

impl PartSet {
    /// Nothing staged.
    pub const fn new() -> PartSet {
        PartSet {
            staging: None,
            gateway: Str::EMPTY,
            zone: None,
            parts: 0,
            have: 0,
            first_node: [0; MAX_PARTS],
            nodes: [0; MAX_PARTS],
            sum: Digest(0),
        }
    }

    /// The version and digest being staged.
    pub fn staging(&self) -> Option<Held> {
        self.staging
    }

    /// Whether part `k` of the staged snapshot is in (a part seen again is not staged twice).
    pub fn has(&self, k: u8) -> bool {
        k < 64 && self.have & (1 << k) != 0
    }

    /// Starts staging the snapshot of `env` (after [`PartAction::Restart`]).
    pub fn restart(&mut self, env: &Envelope) {
        *self = PartSet::new();
        self.staging = Some(Held {
            version: env.version,
            digest: env.digest,
        });
        self.gateway = env.gateway;
        self.zone = env.zone;
        self.parts = env.parts;
    }

    /// Records a part that decoded whole into the staging area: `nodes` node slots from
    /// `env.first_node`, and `items`, the digest sum of its items (`decode::PartDigest`).
    pub fn add(
        &mut self,
        env: &Envelope,
        nodes: u16,
        items: Digest,
    ) -> Result<Progress, AssemblyError> {
        let Some(s) = self.staging else {
            return Err(AssemblyError::NotStaged);
        };
        if (env.version, env.digest) != (s.version, s.digest) {
            return Err(AssemblyError::NotStaged);
        }
        if env.parts != self.parts || env.zone != self.zone || env.gateway != self.gateway {
            return Err(AssemblyError::Inconsistent);
        }
        let k = usize::from(env.part);
        if k >= usize::from(self.parts) || self.has(env.part) {
            return Err(AssemblyError::Inconsistent);
        }
        self.have |= 1 << k;
        self.first_node[k] = env.first_node;
        self.nodes[k] = nodes;
        self.sum = self.sum.with(items.0);
        let missing = usize::from(self.parts) - self.have.count_ones() as usize;
        if missing > 0 {
            return Ok(Progress::Waiting(missing));
        }
        let mut next = 0u32;
        for k in 0..usize::from(self.parts) {
            if u32::from(self.first_node[k]) != next {
                return Err(AssemblyError::NodeSlots);
            }
            next += u32::from(self.nodes[k]);
        }
        if Some(next) != self.zone.map(|z| u32::from(z.nodes)) {
            return Err(AssemblyError::NodeSlots);
        }
        if self.sum != s.digest {
            return Err(AssemblyError::DigestMismatch);
        }
        Ok(Progress::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Digest = Digest(0xa);
    const B: Digest = Digest(0xb);

    fn h(v: u64, d: Digest) -> Option<Held> {
        Some(Held {
            version: Version(v),
            digest: d,
        })
    }

    /// The table of docs/payload-v2.md, row "part": (held, staging, part version, digest, action).
    #[test]
    fn parts() {
        use PartAction::*;
        type Case = (Option<Held>, Option<Held>, u64, Digest, PartAction);
        let cases: &[Case] = &[
            (None, None, 5, A, Restart),
            (None, h(5, A), 5, A, Stage),
            (None, h(5, A), 6, B, Restart),
            (None, h(5, A), 4, B, Ignore),
            (None, h(5, A), 5, B, Conflict),
            (h(5, A), None, 5, A, Replay),
            (h(5, A), None, 5, B, Conflict),
            (h(5, A), None, 4, B, Ignore),
            (h(5, A), None, 6, B, Restart),
            (h(5, A), h(6, B), 6, B, Stage),
            (h(5, A), h(6, B), 7, A, Restart),
            (h(u64::MAX, A), None, 0, B, Restart), // exhaustion wraps
        ];
        for &(held, staging, v, d, want) in cases {
            assert_eq!(
                part(held, staging, Version(v), d),
                want,
                "{held:?} {staging:?} {v}"
            );
        }
    }

    /// Row "delta/tail": (held, base, version, digest, action).
    #[test]
    fn deltas() {
        use DeltaAction::*;
        let cases: &[(Option<Held>, u64, u64, Digest, DeltaAction)] = &[
            (None, 4, 5, A, Wait),
            (h(5, A), 5, 6, B, Apply),
            (h(5, A), 4, 5, A, Replay),
            (h(5, A), 4, 5, B, Conflict),
            (h(5, A), 6, 7, B, Gap),
            (h(5, A), 3, 4, B, Ignore),
            (h(u64::MAX, A), u64::MAX, 0, B, Apply),
        ];
        for &(held, base, v, d, want) in cases {
            assert_eq!(
                delta(held, Version(base), Version(v), d),
                want,
                "{held:?} {base}->{v}"
            );
        }
    }

    #[test]
    fn notices() {
        use NoticeAction::*;
        let cases: &[(Option<Held>, u64, Digest, NoticeAction)] = &[
            (None, 5, A, Resync),
            (h(5, A), 5, A, Ignore),
            (h(5, A), 5, B, Conflict),
            (h(5, A), 6, B, Resync),
            (h(5, A), 4, B, Ignore),
        ];
        for &(held, v, d, want) in cases {
            assert_eq!(notice(held, Version(v), d), want, "{held:?} {v}");
        }
    }
}
