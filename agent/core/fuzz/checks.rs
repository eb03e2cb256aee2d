//! The checks of the core's fuzz targets that have a property beyond "no panic", shared by
//! the targets (`fuzz_targets/*.rs`) and the regression test over the kept inputs
//! (`tests/regressions.rs`, docs/fuzzing.md).

use sdwan_agent_core::framing::{FrameError, TcpFramer};
use sdwan_agent_core::payload::{PayloadErrorKind, MAX_DEPTH};
use sdwan_agent_core::{compile, compiled_size_bound, Zone};

/// DNS over TCP framing: any bytes as a connection's stream, read in chunks whose sizes the
/// input also picks. Never panics; every message it gives is the one its length prefix
/// announced, in order; it never has a full buffer without a complete message; an over-long
/// prefix ends the stream with the error once the messages before it came out.
pub fn tcp_frames(data: &[u8]) {
    // First byte: buffer capacity; second: the chunk-size seed; the rest: the stream.
    let [cap, seed, stream @ ..] = data else {
        return;
    };
    let cap = 3 + usize::from(*cap) * 2;
    let mut buf = vec![0u8; cap];
    let mut f = TcpFramer::new(&mut buf);
    // The reference: walk the prefixes directly.
    let mut expect = Vec::new();
    let mut i = 0;
    let mut expect_err = None;
    while i + 2 <= stream.len() {
        let len = usize::from(u16::from_be_bytes([stream[i], stream[i + 1]]));
        if len > cap - 2 {
            expect_err = Some(FrameError::TooLong { len, max: cap - 2 });
            break;
        }
        if i + 2 + len > stream.len() {
            break;
        }
        expect.push(&stream[i + 2..i + 2 + len]);
        i += 2 + len;
    }
    let mut got = 0;
    let mut pos = 0;
    let mut k = usize::from(*seed);
    loop {
        loop {
            match f.next_message() {
                Ok(Some(m)) => {
                    assert_eq!(m, expect[got], "message {got}");
                    got += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(Some(e), expect_err);
                    assert_eq!(got, expect.len());
                    return;
                }
            }
        }
        if pos == stream.len() {
            break;
        }
        let space = f.space();
        assert!(!space.is_empty(), "full buffer with no complete message");
        k = k.wrapping_mul(31).wrapping_add(7);
        let n = (1 + k % 97).min(space.len()).min(stream.len() - pos);
        space[..n].copy_from_slice(&stream[pos..pos + n]);
        f.filled(n);
        pos += n;
    }
    assert_eq!(got, expect.len());
    // A stream cut inside an over-long prefix's message is reported only once that prefix is
    // read whole, which it was: the error must have come out above.
    assert_eq!(expect_err, None);
}

/// Where `payload_nesting` puts its nesting.
const PLACES: [&str; 5] = [
    "an unknown top-level field",
    "around a record in `records`",
    "around a record's data",
    "around a record of a version 2 document",
    "around the whole document",
];

/// Zone payloads built from the input: valid records (distinct names) with nesting of an
/// input-chosen depth (0 to ~260,000) and container kinds (arrays, objects, per level) placed
/// somewhere the schema does or does not allow (issue 12). The nesting is built without
/// recursion, and `compile` must never recurse into it either (a stack overflow is a crash).
/// The result must be exactly what the schema says: nesting deeper than 3 levels is refused
/// as too deep at an opening bracket (a version 2 document as unsupported, its version comes
/// first), an unknown field as unknown, no nesting at all is accepted with every record.
pub fn payload_nesting(data: &[u8]) {
    let [place, hi, lo, nrec, kinds @ ..] = data else {
        return;
    };
    let place = usize::from(*place) % PLACES.len();
    let depth = if hi & 0x80 != 0 {
        usize::from(u16::from_be_bytes([hi & 0x7f, *lo])) * 8
    } else {
        usize::from(*lo % 8)
    };
    let nrec = usize::from(*nrec % 8);
    let kind_of = |level: usize| {
        kinds.is_empty() || kinds[(level / 8) % kinds.len()] & (1 << (level % 8)) == 0
    };
    // The nesting's opening and closing text, level 0 outermost.
    let mut open = String::new();
    let mut close = String::new();
    for level in 0..depth {
        if kind_of(level) {
            open.push('[');
        } else {
            open.push_str("{\"k\":");
        }
    }
    for level in (0..depth).rev() {
        close.push(if kind_of(level) { ']' } else { '}' });
    }
    let wrap = |inner: &str| format!("{open}{inner}{close}");
    let record = |i: usize, data: &str| format!(r#"{{"name":"n{i}","type":"A","data":{data}}}"#);
    let mut records: Vec<String> = (0..nrec)
        .map(|i| record(i, &format!("\"10.0.0.{i}\"")))
        .collect();
    let version = if place == 3 { 2 } else { 1 };
    let mut extra = String::new();
    match place {
        0 => extra = format!(r#","x":{}"#, wrap("1")),
        1 | 3 => records.insert(0, wrap(&record(9, "\"10.0.0.9\""))),
        2 => records.insert(0, record(9, &wrap("\"10.0.0.9\""))),
        _ => {}
    }
    let doc = format!(
        r#"{{"version":{version},"serial":1,"gateway":"g","origin":"k.s","ttl":1{extra},"records":[{}]}}"#,
        records.join(",")
    );
    let doc = if place == 4 { wrap(&doc) } else { doc };
    // The deepest point of the document.
    let deepest = match place {
        0 => 1 + depth,
        4 => 2 + depth + usize::from(nrec > 0),
        _ => 3 + depth,
    };
    let mut out = vec![0u8; compiled_size_bound(doc.len())];
    let got = compile(doc.as_bytes(), &mut out);
    let what = format!("{}, depth {depth}", PLACES[place]);
    if doc.len() > sdwan_agent_core::payload::MAX_PAYLOAD_BYTES {
        let e = got.expect_err(&what);
        assert!(
            matches!(e.kind, PayloadErrorKind::TooLarge { .. }),
            "{what}: {e}"
        );
        return;
    }
    match (place, deepest > usize::from(MAX_DEPTH)) {
        (3, _) => {
            let e = got.expect_err(&what);
            assert_eq!(
                e.kind,
                PayloadErrorKind::UnsupportedVersion(2),
                "{what}: {e}"
            );
        }
        (1, true) if !kind_of(0) => {
            // The record is wrapped in an object: its key `k` is an unknown field of record 0,
            // an error found before the fault, which wins.
            let e = got.expect_err(&what);
            assert!(
                matches!(e.kind, PayloadErrorKind::UnknownField(_)) && e.record == Some(0),
                "{what}: {e}"
            );
        }
        (_, true) => {
            let e = got.expect_err(&what);
            let PayloadErrorKind::Syntax { error, .. } = e.kind else {
                panic!("{what}: {e}");
            };
            assert_eq!(
                error.kind,
                sdwan_contract::json::ErrorKind::TooDeep,
                "{what}: {e}"
            );
            assert!(
                matches!(doc.as_bytes()[error.offset], b'[' | b'{'),
                "{what}: offset {} is not a bracket",
                error.offset
            );
            assert!(
                e.to_string().contains("nested deeper than 3 levels"),
                "{what}: {e}"
            );
        }
        (0, false) => {
            let e = got.expect_err(&what);
            assert!(
                matches!(e.kind, PayloadErrorKind::UnknownField(_)),
                "{what}: {e}"
            );
        }
        (4, false) if depth > 0 => {
            // An array, or an object with one unknown field: refused by the schema.
            got.expect_err(&what);
        }
        (_, false) => {
            let n = got.unwrap_or_else(|e| panic!("{what}: {e}"));
            let zone = Zone::from_compiled(&out[..n]).expect("what compile writes loads");
            let want = nrec + usize::from(place != 4);
            assert_eq!(zone.record_count(), want, "{what}");
        }
    }
}
