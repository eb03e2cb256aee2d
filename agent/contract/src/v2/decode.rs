//! The agent's decoder: one v2 message (`docs/payload-v2.md`) through [`crate::json::check`],
//! then read without a heap and without recursion, every field checked against its rule,
//! and its items handed to a [`Visitor`] in the order they are to be applied. A message with
//! anything the schema does not have is refused whole ([`Error`]); the visitor then may have
//! seen some items, so an agent stages what it is given and commits only on `Ok`.
//!
//! ```
//! use sdwan_contract::v2::decode::{decode, Scratch, Visitor};
//! use sdwan_contract::v2::{Kind, ServiceRef};
//!
//! struct Count(usize);
//! impl Visitor for Count {
//!     fn service(&mut self, _: &ServiceRef<'_>) -> Result<(), &'static str> {
//!         self.0 += 1;
//!         Ok(())
//!     }
//! }
//! let msg = br#"{"schema":2,"kind":"delta","gateway":"gw-1","base":1,"version":2,
//!   "digest":"0000000000000000","set":[{"ns":"default","name":"web","hosts":"0"}]}"#;
//! let mut scratch = Scratch::new();
//! let mut count = Count(0);
//! let env = decode(msg, &mut scratch, &mut count).unwrap();
//! assert_eq!((env.kind, count.0), (Kind::Delta, 1));
//! ```

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use super::read::{Reader, Token};
use super::{
    is_gateway_id, is_label, Digest, Family, Kind, Node, Port, ServiceRef, Str, Tier, Version,
    ZoneHeader, JSON_LIMITS, MAX_GATEWAY, MAX_NODES, MAX_NODE_NAME, MAX_PARTS, MAX_PORTS,
    MAX_SUFFIX, MAX_TTL, SCHEMA,
};
use crate::json;

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Refused by the JSON door (size, depth, syntax, UTF-8, control characters).
    Json(json::ErrorKind),
    /// Bytes the door did not pass reached the reader (only when [`decode_checked`] is given
    /// unchecked bytes).
    Syntax,
    /// The document is not an object.
    NotObject,
    /// `schema` is not 2 (checked before anything else).
    UnsupportedSchema(u64),
    /// `kind` is not `part`, `delta` or `notice`.
    UnknownKind,
    /// A field the schema does not have, here (offset: its key).
    UnknownField,
    /// A field given twice in one object.
    DuplicateField(&'static str),
    /// A required field is missing.
    MissingField(&'static str),
    /// A field of another kind of message.
    FieldNotForKind(&'static str),
    /// A value of the wrong JSON type.
    WrongType(&'static str),
    /// A number that is negative, has a fraction or an exponent.
    BadNumber(&'static str),
    /// A number above the field's limit.
    OutOfRange(&'static str),
    /// A string longer than the field allows.
    TooLong(&'static str),
    /// A value that breaks the field's rule (an id rule, an address, a port, a tier, ...).
    Invalid(&'static str),
    /// Items of an array that must be strictly ascending are not.
    NotAscending(&'static str),
    /// More items than the limit.
    TooMany(&'static str),
    /// A node slot or host index at or beyond the number of node slots.
    IndexOutOfRange(&'static str),
    /// The visitor refused an item (its reason).
    Refused(&'static str),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            Json(k) => write!(f, "{}", k.as_str()),
            Syntax => f.write_str("invalid JSON"),
            NotObject => f.write_str("not a JSON object"),
            UnsupportedSchema(s) => write!(f, "unsupported schema {s} (this agent reads 2)"),
            UnknownKind => f.write_str("unknown kind (expected part, delta or notice)"),
            UnknownField => f.write_str("unknown field"),
            DuplicateField(n) => write!(f, "duplicate field `{n}`"),
            MissingField(n) => write!(f, "missing field `{n}`"),
            FieldNotForKind(n) => write!(f, "field `{n}` does not belong in this kind"),
            WrongType(n) => write!(f, "field `{n}`: wrong type"),
            BadNumber(n) => write!(f, "field `{n}`: not a non-negative integer"),
            OutOfRange(n) => write!(f, "field `{n}`: out of range"),
            TooLong(n) => write!(f, "field `{n}`: too long"),
            Invalid(n) => write!(f, "field `{n}`: invalid value"),
            NotAscending(n) => write!(f, "field `{n}`: not strictly ascending"),
            TooMany(n) => write!(f, "field `{n}`: too many items"),
            IndexOutOfRange(n) => write!(f, "field `{n}`: node index out of range"),
            Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// A refused message: what and where (byte offset of the value or key found wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Where.
    pub offset: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

pub(super) fn e(p: (ErrorKind, usize)) -> Error {
    Error {
        kind: p.0,
        offset: p.1,
    }
}

/// The fields of a message besides its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// The kind.
    pub kind: Kind,
    /// The gateway (or worker) the message is for.
    pub gateway: Str<MAX_GATEWAY>,
    /// The version of the snapshot, the version a delta makes, the version a notice announces.
    pub version: Version,
    /// The digest of the content at `version`.
    pub digest: Digest,
    /// A delta's base version.
    pub base: Option<Version>,
    /// A part's index (0 for other kinds).
    pub part: u8,
    /// A part's count of parts (0 for other kinds).
    pub parts: u8,
    /// A part's zone settings.
    pub zone: Option<ZoneHeader>,
    /// A part's first node slot.
    pub first_node: u16,
}

/// Receives the items of a message, in the order they are to be applied. Every method
/// defaults to accepting; an `Err` stops the decoding with [`ErrorKind::Refused`].
pub trait Visitor {
    /// The envelope, before any item.
    fn envelope(&mut self, _env: &Envelope) -> Result<(), &'static str> {
        Ok(())
    }
    /// A part's node slot (`None`: an empty slot).
    fn node(&mut self, _index: u16, _node: Option<&Node>) -> Result<(), &'static str> {
        Ok(())
    }
    /// A delta's `node_drop` item.
    fn node_drop(&mut self, _index: u16) -> Result<(), &'static str> {
        Ok(())
    }
    /// A delta's `node_set` item.
    fn node_set(&mut self, _index: u16, _node: &Node) -> Result<(), &'static str> {
        Ok(())
    }
    /// A delta's `del` item.
    fn service_del(&mut self, _ns: &str, _name: &str) -> Result<(), &'static str> {
        Ok(())
    }
    /// A part's service, or a delta's `set` item.
    fn service(&mut self, _s: &ServiceRef<'_>) -> Result<(), &'static str> {
        Ok(())
    }
    /// A delta's `hosts` item.
    fn hosts(
        &mut self,
        _ns: &str,
        _name: &str,
        _add: &[u16],
        _del: &[u16],
    ) -> Result<(), &'static str> {
        Ok(())
    }
}

/// A visitor that sums the digest of the parts it is shown (the header once, from part 0):
/// over all parts of a snapshot it is the snapshot's digest, computed without a heap.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartDigest {
    /// The sum so far.
    pub sum: Digest,
    /// Node slots seen (present or empty).
    pub nodes: u16,
}

impl Visitor for PartDigest {
    fn envelope(&mut self, env: &Envelope) -> Result<(), &'static str> {
        if let (Kind::Part, 0, Some(z)) = (env.kind, env.part, env.zone) {
            self.sum = self
                .sum
                .with(super::digest::header_hash(env.gateway.as_str(), &z));
        }
        Ok(())
    }
    fn node(&mut self, index: u16, node: Option<&Node>) -> Result<(), &'static str> {
        self.nodes = self.nodes.saturating_add(1);
        if let Some(n) = node {
            self.sum = self.sum.with(super::digest::node_hash(index, n));
        }
        Ok(())
    }
    fn service(&mut self, s: &ServiceRef<'_>) -> Result<(), &'static str> {
        self.sum = self.sum.with(super::digest::service_hash(s));
        Ok(())
    }
}

/// Working memory of the decoder (~17 KB), given by the caller so that it need not be on a
/// small stack; reusable.
#[derive(Debug, Clone)]
pub struct Scratch {
    ports: [Port; MAX_PORTS],
    hosts: [u16; MAX_NODES],
    del: [u16; MAX_NODES],
}

impl Scratch {
    /// Fresh scratch memory.
    pub fn new() -> Scratch {
        Scratch {
            ports: [Port {
                label: Str::EMPTY,
                proto: super::Proto::Tcp,
                node_port: 1,
            }; MAX_PORTS],
            hosts: [0; MAX_NODES],
            del: [0; MAX_NODES],
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// The top-level fields, in the order of [`FIELDS`].
const FIELDS: [&str; 17] = [
    "schema",
    "kind",
    "gateway",
    "version",
    "digest",
    "base",
    "part",
    "parts",
    "zone",
    "first_node",
    "nodes",
    "services",
    "node_drop",
    "node_set",
    "del",
    "set",
    "hosts",
];

const F_SCHEMA: usize = 0;
const F_KIND: usize = 1;
const F_GATEWAY: usize = 2;
const F_VERSION: usize = 3;
const F_DIGEST: usize = 4;
const F_BASE: usize = 5;
const F_PART: usize = 6;
const F_PARTS: usize = 7;
const F_ZONE: usize = 8;
const F_FIRST: usize = 9;
const F_NODES: usize = 10;
const F_SERVICES: usize = 11;
const F_NODE_DROP: usize = 12;
const F_NODE_SET: usize = 13;
const F_DEL: usize = 14;
const F_SET: usize = 15;
const F_HOSTS: usize = 16;

/// Which fields a kind requires and allows (bit `i` = `FIELDS[i]`).
fn fields_of(kind: Kind) -> (u32, u32) {
    let common = 1 << F_SCHEMA | 1 << F_KIND | 1 << F_GATEWAY | 1 << F_VERSION | 1 << F_DIGEST;
    match kind {
        Kind::Part => {
            let req = common
                | 1 << F_PART
                | 1 << F_PARTS
                | 1 << F_ZONE
                | 1 << F_FIRST
                | 1 << F_NODES
                | 1 << F_SERVICES;
            (req, req)
        }
        Kind::Delta => (
            common | 1 << F_BASE,
            common
                | 1 << F_BASE
                | 1 << F_NODE_DROP
                | 1 << F_NODE_SET
                | 1 << F_DEL
                | 1 << F_SET
                | 1 << F_HOSTS,
        ),
        Kind::Notice => (common, common),
    }
}

/// Checks `msg` at the JSON door ([`super::JSON_LIMITS`]), then decodes it.
pub fn decode(msg: &[u8], scratch: &mut Scratch, v: &mut impl Visitor) -> Result<Envelope, Error> {
    json::check(msg, JSON_LIMITS).map_err(|j| Error {
        kind: ErrorKind::Json(j.kind),
        offset: j.offset,
    })?;
    decode_checked(msg, scratch, v)
}

/// Decodes a message that already passed [`json::check`] with [`super::JSON_LIMITS`]. Given
/// other bytes it still never panics (it refuses them with [`ErrorKind::Syntax`] or another
/// error), but only the door's check makes the refusal complete.
pub fn decode_checked(
    msg: &[u8],
    scratch: &mut Scratch,
    v: &mut impl Visitor,
) -> Result<Envelope, Error> {
    // Pass 1: where each top-level field's value starts.
    let mut at = [usize::MAX; 17];
    let mut r = Reader::new(msg, 0);
    if r.peek().map_err(e)? != Token::Object {
        return Err(Error {
            kind: ErrorKind::NotObject,
            offset: r.pos,
        });
    }
    r.object("").map_err(e)?;
    let mut first = true;
    let mut keybuf = [0u8; 16];
    let mut problem: Option<Error> = None;
    loop {
        let key_at = r.pos;
        let Some(key) = r.key(&mut first, &mut keybuf).map_err(e)? else {
            break;
        };
        match FIELDS.iter().position(|f| *f == key) {
            Some(i) if at[i] == usize::MAX => {
                r.peek().map_err(e)?;
                at[i] = r.pos;
            }
            Some(i) => {
                problem.get_or_insert(Error {
                    kind: ErrorKind::DuplicateField(FIELDS[i]),
                    offset: key_at,
                });
            }
            None => {
                problem.get_or_insert(Error {
                    kind: ErrorKind::UnknownField,
                    offset: key_at,
                });
            }
        }
        r.skip().map_err(e)?;
    }
    // Nothing but white space after the document.
    let end = r.pos;
    if msg
        .get(end..)
        .is_some_and(|t| t.iter().any(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r')))
    {
        return Err(Error {
            kind: ErrorKind::Syntax,
            offset: end,
        });
    }

    let field =
        |i: usize| -> Option<Reader<'_>> { (at[i] != usize::MAX).then(|| Reader::new(msg, at[i])) };
    let missing = |i: usize| Error {
        kind: ErrorKind::MissingField(FIELDS[i]),
        offset: 0,
    };

    // The schema first, whatever else the document holds.
    let mut fr = field(F_SCHEMA).ok_or(missing(F_SCHEMA))?;
    let schema = fr.uint("schema", u64::MAX).map_err(e)?;
    if schema != SCHEMA {
        return Err(Error {
            kind: ErrorKind::UnsupportedSchema(schema),
            offset: at[F_SCHEMA],
        });
    }
    if let Some(p) = problem {
        return Err(p);
    }
    let mut fr = field(F_KIND).ok_or(missing(F_KIND))?;
    let mut buf = [0u8; 256];
    let kind = match fr.string(&mut buf, "kind").map_err(e)? {
        "part" => Kind::Part,
        "delta" => Kind::Delta,
        "notice" => Kind::Notice,
        _ => {
            return Err(Error {
                kind: ErrorKind::UnknownKind,
                offset: at[F_KIND],
            })
        }
    };
    let (required, allowed) = fields_of(kind);
    for (i, &a) in at.iter().enumerate() {
        if a != usize::MAX && allowed & (1 << i) == 0 {
            return Err(Error {
                kind: ErrorKind::FieldNotForKind(FIELDS[i]),
                offset: a,
            });
        }
        if a == usize::MAX && required & (1 << i) != 0 {
            return Err(missing(i));
        }
    }

    let mut env = Envelope {
        kind,
        gateway: Str::EMPTY,
        version: Version(0),
        digest: Digest::ZERO,
        base: None,
        part: 0,
        parts: 0,
        zone: None,
        first_node: 0,
    };
    let mut fr = field(F_GATEWAY).ok_or(missing(F_GATEWAY))?;
    let g = fr.string(&mut buf, "gateway").map_err(e)?;
    env.gateway = Str::new(g).filter(|_| is_gateway_id(g)).ok_or(Error {
        kind: ErrorKind::Invalid("gateway"),
        offset: at[F_GATEWAY],
    })?;
    let mut fr = field(F_VERSION).ok_or(missing(F_VERSION))?;
    env.version = Version(fr.uint("version", u64::MAX).map_err(e)?);
    let mut fr = field(F_DIGEST).ok_or(missing(F_DIGEST))?;
    let d = fr.string(&mut buf, "digest").map_err(e)?;
    env.digest = Digest::parse_hex(d).ok_or(Error {
        kind: ErrorKind::Invalid("digest"),
        offset: at[F_DIGEST],
    })?;
    if let Some(mut fr) = field(F_BASE) {
        let base = Version(fr.uint("base", u64::MAX).map_err(e)?);
        if !env.version.is_newer_than(base) {
            return Err(Error {
                kind: ErrorKind::Invalid("version"),
                offset: at[F_VERSION],
            });
        }
        env.base = Some(base);
    }
    if kind == Kind::Part {
        let mut fr = field(F_PARTS).ok_or(missing(F_PARTS))?;
        let parts = fr.uint("parts", MAX_PARTS as u64).map_err(e)?;
        if parts == 0 {
            return Err(Error {
                kind: ErrorKind::OutOfRange("parts"),
                offset: at[F_PARTS],
            });
        }
        let mut fr = field(F_PART).ok_or(missing(F_PART))?;
        let part = fr.uint("part", parts - 1).map_err(e)?;
        env.parts = parts as u8;
        env.part = part as u8;
        let mut fr = field(F_ZONE).ok_or(missing(F_ZONE))?;
        let zone = zone_header(&mut fr)?;
        let mut fr = field(F_FIRST).ok_or(missing(F_FIRST))?;
        env.first_node = fr.uint("first_node", u64::from(zone.nodes)).map_err(e)? as u16;
        env.zone = Some(zone);
    }
    v.envelope(&env).map_err(|why| Error {
        kind: ErrorKind::Refused(why),
        offset: 0,
    })?;

    let refused = |why, offset| Error {
        kind: ErrorKind::Refused(why),
        offset,
    };
    match kind {
        Kind::Notice => {}
        Kind::Part => {
            let zone = env.zone.unwrap_or(ZoneHeader {
                suffix: Str::EMPTY,
                local: Str::EMPTY,
                ttl: 0,
                service_ttl: 0,
                family: Family::Dual,
                nodes: 0,
                probe: None,
            });
            // Nodes: consecutive slots from first_node, tiers never going back.
            let mut r = field(F_NODES).ok_or(missing(F_NODES))?;
            r.array("nodes").map_err(e)?;
            let mut first = true;
            let mut index = usize::from(env.first_node);
            let mut last_tier = Tier::Near;
            while r.next(&mut first).map_err(e)? {
                let item_at = r.pos;
                if index >= usize::from(zone.nodes) {
                    return Err(Error {
                        kind: ErrorKind::IndexOutOfRange("nodes"),
                        offset: item_at,
                    });
                }
                if r.null() {
                    v.node(index as u16, None)
                        .map_err(|w| refused(w, item_at))?;
                } else {
                    let (node, _) = node(&mut r, false)?;
                    if node.tier < last_tier {
                        return Err(Error {
                            kind: ErrorKind::NotAscending("tier"),
                            offset: item_at,
                        });
                    }
                    last_tier = node.tier;
                    v.node(index as u16, Some(&node))
                        .map_err(|w| refused(w, item_at))?;
                }
                index += 1;
            }
            services(
                field(F_SERVICES).ok_or(missing(F_SERVICES))?,
                "services",
                usize::from(zone.nodes),
                scratch,
                v,
            )?;
        }
        Kind::Delta => {
            if let Some(mut r) = field(F_NODE_DROP) {
                let n = indices(&mut r, &mut scratch.hosts, "node_drop", MAX_NODES)?;
                for (i, &x) in scratch.hosts[..n].iter().enumerate() {
                    v.node_drop(x)
                        .map_err(|w| refused(w, at[F_NODE_DROP] + i))?;
                }
            }
            if let Some(mut r) = field(F_NODE_SET) {
                r.array("node_set").map_err(e)?;
                let mut first = true;
                let mut prev: Option<u16> = None;
                while r.next(&mut first).map_err(e)? {
                    let item_at = r.pos;
                    let (node, index) = node(&mut r, true)?;
                    if prev.is_some_and(|p| p >= index) {
                        return Err(Error {
                            kind: ErrorKind::NotAscending("node_set"),
                            offset: item_at,
                        });
                    }
                    prev = Some(index);
                    v.node_set(index, &node).map_err(|w| refused(w, item_at))?;
                }
            }
            if let Some(mut r) = field(F_DEL) {
                r.array("del").map_err(e)?;
                let mut first = true;
                let mut prev = Key::default();
                while r.next(&mut first).map_err(e)? {
                    let item_at = r.pos;
                    let k = key_object(&mut r, "del", &mut scratch.hosts, &mut scratch.del)?;
                    k.key.after(&mut prev, "del", item_at)?;
                    v.service_del(k.key.ns.as_str(), k.key.name.as_str())
                        .map_err(|w| refused(w, item_at))?;
                }
            }
            if let Some(r) = field(F_SET) {
                services(r, "set", MAX_NODES, scratch, v)?;
            }
            if let Some(mut r) = field(F_HOSTS) {
                r.array("hosts").map_err(e)?;
                let mut first = true;
                let mut prev = Key::default();
                while r.next(&mut first).map_err(e)? {
                    let item_at = r.pos;
                    let k = key_object(&mut r, "hosts", &mut scratch.hosts, &mut scratch.del)?;
                    k.key.after(&mut prev, "hosts", item_at)?;
                    v.hosts(
                        k.key.ns.as_str(),
                        k.key.name.as_str(),
                        &scratch.hosts[..k.add],
                        &scratch.del[..k.del],
                    )
                    .map_err(|w| refused(w, item_at))?;
                }
            }
        }
    }
    Ok(env)
}

/// Reads the fields of an object: calls `f(field index, reader)` for each known key, refuses
/// unknown and duplicate keys.
pub(super) fn fields<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    names: &[&'static str],
    mut f: impl FnMut(usize, &mut Reader<'a>) -> Result<(), Error>,
) -> Result<u32, Error> {
    r.object(what).map_err(e)?;
    let mut first = true;
    let mut seen = 0u32;
    let mut keybuf = [0u8; 16];
    loop {
        let key_at = r.pos;
        let Some(key) = r.key(&mut first, &mut keybuf).map_err(e)? else {
            return Ok(seen);
        };
        let Some(i) = names.iter().position(|n| *n == key) else {
            return Err(Error {
                kind: ErrorKind::UnknownField,
                offset: key_at,
            });
        };
        if seen & (1 << i) != 0 {
            return Err(Error {
                kind: ErrorKind::DuplicateField(names[i]),
                offset: key_at,
            });
        }
        seen |= 1 << i;
        f(i, r)?;
    }
}

pub(super) fn require(
    seen: u32,
    names: &[&'static str],
    required: u32,
    offset: usize,
) -> Result<(), Error> {
    for (i, n) in names.iter().enumerate() {
        if required & (1 << i) != 0 && seen & (1 << i) == 0 {
            return Err(Error {
                kind: ErrorKind::MissingField(n),
                offset,
            });
        }
    }
    Ok(())
}

pub(super) fn invalid(what: &'static str, offset: usize) -> Error {
    Error {
        kind: ErrorKind::Invalid(what),
        offset,
    }
}

fn ttl(r: &mut Reader<'_>, what: &'static str) -> Result<u32, Error> {
    Ok(r.uint(what, u64::from(MAX_TTL)).map_err(e)? as u32)
}

fn zone_header(r: &mut Reader<'_>) -> Result<ZoneHeader, Error> {
    const NAMES: [&str; 7] = [
        "suffix",
        "local",
        "ttl",
        "service_ttl",
        "family",
        "nodes",
        "probe",
    ];
    let start = r.pos;
    let mut z = ZoneHeader {
        suffix: Str::EMPTY,
        local: Str::EMPTY,
        ttl: 0,
        service_ttl: 0,
        family: Family::Dual,
        nodes: 0,
        probe: None,
    };
    let mut buf = [0u8; MAX_SUFFIX + 1];
    let seen = fields(r, "zone", &NAMES, |i, r| {
        let at = r.pos;
        match i {
            0 => {
                let s = r.string(&mut buf, "suffix").map_err(e)?;
                z.suffix = Str::new(s)
                    .filter(|_| super::is_suffix(s))
                    .ok_or(invalid("suffix", at))?;
            }
            1 => {
                let s = r.string(&mut buf, "local").map_err(e)?;
                z.local = Str::new(s)
                    .filter(|_| is_label(s))
                    .ok_or(invalid("local", at))?;
            }
            2 => z.ttl = ttl(r, "ttl")?,
            3 => z.service_ttl = ttl(r, "service_ttl")?,
            4 => {
                let s = r.string(&mut buf, "family").map_err(e)?;
                z.family = Family::parse(s).ok_or(invalid("family", at))?;
            }
            5 => z.nodes = r.uint("nodes", MAX_NODES as u64).map_err(e)? as u16,
            _ => {
                let p = r.uint("probe", u64::from(u16::MAX)).map_err(e)? as u16;
                z.probe = Some(p).filter(|&p| p != 0);
                if z.probe.is_none() {
                    return Err(invalid("probe", at));
                }
            }
        }
        Ok(())
    })?;
    require(seen, &NAMES, 0b11_1111, start)?;
    Ok(z)
}

/// A node object; with `indexed`, its `index` field too (required).
fn node(r: &mut Reader<'_>, indexed: bool) -> Result<(Node, u16), Error> {
    const NAMES: [&str; 5] = ["name", "tier", "v4", "v6", "index"];
    let start = r.pos;
    let mut n = Node {
        name: Str::EMPTY,
        tier: Tier::Other,
        v4: None,
        v6: None,
    };
    let mut index = 0u16;
    let mut buf = [0u8; MAX_NODE_NAME + 1];
    let seen = fields(r, "node", &NAMES[..4 + usize::from(indexed)], |i, r| {
        let at = r.pos;
        match i {
            0 => {
                let s = r.string(&mut buf, "name").map_err(e)?;
                n.name = Str::new(s)
                    .filter(|_| super::is_node_name(s))
                    .ok_or(invalid("name", at))?;
            }
            1 => {
                let s = r.string(&mut buf, "tier").map_err(e)?;
                n.tier = Tier::parse(s).ok_or(invalid("tier", at))?;
            }
            2 => {
                let s = r.string(&mut buf, "v4").map_err(e)?;
                n.v4 = Some(Ipv4Addr::from_str(s).map_err(|_| invalid("v4", at))?);
            }
            3 => {
                let s = r.string(&mut buf, "v6").map_err(e)?;
                n.v6 = Some(Ipv6Addr::from_str(s).map_err(|_| invalid("v6", at))?);
            }
            _ => index = r.uint("index", MAX_NODES as u64 - 1).map_err(e)? as u16,
        }
        Ok(())
    })?;
    require(seen, &NAMES, if indexed { 0b10011 } else { 0b11 }, start)?;
    if n.v4.is_none() && n.v6.is_none() {
        return Err(Error {
            kind: ErrorKind::MissingField("v4"),
            offset: start,
        });
    }
    Ok((n, index))
}

/// A list of node indices below `limit` as a string of items `N` or `A-B` (`"0-3,7,9-12"`),
/// ascending, each maximal run of consecutive indices written as one range, expanded into
/// `out`; returns the count.
pub(super) fn indices(
    r: &mut Reader<'_>,
    out: &mut [u16; MAX_NODES],
    what: &'static str,
    limit: usize,
) -> Result<usize, Error> {
    let (text, at) = r.raw_string(what).map_err(e)?;
    let err = |kind, off: usize| Error {
        kind,
        offset: at + off,
    };
    let mut n = 0usize;
    let mut i = 0usize;
    // The end of the previous item, for "ascending with a gap".
    let mut prev: Option<usize> = None;
    while i < text.len() {
        let item = i;
        let num = |i: &mut usize| -> Result<usize, Error> {
            let s = *i;
            while text.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            let digits = text.get(s..*i).unwrap_or(&[]);
            if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
                return Err(err(ErrorKind::Invalid(what), s));
            }
            if digits.len() > 4 {
                return Err(err(ErrorKind::OutOfRange(what), s));
            }
            let v = digits
                .iter()
                .fold(0usize, |v, d| v * 10 + usize::from(d - b'0'));
            if v >= MAX_NODES {
                return Err(err(ErrorKind::OutOfRange(what), s));
            }
            Ok(v)
        };
        let a = num(&mut i)?;
        let b = if text.get(i) == Some(&b'-') {
            i += 1;
            let b = num(&mut i)?;
            if b <= a {
                return Err(err(ErrorKind::NotAscending(what), item));
            }
            b
        } else {
            a
        };
        match text.get(i) {
            None => {}
            Some(b',') if i + 1 < text.len() => i += 1,
            Some(_) => return Err(err(ErrorKind::Invalid(what), i)),
        }
        // Strictly ascending, and adjacent items are one range (one way to write a list).
        if prev.is_some_and(|p| a <= p + 1) {
            return Err(err(ErrorKind::NotAscending(what), item));
        }
        if b >= limit {
            return Err(err(ErrorKind::IndexOutOfRange(what), item));
        }
        prev = Some(b);
        for x in a..=b {
            // Ascending below MAX_NODES: at most MAX_NODES items.
            let Some(slot) = out.get_mut(n) else {
                return Err(err(ErrorKind::TooMany(what), item));
            };
            *slot = x as u16;
            n += 1;
        }
    }
    Ok(n)
}

/// A service key, for the ascending order of arrays.
#[derive(Default)]
pub(super) struct Key {
    pub(super) ns: Str<63>,
    pub(super) name: Str<63>,
    pub(super) set: bool,
}

impl Key {
    pub(super) fn after(
        &self,
        prev: &mut Key,
        what: &'static str,
        offset: usize,
    ) -> Result<(), Error> {
        if prev.set
            && (prev.ns.as_str(), prev.name.as_str()) >= (self.ns.as_str(), self.name.as_str())
        {
            return Err(Error {
                kind: ErrorKind::NotAscending(what),
                offset,
            });
        }
        prev.ns = self.ns;
        prev.name = self.name;
        prev.set = true;
        Ok(())
    }
}

pub(super) fn label_field(r: &mut Reader<'_>, what: &'static str) -> Result<Str<63>, Error> {
    let at = r.pos;
    let mut buf = [0u8; 64];
    let s = r.string(&mut buf, what).map_err(e)?;
    Str::new(s).filter(|_| is_label(s)).ok_or(invalid(what, at))
}

/// The array of service objects `what` (a part's `services`, a delta's `set`).
fn services(
    mut r: Reader<'_>,
    what: &'static str,
    limit: usize,
    scratch: &mut Scratch,
    v: &mut impl Visitor,
) -> Result<(), Error> {
    const NAMES: [&str; 5] = ["ns", "name", "short", "ports", "hosts"];
    r.array(what).map_err(e)?;
    let mut first = true;
    let mut prev = Key::default();
    while r.next(&mut first).map_err(e)? {
        let item_at = r.pos;
        let mut key = Key::default();
        let mut short = false;
        let mut nports = 0usize;
        let mut nhosts = 0usize;
        let seen = fields(&mut r, what, &NAMES, |i, r| {
            match i {
                0 => key.ns = label_field(r, "ns")?,
                1 => key.name = label_field(r, "name")?,
                2 => short = r.boolean("short").map_err(e)?,
                3 => {
                    r.array("ports").map_err(e)?;
                    let mut first = true;
                    let mut prev = ([0u8; 24], 0usize);
                    while r.next(&mut first).map_err(e)? {
                        let at = r.pos;
                        let mut buf = [0u8; 32];
                        let s = r.string(&mut buf, "ports").map_err(e)?;
                        let p = Port::parse(s).ok_or(invalid("ports", at))?;
                        let mut o = [0u8; 24];
                        let ol = p.owner(&mut o);
                        if nports > 0 && prev.0[..prev.1] >= o[..ol] {
                            return Err(Error {
                                kind: ErrorKind::NotAscending("ports"),
                                offset: at,
                            });
                        }
                        prev = (o, ol);
                        let Some(slot) = scratch.ports.get_mut(nports) else {
                            return Err(Error {
                                kind: ErrorKind::TooMany("ports"),
                                offset: at,
                            });
                        };
                        *slot = p;
                        nports += 1;
                    }
                }
                _ => {
                    let at = r.pos;
                    nhosts = indices(r, &mut scratch.hosts, "hosts", limit)?;
                    if nhosts == 0 {
                        return Err(invalid("hosts", at));
                    }
                }
            }
            Ok(())
        })?;
        require(seen, &NAMES, 0b1_0011, item_at)?;
        key.set = true;
        key.after(&mut prev, what, item_at)?;
        let s = ServiceRef {
            ns: key.ns.as_str(),
            name: key.name.as_str(),
            short,
            ports: &scratch.ports[..nports],
            hosts: &scratch.hosts[..nhosts],
        };
        v.service(&s).map_err(|w| Error {
            kind: ErrorKind::Refused(w),
            offset: item_at,
        })?;
    }
    Ok(())
}

struct KeyObject {
    key: Key,
    add: usize,
    del: usize,
}

/// A `del` item (`ns`, `name`) or a `hosts` item (also `add` and `del`, optional).
fn key_object(
    r: &mut Reader<'_>,
    what: &'static str,
    add: &mut [u16; MAX_NODES],
    del: &mut [u16; MAX_NODES],
) -> Result<KeyObject, Error> {
    const NAMES: [&str; 4] = ["ns", "name", "add", "del"];
    let start = r.pos;
    let mut k = KeyObject {
        key: Key::default(),
        add: 0,
        del: 0,
    };
    let names = if what == "hosts" {
        &NAMES[..]
    } else {
        &NAMES[..2]
    };
    let seen = fields(r, what, names, |i, r| {
        match i {
            0 => k.key.ns = label_field(r, "ns")?,
            1 => k.key.name = label_field(r, "name")?,
            2 => k.add = indices(r, add, "add", MAX_NODES)?,
            _ => k.del = indices(r, del, "del", MAX_NODES)?,
        }
        Ok(())
    })?;
    require(seen, names, 0b11, start)?;
    // A host both added and removed: refused (the two lists are ascending: one walk).
    let (mut i, mut j) = (0, 0);
    while i < k.add && j < k.del {
        match add[i].cmp(&del[j]) {
            core::cmp::Ordering::Less => i += 1,
            core::cmp::Ordering::Greater => j += 1,
            core::cmp::Ordering::Equal => return Err(invalid("del", start)),
        }
    }
    k.key.set = true;
    Ok(k)
}

#[cfg(test)]
mod tests;
