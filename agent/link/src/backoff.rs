//! Reconnect delays: capped exponential backoff with jitter, deterministic for a given seed.
//! Time is passed in ([`Backoff::connected`], [`Backoff::disconnected`]), so the policy is
//! tested without clocks.

use std::time::{Duration, Instant};

/// How long a connection must stay up before the backoff starts over from its first delay
/// (issue 12: a broker that accepts the connection and drops it at once, for example because
/// a retained message is over a size limit, must not get a reconnect storm).
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Delay before the n-th reconnect attempt: the window `min(cap, base * 2^n)`; the delay is
/// drawn uniformly from its upper half ("equal jitter"), so it never drops to zero yet many
/// agents restarted together spread out. A CONNACK alone does not reset it: call
/// [`Backoff::connected`] on connect and [`Backoff::disconnected`] on a drop, which starts
/// over only if the connection stayed up [`STABLE_AFTER`] (or the time given to
/// [`Backoff::with_stable_after`]).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    stable_after: Duration,
    attempt: u32,
    rng: u64,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap`, with jitter from `seed`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            stable_after: STABLE_AFTER,
            attempt: 0,
            // xorshift must not start at 0
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            connected_at: None,
        }
    }

    /// The same backoff, starting over only after connections that stayed up `d`.
    pub fn with_stable_after(mut self, d: Duration) -> Backoff {
        self.stable_after = d;
        self
    }

    /// A connection was established at `now` (CONNACK received).
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection dropped, or a connection attempt failed, at `now`: the delay before the
    /// next attempt. The backoff starts over first if the connection had stayed up long
    /// enough; a connection that dropped sooner counts as one more failed attempt. Also
    /// returns how long the connection was up (`None` when there was none).
    pub fn disconnected(&mut self, now: Instant) -> (Duration, Option<Duration>) {
        let up = self
            .connected_at
            .take()
            .map(|t| now.saturating_duration_since(t));
        if up.is_some_and(|u| u >= self.stable_after) {
            self.reset();
        }
        (self.next_delay(), up)
    }

    /// The agent's default: 500 ms doubling up to 60 s.
    pub fn with_seed(seed: u64) -> Backoff {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(60), seed)
    }

    /// The next delay; each call doubles the window until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let window = self
            .base
            .checked_mul(1u32 << self.attempt.min(20))
            .unwrap_or(self.cap)
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = window / 2;
        let span = (window - half).as_nanos() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.next_u64() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_to_the_cap_within_the_jitter_window() {
        let mut b = Backoff::new(ms(100), ms(1000), 7);
        let windows = [100, 200, 400, 800, 1000, 1000, 1000];
        for w in windows {
            let d = b.next_delay();
            assert!(
                d >= ms(w / 2) && d <= ms(w),
                "delay {d:?} outside [{}, {w}] ms",
                w / 2
            );
        }
        for _ in 0..100 {
            assert!(b.next_delay() <= ms(1000));
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(ms(100), ms(10_000), 1);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= ms(100));
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let run = |seed| {
            let mut b = Backoff::new(ms(100), ms(60_000), seed);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    /// Issue 12, reconnect storm: a connection dropped right after its CONNACK does not reset
    /// the backoff; one that stayed up [`STABLE_AFTER`] does.
    #[test]
    fn backoff_does_not_reset_until_the_connection_stayed_up() {
        let t0 = Instant::now();
        let mut b = Backoff::new(ms(100), ms(60_000), 5).with_stable_after(ms(10_000));
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            b.connected(now);
            now += ms(300); // dropped 300 ms after the CONNACK
            let (d, up) = b.disconnected(now);
            assert_eq!(up, Some(ms(300)));
            delays.push(d);
            now += d;
        }
        // windows 100, 200, 400, ... : every delay at least half its window
        for (i, d) in delays.iter().enumerate() {
            assert!(
                *d >= ms(50 << i),
                "delay {i} {d:?} did not grow: {delays:?}"
            );
        }
        // A connection that stayed up long enough starts over.
        b.connected(now);
        let (d, up) = b.disconnected(now + ms(10_000));
        assert_eq!(up, Some(ms(10_000)));
        assert!(d <= ms(100), "{d:?}");
        // A failed attempt (no connection) grows it again.
        let (d, up) = b.disconnected(now + ms(20_000));
        assert_eq!(up, None);
        assert!(d >= ms(100) && d <= ms(200), "{d:?}");
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 3);
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }
}
