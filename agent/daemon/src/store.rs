//! The zone in use, shared by every server thread and replaced atomically.
//!
//! The store holds a [`Served`] zone: a v1 zone (`--zone-file`, the v1 state file) or a v2
//! zone (payload v2 from the broker, `docs/payload-v2.md`), or none. Readers
//! ([`ZoneStore::load`], then [`answer`]) never block and never allocate (arc-swap's debt
//! slots); a writer ([`ZoneStore::swap`], [`ZoneStore::swap_v2`]) publishes a whole new zone.
//! A query that already loaded the old zone finishes on it; the next query sees the new one;
//! nobody sees a mix.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};
use sdwan_agent_core::payload::{PayloadErrorKind, Text};
use sdwan_agent_core::wire;
use sdwan_agent_core::{
    compile, compiled_size_bound, Health, PayloadError, Transport, Zone, ZoneV2,
};
use sdwan_contract::v2::accept::Held;

use crate::probe::BranchView;

/// A compiled v1 zone held on the heap, as the daemon keeps it.
pub type OwnedZone = Zone<Vec<u8>>;

/// A v2 zone over a heap buffer of its own.
pub type OwnedZoneV2 = ZoneV2<Box<[u8]>>;

/// The zone the servers answer from.
#[derive(Debug)]
pub enum Served {
    /// A v1 zone (`--zone-file`, or the v1 state file).
    V1(OwnedZone),
    /// A whole, checked v2 zone (boxed: its tables are ~150 KiB), with the branch view of
    /// a probing gateway and the zone's layouts (`probe::layout`, and `probe::service_layout`
    /// with per-service probing, else 0) when there is one.
    V2(Box<OwnedZoneV2>, Option<(Arc<BranchView>, u64, u64)>),
}

impl Served {
    /// The v2 zone, if this is one.
    pub fn v2(&self) -> Option<&OwnedZoneV2> {
        match self {
            Served::V2(z, _) => Some(z),
            Served::V1(_) => None,
        }
    }

    /// The layouts computed when the zone was swapped in (`probe::layout`,
    /// `probe::service_layout` or 0), for a store with a branch view.
    pub fn layouts(&self) -> Option<(u64, u64)> {
        match self {
            Served::V2(_, Some((_, layout, svc))) => Some((*layout, *svc)),
            _ => None,
        }
    }

    /// The branch's view for this zone (issue 14): which node slots are down, RTTs, fail
    /// closed, stale; every node up when the agent does not probe.
    #[inline]
    pub fn health(&self) -> Health<'_> {
        match self {
            Served::V2(_, Some((view, layout, svc))) => view.health(*layout, *svc),
            _ => Health::ALL_UP,
        }
    }
}

/// What a reader holds while answering: `None` when no zone is loaded (answers are REFUSED).
pub type ZoneGuard = Guard<Option<Arc<Served>>>;

/// Answers `query` from `zone` (v1 or v2) into `out`: the core's `answer` or `answer_v2`.
/// No allocation, no lock.
#[inline]
pub fn answer(
    zone: Option<&Served>,
    query: &[u8],
    out: &mut [u8],
    transport: Transport,
) -> Result<usize, wire::Error> {
    match zone {
        Some(s @ Served::V2(z, _)) => {
            sdwan_agent_core::answer_v2(Some(&**z), query, out, transport, s.health())
        }
        Some(Served::V1(z)) => sdwan_agent_core::answer(Some(z), query, out, transport),
        None => sdwan_agent_core::answer(None::<&OwnedZone>, query, out, transport),
    }
}

/// The current zone, or none.
#[derive(Debug, Default)]
pub struct ZoneStore {
    zone: ArcSwapOption<Served>,
    /// The branch view v2 zones are answered with (a probing gateway, issue 14).
    view: Option<Arc<BranchView>>,
}

impl ZoneStore {
    /// An empty store: every query is REFUSED until a zone is swapped in.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose v2 zones are answered with `view` (issue 14).
    pub fn with_view(view: Arc<BranchView>) -> Self {
        ZoneStore {
            zone: ArcSwapOption::default(),
            view: Some(view),
        }
    }

    /// The branch view, if the agent probes.
    pub fn view(&self) -> Option<&Arc<BranchView>> {
        self.view.as_ref()
    }

    /// The zone in use right now. Cheap, lock-free, no allocation; hold it only while answering.
    #[inline]
    pub fn load(&self) -> ZoneGuard {
        self.zone.load()
    }

    /// The zone in use, as a counted reference (for the MQTT thread, which reads the held v2
    /// zone while it builds the next one).
    pub fn load_full(&self) -> Option<Arc<Served>> {
        self.zone.load_full()
    }

    /// Replaces the zone in use by a v1 zone, returning the previous one.
    pub fn swap(&self, zone: OwnedZone) -> Option<Arc<Served>> {
        self.zone.swap(Some(Arc::new(Served::V1(zone))))
    }

    /// Replaces the zone in use by a whole v2 zone, returning the previous one.
    pub fn swap_v2(&self, zone: Box<OwnedZoneV2>) -> Option<Arc<Served>> {
        let view = self.view.as_ref().map(|v| {
            let svc = if v.services() {
                crate::probe::service_layout(&zone)
            } else {
                0
            };
            (v.clone(), crate::probe::layout(&zone), svc)
        });
        self.zone.swap(Some(Arc::new(Served::V2(zone, view))))
    }

    /// Serial of the v1 zone in use, or `None` when there is none (or a v2 zone is in use).
    pub fn serial(&self) -> Option<u32> {
        match self.zone.load().as_deref() {
            Some(Served::V1(z)) => Some(z.serial()),
            _ => None,
        }
    }

    /// Version and digest of the v2 zone in use, or `None`.
    pub fn held(&self) -> Option<Held> {
        self.zone.load().as_deref().and_then(Served::v2)?.held()
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
