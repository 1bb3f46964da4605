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
//!
//! Several proxies behind one load balancer each read the packagers on their
//! own schedule, so a viewer may get a playlist from one proxy that lists a
//! segment the next proxy has not read yet. The names of the
//! [`NEXT_NAMES`] segments after the newest one listed, when names carry their
//! sequence number (the worker's `segment000042.ts`), are recognised
//! ([`ListedSegments::may_come_next`]): the proxy reads the playlist again
//! before judging such a name, instead of refusing a segment that exists.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::cache::SEGMENT_CACHE_TTL;

/// A name stays requestable this long after a playlist last listed it: as
/// long as the segment cache keeps segments, far longer than a live window.
pub(super) const LISTED_FOR: Duration = SEGMENT_CACHE_TTL;
/// Most names remembered per signal: a minute of segments as short as 0.1 s
/// fits, so only a playlist flooded with names (not a viewer) hits it.
pub(super) const LISTED_CAPACITY: usize = 600;
/// Segments after the newest listed one whose names are recognised as
/// possibly published already: the next one, and the one after in case this
/// proxy's last read is a whole segment behind another's.
pub(super) const NEXT_NAMES: u64 = 2;

/// What is known of a segment name a viewer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    /// A packager listed it recently: it may be fetched.
    Listed,
    /// Not known yet: no playlist was read, or it is one of the
    /// [`NEXT_NAMES`] after the newest listed. Read the playlist, then judge.
    ReadFirst,
    /// Nobody listed it: refused without a fetch.
    Unlisted,
}

/// Segment names listed recently, with when each was last listed.
#[derive(Debug, Default)]
pub(super) struct ListedSegments {
    last_listed: HashMap<String, Instant>,
    /// Whether any playlist was seen yet (before, nothing can be judged).
    learned: bool,
    /// The newest segment listed so far: its sequence number and name.
    newest: Option<(u64, String)>,
}

impl ListedSegments {
    /// Remembers the names a playlist listed at `now` and forgets those not
    /// listed within [`LISTED_FOR`], keeping at most [`LISTED_CAPACITY`].
    pub(super) fn record<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, now: Instant) {
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
    pub(super) fn contains(&self, name: &str, now: Instant) -> bool {
        self.last_listed
            .get(name)
            .is_some_and(|at| now.saturating_duration_since(*at) <= LISTED_FOR)
    }

    /// Remembers the newest segment a playlist listed (its sequence number
    /// and name), kept only if newer than the one known.
    pub(super) fn record_newest(&mut self, sequence: u64, name: &str) {
        if self
            .newest
            .as_ref()
            .is_none_or(|(known, _)| sequence > *known)
        {
            self.newest = Some((sequence, name.to_string()));
        }
    }

    /// Whether `name` is the name one of the [`NEXT_NAMES`] segments after
    /// the newest listed would have: the newest name with its sequence
    /// number, as written there, replaced by the next ones. Never true when
    /// names do not carry their sequence number.
    pub(super) fn may_come_next(&self, name: &str) -> bool {
        let Some((sequence, newest)) = &self.newest else {
            return false;
        };
        (1..=NEXT_NAMES).any(|k| {
            next_name(newest, *sequence, sequence.saturating_add(k)).as_deref() == Some(name)
        })
    }

    /// What is known of `name` at `now` (see [`Listing`]).
    pub(super) fn listing(&self, name: &str, now: Instant) -> Listing {
        if !self.learned {
            Listing::ReadFirst
        } else if self.contains(name, now) {
            Listing::Listed
        } else if self.may_come_next(name) {
            Listing::ReadFirst
        } else {
            Listing::Unlisted
        }
    }
}

/// `name` with its last run of digits, when it spells `sequence`, replaced by
/// `next` written as wide (zero-padded like `segment%06d.ts`, or not).
fn next_name(name: &str, sequence: u64, next: u64) -> Option<String> {
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = name[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let digits = &name[start..end];
    if digits.parse::<u64>().ok()? != sequence {
        return None;
    }
    let width = digits.len();
    Some(format!("{}{next:0width$}{}", &name[..start], &name[end..]))
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
        assert!(!listed.learned);
        listed.record(names(0..5).iter().map(String::as_str), t0);
        assert!(listed.learned);
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
    fn the_next_names_are_recognised_only_when_names_carry_their_number() {
        let mut listed = ListedSegments::default();
        assert!(
            !listed.may_come_next("segment000001.ts"),
            "nothing read yet"
        );
        listed.record_newest(41, "segment000041.ts");
        listed.record_newest(42, "segment000042.ts");
        listed.record_newest(40, "segment000040.ts");
        // Another proxy may already serve a playlist listing 43 (or 44).
        assert!(listed.may_come_next("segment000043.ts"));
        assert!(listed.may_come_next("segment000044.ts"));
        // Beyond, behind, other spellings, other names: still unknown.
        assert!(!listed.may_come_next("segment000045.ts"));
        assert!(!listed.may_come_next("segment000042.ts"));
        assert!(!listed.may_come_next("segment000041.ts"));
        assert!(!listed.may_come_next("segment43.ts"));
        assert!(!listed.may_come_next("segment000043.ts.ts"));
        assert!(!listed.may_come_next("x43.ts"));
        // Unpadded names grow a digit; the digits must be the sequence number.
        listed.record_newest(99, "seg99.ts");
        assert!(listed.may_come_next("seg100.ts"));
        listed.record_newest(100, "chunk-7.ts");
        assert!(!listed.may_come_next("chunk-8.ts"), "7 is not its number");
        assert!(!listed.may_come_next("chunk-101.ts"));
    }

    #[test]
    fn a_name_is_listed_read_first_or_unlisted() {
        let t0 = Instant::now();
        let mut listed = ListedSegments::default();
        assert_eq!(
            listed.listing("segment000001.ts", t0),
            Listing::ReadFirst,
            "nothing read yet: learn what exists first"
        );
        listed.record(names(1..4).iter().map(String::as_str), t0);
        listed.record_newest(3, "segment000003.ts");
        assert_eq!(listed.listing("segment000002.ts", t0), Listing::Listed);
        assert_eq!(listed.listing("segment000004.ts", t0), Listing::ReadFirst);
        assert_eq!(listed.listing("segment000005.ts", t0), Listing::ReadFirst);
        assert_eq!(listed.listing("segment000006.ts", t0), Listing::Unlisted);
        assert_eq!(listed.listing("segment000000.ts", t0), Listing::Unlisted);
        assert_eq!(listed.listing("../playlist.m3u8", t0), Listing::Unlisted);
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
