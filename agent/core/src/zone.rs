//! The compiled zone: a compact, read-only byte form made by [`crate::compile`].
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! header   magic "SDZ1" | total_len u32 | serial u32 | ttl u32 | count u32
//!          | origin_len u8 | gateway_len u8 | origin_wire_len u16
//!          | origin text | gateway text | origin in wire form (lower case)
//! index    count x u32: offset of each entry, in DNS canonical order
//! entries  key_len u8 | key | type u16 | ttl u32 | source index u16 | rdata_len u16 | rdata
//! ```
//!
//! The `key` is the owner name relative to the origin, in a form whose plain byte order is the
//! DNS canonical order of RFC 4034 section 6.1: labels from the right to the left, lower case,
//! each followed by a 0 byte (`_tcp.hello.default` -> `default\0hello\0_tcp\0`, the apex is
//! empty). Labels only hold `[a-z0-9_-]`, which all sort after 0, so a parent sorts before its
//! children and "shorter label first" holds. Entries with the same key are sorted by type and
//! then by their position in the payload, so an RRset is contiguous and keeps the payload order.
//! Lookup is a binary search on the key; the first entry at or after a key that starts with the
//! key (and is longer) shows an empty non-terminal.
//!
//! The rdata is DNS wire rdata for A, AAAA and TXT. For CNAME it is a *target*, for SRV
//! priority, weight and port followed by a target. A target is a flag byte, `1` for a name in
//! the zone followed by its labels relative to the origin (wire form, 0-terminated), or `0` for
//! a name outside the zone followed by its full wire form.
//!
//! [`Zone::from_compiled`] checks every length and offset, so no accessor can panic later.

use core::cmp::Ordering;

/// Magic at the start of a compiled zone.
pub(crate) const MAGIC: &[u8; 4] = b"SDZ1";
/// Size of the fixed part of the header.
pub(crate) const HEADER_FIXED: usize = 24;

/// Record types the zone holds (and the agent synthesizes).
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server (synthesized at the apex).
    pub const NS: u16 = 2;
    /// Alias.
    pub const CNAME: u16 = 5;
    /// Start of authority (synthesized at the apex).
    pub const SOA: u16 = 6;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Service location.
    pub const SRV: u16 = 33;
    /// EDNS(0) pseudo record.
    pub const OPT: u16 = 41;
    /// Zone transfers (refused).
    pub const IXFR: u16 = 251;
    /// Zone transfers (refused).
    pub const AXFR: u16 = 252;
    /// Any type (answered minimally, RFC 8482).
    pub const ANY: u16 = 255;
}

/// A compiled zone over any byte storage (`Vec<u8>`, `&[u8]`, `heapless::Vec`).
#[derive(Debug, Clone)]
pub struct Zone<S: AsRef<[u8]>> {
    storage: S,
    count: usize,
    index_off: usize,
    origin: (usize, usize),
    gateway: (usize, usize),
    origin_wire: (usize, usize),
}

/// The storage does not hold a zone made by [`crate::compile`] (wrong magic, a length or
/// offset out of bounds, entries out of order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadZone;

impl core::fmt::Display for BadZone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("not a compiled zone (bad header or entry)")
    }
}

/// One record of the zone, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Owner key (see the module documentation).
    pub key: &'a [u8],
    /// Record type.
    pub rtype: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// Index of the record in the payload's `records`.
    pub source: u16,
    /// Stored rdata (see the module documentation).
    pub rdata: &'a [u8],
}

impl Entry<'_> {
    /// What [`Zone::entry`] returns for an index it cannot read (never for a checked zone).
    const EMPTY: Entry<'static> = Entry {
        key: &[],
        rtype: 0,
        ttl: 0,
        source: 0,
        rdata: &[],
    };
}

/// What a key lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The name has records: entries `start..end` of the index.
    Records(usize, usize),
    /// The name has no records but names below it do (an empty non-terminal).
    EmptyNonTerminal,
    /// No such name.
    NxDomain,
}

#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}
#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses the entry at `off`, returning it and the offset after it.
#[inline(always)]
pub(crate) fn parse_entry(b: &[u8], off: usize) -> Option<(Entry<'_>, usize)> {
    let klen = *b.get(off)? as usize;
    let key = b.get(off + 1..off + 1 + klen)?;
    let p = off + 1 + klen;
    let rtype = be16(b, p)?;
    let ttl = be32(b, p + 2)?;
    let source = be16(b, p + 6)?;
    let rdlen = be16(b, p + 8)? as usize;
    let rdata = b.get(p + 10..p + 10 + rdlen)?;
    Some((
        Entry {
            key,
            rtype,
            ttl,
            source,
            rdata,
        },
        p + 10 + rdlen,
    ))
}

/// Checks a stored target (CNAME rdata, the tail of SRV rdata): flag byte and a wire name.
pub(crate) fn check_target(t: &[u8]) -> bool {
    let Some((&flag, mut rest)) = t.split_first() else {
        return false;
    };
    if flag > 1 {
        return false;
    }
    let mut total = 0;
    loop {
        let Some((&l, r)) = rest.split_first() else {
            return false;
        };
        if l == 0 {
            return r.is_empty();
        }
        if l > 63 || r.len() < l as usize {
            return false;
        }
        total += l as usize + 1;
        if total > 255 {
            return false;
        }
        rest = &r[l as usize..];
    }
}

/// Orders two entries: key, then type, then payload position.
pub(crate) fn entry_order(a: &Entry<'_>, b: &Entry<'_>) -> Ordering {
    a.key
        .cmp(b.key)
        .then(a.rtype.cmp(&b.rtype))
        .then(a.source.cmp(&b.source))
}

impl<S: AsRef<[u8]>> Zone<S> {
    /// Wraps bytes written by [`crate::compile`], checking their header and every entry.
    pub fn from_compiled(storage: S) -> Result<Self, BadZone> {
        let b = storage.as_ref();
        if b.len() < HEADER_FIXED || &b[0..4] != MAGIC {
            return Err(BadZone);
        }
        let total = be32(b, 4).ok_or(BadZone)? as usize;
        if total != b.len() {
            return Err(BadZone);
        }
        let count = be32(b, 16).ok_or(BadZone)? as usize;
        let olen = b[20] as usize;
        let glen = b[21] as usize;
        let wlen = be16(b, 22).ok_or(BadZone)? as usize;
        let origin = (HEADER_FIXED, HEADER_FIXED + olen);
        let gateway = (origin.1, origin.1 + glen);
        let origin_wire = (gateway.1, gateway.1 + wlen);
        let index_off = origin_wire.1;
        let entries_off = count
            .checked_mul(4)
            .and_then(|n| n.checked_add(index_off))
            .ok_or(BadZone)?;
        if entries_off > b.len() {
            return Err(BadZone);
        }
        if core::str::from_utf8(&b[origin.0..origin.1]).is_err()
            || core::str::from_utf8(&b[gateway.0..gateway.1]).is_err()
        {
            return Err(BadZone);
        }
        // The origin in wire form: labels, then the root.
        let w = &b[origin_wire.0..origin_wire.1];
        let mut t = [0u8; 256];
        if w.is_empty() || w.len() > 255 {
            return Err(BadZone);
        }
        t[0] = 0;
        t[1..=w.len()].copy_from_slice(w);
        if !check_target(&t[..=w.len()]) {
            return Err(BadZone);
        }
        let mut prev: Option<Entry<'_>> = None;
        for i in 0..count {
            let off = be32(b, index_off + 4 * i).ok_or(BadZone)? as usize;
            if off < entries_off {
                return Err(BadZone);
            }
            let (e, _) = parse_entry(b, off).ok_or(BadZone)?;
            let ok = match e.rtype {
                rtype::A => e.rdata.len() == 4,
                rtype::AAAA => e.rdata.len() == 16,
                rtype::TXT => !e.rdata.is_empty() && e.rdata[0] as usize + 1 == e.rdata.len(),
                rtype::CNAME => check_target(e.rdata),
                rtype::SRV => e.rdata.len() > 6 && check_target(&e.rdata[6..]),
                _ => false,
            };
            if !ok || e.key.len() > 255 || e.key.last().is_some_and(|&c| c != 0) {
                return Err(BadZone);
            }
            if let Some(p) = prev {
                if entry_order(&p, &e) != Ordering::Less {
                    return Err(BadZone);
                }
            }
            prev = Some(e);
        }
        Ok(Zone {
            storage,
            count,
            index_off,
            origin,
            gateway,
            origin_wire,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.storage.as_ref()
    }

    /// The payload's serial (also the SOA serial).
    pub fn serial(&self) -> u32 {
        be32(self.bytes(), 8).unwrap_or(0)
    }
    /// The payload's default TTL (also the TTL of the SOA and NS, and the SOA minimum).
    pub fn ttl(&self) -> u32 {
        be32(self.bytes(), 12).unwrap_or(0)
    }
    /// The payload's `gateway` field.
    pub fn gateway(&self) -> &str {
        let b = self.bytes();
        b.get(self.gateway.0..self.gateway.1)
            .and_then(|s| core::str::from_utf8(s).ok())
            .unwrap_or("")
    }
    /// The origin, without a trailing dot.
    pub fn origin(&self) -> &str {
        let b = self.bytes();
        b.get(self.origin.0..self.origin.1)
            .and_then(|s| core::str::from_utf8(s).ok())
            .unwrap_or("")
    }
    /// The origin in wire form, lower case, ending with the root label.
    pub fn origin_wire(&self) -> &[u8] {
        self.bytes()
            .get(self.origin_wire.0..self.origin_wire.1)
            .unwrap_or(&[0])
    }
    /// Number of records (not counting the SOA and NS the agent adds).
    pub fn record_count(&self) -> usize {
        self.count
    }

    /// The `i`th entry in canonical order (`i < record_count()`).
    #[inline(always)]
    pub fn entry(&self, i: usize) -> Entry<'_> {
        let b = self.bytes();
        // Plain lets rather than an Option chain: at opt-level "z" the chain's closures stay
        // calls and the entry is copied through memory on each (the answer path reads a few
        // entries per query).
        let Some(off) = be32(b, self.index_off + 4 * i) else {
            return Entry::EMPTY;
        };
        let Some((e, _)) = parse_entry(b, off as usize) else {
            return Entry::EMPTY;
        };
        e
    }

    /// The key of the `i`th entry.
    #[inline(always)]
    fn key(&self, i: usize) -> &[u8] {
        let b = self.bytes();
        let Some(off) = be32(b, self.index_off + 4 * i) else {
            return &[];
        };
        let off = off as usize;
        let Some(&klen) = b.get(off) else {
            return &[];
        };
        b.get(off + 1..off + 1 + klen as usize).unwrap_or(&[])
    }

    /// The index of the first entry whose key is not less than `key`.
    fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Looks up a key (see the module documentation).
    pub fn find(&self, key: &[u8]) -> Found {
        let start = self.lower_bound(key);
        let mut end = start;
        while end < self.count && self.key(end) == key {
            end += 1;
        }
        if end > start {
            return Found::Records(start, end);
        }
        if start < self.count && self.key(start).starts_with(key) {
            return Found::EmptyNonTerminal;
        }
        Found::NxDomain
    }
}
