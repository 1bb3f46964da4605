//! The watcher: polls a proxy's (or a packager's) playlist every
//! [`WATCH_POLL`] and tells from the samples how long the newest segment
//! stood still around the fault (time to switch) and whether the source
//! itself paused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use nonstop::hls::multivariant::Multivariant;
use nonstop_lab::http::get;

use super::{millis, sleep_until};

/// The watcher's poll period and per-request budget.
pub(crate) const WATCH_POLL: Duration = Duration::from_millis(100);
pub(crate) const WATCH_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The newest segment's media sequence number in a playlist text.
pub(crate) fn newest_segment(playlist: &str) -> Option<u64> {
    let sequence = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let count = playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF:"))
        .count() as u64;
    (count > 0).then(|| sequence + count - 1)
}

/// The media playlist behind `url`: `url` itself, or a ladder's first
/// rendition (a multivariant playlist lists no segments); `None` while it
/// does not answer.
pub(crate) fn media_playlist(url: &str) -> Option<String> {
    let (status, body) = get(url)?;
    if status != 200 {
        return None;
    }
    Some(match Multivariant::parse(&body) {
        Some(ladder) => {
            let first = ladder.uris().next()?;
            let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
            format!("{base}/{first}")
        }
        None => url.to_string(),
    })
}

/// How many segments the playlist at `url` lists.
pub(crate) fn listed_segments(url: &str) -> Option<usize> {
    let (status, body) = get(url)?;
    (status == 200).then(|| {
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with("#EXTINF:"))
            .count()
    })
}

/// One poll of a proxy's playlist: when, and the newest segment (None when
/// the request failed or the answer was not a playlist).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) newest: Option<u64>,
}

/// Polls a proxy's playlist every [`WATCH_POLL`] in the background.
pub(crate) struct Watcher {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) handle: JoinHandle<Vec<Sample>>,
}

impl Watcher {
    pub(crate) fn start(url: &str) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let url = url.to_string();
        let stopping = stop.clone();
        let handle = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(WATCH_REQUEST_TIMEOUT)
                .build()
                .expect("HTTP client");
            let mut samples = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                let at = Instant::now();
                let newest = client
                    .get(&url)
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.text().ok())
                    .and_then(|text| newest_segment(&text));
                samples.push(Sample { at, newest });
                sleep_until(at + WATCH_POLL);
            }
            samples
        });
        Watcher { stop, handle }
    }

    pub(crate) fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// When the newest segment went up (a new high), in order.
pub(crate) fn advances(samples: &[Sample]) -> Vec<Instant> {
    let mut highest = None;
    let mut out = Vec::new();
    for s in samples {
        if let Some(n) = s.newest {
            if highest.is_some_and(|h| n > h) {
                out.push(s.at);
            }
            if highest.is_none_or(|h| n > h) {
                highest = Some(n);
            }
        }
    }
    out
}

/// The longest wait between two advances of the proxy's playlist while the
/// fault was on (from the last advance before it to the last one before it
/// was cleared), minus the normal segment duration, floored at zero. None when
/// the playlist never advanced between injection and clearing.
pub(crate) fn time_to_switch(
    samples: &[Sample],
    injected: Instant,
    cleared: Instant,
    segment: Duration,
) -> Option<Duration> {
    let advances = advances(samples);
    let before = advances.iter().rev().find(|t| **t <= injected).copied();
    let during: Vec<Instant> = advances
        .iter()
        .copied()
        .filter(|t| *t > injected && *t <= cleared)
        .collect();
    if during.is_empty() {
        return None;
    }
    let mut previous = before.unwrap_or(injected);
    let mut longest = Duration::ZERO;
    for t in during {
        longest = longest.max(t - previous);
        previous = t;
    }
    Some(longest.saturating_sub(segment))
}

/// The longest wait between two advances over the whole watch, minus the
/// segment duration, floored at zero.
pub(crate) fn longest_extra_gap(samples: &[Sample], segment: Duration) -> Duration {
    advances(samples)
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default()
        .saturating_sub(segment)
}

/// What the watcher saw, for the JSON: failed polls and advances during the fault.
pub(crate) fn watch_summary(samples: &[Sample], injected: Instant, cleared: Instant) -> Value {
    let during = |s: &&Sample| s.at > injected && s.at <= cleared;
    let first_advance_after = advances(samples)
        .into_iter()
        .find(|t| *t > injected)
        .map(|t| millis(t - injected));
    json!({
        "polls": samples.len(),
        "failed_polls": samples.iter().filter(|s| s.newest.is_none()).count(),
        "failed_polls_during_fault": samples.iter().filter(during).filter(|s| s.newest.is_none()).count(),
        "first_advance_after_fault_ms": first_advance_after,
    })
}
