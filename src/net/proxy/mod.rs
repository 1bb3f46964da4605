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

pub mod failover;
pub mod upstream;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::origin::Packagers;
use super::packager::media_response;
use crate::hls::{classify_media_file, is_valid_signal_name, MediaKind, PLAYLIST_NAME};
use crate::service::config::{parse_base_url, parse_port, ListenArgs};
use crate::service::http::{self, allow_any_origin, json_error, json_ok};
use crate::service::metrics;
use crate::service::shutdown::Shutdown;
use failover::{Failover, Health, Switch, UpstreamStatus};
use upstream::{Budget, FetchError};

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
/// Segments are kept this long at most: as long as caches may keep them
/// (the packagers' `max-age`), far longer than any live playlist lists them.
pub const SEGMENT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Switches remembered per signal for `GET /status`.
const SWITCH_HISTORY: usize = 20;
/// Budget for one request to the origin.
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(1);

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
    #[arg(long, env = "PROXY_CACHE_MB", default_value_t = 64)]
    pub cache_mb: usize,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// One served signal.
struct SignalState {
    failover: Mutex<Failover>,
    /// The last playlist served, and when it was fetched.
    last_good: Mutex<Option<(Bytes, Instant)>>,
    last_request: Mutex<Instant>,
    /// When the origin last confirmed the routes.
    routes_confirmed: Mutex<Instant>,
    switches: Mutex<VecDeque<SwitchRecord>>,
}

#[derive(Debug, Clone, Serialize)]
struct SwitchRecord {
    at: String,
    #[serde(flatten)]
    switch: Switch,
}

/// Segments by `signal/name`, bounded in bytes, oldest evicted first.
struct SegmentCache {
    capacity: usize,
    size: usize,
    entries: HashMap<String, Bytes>,
    /// Keys oldest first, with when they were cached.
    order: VecDeque<(String, Instant)>,
}

impl SegmentCache {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.get(key).cloned()
    }

    /// Caches a segment; drops the oldest ones past the byte capacity and
    /// any older than [`SEGMENT_CACHE_TTL`] (a live segment nobody can still
    /// list), so memory stays at the live working set.
    fn insert(&mut self, key: String, body: Bytes, now: Instant) {
        if body.len() > self.capacity || self.entries.contains_key(&key) {
            return;
        }
        self.size += body.len();
        self.order.push_back((key.clone(), now));
        self.entries.insert(key, body);
        while let Some((old, at)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) > SEGMENT_CACHE_TTL;
            if self.size <= self.capacity && !expired {
                break;
            }
            if let Some(b) = self.entries.remove(old) {
                self.size -= b.len();
            }
            self.order.pop_front();
        }
    }
}

/// The proxy's shared state.
pub struct Proxy {
    config: ProxyConfig,
    client: reqwest::Client,
    signals: RwLock<HashMap<String, Arc<SignalState>>>,
    cache: Mutex<SegmentCache>,
    shutdown: Shutdown,
}

/// Why a request cannot be answered with media.
enum Refusal {
    NotFound(String),
    Unavailable(String),
}

impl Refusal {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            Refusal::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Refusal::Unavailable(m) => (StatusCode::BAD_GATEWAY, m),
        };
        allow_any_origin(json_error(status, msg))
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
        .and(warp::get())
        .and(with_proxy)
        .then(
            |signal: String, file: String, proxy: Arc<Proxy>| async move {
                proxy.handle(&signal, &file).await
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
            cache: Mutex::new(SegmentCache {
                capacity,
                size: 0,
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            shutdown,
        }
    }

    /// Serves one playlist or segment request.
    async fn handle(self: &Arc<Self>, signal: &str, file: &str) -> Response {
        let kind = match (is_valid_signal_name(signal), classify_media_file(file)) {
            (true, Some(kind)) => kind,
            _ => return Refusal::NotFound("not found".into()).into_response(),
        };
        let result = match kind {
            MediaKind::Playlist if file == PLAYLIST_NAME => self.playlist(signal).await,
            MediaKind::Playlist => Err(Refusal::NotFound(format!("{signal}/{file} not found"))),
            MediaKind::Segment => self.segment(signal, file).await,
        };
        match result {
            Ok(body) => {
                metrics::count_bytes_served("proxy", kind, body.len());
                media_response(kind, body)
            }
            Err(refusal) => refusal.into_response(),
        }
    }

    fn budget(target: Duration) -> Budget {
        Budget {
            first_byte: target.mul_f64(FIRST_BYTE_TARGETS),
            body: target.mul_f64(BODY_TARGETS),
        }
    }

    async fn playlist(self: &Arc<Self>, signal: &str) -> Result<Bytes, Refusal> {
        let state = self.signal_state(signal).await?;
        if let Ok(mut t) = state.last_request.lock() {
            *t = Instant::now();
        }
        if let Some((body, at)) = lock(&state.last_good).clone() {
            if at.elapsed() < PLAYLIST_REUSE {
                return Ok(body);
            }
        }
        let mut tried: Vec<String> = Vec::new();
        while let Some((base, target)) = self.next_packager(signal, &state, &tried) {
            tried.push(base.clone());
            let url = format!("{base}/{signal}/{PLAYLIST_NAME}");
            match upstream::fetch_playlist(&self.client, &url, Self::budget(target)).await {
                Ok((body, facts)) => {
                    let newest = facts.newest_sequence();
                    let admitted = {
                        let mut f = lock(&state.failover);
                        f.observe_playlist(&base, newest, facts.target_duration, Instant::now());
                        f.admit_playlist(newest)
                    };
                    if admitted {
                        *lock(&state.last_good) = Some((body.clone(), Instant::now()));
                        return Ok(body);
                    }
                    log::debug!(
                        "Signal '{signal}': {base} is behind what was served; trying another"
                    );
                }
                Err(e) => self.failed(signal, &state, &base, &e),
            }
        }
        // Nobody could give a fresh playlist: the last good one, while honest.
        let target = lock(&state.failover).target_duration();
        if let Some((body, at)) = lock(&state.last_good).clone() {
            if at.elapsed() <= target {
                log::warn!(
                    "Signal '{signal}': no packager answered, serving the last good playlist"
                );
                metrics::PROXY_FALLBACK_PLAYLISTS
                    .with_label_values(&[signal])
                    .inc();
                return Ok(body);
            }
        }
        Err(Refusal::Unavailable(format!(
            "no packager could serve {signal}/{PLAYLIST_NAME}"
        )))
    }

    async fn segment(self: &Arc<Self>, signal: &str, file: &str) -> Result<Bytes, Refusal> {
        let key = format!("{signal}/{file}");
        if let Some(body) = lock(&self.cache).get(&key) {
            return Ok(body);
        }
        let state = self.signal_state(signal).await?;
        let mut tried: Vec<String> = Vec::new();
        let mut all_not_found = true;
        while let Some((base, target)) = self.next_packager(signal, &state, &tried) {
            tried.push(base.clone());
            let url = format!("{base}/{key}");
            match upstream::fetch_segment(&self.client, &url, Self::budget(target)).await {
                Ok(body) => {
                    lock(&self.cache).insert(key, body.clone(), Instant::now());
                    return Ok(body);
                }
                Err(e) => {
                    all_not_found &= e.is_not_found();
                    self.failed(signal, &state, &base, &e);
                }
            }
        }
        if all_not_found && !tried.is_empty() {
            Err(Refusal::NotFound(format!("{key} not found")))
        } else {
            Err(Refusal::Unavailable(format!(
                "no packager could serve {key}"
            )))
        }
    }

    /// The best packager not tried yet in this request, by a fresh plan (which
    /// logs a switch when the best one changes).
    fn next_packager(
        &self,
        signal: &str,
        state: &SignalState,
        tried: &[String],
    ) -> Option<(String, Duration)> {
        let (order, switch, target) = {
            let mut f = lock(&state.failover);
            let (order, switch) = f.plan(Instant::now());
            (order, switch, f.target_duration())
        };
        if let Some(switch) = switch {
            self.record_switch(signal, state, switch);
        }
        order
            .into_iter()
            .find(|b| !tried.contains(b))
            .map(|b| (b, target))
    }

    fn failed(&self, signal: &str, state: &SignalState, base: &str, error: &FetchError) {
        log::warn!("Signal '{signal}': {base} failed: {error}; trying another packager");
        metrics::PROXY_UPSTREAM_FAILURES
            .with_label_values(&[base, error.kind()])
            .inc();
        lock(&state.failover).observe_failure(base, &error.to_string());
    }

    fn record_switch(&self, signal: &str, state: &SignalState, switch: Switch) {
        metrics::PROXY_SWITCHES
            .with_label_values(&[signal, switch.kind])
            .inc();
        match &switch.from {
            Some(from) => log::info!(
                "Signal '{signal}': switching from {from} to {} ({})",
                switch.to,
                switch.reason
            ),
            None => log::info!("Signal '{signal}': serving from {}", switch.to),
        }
        let mut history = lock(&state.switches);
        history.push_back(SwitchRecord {
            at: now_text(),
            switch,
        });
        while history.len() > SWITCH_HISTORY {
            history.pop_front();
        }
    }

    /// The state of a signal, created (routes asked of the origin, poller
    /// started) on its first request.
    async fn signal_state(self: &Arc<Self>, signal: &str) -> Result<Arc<SignalState>, Refusal> {
        if let Some(state) = read(&self.signals).get(signal) {
            return Ok(state.clone());
        }
        let packagers = self.routes_from_origin(signal).await?;
        let state = Arc::new(SignalState {
            failover: Mutex::new(Failover::new(&packagers)),
            last_good: Mutex::new(None),
            last_request: Mutex::new(Instant::now()),
            routes_confirmed: Mutex::new(Instant::now()),
            switches: Mutex::new(VecDeque::new()),
        });
        let mut signals = write(&self.signals);
        if let Some(existing) = signals.get(signal) {
            return Ok(existing.clone());
        }
        signals.insert(signal.to_string(), state.clone());
        drop(signals);
        log::info!("Signal '{signal}': routes {}", packagers.join(", "));
        tokio::spawn(self.clone().watch(signal.to_string(), state.clone()));
        Ok(state)
    }

    /// Asks the origin for a signal's packagers, keeping only allowed ones.
    async fn routes_from_origin(&self, signal: &str) -> Result<Vec<String>, Refusal> {
        let url = format!("{}/live/{signal}/packagers", self.config.origin_url);
        let res = self
            .client
            .get(&url)
            .timeout(ORIGIN_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                Refusal::Unavailable(format!("origin unreachable: {}", http::root_cause(&e)))
            })?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Refusal::NotFound(format!("signal '{signal}' is not live")));
        }
        if !res.status().is_success() {
            return Err(Refusal::Unavailable(format!(
                "origin answered {}",
                res.status()
            )));
        }
        let answer: Packagers = res
            .json()
            .await
            .map_err(|e| Refusal::Unavailable(format!("origin sent unreadable JSON: {e}")))?;
        let allowed: Vec<String> = answer
            .packagers
            .into_iter()
            .filter(|p| {
                let ok = self.config.packagers.contains(p);
                if !ok {
                    log::warn!("Signal '{signal}': ignoring packager {p}, not in PACKAGERS");
                }
                ok
            })
            .collect();
        if allowed.is_empty() {
            return Err(Refusal::Unavailable(format!(
                "no allowed packager serves '{signal}'"
            )));
        }
        Ok(allowed)
    }

    /// Background life of a served signal: polls every packager's playlist to
    /// know its freshness, refreshes routes, and ends when nobody watches.
    async fn watch(self: Arc<Self>, signal: String, state: Arc<SignalState>) {
        let mut last_routes = Instant::now();
        loop {
            let (packagers, target) = {
                let f = lock(&state.failover);
                (f.packagers(), f.target_duration())
            };
            let polls = packagers.iter().map(|base| {
                let url = format!("{base}/{signal}/{PLAYLIST_NAME}");
                let client = &self.client;
                async move {
                    let r = upstream::fetch_playlist(client, &url, Self::budget(target)).await;
                    (base.clone(), r)
                }
            });
            for (base, result) in futures_util::future::join_all(polls).await {
                let mut f = lock(&state.failover);
                match result {
                    Ok((_, facts)) => f.observe_playlist(
                        &base,
                        facts.newest_sequence(),
                        facts.target_duration,
                        Instant::now(),
                    ),
                    Err(e) => {
                        log::debug!("Signal '{signal}': poll of {base} failed: {e}");
                        f.observe_failure(&base, &e.to_string());
                    }
                }
            }
            publish_freshness(&signal, &lock(&state.failover).status(Instant::now()));
            if last_routes.elapsed() >= ROUTE_REFRESH {
                last_routes = Instant::now();
                self.refresh_routes(&signal, &state).await;
            }
            let idle = lock(&state.last_request).elapsed();
            if idle > SIGNAL_IDLE {
                log::info!(
                    "Signal '{signal}': no viewer for {} s, no longer watched",
                    idle.as_secs()
                );
                write(&self.signals).remove(&signal);
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(target.mul_f64(POLL_TARGETS)) => {}
                _ = self.shutdown.wait() => return,
            }
        }
    }

    /// Updates routes from the origin; on any failure keeps the known ones
    /// (static stability: the origin, reporter or discovery may be down).
    async fn refresh_routes(&self, signal: &str, state: &SignalState) {
        match self.routes_from_origin(signal).await {
            Ok(packagers) => {
                *lock(&state.routes_confirmed) = Instant::now();
                let mut f = lock(&state.failover);
                if f.packagers() != packagers {
                    log::info!("Signal '{signal}': routes now {}", packagers.join(", "));
                    f.set_packagers(&packagers);
                }
            }
            Err(Refusal::NotFound(_)) | Err(Refusal::Unavailable(_)) => {
                log::debug!(
                    "Signal '{signal}': origin did not confirm routes; keeping those of {} s ago",
                    lock(&state.routes_confirmed).elapsed().as_secs()
                );
            }
        }
    }

    /// Per signal: each packager's freshness and the recent switches.
    pub fn status(&self) -> serde_json::Value {
        let now = Instant::now();
        let signals = read(&self.signals);
        let mut names: Vec<&String> = signals.keys().collect();
        names.sort();
        let entries: Vec<serde_json::Value> = names
            .into_iter()
            .map(|name| {
                let state = &signals[name];
                let packagers: Vec<UpstreamStatus> = lock(&state.failover).status(now);
                let switches: Vec<SwitchRecord> = lock(&state.switches).iter().cloned().collect();
                serde_json::json!({ "signal": name, "packagers": packagers, "switches": switches })
            })
            .collect();
        serde_json::json!({ "signals": entries })
    }
}

/// Mirrors one signal's failover view into the freshness gauges.
fn publish_freshness(signal: &str, packagers: &[UpstreamStatus]) {
    for p in packagers {
        let labels = [signal, p.packager.as_str()];
        if let Some(newest) = p.newest_sequence {
            metrics::PROXY_NEWEST_SEQUENCE
                .with_label_values(&labels)
                .set(newest as i64);
        }
        if let Some(ms) = p.advanced_ms_ago {
            metrics::PROXY_ADVANCE_AGE
                .with_label_values(&labels)
                .set(ms as f64 / 1000.0);
        }
        let healthy = matches!(p.health, Health::Fresh | Health::Unknown);
        metrics::PROXY_HEALTHY
            .with_label_values(&labels)
            .set(healthy as i64);
        metrics::PROXY_ACTIVE
            .with_label_values(&labels)
            .set(p.active as i64);
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the
/// state stays consistent: every critical section is a few assignments).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_cache_stays_within_its_bytes() {
        let mut cache = SegmentCache {
            capacity: 10,
            size: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
        };
        let t0 = Instant::now();
        cache.insert("a".into(), Bytes::from_static(b"12345"), t0);
        cache.insert("b".into(), Bytes::from_static(b"12345"), t0);
        cache.insert("c".into(), Bytes::from_static(b"123"), t0);
        assert!(cache.get("a").is_none(), "oldest evicted");
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        assert!(cache.size <= 10);
        cache.insert("huge".into(), Bytes::from(vec![0u8; 11]), t0);
        assert!(cache.get("huge").is_none());
        // Past the TTL, old segments go even with room to spare.
        cache.insert(
            "d".into(),
            Bytes::from_static(b"1"),
            t0 + SEGMENT_CACHE_TTL + Duration::from_secs(1),
        );
        assert!(cache.get("b").is_none() && cache.get("c").is_none());
        assert_eq!(cache.size, 1);
    }
}
