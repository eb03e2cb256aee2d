//! The checks of the core's fuzz targets that have a property beyond "no panic", shared by
//! the targets (`fuzz_targets/*.rs`) and the regression test over the kept inputs
//! (`tests/regressions.rs`, docs/fuzzing.md).

use sdwan_agent_core::framing::{FrameError, TcpFramer};

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
