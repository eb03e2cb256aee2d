//! Zone payload v1: the JSON document the master publishes per gateway (`docs/payload.md`).
//!
//! [`compile`] first passes the bytes through the checked door
//! ([`sdwan_contract::json::check`] with [`json::ZONE_V1`]: size, RFC 8259 syntax, nesting at
//! most 3 deep, no raw control characters in strings), so the recursive deserializer below
//! never sees nesting an attacker chose (issue 12). It then reads the document twice with
//! serde-json-core, without a heap and without holding the records: the first pass reads the
//! header fields and counts the records, the second streams the records one by one (a
//! `DeserializeSeed` over the array) and compiles each straight into the output buffer. The
//! index is then sorted in place (heap sort) into DNS canonical order and the RRsets are
//! checked (CNAME beside other data, duplicates, TTLs that differ inside an RRset, records per
//! RRset); last, CNAME chains are followed once each to refuse loops. The output layout is
//! described in [`crate::zone`].

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use sdwan_contract::json;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::zone::{entry_order, parse_entry, rtype, Entry, HEADER_FIXED, MAGIC};

/// Largest payload accepted, in bytes (1 MiB).
pub const MAX_PAYLOAD_BYTES: usize = json::ZONE_V1.max_bytes;
/// Deepest nesting of arrays and objects accepted: the document, `records`, a record.
pub const MAX_DEPTH: u16 = json::ZONE_V1.max_depth;
/// Most records a payload may hold.
pub const MAX_RECORDS: usize = 10_000;
/// Most records in one RRset (same name and type).
pub const MAX_RRSET: usize = 64;
/// Largest TTL (RFC 2181 section 8).
pub const MAX_TTL: u64 = 2_147_483_647;
/// Largest TXT data, in bytes (one character-string).
pub const MAX_TXT: usize = 255;
/// Longest gateway id, in characters.
pub const MAX_GATEWAY: usize = 64;

/// A short piece of text kept in an error (truncated to 44 bytes, marked with `...`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text {
    buf: [u8; 48],
    len: u8,
}

impl Text {
    /// The empty text.
    pub const EMPTY: Text = Text {
        buf: [0; 48],
        len: 0,
    };
    /// Copies `s`, truncated at a character boundary.
    pub fn new(s: &str) -> Text {
        let mut t = Text::EMPTY;
        if s.len() <= 44 {
            t.buf[..s.len()].copy_from_slice(s.as_bytes());
            t.len = s.len() as u8;
        } else {
            let mut end = 41;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            t.buf[..end].copy_from_slice(&s.as_bytes()[..end]);
            t.buf[end..end + 3].copy_from_slice(b"...");
            t.len = (end + 3) as u8;
        }
        t
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payload was rejected; `record` is the index of the offending record, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// Index into `records`, or `None` for document-level errors.
    pub record: Option<u16>,
    /// The record's `name` as written in the payload, when it was read (else empty).
    pub name: Text,
    /// The reason.
    pub kind: PayloadErrorKind,
}

/// The reasons a payload can be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadErrorKind {
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`].
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// Not valid JSON, or a value of the wrong JSON type (`field` is the field being read, or
    /// empty).
    Json {
        /// The field being read when the error was found.
        field: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// Refused at the door: not RFC 8259 JSON (including a raw control character in a string
    /// and bytes that are not UTF-8), or nested deeper than [`MAX_DEPTH`]; `field` is the
    /// field being read, or empty.
    Syntax {
        /// The field being read when the fault was found.
        field: &'static str,
        /// What is wrong, and the byte offset.
        error: json::Error,
    },
    /// `version` is not 1.
    UnsupportedVersion(u64),
    /// A field that the schema does not have (top level or in a record).
    UnknownField(Text),
    /// A required field is missing.
    MissingField(&'static str),
    /// A field appears twice in one object.
    DuplicateField(&'static str),
    /// `serial` is 0 or above 4294967295.
    BadSerial(u64),
    /// `gateway` is empty, longer than 64 characters, or has a character outside `[A-Za-z0-9._-]`.
    BadGateway(Text),
    /// `origin` is not a valid domain name (reason given).
    BadOrigin(&'static str),
    /// A `ttl` (document or record) above 2147483647.
    BadTtl(u64),
    /// More than [`MAX_RECORDS`] records.
    TooManyRecords,
    /// A record's `name` is not a valid name (reason given).
    BadName(&'static str),
    /// A record's absolute `name` (trailing dot) is not inside the origin.
    NameOutsideOrigin,
    /// A record's name, with the origin, is longer than 255 octets in wire form.
    NameTooLong,
    /// A record's `type` is not one of A, AAAA, SRV, TXT, CNAME.
    UnknownType(Text),
    /// A or AAAA `data` is not an address of that family.
    BadAddress(Text),
    /// SRV `data` is not `priority weight port target` (reason given).
    BadSrv(&'static str),
    /// A CNAME or SRV target is not a valid name (reason given).
    BadTarget(&'static str),
    /// TXT `data` longer than [`MAX_TXT`] bytes.
    TxtTooLong(usize),
    /// A string longer than the parser's buffer (`field` named).
    StringTooLong(&'static str),
    /// A CNAME shares its name with another record (`other` is that record's index).
    CnameBesideOtherData {
        /// The other record.
        other: u16,
    },
    /// A CNAME at the apex (where the SOA and NS live).
    CnameAtApex,
    /// The same name, type and data as record `other`.
    Duplicate {
        /// The earlier record.
        other: u16,
    },
    /// A TTL different from record `other` of the same RRset (RFC 2181 section 5.2).
    TtlMismatch {
        /// The other record of the RRset.
        other: u16,
    },
    /// More than [`MAX_RRSET`] records with this name and type.
    RrsetTooLarge,
    /// Following CNAMEs from this record comes back to it after `steps` CNAMEs (a loop;
    /// `steps` is 1 for a CNAME to its own name).
    CnameLoop {
        /// The length of the loop.
        steps: u16,
    },
    /// The output buffer is too small; [`compiled_size_bound`] gives a size that suffices.
    OutputTooSmall,
}

impl fmt::Display for PayloadErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PayloadErrorKind::*;
        match self {
            TooLarge { len } => write!(
                f,
                "payload is {len} bytes, the limit is {MAX_PAYLOAD_BYTES}"
            ),
            Json { field: "", what } => write!(f, "invalid JSON or schema: {what}"),
            Json { field, what } => write!(f, "field `{field}`: {what}"),
            Syntax { field, error } if error.kind == json::ErrorKind::TooDeep => {
                if !field.is_empty() {
                    write!(f, "field `{field}`: ")?;
                }
                write!(
                    f,
                    "nested deeper than {MAX_DEPTH} levels of arrays and objects at byte {}",
                    error.offset
                )
            }
            Syntax { field: "", error } => write!(f, "invalid JSON: {error}"),
            Syntax { field, error } => write!(f, "field `{field}`: {error}"),
            UnsupportedVersion(v) => {
                write!(f, "unsupported version {v} (this agent reads version 1)")
            }
            UnknownField(n) => write!(f, "unknown field `{n}`"),
            MissingField(n) => write!(f, "missing field `{n}`"),
            DuplicateField(n) => write!(f, "duplicate field `{n}`"),
            BadSerial(s) => write!(f, "serial {s} is not in 1..=4294967295"),
            BadGateway(g) => write!(
                f,
                "gateway id \"{g}\" must be 1..=64 characters of [A-Za-z0-9._-]"
            ),
            BadOrigin(why) => write!(f, "bad origin: {why}"),
            BadTtl(t) => write!(f, "ttl {t} is above {MAX_TTL}"),
            TooManyRecords => write!(f, "more than {MAX_RECORDS} records"),
            BadName(why) => write!(f, "bad name: {why}"),
            NameOutsideOrigin => write!(f, "name is outside the origin"),
            NameTooLong => write!(f, "name with the origin is longer than 255 octets"),
            UnknownType(t) => write!(
                f,
                "unknown type \"{t}\" (expected A, AAAA, SRV, TXT or CNAME)"
            ),
            BadAddress(a) => write!(f, "bad address \"{a}\""),
            BadSrv(why) => write!(f, "bad SRV data: {why}"),
            BadTarget(why) => write!(f, "bad target: {why}"),
            TxtTooLong(n) => write!(f, "TXT data is {n} bytes, the limit is {MAX_TXT}"),
            StringTooLong(field) => write!(f, "field `{field}` is too long"),
            CnameBesideOtherData { other } => {
                write!(
                    f,
                    "CNAME beside other data (record {other} has the same name)"
                )
            }
            CnameAtApex => write!(f, "CNAME at the apex (beside the SOA and NS)"),
            Duplicate { other } => write!(f, "duplicate of record {other}"),
            TtlMismatch { other } => {
                write!(
                    f,
                    "ttl differs from record {other} of the same name and type"
                )
            }
            RrsetTooLarge => write!(
                f,
                "more than {MAX_RRSET} records with the same name and type"
            ),
            CnameLoop { steps: 1 } => write!(f, "CNAME loop: the CNAME points to its own name"),
            CnameLoop { steps } => write!(
                f,
                "CNAME loop: following the CNAMEs from here comes back after {steps} steps"
            ),
            OutputTooSmall => write!(f, "output buffer too small for the compiled zone"),
        }
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.record, self.name.is_empty()) {
            (Some(i), false) => write!(f, "record {i} (\"{}\"): {}", self.name, self.kind),
            (Some(i), true) => write!(f, "record {i}: {}", self.kind),
            (None, _) => write!(f, "{}", self.kind),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PayloadError {}

/// Upper bound of the compiled size of a payload of `payload_len` bytes: a buffer this large
/// always suffices for [`compile`].
///
/// The header takes at most 24 + 253 + 64 + 255 bytes; each record takes at most 16 bytes
/// more than its name and data, which is less than the JSON it came from (`{"name":"",
/// "type":"A","data":""}` alone is 31 bytes), and escapes only shrink strings.
pub const fn compiled_size_bound(payload_len: usize) -> usize {
    payload_len + 1024
}

/// Validates `payload` fully and writes the compiled zone into `out`, returning its length.
/// Read it back with [`crate::Zone::from_compiled`].
pub fn compile(payload: &[u8], out: &mut [u8]) -> Result<usize, PayloadError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(doc_err(PayloadErrorKind::TooLarge { len: payload.len() }));
    }
    if let Err(e) = json::check(payload, json::ZONE_V1) {
        return Err(door_error(payload, e));
    }
    let mut unescape = [0u8; 512];

    // Pass 1: the header, counting records.
    let mut ctx = Ctx::new(None);
    let mut header = Header::default();
    run(payload, &mut unescape, &mut ctx, Some(&mut header))?;
    let h = header.finish()?;

    // Header and index.
    let olen = h.origin_text.len;
    let glen = h.gateway.len;
    let index_off = HEADER_FIXED + olen + glen + h.origin_wire_len;
    let entries_off = index_off + 4 * h.count;
    if out.len() < entries_off {
        return Err(doc_err(PayloadErrorKind::OutputTooSmall));
    }
    out[0..4].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&h.serial.to_be_bytes());
    out[12..16].copy_from_slice(&h.ttl.to_be_bytes());
    out[16..20].copy_from_slice(&(h.count as u32).to_be_bytes());
    out[20] = olen as u8;
    out[21] = glen as u8;
    out[22..24].copy_from_slice(&(h.origin_wire_len as u16).to_be_bytes());
    let mut p = HEADER_FIXED;
    out[p..p + olen].copy_from_slice(h.origin_text.as_str().as_bytes());
    p += olen;
    out[p..p + glen].copy_from_slice(&h.gateway.buf[..glen]);
    p += glen;
    out[p..p + h.origin_wire_len].copy_from_slice(&h.origin_wire[..h.origin_wire_len]);

    // Pass 2: compile every record.
    let mut ctx = Ctx::new(Some(Compiler {
        origin_wire: &h.origin_wire[..h.origin_wire_len],
        ttl: h.ttl,
        out,
        index_off,
        pos: entries_off,
        count: 0,
    }));
    run(payload, &mut unescape, &mut ctx, None)?;
    let Some(c) = ctx.compiler else {
        return Err(doc_err(PayloadErrorKind::OutputTooSmall));
    };
    if c.count != h.count {
        // Cannot happen: both passes read the same bytes.
        return Err(doc_err(PayloadErrorKind::Json {
            field: "records",
            what: "records changed between passes",
        }));
    }
    let total = c.pos;
    let out = c.out;
    out[4..8].copy_from_slice(&(total as u32).to_be_bytes());
    let (head, _) = out.split_at_mut(total);
    let (head, entries) = head.split_at_mut(entries_off);
    let index = &mut head[index_off..];
    heap_sort(index, entries, entries_off);
    check_rrsets(index, entries, entries_off)?;
    check_cname_loops(index, entries, entries_off)?;
    Ok(total)
}

/// The error for a payload the door refused, placed like the parser's own errors: the bytes
/// before the fault passed the door (so they nest within [`MAX_DEPTH`]) and are read with the
/// header pass, which tells the record, the field and the version. An earlier schema error
/// found there wins (as it would have without the door), then a version other than 1.
fn door_error(payload: &[u8], e: json::Error) -> PayloadError {
    if e.kind == json::ErrorKind::TooLarge {
        return doc_err(PayloadErrorKind::TooLarge { len: payload.len() });
    }
    let mut unescape = [0u8; 512];
    let mut ctx = Ctx::new(None);
    let mut header = Header::default();
    let before = &payload[..e.offset.min(payload.len())];
    if let Err(early) = run(before, &mut unescape, &mut ctx, Some(&mut header)) {
        if !matches!(early.kind, PayloadErrorKind::Json { .. }) {
            return early;
        }
    }
    match header.version {
        Some(v) if v != 1 => doc_err(PayloadErrorKind::UnsupportedVersion(v)),
        _ => PayloadError {
            record: ctx.record,
            name: ctx.name,
            kind: PayloadErrorKind::Syntax {
                field: ctx.field,
                error: e,
            },
        },
    }
}

fn doc_err(kind: PayloadErrorKind) -> PayloadError {
    PayloadError {
        record: None,
        name: Text::EMPTY,
        kind,
    }
}

/// Runs one pass over the document, turning serde errors into [`PayloadError`]s that name the
/// record and field being read.
fn run(
    payload: &[u8],
    unescape: &mut [u8],
    ctx: &mut Ctx<'_>,
    header: Option<&mut Header>,
) -> Result<(), PayloadError> {
    let mut de = serde_json_core::de::Deserializer::new(payload, Some(unescape));
    let r = DocSeed {
        ctx: &mut *ctx,
        header,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end().map(|_| ()));
    if let Some(e) = ctx.err.take() {
        return Err(e);
    }
    r.map_err(|e| PayloadError {
        record: ctx.record,
        name: ctx.name,
        kind: PayloadErrorKind::Json {
            field: if ctx.field.is_empty() && ctx.record.is_none() {
                ctx.after
            } else {
                ctx.field
            },
            what: json_what(&e),
        },
    })
}

fn json_what(e: &serde_json_core::de::Error) -> &'static str {
    use serde_json_core::de::Error as E;
    match e {
        E::AnyIsUnsupported => "value of an unexpected kind",
        E::EofWhileParsingList => "unexpected end of input in a list",
        E::EofWhileParsingObject => "unexpected end of input in an object",
        E::EofWhileParsingString => "unexpected end of input in a string",
        E::EofWhileParsingNumber => "unexpected end of input in a number",
        E::EofWhileParsingValue => "unexpected end of input",
        E::ExpectedColon => "expected `:`",
        E::ExpectedListCommaOrEnd => "expected `,` or `]`",
        E::ExpectedObjectCommaOrEnd => "expected `,` or `}`",
        E::ExpectedSomeIdent => "expected `true`, `false` or `null`",
        E::ExpectedSomeValue => "expected a value",
        E::InvalidNumber => "expected a non-negative integer",
        E::InvalidType => "value of the wrong type",
        E::InvalidUnicodeCodePoint => "invalid unicode code point",
        E::InvalidEscapeSequence => "invalid string escape",
        E::EscapedStringIsTooLong => "string too long",
        E::KeyMustBeAString => "object key is not a string",
        E::TrailingCharacters => "trailing characters after the document",
        E::TrailingComma => "trailing comma",
        _ => "does not match the schema",
    }
}

/// State shared by the seeds of one pass.
struct Ctx<'o> {
    /// The first error found by our own checks (serde only carries "custom").
    err: Option<PayloadError>,
    /// The record being read, for serde errors inside it.
    record: Option<u16>,
    /// Its name, once read.
    name: Text,
    /// The field being read.
    field: &'static str,
    /// The top-level field read last: the parser finds a fault right after a value (`1.5`
    /// where an integer was read) only at the next token.
    after: &'static str,
    /// Pass 2 only.
    compiler: Option<Compiler<'o>>,
}

impl<'o> Ctx<'o> {
    fn new(compiler: Option<Compiler<'o>>) -> Self {
        Ctx {
            err: None,
            record: None,
            name: Text::EMPTY,
            field: "",
            after: "",
            compiler,
        }
    }
    /// Records an error of the current record (or the document) and returns a serde error
    /// that aborts the parse.
    fn fail<E: de::Error>(&mut self, kind: PayloadErrorKind) -> E {
        if self.err.is_none() {
            self.err = Some(PayloadError {
                record: self.record,
                name: self.name,
                kind,
            });
        }
        E::custom("rejected")
    }
}

struct Compiler<'o> {
    origin_wire: &'o [u8],
    ttl: u32,
    out: &'o mut [u8],
    index_off: usize,
    pos: usize,
    count: usize,
}

/// A JSON string copied into a fixed buffer (works with escaped strings too).
struct StrBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    too_long: bool,
}

impl<const N: usize> StrBuf<N> {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<'de, const N: usize> de::Deserialize<'de> for StrBuf<N> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'v, const N: usize> Visitor<'v> for V<N> {
            type Value = StrBuf<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StrBuf<N>, E> {
                let mut b = StrBuf {
                    buf: [0; N],
                    len: 0,
                    too_long: s.len() > N,
                };
                if !b.too_long {
                    b.buf[..s.len()].copy_from_slice(s.as_bytes());
                    b.len = s.len();
                }
                Ok(b)
            }
        }
        d.deserialize_str(V::<N>)
    }
}

/// Field names, read without a heap; unknown ones are kept for the error.
enum Key {
    Known(&'static str),
    Unknown(Text),
}

struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        struct V(&'static [&'static str]);
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match self.0.iter().find(|k| **k == s) {
                    Some(k) => Key::Known(k),
                    None => Key::Unknown(Text::new(s)),
                })
            }
        }
        d.deserialize_identifier(V(self.0))
    }
}

const DOC_FIELDS: &[&str] = &["version", "serial", "gateway", "origin", "ttl", "records"];
const RECORD_FIELDS: &[&str] = &["name", "type", "data", "ttl"];

#[derive(Default)]
struct Header {
    version: Option<u64>,
    serial: Option<u64>,
    gateway: Option<StrBuf<80>>,
    origin: Option<StrBuf<300>>,
    ttl: Option<u64>,
    count: Option<usize>,
    unknown: Option<Text>,
    duplicate: Option<&'static str>,
}

impl<const N: usize> Default for StrBuf<N> {
    fn default() -> Self {
        StrBuf {
            buf: [0; N],
            len: 0,
            too_long: false,
        }
    }
}

struct GatewayId {
    buf: [u8; MAX_GATEWAY],
    len: usize,
}

struct CheckedHeader {
    serial: u32,
    ttl: u32,
    gateway: GatewayId,
    origin_text: StrBuf<300>,
    origin_wire: [u8; 256],
    origin_wire_len: usize,
    count: usize,
}

impl Header {
    fn finish(self) -> Result<CheckedHeader, PayloadError> {
        use PayloadErrorKind::*;
        let version = self.version.ok_or(doc_err(MissingField("version")))?;
        if version != 1 {
            return Err(doc_err(UnsupportedVersion(version)));
        }
        if let Some(u) = self.unknown {
            return Err(doc_err(UnknownField(u)));
        }
        if let Some(d) = self.duplicate {
            return Err(doc_err(DuplicateField(d)));
        }
        let serial = self.serial.ok_or(doc_err(MissingField("serial")))?;
        if serial == 0 || serial > u32::MAX as u64 {
            return Err(doc_err(BadSerial(serial)));
        }
        let gw = self.gateway.ok_or(doc_err(MissingField("gateway")))?;
        let g = gw.as_str();
        if gw.too_long
            || g.is_empty()
            || g.len() > MAX_GATEWAY
            || !g
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return Err(doc_err(BadGateway(Text::new(if gw.too_long {
                "(too long)"
            } else {
                g
            }))));
        }
        let mut gateway = GatewayId {
            buf: [0; MAX_GATEWAY],
            len: g.len(),
        };
        gateway.buf[..g.len()].copy_from_slice(g.as_bytes());
        let mut origin = self.origin.ok_or(doc_err(MissingField("origin")))?;
        if origin.too_long {
            return Err(doc_err(BadOrigin("longer than 253 characters")));
        }
        if origin.as_str().ends_with('.') {
            origin.len -= 1;
        }
        if origin.len == 0 {
            return Err(doc_err(BadOrigin("empty (the root cannot be the origin)")));
        }
        let mut wire = [0u8; 256];
        let n = text_to_wire(origin.as_str(), &mut wire).map_err(|w| doc_err(BadOrigin(w)))?;
        if n + 1 > 255 {
            return Err(doc_err(BadOrigin("longer than 255 octets in wire form")));
        }
        wire[..n].make_ascii_lowercase();
        // The label lengths are below 64, so lower-casing them changed nothing.
        wire[n] = 0;
        let ttl = self.ttl.ok_or(doc_err(MissingField("ttl")))?;
        if ttl > MAX_TTL {
            return Err(doc_err(BadTtl(ttl)));
        }
        let count = self.count.ok_or(doc_err(MissingField("records")))?;
        Ok(CheckedHeader {
            serial: serial as u32,
            ttl: ttl as u32,
            gateway,
            origin_text: origin,
            origin_wire: wire,
            origin_wire_len: n + 1,
            count,
        })
    }
}

/// The whole document: pass 1 fills `header`, pass 2 compiles the records.
struct DocSeed<'c, 'o, 'h> {
    ctx: &'c mut Ctx<'o>,
    header: Option<&'h mut Header>,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(DocVisitor {
            ctx: self.ctx,
            header: self.header,
        })
    }
}

struct DocVisitor<'c, 'o, 'h> {
    ctx: &'c mut Ctx<'o>,
    header: Option<&'h mut Header>,
}

impl<'de> Visitor<'de> for DocVisitor<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a zone payload object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut header = self.header;
        let mut seen = [false; 6];
        while let Some(key) = map.next_key_seed(KeySeed(DOC_FIELDS))? {
            let name = match key {
                Key::Known(n) => n,
                Key::Unknown(t) => {
                    ctx.field = "";
                    ctx.after = "";
                    if let Some(h) = header.as_deref_mut() {
                        h.unknown.get_or_insert(t);
                    }
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let i = DOC_FIELDS.iter().position(|f| *f == name).unwrap_or(0);
            if seen[i] {
                if let Some(h) = header.as_deref_mut() {
                    h.duplicate.get_or_insert(name);
                }
            }
            seen[i] = true;
            ctx.field = name;
            match header.as_deref_mut() {
                Some(h) => match name {
                    "version" => h.version = Some(map.next_value()?),
                    "serial" => h.serial = Some(map.next_value()?),
                    "ttl" => h.ttl = Some(map.next_value()?),
                    "gateway" => h.gateway = Some(map.next_value()?),
                    "origin" => h.origin = Some(map.next_value()?),
                    _ => {
                        // Records are checked field by field already, unless the version
                        // says this is not a document we can read.
                        let check = matches!(h.version, None | Some(1));
                        h.count = Some(map.next_value_seed(RecordsSeed {
                            ctx: &mut *ctx,
                            check,
                        })?);
                    }
                },
                None => {
                    if name == "records" {
                        map.next_value_seed(RecordsSeed {
                            ctx: &mut *ctx,
                            check: true,
                        })?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            ctx.after = name;
            ctx.field = "";
        }
        Ok(())
    }
}

/// The `records` array: counted in pass 1, compiled record by record in pass 2.
struct RecordsSeed<'c, 'o> {
    ctx: &'c mut Ctx<'o>,
    /// Read each record's fields (else skip them as any JSON).
    check: bool,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let check = self.check;
        let ctx = self.ctx;
        let mut n = 0usize;
        loop {
            if n >= MAX_RECORDS {
                // One more element means too many; an end of the array is fine.
                ctx.record = None;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(ctx.fail(PayloadErrorKind::TooManyRecords));
                }
                break;
            }
            ctx.record = Some(n as u16);
            ctx.name = Text::EMPTY;
            let more = if check {
                seq.next_element_seed(RecordSeed { ctx: &mut *ctx })?
                    .is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                break;
            }
            n += 1;
        }
        ctx.record = None;
        ctx.name = Text::EMPTY;
        Ok(n)
    }
}

struct RecordSeed<'c, 'o> {
    ctx: &'c mut Ctx<'o>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use PayloadErrorKind::*;
        let ctx = self.ctx;
        let mut name: Option<StrBuf<300>> = None;
        let mut ty: Option<StrBuf<16>> = None;
        let mut data: Option<StrBuf<300>> = None;
        let mut ttl: Option<u64> = None;
        while let Some(key) = map.next_key_seed(KeySeed(RECORD_FIELDS))? {
            let k = match key {
                Key::Known(k) => k,
                Key::Unknown(t) => return Err(ctx.fail(UnknownField(t))),
            };
            ctx.field = k;
            let dup = match k {
                "name" => {
                    let v: StrBuf<300> = map.next_value()?;
                    if !v.too_long {
                        ctx.name = Text::new(v.as_str());
                    }
                    name.replace(v).is_some()
                }
                "type" => ty.replace(map.next_value()?).is_some(),
                "data" => data.replace(map.next_value()?).is_some(),
                _ => ttl.replace(map.next_value()?).is_some(),
            };
            if dup {
                return Err(ctx.fail(DuplicateField(k)));
            }
            ctx.field = "";
        }
        let name = name.ok_or_else(|| ctx.fail(MissingField("name")))?;
        let ty = ty.ok_or_else(|| ctx.fail(MissingField("type")))?;
        let data = data.ok_or_else(|| ctx.fail(MissingField("data")))?;
        if name.too_long {
            return Err(ctx.fail(NameTooLong));
        }
        if ty.too_long {
            return Err(ctx.fail(UnknownType(Text::new("(too long)"))));
        }
        if data.too_long {
            return Err(ctx.fail(StringTooLong("data")));
        }
        let Some(c) = ctx.compiler.as_mut() else {
            return Ok(());
        };
        let source = ctx.record.unwrap_or(0);
        match c.record(source, name.as_str(), ty.as_str(), data.as_str(), ttl) {
            Ok(()) => Ok(()),
            Err(k) => Err(ctx.fail(k)),
        }
    }
}

/// Writes the labels of a dotted name (no trailing dot, not empty) into `out` in wire form,
/// without the root label; returns the length.
fn text_to_wire(text: &str, out: &mut [u8; 256]) -> Result<usize, &'static str> {
    let mut n = 0;
    if text.is_empty() {
        return Err("empty name");
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err("character outside [A-Za-z0-9_-] in a label");
        }
        if n + 1 + label.len() > 255 {
            return Err("longer than 255 octets");
        }
        out[n] = label.len() as u8;
        out[n + 1..n + 1 + label.len()].copy_from_slice(label.as_bytes());
        n += 1 + label.len();
    }
    Ok(n)
}

/// Where in `wire` (labels, no root) a suffix equal to `origin` (labels + root) starts, if any.
fn origin_suffix(wire: &[u8], origin: &[u8]) -> Option<usize> {
    let olabels = &origin[..origin.len() - 1];
    let mut p = 0;
    loop {
        if wire[p..].eq_ignore_ascii_case(olabels) {
            return Some(p);
        }
        if p >= wire.len() {
            return None;
        }
        p += 1 + wire[p] as usize;
    }
}

/// Writes the key (see [`crate::zone`]) of relative labels `rel` into `out`; returns its length.
/// The key is exactly as long as the labels (each length octet becomes the 0 after its label),
/// and the labels go in reverse order: the label at `p` ends just before `rel.len() - p - 1`.
/// One pass, no buffer of label offsets.
pub(crate) fn rel_to_key(rel: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = rel.len();
    let out = out.get_mut(..n)?;
    let mut p = 0;
    while p < n {
        let l = rel[p] as usize;
        let label = rel.get(p + 1..p + 1 + l)?;
        // p + 1 + l <= n, so end >= l.
        let end = n - p - 1;
        for (d, c) in out[end - l..end].iter_mut().zip(label) {
            *d = c.to_ascii_lowercase();
        }
        out[end] = 0;
        p += 1 + l;
    }
    Some(n)
}

/// Renders a key back as a dotted relative name (`@` for the apex).
fn key_to_text(key: &[u8]) -> Text {
    let mut buf = [0u8; 300];
    let mut n = 0;
    if key.is_empty() {
        return Text::new("@");
    }
    for label in key[..key.len() - 1].rsplit(|&c| c == 0) {
        if n > 0 && n < buf.len() {
            buf[n] = b'.';
            n += 1;
        }
        let m = label.len().min(buf.len() - n);
        buf[n..n + m].copy_from_slice(&label[..m]);
        n += m;
    }
    Text::new(core::str::from_utf8(&buf[..n]).unwrap_or(""))
}

impl Compiler<'_> {
    /// Relative labels of a name (owner or target) as written in the payload. `None` in the
    /// result means an absolute name outside the origin (then `buf` holds its full labels).
    fn name(
        &self,
        text: &str,
        buf: &mut [u8; 256],
    ) -> Result<(usize, bool), (&'static str, PayloadErrorKind)> {
        use PayloadErrorKind::*;
        if text == "@" {
            return Ok((0, true));
        }
        let (abs, t) = match text.strip_suffix('.') {
            Some(t) => (true, t),
            None => (false, text),
        };
        let n = text_to_wire(t, buf).map_err(|w| (w, BadName(w)))?;
        if !abs {
            if n + self.origin_wire.len() > 255 {
                return Err(("too long", NameTooLong));
            }
            return Ok((n, true));
        }
        if n + 1 > 255 {
            return Err(("too long", NameTooLong));
        }
        match origin_suffix(&buf[..n], self.origin_wire) {
            Some(p) => Ok((p, true)),
            None => Ok((n, false)),
        }
    }

    fn record(
        &mut self,
        source: u16,
        name: &str,
        ty: &str,
        data: &str,
        ttl: Option<u64>,
    ) -> Result<(), PayloadErrorKind> {
        use PayloadErrorKind::*;
        let mut owner = [0u8; 256];
        let (olen, inside) = self.name(name, &mut owner).map_err(|(_, k)| k)?;
        if !inside {
            return Err(NameOutsideOrigin);
        }
        let ttl = match ttl {
            Some(t) if t > MAX_TTL => return Err(BadTtl(t)),
            Some(t) => t as u32,
            None => self.ttl,
        };
        let mut rdata = [0u8; 300];
        let (rt, rdlen) = match ty {
            "A" => {
                let a = Ipv4Addr::from_str(data).map_err(|_| BadAddress(Text::new(data)))?;
                rdata[..4].copy_from_slice(&a.octets());
                (rtype::A, 4)
            }
            "AAAA" => {
                let a = Ipv6Addr::from_str(data).map_err(|_| BadAddress(Text::new(data)))?;
                rdata[..16].copy_from_slice(&a.octets());
                (rtype::AAAA, 16)
            }
            "TXT" => {
                if data.len() > MAX_TXT {
                    return Err(TxtTooLong(data.len()));
                }
                rdata[0] = data.len() as u8;
                rdata[1..=data.len()].copy_from_slice(data.as_bytes());
                (rtype::TXT, data.len() + 1)
            }
            "CNAME" => {
                let n = self.target(data, &mut rdata)?;
                (rtype::CNAME, n)
            }
            "SRV" => {
                let mut parts = data.split(' ');
                let mut num = |what: &'static str| -> Result<u16, PayloadErrorKind> {
                    let p = parts
                        .next()
                        .ok_or(BadSrv("expected `priority weight port target`"))?;
                    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                        return Err(BadSrv(what));
                    }
                    u16::from_str(p).map_err(|_| BadSrv(what))
                };
                let prio = num("priority is not a number in 0..=65535")?;
                let weight = num("weight is not a number in 0..=65535")?;
                let port = num("port is not a number in 0..=65535")?;
                let target = parts
                    .next()
                    .ok_or(BadSrv("expected `priority weight port target`"))?;
                if parts.next().is_some() {
                    return Err(BadSrv("expected `priority weight port target`"));
                }
                rdata[0..2].copy_from_slice(&prio.to_be_bytes());
                rdata[2..4].copy_from_slice(&weight.to_be_bytes());
                rdata[4..6].copy_from_slice(&port.to_be_bytes());
                let mut t = [0u8; 300];
                let n = if target == "." {
                    t[0] = 0;
                    t[1] = 0;
                    2
                } else {
                    self.target(target, &mut t)?
                };
                rdata[6..6 + n].copy_from_slice(&t[..n]);
                (rtype::SRV, 6 + n)
            }
            _ => return Err(UnknownType(Text::new(ty))),
        };
        let mut key = [0u8; 256];
        let klen = rel_to_key(&owner[..olen], &mut key).ok_or(NameTooLong)?;
        // Write the entry and its index slot.
        let need = 1 + klen + 10 + rdlen;
        let p = self.pos;
        let e = self.out.get_mut(p..p + need).ok_or(OutputTooSmall)?;
        e[0] = klen as u8;
        e[1..1 + klen].copy_from_slice(&key[..klen]);
        let q = 1 + klen;
        e[q..q + 2].copy_from_slice(&rt.to_be_bytes());
        e[q + 2..q + 6].copy_from_slice(&ttl.to_be_bytes());
        e[q + 6..q + 8].copy_from_slice(&source.to_be_bytes());
        e[q + 8..q + 10].copy_from_slice(&(rdlen as u16).to_be_bytes());
        e[q + 10..].copy_from_slice(&rdata[..rdlen]);
        let slot = self.index_off + 4 * self.count;
        let s = self.out.get_mut(slot..slot + 4).ok_or(OutputTooSmall)?;
        s.copy_from_slice(&(p as u32).to_be_bytes());
        self.pos += need;
        self.count += 1;
        Ok(())
    }

    /// Encodes a CNAME or SRV target (see [`crate::zone`]); returns the length.
    fn target(&self, text: &str, out: &mut [u8; 300]) -> Result<usize, PayloadErrorKind> {
        use PayloadErrorKind::*;
        let mut w = [0u8; 256];
        let (n, inside) = self.name(text, &mut w).map_err(|(why, k)| match k {
            NameTooLong => BadTarget("name longer than 255 octets"),
            _ => BadTarget(why),
        })?;
        out[0] = inside as u8;
        out[1..1 + n].copy_from_slice(&w[..n]);
        out[1 + n] = 0;
        Ok(n + 2)
    }
}

/// The two top bits of an index slot: free while the offsets stay below 1 GiB (a payload is
/// at most 1 MiB), so [`check_cname_loops`] keeps its per-record marks there.
const MARKS: u32 = 0xc000_0000;
/// Mark: on the CNAME chain being walked.
const ON_PATH: u32 = 0x4000_0000;
/// Mark: the chain from here was walked and ends outside the CNAMEs.
const DONE: u32 = 0x8000_0000;

fn raw_slot(index: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([
        index[4 * i],
        index[4 * i + 1],
        index[4 * i + 2],
        index[4 * i + 3],
    ])
}

fn slot(index: &[u8], i: usize) -> usize {
    (raw_slot(index, i) & !MARKS) as usize
}

fn mark(index: &[u8], i: usize) -> u32 {
    raw_slot(index, i) & MARKS
}

fn set_mark(index: &mut [u8], i: usize, m: u32) {
    let v = raw_slot(index, i) & !MARKS | m;
    index[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
}

fn entry_at(entries: &[u8], base: usize, off: usize) -> Entry<'_> {
    parse_entry(entries, off - base)
        .map(|(e, _)| e)
        .unwrap_or(Entry {
            key: &[],
            rtype: 0,
            ttl: 0,
            source: 0,
            rdata: &[],
        })
}

/// Sorts the index (u32 offsets) by the entries they point at, in place, without a heap.
fn heap_sort(index: &mut [u8], entries: &[u8], base: usize) {
    let n = index.len() / 4;
    let less = |index: &[u8], i: usize, j: usize| {
        entry_order(
            &entry_at(entries, base, slot(index, i)),
            &entry_at(entries, base, slot(index, j)),
        ) == core::cmp::Ordering::Less
    };
    let swap = |index: &mut [u8], i: usize, j: usize| {
        for k in 0..4 {
            index.swap(4 * i + k, 4 * j + k);
        }
    };
    let sift = |index: &mut [u8], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            break;
        }
        if child + 1 < end && less(index, child, child + 1) {
            child += 1;
        }
        if less(index, root, child) {
            swap(index, root, child);
            root = child;
        } else {
            break;
        }
    };
    for start in (0..n / 2).rev() {
        sift(index, start, n);
    }
    for end in (1..n).rev() {
        swap(index, 0, end);
        sift(index, 0, end);
    }
}

/// Checks the sorted records name by name and RRset by RRset.
fn check_rrsets(index: &[u8], entries: &[u8], base: usize) -> Result<(), PayloadError> {
    use PayloadErrorKind::*;
    let n = index.len() / 4;
    let at = |i: usize| entry_at(entries, base, slot(index, i));
    let err = |e: &Entry<'_>, kind| PayloadError {
        record: Some(e.source),
        name: key_to_text(e.key),
        kind,
    };
    let mut name_start = 0;
    while name_start < n {
        let first = at(name_start);
        let mut name_end = name_start + 1;
        while name_end < n && at(name_end).key == first.key {
            name_end += 1;
        }
        for i in name_start..name_end {
            let e = at(i);
            if e.rtype == rtype::CNAME {
                if e.key.is_empty() {
                    return Err(err(&e, CnameAtApex));
                }
                if name_end - name_start > 1 {
                    let other = (name_start..name_end)
                        .map(at)
                        .find(|o| o.source != e.source)
                        .map_or(0, |o| o.source);
                    let (blame, other) = if other < e.source {
                        (e, other)
                    } else {
                        let o = (name_start..name_end)
                            .map(at)
                            .find(|o| o.source == other)
                            .unwrap_or(e);
                        (o, e.source)
                    };
                    return Err(err(&blame, CnameBesideOtherData { other }));
                }
            }
        }
        // RRsets.
        let mut set_start = name_start;
        while set_start < name_end {
            let t = at(set_start).rtype;
            let mut set_end = set_start + 1;
            while set_end < name_end && at(set_end).rtype == t {
                set_end += 1;
            }
            if set_end - set_start > MAX_RRSET {
                return Err(err(&at(set_start + MAX_RRSET), RrsetTooLarge));
            }
            let head = at(set_start);
            for i in set_start + 1..set_end {
                let e = at(i);
                if e.ttl != head.ttl {
                    return Err(err(&e, TtlMismatch { other: head.source }));
                }
                for j in set_start..i {
                    let o = at(j);
                    if o.rdata.eq_ignore_ascii_case(e.rdata) && same_rdata(t, &o, &e) {
                        return Err(err(&e, Duplicate { other: o.source }));
                    }
                }
            }
            set_start = set_end;
        }
        name_start = name_end;
    }
    Ok(())
}

/// The index of the CNAME that the CNAME at index `i` points to, if its target is a name in
/// the zone that has a CNAME (after [`check_rrsets`] such a name has no other record).
fn cname_next(index: &[u8], entries: &[u8], base: usize, i: usize) -> Option<usize> {
    let at = |i: usize| entry_at(entries, base, slot(index, i));
    let e = at(i);
    // Target: flag 1 (in the zone), relative labels, 0.
    let (&inside, rel) = e.rdata.split_first()?;
    if inside != 1 {
        return None;
    }
    let rel = &rel[..rel.len().checked_sub(1)?];
    let mut key = [0u8; 256];
    let klen = rel_to_key(rel, &mut key)?;
    let key = &key[..klen];
    let (mut lo, mut hi) = (0, index.len() / 4);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at(mid).key < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo < index.len() / 4 && at(lo).key == key && at(lo).rtype == rtype::CNAME).then_some(lo)
}

/// Refuses a CNAME chain that loops (issue 12): the answer path would follow it to its step
/// limit and repeat the same records. A name has at most one CNAME, so each CNAME has at most
/// one successor; every chain is walked once, marking its records as on the path and then as
/// done, so the work is linear in the records (times a binary search), without recursion and
/// without a heap (the marks live in the index slots and are cleared before returning).
fn check_cname_loops(index: &mut [u8], entries: &[u8], base: usize) -> Result<(), PayloadError> {
    let n = index.len() / 4;
    let mut found = None;
    'starts: for start in 0..n {
        if mark(index, start) != 0
            || entry_at(entries, base, slot(index, start)).rtype != rtype::CNAME
        {
            continue;
        }
        let mut cur = start;
        loop {
            set_mark(index, cur, ON_PATH);
            match cname_next(index, entries, base, cur) {
                Some(next) if mark(index, next) == ON_PATH => {
                    found = Some(next);
                    break 'starts;
                }
                Some(next) if mark(index, next) == 0 => cur = next,
                _ => break,
            }
        }
        let mut cur = start;
        while mark(index, cur) == ON_PATH {
            set_mark(index, cur, DONE);
            match cname_next(index, entries, base, cur) {
                Some(next) => cur = next,
                None => break,
            }
        }
    }
    let result = match found {
        None => Ok(()),
        Some(first) => {
            let mut steps: u16 = 1;
            let mut cur = first;
            while let Some(next) = cname_next(index, entries, base, cur) {
                if next == first || steps as usize >= n {
                    break;
                }
                steps += 1;
                cur = next;
            }
            let e = entry_at(entries, base, slot(index, first));
            Err(PayloadError {
                record: Some(e.source),
                name: key_to_text(e.key),
                kind: PayloadErrorKind::CnameLoop { steps },
            })
        }
    };
    for i in 0..n {
        set_mark(index, i, 0);
    }
    result
}

/// Exact rdata equality, names compared case-insensitively (TXT exactly).
fn same_rdata(t: u16, a: &Entry<'_>, b: &Entry<'_>) -> bool {
    match t {
        rtype::TXT | rtype::A | rtype::AAAA => a.rdata == b.rdata,
        _ => a.rdata.eq_ignore_ascii_case(b.rdata),
    }
}
