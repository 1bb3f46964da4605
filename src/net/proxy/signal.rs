//! What the proxy knows of one served signal: its failover state, the last
//! playlist it served, the segment names packagers listed recently, its
//! recent switches, when a viewer last asked, and who is watching.
//!
//! Every method takes its lock for a few assignments and never across an
//! `await`, so viewer requests and the poller share it without waiting on I/O.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::budgets::PLAYLIST_REUSE;
use super::failover::{Failover, LiveEdge};
use super::listed::{ListedSegments, Listing};
use super::viewers::{ViewerId, Viewers, WINDOW_TARGETS};
use crate::api::{PackagerStatus, ProxySignal, ServingState, Switch, SwitchRecord};
use crate::hls::{MediaKind, PlaylistFacts};
use crate::net::delivery::{PlaylistBody, PlaylistCaching};

/// Switches remembered per signal for `GET /status`.
pub(super) const SWITCH_HISTORY: usize = 20;

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

/// One served signal.
pub(super) struct SignalState {
    failover: Mutex<Failover>,
    /// The last playlist served.
    last_good: Mutex<Option<ServedPlaylist>>,
    /// Segment names packagers listed recently: the only ones fetched.
    listed: Mutex<ListedSegments>,
    /// When a viewer last asked for the playlist (an idle signal is dropped).
    last_request: Mutex<Instant>,
    /// When the origin last confirmed the routes.
    routes_confirmed: Mutex<Instant>,
    switches: Mutex<VecDeque<SwitchRecord>>,
    /// Distinct clients asking for this signal recently.
    viewers: Mutex<Viewers>,
}

impl SignalState {
    pub(super) fn new(packagers: &[String], now: Instant) -> Self {
        SignalState {
            failover: Mutex::new(Failover::new(packagers)),
            last_good: Mutex::new(None),
            listed: Mutex::new(ListedSegments::default()),
            last_request: Mutex::new(now),
            routes_confirmed: Mutex::new(now),
            switches: Mutex::new(VecDeque::new()),
            viewers: Mutex::new(Viewers::default()),
        }
    }

    /// The packagers to try, best first, the switch this makes, and the
    /// target duration to budget fetches with.
    pub(super) fn plan(&self, now: Instant) -> (Vec<String>, Option<Switch>, Duration) {
        let mut f = lock(&self.failover);
        let (order, switch) = f.plan(now);
        (order, switch, f.target_duration())
    }

    pub(super) fn packagers_and_target(&self) -> (Vec<String>, Duration) {
        let f = lock(&self.failover);
        (f.packagers(), f.target_duration())
    }

    pub(super) fn target_duration(&self) -> Duration {
        lock(&self.failover).target_duration()
    }

    /// A playlist was read from `base` by the poller.
    pub(super) fn observe_playlist(&self, base: &str, facts: &PlaylistFacts, now: Instant) {
        drop(self.observe(base, facts, now));
    }

    /// A playlist was read from `base` for a viewer: observed, then whether
    /// it may be served: never older than one already served, and never an
    /// ended one (`EXT-X-ENDLIST`) while another packager is fresh.
    pub(super) fn observe_and_admit(
        &self,
        base: &str,
        facts: &PlaylistFacts,
        now: Instant,
    ) -> bool {
        let mut f = self.observe(base, facts, now);
        if facts.end_list && f.has_fresh_twin(base, now) {
            return false;
        }
        f.admit_playlist(facts.newest_sequence())
    }

    /// What every playlist read tells: the names it lists, and to the
    /// failover state its newest segment, target, live edge and whether it
    /// ended. Returns the failover state, still locked, for a decision on
    /// the same read.
    fn observe(&self, base: &str, facts: &PlaylistFacts, now: Instant) -> MutexGuard<'_, Failover> {
        self.learn_names(facts, now);
        let mut f = lock(&self.failover);
        f.observe_playlist(
            base,
            facts.newest_sequence(),
            facts.target_duration,
            live_edge(facts),
            now,
        );
        f.observe_end(base, facts.end_list);
        f
    }

    /// Remembers the segment names a packager listed (see [`ListedSegments`]).
    fn learn_names(&self, facts: &PlaylistFacts, now: Instant) {
        let mut listed = lock(&self.listed);
        listed.record(facts.segments.iter().map(|s| s.uri.as_str()), now);
        if let Some(newest) = facts.segments.last() {
            listed.record_newest(newest.sequence, &newest.uri);
        }
    }

    /// What is known of the segment `name` now: listed by a packager
    /// recently, worth a playlist read first, or unlisted (see [`Listing`]).
    pub(super) fn listing(&self, name: &str, now: Instant) -> Listing {
        lock(&self.listed).listing(name, now)
    }

    /// A fetch of a `kind` from `base` failed.
    pub(super) fn observe_failure(&self, base: &str, kind: MediaKind, reason: &str) {
        lock(&self.failover).observe_failure(base, kind, reason, Instant::now());
    }

    /// A segment was fetched whole from `base`.
    pub(super) fn observe_segment(&self, base: &str) {
        lock(&self.failover).observe_segment(base);
    }

    /// Replaces the routes; true when they changed.
    pub(super) fn confirm_routes(&self, packagers: &[String], now: Instant) -> bool {
        *lock(&self.routes_confirmed) = now;
        let mut f = lock(&self.failover);
        if f.packagers() == packagers {
            return false;
        }
        f.set_packagers(packagers);
        true
    }

    pub(super) fn routes_confirmed_ago(&self) -> Duration {
        lock(&self.routes_confirmed).elapsed()
    }

    /// A viewer asked for the playlist now.
    pub(super) fn touch(&self) {
        *lock(&self.last_request) = Instant::now();
    }

    pub(super) fn idle_for(&self) -> Duration {
        lock(&self.last_request).elapsed()
    }

    pub(super) fn remember_playlist(&self, served: ServedPlaylist) {
        *lock(&self.last_good) = Some(served);
    }

    /// The last served playlist if it was fetched within [`PLAYLIST_REUSE`]:
    /// viewers asking at the same moment share one upstream fetch.
    pub(super) fn reusable_playlist(&self) -> Option<ServedPlaylist> {
        lock(&self.last_good)
            .as_ref()
            .filter(|p| p.fetched.elapsed() < PLAYLIST_REUSE)
            .cloned()
    }

    /// The last served playlist while it is at most one target duration old.
    pub(super) fn last_good_within_target(&self) -> Option<ServedPlaylist> {
        let target = self.target_duration();
        lock(&self.last_good)
            .as_ref()
            .filter(|p| p.fetched.elapsed() <= target)
            .cloned()
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

    /// The signal's entry in `GET /status`: its serving state, viewers now,
    /// each packager's freshness and the recent switches.
    pub(super) fn report(&self, signal: &str, now: Instant) -> ProxySignal {
        ProxySignal {
            packagers: self.status(now),
            signal: signal.to_string(),
            state: Some(self.health(now)),
            switches: self.switches(),
            viewers: Some(self.viewers(now) as u64),
        }
    }

    /// How long a viewer counts after its last request.
    fn viewer_window(&self) -> Duration {
        self.target_duration() * WINDOW_TARGETS
    }

    /// `viewer` asked for this signal now.
    pub(super) fn seen_viewer(&self, viewer: ViewerId, now: Instant) {
        let window = self.viewer_window();
        lock(&self.viewers).seen(viewer, now, window);
    }

    /// Viewers now (see [`Viewers`]).
    pub(super) fn viewers(&self, now: Instant) -> usize {
        let window = self.viewer_window();
        lock(&self.viewers).count(now, window)
    }

    /// Forgets viewers gone; the viewers now.
    pub(super) fn expire_viewers(&self, now: Instant) -> usize {
        let window = self.viewer_window();
        lock(&self.viewers).expire(now, window)
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
