//! DNS wire format (RFC 1035), in the style of smoltcp's `wire` modules.
//!
//! - [`Packet`] wraps any byte buffer; [`Packet::new_checked`] is the one door for untrusted
//!   bytes (it checks that a header is there), after which no accessor can panic.
//! - [`field`] holds the header offsets.
//! - [`parse_name`] reads a (possibly compressed) name, loop-safe: every compression pointer
//!   must point strictly before the label that holds it, and the name is at most 255 octets.
//! - [`Question`] and [`Opt`] are the parsed parts of a query the answer path needs.
//! - [`Writer`] emits into a bounded buffer; names are compressed by pointing at names
//!   already written.

/// Why a message could not be read or an answer could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Not even a header: the query is dropped without an answer.
    Truncated,
    /// The output buffer cannot hold even a header and question.
    NoRoom,
    /// The message is a response (QR set): never answered, so two servers cannot loop.
    NotAQuery,
    /// A name, record or section runs past the end or is otherwise malformed (the answer path
    /// turns this into FORMERR).
    Malformed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "message shorter than a DNS header",
            Error::NoRoom => "output buffer too small",
            Error::NotAQuery => "message is a response",
            Error::Malformed => "malformed DNS message",
        })
    }
}

/// Result of wire operations.
pub type Result<T> = core::result::Result<T, Error>;

/// Header field offsets.
pub mod field {
    use core::ops::Range;
    /// Message id.
    pub const ID: Range<usize> = 0..2;
    /// Flags (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
    pub const FLAGS: Range<usize> = 2..4;
    /// Number of questions.
    pub const QDCOUNT: Range<usize> = 4..6;
    /// Number of answer records.
    pub const ANCOUNT: Range<usize> = 6..8;
    /// Number of authority records.
    pub const NSCOUNT: Range<usize> = 8..10;
    /// Number of additional records.
    pub const ARCOUNT: Range<usize> = 10..12;
    /// Where the question starts.
    pub const HEADER_END: usize = 12;
}

/// Flag bits of the second header word.
pub mod flags {
    /// Response.
    pub const QR: u16 = 0x8000;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Checking disabled.
    pub const CD: u16 = 0x0010;
}

/// Response codes (the low 4 bits; BADVERS goes into the OPT record).
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused.
    pub const REFUSED: u16 = 5;
    /// Bad EDNS version (extended rcode 16: upper bits 1 in the OPT record).
    pub const BADVERS: u16 = 16;
}

/// A DNS message over a byte buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking; accessors then return 0 for missing bytes.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wraps, checking that a whole header is present.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks that a whole header is present.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < field::HEADER_END {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }
    /// The underlying bytes.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn get16(&self, r: core::ops::Range<usize>) -> u16 {
        match self.buffer.as_ref().get(r) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }
    /// Message id.
    pub fn id(&self) -> u16 {
        self.get16(field::ID)
    }
    /// The whole flags word.
    pub fn flags(&self) -> u16 {
        self.get16(field::FLAGS)
    }
    /// QR bit.
    pub fn is_response(&self) -> bool {
        self.flags() & flags::QR != 0
    }
    /// Opcode (0 = QUERY).
    pub fn opcode(&self) -> u8 {
        ((self.flags() >> 11) & 0xf) as u8
    }
    /// RCODE (low 4 bits).
    pub fn rcode(&self) -> u16 {
        self.flags() & 0xf
    }
    /// Question count.
    pub fn question_count(&self) -> u16 {
        self.get16(field::QDCOUNT)
    }
    /// Answer count.
    pub fn answer_count(&self) -> u16 {
        self.get16(field::ANCOUNT)
    }
    /// Authority count.
    pub fn authority_count(&self) -> u16 {
        self.get16(field::NSCOUNT)
    }
    /// Additional count.
    pub fn additional_count(&self) -> u16 {
        self.get16(field::ARCOUNT)
    }
    /// The bytes after the header (empty when unchecked and short).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::HEADER_END..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set16(&mut self, r: core::ops::Range<usize>, v: u16) {
        if let Some(s) = self.buffer.as_mut().get_mut(r) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
    /// Sets the id.
    pub fn set_id(&mut self, v: u16) {
        self.set16(field::ID, v)
    }
    /// Sets the flags word.
    pub fn set_flags(&mut self, v: u16) {
        self.set16(field::FLAGS, v)
    }
    /// Sets the question count.
    pub fn set_question_count(&mut self, v: u16) {
        self.set16(field::QDCOUNT, v)
    }
    /// Sets the answer count.
    pub fn set_answer_count(&mut self, v: u16) {
        self.set16(field::ANCOUNT, v)
    }
    /// Sets the authority count.
    pub fn set_authority_count(&mut self, v: u16) {
        self.set16(field::NSCOUNT, v)
    }
    /// Sets the additional count.
    pub fn set_additional_count(&mut self, v: u16) {
        self.set16(field::ARCOUNT, v)
    }
}

/// A name in uncompressed wire form (labels and the root), up to 255 octets.
#[derive(Clone, Copy)]
pub struct Name {
    buf: [u8; 255],
    len: u8,
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut p = 0;
        let w = self.as_bytes();
        if w.len() <= 1 {
            return f.write_str(".");
        }
        while p < w.len() && w[p] != 0 {
            let l = w[p] as usize;
            for &c in w.get(p + 1..p + 1 + l).unwrap_or(&[]) {
                if c.is_ascii_graphic() {
                    write!(f, "{}", c as char)?;
                } else {
                    write!(f, "\\{c:03}")?;
                }
            }
            f.write_str(".")?;
            p += 1 + l;
        }
        Ok(())
    }
}

impl Default for Name {
    fn default() -> Self {
        Name {
            buf: [0; 255],
            len: 1,
        }
    }
}

impl Name {
    /// The wire bytes, ending with the root label.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// Reads the name at `pos` of `msg` into `name`, following compression pointers; returns the
/// position after it in the original (uncompressed) stream.
pub fn parse_name_into(msg: &[u8], pos: usize, name: &mut Name) -> Result<usize> {
    let mut n = 0usize;
    let mut p = pos;
    let mut end = None;
    // Pointers must go strictly backwards, so at most msg.len() jumps; label bytes bound the
    // rest.
    loop {
        let l = *msg.get(p).ok_or(Error::Malformed)?;
        match l & 0xc0 {
            0x00 => {
                if l == 0 {
                    if n + 1 > 255 {
                        return Err(Error::Malformed);
                    }
                    name.buf[n] = 0;
                    name.len = (n + 1) as u8;
                    return Ok(end.unwrap_or(p + 1));
                }
                let l = l as usize;
                let label = msg.get(p + 1..p + 1 + l).ok_or(Error::Malformed)?;
                if n + 1 + l + 1 > 255 {
                    return Err(Error::Malformed);
                }
                name.buf[n] = l as u8;
                name.buf[n + 1..n + 1 + l].copy_from_slice(label);
                n += 1 + l;
                p += 1 + l;
            }
            0xc0 => {
                let lo = *msg.get(p + 1).ok_or(Error::Malformed)?;
                let target = (((l & 0x3f) as usize) << 8) | lo as usize;
                if target >= p {
                    return Err(Error::Malformed);
                }
                if end.is_none() {
                    end = Some(p + 2);
                }
                p = target;
            }
            _ => return Err(Error::Malformed),
        }
    }
}

/// Skips a (possibly compressed) name, returning the position after it.
pub fn skip_name(msg: &[u8], pos: usize) -> Result<usize> {
    let mut p = pos;
    loop {
        let l = *msg.get(p).ok_or(Error::Malformed)?;
        match l & 0xc0 {
            0x00 if l == 0 => return Ok(p + 1),
            0x00 => p += 1 + l as usize,
            0xc0 => {
                msg.get(p + 1).ok_or(Error::Malformed)?;
                return Ok(p + 2);
            }
            _ => return Err(Error::Malformed),
        }
    }
}

/// The question of a query. Its name borrows the query's bytes as they are (no copy) unless
/// it holds a compression pointer, which no real client sends in a question (a pointer must
/// point backwards, and only the header is before it): such a name is spelled out into the
/// caller's [`Name`].
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The name in wire form with the root label, in the client's letter case.
    pub name: &'a [u8],
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

impl<'a> Question<'a> {
    /// Parses the question at `pos`; returns it and the position after it. `spill` holds the
    /// name only when it is compressed.
    pub fn parse(
        msg: &'a [u8],
        pos: usize,
        spill: &'a mut Option<Name>,
    ) -> Result<(Question<'a>, usize)> {
        let (name, p): (&'a [u8], usize) = match plain_name_end(msg, pos)? {
            Some(end) => (&msg[pos..end], end),
            None => {
                let mut n = Name::default();
                let end = parse_name_into(msg, pos, &mut n)?;
                let n: &'a Name = spill.insert(n);
                (n.as_bytes(), end)
            }
        };
        let t = msg.get(p..p + 4).ok_or(Error::Malformed)?;
        Ok((
            Question {
                name,
                qtype: u16::from_be_bytes([t[0], t[1]]),
                qclass: u16::from_be_bytes([t[2], t[3]]),
            },
            p + 4,
        ))
    }
}

/// The end of the uncompressed name at `pos` (after its root label), `None` when it reaches a
/// compression pointer first. Errors as [`parse_name_into`]: a reserved label type, a label
/// past the end, more than 255 octets.
fn plain_name_end(msg: &[u8], pos: usize) -> Result<Option<usize>> {
    let mut p = pos;
    loop {
        let l = *msg.get(p).ok_or(Error::Malformed)?;
        match l & 0xc0 {
            0x00 if l == 0 => return Ok(Some(p + 1)),
            0x00 => {
                // This label and the root must fit in 255 octets.
                if p - pos + 1 + l as usize + 1 > 255 {
                    return Err(Error::Malformed);
                }
                p += 1 + l as usize;
            }
            0xc0 => return Ok(None),
            _ => return Err(Error::Malformed),
        }
    }
}

/// The EDNS(0) OPT record of a query (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    /// Requestor's UDP payload size.
    pub udp_size: u16,
    /// EDNS version.
    pub version: u8,
    /// DNSSEC OK bit.
    pub dnssec_ok: bool,
}

/// Reads the records after the question, returning the OPT record if there is one. Malformed
/// records, more than one OPT, or an OPT not owned by the root are errors (FORMERR).
pub fn parse_opt(msg: &[u8], mut pos: usize, records: usize) -> Result<Option<Opt>> {
    let mut opt = None;
    let ar_start = {
        let p = Packet::new_unchecked(msg);
        p.answer_count() as usize + p.authority_count() as usize
    };
    for i in 0..records {
        let owner = pos;
        pos = skip_name(msg, pos)?;
        let h = msg.get(pos..pos + 10).ok_or(Error::Malformed)?;
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let rdlen = u16::from_be_bytes([h[8], h[9]]) as usize;
        let rdata = msg
            .get(pos + 10..pos + 10 + rdlen)
            .ok_or(Error::Malformed)?;
        if rtype == 41 {
            if i < ar_start || opt.is_some() || msg.get(owner) != Some(&0) {
                return Err(Error::Malformed);
            }
            // Options: code, length, data; checked for length only.
            let mut o = 0;
            while o < rdata.len() {
                let ol = rdata.get(o + 2..o + 4).ok_or(Error::Malformed)?;
                o += 4 + u16::from_be_bytes([ol[0], ol[1]]) as usize;
                if o > rdata.len() {
                    return Err(Error::Malformed);
                }
            }
            opt = Some(Opt {
                udp_size: u16::from_be_bytes([h[2], h[3]]),
                version: h[5],
                dnssec_ok: h[6] & 0x80 != 0,
            });
        }
        pos += 10 + rdlen;
    }
    Ok(opt)
}

/// Writes a message into a buffer, never past `limit`.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    limit: usize,
}

impl<'a> Writer<'a> {
    /// A writer over `buf`, allowed to fill at most `limit` bytes.
    pub fn new(buf: &'a mut [u8], limit: usize) -> Writer<'a> {
        let limit = limit.min(buf.len());
        Writer { buf, len: 0, limit }
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The size limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Sets the size limit (capped at the buffer length).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(self.buf.len());
    }
    /// Forgets everything after `len` (for rolling back a partial RRset).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    /// The bytes written.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// The bytes written, mutable (to patch the header).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
    /// Appends bytes.
    #[inline]
    pub fn put(&mut self, b: &[u8]) -> Result<()> {
        let end = self.len + b.len();
        if end > self.limit {
            return Err(Error::NoRoom);
        }
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }
    /// Appends a big-endian u16.
    #[inline(always)]
    pub fn u16(&mut self, v: u16) -> Result<()> {
        match self.buf.get_mut(self.len..self.len + 2) {
            Some([a, b]) if self.len + 2 <= self.limit => {
                [*a, *b] = v.to_be_bytes();
                self.len += 2;
                Ok(())
            }
            _ => Err(Error::NoRoom),
        }
    }
    /// Appends a big-endian u32.
    #[inline(always)]
    pub fn u32(&mut self, v: u32) -> Result<()> {
        match self.buf.get_mut(self.len..self.len + 4) {
            Some([a, b, c, d]) if self.len + 4 <= self.limit => {
                [*a, *b, *c, *d] = v.to_be_bytes();
                self.len += 4;
                Ok(())
            }
            _ => Err(Error::NoRoom),
        }
    }
    /// Appends a compression pointer to `offset` (`NoRoom` when the offset is beyond what a
    /// pointer can reach, 16383).
    #[inline(always)]
    pub fn pointer(&mut self, offset: usize) -> Result<()> {
        if offset > 0x3fff {
            return Err(Error::NoRoom);
        }
        self.u16(0xc000 | offset as u16)
    }
    /// Appends labels (no root) followed by a pointer to `suffix_at`.
    pub fn labels_then_pointer(&mut self, labels: &[u8], suffix_at: usize) -> Result<()> {
        self.put(labels)?;
        self.pointer(suffix_at)
    }
    /// Overwrites a big-endian u16 at `at` (inside what was written).
    pub fn patch16(&mut self, at: usize, v: u16) {
        if let Some(s) = self.buf[..self.len].get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
}
