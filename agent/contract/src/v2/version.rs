//! Versions: `u64` compared with RFC 1982 serial arithmetic (`SERIAL_BITS` = 64), so that a
//! version can always be followed by a newer one (after `u64::MAX` comes `0`), and how the
//! master picks them from its clock and what agents report (`docs/payload-v2.md`).

use core::fmt;

/// A payload version of one stream (one gateway's zone, one worker's proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u64);

const HALF: u64 = 1 << 63;

impl Version {
    /// RFC 1982: `self` is newer than `other` when they differ and `self - other` (mod 2^64)
    /// is below 2^63. Exactly opposite versions (distance 2^63) are neither newer nor older.
    pub fn is_newer_than(self, other: Version) -> bool {
        let d = self.0.wrapping_sub(other.0);
        d != 0 && d < HALF
    }

    /// The version after `self`: the clock (milliseconds since the Unix epoch) when that is
    /// newer, else `self + 1` (wrapping). A clock that stepped back never moves versions back.
    pub fn next(self, clock_ms: u64) -> Version {
        let c = Version(clock_ms);
        if c.is_newer_than(self) {
            c
        } else {
            Version(self.0.wrapping_add(1))
        }
    }

    /// The first version of a stream at a master start or takeover: the clock, or past the
    /// version the agent reports as held (`held`) if the clock is not newer than it.
    pub fn start(clock_ms: u64, held: Option<Version>) -> Version {
        match held {
            Some(h) => h.next(clock_ms),
            None => Version(clock_ms),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = u64::MAX;

    /// (a, b, a newer than b)
    const NEWER: &[(u64, u64, bool)] = &[
        (1, 0, true),
        (0, 1, false),
        (5, 5, false),
        (0, MAX, true), // wraps: exhaustion does not freeze
        (MAX, 0, false),
        (HALF - 1, 0, true),
        (HALF, 0, false), // exactly opposite: undefined, so not newer
        (0, HALF, false),
        (HALF + 1, 0, false),
        (0, HALF + 1, true),
        (1_764_694_800_123, 1_764_694_800_122, true),
    ];

    #[test]
    fn serial_comparison() {
        for &(a, b, want) in NEWER {
            assert_eq!(Version(a).is_newer_than(Version(b)), want, "{a} vs {b}");
        }
    }

    /// (current, clock, next)
    const NEXT: &[(u64, u64, u64)] = &[
        (100, 200, 200),     // clock ahead: take it
        (100, 100, 101),     // same ms: +1
        (100, 50, 101),      // clock stepped back: +1, never back
        (MAX, MAX - 10, 0),  // exhaustion wraps to a newer version
        (MAX, 5, 5),         // a clock just past the wrap is newer
        (MAX - 1, MAX, MAX), // clock just ahead
        (HALF + 10, 0, 0),   // clock 2^63-10 ahead in serial terms: newer
        (10, HALF + 10, 11), // clock exactly opposite: not newer, +1
    ];

    #[test]
    fn next_is_always_newer() {
        for &(cur, clock, want) in NEXT {
            let n = Version(cur).next(clock);
            assert_eq!(n, Version(want), "{cur} at {clock}");
            assert!(n.is_newer_than(Version(cur)));
        }
    }

    #[test]
    fn start_bumps_past_what_agents_hold() {
        assert_eq!(Version::start(1000, None), Version(1000));
        assert_eq!(Version::start(1000, Some(Version(10))), Version(1000));
        // The agent holds a version from a clock that was ahead: go past it.
        assert_eq!(Version::start(1000, Some(Version(5000))), Version(5001));
        assert_eq!(Version::start(1000, Some(Version(MAX))), Version(1000));
        assert_eq!(Version::start(1000, Some(Version(1000))), Version(1001));
    }
}
