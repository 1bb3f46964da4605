//! The proxy: the only thing a player talks to. `GET /<signal>/playlist.m3u8`
//! and `GET /<signal>/<segment>.ts` are reverse-proxied (never redirected) from
//! the packager the failover state machine picks, and retried on the next one
//! within the same viewer request when a packager fails in any way.
//!
//! ```text
//! player --GET--> proxy --plan()--> [A, B] --fetch A (budgeted)--x--> fetch B --> 200
//!                   ^                                     |
//!                   +---- poller: every target/2, each packager's playlist --+
//!                   +---- routes: origin /live/<s>/packagers, kept if origin is down
//! ```
//!
//! Guarantees: a viewer never gets a playlist older than one already served for
//! the signal; never a truncated body with a 200 (segments are buffered whole
//! and checked to be complete MPEG-TS); a playlist that no packager can give
//! fresh is served from the last good copy for up to one target duration.
//!
//! Load on packagers is the proxy's, not the viewers': a segment name no
//! packager listed recently is answered 404 without a fetch, concurrent
//! requests for the same object share one fetch ([`flight`]), and a packager
//! changes health only after consecutive failures of the proxy's own fetches.
//! Load on the origin likewise: a signal it does not know is refused from
//! memory for a second ([`negative`]).
//!
//! Answers are cacheable by a CDN in front (see [`crate::net::delivery`]):
//! playlists for half a target duration with a strong `ETag`, revalidated
//! with `304`; segments for a minute; 404s for a second.
//!
//! # Layout
//! - this file: config, budgets, routes, and the two request handlers;
//! - [`request`]: the decision points of one viewer request (pick a packager,
//!   a fetch failed, admit a playlist, nobody left), read top to bottom;
//! - [`failover`]: the pure state machine those decisions ask (time passed
//!   in, unit-tested without sockets);
//! - [`signal`]: what is known per signal (failover state, last good
//!   playlist, switches); [`watch`]: routes from the origin and the poller;
//! - [`upstream`]: budgeted fetches from packagers; [`cache`]: segments;
//!   [`listed`]: segment names packagers listed recently; [`flight`]:
//!   request collapsing; [`negative`]: the origin's refusals remembered;
//! - [`viewers`]: who is watching each signal.

pub mod cache;
pub mod failover;
pub mod flight;
pub mod listed;
pub mod metrics;
pub mod negative;
pub mod request;
pub mod signal;
pub mod upstream;
pub mod viewers;
pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::api::{ProxyStatus, Switch};
use crate::hls::{classify_media_file, is_valid_signal_name, MediaKind, PLAYLIST_NAME};
use crate::net::delivery::{
    media_response, Delivery, Media, MediaRequest, NOT_FOUND_CACHE_CONTROL,
    UNAVAILABLE_CACHE_CONTROL,
};
use crate::service::config::{
    parse_address_list, parse_base_url, parse_port, AddressList, ListenArgs,
};
use crate::service::http::{self, allow_any_origin, json_error, json_ok};
use crate::service::metrics::kind_label;
use crate::service::server::Peer;
use crate::service::shutdown::Shutdown;
use cache::SegmentCache;
use flight::{Flights, Role};
use negative::NegativeCache;
use request::Attempt;
use signal::{lock, ServedPlaylist, SignalState};
use viewers::{client_address, ViewerId, ViewerKeys};

/// Connecting to a packager must take well under a second (loopback or LAN).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Response headers must arrive within this fraction of the target duration.
pub const FIRST_BYTE_TARGETS: f64 = 0.5;
/// A body must be complete within this many target durations.
pub const BODY_TARGETS: f64 = 1.5;
/// Each packager's playlist is polled every this fraction of the target.
pub const POLL_TARGETS: f64 = 0.5;
/// Playlists fetched this recently are reused for other viewers.
pub const PLAYLIST_REUSE: Duration = Duration::from_millis(250);
/// Routes are asked of the origin again this often.
pub const ROUTE_REFRESH: Duration = Duration::from_secs(5);
/// A signal nobody asked for this long stops being polled.
pub const SIGNAL_IDLE: Duration = Duration::from_secs(120);
/// Default megabytes of segments kept in memory.
pub const DEFAULT_CACHE_MB: usize = 64;

/// Reverse proxy with freshness-aware failover between packagers.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "proxy", version)]
pub struct ProxyConfig {
    /// Port to listen on.
    #[arg(long, env = "PROXY_PORT", default_value = "8002", value_parser = parse_port)]
    pub port: u16,
    /// Origin base URL, asked where each signal lives.
    #[arg(long, env = "ORIGIN_URL", default_value = "http://localhost:8001", value_parser = parse_base_url)]
    pub origin_url: String,
    /// The packagers the proxy may connect to, comma-separated: routes naming
    /// any other host are ignored.
    #[arg(long, env = "PACKAGERS", default_value = "http://localhost:8080,http://localhost:9090", value_delimiter = ',', value_parser = parse_base_url)]
    pub packagers: Vec<String>,
    /// Megabytes of segments kept in memory.
    #[arg(long, env = "PROXY_CACHE_MB", default_value_t = DEFAULT_CACHE_MB)]
    pub cache_mb: usize,
    /// Addresses of load balancers in front of the proxy, comma-separated:
    /// for requests from them, the viewer is the address they put in
    /// `X-Forwarded-For` (for the viewers count only). Empty: none.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = parse_address_list)]
    pub trusted_proxies: AddressList,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// The proxy's shared state.
pub struct Proxy {
    config: ProxyConfig,
    client: reqwest::Client,
    /// Signals being served, created on their first request.
    signals: RwLock<HashMap<String, Arc<SignalState>>>,
    cache: Mutex<SegmentCache>,
    /// Segment fetches in flight, by `signal/name`, shared by every viewer
    /// asking meanwhile.
    segment_flights: Flights<Result<Bytes, Refusal>>,
    /// Playlist fetches for viewers in flight, by signal.
    playlist_flights: Flights<Result<ServedPlaylist, Refusal>>,
    /// First route lookups at the origin in flight, by signal.
    route_flights: Flights<Result<Vec<String>, Refusal>>,
    /// Signals the origin just refused, not asked again for a moment.
    refused: Mutex<NegativeCache>,
    /// The key viewers are hashed with.
    viewer_keys: ViewerKeys,
    shutdown: Shutdown,
}

/// Why a request cannot be answered with media.
#[derive(Debug, Clone)]
pub enum Refusal {
    NotFound(String),
    Unavailable(String),
}

impl Refusal {
    fn message(&self) -> &str {
        match self {
            Refusal::NotFound(m) | Refusal::Unavailable(m) => m,
        }
    }

    /// A label for metrics.
    fn label(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => "not_found",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    /// The JSON error, cacheable by a CDN for a second if a 404, never if a
    /// 502.
    fn into_response(self) -> Response {
        let (status, msg, caching) = match self {
            Refusal::NotFound(m) => (StatusCode::NOT_FOUND, m, NOT_FOUND_CACHE_CONTROL),
            Refusal::Unavailable(m) => (StatusCode::BAD_GATEWAY, m, UNAVAILABLE_CACHE_CONTROL),
        };
        let mut response = json_error(status, msg);
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static(caching));
        allow_any_origin(response)
    }
}

pub async fn run(config: ProxyConfig, shutdown: Shutdown) -> Result<(), http::ServeError> {
    let (listen, port) = (config.listen.clone(), config.port);
    log::info!(
        "Proxy asks {} for routes; allowed packagers: {}",
        config.origin_url,
        config.packagers.join(", ")
    );
    let proxy = Arc::new(Proxy::new(config, shutdown.clone()));
    let routes = crate::service::metrics::instrument("proxy", routes(proxy));
    crate::service::server::serve("proxy", &listen, port, routes, shutdown).await
}

pub fn routes(proxy: Arc<Proxy>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_proxy = warp::any().map(move || proxy.clone());
    let status = warp::path!("status")
        .and(warp::get())
        .and(with_proxy.clone())
        .map(|proxy: Arc<Proxy>| allow_any_origin(json_ok(&proxy.status())));
    let media = warp::path!(String / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Peer>())
        .and(with_proxy)
        .then(
            |signal: String,
             file: String,
             headers: HeaderMap,
             peer: Option<Peer>,
             proxy: Arc<Proxy>| async move {
                let request = MediaRequest::from_headers(&headers);
                let viewer = proxy.viewer(peer, &headers);
                proxy.handle(&signal, &file, &request, viewer).await
            },
        );
    http::healthcheck("proxy")
        .or(crate::service::metrics::route())
        .unify()
        .or(status)
        .unify()
        .or(media)
        .unify()
        .recover(http::recover)
        .unify()
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

fn now_text() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Proxy {
    pub fn new(config: ProxyConfig, shutdown: Shutdown) -> Self {
        let capacity = config.cache_mb.saturating_mul(1024 * 1024);
        Proxy {
            client: http::client(CONNECT_TIMEOUT),
            config,
            signals: RwLock::new(HashMap::new()),
            cache: Mutex::new(SegmentCache::new(capacity)),
            segment_flights: Flights::default(),
            playlist_flights: Flights::default(),
            route_flights: Flights::default(),
            refused: Mutex::new(NegativeCache::default()),
            viewer_keys: ViewerKeys::default(),
            shutdown,
        }
    }

    /// Who sent a request, for the viewers count (see [`viewers`]).
    fn viewer(&self, peer: Option<Peer>, headers: &HeaderMap) -> Option<ViewerId> {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let address = client_address(
            peer.map(|p| p.0.ip()),
            forwarded,
            &self.config.trusted_proxies.0,
        )?;
        let agent = headers.get("user-agent").map(HeaderValue::as_bytes);
        Some(self.viewer_keys.id(address, agent))
    }

    /// Serves one playlist or segment request, and counts who asked as a
    /// viewer of the signal once the signal is known.
    async fn handle(
        self: &Arc<Self>,
        signal: &str,
        file: &str,
        request: &MediaRequest,
        viewer: Option<ViewerId>,
    ) -> Response {
        let kind = match (is_valid_signal_name(signal), classify_media_file(file)) {
            (true, Some(kind)) => kind,
            _ => return Refusal::NotFound("not found".into()).into_response(),
        };
        let result = match kind {
            MediaKind::Playlist if file == PLAYLIST_NAME => self.playlist(signal).await.map(|p| {
                let delivery = Delivery {
                    service: "proxy",
                    last_modified: Some(p.last_modified),
                };
                (Media::Playlist(p.body, p.caching), delivery)
            }),
            MediaKind::Playlist => Err(Refusal::NotFound(format!("{signal}/{file} not found"))),
            MediaKind::Segment => self.segment(signal, file).await.map(|body| {
                let delivery = Delivery {
                    service: "proxy",
                    last_modified: None,
                };
                (Media::Segment(body), delivery)
            }),
        };
        if let Some(viewer) = viewer {
            let state = self.signals().get(signal).cloned();
            if let Some(state) = state {
                state.seen_viewer(viewer, Instant::now());
            }
        }
        match result {
            Ok((media, delivery)) => media_response(media, delivery, request),
            Err(refusal) => refusal.into_response(),
        }
    }

    /// A playlist: reused if fetched a moment ago, else the one being
    /// fetched for another viewer right now, else fetched (see
    /// [`Proxy::fetch_playlist`]).
    async fn playlist(self: &Arc<Self>, signal: &str) -> Result<ServedPlaylist, Refusal> {
        let state = self.signal_state(signal).await?;
        state.touch();
        if let Some(served) = state.reusable_playlist() {
            return Ok(served);
        }
        let (proxy, name) = (self.clone(), signal.to_string());
        let (result, role) = self
            .playlist_flights
            .run(signal, move || async move {
                proxy.fetch_playlist(&name, &state).await
            })
            .await;
        collapsed(MediaKind::Playlist, role);
        result.unwrap_or_else(|| Err(lost_flight(signal, PLAYLIST_NAME)))
    }

    /// One upstream playlist fetch for every viewer waiting: from the best
    /// packager that gives one no older than what was served (see
    /// [`request`]).
    async fn fetch_playlist(
        self: &Arc<Self>,
        signal: &str,
        state: &SignalState,
    ) -> Result<ServedPlaylist, Refusal> {
        // A fetch that ended just before this one started left its playlist.
        if let Some(served) = state.reusable_playlist() {
            return Ok(served);
        }
        let mut attempt = Attempt::new(self, signal, state, MediaKind::Playlist);
        while let Some(upstream) = attempt.pick_upstream() {
            let url = upstream.url(&format!("{signal}/{PLAYLIST_NAME}"));
            match upstream::fetch_playlist(&self.client, &url, upstream.budget).await {
                Ok(fetched) => {
                    if let Some(served) = attempt.admit_playlist(&upstream, fetched) {
                        return Ok(served);
                    }
                }
                Err(e) => attempt.fetch_failed(&upstream, &e),
            }
        }
        attempt.playlist_exhausted()
    }

    /// A segment: from the cache; else 404 if no packager listed it
    /// recently; else the fetch another viewer has in flight for it; else
    /// fetched (see [`Proxy::fetch_segment`]).
    async fn segment(self: &Arc<Self>, signal: &str, file: &str) -> Result<Bytes, Refusal> {
        let key = format!("{signal}/{file}");
        if let Some(body) = lock(&self.cache).get(&key) {
            return Ok(body);
        }
        let state = self.signal_state(signal).await?;
        if !state.has_listings() {
            // No playlist read yet (a viewer resuming after a proxy restart):
            // learn what exists before judging the name. Failures show below.
            let _ = self.playlist(signal).await;
        } else if !state.is_listed(file, Instant::now()) && state.may_come_next(file) {
            // The segment after the newest this proxy read: behind a load
            // balancer another proxy may have served a playlist listing it
            // already. Read the playlist now (shared with every viewer, and
            // reused for PLAYLIST_REUSE, so at most a few reads a second
            // whatever is asked) rather than refuse a segment that exists.
            let _ = self.playlist(signal).await;
        }
        if let Some(refusal) = request::refuse_unlisted(signal, &state, file) {
            return Err(refusal);
        }
        let proxy = self.clone();
        let (name, flight_key) = (signal.to_string(), key.clone());
        let (result, role) = self
            .segment_flights
            .run(&key, move || async move {
                proxy.fetch_segment(&name, &flight_key, &state).await
            })
            .await;
        collapsed(MediaKind::Segment, role);
        result.unwrap_or_else(|| Err(lost_flight(signal, file)))
    }

    /// One upstream segment fetch for every viewer waiting: from the best
    /// packager that has it whole (see [`request`]), then cached.
    async fn fetch_segment(
        self: &Arc<Self>,
        signal: &str,
        key: &str,
        state: &SignalState,
    ) -> Result<Bytes, Refusal> {
        // A fetch that ended just before this one started cached it.
        if let Some(body) = lock(&self.cache).get(key) {
            return Ok(body);
        }
        let mut attempt = Attempt::new(self, signal, state, MediaKind::Segment);
        while let Some(upstream) = attempt.pick_upstream() {
            match upstream::fetch_segment(&self.client, &upstream.url(key), upstream.budget).await {
                Ok(body) => {
                    attempt.admit_segment(&upstream);
                    lock(&self.cache).insert(key.to_string(), body.clone(), Instant::now());
                    return Ok(body);
                }
                Err(e) => attempt.fetch_failed(&upstream, &e),
            }
        }
        Err(attempt.segment_exhausted(key))
    }

    /// Logs, counts and remembers a change of active packager.
    fn record_switch(&self, signal: &str, state: &SignalState, switch: Switch) {
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
        state.record_switch(now_text(), switch);
    }

    fn signals(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<SignalState>>> {
        self.signals.read().unwrap_or_else(|p| p.into_inner())
    }

    fn signals_mut(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<SignalState>>> {
        self.signals.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Per signal, by name: its serving state, viewers now, each
    /// packager's freshness and the recent switches.
    pub fn status(&self) -> ProxyStatus {
        let now = Instant::now();
        let signals = self.signals();
        let mut names: Vec<&String> = signals.keys().collect();
        names.sort();
        ProxyStatus {
            signals: names
                .into_iter()
                .map(|name| signals[name].report(name, now))
                .collect(),
        }
    }
}
