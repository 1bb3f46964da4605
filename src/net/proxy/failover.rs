//! The proxy's failover decision for one signal, as a pure state machine:
//! observations in (a playlist seen, a request failed), decisions out (which
//! packagers to try, in order; whether a playlist may be served), time passed
//! in. No sockets, no clocks: the proxy feeds it and the tests drive it.
//!
//! A packager is, for a signal:
//! - `Failing` after [`FAILING_AFTER`] consecutive failed fetches of one kind
//!   (playlists, or segments: refused, reset, timeout, 4xx/5xx, cut body),
//!   until a good fetch of that kind, or [`FAILURE_MEMORY`] without another
//!   failure (HAProxy's `fall`, Envoy's consecutive-error outlier detection:
//!   one blip does not flip a packager, and no single viewer request can);
//! - `Stale` when its newest segment has not advanced for more than
//!   [`STALE_AFTER_TARGETS`] target durations while another packager is ahead
//!   (a packager answering 200 with a frozen playlist), or when its dated
//!   newest segment (`EXT-X-PROGRAM-DATE-TIME` plus duration) ended more than
//!   [`STALE_AFTER_TARGETS`] + [`CLOCK_SKEW_TARGETS`] target durations plus
//!   [`WORKER_LATENCY`] before the wall clock: the live edge stopped even if
//!   no twin is ahead (the one worker behind both packagers died, or every
//!   worker did);
//! - `Ended` when its playlist ends (`EXT-X-ENDLIST`: the signal's input was
//!   removed behind it), unless failing: after any packager still live, so
//!   one host's input removed ends nothing while a twin goes on, and before
//!   stale ones, so when no packager is live viewers get the end of the
//!   stream and stop cleanly instead of waiting on a frozen playlist;
//! - `Unknown` before its first playlist;
//! - `Fresh` otherwise.
//!
//! Packagers are tried best health first, then freshest (newest segment
//! listed), then the active one (no flapping between healthy twins that list
//! the same segments), then configuration order. So a packager that stops
//! advancing loses traffic as soon as its twin lists a newer segment, well
//! before it is called stale. The proxy
//! never serves a playlist whose newest segment is older than one it already
//! served ([`Failover::admit_playlist`]).
//!
//! The signal as a whole is [`ServingState::Up`], `Degraded`, `Ended` or
//! `Down` ([`Failover::signal_health`]): ended when no packager is live and
//! one ended its stream, down when every packager is stale or failing. The
//! proxy still serves what it last had; it only says so.
//!
//! Clock assumption: epoch-locked workers date segment n by the wall clock
//! (`EPOCH + n·L`), and the proxy compares that date with its own wall clock,
//! so workers and proxy are expected on NTP. Skew up to [`CLOCK_SKEW_TARGETS`]
//! target durations is tolerated; a date in the proxy's future counts as a
//! live edge of age zero. The age is measured once per playlist read
//! ([`LiveEdge`]) and then grows on the monotonic clock, so a wall-clock step
//! between reads does not move it.

use std::time::{Duration, Instant, SystemTime};

use crate::api::{PackagerHealth, PackagerStatus, ServingState, Switch, SwitchKind};
use crate::hls::MediaKind;

/// Target duration assumed until a playlist says otherwise.
pub(crate) const DEFAULT_TARGET_DURATION: Duration = Duration::from_secs(2);
/// A packager whose playlist has not advanced for this many target durations,
/// while another is ahead, is stale.
pub(crate) const STALE_AFTER_TARGETS: f64 = 1.5;
/// A packager counts as behind a twin (and the twin is preferred) once the
/// twin has listed a newer segment for this many target durations: two
/// packagers are never read at the same instant (a follower sees each part
/// as it comes, a poll every half target), so a twin ahead for a moment at
/// a segment boundary moves no traffic.
pub(crate) const BEHIND_AFTER_TARGETS: f64 = 0.5;
/// Slack, in target durations, added to [`STALE_AFTER_TARGETS`] before a
/// dated live edge is called stopped: covers clock skew between workers and
/// proxy (NTP keeps it to milliseconds; one target duration is generous) and
/// the time a finished segment takes to reach a packager's playlist.
pub(crate) const CLOCK_SKEW_TARGETS: f64 = 1.0;
/// How long after its end a segment may first be listed: the worker encodes,
/// muxes and closes it before its playlist names it. Measured at about 1.25 s
/// in the lab (1 s segments, debug build, loaded machine); absolute, not in
/// target durations, because encoder delay does not grow with segment length.
pub(crate) const WORKER_LATENCY: Duration = Duration::from_millis(1500);
/// Consecutive failed fetches of one kind (playlists, or segments) that make a
/// packager failing. Two, not one: a single refused connection, timeout or 404
/// is a blip (or a viewer asking for something odd) and must not move every
/// viewer; two in a row is a pattern. Small, because the poller reads each
/// playlist every half target duration, so a dead packager reaches it within
/// about one target duration. Whatever it is, a failed fetch is still retried
/// on the next packager within the same viewer request.
pub(crate) const FAILING_AFTER: u32 = 2;
/// Failures further apart than this are not consecutive, and a failing
/// packager nobody fetched from again is given another chance after it (Envoy's
/// base ejection time): a packager failing on segments is last in the order,
/// so no good segment fetch may come to clear it.
pub(crate) const FAILURE_MEMORY: Duration = Duration::from_secs(30);

/// Consecutive failed fetches of one kind from one packager.
#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    count: u32,
    /// When the last of them failed.
    last: Option<Instant>,
}

impl Streak {
    fn fail(&mut self, now: Instant) {
        if !self.recent(now) {
            self.count = 0;
        }
        self.count += 1;
        self.last = Some(now);
    }

    fn recent(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|t| now.saturating_duration_since(t) <= FAILURE_MEMORY)
    }

    fn failing(&self, now: Instant) -> bool {
        self.count >= FAILING_AFTER && self.recent(now)
    }
}

/// Where a playlist's live edge was when it was read: the wall-clock end of
/// its newest segment (`EXT-X-PROGRAM-DATE-TIME` plus duration) and the wall
/// clock at the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEdge {
    pub newest_end: SystemTime,
    pub read_at: SystemTime,
}

impl LiveEdge {
    /// How far behind the wall clock the edge was at the read (zero when the
    /// date is in the reader's future: clock skew).
    fn lag(&self) -> Duration {
        self.read_at
            .duration_since(self.newest_end)
            .unwrap_or_default()
    }
}

/// What the state machine knows of one packager for one signal.
#[derive(Debug, Clone)]
struct Packager {
    base: String,
    /// Media sequence number of the newest segment it listed.
    newest: Option<u64>,
    /// When `newest` last grew.
    advanced_at: Option<Instant>,
    /// How far behind the wall clock its live edge was at its last dated
    /// playlist, and when (monotonic) that playlist was read.
    edge_lag: Option<(Duration, Instant)>,
    /// Where its live edge is by its dates (its newest segment's date plus
    /// duration): how far it is behind its twins, whatever the clocks say.
    edge_end: Option<SystemTime>,
    /// Its last playlist ended the stream (`EXT-X-ENDLIST`).
    ended: bool,
    /// Failed playlist fetches since its last good playlist.
    playlist_failures: Streak,
    /// Failed segment fetches since its last good segment.
    segment_failures: Streak,
    last_error: Option<String>,
}

/// Failover state of one signal.
#[derive(Debug, Clone)]
pub struct Failover {
    packagers: Vec<Packager>,
    active: Option<usize>,
    /// The active packager the routes no longer list, until the next plan
    /// reports the switch away from it.
    unrouted_active: Option<String>,
    target: Duration,
    /// Newest segment of the newest playlist served to any viewer.
    served_newest: Option<u64>,
}

impl Failover {
    pub fn new(packagers: &[String]) -> Self {
        let mut f = Failover {
            packagers: Vec::new(),
            active: None,
            unrouted_active: None,
            target: DEFAULT_TARGET_DURATION,
            served_newest: None,
        };
        f.set_packagers(packagers);
        f
    }

    /// Replaces the packager list (routes changed), keeping what is known of
    /// packagers that stay.
    pub fn set_packagers(&mut self, packagers: &[String]) {
        let active_base = self.active.map(|i| self.packagers[i].base.clone());
        let old = std::mem::take(&mut self.packagers);
        self.packagers = packagers
            .iter()
            .map(|base| {
                old.iter()
                    .find(|u| &u.base == base)
                    .cloned()
                    .unwrap_or(Packager {
                        base: base.clone(),
                        newest: None,
                        advanced_at: None,
                        edge_lag: None,
                        edge_end: None,
                        ended: false,
                        playlist_failures: Streak::default(),
                        segment_failures: Streak::default(),
                        last_error: None,
                    })
            })
            .collect();
        self.active = active_base
            .as_ref()
            .and_then(|b| self.packagers.iter().position(|u| &u.base == b));
        if self.active.is_none() && active_base.is_some() {
            self.unrouted_active = active_base;
        }
    }

    pub fn packagers(&self) -> Vec<String> {
        self.packagers.iter().map(|u| u.base.clone()).collect()
    }

    pub fn target_duration(&self) -> Duration {
        self.target
    }

    /// A playlist was read from `base` (by a poll or a viewer's request);
    /// `edge` when its segments are dated.
    pub fn observe_playlist(
        &mut self,
        base: &str,
        newest: Option<u64>,
        target: Duration,
        edge: Option<LiveEdge>,
        now: Instant,
    ) {
        if !target.is_zero() {
            self.target = target;
        }
        let Some(u) = self.packagers.iter_mut().find(|u| u.base == base) else {
            return;
        };
        u.playlist_failures = Streak::default();
        if u.segment_failures.count == 0 {
            u.last_error = None;
        }
        let advanced = match (u.newest, newest) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(old), Some(new)) => new > old,
        };
        if advanced || u.advanced_at.is_none() {
            u.advanced_at = Some(now);
        }
        if newest.is_some() {
            u.newest = newest;
        }
        u.edge_lag = edge.map(|e| (e.lag(), now));
        if let Some(e) = edge {
            u.edge_end = Some(e.newest_end);
        }
    }

    /// Whether the playlist just read from `base` ended its stream
    /// (`EXT-X-ENDLIST`); a live playlist read later takes it back.
    pub(crate) fn observe_end(&mut self, base: &str, ended: bool) {
        if let Some(u) = self.packagers.iter_mut().find(|u| u.base == base) {
            u.ended = ended;
        }
    }

    /// Whether a packager other than `base` is fresh at `now`: an ended
    /// playlist from `base` is then not served (the viewer would stop while
    /// the stream goes on elsewhere).
    pub(crate) fn has_fresh_twin(&self, base: &str, now: Instant) -> bool {
        (0..self.packagers.len()).any(|i| {
            self.packagers[i].base != base && self.health_of(i, now) == PackagerHealth::Fresh
        })
    }

    /// Whether packager `base` is fresh at `now`.
    pub(crate) fn is_fresh(&self, base: &str, now: Instant) -> bool {
        self.packagers
            .iter()
            .position(|u| u.base == base)
            .is_some_and(|i| self.health_of(i, now) == PackagerHealth::Fresh)
    }

    /// A segment was fetched whole from `base`: its segment failures were
    /// a blip. (A good playlist does not clear them: a packager may list
    /// segments and still fail to serve them.)
    pub fn observe_segment(&mut self, base: &str) {
        if let Some(u) = self.packagers.iter_mut().find(|u| u.base == base) {
            u.segment_failures = Streak::default();
            if u.playlist_failures.count == 0 {
                u.last_error = None;
            }
        }
    }

    /// A fetch of a `kind` from `base` failed for `reason` at `now`.
    pub fn observe_failure(&mut self, base: &str, kind: MediaKind, reason: &str, now: Instant) {
        if let Some(u) = self.packagers.iter_mut().find(|u| u.base == base) {
            match kind {
                MediaKind::Playlist => u.playlist_failures.fail(now),
                MediaKind::Segment => u.segment_failures.fail(now),
            }
            u.last_error = Some(reason.to_string());
        }
    }

    fn newest_known(&self) -> Option<u64> {
        self.packagers.iter().filter_map(|u| u.newest).max()
    }

    fn health_of(&self, i: usize, now: Instant) -> PackagerHealth {
        let u = &self.packagers[i];
        if u.playlist_failures.failing(now) || u.segment_failures.failing(now) {
            return PackagerHealth::Failing;
        }
        if u.ended {
            return PackagerHealth::Ended;
        }
        let (Some(newest), Some(advanced_at)) = (u.newest, u.advanced_at) else {
            return PackagerHealth::Unknown;
        };
        let still_for = now.saturating_duration_since(advanced_at);
        let someone_ahead = self.newest_known().is_some_and(|max| max > newest);
        let still = still_for > self.target.mul_f64(STALE_AFTER_TARGETS);
        let frozen_behind = someone_ahead && still;
        // A live edge behind the wall clock counts only if it also stopped
        // growing: a worker whose clock is behind keeps a live edge that
        // looks old but advances every segment, and it is what viewers are
        // served from once its twin is gone.
        let edge_stopped = still
            && self
                .edge_age(i, now)
                .is_some_and(|age| age > self.edge_stale_after());
        if frozen_behind || edge_stopped {
            PackagerHealth::Stale
        } else {
            PackagerHealth::Fresh
        }
    }

    /// How far behind the wall clock packager `i`'s live edge is at `now`:
    /// its lag at the last dated read, plus the time since (monotonic).
    fn edge_age(&self, i: usize, now: Instant) -> Option<Duration> {
        let (lag, read) = self.packagers[i].edge_lag?;
        Some(lag + now.saturating_duration_since(read))
    }

    /// How far behind the wall clock a dated live edge may be before its
    /// packager is stale: a live edge is normally up to one target duration
    /// plus [`WORKER_LATENCY`] old (just before the next segment is listed);
    /// [`STALE_AFTER_TARGETS`] targets instead of one, plus the clock skew
    /// allowance, keep a slow segment from counting.
    fn edge_stale_after(&self) -> Duration {
        self.target
            .mul_f64(STALE_AFTER_TARGETS + CLOCK_SKEW_TARGETS)
            + WORKER_LATENCY
    }

    /// The signal as a whole: up when the active packager is fresh and at
    /// least one other is too; ended when none is fresh or unknown and one
    /// ended its stream; down when every packager is stale or failing (or
    /// none is routed); degraded otherwise (served without a healthy twin,
    /// or not known yet).
    pub fn signal_health(&self, now: Instant) -> ServingState {
        let health: Vec<PackagerHealth> = (0..self.packagers.len())
            .map(|i| self.health_of(i, now))
            .collect();
        let live =
            |h: &PackagerHealth| matches!(h, PackagerHealth::Fresh | PackagerHealth::Unknown);
        if !health.iter().any(live) && health.contains(&PackagerHealth::Ended) {
            return ServingState::Ended;
        }
        if health
            .iter()
            .all(|h| matches!(h, PackagerHealth::Stale | PackagerHealth::Failing))
        {
            return ServingState::Down;
        }
        let fresh = health
            .iter()
            .filter(|h| **h == PackagerHealth::Fresh)
            .count();
        let active_fresh = self
            .active
            .is_some_and(|a| health[a] == PackagerHealth::Fresh);
        if active_fresh && fresh >= 2 {
            ServingState::Up
        } else {
            ServingState::Degraded
        }
    }

    /// Whether packager `i` is behind a twin that has listed a newer segment
    /// for [`BEHIND_AFTER_TARGETS`] target durations.
    fn behind(&self, i: usize, now: Instant) -> bool {
        let newest = self.packagers[i].newest.unwrap_or(0);
        let grace = self.target.mul_f64(BEHIND_AFTER_TARGETS);
        self.packagers.iter().any(|v| {
            v.newest.is_some_and(|n| n > newest)
                && v.advanced_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= grace)
        })
    }

    /// The packagers to try for a request, best first, and the switch this
    /// choice makes (if the best is not the active one): by health, then
    /// not behind a twin (newest first among those behind), then the active
    /// one (no flapping), then configuration order.
    pub fn plan(&mut self, now: Instant) -> (Vec<String>, Option<Switch>) {
        let mut order: Vec<usize> = (0..self.packagers.len()).collect();
        order.sort_by_key(|&i| {
            let behind = self.behind(i, now);
            (
                self.health_of(i, now),
                behind,
                std::cmp::Reverse(if behind {
                    self.packagers[i].newest.unwrap_or(0)
                } else {
                    0
                }),
                Some(i) != self.active,
                i,
            )
        });
        let switch = match order.first() {
            Some(&best) if Some(best) != self.active => {
                let unrouted = self.unrouted_active.take();
                let (kind, reason) = match (self.active, &unrouted) {
                    (Some(a), _) => self.reason_out(a, now),
                    (None, Some(gone)) => (
                        SwitchKind::Unrouted,
                        format!("{gone} no longer reported for this signal"),
                    ),
                    (None, None) => (SwitchKind::First, "first choice".to_string()),
                };
                let switch = Switch {
                    from: self
                        .active
                        .map(|a| self.packagers[a].base.clone())
                        .or(unrouted),
                    to: self.packagers[best].base.clone(),
                    reason,
                    kind,
                };
                self.active = Some(best);
                Some(switch)
            }
            _ => None,
        };
        let bases = order
            .into_iter()
            .map(|i| self.packagers[i].base.clone())
            .collect();
        (bases, switch)
    }

    fn reason_out(&self, i: usize, now: Instant) -> (SwitchKind, String) {
        let u = &self.packagers[i];
        match self.health_of(i, now) {
            PackagerHealth::Failing => (
                SwitchKind::Failing,
                format!(
                    "{} failing: {}",
                    u.base,
                    u.last_error.as_deref().unwrap_or("request failed")
                ),
            ),
            PackagerHealth::Ended => (
                SwitchKind::Ended,
                format!("{} ended its stream (EXT-X-ENDLIST)", u.base),
            ),
            PackagerHealth::Stale => (
                SwitchKind::Stale,
                format!(
                    "{} stale: playlist stuck at segment {} for {:.1} s{}",
                    u.base,
                    u.newest.unwrap_or(0),
                    u.advanced_at
                        .map(|t| now.saturating_duration_since(t).as_secs_f64())
                        .unwrap_or(0.0),
                    self.edge_age(i, now)
                        .map(|age| format!(", live edge {:.1} s old", age.as_secs_f64()))
                        .unwrap_or_default()
                ),
            ),
            _ => (
                SwitchKind::Behind,
                format!(
                    "{} behind: newest segment {} while another has {}",
                    u.base,
                    u.newest.unwrap_or(0),
                    self.newest_known().unwrap_or(0)
                ),
            ),
        }
    }

    /// Whether a playlist whose newest segment is `newest` may be served:
    /// never one older than a playlist already served. Records it if so.
    pub fn admit_playlist(&mut self, newest: Option<u64>) -> bool {
        match (self.served_newest, newest) {
            (Some(served), Some(n)) if n < served => false,
            (Some(_), None) => false,
            (_, Some(n)) => {
                self.served_newest = Some(n);
                true
            }
            (None, None) => true,
        }
    }

    /// How far packager `i`'s live edge is behind its freshest twin's, by
    /// their dates (zero for the freshest): the skew of its worker's clock,
    /// or a worker late or lagging.
    pub fn behind_twin(&self, i: usize) -> Option<Duration> {
        let mine = self.packagers[i].edge_end?;
        let newest = self.packagers.iter().filter_map(|u| u.edge_end).max()?;
        Some(newest.duration_since(mine).unwrap_or_default())
    }

    pub fn status(&self, now: Instant) -> Vec<PackagerStatus> {
        (0..self.packagers.len())
            .map(|i| {
                let u = &self.packagers[i];
                PackagerStatus {
                    behind_twin_ms: self
                        .behind_twin(i)
                        .map(|d| d.as_millis() as u64)
                        .filter(|_| self.packagers.len() > 1),
                    packager: u.base.clone(),
                    health: self.health_of(i, now),
                    active: self.active == Some(i),
                    newest_sequence: u.newest,
                    advanced_ms_ago: u
                        .advanced_at
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    edge_ms_ago: self.edge_age(i, now).map(|age| age.as_millis() as u64),
                    last_error: u.last_error.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "http://a:8080";
    const B: &str = "http://b:9090";
    const TARGET: Duration = Duration::from_secs(2);

    fn both() -> Failover {
        Failover::new(&[A.to_string(), B.to_string()])
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn starts_on_the_first_packager_and_stays_while_both_are_fresh() {
        let t0 = Instant::now();
        let mut f = both();
        let (order, switch) = f.plan(t0);
        assert_eq!(order, vec![A, B]);
        assert_eq!(switch.map(|s| s.to), Some(A.to_string()));
        for k in 0..10u64 {
            let now = t0 + secs(k as f64);
            f.observe_playlist(A, Some(k), TARGET, None, now);
            f.observe_playlist(B, Some(k), TARGET, None, now);
            let (order, switch) = f.plan(now);
            assert_eq!(order[0], A, "no flapping at {k}");
            assert!(switch.is_none());
        }
    }

    /// `FAILING_AFTER` failed fetches of `kind` from `base`, 0.1 s apart.
    fn fail_in_a_row(f: &mut Failover, base: &str, kind: MediaKind, reason: &str, from: Instant) {
        for k in 0..FAILING_AFTER {
            f.observe_failure(base, kind, reason, from + secs(0.1 * k as f64));
        }
    }

    #[test]
    fn consecutive_failures_move_traffic_and_a_good_poll_brings_it_back() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(A, Some(5), TARGET, None, t0);
        f.observe_playlist(B, Some(5), TARGET, None, t0);
        f.plan(t0);
        f.observe_failure(A, MediaKind::Playlist, "connection refused", t0);
        let (order, switch) = f.plan(t0 + secs(0.05));
        assert_eq!(
            (order[0].as_str(), switch),
            (A, None),
            "one blip flips nothing"
        );
        fail_in_a_row(&mut f, A, MediaKind::Playlist, "connection refused", t0);
        let (order, switch) = f.plan(t0 + secs(0.1));
        assert_eq!(order, vec![B, A], "A is still tried, last");
        let switch = switch.expect("a switch");
        assert_eq!(switch.to, B);
        assert!(
            switch.reason.contains("connection refused"),
            "{}",
            switch.reason
        );
        // A recovers, but B is healthy: no switch back (no flapping).
        f.observe_playlist(A, Some(6), TARGET, None, t0 + secs(1.0));
        f.observe_playlist(B, Some(6), TARGET, None, t0 + secs(1.0));
        let (order, switch) = f.plan(t0 + secs(1.0));
        assert_eq!(order, vec![B, A]);
        assert!(switch.is_none());
        // Then B fails: A is used again.
        fail_in_a_row(&mut f, B, MediaKind::Segment, "HTTP 500", t0 + secs(1.1));
        assert_eq!(f.plan(t0 + secs(1.3)).0, vec![A, B]);
    }

    #[test]
    fn a_success_between_failures_means_they_were_blips() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(A, Some(5), TARGET, None, t0);
        f.plan(t0);
        // Segments from A fail every other time: never two in a row.
        for k in 0..10u32 {
            let now = t0 + secs(k as f64);
            if k % 2 == 0 {
                f.observe_failure(A, MediaKind::Segment, "HTTP 404", now);
            } else {
                f.observe_segment(A);
            }
            assert_eq!(f.plan(now), (vec![A.to_string(), B.to_string()], None));
        }
        // The same for playlists, cleared by good ones.
        for k in 0..10u32 {
            let now = t0 + secs(10.0 + k as f64);
            if k % 2 == 0 {
                f.observe_failure(A, MediaKind::Playlist, "reset", now);
            } else {
                f.observe_playlist(A, Some(5 + k as u64), TARGET, None, now);
            }
            assert_eq!(f.plan(now).1, None, "no switch at {k}");
        }
        assert_eq!(f.status(t0 + secs(20.0))[0].health, PackagerHealth::Fresh);
    }

    #[test]
    fn one_failure_of_each_kind_is_not_two_in_a_row() {
        let t0 = Instant::now();
        let mut f = both();
        f.plan(t0);
        f.observe_failure(A, MediaKind::Playlist, "reset", t0);
        f.observe_failure(A, MediaKind::Segment, "reset", t0);
        assert_eq!(f.plan(t0).1, None);
    }

    #[test]
    fn failing_segments_are_not_cleared_by_good_playlists_but_are_forgotten() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(A, Some(5), TARGET, None, t0);
        f.observe_playlist(B, Some(5), TARGET, None, t0);
        f.plan(t0);
        fail_in_a_row(&mut f, A, MediaKind::Segment, "body cut short", t0);
        assert_eq!(f.plan(t0 + secs(0.2)).0[0], B);
        // A keeps listing segments: it still cuts them, so it stays failing.
        f.observe_playlist(A, Some(6), TARGET, None, t0 + secs(1.0));
        f.observe_playlist(B, Some(6), TARGET, None, t0 + secs(1.0));
        let status = f.status(t0 + secs(1.0));
        assert_eq!(status[0].health, PackagerHealth::Failing);
        assert_eq!(status[0].last_error.as_deref(), Some("body cut short"));
        // Nobody fetched a segment from it again: after FAILURE_MEMORY it is
        // given another chance (still after B, which is active).
        let later = t0 + secs(0.2) + FAILURE_MEMORY + secs(0.1);
        f.observe_playlist(A, Some(20), TARGET, None, later);
        f.observe_playlist(B, Some(20), TARGET, None, later);
        assert_eq!(f.status(later)[0].health, PackagerHealth::Fresh);
        assert_eq!(f.plan(later), (vec![B.to_string(), A.to_string()], None));
        // And one new failure then is a blip again, not a third in a row.
        f.observe_failure(A, MediaKind::Segment, "HTTP 404", later);
        assert_eq!(f.status(later)[0].health, PackagerHealth::Fresh);
    }

    #[test]
    fn failures_further_apart_than_the_memory_are_not_consecutive() {
        let t0 = Instant::now();
        let mut f = both();
        f.plan(t0);
        f.observe_failure(A, MediaKind::Segment, "timeout", t0);
        let later = t0 + FAILURE_MEMORY + secs(1.0);
        f.observe_failure(A, MediaKind::Segment, "timeout", later);
        assert_eq!(f.plan(later).1, None);
        f.observe_failure(A, MediaKind::Segment, "timeout", later + secs(1.0));
        assert_eq!(f.plan(later + secs(1.0)).0[0], B);
    }

    #[test]
    fn a_twin_ahead_is_preferred_once_it_has_been_ahead_for_half_a_target() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(A, Some(10), TARGET, None, t0);
        f.observe_playlist(B, Some(10), TARGET, None, t0);
        f.plan(t0);
        f.observe_playlist(B, Some(11), TARGET, None, t0 + secs(0.5));
        // B is ahead for a moment (it was read first): nothing moves.
        assert_eq!(
            f.plan(t0 + secs(0.6)),
            (vec![A.to_string(), B.to_string()], None)
        );
        // A catches up within the grace: still nothing.
        f.observe_playlist(A, Some(11), TARGET, None, t0 + secs(0.7));
        assert_eq!(
            f.plan(t0 + secs(1.6)),
            (vec![A.to_string(), B.to_string()], None)
        );
        // B ahead again, for half a target: A is behind, B preferred.
        f.observe_playlist(B, Some(12), TARGET, None, t0 + secs(2.5));
        let (order, switch) = f.plan(t0 + secs(3.5));
        assert_eq!(order, vec![B, A]);
        let reason = switch.expect("switch").reason;
        assert!(reason.contains("behind"), "{reason}");
        // A catches up: B stays active.
        f.observe_playlist(A, Some(12), TARGET, None, t0 + secs(3.6));
        assert_eq!(
            f.plan(t0 + secs(3.6)),
            (vec![B.to_string(), A.to_string()], None)
        );
    }

    #[test]
    fn a_frozen_playlist_goes_stale_after_one_and_a_half_targets() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(A, Some(10), TARGET, None, t0);
        f.observe_playlist(B, Some(10), TARGET, None, t0);
        f.plan(t0);
        // A keeps answering 200 with segment 10; B moves on.
        for k in 1..=4u64 {
            let now = t0 + secs(k as f64);
            f.observe_playlist(A, Some(10), TARGET, None, now);
            f.observe_playlist(B, Some(10 + k / 2), TARGET, None, now);
        }
        let health_of_a = |f: &Failover, at: f64| f.status(t0 + secs(at))[0].health;
        assert_eq!(
            health_of_a(&f, 2.9),
            PackagerHealth::Fresh,
            "not stale before 1.5 targets"
        );
        assert_eq!(health_of_a(&f, 3.1), PackagerHealth::Stale);
        let (order, switch) = f.plan(t0 + secs(3.1));
        assert_eq!(order[0], B);
        let reason = switch.expect("switch").reason;
        assert!(reason.contains("stale"), "{reason}");
        // Even equally fresh by number, a stale packager ranks after a fresh one.
        f.observe_playlist(A, Some(12), TARGET, None, t0 + secs(3.2));
        fail_in_a_row(&mut f, B, MediaKind::Playlist, "reset", t0 + secs(3.2));
        assert_eq!(f.plan(t0 + secs(3.4)).0[0], A, "a failing twin ranks below");
    }

    #[test]
    fn when_every_packager_is_frozen_none_is_called_stale() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(A, Some(10), TARGET, None, t0);
        f.observe_playlist(B, Some(10), TARGET, None, t0);
        f.plan(t0);
        let (order, switch) = f.plan(t0 + secs(30.0));
        assert_eq!(order[0], A);
        assert!(switch.is_none());
        assert!(f
            .status(t0 + secs(30.0))
            .iter()
            .all(|s| s.health == PackagerHealth::Fresh));
        assert_eq!(
            f.signal_health(t0 + secs(30.0)),
            ServingState::Up,
            "undated playlists: a stopped edge cannot be told"
        );
    }

    /// A dated read: the newest segment ended `lag` before the wall clock
    /// `wall` at which the playlist was read.
    fn edge(wall: SystemTime, lag: f64) -> Option<LiveEdge> {
        let newest_end = if lag >= 0.0 {
            wall - secs(lag)
        } else {
            wall + secs(-lag)
        };
        Some(LiveEdge {
            newest_end,
            read_at: wall,
        })
    }

    /// Both packagers read every half target from `t0` for `reads` reads,
    /// listing the same segment `newest(k)`, dated to end `lag(k)` s before
    /// the wall clock (one worker behind both packagers).
    fn read_both(
        f: &mut Failover,
        t0: Instant,
        wall0: SystemTime,
        reads: u32,
        newest: impl Fn(u32) -> u64,
        lag: impl Fn(u32) -> f64,
    ) {
        for k in 0..reads {
            let dt = secs(f64::from(k));
            for base in [A, B] {
                f.observe_playlist(
                    base,
                    Some(newest(k)),
                    TARGET,
                    edge(wall0 + dt, lag(k)),
                    t0 + dt,
                );
            }
        }
    }

    #[test]
    fn a_live_edge_that_keeps_up_with_the_wall_clock_is_fresh_and_the_signal_up() {
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        let mut f = both();
        f.plan(t0);
        // A new 2 s segment every other read: the edge lags 0.25 s, then 1.25 s.
        read_both(
            &mut f,
            t0,
            wall0,
            10,
            |k| 100 + u64::from(k / 2),
            |k| 0.25 + f64::from(k % 2),
        );
        let now = t0 + secs(9.5);
        let status = f.status(now);
        assert!(
            status.iter().all(|s| s.health == PackagerHealth::Fresh),
            "{status:?}"
        );
        assert_eq!(status[0].edge_ms_ago, Some(1750));
        assert_eq!(f.signal_health(now), ServingState::Up);
    }

    #[test]
    fn a_frozen_dated_playlist_is_stale_without_a_twin_ahead_and_the_signal_down() {
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        let mut f = both();
        f.plan(t0);
        // The worker behind both stops at t0: segment 50 (ended at wall0)
        // stays the newest, each read finds it one second older.
        read_both(&mut f, t0, wall0, 5, |_| 50, f64::from);
        let limit = (STALE_AFTER_TARGETS + CLOCK_SKEW_TARGETS) * TARGET.as_secs_f64()
            + WORKER_LATENCY.as_secs_f64();
        let just_before = t0 + secs(limit - 0.1);
        assert!(f
            .status(just_before)
            .iter()
            .all(|s| s.health == PackagerHealth::Fresh));
        assert_eq!(f.signal_health(just_before), ServingState::Up);
        let after = t0 + secs(limit + 0.1);
        assert!(f
            .status(after)
            .iter()
            .all(|s| s.health == PackagerHealth::Stale));
        assert_eq!(f.signal_health(after), ServingState::Down);
        // Between reads the age keeps growing on the monotonic clock.
        assert!(f
            .status(t0 + secs(30.0))
            .iter()
            .all(|s| s.health == PackagerHealth::Stale));
        let reason = f.reason_out(0, after).1;
        let age = format!("live edge {:.1} s old", limit + 0.1);
        assert!(reason.contains(&age), "{reason}");
        // The worker comes back: one read of a current edge makes them fresh.
        let back = t0 + secs(31.0);
        for base in [A, B] {
            f.observe_playlist(base, Some(60), TARGET, edge(wall0 + secs(31.0), 0.3), back);
        }
        assert_eq!(f.signal_health(back), ServingState::Up);
    }

    #[test]
    fn a_twin_whose_clock_is_behind_is_shown_behind_but_serves_when_alone() {
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        let mut f = both();
        f.plan(t0);
        // A's worker is on time; B's clock is 6 s behind: B lists each
        // segment 6 s (three segments) later, every date on the same grid.
        for k in 0..10u64 {
            let (now, wall) = (t0 + secs(2.0 * k as f64), wall0 + secs(2.0 * k as f64));
            f.observe_playlist(A, Some(100 + k), TARGET, edge(wall, 0.3), now);
            f.observe_playlist(B, Some(97 + k), TARGET, edge(wall, 6.3), now);
        }
        let now = t0 + secs(18.5);
        let status = f.status(now);
        assert_eq!(status[0].behind_twin_ms, Some(0));
        assert_eq!(status[1].behind_twin_ms, Some(6000), "B is 6 s behind A");
        assert_eq!(
            status[1].health,
            PackagerHealth::Fresh,
            "B advances: not stale"
        );
        assert_eq!(f.signal_health(now), ServingState::Up);
        // A's worker dies (its packager refuses): B, still advancing with its
        // old-looking dates, serves; the signal is degraded, never down.
        for k in 10..14u64 {
            let now = t0 + secs(2.0 * k as f64);
            f.observe_failure(A, MediaKind::Playlist, "connection refused", now);
            f.observe_playlist(
                B,
                Some(97 + k),
                TARGET,
                edge(wall0 + secs(2.0 * k as f64), 6.3),
                now,
            );
        }
        let now = t0 + secs(26.5);
        assert_eq!(f.status(now)[1].health, PackagerHealth::Fresh);
        assert_eq!(f.signal_health(now), ServingState::Degraded);
        assert_eq!(f.plan(now).0[0], B);
    }

    #[test]
    fn a_date_in_the_proxys_future_is_a_fresh_edge() {
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        let mut f = both();
        f.plan(t0);
        read_both(&mut f, t0, wall0, 1, |_| 7, |_| -1.5);
        assert_eq!(f.status(t0 + secs(4.0))[0].edge_ms_ago, Some(4000));
        assert_eq!(f.status(t0 + secs(4.0))[0].health, PackagerHealth::Fresh);
    }

    #[test]
    fn one_stopped_twin_degrades_the_signal() {
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        let mut f = both();
        f.plan(t0);
        read_both(&mut f, t0, wall0, 1, |_| 7, |_| 0.1);
        assert_eq!(f.signal_health(t0), ServingState::Up);
        fail_in_a_row(&mut f, B, MediaKind::Playlist, "connection refused", t0);
        assert_eq!(f.signal_health(t0 + secs(0.2)), ServingState::Degraded);
        // The active one failing too: down, though it is still what is served.
        fail_in_a_row(&mut f, A, MediaKind::Segment, "HTTP 500", t0);
        assert_eq!(f.signal_health(t0 + secs(0.2)), ServingState::Down);
    }

    #[test]
    fn an_ended_packager_gives_way_to_a_live_twin_and_ends_the_signal_last() {
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        let mut f = both();
        f.plan(t0);
        read_both(&mut f, t0, wall0, 1, |_| 7, |_| 0.1);
        assert_eq!(f.plan(t0).0[0], A);
        // A's input is removed: its playlist ends at segment 7 while B goes on.
        f.observe_end(A, true);
        let (order, switch) = f.plan(t0 + secs(0.1));
        assert_eq!(order, vec![B, A], "the live twin first");
        let switch = switch.expect("a switch away from the ended packager");
        assert_eq!(switch.kind, SwitchKind::Ended, "{switch:?}");
        assert!(switch.reason.contains("EXT-X-ENDLIST"), "{switch:?}");
        assert_eq!(f.status(t0)[0].health, PackagerHealth::Ended);
        assert_eq!(f.signal_health(t0 + secs(0.1)), ServingState::Degraded);
        assert!(f.has_fresh_twin(A, t0), "A's end must not reach viewers");
        assert!(!f.has_fresh_twin(B, t0));
        // Long after, A is still ended (not stale): ended ranks above stale.
        f.observe_playlist(
            B,
            Some(20),
            TARGET,
            edge(wall0 + secs(30.0), 0.1),
            t0 + secs(30.0),
        );
        assert_eq!(f.status(t0 + secs(30.0))[0].health, PackagerHealth::Ended);
        // B's stops too, with no end: A's end is what viewers get, and the
        // signal says ended rather than down.
        let late = t0 + secs(60.0);
        assert_eq!(f.status(late)[1].health, PackagerHealth::Stale);
        assert_eq!(
            f.plan(late).0[0],
            A,
            "the end of the stream before a frozen one"
        );
        assert_eq!(f.signal_health(late), ServingState::Ended);
        // B ends as well, further on: its end is served (newest first).
        f.observe_end(B, true);
        assert_eq!(f.plan(late).0[0], B);
        assert_eq!(f.signal_health(late), ServingState::Ended);
        // The input comes back behind A: a live playlist takes the end back.
        f.observe_playlist(
            A,
            Some(40),
            TARGET,
            edge(wall0 + secs(70.0), 0.1),
            t0 + secs(70.0),
        );
        f.observe_end(A, false);
        assert_eq!(f.status(t0 + secs(70.0))[0].health, PackagerHealth::Fresh);
        assert_eq!(f.plan(t0 + secs(70.0)).0[0], A);
        assert_eq!(f.signal_health(t0 + secs(70.0)), ServingState::Degraded);
    }

    #[test]
    fn before_any_playlist_the_signal_is_degraded_not_down() {
        let t0 = Instant::now();
        let mut f = both();
        f.plan(t0);
        assert_eq!(f.signal_health(t0), ServingState::Degraded);
        assert_eq!(Failover::new(&[]).signal_health(t0), ServingState::Down);
    }

    #[test]
    fn never_serves_an_older_playlist_than_one_already_served() {
        let mut f = both();
        assert!(f.admit_playlist(Some(20)));
        assert!(f.admit_playlist(Some(20)), "the same is fine");
        assert!(!f.admit_playlist(Some(19)));
        assert!(
            !f.admit_playlist(None),
            "an empty one would look like a regression"
        );
        assert!(f.admit_playlist(Some(21)));
    }

    #[test]
    fn route_changes_keep_what_is_known() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(B, Some(3), TARGET, None, t0);
        f.observe_failure(A, MediaKind::Segment, "reset", t0);
        f.plan(t0);
        f.set_packagers(&[B.to_string()]);
        let status = f.status(t0);
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].newest_sequence, Some(3));
        assert!(status[0].active);
    }

    #[test]
    fn losing_the_active_packager_from_the_routes_is_a_switch_with_its_reason() {
        let t0 = Instant::now();
        let mut f = both();
        f.plan(t0);
        f.set_packagers(&[B.to_string()]);
        let switch = f.plan(t0).1.expect("a switch");
        assert_eq!(switch.from.as_deref(), Some(A));
        assert_eq!(switch.to, B);
        assert_eq!(switch.kind, SwitchKind::Unrouted);
        assert!(
            switch.reason.contains("no longer reported"),
            "{}",
            switch.reason
        );
        assert!(f.plan(t0).1.is_none(), "reported once");
    }

    #[test]
    fn target_duration_is_learned_from_playlists() {
        let t0 = Instant::now();
        let mut f = both();
        f.observe_playlist(A, Some(1), Duration::from_secs(6), None, t0);
        assert_eq!(f.target_duration(), Duration::from_secs(6));
    }
}
