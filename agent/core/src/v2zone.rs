//! The v2 zone (`docs/payload-v2.md`, issue 11): a gateway's zone content as payload v2
//! carries it (node slots, services with ports and ranked hosts), held in storage the caller
//! owns, assembled from the parts of a snapshot, changed by deltas applied to a copy, and
//! read by [`crate::answer::answer_v2`]. No heap, no I/O.
//!
//! Layout of a [`ZoneV2`]: fixed-size tables (node slots, the sorted service index, the
//! short-name index, the node-name index: ~150 KiB, sized by the contract's limits) and a
//! byte heap `H` of the caller's (a `&mut [u8]`, a boxed slice, a static array) holding one
//! record per node and per service:
//!
//! ```text
//! node     flags u8 (1 v4, 2 v6, 4 named, 8 candidate) | tier u8 | v4 [4] | v6 [16]
//!          | name_len u8 | name
//! service  flags u8 (1 short, 2 has a candidate, 4 has an SRV target) | ns_len u8 | ns
//!          | name_len u8 | name | port count u8 | per port: label_len u8 | label | proto u8
//!          | node_port u16 | host count u16 | hosts u16 each (node slots, nearest first)
//! ```
//!
//! (integers big-endian). Records are only appended; a replaced record stays behind as
//! garbage until the next delta, which copies the live records into the other zone
//! (compacting). The derived flags and the two name indexes are made by one pass over the
//! whole content ("sealing") after a snapshot is complete or a delta applied: a zone is only
//! ever read sealed.
//!
//! How a daemon uses it (two or three zones, swapped whole; readers never see a torn one):
//! - parts: [`Staging::part`] into a staging zone; on [`PartStatus::Complete`] the staging
//!   zone is whole, checked (node slots, order, names, digest recomputed from the stored
//!   content) and can be swapped in ([`Staging::swap_into`]);
//! - deltas and tails: [`ZoneV2::apply_delta`] builds the next zone in a spare one from the
//!   held zone, keeps the digest item by item (`Digest::without` / `with`) and accepts the
//!   result only when it equals the delta's; on any error the spare is left empty and the
//!   held zone is untouched;
//! - the status reports [`ZoneV2::held`] (version and digest).

use core::net::{Ipv4Addr, Ipv6Addr};
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use sdwan_contract::v2::accept::{self, AssemblyError, DeltaAction, Held, PartAction, PartSet};
use sdwan_contract::v2::decode::{self, Envelope, Scratch, Visitor};
use sdwan_contract::v2::digest::{header_hash, node_hash, service_hash};
use sdwan_contract::v2::{
    is_label, Digest, Family, Kind, Node, Port, Proto, ServiceRef, Str, Tier, Version, ZoneHeader,
    MAX_NODES, MAX_PARTS, MAX_PORTS, MAX_SERVICES,
};

/// A node slot never written (while staging).
const UNSET: u32 = u32::MAX;
/// An empty node slot.
const EMPTY: u32 = u32::MAX - 1;

/// Node record flags.
pub(crate) mod nflag {
    pub const V4: u8 = 1;
    pub const V6: u8 = 2;
    /// A DNS label other than the local label: has a `<node>` name, can be an SRV target.
    pub const NAMED: u8 = 4;
    /// Has an address of the gateway's family.
    pub const CANDIDATE: u8 = 8;
}

/// Service record flags.
pub(crate) mod sflag {
    pub const SHORT: u8 = 1;
    /// Some host is a present node that is a candidate.
    pub const HAS_CANDIDATE: u8 = 2;
    /// Some host is a present, named candidate.
    pub const HAS_SRV: u8 = 4;
}

/// Why a message could not change a zone. The zone in use is never touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneError {
    /// The message failed decoding (or a store rule refused an item: the text says which).
    Decode(decode::Error),
    /// A message of another kind than the call expects (a delta given to [`Staging::part`]).
    WrongKind,
    /// The staged parts do not make one snapshot (staging is cleared).
    Assembly(AssemblyError),
    /// The content is whole but breaks a rule of the whole (the text says which).
    Invalid(&'static str),
    /// The delta's result does not have the digest it declares.
    DigestMismatch,
}

impl core::fmt::Display for ZoneError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ZoneError::Decode(e) => write!(f, "{e}"),
            ZoneError::WrongKind => f.write_str("message of another kind"),
            ZoneError::Assembly(a) => match a {
                AssemblyError::NotStaged => f.write_str("part of no staged snapshot"),
                AssemblyError::Inconsistent => f.write_str("parts of different snapshots"),
                AssemblyError::NodeSlots => f.write_str("node slots of the parts do not fit"),
                AssemblyError::DigestMismatch => f.write_str("parts do not sum to the digest"),
            },
            ZoneError::Invalid(w) => write!(f, "zone content: {w}"),
            ZoneError::DigestMismatch => f.write_str("digest after applying differs"),
        }
    }
}

/// Reasons a store visitor refuses an item (shown as `refused: <why>`).
mod why {
    pub const GATEWAY: &str = "another gateway's message";
    pub const FULL: &str = "zone storage full";
    pub const SLOT_TWICE: &str = "node slot given twice";
    pub const SLOT: &str = "node index out of range";
    pub const NO_SERVICE: &str = "no such service";
    pub const HOSTS: &str = "hosts do not match the service";
    pub const SKIP: &str = "skipped";
}

/// Working memory for [`Staging::part`] and [`ZoneV2::apply_delta`] (~36 KB): give it once,
/// reuse it.
pub struct Work {
    scratch: Scratch,
    bufs: Bufs,
}

struct Bufs {
    ports: [Port; MAX_PORTS],
    hosts: [u16; MAX_NODES],
    merged: [u16; MAX_NODES],
}

impl Work {
    /// Fresh working memory.
    pub fn new() -> Work {
        Work {
            scratch: Scratch::new(),
            bufs: Bufs {
                ports: [Port {
                    label: Str::EMPTY,
                    proto: Proto::Tcp,
                    node_port: 1,
                }; MAX_PORTS],
                hosts: [0; MAX_NODES],
                merged: [0; MAX_NODES],
            },
        }
    }
}

impl Default for Work {
    fn default() -> Self {
        Work::new()
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    gateway: Str<64>,
    version: Version,
    digest: Digest,
    zone: Option<ZoneHeader>,
    origin_wire: [u8; 256],
    origin_wire_len: usize,
    used: usize,
    services: usize,
    short: usize,
    names: usize,
    sealed: bool,
}

impl Meta {
    const EMPTY: Meta = Meta {
        gateway: Str::EMPTY,
        version: Version(0),
        digest: Digest::ZERO,
        zone: None,
        origin_wire: [0; 256],
        origin_wire_len: 1,
        used: 0,
        services: 0,
        short: 0,
        names: 0,
        sealed: false,
    };
}

/// A v2 zone over a caller's byte heap `H` (see the module documentation).
pub struct ZoneV2<H> {
    meta: Meta,
    slots: [u32; MAX_NODES],
    svc: [u32; MAX_SERVICES],
    short: [u32; MAX_SERVICES],
    names: [u16; MAX_NODES],
    heap: H,
}

/// A node as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView<'a> {
    /// Flags (`nflag`).
    pub(crate) flags: u8,
    /// The tier.
    pub tier: Tier,
    /// IPv4 address, when the node has one.
    pub v4: Option<[u8; 4]>,
    /// IPv6 address, when the node has one.
    pub v6: Option<[u8; 16]>,
    /// The node name.
    pub name: &'a [u8],
}

impl NodeView<'_> {
    /// Has a `<node>` name and can be an SRV target.
    pub fn named(&self) -> bool {
        self.flags & nflag::NAMED != 0
    }
    /// Has an address of the gateway's family.
    pub fn candidate(&self) -> bool {
        self.flags & nflag::CANDIDATE != 0
    }
}

/// A service as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceView<'a> {
    pub(crate) flags: u8,
    /// Position in the (`ns`, `name`) order ([`ZoneV2::service`]); `u32::MAX` when unknown.
    pub(crate) index: u32,
    /// Namespace.
    pub ns: &'a [u8],
    /// Name.
    pub name: &'a [u8],
    /// Number of ports.
    pub port_count: u8,
    ports: &'a [u8],
    hosts: &'a [u8],
}

/// One stored port: `_<label>._<proto>` answering `node_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortView<'a> {
    /// The port's name or number.
    pub label: &'a [u8],
    /// The transport.
    pub proto: Proto,
    /// The NodePort.
    pub node_port: u16,
}

impl<'a> ServiceView<'a> {
    /// `<name>.<suffix>` answers too.
    pub fn short(&self) -> bool {
        self.flags & sflag::SHORT != 0
    }
    /// Some host is a present candidate (the service's names answer).
    pub fn has_candidate(&self) -> bool {
        self.flags & sflag::HAS_CANDIDATE != 0
    }
    /// Some host is a present, named candidate (the SRV sets have targets).
    pub fn has_srv(&self) -> bool {
        self.flags & sflag::HAS_SRV != 0
    }
    /// The hosts (node slots), nearest first.
    pub fn hosts(&self) -> impl Iterator<Item = u16> + Clone + 'a {
        self.hosts
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }
    /// Number of hosts.
    pub fn host_count(&self) -> usize {
        self.hosts.len() / 2
    }
    /// Position in the (`ns`, `name`) order of the zone it came from.
    pub fn index(&self) -> usize {
        self.index as usize
    }
    /// The ports, in order.
    pub fn ports(&self) -> PortIter<'a> {
        PortIter { rest: self.ports }
    }
}

/// Iterator over a stored service's ports.
#[derive(Debug, Clone)]
pub struct PortIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PortIter<'a> {
    type Item = PortView<'a>;
    fn next(&mut self) -> Option<PortView<'a>> {
        let (&l, r) = self.rest.split_first()?;
        let l = usize::from(l);
        let label = r.get(..l)?;
        let proto = if *r.get(l)? == 1 {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let node_port = u16::from_be_bytes([*r.get(l + 1)?, *r.get(l + 2)?]);
        self.rest = r.get(l + 3..)?;
        Some(PortView {
            label,
            proto,
            node_port,
        })
    }
}

#[inline(always)]
fn parse_node(b: &[u8]) -> Option<NodeView<'_>> {
    let (flags, tier) = node_flags_tier(b)?;
    let v4: [u8; 4] = b.get(2..6)?.try_into().ok()?;
    let v6: [u8; 16] = b.get(6..22)?.try_into().ok()?;
    let name = node_name(b)?;
    Some(NodeView {
        flags,
        tier,
        v4: (flags & nflag::V4 != 0).then_some(v4),
        v6: (flags & nflag::V6 != 0).then_some(v6),
        name,
    })
}

/// The node record's name at the start of `b`, without parsing the rest: what the name
/// lookup's binary search compares (a whole [`parse_node`] per probe copied both addresses).
#[inline(always)]
fn node_name(b: &[u8]) -> Option<&[u8]> {
    let nl = usize::from(*b.get(22)?);
    b.get(23..23 + nl)
}

/// The node record's flags and tier at the start of `b`: what [`ZoneV2::pick`] reads of each
/// candidate.
#[inline(always)]
fn node_flags_tier(b: &[u8]) -> Option<(u8, Tier)> {
    let tier = match *b.get(1)? {
        0 => Tier::Near,
        1 => Tier::Zone,
        _ => Tier::Other,
    };
    Some((*b.first()?, tier))
}

/// The (namespace, name) of the service record at the start of `b`, without parsing its
/// ports and hosts: what the service lookups' binary searches compare.
#[inline(always)]
fn service_key(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nsl = usize::from(*b.get(1)?);
    let ns = b.get(2..2 + nsl)?;
    let p = 2 + nsl;
    let nl = usize::from(*b.get(p)?);
    Some((ns, b.get(p + 1..p + 1 + nl)?))
}

/// Parses the service record at the start of `b`; returns it and its length. Inlined: a
/// view returned through a call is a `memcpy` at opt-level "z" (the query path reads one per
/// answer).
#[inline(always)]
fn parse_service(b: &[u8]) -> Option<(ServiceView<'_>, usize)> {
    let flags = *b.first()?;
    let (ns, name) = service_key(b)?;
    let p = 2 + ns.len() + 1 + name.len();
    let port_count = *b.get(p)?;
    let ports_at = p + 1;
    let mut q = ports_at;
    for _ in 0..port_count {
        q += 1 + usize::from(*b.get(q)?) + 3;
    }
    let ports = b.get(ports_at..q)?;
    let hc = usize::from(u16::from_be_bytes([*b.get(q)?, *b.get(q + 1)?]));
    let hosts = b.get(q + 2..q + 2 + 2 * hc)?;
    Some((
        ServiceView {
            flags,
            index: u32::MAX,
            ns,
            name,
            port_count,
            ports,
            hosts,
        },
        q + 2 + 2 * hc,
    ))
}

fn bit(on: bool, flag: u8) -> u8 {
    if on {
        flag
    } else {
        0
    }
}

/// Bytes a node record takes.
fn node_len(n: &Node) -> usize {
    23 + n.name.as_str().len()
}

/// Bytes a service record takes.
fn service_len(s: &ServiceRef<'_>) -> usize {
    4 + s.ns.len()
        + s.name.len()
        + s.ports
            .iter()
            .map(|p| 4 + p.label.as_str().len())
            .sum::<usize>()
        + 2
        + 2 * s.hosts.len()
}

/// The heap bytes a zone of this content needs (records only, no garbage): what
/// `ZoneV2::used` reports after a snapshot; a daemon sizes its heaps from it.
pub fn heap_bytes(nodes: &[Option<Node>], services: &[ServiceRef<'_>]) -> usize {
    nodes.iter().flatten().map(node_len).sum::<usize>()
        + services.iter().map(service_len).sum::<usize>()
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> ZoneV2<H> {
    /// An empty zone (nothing held) over `heap`.
    pub fn new(heap: H) -> Self {
        ZoneV2 {
            meta: Meta::EMPTY,
            slots: [UNSET; MAX_NODES],
            svc: [0; MAX_SERVICES],
            short: [0; MAX_SERVICES],
            names: [0; MAX_NODES],
            heap,
        }
    }

    /// Forgets the content (the heap is kept).
    pub fn clear(&mut self) {
        self.meta = Meta::EMPTY;
    }

    /// Gives the heap back.
    pub fn into_heap(self) -> H {
        self.heap
    }

    fn push(&mut self, len: usize) -> Result<usize, &'static str> {
        let at = self.meta.used;
        let end = at.checked_add(len).ok_or(why::FULL)?;
        if end > self.heap.as_ref().len() || end > u32::MAX as usize - 2 {
            return Err(why::FULL);
        }
        self.meta.used = end;
        Ok(at)
    }

    fn write_node(&mut self, n: &Node) -> Result<u32, &'static str> {
        let at = self.push(node_len(n))?;
        let b = &mut self.heap.as_mut()[at..at + node_len(n)];
        b[0] = bit(n.v4.is_some(), nflag::V4) | bit(n.v6.is_some(), nflag::V6);
        b[1] = n.tier as u8;
        b[2..6].copy_from_slice(&n.v4.map_or([0; 4], |a| a.octets()));
        b[6..22].copy_from_slice(&n.v6.map_or([0; 16], |a| a.octets()));
        let name = n.name.as_str().as_bytes();
        b[22] = name.len() as u8;
        b[23..].copy_from_slice(name);
        Ok(at as u32)
    }

    fn write_service(&mut self, s: &ServiceRef<'_>) -> Result<u32, &'static str> {
        let len = service_len(s);
        let at = self.push(len)?;
        let b = &mut self.heap.as_mut()[at..at + len];
        b[0] = bit(s.short, sflag::SHORT);
        let mut p = 1;
        for t in [s.ns.as_bytes(), s.name.as_bytes()] {
            b[p] = t.len() as u8;
            b[p + 1..p + 1 + t.len()].copy_from_slice(t);
            p += 1 + t.len();
        }
        b[p] = s.ports.len() as u8;
        p += 1;
        for port in s.ports {
            let l = port.label.as_str().as_bytes();
            b[p] = l.len() as u8;
            b[p + 1..p + 1 + l.len()].copy_from_slice(l);
            p += 1 + l.len();
            b[p] = port.proto as u8;
            b[p + 1..p + 3].copy_from_slice(&port.node_port.to_be_bytes());
            p += 3;
        }
        b[p..p + 2].copy_from_slice(&(s.hosts.len() as u16).to_be_bytes());
        p += 2;
        for h in s.hosts {
            b[p..p + 2].copy_from_slice(&h.to_be_bytes());
            p += 2;
        }
        Ok(at as u32)
    }

    /// Copies a stored record of `len` bytes at `from` of `src` into this heap.
    fn copy_record(&mut self, src: &[u8], from: usize, len: usize) -> Result<u32, &'static str> {
        let at = self.push(len)?;
        let bytes = src.get(from..from + len).ok_or(why::FULL)?;
        self.heap.as_mut()[at..at + len].copy_from_slice(bytes);
        Ok(at as u32)
    }

    // ---------------------------------------------------------------------------------
    // Reading

    /// Version and digest of the content, when a whole zone is held.
    pub fn held(&self) -> Option<Held> {
        self.meta.sealed.then_some(Held {
            version: self.meta.version,
            digest: self.meta.digest,
        })
    }
    /// The zone settings (`None`: nothing held).
    pub fn header(&self) -> Option<&ZoneHeader> {
        self.meta.zone.as_ref().filter(|_| self.meta.sealed)
    }
    /// The gateway id the content is for.
    pub fn gateway(&self) -> &str {
        self.meta.gateway.as_str()
    }
    /// The origin in wire form, lower case, with the root label.
    pub fn origin_wire(&self) -> &[u8] {
        &self.meta.origin_wire[..self.meta.origin_wire_len]
    }
    /// Heap bytes in use (records, including replaced ones not yet compacted).
    pub fn used(&self) -> usize {
        self.meta.used
    }
    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.meta.services
    }
    /// Number of node slots.
    pub fn slot_count(&self) -> usize {
        self.meta.zone.map_or(0, |z| usize::from(z.nodes))
    }

    /// The node in `slot` (`None`: an empty slot or out of range).
    pub fn node(&self, slot: u16) -> Option<NodeView<'_>> {
        parse_node(self.node_bytes(slot)?)
    }

    /// The record bytes of the node in `slot` (`None`: an empty slot or out of range).
    #[inline(always)]
    fn node_bytes(&self, slot: u16) -> Option<&[u8]> {
        let off = *self.slots.get(usize::from(slot))?;
        if off >= EMPTY || usize::from(slot) >= self.slot_count() {
            return None;
        }
        self.heap.as_ref().get(off as usize..)
    }

    #[inline(always)]
    fn service_at(&self, off: u32) -> Option<ServiceView<'_>> {
        parse_service(self.heap.as_ref().get(off as usize..)?).map(|(s, _)| s)
    }

    /// The `i`th service in (`ns`, `name`) order.
    #[inline(always)]
    pub fn service(&self, i: usize) -> Option<ServiceView<'_>> {
        let mut s = self.service_at(*self.svc[..self.meta.services].get(i)?)?;
        s.index = i as u32;
        Some(s)
    }

    /// Index of service (`ns`, `name`) in the sorted index, or where it would go.
    fn find_service(&self, ns: &[u8], name: &[u8]) -> Result<usize, usize> {
        let heap = self.heap.as_ref();
        self.svc[..self.meta.services].binary_search_by(|&off| {
            service_key(heap.get(off as usize..).unwrap_or(&[]))
                .unwrap_or((&[][..], &[][..]))
                .cmp(&(ns, name))
        })
    }

    /// The service `<name>.<ns>` (lower-case bytes).
    pub fn lookup_service(&self, ns: &[u8], name: &[u8]) -> Option<ServiceView<'_>> {
        let i = self.find_service(ns, name).ok()?;
        self.service(i)
    }

    /// Whether some service of namespace `ns` has a candidate (so `<ns>` is an empty
    /// non-terminal).
    pub fn namespace_answers(&self, ns: &[u8]) -> bool {
        let start = match self.find_service(ns, b"") {
            Ok(i) | Err(i) => i,
        };
        (start..self.meta.services)
            .map_while(|i| self.service(i).filter(|s| s.ns == ns))
            .any(|s| s.has_candidate())
    }

    /// The short service `<name>` that answers (`short` and a candidate).
    pub fn lookup_short(&self, name: &[u8]) -> Option<ServiceView<'_>> {
        let heap = self.heap.as_ref();
        let svc = &self.svc[..self.meta.services];
        let i = self.short[..self.meta.short]
            .binary_search_by(|&idx| {
                svc.get(idx as usize)
                    .and_then(|&off| service_key(heap.get(off as usize..).unwrap_or(&[])))
                    .map_or(&[][..], |(_, n)| n)
                    .cmp(name)
            })
            .ok()?;
        self.service(self.short[i] as usize)
    }

    /// The slot of the node whose `<node>` name is `name` (named and a candidate).
    pub fn lookup_node(&self, name: &[u8]) -> Option<u16> {
        let i = self.names[..self.meta.names]
            .binary_search_by(|&slot| {
                self.node_bytes(slot)
                    .and_then(node_name)
                    .unwrap_or(&[])
                    .cmp(name)
            })
            .ok()?;
        Some(self.names[i])
    }

    /// The node a name answers from among `candidates` (nearest first): the first present
    /// candidate that `health` does not mark down (with RTT order: the one of least RTT
    /// among the up candidates of that candidate's tier, `near` nodes being each a tier of
    /// their own); when all are down, the first present candidate (fail open; the caller
    /// may fail closed). With it, whether it is down. A candidate's position in
    /// `candidates` selects its per-service bit ([`Health::for_service`]).
    pub fn pick(
        &self,
        candidates: impl Iterator<Item = u16> + Clone,
        health: Health<'_>,
    ) -> Option<(u16, bool)> {
        let look = |s: u16| self.node_bytes(s).and_then(node_flags_tier);
        let usable =
            |&(_, s): &(usize, u16)| look(s).is_some_and(|(f, _)| f & nflag::CANDIDATE != 0);
        let mut best: Option<(u16, Tier, u32)> = None;
        for (k, s) in candidates.clone().enumerate().filter(usable) {
            if health.is_down_at(k, s) {
                continue;
            }
            let tier = look(s).map_or(Tier::Other, |(_, t)| t);
            match best {
                None => {
                    best = Some((s, tier, health.rtt(s)));
                    if !health.rtt_order() || tier == Tier::Near {
                        break;
                    }
                }
                Some((_, t, r)) => {
                    if tier != t {
                        break;
                    }
                    let rs = health.rtt(s);
                    if rs < r {
                        best = Some((s, tier, rs));
                    }
                }
            }
        }
        best.map(|b| (b.0, false)).or_else(|| {
            candidates
                .clone()
                .enumerate()
                .find(usable)
                .map(|(_, s)| (s, true))
        })
    }

    /// The node `local` answers from.
    pub fn pick_local(&self, health: Health<'_>) -> Option<(u16, bool)> {
        self.pick(0..self.slot_count() as u16, health)
    }

    // ---------------------------------------------------------------------------------
    // Sealing: derived flags, indexes, whole-content rules

    /// Rebuilds the flags and indexes from the content; checks the rules of the whole
    /// (tiers in order along the slots, node names unique, at most [`MAX_SERVICES`]).
    fn seal(&mut self) -> Result<(), ZoneError> {
        let z = self.meta.zone.ok_or(ZoneError::Invalid("no settings"))?;
        let slots = usize::from(z.nodes);
        let local = z.local.as_str().as_bytes();
        let mut tier = Tier::Near;
        let mut n_names = 0;
        for slot in 0..slots {
            let off = self.slots[slot];
            if off == UNSET {
                return Err(ZoneError::Assembly(AssemblyError::NodeSlots));
            }
            if off == EMPTY {
                continue;
            }
            let heap = self.heap.as_mut();
            let Some(n) = parse_node(&heap[off as usize..]) else {
                return Err(ZoneError::Invalid("node record"));
            };
            if n.tier < tier {
                return Err(ZoneError::Invalid("tiers out of order"));
            }
            tier = n.tier;
            let named = core::str::from_utf8(n.name).is_ok_and(is_label) && n.name != local;
            let candidate = match z.family {
                Family::Dual => true,
                Family::Ipv4 => n.v4.is_some(),
                Family::Ipv6 => n.v6.is_some(),
            };
            let f = (n.flags & (nflag::V4 | nflag::V6))
                | bit(named, nflag::NAMED)
                | bit(candidate, nflag::CANDIDATE);
            heap[off as usize] = f;
            self.names[n_names] = slot as u16;
            n_names += 1;
        }
        // Names unique among all present nodes, then keep those with a `<node>` name.
        {
            let (names, slots_t, heap) = (&mut self.names, &self.slots, self.heap.as_ref());
            let name_of = |s: u16| {
                parse_node(&heap[slots_t[usize::from(s)] as usize..]).map_or(&[][..], |n| n.name)
            };
            names[..n_names].sort_unstable_by(|a, b| name_of(*a).cmp(name_of(*b)));
            if names[..n_names]
                .windows(2)
                .any(|w| name_of(w[0]) == name_of(w[1]))
            {
                return Err(ZoneError::Invalid("node names not unique"));
            }
        }
        let mut kept = 0;
        for i in 0..n_names {
            let s = self.names[i];
            if self.node(s).is_some_and(|n| n.named() && n.candidate()) {
                self.names[kept] = s;
                kept += 1;
            }
        }
        self.meta.names = kept;
        // Services: flags and the short index.
        let mut n_short = 0;
        for i in 0..self.meta.services {
            let off = self.svc[i] as usize;
            let Some(s) = self.service(i) else {
                return Err(ZoneError::Invalid("service record"));
            };
            let (mut cand, mut srv) = (false, false);
            for h in s.hosts() {
                if let Some(n) = self.node(h).filter(|n| n.candidate()) {
                    cand = true;
                    srv |= n.named();
                    if srv {
                        break;
                    }
                }
            }
            let short = s.short();
            let f = bit(short, sflag::SHORT)
                | bit(cand, sflag::HAS_CANDIDATE)
                | bit(srv, sflag::HAS_SRV);
            self.heap.as_mut()[off] = f;
            if short && cand {
                self.short[n_short] = i as u32;
                n_short += 1;
            }
        }
        {
            let heap = self.heap.as_ref();
            let svc = &self.svc;
            let name_of = |i: u32| {
                parse_service(&heap[svc[i as usize] as usize..]).map_or(&[][..], |(s, _)| s.name)
            };
            self.short[..n_short].sort_unstable_by(|a, b| name_of(*a).cmp(name_of(*b)));
        }
        self.meta.short = n_short;
        self.meta.sealed = true;
        Ok(())
    }

    /// The digest of the stored content, computed item by item (what `v2::digest` defines).
    pub fn content_digest(&self, work: &mut Work) -> Digest {
        let Some(z) = self.meta.zone else {
            return Digest::ZERO;
        };
        let mut d = Digest::ZERO.with(header_hash(self.gateway(), &z));
        for slot in 0..usize::from(z.nodes) {
            if let Some(n) = self.owned_node(slot as u16) {
                d = d.with(node_hash(slot as u16, &n));
            }
        }
        for i in 0..self.meta.services {
            d = d.with(self.service_hash_at(self.svc[i], &mut work.bufs));
        }
        d
    }

    fn owned_node(&self, slot: u16) -> Option<Node> {
        let n = self.node(slot)?;
        Some(Node {
            name: Str::new(core::str::from_utf8(n.name).ok()?)?,
            tier: n.tier,
            v4: n.v4.map(Ipv4Addr::from),
            v6: n.v6.map(Ipv6Addr::from),
        })
    }

    fn service_hash_at(&self, off: u32, work: &mut Bufs) -> u64 {
        load(self.service_at(off), &mut work.ports, &mut work.hosts).map_or(0, |s| service_hash(&s))
    }
}

/// A stored service as the contract's [`ServiceRef`], its ports and hosts copied into the
/// buffers given.
fn load<'a>(
    s: Option<ServiceView<'a>>,
    ports: &'a mut [Port; MAX_PORTS],
    hosts: &'a mut [u16; MAX_NODES],
) -> Option<ServiceRef<'a>> {
    let s = s?;
    let mut np = 0;
    for p in s.ports() {
        let label = Str::new(core::str::from_utf8(p.label).ok()?)?;
        *ports.get_mut(np)? = Port {
            label,
            proto: p.proto,
            node_port: p.node_port,
        };
        np += 1;
    }
    let mut nh = 0;
    for h in s.hosts() {
        *hosts.get_mut(nh)? = h;
        nh += 1;
    }
    Some(ServiceRef {
        ns: core::str::from_utf8(s.ns).ok()?,
        name: core::str::from_utf8(s.name).ok()?,
        short: s.short(),
        ports: &ports[..np],
        hosts: &hosts[..nh],
    })
}

/// The branch's view of the workers (issue 14), read by the answer path without a lock:
/// which node slots the agent found unreachable (bit `i % 32` of word `i / 32` set means slot
/// `i` is down; 32-bit words because some targets, 32-bit MIPS, have no 64-bit atomics), the
/// probes' smoothed RTT per slot (microseconds, 0 = not measured) when RTT may reorder
/// candidates, and the answer policy: fail closed, stale (the control plane is gone).
///
/// The answer path skips down candidates, and fails open (answers the nearest candidate
/// anyway) when every candidate of a name is down, unless `fail_closed`. Slots are those of
/// the zone held: a new snapshot may renumber them, so the prober's bitmap goes with a zone.
///
/// Per-service probing (`--probe-port service`) adds a second bitmap, one bit per (service,
/// candidate) pair: service `i`'s candidate at position `k` of its hosts is bit
/// `bases[i] + k` ([`NO_BASE`]: the service is not probed); [`Health::for_service`] selects a
/// service for the picks that follow. Both are precomputed when a zone is swapped in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health<'a> {
    down: &'a [AtomicU32],
    rtt_us: &'a [AtomicU32],
    pairs: &'a [AtomicU32],
    bases: &'a [AtomicU16],
    /// The selected service's first pair bit; [`NO_BASE`] (or no `pairs`): none.
    base: u16,
    fail_closed: bool,
    stale: bool,
}

/// A service whose (service, candidate) pairs have no bits: it is not probed on its own.
pub const NO_BASE: u16 = u16::MAX;

/// The EDNS Extended DNS Error (RFC 8914) of answers given while stale: 3, "Stale Answer".
pub const EDE_STALE: u16 = 3;
/// The Extended DNS Error of a fail-closed SERVFAIL: 23, "Network Error" (every candidate
/// the name may answer is unreachable from this branch).
pub const EDE_NETWORK_ERROR: u16 = 23;
/// The TTL cap of stale answers (RFC 8767 suggests 30 s).
pub const STALE_TTL: u32 = 30;

impl<'a> Health<'a> {
    /// Every node reachable, answers as planned.
    pub const ALL_UP: Health<'static> = Health {
        down: &[],
        rtt_us: &[],
        pairs: &[],
        bases: &[],
        base: NO_BASE,
        fail_closed: false,
        stale: false,
    };

    /// A bitmap of down slots (`MAX_NODES / 32` words cover every slot; fewer words mean
    /// the slots beyond are up).
    pub fn new(down: &'a [AtomicU32]) -> Health<'a> {
        Health {
            down,
            ..Health::ALL_UP
        }
    }

    /// Measured RTTs (microseconds per slot, 0 = unknown) reorder candidates within a tier
    /// (`zone`, `other`; each `near` node is a rank of its own), never across tiers.
    pub fn with_rtt(self, rtt_us: &'a [AtomicU32]) -> Health<'a> {
        Health { rtt_us, ..self }
    }

    /// Per-service down bits: `pairs` (a bit per (service, candidate) pair) and `bases` (the
    /// first bit of each service, by index; [`NO_BASE`]: not probed).
    pub fn with_services(self, pairs: &'a [AtomicU32], bases: &'a [AtomicU16]) -> Health<'a> {
        Health {
            pairs,
            bases,
            ..self
        }
    }

    /// This health for the candidates of service `index` ([`ServiceView::index`]): their
    /// per-service bits count too ([`Health::is_down_at`]).
    pub fn for_service(self, index: usize) -> Health<'a> {
        let base = self
            .bases
            .get(index)
            .map_or(NO_BASE, |b| b.load(Ordering::Relaxed));
        Health { base, ..self }
    }

    /// When every candidate of a name is down: SERVFAIL with EDE 23 instead of the nearest.
    pub fn with_fail_closed(self, on: bool) -> Health<'a> {
        Health {
            fail_closed: on,
            ..self
        }
    }

    /// Answers are stale: EDE 3 on answers to queries with EDNS, TTLs capped at
    /// [`STALE_TTL`].
    pub fn with_stale(self, on: bool) -> Health<'a> {
        Health { stale: on, ..self }
    }

    /// Whether `slot` is marked down.
    pub fn is_down(&self, slot: u16) -> bool {
        self.down
            .get(usize::from(slot) / 32)
            .is_some_and(|w| w.load(Ordering::Relaxed) >> (slot % 32) & 1 == 1)
    }

    /// Whether candidate `slot`, at position `k` of the selected service's hosts, is down:
    /// the node is, or the service's pair bit is ([`Health::for_service`]).
    pub fn is_down_at(&self, k: usize, slot: u16) -> bool {
        let bit = usize::from(self.base) + k;
        self.is_down(slot)
            || (self.base != NO_BASE
                && self
                    .pairs
                    .get(bit / 32)
                    .is_some_and(|w| w.load(Ordering::Relaxed) >> (bit % 32) & 1 == 1))
    }

    /// The RTT rank of `slot` (smaller is nearer); `u32::MAX` when not measured.
    fn rtt(&self, slot: u16) -> u32 {
        match self.rtt_us.get(usize::from(slot)) {
            Some(r) => match r.load(Ordering::Relaxed) {
                0 => u32::MAX,
                v => v,
            },
            None => u32::MAX,
        }
    }

    /// Whether RTT reorders candidates.
    pub fn rtt_order(&self) -> bool {
        !self.rtt_us.is_empty()
    }

    /// Whether a name whose candidates are all down gets SERVFAIL.
    pub fn fail_closed(&self) -> bool {
        self.fail_closed
    }

    /// Whether answers are stale.
    pub fn stale(&self) -> bool {
        self.stale
    }
}

/// What [`Staging::part`] did with a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartStatus {
    /// Staged; this many parts are still missing.
    Waiting(usize),
    /// The snapshot is whole and checked: [`Staging::swap_into`] swaps it in.
    Complete,
    /// Not staged, as the acceptance rules say (`Ignore`, `Replay`: drop quietly;
    /// `Conflict`: report). A part already staged is `Replay` too.
    Skipped(PartAction),
}

/// A snapshot being assembled from its parts, in a zone of its own.
pub struct Staging<H> {
    zone: ZoneV2<H>,
    set: PartSet,
    /// Per part: heap range of its services and their count.
    ranges: [(u32, u32, u32); MAX_PARTS],
    parts: u8,
    complete: bool,
}

struct PartWriter<'a, H> {
    st: &'a mut Staging<H>,
    gateway: &'a str,
    held: Option<Held>,
    action: Option<PartAction>,
    first_node: u16,
    next_node: u16,
    used_before: usize,
    items: Digest,
    services: u32,
    svc_start: Option<usize>,
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> Visitor for PartWriter<'_, H> {
    fn envelope(&mut self, env: &Envelope) -> Result<(), &'static str> {
        if env.kind != Kind::Part {
            self.action = None;
            return Err(why::SKIP);
        }
        if env.gateway.as_str() != self.gateway {
            return Err(why::GATEWAY);
        }
        let action = accept::part(self.held, self.st.set.staging(), env.version, env.digest);
        let action = if action == PartAction::Stage && self.st.set.has(env.part) {
            PartAction::Replay
        } else {
            action
        };
        self.action = Some(action);
        match action {
            PartAction::Restart => {
                self.st.restart(env);
            }
            PartAction::Stage => {}
            _ => return Err(why::SKIP),
        }
        self.first_node = env.first_node;
        self.next_node = env.first_node;
        self.used_before = self.st.zone.meta.used;
        if env.part == 0 {
            if let Some(z) = env.zone {
                self.items = self.items.with(header_hash(env.gateway.as_str(), &z));
            }
        }
        Ok(())
    }

    fn node(&mut self, index: u16, node: Option<&Node>) -> Result<(), &'static str> {
        let z = &mut self.st.zone;
        if z.slots[usize::from(index)] != UNSET {
            return Err(why::SLOT_TWICE);
        }
        let off = match node {
            Some(n) => {
                self.items = self.items.with(node_hash(index, n));
                z.write_node(n)?
            }
            None => EMPTY,
        };
        z.slots[usize::from(index)] = off;
        self.next_node = index + 1;
        Ok(())
    }

    fn service(&mut self, s: &ServiceRef<'_>) -> Result<(), &'static str> {
        self.items = self.items.with(service_hash(s));
        let at = self.st.zone.write_service(s)?;
        self.svc_start.get_or_insert(at as usize);
        self.services += 1;
        Ok(())
    }
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> Staging<H> {
    /// Nothing staged, over `heap`.
    pub fn new(heap: H) -> Self {
        Staging {
            zone: ZoneV2::new(heap),
            set: PartSet::new(),
            ranges: [(0, 0, 0); MAX_PARTS],
            parts: 0,
            complete: false,
        }
    }

    /// The version and digest being staged.
    pub fn staging(&self) -> Option<Held> {
        self.set.staging()
    }

    fn restart(&mut self, env: &Envelope) {
        self.set.restart(env);
        self.zone.clear();
        self.complete = false;
        self.ranges = [(0, 0, 0); MAX_PARTS];
        self.parts = env.parts;
        let nodes = env.zone.map_or(0, |z| usize::from(z.nodes));
        self.zone.slots[..nodes].fill(UNSET);
        self.zone.meta.gateway = Str::new(env.gateway.as_str()).unwrap_or(Str::EMPTY);
        self.zone.meta.version = env.version;
        self.zone.meta.digest = env.digest;
        self.zone.meta.zone = env.zone;
        if let Some(z) = env.zone {
            let mut n = 0;
            let w = &mut self.zone.meta.origin_wire;
            for label in z.suffix.as_str().split('.') {
                w[n] = label.len() as u8;
                w[n + 1..n + 1 + label.len()].copy_from_slice(label.as_bytes());
                n += 1 + label.len();
            }
            w[n] = 0;
            self.zone.meta.origin_wire_len = n + 1;
        }
    }

    /// Clears the staging area.
    pub fn reset(&mut self) {
        self.set = PartSet::new();
        self.zone.clear();
        self.complete = false;
    }

    /// Decodes one message on a `part/K` topic for gateway `gateway` into the staging area,
    /// given what the agent holds (`held`). A part that fails decoding is rejected whole and
    /// leaves the staging as it was; parts that turn out not to make one snapshot clear it.
    pub fn part(
        &mut self,
        gateway: &str,
        held: Option<Held>,
        msg: &[u8],
        work: &mut Work,
    ) -> Result<PartStatus, ZoneError> {
        let mut w = PartWriter {
            st: self,
            gateway,
            held,
            action: None,
            first_node: 0,
            next_node: 0,
            used_before: 0,
            items: Digest::ZERO,
            services: 0,
            svc_start: None,
        };
        let res = decode::decode(msg, &mut work.scratch, &mut w);
        let (action, first, next, used_before, items, services, svc_start) = (
            w.action,
            w.first_node,
            w.next_node,
            w.used_before,
            w.items,
            w.services,
            w.svc_start,
        );
        let env = match res {
            Ok(env) => env,
            Err(e) => {
                return match (action, e.kind) {
                    (None, decode::ErrorKind::Refused(why::SKIP)) => Err(ZoneError::WrongKind),
                    (
                        Some(a @ (PartAction::Ignore | PartAction::Replay | PartAction::Conflict)),
                        _,
                    ) => Ok(PartStatus::Skipped(a)),
                    (Some(_), _) => {
                        // Roll the part back: its records and the slots it wrote.
                        self.zone.meta.used = used_before;
                        for s in first..next {
                            self.zone.slots[usize::from(s)] = UNSET;
                        }
                        Err(ZoneError::Decode(e))
                    }
                    (None, _) => Err(ZoneError::Decode(e)),
                };
            }
        };
        let k = usize::from(env.part);
        let used = self.zone.meta.used;
        self.ranges[k] = (svc_start.unwrap_or(used) as u32, used as u32, services);
        match self.set.add(&env, next.saturating_sub(first), items) {
            Ok(accept::Progress::Waiting(n)) => Ok(PartStatus::Waiting(n)),
            Ok(accept::Progress::Complete) => match self.finish(work) {
                Ok(()) => Ok(PartStatus::Complete),
                Err(e) => {
                    self.reset();
                    Err(e)
                }
            },
            Err(a) => {
                self.reset();
                Err(ZoneError::Assembly(a))
            }
        }
    }

    /// All parts are in: the service index in part order (ascending across parts), the
    /// whole's rules, the digest recomputed from what is stored.
    fn finish(&mut self, work: &mut Work) -> Result<(), ZoneError> {
        let parts = usize::from(self.set_parts());
        let mut n = 0usize;
        for k in 0..parts {
            let (start, end, count) = self.ranges[k];
            let mut at = start as usize;
            for _ in 0..count {
                let len =
                    parse_service(self.zone.heap.as_ref().get(at..end as usize).unwrap_or(&[]))
                        .map(|(_, l)| l)
                        .ok_or(ZoneError::Invalid("service record"))?;
                if n >= MAX_SERVICES {
                    return Err(ZoneError::Invalid("too many services"));
                }
                self.zone.svc[n] = at as u32;
                n += 1;
                at += len;
            }
        }
        self.zone.meta.services = n;
        for i in 1..n {
            let (a, b) = (self.zone.service(i - 1), self.zone.service(i));
            if a.map(|s| (s.ns, s.name)) >= b.map(|s| (s.ns, s.name)) {
                return Err(ZoneError::Invalid("services not ascending across parts"));
            }
        }
        self.zone.seal()?;
        if self.zone.content_digest(work) != self.zone.meta.digest {
            self.zone.meta.sealed = false;
            return Err(ZoneError::Assembly(AssemblyError::DigestMismatch));
        }
        self.complete = true;
        Ok(())
    }

    fn set_parts(&self) -> u8 {
        self.parts
    }

    /// Whether a whole snapshot waits to be swapped in.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The whole snapshot, once [`PartStatus::Complete`] was returned (`None` before).
    pub fn complete(&self) -> Option<&ZoneV2<H>> {
        self.complete.then_some(&self.zone)
    }

    /// Swaps the whole snapshot into `current` (once [`PartStatus::Complete`] was returned;
    /// `false` and nothing done before). The zone `current` held becomes the (empty)
    /// staging area, so its heap is reused.
    pub fn swap_into(&mut self, current: &mut ZoneV2<H>) -> bool {
        if !self.complete {
            return false;
        }
        core::mem::swap(&mut self.zone, current);
        self.reset();
        true
    }
}

struct DeltaWriter<'a, H, H2> {
    old: &'a ZoneV2<H>,
    next: &'a mut ZoneV2<H2>,
    work: &'a mut Bufs,
    gateway: &'a str,
    action: Option<DeltaAction>,
    digest: Digest,
}

impl<H, H2> DeltaWriter<'_, H, H2>
where
    H: AsRef<[u8]> + AsMut<[u8]>,
    H2: AsRef<[u8]> + AsMut<[u8]>,
{
    /// The compacting copy of the held zone into `next`.
    fn copy(&mut self) -> Result<(), &'static str> {
        let (old, next) = (self.old, &mut *self.next);
        next.clear();
        next.meta = old.meta;
        next.meta.used = 0;
        next.meta.sealed = false;
        let src = old.heap.as_ref();
        for slot in 0..old.slot_count() {
            let off = old.slots[slot];
            next.slots[slot] = if off >= EMPTY {
                EMPTY
            } else {
                let n = parse_node(src.get(off as usize..).unwrap_or(&[])).ok_or(why::FULL)?;
                next.copy_record(src, off as usize, 23 + n.name.len())?
            };
        }
        for i in 0..old.meta.services {
            let off = old.svc[i] as usize;
            let (_, len) = parse_service(src.get(off..).unwrap_or(&[])).ok_or(why::FULL)?;
            next.svc[i] = next.copy_record(src, off, len)?;
        }
        Ok(())
    }

    fn slot(&self, index: u16) -> Result<usize, &'static str> {
        let i = usize::from(index);
        if i >= self.next.slot_count() {
            return Err(why::SLOT);
        }
        Ok(i)
    }

    fn drop_node(&mut self, i: usize) {
        if let Some(n) = self.next.owned_node(i as u16) {
            self.digest = self.digest.without(node_hash(i as u16, &n));
        }
        self.next.slots[i] = EMPTY;
    }

    fn hosts_ok(&self, hosts: &[u16]) -> bool {
        hosts
            .last()
            .is_none_or(|&h| usize::from(h) < self.next.slot_count())
    }
}

impl<H, H2> Visitor for DeltaWriter<'_, H, H2>
where
    H: AsRef<[u8]> + AsMut<[u8]>,
    H2: AsRef<[u8]> + AsMut<[u8]>,
{
    fn envelope(&mut self, env: &Envelope) -> Result<(), &'static str> {
        if env.kind != Kind::Delta {
            return Err(why::SKIP);
        }
        if env.gateway.as_str() != self.gateway {
            return Err(why::GATEWAY);
        }
        let action = accept::delta(
            self.old.held(),
            env.base.unwrap_or(Version(0)),
            env.version,
            env.digest,
        );
        self.action = Some(action);
        if action != DeltaAction::Apply {
            return Err(why::SKIP);
        }
        self.digest = self.old.meta.digest;
        self.copy()
    }

    fn node_drop(&mut self, index: u16) -> Result<(), &'static str> {
        let i = self.slot(index)?;
        self.drop_node(i);
        Ok(())
    }

    fn node_set(&mut self, index: u16, node: &Node) -> Result<(), &'static str> {
        let i = self.slot(index)?;
        self.drop_node(i);
        self.next.slots[i] = self.next.write_node(node)?;
        self.digest = self.digest.with(node_hash(index, node));
        Ok(())
    }

    fn service_del(&mut self, ns: &str, name: &str) -> Result<(), &'static str> {
        let i = self
            .next
            .find_service(ns.as_bytes(), name.as_bytes())
            .map_err(|_| why::NO_SERVICE)?;
        let h = self.next.service_hash_at(self.next.svc[i], self.work);
        self.digest = self.digest.without(h);
        let n = self.next.meta.services;
        self.next.svc.copy_within(i + 1..n, i);
        self.next.meta.services = n - 1;
        Ok(())
    }

    fn service(&mut self, s: &ServiceRef<'_>) -> Result<(), &'static str> {
        if !self.hosts_ok(s.hosts) {
            return Err(why::SLOT);
        }
        let found = self.next.find_service(s.ns.as_bytes(), s.name.as_bytes());
        let n = self.next.meta.services;
        let i = match found {
            Ok(i) => {
                let h = self.next.service_hash_at(self.next.svc[i], self.work);
                self.digest = self.digest.without(h);
                i
            }
            Err(i) => {
                if n >= MAX_SERVICES {
                    return Err(why::FULL);
                }
                self.next.svc.copy_within(i..n, i + 1);
                self.next.meta.services = n + 1;
                i
            }
        };
        match self.next.write_service(s) {
            Ok(off) => self.next.svc[i] = off,
            Err(e) => return Err(e),
        }
        self.digest = self.digest.with(service_hash(s));
        Ok(())
    }

    fn hosts(
        &mut self,
        ns: &str,
        name: &str,
        add: &[u16],
        del: &[u16],
    ) -> Result<(), &'static str> {
        if !self.hosts_ok(add) {
            return Err(why::SLOT);
        }
        let i = self
            .next
            .find_service(ns.as_bytes(), name.as_bytes())
            .map_err(|_| why::NO_SERVICE)?;
        let next = &mut *self.next;
        let work = &mut *self.work;
        let view = next.service_at(next.svc[i]);
        let Some(old) = load(view, &mut work.ports, &mut work.hosts) else {
            return Err(why::NO_SERVICE);
        };
        // merged = (old - del) + add, ascending; del must be hosts, add must not.
        let (mut a, mut d, mut n) = (0, 0, 0);
        let merged = &mut work.merged;
        for &h in old.hosts {
            while a < add.len() && add[a] < h {
                *merged.get_mut(n).ok_or(why::HOSTS)? = add[a];
                n += 1;
                a += 1;
            }
            if add.get(a) == Some(&h) {
                return Err(why::HOSTS);
            }
            if del.get(d) == Some(&h) {
                d += 1;
                continue;
            }
            if del.get(d).is_some_and(|&x| x < h) {
                return Err(why::HOSTS);
            }
            *merged.get_mut(n).ok_or(why::HOSTS)? = h;
            n += 1;
        }
        for &h in &add[a..] {
            *merged.get_mut(n).ok_or(why::HOSTS)? = h;
            n += 1;
        }
        if d != del.len() || n == 0 {
            return Err(why::HOSTS);
        }
        let (ns_s, name_s) = (
            Str::<63>::new(old.ns).ok_or(why::HOSTS)?,
            Str::<63>::new(old.name).ok_or(why::HOSTS)?,
        );
        let old_h = service_hash(&old);
        let (short, np) = (old.short, old.ports.len());
        let new = ServiceRef {
            ns: ns_s.as_str(),
            name: name_s.as_str(),
            short,
            ports: &work.ports[..np],
            hosts: &merged[..n],
        };
        let new_h = service_hash(&new);
        let off = next.write_service(&new)?;
        next.svc[i] = off;
        self.digest = self.digest.without(old_h).with(new_h);
        Ok(())
    }
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> ZoneV2<H> {
    /// Applies one message from `delta` or `tail` for gateway `gateway` to this zone, into
    /// `next` (whose content is replaced: the held zone is never written). Returns what the
    /// acceptance rules decided: [`DeltaAction::Apply`] means `next` now holds the new
    /// version, checked against the delta's digest, ready to be swapped in; any other action
    /// means nothing was done (`Gap`: resync; `Conflict`: report). On `Err`, `next` is empty.
    pub fn apply_delta<H2: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        next: &mut ZoneV2<H2>,
        gateway: &str,
        msg: &[u8],
        work: &mut Work,
    ) -> Result<DeltaAction, ZoneError> {
        next.clear();
        let mut w = DeltaWriter {
            old: self,
            next,
            work: &mut work.bufs,
            gateway,
            action: None,
            digest: Digest::ZERO,
        };
        let res = decode::decode(msg, &mut work.scratch, &mut w);
        let (action, digest) = (w.action, w.digest);
        let env = match res {
            Ok(env) => env,
            Err(e) => {
                next.clear();
                return match action {
                    None if e.kind == decode::ErrorKind::Refused(why::SKIP) => {
                        Err(ZoneError::WrongKind)
                    }
                    Some(a) if a != DeltaAction::Apply => Ok(a),
                    _ => Err(ZoneError::Decode(e)),
                };
            }
        };
        if env.kind != Kind::Delta || action != Some(DeltaAction::Apply) {
            next.clear();
            return Err(ZoneError::WrongKind);
        }
        if digest != env.digest {
            next.clear();
            return Err(ZoneError::DigestMismatch);
        }
        next.meta.version = env.version;
        next.meta.digest = digest;
        if let Err(e) = next.seal() {
            next.clear();
            return Err(e);
        }
        Ok(DeltaAction::Apply)
    }
}

impl core::fmt::Debug for Work {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Work")
    }
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> core::fmt::Debug for ZoneV2<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ZoneV2")
            .field("gateway", &self.meta.gateway)
            .field("held", &self.held())
            .field("slots", &self.slot_count())
            .field("services", &self.meta.services)
            .field("used", &self.meta.used)
            .finish()
    }
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> core::fmt::Debug for Staging<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Staging")
            .field("staging", &self.set.staging())
            .field("complete", &self.complete)
            .finish()
    }
}
