//! The life of one viewer request, playlist or segment, as explicit decision
//! points (pingora's phases), read top to bottom in this one file: each one
//! answers "serve from memory?", "fetch at all?", "which packager next?",
//! "serve what arrived or retry elsewhere?" or "what when nobody is left?".
//!
//! ```text
//!  GET ─▶ at hand? (segment cache / playlist fetched < PLAYLIST_REUSE ago) ─yes─▶ 200
//!          │no
//!         route: the signal's state (Routing; its first request starts its poller)
//!          │
//!  segment ─▶ may_serve: listed? / read the playlist first / 404 (no packager asked)
//!          │
//!         one shared fetch per object (flight) ─▶ one retry loop, whatever the kind:
//!             pick_upstream ─▶ fetch (budgeted) ─ok─▶ admit ─yes─▶ 200
//!                  ▲                │error           │no (playlist older than served,
//!                  └── fetch_failed ◀┘◀───────────────┘     or ended while a twin is live)
//!             nobody left ─▶ exhausted: the last good playlist (at most one
//!                            target old), 404 when every packager said 404, else 502
//! ```
//!
//! What differs between a playlist and a segment (how it is fetched, when
//! it is admitted, what is left when nobody gave it) is an [`Object`]; the
//! loop is written once.
//!
//! Only the proxy's own evidence moves a packager's health: a fetch it made
//! for a name some packager listed. A failed fetch counts towards the
//! packager's consecutive failures ([`FAILING_AFTER`] make it failing), and
//! is retried on the next packager in any case: every fetch is an idempotent
//! GET, so every failure is safe to retry within the same viewer request,
//! and the viewer never sees it. The pure state machine deciding the order
//! ([`Failover`]) sits beside this file; this one turns its answers into
//! fetches, and logs, counts and records the switches its plans make.
//!
//! [`Failover`]: super::failover::Failover
//! [`FAILING_AFTER`]: super::failover::FAILING_AFTER

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::budgets::Budget;
use super::cache::SegmentCache;
use super::flight::{Flights, Role};
use super::listed::Listing;
use super::metrics;
use super::refusal::Refusal;
use super::routing::{Lookup, Routing};
use super::signal::{lock, ServedPlaylist, SignalState};
use super::upstream::{self, FetchError, FetchedPlaylist};
use super::watch::Poller;
use crate::api::Switch;
use crate::hls::{MediaKind, PLAYLIST_NAME};
use crate::net::delivery::{PlaylistBody, PlaylistCaching};
use crate::service::metrics::kind_label;

/// What every viewer request's life uses: the routes, the segment cache and
/// the fetches in flight that concurrent viewers share.
pub(super) struct Requests {
    client: reqwest::Client,
    routing: Arc<Routing>,
    /// Started on a signal's first request.
    poller: Poller,
    cache: Mutex<SegmentCache>,
    /// Segment fetches in flight, by `signal/name`, shared by every viewer
    /// asking meanwhile.
    segment_flights: Flights<Result<Bytes, Refusal>>,
    /// Playlist fetches for viewers in flight, by signal.
    playlist_flights: Flights<Result<ServedPlaylist, Refusal>>,
}

impl Requests {
    /// `cache_bytes`: most bytes of segments kept in memory.
    pub(super) fn new(
        client: reqwest::Client,
        routing: Arc<Routing>,
        poller: Poller,
        cache_bytes: usize,
    ) -> Self {
        Requests {
            client,
            routing,
            poller,
            cache: Mutex::new(SegmentCache::new(cache_bytes)),
            segment_flights: Flights::default(),
            playlist_flights: Flights::default(),
        }
    }

    /// A playlist request: reused if fetched a moment ago, else the fetch
    /// another viewer has in flight, else fetched from the packagers.
    pub(super) async fn playlist(
        self: &Arc<Self>,
        signal: &str,
    ) -> Result<ServedPlaylist, Refusal> {
        let state = self.route(signal).await?;
        state.touch();
        if let Some(served) = state.reusable_playlist() {
            return Ok(served);
        }
        let (requests, name) = (self.clone(), signal.to_string());
        let (result, role) = self
            .playlist_flights
            .run(signal, move || async move {
                // A fetch that ended just before this one started left its playlist.
                if let Some(served) = state.reusable_playlist() {
                    return Ok(served);
                }
                let playlist = Playlist {
                    path: format!("{name}/{PLAYLIST_NAME}"),
                };
                requests
                    .fetch_from_packagers(&name, &state, &playlist)
                    .await
            })
            .await;
        collapsed(MediaKind::Playlist, role);
        result.unwrap_or_else(|| Err(lost_flight(signal, PLAYLIST_NAME)))
    }

    /// A segment request: from the cache; else 404 unless a packager listed
    /// it recently ([`Requests::may_serve`]); else the fetch another viewer
    /// has in flight for it; else fetched from the packagers, then cached.
    pub(super) async fn segment(
        self: &Arc<Self>,
        signal: &str,
        file: &str,
    ) -> Result<Bytes, Refusal> {
        let key = format!("{signal}/{file}");
        if let Some(body) = lock(&self.cache).get(&key) {
            return Ok(body);
        }
        let state = self.route(signal).await?;
        self.may_serve(signal, &state, file).await?;
        let (requests, name, flight_key) = (self.clone(), signal.to_string(), key.clone());
        let (result, role) = self
            .segment_flights
            .run(&key, move || async move {
                // A fetch that ended just before this one started cached it.
                if let Some(body) = lock(&requests.cache).get(&flight_key) {
                    return Ok(body);
                }
                let segment = Segment {
                    key: &flight_key,
                    cache: &requests.cache,
                };
                requests.fetch_from_packagers(&name, &state, &segment).await
            })
            .await;
        collapsed(MediaKind::Segment, role);
        result.unwrap_or_else(|| Err(lost_flight(signal, file)))
    }

    /// The signal's state, from the routing; a signal seen for the first
    /// time starts being watched.
    async fn route(&self, signal: &str) -> Result<Arc<SignalState>, Refusal> {
        match self.routing.lookup(signal).await? {
            Lookup::Known(state) => Ok(state),
            Lookup::New(state) => {
                self.poller.start(signal, state.clone());
                Ok(state)
            }
        }
    }

    /// Decision 0, for a segment: may this name be served at all? Only if
    /// some packager listed it recently: so no viewer can make the proxy
    /// fetch names nobody published (nor make a packager look broken),
    /// whatever it asks. Refused with a 404, nothing fetched, no packager's
    /// health touched.
    ///
    /// Before judging, the playlist is read (the shared, [`PLAYLIST_REUSE`]
    /// reused viewer fetch, so at most a few reads a second whatever is
    /// asked) when nothing is known yet (a viewer resuming after a proxy
    /// restart), or when the name is one of the segments right after the
    /// newest this proxy read: behind a load balancer another proxy may
    /// already have served a playlist listing it.
    ///
    /// [`PLAYLIST_REUSE`]: super::budgets::PLAYLIST_REUSE
    async fn may_serve(
        self: &Arc<Self>,
        signal: &str,
        state: &SignalState,
        file: &str,
    ) -> Result<(), Refusal> {
        match state.listing(file, Instant::now()) {
            Listing::Listed => return Ok(()),
            // Its failures show in the answer below.
            Listing::ReadFirst => {
                let _ = self.playlist(signal).await;
            }
            Listing::Unlisted => {}
        }
        if state.listing(file, Instant::now()) == Listing::Listed {
            return Ok(());
        }
        log::debug!("Signal '{signal}': {file} is listed by no packager; 404 without a fetch");
        metrics::PROXY_UNLISTED_SEGMENTS
            .with_label_values(&[signal])
            .inc();
        Err(Refusal::NotFound(format!("{signal}/{file} not found")))
    }

    /// The one retry loop, for every viewer waiting on this object: the best
    /// packager not tried yet, a budgeted fetch, then the object admits what
    /// arrived or the next packager is tried; when nobody is left, the
    /// object says what the viewer gets.
    async fn fetch_from_packagers<O: Object>(
        &self,
        signal: &str,
        state: &SignalState,
        object: &O,
    ) -> Result<O::Served, Refusal> {
        let mut attempt = Attempt::new(signal, state, O::KIND);
        while let Some(pick) = attempt.pick_upstream() {
            match O::fetch(&self.client, &pick.url(object.path()), pick.budget).await {
                Ok(fetched) => {
                    if let Some(served) = object.admit(&attempt, &pick, fetched) {
                        return Ok(served);
                    }
                }
                Err(e) => attempt.fetch_failed(&pick, &e),
            }
        }
        object.exhausted(&attempt)
    }
}

/// What a viewer request fetches, and how what arrives is judged: the only
/// places a playlist and a segment differ in [`Requests::fetch_from_packagers`].
trait Object: Sync {
    /// What a packager gives.
    type Fetched: Send;
    /// What the viewer gets.
    type Served;
    /// Failures are counted per kind.
    const KIND: MediaKind;

    /// `<signal>/<name>`, on any packager.
    fn path(&self) -> &str;

    /// One budgeted GET from a packager.
    fn fetch(
        client: &reqwest::Client,
        url: &str,
        budget: Budget,
    ) -> impl Future<Output = Result<Self::Fetched, FetchError>> + Send;

    /// Decision 3: what arrived is served, or `None` to try another packager.
    fn admit(
        &self,
        attempt: &Attempt<'_>,
        pick: &Pick,
        fetched: Self::Fetched,
    ) -> Option<Self::Served>;

    /// Decision 4: every packager was tried.
    fn exhausted(&self, attempt: &Attempt<'_>) -> Result<Self::Served, Refusal>;
}

/// A signal's media playlist.
struct Playlist {
    path: String,
}

impl Object for Playlist {
    type Fetched = FetchedPlaylist;
    type Served = ServedPlaylist;
    const KIND: MediaKind = MediaKind::Playlist;

    fn path(&self) -> &str {
        &self.path
    }

    fn fetch(
        client: &reqwest::Client,
        url: &str,
        budget: Budget,
    ) -> impl Future<Output = Result<FetchedPlaylist, FetchError>> + Send {
        upstream::fetch_playlist(client, url, budget)
    }

    /// A playlist arrived: it is observed (freshness) and served only if its
    /// newest segment is not older than one already served for the signal,
    /// so a viewer never goes back in time across a switch, and only if it
    /// does not end the stream while another packager is fresh (one host's
    /// input removed must not stop viewers).
    fn admit(
        &self,
        attempt: &Attempt<'_>,
        pick: &Pick,
        fetched: FetchedPlaylist,
    ) -> Option<ServedPlaylist> {
        let now = Instant::now();
        if !attempt
            .state
            .observe_and_admit(&pick.base, &fetched.facts, now)
        {
            log::debug!(
                "Signal '{}': {} is behind what was served, or ended while another is fresh; trying another",
                attempt.signal,
                pick.base
            );
            return None;
        }
        let served = ServedPlaylist {
            body: PlaylistBody::new(fetched.body),
            caching: PlaylistCaching::half_target(fetched.facts.target_duration),
            fetched: now,
            last_modified: fetched.last_modified.unwrap_or_else(SystemTime::now),
        };
        attempt.state.remember_playlist(served.clone());
        Some(served)
    }

    /// Nobody gave a playlist: the last good copy while it is at most one
    /// target duration old (a viewer reloading finds nothing new, which
    /// players ride out), else 502.
    fn exhausted(&self, attempt: &Attempt<'_>) -> Result<ServedPlaylist, Refusal> {
        if let Some(served) = attempt.state.last_good_within_target() {
            log::warn!(
                "Signal '{}': no packager answered, serving the last good playlist",
                attempt.signal
            );
            metrics::PROXY_FALLBACK_PLAYLISTS
                .with_label_values(&[attempt.signal])
                .inc();
            return Ok(served);
        }
        Err(Refusal::Unavailable(format!(
            "no packager could serve {}/{PLAYLIST_NAME}",
            attempt.signal
        )))
    }
}

/// One segment, kept in the cache once fetched.
struct Segment<'a> {
    /// `<signal>/<name>`.
    key: &'a str,
    cache: &'a Mutex<SegmentCache>,
}

impl Object for Segment<'_> {
    type Fetched = Bytes;
    type Served = Bytes;
    const KIND: MediaKind = MediaKind::Segment;

    fn path(&self) -> &str {
        self.key
    }

    fn fetch(
        client: &reqwest::Client,
        url: &str,
        budget: Budget,
    ) -> impl Future<Output = Result<Bytes, FetchError>> + Send {
        upstream::fetch_segment(client, url, budget)
    }

    /// A segment arrived whole: served and cached, and the packager's
    /// segment failures so far were blips.
    fn admit(&self, attempt: &Attempt<'_>, pick: &Pick, body: Bytes) -> Option<Bytes> {
        attempt.state.observe_segment(&pick.base);
        lock(self.cache).insert(self.key.to_string(), body.clone(), Instant::now());
        Some(body)
    }

    /// 404 when every packager said it does not exist, else 502.
    fn exhausted(&self, attempt: &Attempt<'_>) -> Result<Bytes, Refusal> {
        Err(if attempt.all_not_found && !attempt.tried.is_empty() {
            Refusal::NotFound(format!("{} not found", self.key))
        } else {
            Refusal::Unavailable(format!("no packager could serve {}", self.key))
        })
    }
}

/// A packager picked for one try: its base URL and the budget for the fetch.
pub(super) struct Pick {
    pub base: String,
    pub budget: Budget,
}

impl Pick {
    /// `<base>/<path>` on this packager.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

/// One viewer request for one signal: which packagers it has tried and what
/// they said.
pub(super) struct Attempt<'a> {
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
    fn new(signal: &'a str, state: &'a SignalState, kind: MediaKind) -> Self {
        Attempt {
            signal,
            state,
            kind,
            tried: Vec::new(),
            all_not_found: true,
        }
    }

    /// Decision 1, pick a packager: the best not yet tried in this request,
    /// by a fresh plan of the failover state (a switch that plan makes is
    /// logged, counted and recorded here). `None` when every packager has
    /// been tried.
    fn pick_upstream(&mut self) -> Option<Pick> {
        let (order, switch, target) = self.state.plan(Instant::now());
        if let Some(switch) = switch {
            switched(self.signal, self.state, switch);
        }
        let base = order.into_iter().find(|b| !self.tried.contains(b))?;
        self.tried.push(base.clone());
        Some(Pick {
            base,
            budget: Budget::for_target(target),
        })
    }

    /// Decision 2, a fetch failed (connect failed, no answer in budget, an
    /// error status, a cut or invalid body): one more failure in a row for
    /// the packager (failing after [`FAILING_AFTER`], so one blip moves no
    /// traffic) and the request goes on to the next one regardless.
    ///
    /// [`FAILING_AFTER`]: super::failover::FAILING_AFTER
    fn fetch_failed(&mut self, pick: &Pick, error: &FetchError) {
        self.all_not_found &= error.is_not_found();
        log::warn!(
            "Signal '{}': {} failed: {error}; trying another packager",
            self.signal,
            pick.base
        );
        metrics::PROXY_UPSTREAM_FAILURES
            .with_label_values(&[pick.base.as_str(), error.kind()])
            .inc();
        self.state
            .observe_failure(&pick.base, self.kind, &error.to_string());
    }
}

/// Logs, counts and remembers (for `GET /status`) a change of active
/// packager.
fn switched(signal: &str, state: &SignalState, switch: Switch) {
    metrics::PROXY_SWITCHES
        .with_label_values(&[signal, switch.kind.name()])
        .inc();
    match &switch.from {
        Some(from) => log::info!(
            "Signal '{signal}': switching from {from} to {} ({})",
            switch.to,
            switch.reason
        ),
        None => log::info!("Signal '{signal}': serving from {}", switch.to),
    }
    let at = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    state.record_switch(at, switch);
}

/// Counts a request that shared another's fetch.
fn collapsed(kind: MediaKind, role: Role) {
    if role == Role::Joined {
        metrics::PROXY_COLLAPSED_REQUESTS
            .with_label_values(&[kind_label(kind)])
            .inc();
    }
}

/// The refusal when a shared fetch's task died (a bug): the viewer retries.
fn lost_flight(signal: &str, file: &str) -> Refusal {
    log::error!("Signal '{signal}': the fetch of {file} ended without a result");
    Refusal::Unavailable(format!("no packager could serve {signal}/{file}"))
}
