//! The life of one viewer request, as explicit decision points (pingora's
//! style): each one answers "fetch at all?", "which packager next?" or
//! "retry elsewhere or not?", so failover reads top to bottom in one place.
//!
//! ```text
//!  segment GET ─▶ refuse_unlisted ─yes─▶ 404 (no packager asked)
//!                    │no
//!  viewer GET ─▶ pick_upstream ─▶ fetch (budgeted) ─ok─▶ admit_playlist ─yes─▶ 200
//!                   ▲                  │error             / admit_segment
//!                   └─── fetch_failed ◀┘◀─────────────────────┘no (older than served)
//!  nobody left ─▶ exhausted: the last good playlist (at most one target old),
//!                 404 when every packager said 404, else 502
//! ```
//!
//! Only the proxy's own evidence moves a packager's health: a fetch it made
//! for a name some packager listed. A failed fetch counts towards the
//! packager's consecutive failures ([`FAILING_AFTER`] make it failing), and
//! is retried on the next packager in any case.
//!
//! The pure state machine deciding the order ([`Failover`]) sits beside this
//! file; this one turns its answers into fetches. Every fetch is an
//! idempotent GET, so every failure is safe to retry on another packager
//! within the same viewer request: the viewer never sees the failure.
//!
//! [`Failover`]: super::failover::Failover
//! [`FAILING_AFTER`]: super::failover::FAILING_AFTER

use std::time::{Duration, Instant, SystemTime};

use super::metrics;
use super::signal::{ServedPlaylist, SignalState};
use super::upstream::{Budget, FetchError, FetchedPlaylist};
use super::{Proxy, Refusal, BODY_TARGETS, FIRST_BYTE_TARGETS};
use crate::hls::{MediaKind, PLAYLIST_NAME};
use crate::net::delivery::{PlaylistBody, PlaylistCaching};

/// A packager picked for one try: its base URL and the budget for the fetch.
pub struct Upstream {
    pub base: String,
    pub budget: Budget,
}

impl Upstream {
    /// `<base>/<path>` on this packager.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

/// The time allowed to a fetch, in target durations.
pub fn budget(target: Duration) -> Budget {
    Budget {
        first_byte: target.mul_f64(FIRST_BYTE_TARGETS),
        body: target.mul_f64(BODY_TARGETS),
    }
}

/// Decision 0, for a segment: refused (404, nothing fetched, no packager's
/// health touched) unless some packager listed its name recently. So no
/// viewer can make the proxy fetch names nobody published, whatever it asks.
pub fn refuse_unlisted(signal: &str, state: &SignalState, file: &str) -> Option<Refusal> {
    if state.is_listed(file, Instant::now()) {
        return None;
    }
    log::debug!("Signal '{signal}': {file} is listed by no packager; 404 without a fetch");
    metrics::PROXY_UNLISTED_SEGMENTS
        .with_label_values(&[signal])
        .inc();
    Some(Refusal::NotFound(format!("{signal}/{file} not found")))
}

/// One viewer request for one signal: which packagers it has tried and what
/// they said.
pub struct Attempt<'a> {
    proxy: &'a Proxy,
    signal: &'a str,
    state: &'a SignalState,
    /// What is fetched (failures are counted per kind).
    kind: MediaKind,
    /// Packagers already tried in this request; each is tried once.
    tried: Vec<String>,
    /// Whether every packager tried answered 404 (then the viewer gets 404,
    /// not 502: the object does not exist, nothing is down).
    all_not_found: bool,
}

impl<'a> Attempt<'a> {
    pub fn new(proxy: &'a Proxy, signal: &'a str, state: &'a SignalState, kind: MediaKind) -> Self {
        Attempt {
            proxy,
            signal,
            state,
            kind,
            tried: Vec::new(),
            all_not_found: true,
        }
    }

    /// Decision 1, pick a packager: the best not yet tried in this request,
    /// by a fresh plan of the failover state (which records a switch when
    /// the best one changed). `None` when every packager has been tried.
    pub fn pick_upstream(&mut self) -> Option<Upstream> {
        let (order, switch, target) = self.state.plan(Instant::now());
        if let Some(switch) = switch {
            self.proxy.record_switch(self.signal, self.state, switch);
        }
        let base = order.into_iter().find(|b| !self.tried.contains(b))?;
        self.tried.push(base.clone());
        Some(Upstream {
            base,
            budget: budget(target),
        })
    }

    /// Decision 2, a fetch failed (connect failed, no answer in budget, an
    /// error status, a cut or invalid body): one more failure in a row for
    /// the packager (failing after [`FAILING_AFTER`], so one blip moves no
    /// traffic) and the request goes on to the next one regardless.
    ///
    /// [`FAILING_AFTER`]: super::failover::FAILING_AFTER
    pub fn fetch_failed(&mut self, upstream: &Upstream, error: &FetchError) {
        self.all_not_found &= error.is_not_found();
        log::warn!(
            "Signal '{}': {} failed: {error}; trying another packager",
            self.signal,
            upstream.base
        );
        metrics::PROXY_UPSTREAM_FAILURES
            .with_label_values(&[upstream.base.as_str(), error.kind()])
            .inc();
        self.state
            .observe_failure(&upstream.base, self.kind, &error.to_string());
    }

    /// Decision 3 for a segment, it arrived whole: served, and the
    /// packager's segment failures so far were blips.
    pub fn admit_segment(&mut self, upstream: &Upstream) {
        self.state.observe_segment(&upstream.base);
    }

    /// Decision 3, a playlist arrived: it is observed (freshness) and served
    /// only if its newest segment is not older than one already served for
    /// the signal, so a viewer never goes back in time across a switch, and
    /// only if it does not end the stream while another packager is fresh
    /// (one host's input removed must not stop viewers).
    pub fn admit_playlist(
        &mut self,
        upstream: &Upstream,
        fetched: FetchedPlaylist,
    ) -> Option<ServedPlaylist> {
        let now = Instant::now();
        if !self
            .state
            .observe_and_admit(&upstream.base, &fetched.facts, now)
        {
            log::debug!(
                "Signal '{}': {} is behind what was served, or ended while another is fresh; trying another",
                self.signal,
                upstream.base
            );
            return None;
        }
        let served = ServedPlaylist {
            body: PlaylistBody::new(fetched.body),
            caching: PlaylistCaching::half_target(fetched.facts.target_duration),
            fetched: now,
            last_modified: fetched.last_modified.unwrap_or_else(SystemTime::now),
        };
        self.state.remember_playlist(served.clone());
        Some(served)
    }

    /// Decision 4, nobody gave a playlist: the last good copy while it is at
    /// most one target duration old (a viewer reloading finds nothing new,
    /// which players ride out), else 502.
    pub fn playlist_exhausted(self) -> Result<ServedPlaylist, Refusal> {
        if let Some(served) = self.state.last_good_within_target() {
            log::warn!(
                "Signal '{}': no packager answered, serving the last good playlist",
                self.signal
            );
            metrics::PROXY_FALLBACK_PLAYLISTS
                .with_label_values(&[self.signal])
                .inc();
            return Ok(served);
        }
        Err(Refusal::Unavailable(format!(
            "no packager could serve {}/{PLAYLIST_NAME}",
            self.signal
        )))
    }

    /// Decision 4 for a segment: 404 when every packager said it does not
    /// exist, else 502.
    pub fn segment_exhausted(self, key: &str) -> Refusal {
        if self.all_not_found && !self.tried.is_empty() {
            Refusal::NotFound(format!("{key} not found"))
        } else {
            Refusal::Unavailable(format!("no packager could serve {key}"))
        }
    }
}
