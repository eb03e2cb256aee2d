//! The checked door for JSON documents: [`check`] reads the bytes once, without recursion and
//! without a heap, and accepts only a document that is well-formed by RFC 8259 and within
//! [`Limits`]. Every parser behind a door (serde-json-core in the agent, serde_json in the
//! master) then only ever sees bytes that passed, so nesting an attacker controls can no
//! longer exhaust the stack of a recursive deserializer, and raw control characters inside
//! strings (which RFC 8259 forbids and serde-json-core lets through) are refused at the door.
//!
//! The nesting of open arrays and objects is kept as a bit stack in a `u128`, so the depth a
//! document may reach is at most [`MAX_DEPTH`] whatever the limits say.
//!
//! ```
//! use sdwan_contract::json::{check, ErrorKind, Limits};
//!
//! let limits = Limits { max_bytes: 1024, max_depth: 2 };
//! assert!(check(br#"{"a":[1,2,{"b":3}]}"#, limits).is_err()); // depth 3
//! assert!(check(br#"{"a":[1,2,3]}"#, limits).is_ok());
//! let e = check(b"{\"a\":\"x\ny\"}", limits).unwrap_err();
//! assert_eq!((e.kind, e.offset), (ErrorKind::ControlInString, 7));
//! ```

use core::fmt;

/// The deepest nesting any door may allow (the size of the bit stack).
pub const MAX_DEPTH: u16 = 128;

/// The zone payload v1 door (`docs/payload.md`): the document, `records` and a record object
/// are the whole schema, 3 deep, and unknown fields are refused anyway.
pub const ZONE_V1: Limits = Limits {
    max_bytes: 1024 * 1024,
    max_depth: 3,
};

/// The proxy payload v1 door (`docs/payload-proxy.md`): the deepest path of the schema is
/// `services[].ports[]` (5 levels); 3 more are spare for data fields a later master adds,
/// which the agent ignores.
pub const PROXY_V1: Limits = Limits {
    max_bytes: 8 * 1024 * 1024,
    max_depth: 8,
};

/// The status document door (agents' `.../status` topics, read by the master and tests): one
/// flat object of at most a few kilobytes (an error text with a command's stderr); 3 levels
/// spare for fields a later agent adds, which readers ignore.
pub const STATUS: Limits = Limits {
    max_bytes: 16 * 1024,
    max_depth: 4,
};

/// What a door accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects: `1` allows `{"a":1}` and `[1]`, `0` only a
    /// scalar. Values above [`MAX_DEPTH`] count as [`MAX_DEPTH`].
    pub max_depth: u16,
}

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The document is longer than [`Limits::max_bytes`].
    TooLarge,
    /// Arrays and objects nest deeper than [`Limits::max_depth`].
    TooDeep,
    /// The bytes are not UTF-8 (RFC 8259 section 8.1).
    BadUtf8,
    /// A raw control character (U+0000 to U+001F) inside a string.
    ControlInString,
    /// A backslash escape that JSON does not have, or a `\u` escape that is not four hex
    /// digits or leaves a UTF-16 surrogate unpaired.
    BadEscape,
    /// A number that does not follow the JSON grammar (`01`, `1.`, `-`, `+1`, ...).
    BadNumber,
    /// A byte that cannot start or continue the document here (including a trailing comma
    /// or a missing colon).
    Unexpected,
    /// The document ends inside a value, or is empty.
    UnexpectedEnd,
    /// Bytes other than white space after the document.
    TrailingData,
}

impl ErrorKind {
    /// A short description, for logs and status documents.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::TooLarge => "document too large",
            ErrorKind::TooDeep => "nested too deeply",
            ErrorKind::BadUtf8 => "not UTF-8",
            ErrorKind::ControlInString => "raw control character in a string",
            ErrorKind::BadEscape => "invalid string escape",
            ErrorKind::BadNumber => "invalid number",
            ErrorKind::Unexpected => "unexpected character",
            ErrorKind::UnexpectedEnd => "unexpected end of input",
            ErrorKind::TrailingData => "trailing characters after the document",
        }
    }
}

/// A refused document: what and where (byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Byte offset of the first byte found wrong (for [`ErrorKind::TooLarge`], the limit).
    pub offset: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.as_str(), self.offset)
    }
}

#[cfg(any(feature = "std", test))]
impl std::error::Error for Error {}

/// What the checker expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (document start, after `:` or after `,` in an array).
    Value,
    /// A value or `]` (right after `[`).
    ValueOrEnd,
    /// A key or `}` (right after `{`).
    KeyOrEnd,
    /// A key (after `,` in an object).
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the end of the innermost container.
    CommaOrEnd,
    /// Nothing but white space.
    Done,
}

/// Checks that `doc` is one well-formed JSON value within `limits`. Never recurses, never
/// allocates; linear in the length of `doc`.
pub fn check(doc: &[u8], limits: Limits) -> Result<(), Error> {
    if doc.len() > limits.max_bytes {
        return Err(Error {
            kind: ErrorKind::TooLarge,
            offset: limits.max_bytes,
        });
    }
    if let Err(e) = core::str::from_utf8(doc) {
        return Err(Error {
            kind: ErrorKind::BadUtf8,
            offset: e.valid_up_to(),
        });
    }
    let max_depth = limits.max_depth.min(MAX_DEPTH);
    let err = |kind, offset| Err(Error { kind, offset });
    // Bit i set: the container at depth i + 1 is an object.
    let mut objects: u128 = 0;
    let mut depth: u16 = 0;
    let mut expect = Expect::Value;
    let mut i = 0;
    while i < doc.len() {
        let b = doc[i];
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
            continue;
        }
        let in_object = depth > 0 && objects & (1 << (depth - 1)) != 0;
        match expect {
            Expect::Done => return err(ErrorKind::TrailingData, i),
            Expect::Colon => {
                if b != b':' {
                    return err(ErrorKind::Unexpected, i);
                }
                i += 1;
                expect = Expect::Value;
            }
            Expect::Key | Expect::KeyOrEnd => {
                if b == b'}' && expect == Expect::KeyOrEnd {
                    depth -= 1;
                    i += 1;
                    expect = after_value(depth);
                } else if b == b'"' {
                    i = string(doc, i)?;
                    expect = Expect::Colon;
                } else {
                    return err(ErrorKind::Unexpected, i);
                }
            }
            Expect::CommaOrEnd => {
                match (b, in_object) {
                    (b',', true) => expect = Expect::Key,
                    (b',', false) => expect = Expect::Value,
                    (b'}', true) | (b']', false) => {
                        depth -= 1;
                        expect = after_value(depth);
                    }
                    _ => return err(ErrorKind::Unexpected, i),
                }
                i += 1;
            }
            Expect::Value | Expect::ValueOrEnd => {
                match b {
                    b']' if expect == Expect::ValueOrEnd => {
                        depth -= 1;
                        i += 1;
                    }
                    b'{' | b'[' => {
                        if depth >= max_depth {
                            return err(ErrorKind::TooDeep, i);
                        }
                        if b == b'{' {
                            objects |= 1 << depth;
                        } else {
                            objects &= !(1 << depth);
                        }
                        depth += 1;
                        i += 1;
                        expect = if b == b'{' {
                            Expect::KeyOrEnd
                        } else {
                            Expect::ValueOrEnd
                        };
                        continue;
                    }
                    b'"' => i = string(doc, i)?,
                    b't' => i = literal(doc, i, b"true")?,
                    b'f' => i = literal(doc, i, b"false")?,
                    b'n' => i = literal(doc, i, b"null")?,
                    b'-' | b'0'..=b'9' => i = number(doc, i)?,
                    _ => return err(ErrorKind::Unexpected, i),
                }
                expect = after_value(depth);
            }
        }
    }
    if expect == Expect::Done {
        Ok(())
    } else {
        err(ErrorKind::UnexpectedEnd, doc.len())
    }
}

fn after_value(depth: u16) -> Expect {
    if depth == 0 {
        Expect::Done
    } else {
        Expect::CommaOrEnd
    }
}

/// Checks the literal `word` at `i`; returns the offset after it.
fn literal(doc: &[u8], i: usize, word: &[u8]) -> Result<usize, Error> {
    for (k, &w) in word.iter().enumerate() {
        match doc.get(i + k) {
            Some(&b) if b == w => {}
            Some(_) => {
                return Err(Error {
                    kind: ErrorKind::Unexpected,
                    offset: i + k,
                })
            }
            None => {
                return Err(Error {
                    kind: ErrorKind::UnexpectedEnd,
                    offset: doc.len(),
                })
            }
        }
    }
    Ok(i + word.len())
}

/// Checks the string starting with the quote at `i`; returns the offset after its closing
/// quote. The document is known to be UTF-8, so only ASCII needs looking at.
fn string(doc: &[u8], mut i: usize) -> Result<usize, Error> {
    let bad = |kind, offset| Err(Error { kind, offset });
    i += 1;
    // A high surrogate escape waiting for its low half.
    let mut pending_high = false;
    loop {
        let Some(&b) = doc.get(i) else {
            return bad(ErrorKind::UnexpectedEnd, doc.len());
        };
        if pending_high && b != b'\\' {
            return bad(ErrorKind::BadEscape, i);
        }
        match b {
            b'"' => return Ok(i + 1),
            0x00..=0x1f => return bad(ErrorKind::ControlInString, i),
            b'\\' => {
                let Some(&e) = doc.get(i + 1) else {
                    return bad(ErrorKind::UnexpectedEnd, doc.len());
                };
                match e {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' if !pending_high => {
                        i += 2
                    }
                    b'u' => {
                        let Some(hex) = doc.get(i + 2..i + 6) else {
                            return bad(ErrorKind::UnexpectedEnd, doc.len());
                        };
                        let mut unit: u16 = 0;
                        for &h in hex {
                            let d = match h {
                                b'0'..=b'9' => h - b'0',
                                b'a'..=b'f' => h - b'a' + 10,
                                b'A'..=b'F' => h - b'A' + 10,
                                _ => return bad(ErrorKind::BadEscape, i),
                            };
                            unit = unit << 4 | u16::from(d);
                        }
                        match (pending_high, unit) {
                            (false, 0xd800..=0xdbff) => pending_high = true,
                            (true, 0xdc00..=0xdfff) => pending_high = false,
                            (false, 0xdc00..=0xdfff) | (true, _) => {
                                return bad(ErrorKind::BadEscape, i)
                            }
                            (false, _) => {}
                        }
                        i += 6;
                    }
                    _ => return bad(ErrorKind::BadEscape, i),
                }
            }
            _ => i += 1,
        }
    }
}

/// Checks the number starting at `i`; returns the offset after it.
fn number(doc: &[u8], mut i: usize) -> Result<usize, Error> {
    let digit = |i: usize| doc.get(i).is_some_and(u8::is_ascii_digit);
    let bad = |offset| {
        Err(Error {
            kind: ErrorKind::BadNumber,
            offset,
        })
    };
    if doc[i] == b'-' {
        i += 1;
    }
    match doc.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while digit(i) {
                i += 1;
            }
        }
        _ => return bad(i),
    }
    if doc.get(i) == Some(&b'.') {
        i += 1;
        if !digit(i) {
            return bad(i);
        }
        while digit(i) {
            i += 1;
        }
    }
    if matches!(doc.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(doc.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit(i) {
            return bad(i);
        }
        while digit(i) {
            i += 1;
        }
    }
    // `01`, `1x`: a number must end at a delimiter.
    match doc.get(i) {
        None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}') => Ok(i),
        Some(_) => bad(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const L: Limits = Limits {
        max_bytes: 1 << 20,
        max_depth: 8,
    };

    /// (document, expected error kind and offset, or None when valid)
    const CASES: &[(&str, Option<(ErrorKind, usize)>)] = &[
        ("{}", None),
        ("[]", None),
        ("0", None),
        ("-0.5e+10", None),
        ("\"\"", None),
        (
            " { \"a\" : [ 1 , true , false , null , \"x\" , { } , [ ] ] } \n",
            None,
        ),
        (r#""\u00e9\ud83d\ude00\n\"\\\/""#, None),
        ("\"é\"", None),
        ("", Some((ErrorKind::UnexpectedEnd, 0))),
        ("   ", Some((ErrorKind::UnexpectedEnd, 3))),
        ("{", Some((ErrorKind::UnexpectedEnd, 1))),
        ("[1,]", Some((ErrorKind::Unexpected, 3))),
        ("{\"a\":1,}", Some((ErrorKind::Unexpected, 7))),
        ("{\"a\" 1}", Some((ErrorKind::Unexpected, 5))),
        ("{1:2}", Some((ErrorKind::Unexpected, 1))),
        ("[1 2]", Some((ErrorKind::Unexpected, 3))),
        ("[1}", Some((ErrorKind::Unexpected, 2))),
        ("{\"a\":1]", Some((ErrorKind::Unexpected, 6))),
        ("{} {}", Some((ErrorKind::TrailingData, 3))),
        ("01", Some((ErrorKind::BadNumber, 1))),
        ("1.", Some((ErrorKind::BadNumber, 2))),
        ("-", Some((ErrorKind::BadNumber, 1))),
        ("+1", Some((ErrorKind::Unexpected, 0))),
        ("1e", Some((ErrorKind::BadNumber, 2))),
        ("[1x]", Some((ErrorKind::BadNumber, 2))),
        ("tru", Some((ErrorKind::UnexpectedEnd, 3))),
        ("nul!", Some((ErrorKind::Unexpected, 3))),
        ("\"a\tb\"", Some((ErrorKind::ControlInString, 2))),
        ("\"a\u{0}\"", Some((ErrorKind::ControlInString, 2))),
        (r#""\x""#, Some((ErrorKind::BadEscape, 1))),
        (r#""\u12g4""#, Some((ErrorKind::BadEscape, 1))),
        (r#""\ud800""#, Some((ErrorKind::BadEscape, 7))),
        (r#""\ud800\n""#, Some((ErrorKind::BadEscape, 7))),
        (r#""\udc00""#, Some((ErrorKind::BadEscape, 1))),
        (r#""\ud800\u0041""#, Some((ErrorKind::BadEscape, 7))),
        ("\"abc", Some((ErrorKind::UnexpectedEnd, 4))),
        ("[[[[[[[[1]]]]]]]]", None),
        ("[[[[[[[[[1]]]]]]]]]", Some((ErrorKind::TooDeep, 8))),
        (
            "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{}}}}}}}}}",
            Some((ErrorKind::TooDeep, 40)),
        ),
    ];

    #[test]
    fn cases() {
        for (doc, want) in CASES {
            let got = check(doc.as_bytes(), L).err().map(|e| (e.kind, e.offset));
            assert_eq!(got, *want, "{doc:?}");
        }
    }

    #[test]
    fn not_utf8_is_refused() {
        let e = check(b"\"a\xff\"", L).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::BadUtf8, 2));
    }

    #[test]
    fn size_limit_holds() {
        let l = Limits {
            max_bytes: 4,
            max_depth: 8,
        };
        assert!(check(b"[12]", l).is_ok());
        assert_eq!(check(b"[123]", l).unwrap_err().kind, ErrorKind::TooLarge);
    }

    /// The attack of issue 12: a million levels are refused at the limit, in one pass, with
    /// no recursion (this test would overflow the stack of a recursive checker).
    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        for open in [b'[', b'{'] {
            let mut doc = Vec::new();
            for _ in 0..1_000_000 {
                doc.push(open);
                if open == b'{' {
                    doc.extend_from_slice(b"\"a\":");
                }
            }
            let e = check(
                &doc,
                Limits {
                    max_bytes: usize::MAX,
                    max_depth: 64,
                },
            )
            .unwrap_err();
            assert_eq!(e.kind, ErrorKind::TooDeep);
        }
    }

    #[test]
    fn depth_above_the_bit_stack_counts_as_its_size() {
        let mut doc = Vec::new();
        doc.resize(MAX_DEPTH as usize, b'[');
        doc.resize(2 * MAX_DEPTH as usize, b']');
        let l = Limits {
            max_bytes: 1 << 20,
            max_depth: u16::MAX,
        };
        assert!(check(&doc, l).is_ok());
        doc.insert(0, b'[');
        doc.push(b']');
        assert_eq!(check(&doc, l).unwrap_err().kind, ErrorKind::TooDeep);
    }
}
