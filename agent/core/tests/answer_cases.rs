//! The answer rules as data: every `tests/cases/answer_*.toml` holds a zone payload and cases
//! (query, transport, expected rcode, flags and records). Each response is decoded with
//! hickory-proto and compared with what the case expects.

mod common;

use std::path::Path;

use hickory_proto::op::Message;
use sdwan_agent_core::{answer, Transport};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The zone payload; absent (with `payload_file`) means no zone is loaded.
    payload: Option<String>,
    /// A file beside the case file holding the payload.
    payload_file: Option<String>,
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    query: Option<common::Query>,
    /// Raw query bytes in hex, instead of `query`.
    raw: Option<String>,
    #[serde(default = "udp")]
    transport: String,
    /// Size of the output buffer (default 65535).
    out_len: Option<usize>,
    expect: Expect,
}

fn udp() -> String {
    "udp".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// No answer at all.
    #[serde(default)]
    drop: bool,
    /// Response code by name, as hickory spells it (NoError, NXDomain, BADVERS, ...).
    rcode: Option<String>,
    aa: Option<bool>,
    tc: Option<bool>,
    /// Records as `SECTION name ttl class type rdata`, in order (SECTION = AN, NS, AR).
    records: Option<Vec<String>>,
    /// Only these must be among the records (when the full list is long).
    contains: Option<Vec<String>>,
    /// Answer count.
    answers: Option<usize>,
    /// Our OPT: its UDP size, or 0 for "no OPT".
    edns_size: Option<u16>,
    /// DO bit in our OPT.
    dnssec_ok: Option<bool>,
    /// Question echoed (0 or 1).
    qdcount: Option<usize>,
    max_len: Option<usize>,
}

fn run_file(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let file: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let payload = match (&file.payload, &file.payload_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(std::fs::read_to_string(path.with_file_name(f)).unwrap()),
        (None, None) => None,
    };
    let zone = payload.as_deref().map(common::zone);
    let mut failures = Vec::new();
    for case in &file.case {
        if let Err(e) = run_case(zone.as_ref(), case) {
            failures.push(format!("{} / {}: {e}", path.display(), case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    file.case.len()
}

fn run_case(zone: Option<&sdwan_agent_core::Zone<Vec<u8>>>, case: &Case) -> Result<(), String> {
    let query = match (&case.query, &case.raw) {
        (Some(q), None) => q.bytes(),
        (None, Some(hex)) => common::unhex(hex),
        _ => return Err("give exactly one of query and raw".into()),
    };
    let transport = match case.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        t => return Err(format!("unknown transport {t}")),
    };
    let mut out = vec![0u8; case.out_len.unwrap_or(65535)];
    let r = answer(zone, &query, &mut out, transport);
    let e = &case.expect;
    let n = match (r, e.drop) {
        (Err(_), true) => return Ok(()),
        (Ok(n), true) => return Err(format!("expected no answer, got {n} bytes")),
        (Err(err), false) => return Err(format!("no answer: {err:?}")),
        (Ok(n), false) => n,
    };
    let resp = &out[..n];
    if std::env::var("CASE_DEBUG").is_ok() {
        eprintln!("{}: {:02x?}", case.name, resp);
    }
    let m = Message::from_vec(resp).map_err(|err| format!("hickory cannot decode: {err}"))?;
    // Always: a response, same id and opcode, RD and CD echoed, RA clear.
    let md = &m.metadata;
    if u16::from_be_bytes([query[0], query[1]]) != md.id {
        return Err("id not echoed".into());
    }
    if resp[2] & 0x80 == 0 {
        return Err("QR not set".into());
    }
    if (resp[2] ^ query[2]) & 0x79 != 0 || (resp[3] ^ query[3]) & 0x10 != 0 {
        return Err("opcode, RD or CD not echoed".into());
    }
    if md.recursion_available {
        return Err("RA set".into());
    }
    let limit = match (transport, m.edns.is_some(), &case.query) {
        (Transport::Tcp, _, _) => out.len(),
        (Transport::Udp, true, Some(q)) => q
            .edns
            .as_ref()
            .map_or(512, |e| (e.size as usize).clamp(512, 1232)),
        _ => 512,
    };
    if n > limit {
        return Err(format!("{n} bytes, over the limit {limit}"));
    }
    let question = case
        .query
        .as_ref()
        .filter(|q| q.qdcount.unwrap_or(1) == 1)
        .map(|q| {
            let b = q.bytes();
            let end = 12 + b[12..].iter().position(|&x| x == 0).unwrap() + 5;
            b[12..end].to_vec()
        });
    let echoed = resp[5] == 1;
    common::check_raw(resp, if echoed { question.as_deref() } else { None })?;
    if let Some(want) = &e.rcode {
        let got = format!("{:?}", md.response_code);
        let num = u16::from(md.response_code).to_string();
        if !got.eq_ignore_ascii_case(want) && num != *want {
            return Err(format!(
                "rcode {got}, expected {want}\n{}",
                common::render(&m)
            ));
        }
    }
    if let Some(aa) = e.aa {
        if md.authoritative != aa {
            return Err(format!("AA {}, expected {aa}", md.authoritative));
        }
    }
    let tc = e.tc.unwrap_or(false);
    if md.truncation != tc {
        return Err(format!("TC {}, expected {tc}", md.truncation));
    }
    let got = common::render(&m);
    if let Some(want) = &e.records {
        let want: String = want.iter().map(|l| format!("{l}\n")).collect();
        if got != want {
            return Err(format!("records differ\n got:\n{got}\n want:\n{want}"));
        }
    }
    if let Some(want) = &e.contains {
        for w in want {
            if !got.lines().any(|l| l == w) {
                return Err(format!("missing `{w}`\n got:\n{got}"));
            }
        }
    }
    if let Some(a) = e.answers {
        if m.answers.len() != a {
            return Err(format!("{} answers, expected {a}", m.answers.len()));
        }
    }
    if let Some(size) = e.edns_size {
        let got = m.edns.as_ref().map_or(0, |o| o.max_payload());
        if got != size {
            return Err(format!("OPT size {got}, expected {size}"));
        }
        if let Some(o) = &m.edns {
            if o.version() != 0 {
                return Err("OPT version not 0".into());
            }
        }
    }
    if let Some(d) = e.dnssec_ok {
        let got = m.edns.as_ref().is_some_and(|o| o.flags().dnssec_ok);
        if got != d {
            return Err(format!("DO {got}, expected {d}"));
        }
    }
    if let Some(q) = e.qdcount {
        if m.queries.len() != q {
            return Err(format!("{} questions, expected {q}", m.queries.len()));
        }
    }
    if let Some(max) = e.max_len {
        if n > max {
            return Err(format!("{n} bytes, expected at most {max}"));
        }
    }
    Ok(())
}

#[test]
fn answer_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("answer_") && n.ends_with(".toml"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in {}", dir.display());
    let total: usize = files.iter().map(|f| run_file(f)).sum();
    assert!(total >= 40, "only {total} answer cases");
}
