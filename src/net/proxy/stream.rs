//! What the proxy knows of one media playlist of a signal (the signal's own
//! `playlist.m3u8`, or one rendition of its ladder, `720p.m3u8`): its
//! failover state, each packager's latest copy of it, the copy last served,
//! the names packagers listed recently, and its recent switches.
//!
//! Low latency: every copy a packager gives (the poller's, a follower's
//! blocking reload, a viewer's fetch) is kept per packager and announced on
//! a watch channel, so a viewer's blocking reload ([`StreamState::hold`])
//! waits in memory for the first copy, from any packager, that lists the
//! part it asked for: thousands of held viewers cost no upstream request,
//! and a packager a part behind its twin is simply passed over.
//!
//! Every method takes its lock for a few assignments and never across an
//! `await`, so viewer requests and the poller share it without waiting on I/O.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use super::budgets::PLAYLIST_REUSE;
use super::failover::{Failover, LiveEdge};
use super::listed::{ListedSegments, Listing};
use crate::api::{PackagerStatus, ServingState, Switch, SwitchRecord};
use crate::hls::blocking::BlockingReload;
use crate::hls::{MediaKind, PlaylistFacts};
use crate::net::delivery::{PlaylistBody, PlaylistCaching};

/// Switches remembered per stream for `GET /status`.
pub(super) const SWITCH_HISTORY: usize = 20;
/// A copy fetched this many part targets ago is still the newest its
/// packager has while a follower is reading it (a blocking reload answers
/// on every part).
const CURRENT_PARTS: f64 = 1.5;

/// A playlist as served to viewers.
#[derive(Debug, Clone)]
pub(super) struct ServedPlaylist {
    /// The bytes, their ETag and their gzip form, shared by every viewer.
    pub body: PlaylistBody,
    /// How long a CDN may keep it (half its target duration).
    pub caching: PlaylistCaching,
    /// When the proxy fetched it.
    pub fetched: Instant,
    /// When it last changed upstream (its `Last-Modified`), else when fetched.
    pub last_modified: SystemTime,
}

/// A packager's latest copy of the playlist.
#[derive(Debug, Clone)]
pub(super) struct Copy {
    pub facts: std::sync::Arc<PlaylistFacts>,
    /// Ready to serve (its ETag and gzip shared by every viewer given it).
    pub served: ServedPlaylist,
}

impl Copy {
    pub(super) fn new(
        body: Bytes,
        facts: PlaylistFacts,
        last_modified: Option<SystemTime>,
    ) -> Self {
        let caching = PlaylistCaching::half_target(facts.target_duration);
        Copy {
            facts: std::sync::Arc::new(facts),
            served: ServedPlaylist {
                body: PlaylistBody::new(body),
                caching,
                fetched: Instant::now(),
                last_modified: last_modified.unwrap_or_else(SystemTime::now),
            },
        }
    }
}

/// Where a copy's live edge is, part by part: the segment being made and
/// how many of its parts are listed (a whole segment counts as the next
/// one's 0 parts). A viewer is never served a copy behind one it was served.
pub(super) fn edge(facts: &PlaylistFacts) -> (u64, usize) {
    let next = facts.next_sequence();
    let parts = facts
        .low_latency
        .as_ref()
        .map_or(0, |ll| ll.of_segment(next).count());
    (next, parts)
}

/// One served media playlist of a signal.
pub(super) struct StreamState {
    /// Its file name under the signal: `playlist.m3u8`, `720p.m3u8`.
    name: String,
    failover: Mutex<Failover>,
    /// Each packager's latest copy.
    copies: Mutex<BTreeMap<String, Copy>>,
    /// Bumped on every copy, for viewers holding a blocking reload.
    changed: watch::Sender<u64>,
    /// The last copy served, and its edge.
    last_good: Mutex<Option<(ServedPlaylist, (u64, usize))>>,
    /// Segment and part names packagers listed recently: the only ones fetched.
    listed: Mutex<ListedSegments>,
    switches: Mutex<VecDeque<SwitchRecord>>,
}

impl StreamState {
    pub(super) fn new(name: &str, packagers: &[String]) -> Self {
        StreamState {
            name: name.to_string(),
            failover: Mutex::new(Failover::new(packagers)),
            copies: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
            last_good: Mutex::new(None),
            listed: Mutex::new(ListedSegments::default()),
            switches: Mutex::new(VecDeque::new()),
        }
    }

    /// Its file name under the signal.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The packagers to try, best first, the switch this makes, and the
    /// target duration to budget fetches with.
    pub(super) fn plan(&self, now: Instant) -> (Vec<String>, Option<Switch>, Duration) {
        let mut f = lock(&self.failover);
        let (order, switch) = f.plan(now);
        (order, switch, f.target_duration())
    }

    pub(super) fn target_duration(&self) -> Duration {
        lock(&self.failover).target_duration()
    }

    /// `PART-TARGET`, when a packager's copy says the stream is low latency.
    pub(super) fn part_target(&self) -> Option<Duration> {
        lock(&self.copies)
            .values()
            .find_map(|c| c.facts.low_latency.as_ref().map(|ll| ll.part_target))
    }

    /// Whether any packager's copy was read yet.
    pub(super) fn has_copies(&self) -> bool {
        !lock(&self.copies).is_empty()
    }

    /// Whether `base`'s latest copy holds blocking reloads.
    pub(super) fn can_block(&self, base: &str) -> bool {
        lock(&self.copies)
            .get(base)
            .and_then(|c| c.facts.low_latency.as_ref())
            .is_some_and(|ll| ll.can_block_reload)
    }

    /// What a follower asks `base` for next: the part after the newest it
    /// listed (part 0 of the next segment after a whole one).
    pub(super) fn next_reload(&self, base: &str) -> Option<BlockingReload> {
        let copies = lock(&self.copies);
        let facts = &copies.get(base)?.facts;
        let (next, parts) = edge(facts);
        Some(BlockingReload {
            msn: next,
            part: Some(parts as u32),
        })
    }

    /// A copy was read from `base` (by the poller, a follower or a viewer's
    /// fetch): its names are learned, the failover state observes its newest
    /// segment, target, live edge and end, and viewers holding a blocking
    /// reload look at it.
    pub(super) fn observe(&self, base: &str, copy: Copy, now: Instant) {
        drop(self.observe_locked(base, &copy, now));
        lock(&self.copies).insert(base.to_string(), copy);
        self.changed.send_modify(|v| *v += 1);
    }

    /// A copy was read from `base` for a viewer: observed, then whether it
    /// may be served: never behind one already served, and never an ended
    /// one (`EXT-X-ENDLIST`) while another packager is fresh.
    pub(super) fn observe_and_admit(&self, base: &str, copy: Copy, now: Instant) -> bool {
        let admitted = {
            let f = self.observe_locked(base, &copy, now);
            let copies = lock(&self.copies);
            self.admissible(&f, &copies, base, &copy.facts, now)
        };
        let served = copy.served.clone();
        let (at, ended) = (edge(&copy.facts), copy.facts.end_list);
        lock(&self.copies).insert(base.to_string(), copy);
        self.changed.send_modify(|v| *v += 1);
        if admitted {
            self.remember(served, at, ended);
        }
        admitted
    }

    /// Whether `facts` (from `base`) may be served now. An ended playlist
    /// (no fresh twin) is judged by whole segments: a worker ending its
    /// stream drops the parts of the segment it was making, so its last
    /// copy lists fewer parts than the one before it; refusing it would
    /// leave viewers nothing but 502s once the last good copy aged.
    ///
    /// A copy whose window is shorter than a fresh twin's (at most a
    /// segment behind it) is not served either: it is a restarted worker's
    /// (or one whose folder was wiped), listing only what it made since.
    /// Served, it would move the window's start past the viewers' playhead
    /// (hls.js then jumps ahead to the live edge and stalls) and, back on
    /// the twin, move the media sequence backwards.
    fn admissible(
        &self,
        f: &Failover,
        copies: &BTreeMap<String, Copy>,
        base: &str,
        facts: &PlaylistFacts,
        now: Instant,
    ) -> bool {
        if facts.end_list && f.has_fresh_twin(base, now) {
            return false;
        }
        let served = lock(&self.last_good).as_ref().map(|(_, at)| *at);
        // Never behind what viewers were given (an ended copy by whole
        // segments: its unfinished segment's parts are gone).
        let not_behind = |facts: &PlaylistFacts| {
            let at = edge(facts);
            served.is_none_or(|served| {
                if facts.end_list {
                    at.0 >= served.0
                } else {
                    at >= served
                }
            })
        };
        // A short window gives way to a fresh twin's longer one only if that
        // one may be served instead: a twin behind what was served (a host
        // whose clock is late) leaves the short window the only copy.
        let cut_short = copies.iter().any(|(twin, copy)| {
            twin != base
                && copy.facts.next_sequence() + 1 >= facts.next_sequence()
                && copy.facts.segments.len() > facts.segments.len()
                && f.is_fresh(twin, now)
                && not_behind(&copy.facts)
        });
        if cut_short && !facts.end_list {
            return false;
        }
        not_behind(facts)
    }

    fn observe_locked(&self, base: &str, copy: &Copy, now: Instant) -> MutexGuard<'_, Failover> {
        self.learn_names(&copy.facts, now);
        let mut f = lock(&self.failover);
        f.observe_playlist(
            base,
            copy.facts.newest_sequence(),
            copy.facts.target_duration,
            live_edge(&copy.facts),
            now,
        );
        f.observe_end(base, copy.facts.end_list);
        f
    }

    /// Remembers the segment and part names a packager listed (see
    /// [`ListedSegments`]), its preload hint included: the part it names
    /// is the one low-latency players ask for next.
    fn learn_names(&self, facts: &PlaylistFacts, now: Instant) {
        let mut listed = lock(&self.listed);
        listed.record(facts.segments.iter().map(|s| s.uri.as_str()), now);
        if let Some(ll) = &facts.low_latency {
            listed.record(ll.parts.iter().map(|p| p.uri.as_str()), now);
        }
        if let Some(newest) = facts.segments.last() {
            listed.record_newest(newest.sequence, &newest.uri);
        }
    }

    /// What is known of the segment or part `name` now: listed by a
    /// packager recently, worth a playlist read first, or unlisted (see
    /// [`Listing`]).
    pub(super) fn listing(&self, name: &str, now: Instant) -> Listing {
        lock(&self.listed).listing(name, now)
    }

    /// Whether some packager's latest copy hints at `name` as the next part.
    pub(super) fn hints(&self, name: &str) -> bool {
        lock(&self.copies).values().any(|c| {
            c.facts
                .low_latency
                .as_ref()
                .is_some_and(|ll| ll.preload_hint.as_deref() == Some(name))
        })
    }

    /// The packagers whose latest copy lists `name`, in `order`, then the
    /// others: a part or segment is asked first of those that have it.
    pub(super) fn listing_first(&self, name: &str, order: Vec<String>) -> Vec<String> {
        let copies = lock(&self.copies);
        let lists = |base: &String| {
            copies.get(base).is_some_and(|c| {
                c.facts.segments.iter().any(|s| s.uri == name)
                    || c.facts
                        .low_latency
                        .as_ref()
                        .is_some_and(|ll| ll.parts.iter().any(|p| p.uri == name))
            })
        };
        let (first, rest): (Vec<String>, Vec<String>) = order.into_iter().partition(lists);
        first.into_iter().chain(rest).collect()
    }

    /// The newest copy a viewer may be given now without asking anyone: one
    /// a packager gave within [`PLAYLIST_REUSE`] (or, low latency, within
    /// [`CURRENT_PARTS`] part targets, while followers read on every part),
    /// the active packager's when it is as new as any.
    pub(super) fn at_hand(&self, now: Instant) -> Option<ServedPlaylist> {
        let fresh_for = match self.part_target() {
            Some(part) => part.mul_f64(CURRENT_PARTS).max(PLAYLIST_REUSE),
            None => PLAYLIST_REUSE,
        };
        if let Some((served, _)) = lock(&self.last_good).as_ref() {
            if now.saturating_duration_since(served.fetched) < PLAYLIST_REUSE {
                return Some(served.clone());
            }
        }
        self.best(now, |copy| {
            now.saturating_duration_since(copy.served.fetched) < fresh_for
        })
    }

    /// The newest admissible copy that `wanted` accepts, preferring the
    /// active packager among equals; it becomes the last served.
    fn best(&self, now: Instant, wanted: impl Fn(&Copy) -> bool) -> Option<ServedPlaylist> {
        let (served, at, ended) = {
            let f = lock(&self.failover);
            // The active packager first among equals, then route order.
            let mut order: Vec<String> = Vec::new();
            for p in f.status(now) {
                if p.active {
                    order.insert(0, p.packager);
                } else {
                    order.push(p.packager);
                }
            }
            let copies = lock(&self.copies);
            let mut candidates: Vec<(&String, &Copy)> = copies
                .iter()
                .filter(|(base, copy)| {
                    wanted(copy) && self.admissible(&f, &copies, base, &copy.facts, now)
                })
                .collect();
            // The newest edge wins; among equals, the plan's order.
            candidates.sort_by_key(|(base, copy)| {
                let rank = order.iter().position(|b| b == *base).unwrap_or(usize::MAX);
                (std::cmp::Reverse(edge(&copy.facts)), rank)
            });
            let (_, copy) = candidates.first()?;
            (copy.served.clone(), edge(&copy.facts), copy.facts.end_list)
        };
        self.remember(served.clone(), at, ended);
        Some(served)
    }

    /// A viewer's blocking reload: the first copy, from any packager, that
    /// lists what it asks for, waiting at most `limit` (then `None`).
    pub(super) async fn hold(
        &self,
        reload: BlockingReload,
        limit: Duration,
    ) -> Option<ServedPlaylist> {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let found = self.best(Instant::now(), |copy| reload.is_satisfied_by(&copy.facts));
            if found.is_some() {
                return found;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Waits (at most `limit`) until some packager lists `name`, the part
    /// a copy hinted at; whether it did.
    pub(super) async fn hold_until_listed(&self, name: &str, limit: Duration) -> bool {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.listing(name, Instant::now()) == Listing::Listed {
                return true;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// The newest copy's facts any packager gave (to judge a blocking
    /// reload's parameters against).
    pub(super) fn newest_facts(&self) -> Option<std::sync::Arc<PlaylistFacts>> {
        lock(&self.copies)
            .values()
            .max_by_key(|c| edge(&c.facts))
            .map(|c| c.facts.clone())
    }

    /// Keeps `served` as the last good copy unless one further along was
    /// served (an admitted end replaces it: it is the stream's last word).
    fn remember(&self, served: ServedPlaylist, at: (u64, usize), ended: bool) {
        let mut last = lock(&self.last_good);
        if ended || last.as_ref().is_none_or(|(_, known)| at >= *known) {
            *last = Some((served, at));
        }
    }

    /// The last served playlist while it is at most one target duration old.
    pub(super) fn last_good_within_target(&self) -> Option<ServedPlaylist> {
        let target = self.target_duration();
        lock(&self.last_good)
            .as_ref()
            .filter(|(p, _)| p.fetched.elapsed() <= target)
            .map(|(p, _)| p.clone())
    }

    /// A fetch of a `kind` from `base` failed.
    pub(super) fn observe_failure(&self, base: &str, kind: MediaKind, reason: &str) {
        lock(&self.failover).observe_failure(base, kind, reason, Instant::now());
    }

    /// A segment was fetched whole from `base`.
    pub(super) fn observe_segment(&self, base: &str) {
        lock(&self.failover).observe_segment(base);
    }

    /// Replaces the packagers; their copies leave with them.
    pub(super) fn set_packagers(&self, packagers: &[String]) {
        lock(&self.failover).set_packagers(packagers);
        lock(&self.copies).retain(|base, _| packagers.contains(base));
    }

    pub(super) fn record_switch(&self, at: String, switch: Switch) {
        let mut history = lock(&self.switches);
        history.push_back(SwitchRecord { at, switch });
        while history.len() > SWITCH_HISTORY {
            history.pop_front();
        }
    }

    pub(super) fn status(&self, now: Instant) -> Vec<PackagerStatus> {
        lock(&self.failover).status(now)
    }

    /// Up, degraded, ended or down (see [`Failover::signal_health`]).
    pub(super) fn health(&self, now: Instant) -> ServingState {
        lock(&self.failover).signal_health(now)
    }

    /// Whether some packager serves it now (a rendition nobody serves is
    /// left out of the multivariant playlist viewers get).
    pub(super) fn is_served(&self, now: Instant) -> bool {
        self.health(now) != ServingState::Down && !lock(&self.copies).is_empty()
    }

    pub(super) fn switches(&self) -> Vec<SwitchRecord> {
        lock(&self.switches).iter().cloned().collect()
    }
}

/// Where a just-read playlist's live edge is against the wall clock now, when
/// its segments are dated.
fn live_edge(facts: &PlaylistFacts) -> Option<LiveEdge> {
    facts.newest_segment_end().map(|newest_end| LiveEdge {
        newest_end,
        read_at: SystemTime::now(),
    })
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the
/// state stays consistent: every critical section is a few assignments).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "http://a";
    const B: &str = "http://b";
    const PLAYLIST: &str = "playlist.m3u8";

    /// A low-latency playlist listing `segments` whole segments from
    /// `first`, then `parts` parts of the next one; ended
    /// (`EXT-X-ENDLIST`) or live.
    fn copy_of(first: u64, segments: u64, parts: usize, ended: bool) -> Copy {
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.4\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.2\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
        );
        for s in first..first + segments {
            text.push_str(&format!("#EXTINF:2.0,\nsegment{s:06}.ts\n"));
        }
        for p in 0..parts {
            text.push_str(&format!(
                "#EXT-X-PART:DURATION=0.4,URI=\"part{:06}.{p}.ts\"\n",
                first + segments
            ));
        }
        if ended {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        let body = Bytes::from(text);
        let facts = PlaylistFacts::parse(&body).expect("a valid playlist");
        Copy::new(body, facts, None)
    }

    /// Segments 10 and 11 whole, then `parts` parts of segment 12.
    fn copy(parts: usize, ended: bool) -> Copy {
        copy_of(10, 2, parts, ended)
    }

    fn stream() -> StreamState {
        StreamState::new(PLAYLIST, &[A.to_string(), B.to_string()])
    }

    #[test]
    fn an_ended_copy_without_the_parts_of_the_unfinished_segment_is_served() {
        let stream = stream();
        let now = Instant::now();
        assert!(
            stream.observe_and_admit(A, copy(0, true), now),
            "A ended first"
        );
        assert!(stream.observe_and_admit(B, copy(3, false), now));
        // B's worker stops: its last copy drops segment 12's parts and ends.
        assert!(
            stream.observe_and_admit(B, copy(0, true), now),
            "the stream's end was refused for listing fewer parts"
        );
        assert!(stream.last_good_within_target().is_some());
    }

    #[test]
    fn a_live_copy_behind_what_was_served_by_parts_is_not_served() {
        let stream = stream();
        let now = Instant::now();
        assert!(stream.observe_and_admit(B, copy(3, false), now));
        assert!(!stream.observe_and_admit(A, copy(1, false), now));
    }

    #[test]
    fn an_ended_copy_is_not_served_while_its_twin_is_fresh() {
        let stream = stream();
        let now = Instant::now();
        assert!(stream.observe_and_admit(B, copy(3, false), now));
        assert!(!stream.observe_and_admit(A, copy(0, true), now));
    }

    #[test]
    fn a_restarted_workers_short_window_is_not_served_while_its_twin_is_fresh() {
        let stream = stream();
        let now = Instant::now();
        // Both list 134..=139; A's worker restarts and lists from 140 only.
        assert!(stream.observe_and_admit(A, copy_of(134, 6, 2, false), now));
        assert!(stream.observe_and_admit(B, copy_of(135, 6, 2, false), now));
        assert!(
            !stream.observe_and_admit(A, copy_of(141, 0, 2, false), now),
            "the restarted worker's window moved the start past the viewers"
        );
        assert!(
            !stream.observe_and_admit(A, copy_of(140, 1, 2, false), now),
            "one segment listed, as far along as its twin"
        );
        assert!(
            !stream.observe_and_admit(A, copy_of(141, 1, 0, false), now),
            "a segment ahead of its twin, which is still making that segment"
        );
        let served = stream.best(now, |_| true).expect("the twin's copy");
        assert!(
            format!("{served:?}").contains("MEDIA-SEQUENCE:135"),
            "{served:?}"
        );
        // One segment short still moves the window's start forward, and
        // back once the twin is served again.
        assert!(!stream.observe_and_admit(A, copy_of(136, 5, 2, false), now));
        // Its window grown back to the twin's length: served.
        assert!(stream.observe_and_admit(A, copy_of(136, 6, 2, false), now));
    }

    #[test]
    fn a_short_window_is_served_when_the_longer_one_is_behind_what_was_served() {
        let stream = stream();
        let now = Instant::now();
        // A started later, so its window is not full yet; B's host clock is
        // late: B lists more segments but ends a segment behind A.
        assert!(stream.observe_and_admit(A, copy_of(134, 4, 2, false), now));
        assert!(
            !stream.observe_and_admit(B, copy_of(132, 5, 2, false), now),
            "behind what was served"
        );
        assert!(
            stream.observe_and_admit(A, copy_of(134, 4, 3, false), now),
            "A refused for a shorter window than a twin that may not be served: nothing left to serve"
        );
    }

    #[test]
    fn a_short_window_is_served_when_no_twin_is_fresh() {
        let stream = stream();
        let now = Instant::now();
        // B was never read: A, restarted, is all there is.
        assert!(stream.observe_and_admit(A, copy_of(141, 1, 0, false), now));
    }
}
