//! A pull reader over a JSON document that passed [`crate::json::check`]: no recursion (a
//! value is skipped by counting brackets), no heap (strings are read in place or unescaped
//! into the caller's buffer). It still checks every byte it relies on, so bytes that did not
//! pass the door give an error, never a panic.

use super::decode::ErrorKind;

pub(crate) struct Reader<'a> {
    b: &'a [u8],
    pub(crate) pos: usize,
}

/// What the next value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

pub(crate) type R<T> = Result<T, (ErrorKind, usize)>;

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8], pos: usize) -> Self {
        Reader { b, pos }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, kind: ErrorKind) -> R<T> {
        Err((kind, self.pos))
    }

    pub(crate) fn peek(&mut self) -> R<Token> {
        self.ws();
        Ok(match self.b.get(self.pos) {
            Some(b'{') => Token::Object,
            Some(b'[') => Token::Array,
            Some(b'"') => Token::String,
            Some(b'-' | b'0'..=b'9') => Token::Number,
            Some(b't' | b'f') => Token::Bool,
            Some(b'n') => Token::Null,
            _ => return self.err(ErrorKind::Syntax),
        })
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Opens an object; `what` names the field for a type error.
    pub(crate) fn object(&mut self, what: &'static str) -> R<()> {
        if self.eat(b'{') {
            Ok(())
        } else {
            self.err(ErrorKind::WrongType(what))
        }
    }

    pub(crate) fn array(&mut self, what: &'static str) -> R<()> {
        if self.eat(b'[') {
            Ok(())
        } else {
            self.err(ErrorKind::WrongType(what))
        }
    }

    /// The next key of an open object, unescaped into `buf`, or `None` at its end. `first` is
    /// true until the first key was read.
    pub(crate) fn key<'k>(&mut self, first: &mut bool, buf: &'k mut [u8]) -> R<Option<&'k str>> {
        if self.eat(b'}') {
            return Ok(None);
        }
        if !*first && !self.eat(b',') {
            return self.err(ErrorKind::Syntax);
        }
        *first = false;
        self.ws();
        let at = self.pos;
        let k = match self.string(buf, "") {
            Ok(k) => k,
            Err((ErrorKind::TooLong(_), _)) => "",
            Err(e) => return Err(e),
        };
        if !self.eat(b':') {
            return Err((ErrorKind::Syntax, at));
        }
        Ok(Some(k))
    }

    /// Whether an open array has another element (consumes the `,` or `]`).
    pub(crate) fn next(&mut self, first: &mut bool) -> R<bool> {
        if self.eat(b']') {
            return Ok(false);
        }
        if !*first && !self.eat(b',') {
            return self.err(ErrorKind::Syntax);
        }
        *first = false;
        Ok(true)
    }

    /// A string, unescaped into `buf` when it has escapes (else borrowed from `buf` too, for
    /// one lifetime): [`ErrorKind::TooLong`] when it does not fit.
    pub(crate) fn string<'k>(&mut self, buf: &'k mut [u8], what: &'static str) -> R<&'k str> {
        self.ws();
        if self.b.get(self.pos) != Some(&b'"') {
            return self.err(ErrorKind::WrongType(what));
        }
        let start = self.pos;
        self.pos += 1;
        let mut n = 0;
        let mut put = |n: &mut usize, bytes: &[u8]| -> bool {
            match buf.get_mut(*n..*n + bytes.len()) {
                Some(d) => {
                    d.copy_from_slice(bytes);
                    *n += bytes.len();
                    true
                }
                None => false,
            }
        };
        let mut too_long = false;
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Err((ErrorKind::Syntax, start));
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    let e = self.b.get(self.pos + 1).copied();
                    let simple = match e {
                        Some(b'"') => Some(b'"'),
                        Some(b'\\') => Some(b'\\'),
                        Some(b'/') => Some(b'/'),
                        Some(b'b') => Some(8),
                        Some(b'f') => Some(12),
                        Some(b'n') => Some(b'\n'),
                        Some(b'r') => Some(b'\r'),
                        Some(b't') => Some(b'\t'),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        too_long |= !put(&mut n, &[s]);
                        self.pos += 2;
                        continue;
                    }
                    if e != Some(b'u') {
                        return Err((ErrorKind::Syntax, self.pos));
                    }
                    let hi = self.hex4(self.pos + 2)?;
                    self.pos += 6;
                    let cp = if (0xd800..0xdc00).contains(&hi) {
                        if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err((ErrorKind::Syntax, self.pos));
                        }
                        let lo = self.hex4(self.pos + 2)?;
                        if !(0xdc00..0xe000).contains(&lo) {
                            return Err((ErrorKind::Syntax, self.pos));
                        }
                        self.pos += 6;
                        0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                    } else {
                        hi
                    };
                    let Some(ch) = char::from_u32(cp) else {
                        return Err((ErrorKind::Syntax, self.pos));
                    };
                    let mut tmp = [0u8; 4];
                    too_long |= !put(&mut n, ch.encode_utf8(&mut tmp).as_bytes());
                }
                0x00..=0x1f => return Err((ErrorKind::Syntax, self.pos)),
                _ => {
                    too_long |= !put(&mut n, &[c]);
                    self.pos += 1;
                }
            }
        }
        if too_long {
            return Err((ErrorKind::TooLong(what), start));
        }
        match core::str::from_utf8(&buf[..n]) {
            Ok(s) => Ok(s),
            Err(_) => Err((ErrorKind::Syntax, start)),
        }
    }

    /// The bytes of a string without escapes (a backslash is refused as an invalid value), and
    /// the offset of its first byte.
    pub(crate) fn raw_string(&mut self, what: &'static str) -> R<(&'a [u8], usize)> {
        self.ws();
        if self.b.get(self.pos) != Some(&b'"') {
            return self.err(ErrorKind::WrongType(what));
        }
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match self.b.get(i) {
                None => return Err((ErrorKind::Syntax, start)),
                Some(b'"') => break,
                Some(b'\\') => return Err((ErrorKind::Invalid(what), i)),
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        Ok((self.b.get(start..i).unwrap_or(&[]), start))
    }

    fn hex4(&self, at: usize) -> R<u32> {
        let Some(h) = self.b.get(at..at + 4) else {
            return Err((ErrorKind::Syntax, at));
        };
        let mut v = 0u32;
        for &c in h {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err((ErrorKind::Syntax, at)),
            };
            v = v << 4 | u32::from(d);
        }
        Ok(v)
    }

    /// A non-negative integer without fraction or exponent, at most `max`.
    pub(crate) fn uint(&mut self, what: &'static str, max: u64) -> R<u64> {
        self.ws();
        let start = self.pos;
        if !matches!(self.b.get(self.pos), Some(b'0'..=b'9')) {
            return match self.peek()? {
                Token::Number => Err((ErrorKind::BadNumber(what), start)),
                _ => Err((ErrorKind::WrongType(what), start)),
            };
        }
        let mut v: u64 = 0;
        let mut over = false;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.pos) {
            match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
            {
                Some(n) => v = n,
                None => over = true,
            }
            self.pos += 1;
        }
        if matches!(self.b.get(self.pos), Some(b'.' | b'e' | b'E')) {
            return Err((ErrorKind::BadNumber(what), start));
        }
        if over || v > max {
            return Err((ErrorKind::OutOfRange(what), start));
        }
        Ok(v)
    }

    pub(crate) fn boolean(&mut self, what: &'static str) -> R<bool> {
        self.ws();
        if self.b.get(self.pos..self.pos + 4) == Some(b"true") {
            self.pos += 4;
            Ok(true)
        } else if self.b.get(self.pos..self.pos + 5) == Some(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            self.err(ErrorKind::WrongType(what))
        }
    }

    /// Consumes `null` if it is next.
    pub(crate) fn null(&mut self) -> bool {
        self.ws();
        if self.b.get(self.pos..self.pos + 4) == Some(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// Skips one value of any kind without recursion.
    pub(crate) fn skip(&mut self) -> R<()> {
        self.ws();
        let mut depth = 0usize;
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return self.err(ErrorKind::Syntax);
            };
            match c {
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    self.pos += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                b'"' => {
                    self.pos += 1;
                    loop {
                        match self.b.get(self.pos) {
                            None => return self.err(ErrorKind::Syntax),
                            Some(b'\\') => self.pos += 2,
                            Some(b'"') => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {
                    // A scalar or punctuation; a scalar at depth 0 ends at a delimiter.
                    self.pos += 1;
                    if depth == 0
                        && !matches!(
                            self.b.get(self.pos),
                            Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'+' | b'-')
                        )
                    {
                        return Ok(());
                    }
                }
            }
        }
    }
}
