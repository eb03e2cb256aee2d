//! Helpers shared by the test binaries: query building and response checking with
//! hickory-proto (an independent DNS implementation).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::str::FromStr;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

/// Compiles a payload, panicking with the error text when it is rejected.
pub fn zone(payload: &str) -> sdwan_agent_core::Zone<Vec<u8>> {
    let mut out = vec![0u8; sdwan_agent_core::compiled_size_bound(payload.len())];
    let n = sdwan_agent_core::compile(payload.as_bytes(), &mut out)
        .unwrap_or_else(|e| panic!("payload rejected: {e}"));
    out.truncate(n);
    sdwan_agent_core::Zone::from_compiled(out).expect("compiled zone loads")
}

/// Encodes a dotted name (trailing dot optional) into wire form, keeping its case.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
    }
    v.push(0);
    v
}

/// A record type by mnemonic (hickory's) or number.
pub fn rtype(t: &str) -> u16 {
    if let Ok(n) = t.parse::<u16>() {
        return n;
    }
    u16::from(RecordType::from_str(t).unwrap_or_else(|_| panic!("unknown type {t}")))
}

/// EDNS part of a query.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edns {
    #[serde(default = "default_size")]
    pub size: u16,
    #[serde(default)]
    pub version: u8,
    #[serde(default, rename = "do")]
    pub dnssec_ok: bool,
    /// (code, hex data)
    #[serde(default)]
    pub options: Vec<(u16, String)>,
}

fn default_size() -> u16 {
    1232
}

/// Builds a query by hand (so odd ones can be made too).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub name: String,
    #[serde(rename = "type", default = "default_type")]
    pub qtype: String,
    #[serde(default = "default_class")]
    pub class: u16,
    #[serde(default = "default_id")]
    pub id: u16,
    #[serde(default = "yes")]
    pub rd: bool,
    #[serde(default)]
    pub cd: bool,
    #[serde(default)]
    pub opcode: u8,
    /// Overrides QDCOUNT (the question is still written once, or not at all when 0).
    pub qdcount: Option<u16>,
    pub edns: Option<Edns>,
    /// A second OPT record (FORMERR).
    #[serde(default)]
    pub two_opts: bool,
}

fn default_type() -> String {
    "A".into()
}
fn default_class() -> u16 {
    1
}
fn default_id() -> u16 {
    0x1234
}
fn yes() -> bool {
    true
}

impl Query {
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.id.to_be_bytes());
        let mut flags = (self.opcode as u16 & 0xf) << 11;
        if self.rd {
            flags |= 0x0100;
        }
        if self.cd {
            flags |= 0x0010;
        }
        v.extend_from_slice(&flags.to_be_bytes());
        let qd = self.qdcount.unwrap_or(1);
        let opts = match (&self.edns, self.two_opts) {
            (Some(_), true) => 2u16,
            (Some(_), false) => 1,
            _ => 0,
        };
        v.extend_from_slice(&qd.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(&opts.to_be_bytes());
        if qd > 0 {
            v.extend_from_slice(&wire_name(&self.name));
            v.extend_from_slice(&rtype(&self.qtype).to_be_bytes());
            v.extend_from_slice(&self.class.to_be_bytes());
        }
        if let Some(e) = &self.edns {
            for _ in 0..opts {
                v.push(0);
                v.extend_from_slice(&41u16.to_be_bytes());
                v.extend_from_slice(&e.size.to_be_bytes());
                v.push(0);
                v.push(e.version);
                v.extend_from_slice(&(if e.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
                let mut rdata = Vec::new();
                for (code, hex) in &e.options {
                    let data = unhex(hex);
                    rdata.extend_from_slice(&code.to_be_bytes());
                    rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    rdata.extend_from_slice(&data);
                }
                v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                v.extend_from_slice(&rdata);
            }
        }
        v
    }
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Checks the raw response's structure beyond what hickory tells: every record owner in the
/// answer, authority and additional sections is a compression pointer (OPT excepted), and
/// the question is echoed byte for byte (client's case).
pub fn check_raw(resp: &[u8], query_question: Option<&[u8]>) -> Result<(), String> {
    let count = |i: usize| u16::from_be_bytes([resp[i], resp[i + 1]]) as usize;
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut p = 12;
    if qd == 1 {
        let end = p + resp[p..].iter().position(|&b| b == 0).ok_or("no root")? + 5;
        if let Some(q) = query_question {
            if &resp[12..end] != q {
                return Err(format!(
                    "question not echoed exactly: {:?} vs {:?}",
                    &resp[12..end],
                    q
                ));
            }
        }
        p = end;
    }
    for _ in 0..an + ns + ar {
        let b = resp[p];
        let (is_opt, np) = if b & 0xc0 == 0xc0 {
            (false, p + 2)
        } else if b == 0 && resp[p + 1..p + 3] == [0, 41] {
            (true, p + 1)
        } else {
            return Err(format!("record owner at {p} is not compressed"));
        };
        let _ = is_opt;
        let rdlen = u16::from_be_bytes([resp[np + 8], resp[np + 9]]) as usize;
        p = np + 10 + rdlen;
    }
    if p != resp.len() {
        return Err(format!("trailing bytes: parsed {p} of {}", resp.len()));
    }
    Ok(())
}

/// Renders a decoded response the way the case files spell it.
pub fn render(m: &Message) -> String {
    let mut s = String::new();
    for r in &m.answers {
        writeln!(s, "AN {r}").unwrap();
    }
    for r in &m.authorities {
        writeln!(s, "NS {r}").unwrap();
    }
    for r in &m.additionals {
        writeln!(s, "AR {r}").unwrap();
    }
    s
}
