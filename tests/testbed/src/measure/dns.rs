//! DNS on the wire, as much as the measurement needs: an A query, and one checked parse of an
//! answer (rcode, the question it echoes, the A records of the answer section). Every read is
//! bounds-checked: an odd packet is an [`Error`], never a panic.

use std::net::Ipv4Addr;

/// Offsets of the fixed header (RFC 1035, 4.1.1).
mod field {
    pub const ID: usize = 0;
    pub const FLAGS: usize = 2;
    pub const QDCOUNT: usize = 4;
    pub const ANCOUNT: usize = 6;
    pub const HEADER_LEN: usize = 12;
}

const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// NXDOMAIN.
pub const RCODE_NAME_ERROR: u8 = 3;

/// Why a packet was not taken as an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// It ends before a field or a record it announces.
    Truncated,
    /// QR is not set: a query, not a response.
    NotResponse,
    /// A label length byte with the reserved high bits 01 or 10.
    BadLabel,
    /// A name to query that is empty, has an empty label, a label over 63 bytes or more than
    /// 255 bytes on the wire.
    BadName,
}

/// Writes a recursive A/IN query for `name` (dotted, without the root dot) with `id` into
/// `out` (cleared first).
pub fn build_query(id: u16, name: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if name.is_empty() {
        return Err(Error::BadName);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Error::BadName);
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - field::HEADER_LEN > 255 {
        return Err(Error::BadName);
    }
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(())
}

/// Sets the id of a query built by [`build_query`].
pub fn set_id(query: &mut [u8], id: u16) {
    if let Some(b) = query.get_mut(field::ID..field::ID + 2) {
        b.copy_from_slice(&id.to_be_bytes());
    }
}

/// A response, as far as the measurement reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    /// The first question as on the wire (name, type, class); empty without one.
    pub question: &'a [u8],
    /// The IN A records of the answer section, in order.
    pub a: Vec<Ipv4Addr>,
}

impl Response<'_> {
    /// Whether this echoes the question of `query` (a message from [`build_query`]), ignoring
    /// ASCII case.
    pub fn answers(&self, query: &[u8]) -> bool {
        query
            .get(field::HEADER_LEN..)
            .is_some_and(|q| !q.is_empty() && q.eq_ignore_ascii_case(self.question))
    }
}

fn be16(msg: &[u8], at: usize) -> Result<u16, Error> {
    match msg.get(at..at.checked_add(2).ok_or(Error::Truncated)?) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(Error::Truncated),
    }
}

/// The offset just after the (possibly compressed) name at `i`. Pointers are not followed:
/// a name ends at its first pointer.
fn skip_name(msg: &[u8], mut i: usize) -> Result<usize, Error> {
    loop {
        let n = *msg.get(i).ok_or(Error::Truncated)?;
        match n & 0xC0 {
            0x00 if n == 0 => return Ok(i + 1),
            0x00 => i += 1 + n as usize,
            0xC0 => {
                return if i + 2 <= msg.len() {
                    Ok(i + 2)
                } else {
                    Err(Error::Truncated)
                }
            }
            _ => return Err(Error::BadLabel),
        }
    }
}

/// Parses a response: header, questions (the first one kept), answer records (IN A kept).
/// Authority and additional sections are not read.
pub fn parse(msg: &[u8]) -> Result<Response<'_>, Error> {
    if msg.len() < field::HEADER_LEN {
        return Err(Error::Truncated);
    }
    let id = be16(msg, field::ID)?;
    let flags = be16(msg, field::FLAGS)?;
    if flags & FLAG_QR == 0 {
        return Err(Error::NotResponse);
    }
    let qdcount = be16(msg, field::QDCOUNT)?;
    let ancount = be16(msg, field::ANCOUNT)?;
    let mut i = field::HEADER_LEN;
    let mut question: &[u8] = &[];
    for q in 0..qdcount {
        let end = skip_name(msg, i)? + 4;
        if end > msg.len() {
            return Err(Error::Truncated);
        }
        if q == 0 {
            question = &msg[i..end];
        }
        i = end;
    }
    let mut a = Vec::new();
    for _ in 0..ancount {
        i = skip_name(msg, i)?;
        let rtype = be16(msg, i)?;
        let class = be16(msg, i + 2)?;
        let rdlen = be16(msg, i + 8)? as usize;
        let rdata = msg.get(i + 10..i + 10 + rdlen).ok_or(Error::Truncated)?;
        if rtype == TYPE_A && class == CLASS_IN && rdlen == 4 {
            a.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        i += 10 + rdlen;
    }
    Ok(Response {
        id,
        rcode: (flags & 0x000F) as u8,
        truncated: flags & FLAG_TC != 0,
        question,
        a,
    })
}

/// What a measured host waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// NOERROR with exactly this one A record.
    Addr(Ipv4Addr),
    /// NXDOMAIN.
    NxDomain,
}

impl Want {
    pub fn holds(&self, r: &Response<'_>) -> bool {
        match self {
            Want::Addr(ip) => r.rcode == 0 && !r.truncated && r.a == [*ip],
            Want::NxDomain => r.rcode == RCODE_NAME_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "svc0.bench.k8s.internal";

    fn query(id: u16) -> Vec<u8> {
        let mut q = Vec::new();
        build_query(id, NAME, &mut q).unwrap();
        q
    }

    /// A response to `query(id)`: flags, then `answers` records after the echoed question.
    fn response(id: u16, flags: u16, answers: &[&[u8]]) -> Vec<u8> {
        let mut m = query(id);
        m[2..4].copy_from_slice(&flags.to_be_bytes());
        m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for rr in answers {
            m.extend_from_slice(rr);
        }
        m
    }

    /// An answer record owned by a pointer to the question name (offset 12).
    fn rr(rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = vec![0xC0, 12];
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&0u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    #[test]
    fn builds_the_query_dig_would() {
        let q = query(0x1234);
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..17], b"\x04svc0");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
        let mut q2 = q.clone();
        set_id(&mut q2, 7);
        assert_eq!(&q2[..2], &[0, 7]);
        assert_eq!(&q2[2..], &q[2..]);
    }

    #[test]
    fn refuses_names_it_cannot_encode() {
        let mut q = Vec::new();
        for bad in ["", "a..b", ".a", "a.", &"x".repeat(64)] {
            assert_eq!(build_query(1, bad, &mut q), Err(Error::BadName), "{bad:?}");
        }
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(build_query(1, &long, &mut q), Err(Error::BadName));
        let fits = vec!["a".repeat(62); 4].join(".");
        assert_eq!(build_query(1, &fits, &mut q), Ok(()));
    }

    #[test]
    fn reads_rcode_question_and_a_records() {
        let q = query(9);
        let cname = rr(5, b"\x01x\x00");
        let aaaa = rr(
            28,
            &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        let a = rr(TYPE_A, &[10, 77, 0, 11]);
        let m = response(9, 0x8180, &[&cname, &aaaa, &a]);
        let r = parse(&m).unwrap();
        assert_eq!(r.id, 9);
        assert_eq!(r.rcode, 0);
        assert!(!r.truncated);
        assert_eq!(r.a, [Ipv4Addr::new(10, 77, 0, 11)]);
        assert!(r.answers(&q));
        assert!(Want::Addr(Ipv4Addr::new(10, 77, 0, 11)).holds(&r));
        assert!(!Want::Addr(Ipv4Addr::new(10, 77, 0, 12)).holds(&r));
        assert!(!Want::NxDomain.holds(&r));
    }

    #[test]
    fn wants_exactly_one_address_and_nxdomain_by_rcode() {
        let a1 = rr(TYPE_A, &[10, 77, 0, 11]);
        let a2 = rr(TYPE_A, &[10, 77, 0, 12]);
        let ip = Ipv4Addr::new(10, 77, 0, 11);
        let two = response(1, 0x8180, &[&a1, &a2]);
        assert!(!Want::Addr(ip).holds(&parse(&two).unwrap()));
        let tc = response(1, 0x8380, &[&a1]);
        assert!(!Want::Addr(ip).holds(&parse(&tc).unwrap()));
        let nx = response(1, 0x8183, &[]);
        let r = parse(&nx).unwrap();
        assert_eq!(r.rcode, RCODE_NAME_ERROR);
        assert!(Want::NxDomain.holds(&r));
        assert!(!Want::Addr(ip).holds(&r));
        let servfail = response(1, 0x8182, &[]);
        assert!(!Want::NxDomain.holds(&parse(&servfail).unwrap()));
    }

    #[test]
    fn another_question_is_not_an_answer() {
        let mut other = Vec::new();
        build_query(1, "svc1.bench.k8s.internal", &mut other).unwrap();
        other[2] = 0x81;
        let r = parse(&other).unwrap();
        assert!(!r.answers(&query(1)));
        let mut upper = query(1);
        upper[2] = 0x81;
        upper[13..17].copy_from_slice(b"SVC0");
        assert!(parse(&upper).unwrap().answers(&query(1)));
        let mut none = query(1);
        none.truncate(12);
        none[2] = 0x81;
        none[4..6].copy_from_slice(&[0, 0]);
        assert!(!parse(&none).unwrap().answers(&query(1)));
    }

    #[test]
    fn odd_packets_are_errors_not_panics() {
        assert_eq!(parse(&[]), Err(Error::Truncated));
        assert_eq!(parse(&[0; 11]), Err(Error::Truncated));
        assert_eq!(parse(&query(1)), Err(Error::NotResponse));
        let a = rr(TYPE_A, &[10, 77, 0, 11]);
        let full = response(1, 0x8180, &[&a]);
        // Every prefix of a good answer: an error or (the header alone, counts 0) fine.
        for n in 0..full.len() {
            assert!(parse(&full[..n]).is_err(), "prefix {n}");
        }
        // Counts that promise more than is there.
        let mut m = full.clone();
        m[7] = 200;
        assert_eq!(parse(&m), Err(Error::Truncated));
        m = full.clone();
        m[5] = 3;
        assert!(parse(&m).is_err());
        // rdlength past the end.
        m = full.clone();
        let at = m.len() - 6;
        m[at..at + 2].copy_from_slice(&0xFFFFu16.to_be_bytes());
        assert_eq!(parse(&m), Err(Error::Truncated));
        // Reserved label bits, a label running past the end, a pointer cut in half.
        m = full.clone();
        m[12] = 0x40;
        assert_eq!(parse(&m), Err(Error::BadLabel));
        m = full.clone();
        m[12] = 63;
        assert_eq!(parse(&m), Err(Error::Truncated));
        let mut cut = response(1, 0x8180, &[]);
        cut[7] = 1;
        cut.push(0xC0);
        assert_eq!(parse(&cut), Err(Error::Truncated));
        // Every byte value at every offset: never a panic.
        for at in 0..full.len() {
            for v in [0u8, 1, 0x3F, 0x7F, 0xBF, 0xC0, 0xFF] {
                let mut m = full.clone();
                m[at] = v;
                let _ = parse(&m);
            }
        }
    }
}
