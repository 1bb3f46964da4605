//! The life of one viewer request, playlist or segment, as explicit decision
//! points (pingora's phases), read top to bottom in this one file: each one
//! answers "serve from memory?", "fetch at all?", "which packager next?",
//! "serve what arrived or retry elsewhere?" or "what when nobody is left?".
//!
//! ```text
//!  GET ─▶ route: the signal's state (Routing; its first request starts its poller)
//!          │
//!  playlist.m3u8 of a ladder ─▶ the multivariant playlist (renditions served somewhere)
//!  blocking reload (_HLS_msn/_HLS_part) ─▶ 400 if broken or too far; held until a
//!          packager's copy lists the part (the first, from any packager), else 503
//!  at hand? (segment cache / a copy current enough) ─yes─▶ 200
//!          │no
//!  segment or part ─▶ may_serve: listed? hinted (held until listed)? / read the
//!          playlist first / 404 (no packager asked)
//!          │
//!         one shared fetch per object (flight) ─▶ one retry loop, whatever the kind:
//!             pick_upstream ─▶ fetch (budgeted) ─ok─▶ admit ─yes─▶ 200
//!                  ▲                │error           │no (playlist older than served,
//!                  └── fetch_failed ◀┘◀───────────────┘     or ended while a twin is live)
//!             a low-latency segment or part silent past 1.5 part targets: the
//!             next packager asked too (hedge), the first admitted answer wins
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::budgets::{Budget, HEDGE_PARTS};
use super::cache::SegmentCache;
use super::flight::{Flights, Role};
use super::listed::Listing;
use super::metrics;
use super::refusal::Refusal;
use super::routing::{Lookup, Routing};
use super::signal::{Ladder, SignalState};
use super::steering::SteeringServer;
use super::stream::{lock, Copy, ServedPlaylist, StreamState};
use super::upstream::{self, FetchError, FetchedEntry};
use super::watch::Poller;
use crate::api::Switch;
use crate::hls::blocking::{hold_limit, BlockingReload};
use crate::hls::multivariant::Multivariant;
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
    /// Segment and part fetches in flight, by `signal/name`, shared by every
    /// viewer asking meanwhile.
    segment_flights: Flights<Result<Bytes, Refusal>>,
    /// Playlist fetches for viewers in flight, by `signal/name`.
    playlist_flights: Flights<Result<ServedPlaylist, Refusal>>,
    /// Content Steering's pathways, when configured: the multivariant
    /// playlists viewers get list every rendition once per edge.
    steering: Option<Arc<SteeringServer>>,
}

impl Requests {
    /// `cache_bytes`: most bytes of segments kept in memory.
    pub(super) fn new(
        client: reqwest::Client,
        routing: Arc<Routing>,
        poller: Poller,
        cache_bytes: usize,
        steering: Option<Arc<SteeringServer>>,
    ) -> Self {
        Requests {
            client,
            routing,
            poller,
            cache: Mutex::new(SegmentCache::new(cache_bytes)),
            segment_flights: Flights::default(),
            playlist_flights: Flights::default(),
            steering,
        }
    }

    /// A playlist request: the signal's `playlist.m3u8` (a ladder's
    /// multivariant playlist, or the media playlist of a single rendition)
    /// or one rendition's; held when it is a blocking reload.
    pub(super) async fn playlist(
        self: &Arc<Self>,
        signal: &str,
        file: &str,
        reload: Option<BlockingReload>,
    ) -> Result<ServedPlaylist, Refusal> {
        let state = self.route(signal).await?;
        state.touch();
        let ladder = state.ladder();
        if file == PLAYLIST_NAME {
            if let Some(ladder) = &ladder {
                return Ok(self.multivariant(signal, &state, ladder));
            }
        } else if !ladder.is_some_and(|l| l.multivariant.uris().any(|u| u == file)) {
            return Err(Refusal::NotFound(format!("{signal}/{file} not found")));
        }
        let stream = state.stream(file);
        match reload {
            Some(reload) => self.hold(signal, &state, &stream, reload).await,
            None => self.media_playlist(signal, &state, &stream).await,
        }
    }

    /// A ladder's multivariant playlist as viewers get it: the renditions
    /// some packager serves now (a rendition gone everywhere is left out,
    /// so no player loops on its 404), with the pathways of Content
    /// Steering when configured.
    fn multivariant(&self, signal: &str, state: &SignalState, ladder: &Ladder) -> ServedPlaylist {
        let now = Instant::now();
        let served: Vec<String> = state
            .streams()
            .iter()
            .filter(|s| s.is_served(now))
            .map(|s| s.name().to_string())
            .collect();
        let keep = |uri: &str| served.is_empty() || served.iter().any(|s| s == uri);
        let steering = self.steering.as_ref().map(|s| s.for_signal(signal));
        let body = ladder.multivariant.render(signal, keep, steering.as_ref());
        ServedPlaylist {
            body: PlaylistBody::new(body.into()),
            caching: PlaylistCaching::half_target(state.target_duration()),
            fetched: ladder.read_at,
            last_modified: ladder.last_modified,
        }
    }

    /// A media playlist: a copy current enough, else the fetch another
    /// viewer has in flight, else fetched from the packagers.
    async fn media_playlist(
        self: &Arc<Self>,
        signal: &str,
        state: &Arc<SignalState>,
        stream: &Arc<StreamState>,
    ) -> Result<ServedPlaylist, Refusal> {
        if let Some(served) = stream.at_hand(Instant::now()) {
            return Ok(served);
        }
        let key = format!("{signal}/{}", stream.name());
        let (requests, name) = (self.clone(), signal.to_string());
        let (state, stream) = (state.clone(), stream.clone());
        let (result, role) = self
            .playlist_flights
            .run(&key, move || async move {
                // A fetch that ended just before this one started left its copy.
                if let Some(served) = stream.at_hand(Instant::now()) {
                    return Ok(served);
                }
                if stream.name() != PLAYLIST_NAME && !stream.has_copies() {
                    // A rendition's first request: every packager at once,
                    // so the first viewer already gets the freshest copy.
                    requests.poller.read_every_packager(&name, &stream).await;
                    if let Some(served) = stream.at_hand(Instant::now()) {
                        return Ok(served);
                    }
                }
                let playlist = Playlist {
                    path: format!("{name}/{}", stream.name()),
                    signal: &state,
                };
                requests
                    .fetch_from_packagers(&name, &stream, &playlist)
                    .await
            })
            .await;
        collapsed(MediaKind::Playlist, role);
        result.unwrap_or_else(|| Err(lost_flight(&key)))
    }

    /// A blocking reload (low latency): refused at once when it asks more
    /// than two segments ahead; answered with the first copy, from any
    /// packager, listing the part it asks for (a packager a part behind its
    /// twin is passed over), held in memory at most three target durations
    /// (then 503). Held viewers share the packagers' copies: none of them
    /// makes an upstream request. A stream whose packagers cannot block is
    /// answered as a plain request.
    async fn hold(
        self: &Arc<Self>,
        signal: &str,
        state: &Arc<SignalState>,
        stream: &Arc<StreamState>,
        reload: BlockingReload,
    ) -> Result<ServedPlaylist, Refusal> {
        let facts = match stream.newest_facts() {
            Some(facts) => facts,
            None => {
                // Nothing read yet: a plain read first, then judge.
                let plain = self.media_playlist(signal, state, stream).await?;
                match stream.newest_facts() {
                    Some(facts) => facts,
                    None => return Ok(plain),
                }
            }
        };
        let blocks = facts
            .low_latency
            .as_ref()
            .is_some_and(|ll| ll.can_block_reload);
        if !blocks {
            return self.media_playlist(signal, state, stream).await;
        }
        reload
            .check_not_too_far(&facts)
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let limit = hold_limit(facts.target_duration);
        let asked = Instant::now();
        match stream.hold(reload, limit).await {
            Some(served) => {
                metrics::PROXY_HELD_SECONDS
                    .with_label_values(&[signal])
                    .observe(asked.elapsed().as_secs_f64());
                Ok(served)
            }
            None => {
                metrics::PROXY_HELD_TIMEOUTS
                    .with_label_values(&[signal])
                    .inc();
                Err(Refusal::NotYet(format!(
                    "{signal}/{}: segment {} part {:?} not listed within {} s",
                    stream.name(),
                    reload.msn,
                    reload.part,
                    limit.as_secs()
                )))
            }
        }
    }

    /// A segment or part request: from the cache; else 404 unless a
    /// packager listed it recently ([`Requests::may_serve`]); else the fetch
    /// another viewer has in flight for it; else fetched from the
    /// packagers that list it first, then cached.
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
        let stream = self.may_serve(signal, &state, file).await?;
        let (requests, name, flight_key) = (self.clone(), signal.to_string(), key.clone());
        let file = file.to_string();
        let (result, role) = self
            .segment_flights
            .run(&key, move || async move {
                // A fetch that ended just before this one started cached it.
                if let Some(body) = lock(&requests.cache).get(&flight_key) {
                    return Ok(body);
                }
                let segment = Segment {
                    key: &flight_key,
                    name: &file,
                    cache: &requests.cache,
                };
                requests
                    .fetch_from_packagers(&name, &stream, &segment)
                    .await
            })
            .await;
        collapsed(MediaKind::Segment, role);
        result.unwrap_or_else(|| Err(lost_flight(&key)))
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

    /// Decision 0, for a segment or part: may this name be served at all,
    /// and from which media playlist? Only if some packager listed it
    /// recently: so no viewer can make the proxy fetch names nobody
    /// published (nor make a packager look broken), whatever it asks.
    /// Refused with a 404, nothing fetched, no packager's health touched.
    ///
    /// The part a packager's playlist hints at as the next one (low
    /// latency: `EXT-X-PRELOAD-HINT`) is held until it is listed. Before
    /// judging any other name, the playlists are read (the shared viewer
    /// fetch, so at most a few reads a second whatever is asked) when
    /// nothing is known yet (a viewer resuming after a proxy restart), or
    /// when the name is one of the segments right after the newest this
    /// proxy read: behind a load balancer another proxy may already have
    /// served a playlist listing it. That read asks every packager, not the
    /// active one only, so a name a twin lists already is found there.
    async fn may_serve(
        self: &Arc<Self>,
        signal: &str,
        state: &Arc<SignalState>,
        file: &str,
    ) -> Result<Arc<StreamState>, Refusal> {
        if state.streams().is_empty() {
            // Nothing read yet: learn the signal's playlists first.
            let _ = self.playlist(signal, PLAYLIST_NAME, None).await;
        }
        let now = Instant::now();
        let mut read_first = Vec::new();
        for stream in state.streams() {
            match stream.listing(file, now) {
                Listing::Listed => return Ok(stream),
                Listing::ReadFirst => read_first.push(stream),
                Listing::Unlisted => {}
            }
        }
        for stream in state.streams() {
            if stream.hints(file) {
                let target = stream.target_duration();
                let listed = stream.hold_until_listed(file, hold_limit(target)).await;
                if listed {
                    return Ok(stream);
                }
            }
        }
        for stream in read_first {
            // Its failures show in the answer below.
            self.poller.read_every_packager(signal, &stream).await;
            if stream.listing(file, Instant::now()) == Listing::Listed {
                return Ok(stream);
            }
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
        stream: &StreamState,
        object: &O,
    ) -> Result<O::Served, Refusal> {
        let mut attempt = Attempt::new(signal, stream, O::KIND);
        // Cleared once a hedge finds nobody left to ask.
        let mut hedge_after = object.hedge_after(stream);
        let mut in_flight = FuturesUnordered::new();
        let fetch = |pick: Pick| {
            let url = pick.url(object.path());
            async move {
                let fetched = O::fetch(&self.client, &url, pick.budget).await;
                (pick, fetched)
            }
        };
        loop {
            if in_flight.is_empty() {
                match attempt.pick_upstream(|order| object.order(stream, order)) {
                    Some(pick) => in_flight.push(fetch(pick)),
                    None => break,
                }
            }
            // Decision 2b, hedge: a packager silent past the hedge delay is
            // kept waiting while the next one is asked too; the first
            // answer admitted is served, the other fetch is dropped.
            let done = match hedge_after {
                Some(delay) => match tokio::time::timeout(delay, in_flight.next()).await {
                    Ok(done) => done,
                    Err(_) => {
                        match attempt.pick_upstream(|order| object.order(stream, order)) {
                            Some(pick) => {
                                hedged(signal, &pick, delay);
                                in_flight.push(fetch(pick));
                            }
                            None => hedge_after = None,
                        }
                        continue;
                    }
                },
                None => in_flight.next().await,
            };
            let Some((pick, fetched)) = done else {
                continue;
            };
            match fetched {
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

/// Logs and counts a hedged fetch: `pick` asked because the packager asked
/// before it was silent for `delay`.
fn hedged(signal: &str, pick: &Pick, delay: Duration) {
    log::debug!(
        "Signal '{signal}': no answer within {} ms; asking {} too",
        delay.as_millis(),
        pick.base
    );
    metrics::PROXY_HEDGED_FETCHES
        .with_label_values(&[pick.base.as_str()])
        .inc();
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

    /// The packagers in the order they are tried, from the failover plan's.
    fn order(&self, _stream: &StreamState, plan: Vec<String>) -> Vec<String> {
        plan
    }

    /// How long a packager may stay silent before the next one is asked
    /// too (a hedged fetch); `None`: one packager at a time.
    fn hedge_after(&self, _stream: &StreamState) -> Option<Duration> {
        None
    }

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

/// A media playlist (or the signal's `playlist.m3u8`, which may turn out to
/// be a ladder's multivariant playlist).
struct Playlist<'a> {
    path: String,
    signal: &'a SignalState,
}

impl Object for Playlist<'_> {
    type Fetched = FetchedEntry;
    type Served = ServedPlaylist;
    const KIND: MediaKind = MediaKind::Playlist;

    fn path(&self) -> &str {
        &self.path
    }

    fn fetch(
        client: &reqwest::Client,
        url: &str,
        budget: Budget,
    ) -> impl Future<Output = Result<FetchedEntry, FetchError>> + Send {
        upstream::fetch_entry(client, url, budget)
    }

    /// A media playlist arrived: it is observed (freshness) and served only
    /// if its live edge is not behind a copy already served, so a viewer
    /// never goes back in time across a switch, and only if it does not end
    /// the stream while another packager is fresh (one host's input removed
    /// must not stop viewers). A multivariant playlist where the signal's
    /// playlist was asked makes the signal a ladder; anywhere else it is
    /// not what was asked for.
    fn admit(
        &self,
        attempt: &Attempt<'_>,
        pick: &Pick,
        fetched: FetchedEntry,
    ) -> Option<ServedPlaylist> {
        let now = Instant::now();
        let fetched = match fetched {
            FetchedEntry::Media(fetched) => fetched,
            FetchedEntry::Multivariant(multivariant, last_modified) => {
                return self.ladder_found(attempt, multivariant, last_modified);
            }
        };
        let copy = Copy::new(fetched.body, fetched.facts, fetched.last_modified);
        let served = copy.served.clone();
        if !attempt.stream.observe_and_admit(&pick.base, copy, now) {
            log::debug!(
                "Signal '{}': {} is behind what was served, or ended while another is fresh; trying another",
                attempt.signal,
                pick.base
            );
            return None;
        }
        Some(served)
    }

    /// Nobody gave a playlist: the last good copy while it is at most one
    /// target duration old (a viewer reloading finds nothing new, which
    /// players ride out), else 502.
    fn exhausted(&self, attempt: &Attempt<'_>) -> Result<ServedPlaylist, Refusal> {
        if let Some(served) = attempt.stream.last_good_within_target() {
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
            "no packager could serve {}",
            self.path
        )))
    }
}

impl Playlist<'_> {
    /// The signal's playlist is a ladder's multivariant playlist: the signal
    /// learns its renditions, and the viewer gets it as the ladder's.
    fn ladder_found(
        &self,
        attempt: &Attempt<'_>,
        multivariant: Multivariant,
        last_modified: Option<std::time::SystemTime>,
    ) -> Option<ServedPlaylist> {
        if attempt.stream.name() != PLAYLIST_NAME {
            return None;
        }
        log::info!(
            "Signal '{}': a ladder of {}",
            attempt.signal,
            multivariant.uris().collect::<Vec<_>>().join(", ")
        );
        let body = multivariant.render(attempt.signal, |_| true, None);
        self.signal.set_ladder(multivariant, last_modified);
        Some(ServedPlaylist {
            body: PlaylistBody::new(body.into()),
            caching: PlaylistCaching::half_target(Duration::from_secs(2)),
            fetched: Instant::now(),
            last_modified: last_modified.unwrap_or_else(std::time::SystemTime::now),
        })
    }
}

/// One segment or part, kept in the cache once fetched.
struct Segment<'a> {
    /// `<signal>/<name>`.
    key: &'a str,
    /// Its file name.
    name: &'a str,
    cache: &'a Mutex<SegmentCache>,
}

impl Object for Segment<'_> {
    type Fetched = Bytes;
    type Served = Bytes;
    const KIND: MediaKind = MediaKind::Segment;

    fn path(&self) -> &str {
        self.key
    }

    /// The packagers whose latest copy lists it first: a part a lagging
    /// packager has not cut yet is asked of its twin, not answered 404.
    fn order(&self, stream: &StreamState, plan: Vec<String>) -> Vec<String> {
        stream.listing_first(self.name, plan)
    }

    /// In a low-latency stream, [`HEDGE_PARTS`] part targets: a packager
    /// holds a hinted part at most one part target before it exists, so one
    /// silent longer is slow, and a viewer about three parts behind live
    /// cannot wait out a whole first-byte budget.
    fn hedge_after(&self, stream: &StreamState) -> Option<Duration> {
        stream.part_target().map(|part| part.mul_f64(HEDGE_PARTS))
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
        attempt.stream.observe_segment(&pick.base);
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

/// One viewer request for one media playlist of a signal (or its segment):
/// which packagers it has tried and what they said.
pub(super) struct Attempt<'a> {
    signal: &'a str,
    stream: &'a StreamState,
    /// What is fetched (failures are counted per kind).
    kind: MediaKind,
    /// Packagers already tried in this request; each is tried once.
    tried: Vec<String>,
    /// Whether every packager tried answered 404 (then the viewer gets 404,
    /// not 502: the object does not exist, nothing is down).
    all_not_found: bool,
}

impl<'a> Attempt<'a> {
    fn new(signal: &'a str, stream: &'a StreamState, kind: MediaKind) -> Self {
        Attempt {
            signal,
            stream,
            kind,
            tried: Vec::new(),
            all_not_found: true,
        }
    }

    /// Decision 1, pick a packager: the best not yet tried in this request,
    /// by a fresh plan of the failover state (a switch that plan makes is
    /// logged, counted and recorded here). `None` when every packager has
    /// been tried.
    fn pick_upstream(&mut self, order_for: impl Fn(Vec<String>) -> Vec<String>) -> Option<Pick> {
        let (plan, switch, target) = self.stream.plan(Instant::now());
        if let Some(switch) = switch {
            switched(self.signal, self.stream, switch);
        }
        let order = order_for(plan);
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
        self.stream
            .observe_failure(&pick.base, self.kind, &error.to_string());
    }
}

/// Logs, counts and remembers (for `GET /status`) a change of active
/// packager.
fn switched(signal: &str, stream: &StreamState, switch: Switch) {
    metrics::PROXY_SWITCHES
        .with_label_values(&[signal, switch.kind.name()])
        .inc();
    match &switch.from {
        Some(from) => log::info!(
            "Signal '{signal}'{}: switching from {from} to {} ({})",
            rendition(stream),
            switch.to,
            switch.reason
        ),
        None => log::info!(
            "Signal '{signal}'{}: serving from {}",
            rendition(stream),
            switch.to
        ),
    }
    let at = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    stream.record_switch(at, switch);
}

/// ` (720p.m3u8)` in a log line about a ladder's rendition; nothing for a
/// single rendition's `playlist.m3u8`.
fn rendition(stream: &StreamState) -> String {
    if stream.name() == PLAYLIST_NAME {
        String::new()
    } else {
        format!(" ({})", stream.name())
    }
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
fn lost_flight(what: &str) -> Refusal {
    log::error!("The fetch of {what} ended without a result");
    Refusal::Unavailable(format!("no packager could serve {what}"))
}
