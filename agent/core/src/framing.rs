//! DNS over TCP framing (RFC 1035 4.2.2, RFC 7766 8): every message is preceded by its length
//! as two bytes, big-endian. [`TcpFramer`] reassembles the messages of one connection from
//! reads of any size, in a buffer the caller owns: no I/O, no heap.
//!
//! ```
//! use sdwan_agent_core::framing::TcpFramer;
//! let mut buf = [0u8; 2 + 512];
//! let mut f = TcpFramer::new(&mut buf);
//! // The bytes of two reads: a whole 3-byte message and the first byte of the next prefix.
//! let read = [0, 3, b'a', b'b', b'c', 0];
//! f.space()[..read.len()].copy_from_slice(&read);
//! f.filled(read.len());
//! assert_eq!(f.next_message(), Ok(Some(&b"abc"[..])));
//! assert_eq!(f.next_message(), Ok(None));
//! assert!(f.in_message());
//! ```

/// Why a connection's bytes cannot be DNS over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A length prefix above the largest message the buffer takes.
    TooLong {
        /// The announced length.
        len: usize,
        /// The largest accepted.
        max: usize,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::TooLong { len, max } => {
                write!(f, "message of {len} bytes (at most {max})")
            }
        }
    }
}

/// Reassembles length-prefixed messages in `buf`; the largest message accepted is
/// `buf.len() - 2` bytes.
#[derive(Debug)]
pub struct TcpFramer<'a> {
    buf: &'a mut [u8],
    start: usize,
    end: usize,
}

impl<'a> TcpFramer<'a> {
    /// A framer over `buf`, which must hold at least a length prefix and one byte.
    pub fn new(buf: &'a mut [u8]) -> TcpFramer<'a> {
        assert!(
            buf.len() > 2,
            "a TCP framing buffer needs room for a message"
        );
        TcpFramer {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// The largest message accepted.
    pub fn max_message(&self) -> usize {
        self.buf.len() - 2
    }

    /// Where the next read goes. Moves the unconsumed bytes to the front first, so the space is
    /// never empty while [`TcpFramer::next_message`] has nothing to give.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`TcpFramer::space`]. More than the space is a caller bug and
    /// is capped.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete message, `Ok(None)` until one has arrived whole, or the error that ends
    /// the connection. The message stays valid until the next call on the framer.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let have = self.end - self.start;
        if have < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([
            self.buf[self.start],
            self.buf[self.start + 1],
        ]));
        if len > self.max_message() {
            return Err(FrameError::TooLong {
                len,
                max: self.max_message(),
            });
        }
        if have < 2 + len {
            return Ok(None);
        }
        let at = self.start + 2;
        self.start = at + len;
        Ok(Some(&self.buf[at..at + len]))
    }

    /// Part of a message (or of its prefix) has arrived and not the rest.
    pub fn in_message(&self) -> bool {
        self.end > self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Feeds `stream` in chunks of the given sizes (cycled), collecting the messages.
    fn run(stream: &[u8], chunks: &[usize], cap: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
        let mut buf = std::vec![0u8; cap];
        let mut f = TcpFramer::new(&mut buf);
        let mut got = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        loop {
            loop {
                match f.next_message() {
                    Ok(Some(m)) => got.push(m.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
            if pos == stream.len() {
                return (got, None);
            }
            let space = f.space();
            assert!(!space.is_empty(), "no room while nothing is complete");
            let n = chunks[k % chunks.len()]
                .min(space.len())
                .min(stream.len() - pos);
            space[..n].copy_from_slice(&stream[pos..pos + n]);
            f.filled(n);
            pos += n;
            k += 1;
        }
    }

    #[test]
    fn messages_come_out_whole_whatever_the_reads() {
        let msgs: [&[u8]; 4] = [b"q1", b"", b"a longer third message", &[7u8; 510]];
        let mut stream = Vec::new();
        for m in msgs {
            stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
            stream.extend_from_slice(m);
        }
        for chunks in [&[1usize][..], &[2], &[3, 1], &[1000], &[511, 2, 7]] {
            let (got, err) = run(&stream, chunks, 2 + 512);
            assert_eq!(err, None, "chunks {chunks:?}");
            assert_eq!(got, msgs.map(<[u8]>::to_vec), "chunks {chunks:?}");
        }
    }

    #[test]
    fn a_prefix_over_the_buffer_ends_the_connection() {
        let (got, err) = run(&[0, 1, b'x', 2, 1, 0], &[1], 2 + 512);
        assert_eq!(got, [b"x".to_vec()]);
        assert_eq!(err, Some(FrameError::TooLong { len: 513, max: 512 }));
        assert_eq!(
            std::format!("{}", err.unwrap()),
            "message of 513 bytes (at most 512)"
        );
    }

    #[test]
    fn partial_state_is_reported() {
        let mut buf = [0u8; 16];
        let mut f = TcpFramer::new(&mut buf);
        assert!(!f.in_message());
        f.space()[0] = 0;
        f.filled(1);
        assert!(f.in_message());
        assert_eq!(f.next_message(), Ok(None));
        // Over-reporting a read is capped at the buffer.
        f.filled(100);
        assert_eq!(f.space().len(), 0);
    }
}
