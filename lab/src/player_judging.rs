//! How a player's run is judged from what it rendered and what it logged:
//! stalls from the instants pictures were rendered ([`frozen_spans`]), and
//! failed exchanges counted once each from its log lines ([`FailureCounter`]).
//! Shared by the GStreamer player ([`crate::gst_player`]) and the failover
//! bench's other players.

use std::time::{Duration, Instant};

/// Stalls a player went through: how many, how long in all, and each one as
/// (start, length) in seconds since the player started.
#[derive(Debug, Default)]
pub struct Stalls {
    pub count: u64,
    pub total: Duration,
    pub spans: Vec<(f64, f64)>,
}

impl Stalls {
    pub fn add(&mut self, origin: Instant, from: Instant, length: Duration) {
        self.count += 1;
        self.total += length;
        self.spans.push((
            round_ms(from.saturating_duration_since(origin)),
            round_ms(length),
        ));
    }

    /// All stalls together, in milliseconds.
    pub fn ms(&self) -> u64 {
        u64::try_from(self.total.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Seconds, rounded to the millisecond.
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Stalls from the instants media was rendered: every gap longer than `gap`
/// between two renders, and from the last one to `end`, is one stall of that
/// length. Nothing counts before the first render (startup).
pub fn frozen_spans(origin: Instant, rendered: &[Instant], end: Instant, gap: Duration) -> Stalls {
    let mut stalls = Stalls::default();
    let mut times = rendered.to_vec();
    if rendered.last().is_some_and(|last| end > *last) {
        times.push(end);
    }
    for pair in times.windows(2) {
        let span = pair[1].saturating_duration_since(pair[0]);
        if span > gap {
            stalls.add(origin, pair[0], span);
        }
    }
    stalls
}

/// Counts failed exchanges in a player's log lines, each once: a transfer-level
/// line (an HTTP error status, a body cut short) counts and marks one failure
/// as told; the player-level line that follows for the same failure ("could
/// not reload the playlist") is then not counted again, but one without a
/// transfer-level line before it (a reset, a refused connection) is.
#[derive(Debug, Default)]
pub struct FailureCounter {
    pub failed: u64,
    pub told: bool,
    pub lines: Vec<String>,
}

impl FailureCounter {
    pub fn transfer(&mut self, line: &str) {
        self.failed += 1;
        self.told = true;
        self.lines.push(line.to_string());
    }

    pub fn player(&mut self, line: &str) {
        if self.told {
            self.told = false;
        } else {
            self.failed += 1;
        }
        self.lines.push(line.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_between_renders_longer_than_allowed_is_one_stall_and_so_is_a_silent_end() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let rendered = [at(1000), at(1040), at(1080), at(1900), at(1940)];
        let stalls = frozen_spans(origin, &rendered, at(3000), Duration::from_millis(500));
        assert_eq!(stalls.count, 2, "{stalls:?}");
        assert_eq!(stalls.spans, vec![(1.08, 0.82), (1.94, 1.06)]);
        assert_eq!(stalls.ms(), 1880);
    }

    #[test]
    fn nothing_before_the_first_render_is_a_stall() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let stalls = frozen_spans(
            origin,
            &[at(5000), at(5040)],
            at(5100),
            Duration::from_millis(500),
        );
        assert_eq!(stalls.count, 0);
        assert_eq!(
            frozen_spans(origin, &[], at(9000), Duration::from_millis(500)).count,
            0
        );
    }

    #[test]
    fn a_failure_told_by_the_transfer_and_then_the_player_counts_once() {
        let mut counter = FailureCounter::default();
        counter.transfer("souphttpsrc: 404");
        counter.player("could not update the playlist");
        counter.player("could not update the playlist (a reset: no transfer line)");
        assert_eq!(counter.failed, 2);
        assert_eq!(counter.lines.len(), 3);
    }
}
