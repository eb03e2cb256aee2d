//! The polling schedule and its bookkeeping, as pure functions of times given by the caller
//! (nanoseconds since the start of one wait), so that they can be tested as data.
//!
//! A host's resolver is asked on an absolute grid: query k is due at `k * period`. After the
//! query due at `due` went out at `now`, the next one is due at the first grid slot after
//! `now`: never "period after the answer", and a thread that was not scheduled for a while
//! skips the slots it missed instead of sending a burst to catch up.

/// The next slot after the query due at `due` was sent at `now`, and how many slots were
/// skipped because `now` was already at or past them.
pub fn next_slot(due: u64, now: u64, period: u64) -> (u64, u64) {
    let period = period.max(1);
    let behind = now.saturating_sub(due) / period;
    (due + (behind + 1) * period, behind)
}

/// Which query of a wait an answer with `id` belongs to: the wait's queries carry the ids
/// `first`, `first + 1`, ... (wrapping) and were sent at `sent[k]`. An answer arriving at
/// `now` to a query sent more than `timeout` before is lost; so is an id this wait never sent
/// (an answer to an earlier wait's query).
pub fn match_answer(first: u16, sent: &[u64], id: u16, now: u64, timeout: u64) -> Option<usize> {
    let k = id.wrapping_sub(first) as usize;
    let at = *sent.get(k)?;
    (now.saturating_sub(at) <= timeout).then_some(k)
}

/// The value at percentile `p` of `sorted` (ascending), by nearest rank, as
/// bench/convergence/report.py takes it.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1);
    sorted.get(rank as usize - 1).copied()
}

/// How punctual one host's polling was, over all its waits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Punctuality {
    /// Queries sent.
    pub queries: u64,
    /// Waits (one per change and host).
    pub waits: u64,
    /// Time between consecutive queries of one wait, ns.
    pub gaps: Vec<u64>,
    /// How long after its slot each query went out, ns.
    pub late: Vec<u64>,
    /// Slots passed without a query (the thread was behind by a whole period or more).
    pub skipped: u64,
}

impl Punctuality {
    /// Books the query due at `due` sent at `now`; `prev` is when the wait's previous query
    /// went out, if any.
    pub fn sent(&mut self, due: u64, now: u64, prev: Option<u64>) {
        self.queries += 1;
        self.late.push(now.saturating_sub(due));
        if let Some(p) = prev {
            self.gaps.push(now.saturating_sub(p));
        }
    }

    /// One line for the report: `gap p50 / p99 / max`, `late p50 / p99 / max` in ms.
    pub fn summary(&self) -> String {
        let ms = |v: &[u64], p| {
            let mut v = v.to_vec();
            v.sort_unstable();
            let x = if p == 100 {
                v.last().copied()
            } else {
                percentile(&v, p)
            };
            x.map_or("-".to_string(), |x| format!("{:.2}", x as f64 / 1e6))
        };
        format!(
            "{} queries in {} waits; gap between queries p50 / p99 / max {} / {} / {} ms; \
             sent after its slot p50 / p99 / max {} / {} / {} ms; {} slots skipped",
            self.queries,
            self.waits,
            ms(&self.gaps, 50),
            ms(&self.gaps, 99),
            ms(&self.gaps, 100),
            ms(&self.late, 50),
            ms(&self.late, 99),
            ms(&self.late, 100),
            self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_grid_is_absolute() {
        // (due, sent at, period) -> (next due, skipped)
        let cases = [
            ((0, 0, MS), (MS, 0)),                        // on time
            ((0, MS / 3, MS), (MS, 0)),                   // late within the slot: grid kept
            ((5 * MS, 5 * MS + MS - 1, MS), (6 * MS, 0)), // just before the next slot
            ((5 * MS, 6 * MS, MS), (7 * MS, 1)),          // at the next slot: it is skipped
            ((0, 3 * MS + MS / 2, MS), (4 * MS, 3)),      // asleep for 3.5 slots
            ((2 * MS, MS, MS), (3 * MS, 0)),              // early (clock given by caller)
            ((0, 10, 0), (11, 10)),                       // period 0 taken as 1 ns
        ];
        for ((due, now, period), want) in cases {
            assert_eq!(next_slot(due, now, period), want, "due {due} now {now}");
        }
    }

    #[test]
    fn a_slow_answer_never_moves_the_grid() {
        // The thread wakes at these times (answers, timeouts); whenever a slot is due, its
        // query goes out. The slots stay multiples of 1 ms; the one due at 3 ms goes out at
        // 5.3 ms and the slots at 4 and 5 ms are skipped, not sent in a burst.
        let mut due = 0;
        let mut slots = vec![];
        let mut skipped = 0;
        for now in [
            0, 400_000, 1_100_000, 2_000_000, 5_300_000, 5_900_000, 6_000_000,
        ] {
            if now < due {
                continue;
            }
            slots.push((due, now));
            let (next, s) = next_slot(due, now, MS);
            due = next;
            skipped += s;
        }
        let want = [
            (0, 0),
            (MS, 1_100_000),
            (2 * MS, 2_000_000),
            (3 * MS, 5_300_000),
            (6 * MS, 6_000_000),
        ];
        assert_eq!(slots, want);
        assert_eq!(skipped, 2);
    }

    #[test]
    fn answers_are_matched_by_id_within_the_timeout() {
        let sent = [0, MS, 2 * MS];
        let t = 200 * MS;
        assert_eq!(match_answer(100, &sent, 100, 3 * MS, t), Some(0));
        assert_eq!(match_answer(100, &sent, 102, 3 * MS, t), Some(2));
        assert_eq!(match_answer(100, &sent, 103, 3 * MS, t), None); // not sent yet
        assert_eq!(match_answer(100, &sent, 99, 3 * MS, t), None); // an earlier wait's
        assert_eq!(match_answer(100, &sent, 100, t, t), Some(0)); // at the timeout
        assert_eq!(match_answer(100, &sent, 100, t + 1, t), None); // after it
        assert_eq!(match_answer(100, &sent, 101, t + 1, t), Some(1));
        // Ids wrap.
        assert_eq!(match_answer(65535, &sent, 65535, 0, t), Some(0));
        assert_eq!(match_answer(65535, &sent, 1, 3 * MS, t), Some(2));
        assert_eq!(match_answer(65535, &sent, 2, 3 * MS, t), None);
        assert_eq!(match_answer(0, &[], 0, 0, t), None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn punctuality_books_gaps_within_a_wait() {
        let mut p = Punctuality::default();
        p.sent(0, 50_000, None);
        p.sent(MS, MS + 20_000, Some(50_000));
        p.sent(2 * MS, 4 * MS, Some(MS + 20_000));
        p.skipped += 2;
        p.waits += 1;
        assert_eq!(p.queries, 3);
        assert_eq!(p.gaps, [970_000, 3 * MS - 20_000]);
        assert_eq!(p.late, [50_000, 20_000, 2 * MS]);
        assert_eq!(
            p.summary(),
            "3 queries in 1 waits; gap between queries p50 / p99 / max 0.97 / 2.98 / 2.98 ms; \
             sent after its slot p50 / p99 / max 0.05 / 2.00 / 2.00 ms; 2 slots skipped"
        );
        assert!(Punctuality::default().summary().contains("- / - / -"));
    }
}
