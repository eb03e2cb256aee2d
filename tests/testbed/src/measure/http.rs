//! HTTP/1.1 responses, as much as the measurement needs: where one ends (Content-Length,
//! chunked, or the connection's end), its status and its body. Bounds-checked: a malformed
//! response is an [`Error`], never a panic.

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No `HTTP/1.x NNN` status line, a bad header line, or a bad length or chunk size.
    Malformed,
    /// The connection ended before the response did.
    Truncated,
}

/// One whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Bytes of the buffer it took (the next response on a kept-alive connection follows).
    pub len: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || find(hay, needle).is_some()
}

/// Reads the response at the start of `buf`: `Ok(None)` while more bytes are needed; `eof`
/// says the peer closed the connection (which ends a body without a length).
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, Error> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if eof { Err(Error::Truncated) } else { Ok(None) };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| Error::Malformed)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(Error::Malformed);
    }
    let status: u16 = code.parse().map_err(|_| Error::Malformed)?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Error::Malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| Error::Malformed)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let start = head_end + 4;
    let rest = &buf[start..];
    // No body: 1xx, 204, 304 (and answers to HEAD, which the measurement never sends).
    if status / 100 == 1 || status == 204 || status == 304 {
        return Ok(Some(Response {
            status,
            body: Vec::new(),
            len: start,
        }));
    }
    if chunked {
        return match dechunk(rest)? {
            Some((body, used)) => Ok(Some(Response {
                status,
                body,
                len: start + used,
            })),
            None if eof => Err(Error::Truncated),
            None => Ok(None),
        };
    }
    match length {
        Some(n) if rest.len() >= n => Ok(Some(Response {
            status,
            body: rest[..n].to_vec(),
            len: start + n,
        })),
        Some(_) if eof => Err(Error::Truncated),
        Some(_) => Ok(None),
        None if eof => Ok(Some(Response {
            status,
            body: rest.to_vec(),
            len: buf.len(),
        })),
        None => Ok(None),
    }
}

/// Decodes a chunked body at the start of `buf`: the body and the bytes it took, or `None`
/// while it is incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Error> {
    let mut body = Vec::new();
    let mut i = 0;
    loop {
        let Some(eol) = find(&buf[i..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[i..i + eol]).map_err(|_| Error::Malformed)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| Error::Malformed)?;
        i += eol + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(eol) = find(&buf[i..], b"\r\n") else {
                    return Ok(None);
                };
                i += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, i)));
                }
            }
        }
        let end = i.checked_add(size).ok_or(Error::Malformed)?;
        let Some(data) = buf.get(i..end) else {
            return Ok(None);
        };
        match buf.get(end..end + 2) {
            None | Some([b'\r']) => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err(Error::Malformed),
        }
        body.extend_from_slice(data);
        i = end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_frames_a_kept_alive_response() {
        let two = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let r = parse_response(two, false).unwrap().unwrap();
        assert_eq!((r.status, &r.body[..], r.len), (201, &b"{}"[..], 77));
        let r2 = parse_response(&two[r.len..], false).unwrap().unwrap();
        assert_eq!((r2.status, r2.body.len()), (200, 0));
        // Every prefix: incomplete, or (at the end of the connection) truncated.
        for n in 0..r.len {
            assert_eq!(parse_response(&two[..n], false), Ok(None), "prefix {n}");
            assert_eq!(parse_response(&two[..n], true), Err(Error::Truncated));
        }
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let m = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbenc\r\n7;x=1\r\nh on w1\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let r = parse_response(m, false).unwrap().unwrap();
        assert_eq!(r.body, b"bench on w1");
        assert_eq!(&m[r.len..], b"NEXT");
        for n in 47..m.len() - 4 {
            assert_eq!(parse_response(&m[..n], false), Ok(None), "prefix {n}");
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(parse_response(bad, false), Err(Error::Malformed));
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc";
        assert_eq!(parse_response(bad, false), Err(Error::Malformed));
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
        assert!(parse_response(huge, false).is_err());
    }

    #[test]
    fn without_a_length_the_body_ends_with_the_connection() {
        let m = b"HTTP/1.0 404 Not Found\r\nServer: nginx\r\n\r\nNo service at this path\n";
        assert_eq!(parse_response(m, false), Ok(None));
        let r = parse_response(m, true).unwrap().unwrap();
        assert_eq!(r.status, 404);
        assert!(contains(&r.body, b"No service at this path"));
        assert!(!contains(&r.body, b"bench on"));
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_response(no_content, false).unwrap().unwrap().len, 27);
    }

    #[test]
    fn malformed_heads_are_errors() {
        for m in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \xff\r\n\r\n",
        ] {
            assert_eq!(parse_response(m, false), Err(Error::Malformed), "{m:?}");
        }
    }
}
