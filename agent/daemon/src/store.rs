//! The zone in use, shared by every server thread and replaced atomically.
//!
//! Readers ([`ZoneStore::load`]) never block and never allocate (arc-swap's debt slots); a
//! writer ([`ZoneStore::swap`]) publishes a whole new compiled zone. A query that already loaded
//! the old zone finishes on it; the next query sees the new one; nobody sees a mix.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};
use sdwan_agent_core::payload::{PayloadErrorKind, Text};
use sdwan_agent_core::{compile, compiled_size_bound, PayloadError, Zone};

/// A compiled zone held on the heap, as the daemon keeps it.
pub type OwnedZone = Zone<Vec<u8>>;

/// What a reader holds while answering: `None` when no zone is loaded (answers are REFUSED).
pub type ZoneGuard = Guard<Option<Arc<OwnedZone>>>;

/// The current zone, or none.
#[derive(Debug, Default)]
pub struct ZoneStore {
    zone: ArcSwapOption<OwnedZone>,
}

impl ZoneStore {
    /// An empty store: every query is REFUSED until a zone is swapped in.
    pub fn new() -> Self {
        Self::default()
    }

    /// The zone in use right now. Cheap, lock-free, no allocation; hold it only while answering.
    #[inline]
    pub fn load(&self) -> ZoneGuard {
        self.zone.load()
    }

    /// Replaces the zone in use, returning the previous one.
    pub fn swap(&self, zone: OwnedZone) -> Option<Arc<OwnedZone>> {
        self.zone.swap(Some(Arc::new(zone)))
    }

    /// Serial of the zone in use, or `None` when there is none.
    pub fn serial(&self) -> Option<u32> {
        self.zone.load().as_ref().map(|z| z.serial())
    }

    /// True when no zone is loaded.
    pub fn is_empty(&self) -> bool {
        self.zone.load().is_none()
    }
}

/// Validates and compiles a zone payload v1 into an [`OwnedZone`] (heap, sized to fit).
/// Does not look at serials or gateway ids: that is the caller's policy.
pub fn load_payload(payload: &[u8]) -> Result<OwnedZone, PayloadError> {
    let mut buf = vec![0u8; compiled_size_bound(payload.len())];
    let len = compile(payload, &mut buf)?;
    buf.truncate(len);
    buf.shrink_to_fit();
    // `compile` wrote it, so `from_compiled` accepts it; if it ever did not, that is a core bug,
    // reported like a malformed payload rather than a crash.
    Zone::from_compiled(buf).map_err(|_| PayloadError {
        record: None,
        name: Text::EMPTY,
        kind: PayloadErrorKind::Json {
            field: "",
            what: "the compiled zone was refused by its reader (a bug in sdwan-agent-core)",
        },
    })
}
