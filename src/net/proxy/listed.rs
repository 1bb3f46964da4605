//! The segment names packagers listed recently for one signal: the proxy's
//! own evidence of what exists. A viewer asking for any other name is
//! answered 404 without asking a packager, so no viewer can make the proxy
//! fetch (and count failures for) objects nobody published.
//!
//! Names are learned from every playlist the proxy reads (the poller's and
//! viewers'), kept for [`LISTED_FOR`] after they were last listed (a player
//! behind the live edge still asks for segments that just left the window),
//! and at most [`LISTED_CAPACITY`] of them, oldest out first. Pure: time is
//! passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::cache::SEGMENT_CACHE_TTL;

/// A name stays requestable this long after a playlist last listed it: as
/// long as the segment cache keeps segments, far longer than a live window.
pub const LISTED_FOR: Duration = SEGMENT_CACHE_TTL;
/// Most names remembered per signal: a minute of segments as short as 0.1 s
/// fits, so only a playlist flooded with names (not a viewer) hits it.
pub const LISTED_CAPACITY: usize = 600;

/// Segment names listed recently, with when each was last listed.
#[derive(Debug, Default)]
pub struct ListedSegments {
    last_listed: HashMap<String, Instant>,
    /// Whether any playlist was seen yet (before, nothing can be judged).
    learned: bool,
}

impl ListedSegments {
    /// Remembers the names a playlist listed at `now` and forgets those not
    /// listed within [`LISTED_FOR`], keeping at most [`LISTED_CAPACITY`].
    pub fn record<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, now: Instant) {
        self.learned = true;
        for name in names {
            match self.last_listed.get_mut(name) {
                Some(at) => *at = now,
                None => {
                    self.last_listed.insert(name.to_string(), now);
                }
            }
        }
        self.last_listed
            .retain(|_, at| now.saturating_duration_since(*at) <= LISTED_FOR);
        if self.last_listed.len() > LISTED_CAPACITY {
            let mut by_age: Vec<(Instant, String)> = self
                .last_listed
                .iter()
                .map(|(name, at)| (*at, name.clone()))
                .collect();
            by_age.sort();
            let excess = by_age.len() - LISTED_CAPACITY;
            for (_, name) in by_age.into_iter().take(excess) {
                self.last_listed.remove(&name);
            }
        }
    }

    /// Whether some packager listed `name` within [`LISTED_FOR`] of `now`.
    pub fn contains(&self, name: &str, now: Instant) -> bool {
        self.last_listed
            .get(name)
            .is_some_and(|at| now.saturating_duration_since(*at) <= LISTED_FOR)
    }

    /// Whether any playlist was recorded yet.
    pub fn learned(&self) -> bool {
        self.learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("segment{i:06}.ts")).collect()
    }

    #[test]
    fn knows_what_was_listed_and_nothing_else() {
        let t0 = Instant::now();
        let mut listed = ListedSegments::default();
        assert!(!listed.learned());
        listed.record(names(0..5).iter().map(String::as_str), t0);
        assert!(listed.learned());
        assert!(listed.contains("segment000004.ts", t0));
        assert!(!listed.contains("segment000005.ts", t0), "not listed yet");
        assert!(!listed.contains("segment999999.ts", t0));
        assert!(!listed.contains("../playlist.m3u8", t0));
    }

    #[test]
    fn a_name_that_left_the_playlist_stays_requestable_for_a_while() {
        let t0 = Instant::now();
        let mut listed = ListedSegments::default();
        listed.record(names(0..5).iter().map(String::as_str), t0);
        // The window slides: 0 leaves the playlist but was listed at t0.
        let t1 = t0 + Duration::from_secs(10);
        listed.record(names(1..6).iter().map(String::as_str), t1);
        assert!(listed.contains("segment000000.ts", t1));
        let past = t0 + LISTED_FOR + Duration::from_secs(1);
        assert!(!listed.contains("segment000000.ts", past));
        assert!(listed.contains("segment000005.ts", past), "listed at t1");
        // Forgotten for good once a later playlist is recorded.
        listed.record(std::iter::empty(), past);
        assert!(!listed.last_listed.contains_key("segment000000.ts"));
    }

    #[test]
    fn memory_is_bounded_and_the_newest_names_stay() {
        let t0 = Instant::now();
        let mut listed = ListedSegments::default();
        let all = names(0..(LISTED_CAPACITY as u32 + 50));
        for (i, name) in all.iter().enumerate() {
            listed.record([name.as_str()], t0 + Duration::from_millis(i as u64));
        }
        let now = t0 + Duration::from_millis(all.len() as u64);
        assert_eq!(listed.last_listed.len(), LISTED_CAPACITY);
        assert!(listed.contains(all.last().map(String::as_str).unwrap_or(""), now));
        assert!(!listed.contains(&all[0], now), "the oldest went first");
    }
}
