//! Waiting for a condition with a deadline.

use std::time::{Duration, Instant};

/// Polls `cond` (every 10 ms, backing off to 100 ms) until it returns true; panics with
/// `what` if it has not within `timeout`.
///
/// ```
/// # use std::time::Duration;
/// sdwan_testsupport::wait_until(Duration::from_secs(1), "one is one", || 1 == 1);
/// ```
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || cond().then_some(()))
}

/// Polls `f` until it returns `Some(value)` and returns the value; panics with `what` if it
/// has not within `timeout`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut n = 0;
        let v = wait_for(Duration::from_secs(5), "n reaches 3", || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for: the impossible")]
    fn panics_naming_what_it_waited_for() {
        wait_until(Duration::from_millis(50), "the impossible", || false);
    }
}
