//! The query path: `answer(zone, query, out, transport)`, and `answer_v2` for a payload v2
//! zone ([`crate::v2zone`]: the same rules, the names and the pick of `docs/planning.md`,
//! see `docs/agent.md`, "Payload v2 zones").
//!
//! One function from query bytes to response bytes, no I/O, no heap; the rules are those of
//! issue 2 ("How it must answer"), summed up here:
//!
//! - A message shorter than a header, or a response (QR set), gets no answer (`Err`).
//! - Opcode other than QUERY: NOTIMP. QDCOUNT other than 1, a question or record that cannot
//!   be read, two OPT records or an OPT not at the root: FORMERR. EDNS version above 0:
//!   BADVERS (extended rcode 16 in our OPT). QCLASS other than IN, AXFR/IXFR, a name outside
//!   the zone, or no zone loaded: REFUSED.
//! - ID, opcode, RD and CD are echoed, the question is echoed in the client's letter case, AA is
//!   set on answers from the zone, RA is never set.
//! - A name with the asked type: the RRset. A CNAME is followed inside the zone (at most 8
//!   steps); targets outside the zone are left to the client. With another type, an empty
//!   non-terminal, or an unknown type: NODATA with the SOA in authority; a missing name:
//!   NXDOMAIN with the SOA. The SOA's TTL there is min(SOA TTL, SOA minimum) (RFC 2308), both
//!   being the payload's `ttl`.
//! - ANY (RFC 8482): one RRset, the first of the name in type order (A before AAAA before TXT
//!   ...); at the apex the SOA.
//! - SRV answers carry the in-zone targets' A and AAAA RRsets in the additional section, as many
//!   whole RRsets as fit.
//! - The apex has a synthesized SOA (`ns.<origin>. hostmaster.<origin>. serial 3600 600 86400
//!   ttl`) and NS (`ns.<origin>.`), both with the payload's `ttl`.
//! - EDNS(0): our OPT carries UDP size 1232 and copies the DO bit; options (NSID, COOKIE, ...)
//!   are ignored, which RFC 5001 and RFC 7873 allow.
//! - Size: UDP 512 without EDNS, else the client's size capped to 512..=1232; TCP `out.len()`
//!   up to 65535. An RRset that does not fit is left out whole and TC is set.
//! - Owner names are compression pointers to the question (or to the CNAME/SRV target they
//!   belong to); SRV targets are written uncompressed (RFC 2782).

use crate::payload::rel_to_key;
use crate::v2zone::{Health, ZoneV2, EDE_NETWORK_ERROR, EDE_STALE, STALE_TTL};
use crate::wire::{self, flags, parse_opt, rcode, Error, Opt, Packet, Question, Writer};
use crate::zone::{rtype, Entry, Found, Zone};

/// The transport a query came in on: it sets the size limit of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the client's EDNS size capped at 1232; TC set when the answer does not fit.
    Udp,
    /// Up to `out.len()` (at most 65535).
    Tcp,
}

/// The UDP payload size we announce and the cap of UDP answers with EDNS.
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Longest CNAME chain followed inside the zone.
pub const MAX_CNAME_CHAIN: usize = 8;
/// SOA refresh, retry and expire (no secondaries read them; sensible values for tools).
pub const SOA_REFRESH: u32 = 3600;
/// See [`SOA_REFRESH`].
pub const SOA_RETRY: u32 = 600;
/// See [`SOA_REFRESH`].
pub const SOA_EXPIRE: u32 = 86400;

const CLASS_IN: u16 = 1;
const OPT_LEN: usize = 11;

/// Answers `query` from `zone` into `out`, returning the length of the response.
/// With no zone loaded, every question gets REFUSED. `Err` means: send nothing.
pub fn answer<S: AsRef<[u8]>>(
    zone: Option<&Zone<S>>,
    query: &[u8],
    out: &mut [u8],
    transport: Transport,
) -> Result<usize, wire::Error> {
    answer_in(zone, query, out, transport)
}

/// Answers `query` from the v2 zone `zone` into `out`: the same rules as [`answer`], the
/// names and the address policy of `docs/planning.md` ("The zone of a gateway"), SRV sets
/// whole. `health` is the branch's view (issue 14, [`Health`]): a name answers its nearest
/// candidate that is not down (RTT may reorder within a tier), or its nearest when all are
/// (fail open) unless it fails closed (SERVFAIL, EDE 23); SRV sets list the down targets
/// last; stale answers carry EDE 3 and TTLs of at most 30 s. A zone that holds nothing is
/// no zone (REFUSED).
pub fn answer_v2<H: AsRef<[u8]> + AsMut<[u8]>>(
    zone: Option<&ZoneV2<H>>,
    query: &[u8],
    out: &mut [u8],
    transport: Transport,
    health: Health<'_>,
) -> Result<usize, wire::Error> {
    let z = zone
        .filter(|z| z.held().is_some())
        .map(|zone| V2 { zone, health });
    answer_in(z.as_ref(), query, out, transport)
}

/// What the front of the query path needs from a zone.
trait Source {
    fn origin_wire(&self) -> &[u8];
    /// Writes the answer for the relative labels `rel` (wire form, the client's case) and
    /// returns the rcode.
    fn respond(&self, r: &mut Response<'_>, rel: &[u8], qtype: u16, origin_at: usize) -> u16;
    /// The Extended DNS Error every answer from this zone carries (with EDNS).
    fn ede(&self) -> Option<u16> {
        None
    }
}

impl<S: AsRef<[u8]>> Source for Zone<S> {
    fn origin_wire(&self) -> &[u8] {
        Zone::origin_wire(self)
    }
    fn respond(&self, r: &mut Response<'_>, rel: &[u8], qtype: u16, origin_at: usize) -> u16 {
        let mut buf = Scratch::new();
        match rel_labels_key(rel, &mut buf) {
            Some(key) => r.resolve(self, key, qtype, origin_at),
            None => {
                // A label with a byte no zone name has: no such name, nor anything below it.
                r.soa_authority(self, origin_at);
                rcode::NXDOMAIN
            }
        }
    }
}

fn answer_in<Z: Source>(
    zone: Option<&Z>,
    query: &[u8],
    out: &mut [u8],
    transport: Transport,
) -> Result<usize, wire::Error> {
    let pkt = Packet::new_checked(query)?;
    if pkt.is_response() {
        return Err(Error::NotAQuery);
    }
    if out.len() < wire::field::HEADER_END {
        return Err(Error::NoRoom);
    }
    let qflags = pkt.flags();
    let base = flags::QR | (qflags & (0x7800 | flags::RD | flags::CD));
    let limit = match transport {
        Transport::Tcp => out.len().min(65535),
        Transport::Udp => 512,
    };
    let mut r = Response {
        w: Writer::new(out, limit),
        flags: base,
        an: 0,
        ns: 0,
        ar: 0,
        opt: None,
        ext_rcode: 0,
        ede: None,
    };
    r.header(pkt.id())?;

    // The question.
    let mut spill = None;
    let parsed = if pkt.question_count() == 1 {
        Question::parse(query, wire::field::HEADER_END, &mut spill).ok()
    } else {
        None
    };
    let Some((q, qend)) = parsed else {
        let code = if pkt.opcode() != 0 {
            rcode::NOTIMP
        } else {
            rcode::FORMERR
        };
        return r.finish_error(code, None);
    };
    // The other records (only the OPT matters).
    let others = pkt.answer_count() as usize
        + pkt.authority_count() as usize
        + pkt.additional_count() as usize;
    let opt = match parse_opt(query, qend, others) {
        Ok(o) => o,
        Err(_) => return r.finish_error(rcode::FORMERR, Some(&q)),
    };
    if let Some(o) = opt {
        r.opt = Some(o);
        if transport == Transport::Udp {
            let size = (o.udp_size as usize).clamp(512, EDNS_UDP_SIZE as usize);
            r.w.set_limit(size);
        }
        if o.version > 0 {
            r.ext_rcode = (rcode::BADVERS >> 4) as u8;
            return r.finish_error(rcode::BADVERS & 0xf, Some(&q));
        }
    }
    if pkt.opcode() != 0 {
        return r.finish_error(rcode::NOTIMP, Some(&q));
    }
    if q.qtype == rtype::OPT {
        return r.finish_error(rcode::FORMERR, Some(&q));
    }
    let Some(zone) = zone else {
        return r.finish_error(rcode::REFUSED, Some(&q));
    };
    r.ede = zone.ede();
    if q.qclass != CLASS_IN || q.qtype == rtype::AXFR || q.qtype == rtype::IXFR {
        return r.finish_error(rcode::REFUSED, Some(&q));
    }
    let qname = q.name;
    let Some(k) = origin_offset(qname, zone.origin_wire()) else {
        return r.finish_error(rcode::REFUSED, Some(&q));
    };
    // Leave room for the OPT record at the end.
    let full_limit = r.w.limit();
    if r.opt.is_some() {
        r.w.set_limit(full_limit.saturating_sub(r.opt_len()));
    }
    r.question(&q)?;
    let origin_at = wire::field::HEADER_END + k;
    let code = zone.respond(&mut r, &qname[..k], q.qtype, origin_at);
    r.flags |= flags::AA;
    r.w.set_limit(full_limit);
    r.finish(code)
}

/// Offset in `qname` (wire, with root) where a suffix equal to `origin` (wire, with root)
/// starts, label aligned, case-insensitive.
fn origin_offset(qname: &[u8], origin: &[u8]) -> Option<usize> {
    if qname.len() < origin.len() {
        return None;
    }
    let k = qname.len() - origin.len();
    // The origin is stored in lower case; a plain loop is much cheaper than
    // `eq_ignore_ascii_case` at opt-level "z".
    for (&c, &o) in qname[k..].iter().zip(origin) {
        let c = if c.wrapping_sub(b'A') < 26 {
            c | 0x20
        } else {
            c
        };
        if c != o {
            return None;
        }
    }
    // Check that k is a label boundary.
    let mut p = 0;
    while p < k {
        p += 1 + qname[p] as usize;
    }
    (p == k).then_some(k)
}

/// `len` zero bytes (at most 256) to build a name or key in: only as many bytes as that
/// name's, where a `[0u8; 256]` would fill 256 on every query (a fifth of a short query's
/// instructions on a MIPS router).
/// Used in place (`let mut buf = Scratch::new()`): a returned one would be copied whole.
type Scratch = heapless::Vec<u8, 256>;

fn scratch(buf: &mut Scratch, len: usize) -> Option<&mut [u8]> {
    buf.resize(len, 0).ok()?;
    Some(buf)
}

/// The zone key of relative labels `rel` ([`rel_to_key`]), built in `buf`.
fn key_in<'b>(buf: &'b mut Scratch, rel: &[u8]) -> Option<&'b [u8]> {
    let n = rel_to_key(rel, scratch(buf, rel.len())?)?;
    Some(&buf[..n])
}

/// The zone key of relative labels, or `None` when a label has a byte outside
/// `[A-Za-z0-9_-]` (such a name cannot be in the zone).
fn rel_labels_key<'b>(rel: &[u8], buf: &'b mut Scratch) -> Option<&'b [u8]> {
    let mut p = 0;
    while p < rel.len() {
        let l = rel[p] as usize;
        let label = rel.get(p + 1..p + 1 + l)?;
        if !label
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return None;
        }
        p += 1 + l;
    }
    key_in(buf, rel)
}

struct Response<'a> {
    w: Writer<'a>,
    flags: u16,
    an: u16,
    ns: u16,
    ar: u16,
    opt: Option<Opt>,
    ext_rcode: u8,
    /// An Extended DNS Error (RFC 8914) for our OPT record.
    ede: Option<u16>,
}

impl Response<'_> {
    /// Bytes our OPT record takes.
    fn opt_len(&self) -> usize {
        OPT_LEN + if self.ede.is_some() { 6 } else { 0 }
    }

    fn header(&mut self, id: u16) -> Result<(), Error> {
        self.w.u16(id)?;
        self.w.put(&[0; 10])
    }

    fn question(&mut self, q: &Question) -> Result<(), Error> {
        self.w.put(q.name)?;
        self.w.u16(q.qtype)?;
        self.w.u16(q.qclass)
    }

    /// An answer without records: header, the question when there is one, the OPT.
    fn finish_error(mut self, code: u16, q: Option<&Question>) -> Result<usize, Error> {
        if let Some(q) = q {
            let full = self.w.limit();
            if self.opt.is_some() {
                self.w.set_limit(full.saturating_sub(self.opt_len()));
            }
            self.question(q)?;
            self.w.set_limit(full);
        }
        self.finish(code)
    }

    fn finish(mut self, code: u16) -> Result<usize, Error> {
        if let Some(o) = self.opt {
            self.w.put(&[0])?;
            self.w.u16(rtype::OPT)?;
            self.w.u16(EDNS_UDP_SIZE)?;
            self.w
                .put(&[self.ext_rcode, 0, if o.dnssec_ok { 0x80 } else { 0 }, 0])?;
            match self.ede {
                Some(code) => {
                    // RFC 8914: option 15, INFO-CODE, no EXTRA-TEXT.
                    self.w.u16(6)?;
                    self.w.u16(15)?;
                    self.w.u16(2)?;
                    self.w.u16(code)?;
                }
                None => self.w.u16(0)?,
            }
            self.ar += 1;
        }
        let qd = if self.w.len() > wire::field::HEADER_END {
            1
        } else {
            0
        };
        let mut p = Packet::new_unchecked(self.w.bytes_mut());
        p.set_flags(self.flags | code);
        p.set_question_count(qd);
        p.set_answer_count(self.an);
        p.set_authority_count(self.ns);
        p.set_additional_count(self.ar);
        Ok(self.w.len())
    }

    /// Answers for `key` (following CNAMEs) and returns the rcode.
    fn resolve<S: AsRef<[u8]>>(
        &mut self,
        zone: &Zone<S>,
        key: &[u8],
        qtype: u16,
        origin_at: usize,
    ) -> u16 {
        let mut owner_at = wire::field::HEADER_END;
        // The key of a CNAME's target, when one is followed.
        let mut spill = Scratch::new();
        let mut key = key;
        for _ in 0..=MAX_CNAME_CHAIN {
            let found = zone.find(key);
            let apex = key.is_empty();
            let (start, end) = match found {
                Found::Records(s, e) => (s, e),
                _ if apex => (0, 0),
                Found::EmptyNonTerminal => {
                    self.soa_authority(zone, origin_at);
                    return rcode::NOERROR;
                }
                Found::NxDomain => {
                    self.soa_authority(zone, origin_at);
                    return rcode::NXDOMAIN;
                }
            };
            if apex && (qtype == rtype::SOA || qtype == rtype::ANY) {
                if self.soa(zone, origin_at, zone.ttl()).is_err() {
                    self.flags |= flags::TC;
                } else {
                    self.an += 1;
                }
                return rcode::NOERROR;
            }
            if apex && qtype == rtype::NS {
                if self.ns_record(zone, origin_at).is_err() {
                    self.flags |= flags::TC;
                } else {
                    self.an += 1;
                }
                return rcode::NOERROR;
            }
            // The RRset asked for.
            let want = if qtype == rtype::ANY {
                (start < end).then(|| zone.entry(start).rtype)
            } else {
                Some(qtype)
            };
            let mut s = start;
            while s < end && Some(zone.entry(s).rtype) != want {
                s += 1;
            }
            if let Some(t) = want.filter(|_| s < end) {
                let mut e = s;
                while e < end && zone.entry(e).rtype == t {
                    e += 1;
                }
                // Where each SRV target went (for the additional section); no other type
                // needs it.
                let mut srv_targets;
                let targets: &mut [u16] = if t == rtype::SRV {
                    srv_targets = [0u16; crate::payload::MAX_RRSET];
                    &mut srv_targets
                } else {
                    &mut []
                };
                if self
                    .rrset(zone, s, e, owner_at, origin_at, targets)
                    .is_err()
                {
                    self.flags |= flags::TC;
                    return rcode::NOERROR;
                }
                if t == rtype::SRV {
                    self.srv_additional(zone, s, e, targets);
                }
                return rcode::NOERROR;
            }
            // A CNAME (alone at its name) is followed.
            let first = zone.entry(start);
            if start < end && first.rtype == rtype::CNAME {
                let before = self.w.len();
                let Ok(target_at) = self.record(zone, &first, owner_at, origin_at) else {
                    self.w.truncate(before);
                    self.flags |= flags::TC;
                    return rcode::NOERROR;
                };
                self.an += 1;
                let target = first.rdata;
                if target.first() != Some(&1) {
                    // Outside the zone: the client resolves it.
                    return rcode::NOERROR;
                }
                match key_in(&mut spill, &target[1..target.len() - 1]) {
                    Some(k) => key = k,
                    None => return rcode::NOERROR,
                }
                owner_at = target_at;
                continue;
            }
            // NODATA.
            self.soa_authority(zone, origin_at);
            return rcode::NOERROR;
        }
        // CNAME chain too long (a loop): what was written stands.
        rcode::NOERROR
    }

    /// Writes the record's owner (a pointer), type, class, TTL and rdata; returns where the
    /// rdata's target name starts (CNAME and SRV) or the rdata start.
    fn record<S: AsRef<[u8]>>(
        &mut self,
        zone: &Zone<S>,
        e: &Entry<'_>,
        owner_at: usize,
        origin_at: usize,
    ) -> Result<usize, Error> {
        let w = &mut self.w;
        w.pointer(owner_at)?;
        w.u16(e.rtype)?;
        w.u16(CLASS_IN)?;
        w.u32(e.ttl)?;
        let len_at = w.len();
        w.u16(0)?;
        let rdata_at = w.len();
        let target_at = match e.rtype {
            rtype::CNAME => {
                let at = w.len();
                write_target(w, e.rdata, origin_at, None)?;
                at
            }
            rtype::SRV => {
                w.put(e.rdata.get(..6).unwrap_or(&[0; 6]))?;
                let at = w.len();
                write_target(
                    w,
                    e.rdata.get(6..).unwrap_or(&[]),
                    origin_at,
                    Some(zone.origin_wire()),
                )?;
                at
            }
            _ => {
                w.put(e.rdata)?;
                rdata_at
            }
        };
        let rdlen = (w.len() - rdata_at) as u16;
        w.patch16(len_at, rdlen);
        Ok(target_at)
    }

    /// Writes entries `s..e` as one RRset, all or nothing.
    fn rrset<S: AsRef<[u8]>>(
        &mut self,
        zone: &Zone<S>,
        s: usize,
        e: usize,
        owner_at: usize,
        origin_at: usize,
        targets: &mut [u16],
    ) -> Result<(), Error> {
        let before = self.w.len();
        for i in s..e {
            match self.record(zone, &zone.entry(i), owner_at, origin_at) {
                Ok(at) => {
                    if let Some(t) = targets.get_mut(i - s) {
                        *t = at as u16;
                    }
                }
                Err(err) => {
                    self.w.truncate(before);
                    return Err(err);
                }
            }
        }
        self.an += (e - s) as u16;
        Ok(())
    }

    /// The A and AAAA RRsets of the in-zone SRV targets, as many whole RRsets as fit.
    /// `targets[j]` is where the target of SRV entry `s + j` was written.
    fn srv_additional<S: AsRef<[u8]>>(
        &mut self,
        zone: &Zone<S>,
        s: usize,
        e: usize,
        targets: &[u16],
    ) {
        for (j, i) in (s..e).enumerate() {
            let en = zone.entry(i);
            let t = en.rdata.get(6..).unwrap_or(&[]);
            let (Some(&at), Some(1)) = (targets.get(j), t.first()) else {
                continue;
            };
            if (s..i).any(|o| zone.entry(o).rdata.get(6..) == Some(t)) {
                continue;
            }
            let mut buf = Scratch::new();
            let Some(key) = key_in(&mut buf, &t[1..t.len() - 1]) else {
                continue;
            };
            let Found::Records(a, b) = zone.find(key) else {
                continue;
            };
            for want in [rtype::A, rtype::AAAA] {
                let mut x = a;
                while x < b && zone.entry(x).rtype != want {
                    x += 1;
                }
                let mut y = x;
                while y < b && zone.entry(y).rtype == want {
                    y += 1;
                }
                let before = self.w.len();
                for r in x..y {
                    if self.record(zone, &zone.entry(r), at as usize, 0).is_err() {
                        self.w.truncate(before);
                        return;
                    }
                }
                self.ar += (y - x) as u16;
            }
        }
    }

    /// NODATA / NXDOMAIN: the SOA in the authority section, TC when it does not fit.
    fn soa_authority<S: AsRef<[u8]>>(&mut self, zone: &Zone<S>, origin_at: usize) {
        // RFC 2308: min(SOA TTL, SOA minimum); both are the payload's ttl, so that is it.
        let ttl = zone.ttl();
        if self.soa(zone, origin_at, ttl).is_err() {
            self.flags |= flags::TC;
        } else {
            self.ns += 1;
        }
    }

    fn soa<S: AsRef<[u8]>>(
        &mut self,
        zone: &Zone<S>,
        origin_at: usize,
        ttl: u32,
    ) -> Result<(), Error> {
        self.soa_with(origin_at, ttl, zone.serial(), zone.ttl())
    }

    /// The SOA record: `ttl` its TTL, `serial`, and `minimum` (the zone's TTL).
    fn soa_with(
        &mut self,
        origin_at: usize,
        ttl: u32,
        serial: u32,
        minimum: u32,
    ) -> Result<(), Error> {
        let before = self.w.len();
        let r = (|| {
            let w = &mut self.w;
            w.pointer(origin_at)?;
            w.u16(rtype::SOA)?;
            w.u16(CLASS_IN)?;
            w.u32(ttl)?;
            w.u16(3 + 2 + 11 + 2 + 20)?;
            w.labels_then_pointer(b"\x02ns", origin_at)?;
            w.labels_then_pointer(b"\x0ahostmaster", origin_at)?;
            w.u32(serial)?;
            w.u32(SOA_REFRESH)?;
            w.u32(SOA_RETRY)?;
            w.u32(SOA_EXPIRE)?;
            w.u32(minimum)
        })();
        if r.is_err() {
            self.w.truncate(before);
        }
        r
    }

    fn ns_record<S: AsRef<[u8]>>(&mut self, zone: &Zone<S>, origin_at: usize) -> Result<(), Error> {
        self.ns_with(origin_at, zone.ttl())
    }

    fn ns_with(&mut self, origin_at: usize, ttl: u32) -> Result<(), Error> {
        let before = self.w.len();
        let r = (|| {
            let w = &mut self.w;
            w.pointer(origin_at)?;
            w.u16(rtype::NS)?;
            w.u16(CLASS_IN)?;
            w.u32(ttl)?;
            w.u16(5)?;
            w.labels_then_pointer(b"\x02ns", origin_at)
        })();
        if r.is_err() {
            self.w.truncate(before);
        }
        r
    }
}

/// Writes a stored target: in-zone names as labels and then either a pointer to the origin in
/// the question (`zone` None: compressed) or the origin's labels (`zone` Some: uncompressed,
/// for SRV); outside names in full.
fn write_target(
    w: &mut Writer<'_>,
    t: &[u8],
    origin_at: usize,
    uncompressed: Option<&[u8]>,
) -> Result<(), Error> {
    match t.split_first() {
        Some((1, rest)) => {
            let labels = &rest[..rest.len().saturating_sub(1)];
            match uncompressed {
                Some(origin) => {
                    w.put(labels)?;
                    w.put(origin)
                }
                None => w.labels_then_pointer(labels, origin_at),
            }
        }
        Some((_, rest)) => w.put(rest),
        None => w.put(&[0]),
    }
}

// ---------------------------------------------------------------------------------------
// The v2 zone (`docs/payload-v2.md`): names, the pick, SRV sets in full.

/// TXT at the apex, as v1 zones carry it.
const APEX_TXT: &[u8] = b"\x0fsdwan-discovery";

/// A v2 zone and the health bitmap the pick reads.
struct V2<'a, H> {
    zone: &'a ZoneV2<H>,
    health: Health<'a>,
}

/// The node a name answers with, or that every candidate is down and the policy is to fail
/// closed.
fn usable(pick: Option<(u16, bool)>, health: Health<'_>, ttl: u32) -> Option<Name2<'static>> {
    let (s, down) = pick?;
    Some(if health.fail_closed() && down {
        Name2::AllDown
    } else {
        Name2::Node(s, ttl)
    })
}

/// What a v2 name is.
enum Name2<'a> {
    Apex,
    /// Addresses of node `slot`, with TTL.
    Node(u16, u32),
    /// A name with no records but names below it.
    EmptyNonTerminal,
    /// The SRV set of a service's port: (service, port index).
    Srv(crate::v2zone::ServiceView<'a>, usize),
    NxDomain,
    /// Every candidate is down and the agent fails closed.
    AllDown,
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> V2<'_, H> {
    /// A TTL as answered: capped at [`STALE_TTL`] while stale (RFC 8767).
    fn ttl(&self, ttl: u32) -> u32 {
        if self.health.stale() {
            ttl.min(STALE_TTL)
        } else {
            ttl
        }
    }

    /// Finds what the lower-case relative `labels` (innermost first) name.
    fn name<'b>(&'b self, labels: &[&[u8]]) -> Name2<'b> {
        let z = self.zone;
        let Some(h) = z.header() else {
            return Name2::NxDomain;
        };
        let (ttl, sttl) = (self.ttl(h.ttl), self.ttl(h.service_ttl));
        let health = self.health;
        match *labels {
            [] => Name2::Apex,
            [l] => {
                if l == h.local.as_str().as_bytes() {
                    if let Some(n) = usable(z.pick_local(health), health, ttl) {
                        return n;
                    }
                }
                if let Some(s) = z.lookup_node(l) {
                    return Name2::Node(s, ttl);
                }
                if let Some(svc) = z.lookup_short(l) {
                    let health = health.for_service(svc.index());
                    if let Some(n) = usable(z.pick(svc.hosts(), health), health, sttl) {
                        return n;
                    }
                }
                if z.namespace_answers(l) {
                    return Name2::EmptyNonTerminal;
                }
                Name2::NxDomain
            }
            [name, ns] => {
                let pick = z
                    .lookup_service(ns, name)
                    .and_then(|svc| z.pick(svc.hosts(), health.for_service(svc.index())));
                usable(pick, health, sttl).unwrap_or(Name2::NxDomain)
            }
            [proto, name, ns] => {
                let has = z.lookup_service(ns, name).is_some_and(|svc| {
                    svc.has_srv() && svc.ports().any(|p| proto_label(p.proto) == proto)
                });
                if has {
                    Name2::EmptyNonTerminal
                } else {
                    Name2::NxDomain
                }
            }
            [port, proto, name, ns] => {
                let Some(svc) = z.lookup_service(ns, name).filter(|s| s.has_srv()) else {
                    return Name2::NxDomain;
                };
                let at = port.strip_prefix(b"_").and_then(|label| {
                    svc.ports()
                        .position(|p| p.label == label && proto_label(p.proto) == proto)
                });
                match at {
                    Some(i) => Name2::Srv(svc, i),
                    None => Name2::NxDomain,
                }
            }
            _ => Name2::NxDomain,
        }
    }
}

fn proto_label(p: sdwan_contract::v2::Proto) -> &'static [u8] {
    match p {
        sdwan_contract::v2::Proto::Tcp => b"_tcp",
        sdwan_contract::v2::Proto::Udp => b"_udp",
    }
}

impl<H: AsRef<[u8]> + AsMut<[u8]>> Source for V2<'_, H> {
    fn origin_wire(&self) -> &[u8] {
        self.zone.origin_wire()
    }

    fn ede(&self) -> Option<u16> {
        self.health.stale().then_some(EDE_STALE)
    }

    fn respond(&self, r: &mut Response<'_>, rel: &[u8], qtype: u16, origin_at: usize) -> u16 {
        let Some(h) = self.zone.header() else {
            return rcode::REFUSED;
        };
        let (ttl, serial) = (
            self.ttl(h.ttl),
            self.zone.held().map_or(0, |x| x.version.0 as u32),
        );
        // Lower-case labels, innermost first; at most 4 name anything.
        let mut scratch_buf = Scratch::new();
        let Some(buf) = scratch(&mut scratch_buf, rel.len()) else {
            // Not reached: a name is at most 255 octets.
            return rcode::REFUSED;
        };
        let mut bounds = [(0usize, 0usize); 5];
        let mut n = 0;
        let mut p = 0;
        let mut bad = false;
        while p < rel.len() {
            let l = usize::from(rel[p]);
            let Some(label) = rel.get(p + 1..p + 1 + l) else {
                bad = true;
                break;
            };
            for (i, &c) in label.iter().enumerate() {
                if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
                    bad = true;
                }
                buf[p + 1 + i] = c.to_ascii_lowercase();
            }
            if n < bounds.len() {
                bounds[n] = (p + 1, p + 1 + l);
            }
            n += 1;
            p += 1 + l;
        }
        let name = if bad || n > 4 {
            Name2::NxDomain
        } else {
            let mut labels: [&[u8]; 4] = [&[]; 4];
            for (i, &(a, b)) in bounds[..n].iter().enumerate() {
                labels[i] = &buf[a..b];
            }
            self.name(&labels[..n])
        };
        let negative = |r: &mut Response<'_>, code| {
            if r.soa_with(origin_at, ttl, serial, ttl).is_err() {
                r.flags |= flags::TC;
            } else {
                r.ns += 1;
            }
            code
        };
        let owner_at = wire::field::HEADER_END;
        match name {
            Name2::NxDomain => negative(r, rcode::NXDOMAIN),
            Name2::AllDown => {
                r.ede = Some(EDE_NETWORK_ERROR);
                rcode::SERVFAIL
            }
            Name2::EmptyNonTerminal => negative(r, rcode::NOERROR),
            Name2::Apex => {
                let res = match qtype {
                    rtype::SOA | rtype::ANY => r.soa_with(origin_at, ttl, serial, ttl),
                    rtype::NS => r.ns_with(origin_at, ttl),
                    rtype::TXT => r.rr(owner_at, rtype::TXT, ttl, APEX_TXT),
                    _ => return negative(r, rcode::NOERROR),
                };
                match res {
                    Ok(()) => r.an += 1,
                    Err(_) => r.flags |= flags::TC,
                }
                rcode::NOERROR
            }
            Name2::Node(slot, rttl) => {
                let Some(node) = self.zone.node(slot) else {
                    return negative(r, rcode::NOERROR);
                };
                let v4 = node.v4.filter(|_| h.family != Family::Ipv6);
                let v6 = node.v6.filter(|_| h.family != Family::Ipv4);
                let res = match (qtype, v4, v6) {
                    (rtype::A | rtype::ANY, Some(a), _) => r.rr(owner_at, rtype::A, rttl, &a),
                    (rtype::AAAA, _, Some(a)) | (rtype::ANY, None, Some(a)) => {
                        r.rr(owner_at, rtype::AAAA, rttl, &a)
                    }
                    _ => return negative(r, rcode::NOERROR),
                };
                match res {
                    Ok(()) => r.an += 1,
                    Err(_) => r.flags |= flags::TC,
                }
                rcode::NOERROR
            }
            Name2::Srv(svc, port) => {
                if qtype != rtype::SRV && qtype != rtype::ANY {
                    return negative(r, rcode::NOERROR);
                }
                let health = self.health.for_service(svc.index());
                let all_down = svc
                    .hosts()
                    .enumerate()
                    .filter(|&(_, s)| {
                        self.zone
                            .node(s)
                            .is_some_and(|n| n.named() && n.candidate())
                    })
                    .all(|(k, s)| health.is_down_at(k, s));
                if all_down && health.fail_closed() {
                    r.ede = Some(EDE_NETWORK_ERROR);
                    return rcode::SERVFAIL;
                }
                let ttls = (self.ttl(h.service_ttl), ttl);
                r.srv_set(self.zone, &svc, port, ttls, h.family, owner_at, &health);
                rcode::NOERROR
            }
        }
    }
}

use sdwan_contract::v2::Family;

impl Response<'_> {
    /// One record with a compressed owner and plain rdata.
    fn rr(&mut self, owner_at: usize, t: u16, ttl: u32, rdata: &[u8]) -> Result<(), Error> {
        let before = self.w.len();
        let r = (|| {
            let w = &mut self.w;
            w.pointer(owner_at)?;
            w.u16(t)?;
            w.u16(CLASS_IN)?;
            w.u32(ttl)?;
            w.u16(rdata.len() as u16)?;
            w.put(rdata)
        })();
        if r.is_err() {
            self.w.truncate(before);
        }
        r
    }

    /// A service port's whole SRV set (every named candidate host, nearest first, priority
    /// its rank; the targets `health` (selected for `svc`) marks down come last, after the up ones, still in
    /// nearness order, so priority is the position in the set), all or nothing (TC), then
    /// the targets' addresses in the additional section, as many whole RRsets as fit.
    /// `ttls`: the SRV records' and the addresses'.
    #[allow(clippy::too_many_arguments)]
    fn srv_set<H: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        zone: &ZoneV2<H>,
        svc: &crate::v2zone::ServiceView<'_>,
        port: usize,
        ttls: (u32, u32),
        family: Family,
        owner_at: usize,
        health: &Health<'_>,
    ) {
        let Some(p) = svc.ports().nth(port) else {
            return;
        };
        let (ttl, addr_ttl) = ttls;
        let origin = zone.origin_wire();
        // The targets' slots (slots, not node views, go through the adapters: at opt-level
        // "z" every view moved through one is a memcpy call).
        let targets = || {
            [false, true].into_iter().flat_map(move |down| {
                svc.hosts()
                    .enumerate()
                    .filter(move |&(k, s)| health.is_down_at(k, s) == down)
                    .map(|(_, s)| s)
                    .filter(|&s| zone.node(s).is_some_and(|n| n.named() && n.candidate()))
            })
        };
        let before = self.w.len();
        let mut count = 0u16;
        for (prio, n) in targets().filter_map(|s| zone.node(s)).enumerate() {
            let res = (|| {
                let w = &mut self.w;
                w.pointer(owner_at)?;
                w.u16(rtype::SRV)?;
                w.u16(CLASS_IN)?;
                w.u32(ttl)?;
                w.u16((6 + 1 + n.name.len() + origin.len()) as u16)?;
                w.u16(prio.min(usize::from(u16::MAX)) as u16)?;
                w.u16(0)?;
                w.u16(p.node_port)?;
                w.put(&[n.name.len() as u8])?;
                w.put(n.name)?;
                w.put(origin)
            })();
            if res.is_err() {
                self.w.truncate(before);
                self.flags |= flags::TC;
                return;
            }
            count = count.saturating_add(1);
        }
        self.an = self.an.saturating_add(count);
        // Additional: each target's A and AAAA under the policy; the owner points at the
        // target name in its SRV record (records have a known length).
        let mut at = before;
        for n in targets().filter_map(|s| zone.node(s)) {
            let target_at = at + 2 + 10 + 6;
            at = target_at + 1 + n.name.len() + origin.len();
            let v4 = n.v4.filter(|_| family != Family::Ipv6);
            let v6 = n.v6.filter(|_| family != Family::Ipv4);
            if let Some(a) = v4 {
                if self.rr(target_at, rtype::A, addr_ttl, &a).is_err() {
                    return;
                }
                self.ar += 1;
            }
            if let Some(a) = v6 {
                if self.rr(target_at, rtype::AAAA, addr_ttl, &a).is_err() {
                    return;
                }
                self.ar += 1;
            }
        }
    }
}
