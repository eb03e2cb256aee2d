//! Payload acceptance and rejection as data (`tests/cases/payload.toml`): each rejected payload
//! must fail with an error whose text holds the expected fragment and names the record.

use std::path::Path;

use sdwan_agent_core::{compile, compiled_size_bound, Zone};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    accept: Vec<Accept>,
    reject: Vec<Reject>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    name: String,
    payload: Option<String>,
    payload_gen: Option<Gen>,
    records: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reject {
    name: String,
    payload: Option<String>,
    payload_gen: Option<Gen>,
    error: String,
    record: Option<u16>,
}

/// Payloads too big to write out in the case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Gen {
    /// That many A records at one name.
    rrset: Option<usize>,
    /// That many records at distinct names.
    records: Option<usize>,
    /// A TXT record of that many bytes.
    txt: Option<usize>,
    /// A name of that many characters (labels of 49).
    long_name: Option<usize>,
    /// A payload padded with spaces to that many bytes.
    bytes: Option<usize>,
    /// Nesting that many arrays (`open = "["`) or objects (`"{"`) deep, `at` one of
    /// `unknown_field`, `records_v2` (records of a version 2 document), `records_first`
    /// (records before the version), `data` (a record's data).
    nest: Option<usize>,
    at: Option<String>,
    open: Option<String>,
    /// A chain of that many CNAMEs `c0 -> c1 -> ...`; the last points back to `c0` when
    /// `cname_loops`, else to an A record `end`.
    cname_chain: Option<usize>,
    cname_loops: Option<bool>,
}

/// `n` levels of `open`, empty inside and closed again.
fn nested(n: usize, open: &str) -> String {
    let (one, close) = match open {
        "[" => ("[", "]"),
        "{" => ("{\"a\":", "}"),
        _ => panic!("open is [ or {{"),
    };
    let inner = if open == "[" { "" } else { "1" };
    format!("{}{inner}{}", one.repeat(n), close.repeat(n))
}

fn doc(records: &[String]) -> String {
    format!(
        r#"{{"version": 1, "serial": 1, "gateway": "g", "origin": "k8s.internal", "ttl": 1, "records": [{}]}}"#,
        records.join(",")
    )
}

impl Gen {
    fn make(&self) -> String {
        if let Some(n) = self.rrset {
            let r: Vec<_> = (0..n)
                .map(|i| {
                    format!(
                        r#"{{"name": "a", "type": "A", "data": "10.0.{}.{}"}}"#,
                        i / 256,
                        i % 256
                    )
                })
                .collect();
            return doc(&r);
        }
        if let Some(n) = self.records {
            let r: Vec<_> = (0..n)
                .map(|i| format!(r#"{{"name": "n{i}", "type": "A", "data": "10.0.0.1"}}"#))
                .collect();
            return doc(&r);
        }
        if let Some(n) = self.txt {
            return doc(&[format!(
                r#"{{"name": "t", "type": "TXT", "data": "{}"}}"#,
                "x".repeat(n)
            )]);
        }
        if let Some(n) = self.long_name {
            let name: Vec<String> = (0..n.div_ceil(50)).map(|_| "a".repeat(49)).collect();
            let name = name.join(".");
            return doc(&[format!(
                r#"{{"name": "{}", "type": "A", "data": "10.0.0.1"}}"#,
                &name[..n.min(name.len())]
            )]);
        }
        if let Some(n) = self.nest {
            let v = nested(n, self.open.as_deref().unwrap_or("["));
            let head = r#""serial": 1, "gateway": "g", "origin": "k.s", "ttl": 1"#;
            return match self.at.as_deref().unwrap_or("") {
                "unknown_field" => {
                    format!(r#"{{"version": 1, {head}, "records": [], "extra": {v}}}"#)
                }
                "records_v2" => format!(r#"{{"version": 2, {head}, "records": [{v}]}}"#),
                "records_first" => format!(r#"{{"records": [{v}], "version": 1, {head}}}"#),
                "data" => format!(
                    r#"{{"version": 1, {head}, "records": [{{"name": "a", "type": "A", "data": {v}}}]}}"#
                ),
                at => panic!("unknown nest place {at:?}"),
            };
        }
        if let Some(n) = self.cname_chain {
            let mut r: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        r#"{{"name": "c{i}", "type": "CNAME", "data": "c{}"}}"#,
                        i + 1
                    )
                })
                .collect();
            if self.cname_loops == Some(true) {
                r[n - 1] = format!(r#"{{"name": "c{}", "type": "CNAME", "data": "c0"}}"#, n - 1);
            } else {
                r.push(format!(
                    r#"{{"name": "c{n}", "type": "A", "data": "10.0.0.1"}}"#
                ));
            }
            return doc(&r);
        }
        if let Some(n) = self.bytes {
            let d = doc(&[]);
            return format!("{d}{}", " ".repeat(n - d.len()));
        }
        panic!("empty payload_gen")
    }
}

fn cases() -> File {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/payload.toml");
    toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn payload(p: &Option<String>, g: &Option<Gen>) -> String {
    match (p, g) {
        (Some(p), None) => p.clone(),
        (None, Some(g)) => g.make(),
        _ => panic!("give exactly one of payload and payload_gen"),
    }
}

#[test]
fn accepted_payloads() {
    let file = cases();
    assert!(file.accept.len() >= 3);
    for case in &file.accept {
        let p = payload(&case.payload, &case.payload_gen);
        let mut out = vec![0u8; compiled_size_bound(p.len())];
        let n = compile(p.as_bytes(), &mut out)
            .unwrap_or_else(|e| panic!("{}: rejected: {e}", case.name));
        let z = Zone::from_compiled(&out[..n]).unwrap();
        assert_eq!(z.record_count(), case.records, "{}", case.name);
    }
}

#[test]
fn rejected_payloads() {
    let file = cases();
    assert!(file.reject.len() >= 40);
    let mut failures = Vec::new();
    for case in &file.reject {
        let p = payload(&case.payload, &case.payload_gen);
        let mut out = vec![0u8; compiled_size_bound(p.len())];
        match compile(p.as_bytes(), &mut out) {
            Ok(_) => failures.push(format!("{}: accepted", case.name)),
            Err(e) => {
                let text = e.to_string();
                if !text.contains(&case.error) {
                    failures.push(format!(
                        "{}: error `{text}` lacks `{}`",
                        case.name, case.error
                    ));
                }
                if e.record != case.record {
                    failures.push(format!(
                        "{}: record {:?}, expected {:?} (`{text}`)",
                        case.name, e.record, case.record
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn output_too_small_is_an_error_not_a_panic() {
    let file = cases();
    let p = payload(&file.accept[0].payload, &file.accept[0].payload_gen);
    let mut out = vec![0u8; compiled_size_bound(p.len())];
    let n = compile(p.as_bytes(), &mut out).unwrap();
    for len in 0..n {
        let mut small = vec![0u8; len];
        let e = compile(p.as_bytes(), &mut small).unwrap_err();
        assert!(
            e.to_string().contains("output buffer too small"),
            "{len}: {e}"
        );
    }
}

#[test]
fn compiled_bound_holds_for_dense_payloads() {
    // The densest records the schema allows: short JSON, long compiled form.
    let dense = [
        r#"{"name":"a","type":"TXT","data":""}"#,
        r#"{"name":"@","type":"SRV","data":"0 0 0 b"}"#,
        r#"{"name":"a.b.c.d.e","type":"CNAME","data":"x.y.z."}"#,
        r#"{"name":"@","type":"AAAA","data":"::"}"#,
    ];
    for (i, r) in dense.iter().enumerate() {
        // Distinct names so no RRset limit or CNAME rule gets in the way.
        let records: Vec<String> = (0..2000)
            .map(|n| r.replacen("\"name\":\"", &format!("\"name\":\"n{n}."), 1))
            .map(|r| r.replace(".@\"", "\""))
            .collect();
        let p = format!(
            r#"{{"version":1,"serial":1,"gateway":"g","origin":"k","ttl":1,"records":[{}]}}"#,
            records.join(",")
        );
        let mut out = vec![0u8; compiled_size_bound(p.len())];
        let n = compile(p.as_bytes(), &mut out).unwrap_or_else(|e| panic!("dense {i}: {e}"));
        assert!(n <= p.len() + 1024);
    }
}
