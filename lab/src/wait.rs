//! Waiting for something to become true by asking again: the one way the
//! lab waits for a service, a file or a player, instead of sleeping for a
//! time guessed to be long enough.

use std::time::{Duration, Instant};

/// How long a poll sleeps before asking again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Polls `check` until it returns Some, or None once `within` passes.
pub fn try_wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Polls `check` until it returns Some; panics naming `what` once `within`
/// passes.
pub fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL_EVERY);
    }
}
