//! The figures of a set of latency samples: median, 95th percentile
//! (nearest rank) and maximum, and the samples of one phase of a run.

use std::time::SystemTime;

use super::players::Sample;

/// Median, p95 and max of some latencies, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Figures {
    pub(crate) count: usize,
    pub(crate) median: f64,
    pub(crate) p95: f64,
    pub(crate) max: f64,
}

impl Figures {
    /// The figures of `latencies`; `None` when there are none.
    pub(crate) fn of(latencies: impl IntoIterator<Item = f64>) -> Option<Figures> {
        let mut sorted: Vec<f64> = latencies.into_iter().filter(|l| l.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least q of them at or below it.
            let at = (q * sorted.len() as f64).ceil() as usize;
            sorted[at.clamp(1, sorted.len()) - 1]
        };
        Some(Figures {
            count: sorted.len(),
            median: rank(0.5),
            p95: rank(0.95),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The latencies of the samples taken in `[from, to)`.
pub(crate) fn within(samples: &[Sample], from: SystemTime, to: SystemTime) -> Vec<f64> {
    picked_within(samples, from, to, |s| Some(s.latency))
}

/// What `pick` reads of the samples taken in `[from, to)`, where they have it.
pub(crate) fn picked_within(
    samples: &[Sample],
    from: SystemTime,
    to: SystemTime,
    pick: fn(&Sample) -> Option<f64>,
) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.wall >= from && s.wall < to)
        .filter_map(pick)
        .collect()
}
