//! `json::check` agrees with serde_json (a complete, strict RFC 8259 parser, reading into a
//! `Value`) on which documents are well-formed: random mutations of valid documents, seeded so a failure replays.

use sdwan_contract::json::{check, Limits};
use sdwan_testsupport::Rng;

const SEEDS: &[&str] = &[
    r#"{"version":1,"serial":42,"records":[{"name":"a","type":"A","data":"192.0.2.1"}]}"#,
    r#"{"state":"online","serial":null,"error":"x \"y\" \u00e9","version":"0.1.0"}"#,
    r#"[1,-2.5e-3,0,true,false,null,"\ud83d\ude00",{"k":[[],{}]}]"#,
    r#"{"a":{"b":{"c":[1,2,{"d":"e\n\t\/"}]}}}"#,
];

/// Bytes a mutation may insert: every JSON token start and some that are never valid.
const ALPHABET: &[u8] = b"{}[]:,\"\\/0123456789-+.eEtruefalsnbu \t\n\r\x00\x1fx\xc3\xa9";

#[test]
fn check_agrees_with_serde_json_on_mutated_documents() {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_depth: 100, // below serde_json's own recursion limit of 128
    };
    let mut rng = Rng::new(0x5eed_0012);
    let mut disagreements = Vec::new();
    for round in 0..200_000 {
        let mut doc = rng.pick(SEEDS).as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(doc.len() + 1);
            match rng.below(3) {
                0 if at < doc.len() => {
                    doc.remove(at);
                }
                1 if at < doc.len() => doc[at] = *rng.pick(ALPHABET),
                _ => doc.insert(at, *rng.pick(ALPHABET)),
            }
        }
        let ours = check(&doc, limits).is_ok();
        // Into a Value, so serde_json also checks UTF-8 and surrogate pairs, as `check` does.
        let theirs = serde_json::from_slice::<serde_json::Value>(&doc).is_ok();
        if ours != theirs && disagreements.len() < 10 {
            disagreements.push((round, String::from_utf8_lossy(&doc).into_owned(), ours));
        }
    }
    assert!(
        disagreements.is_empty(),
        "(round, doc, check ok): {disagreements:#?}"
    );
}
