//! The operator's console: one web page that shows, live, that the stream is
//! up, which packager serves every signal, and what just happened.
//!
//! ```text
//!                       every 1 s: origin /signals, proxy /status, fault modes
//!   console --GET-----> origin, proxy, fault proxies ──▶ ConsoleState (watch)
//!      │                                                      │
//!      ├── GET /, /console.js, /hls.min.js (local files)      ├──▶ GET /api/state
//!      ├── POST /api/faults/<name>/<mode> ──PUT /_fault/<m>──▶│    GET /api/events (SSE)
//!   browser: <video> plays <PROXY_URL>/<signal>/playlist.m3u8 (native HLS, else hls.js)
//! ```
//!
//! One background loop gathers the state every [`REFRESH_INTERVAL`] and
//! publishes it on a watch channel: every page gets the same snapshot pushed
//! by Server-Sent Events, so ten open consoles cost the proxy and the origin
//! no more than one. Switches reported by the proxy (it keeps the last 20 per
//! signal, and forgets a signal nobody watches) and the faults triggered here
//! are kept in a timeline of [`TIMELINE_CAPACITY`] entries, so "what just
//! happened" survives a proxy restart and a page reload.
//!
//! The page, its script and hls.js are files of `CONSOLE_ASSETS` (the `web/`
//! folder; hls.js comes from the npm registry at setup, `npm ci --prefix web`):
//! nothing is fetched from the internet at run time, and the page's
//! Content-Security-Policy lets it talk to this console and the proxy only.
//!
//! # Fault controls (demos on localhost)
//! Off unless `CONSOLE_FAULTS` names fault proxies (`name=http://127.0.0.1:port`,
//! their control API). When on: `CONSOLE_FAULT_TOKEN` is required and every
//! `POST /api/faults/...` must carry it as `Authorization: Bearer <token>`;
//! the console must listen on a loopback address and the fault proxies must be
//! on this machine. Only [`CONSOLE_MODES`] can be set. When off, the fault
//! route answers 404.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::auth::{Token, MIN_TOKEN_LEN};
use crate::service::config::{parse_base_url, parse_port, ListenArgs};
use crate::service::http::{self, json_error, json_ok};
use crate::service::shutdown::Shutdown;

/// How often the state is gathered and pushed to every open page.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Budget for one request to the origin, the proxy or a fault proxy while
/// gathering: below the refresh interval, so one slow source cannot hold the
/// page's clock.
pub const SOURCE_TIMEOUT: Duration = Duration::from_millis(800);
/// Budget for switching a fault proxy's mode.
pub const FAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect budget towards the sources (all on the local network).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Timeline entries kept (switches and faults), oldest dropped first.
pub const TIMELINE_CAPACITY: usize = 200;
/// How long a browser waits before reconnecting a dropped event stream.
const SSE_RETRY: Duration = Duration::from_secs(1);
/// A packager that left a signal's routes (discovery stopped reporting it) is
/// still shown, as `gone`, for this long: losing redundancy is news.
pub const GONE_SHOWN_FOR: Duration = Duration::from_secs(600);
/// Health shown for such a packager.
pub const GONE: &str = "gone";
/// Longest fault-control name (it ends up in URLs and on buttons).
const MAX_FAULT_NAME: usize = 32;
/// The fault modes the console offers: a dead packager (`reset`: every
/// connection reset, like a killed process), a hung one, a frozen playlist,
/// errors, and back to normal. Slowness and cut bodies stay test-only.
pub const CONSOLE_MODES: [DemoFault; 5] = [
    DemoFault::Reset,
    DemoFault::Hang,
    DemoFault::Stale,
    DemoFault::Error500,
    DemoFault::None,
];

/// A fault the console may ask a fault proxy (the lab's `faultproxy`) for.
/// The console only speaks its control API (`PUT /_fault/<name>`), so it
/// names the modes as that API does and carries none of the lab's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoFault {
    Reset,
    Hang,
    Stale,
    Error500,
    None,
}

impl DemoFault {
    /// The mode's name in the fault proxy's control API.
    pub fn name(self) -> &'static str {
        match self {
            DemoFault::Reset => "reset",
            DemoFault::Hang => "hang",
            DemoFault::Stale => "stale",
            DemoFault::Error500 => "error500",
            DemoFault::None => "none",
        }
    }
}

impl std::fmt::Display for DemoFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The operator's console: a live web page over the proxy's failover state.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "console", version)]
pub struct ConsoleConfig {
    /// Port to listen on.
    #[arg(long, env = "CONSOLE_PORT", default_value = "8003", value_parser = parse_port)]
    pub port: u16,
    /// The proxy as the browser reaches it: the page plays
    /// <PROXY_URL>/<signal>/playlist.m3u8, and the console reads <PROXY_URL>/status.
    #[arg(long, env = "PROXY_URL", default_value = "http://localhost:8002", value_parser = parse_base_url)]
    pub proxy_url: String,
    /// Origin base URL, asked which signals are live.
    #[arg(long, env = "ORIGIN_URL", default_value = "http://localhost:8001", value_parser = parse_base_url)]
    pub origin_url: String,
    /// Folder with console.html, console.js and node_modules/hls.js/dist/hls.min.js.
    #[arg(long, env = "CONSOLE_ASSETS", default_value = "web")]
    pub assets: PathBuf,
    /// Fault controls for localhost demos, comma-separated
    /// `name=http://127.0.0.1:port` (a faultproxy's control API). Empty: off.
    #[arg(long, env = "CONSOLE_FAULTS", default_value = "", hide_default_value = true, value_parser = parse_fault_targets)]
    pub faults: FaultTargets,
    /// Token the page must send to trigger faults; required with CONSOLE_FAULTS
    /// (environment only, so it never shows in `ps`).
    #[arg(long = "fault-token", env = "CONSOLE_FAULT_TOKEN", hide_env_values = true, hide = true, value_parser = parse_fault_token)]
    pub fault_token: Option<Token>,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// One fault proxy the console may switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultTarget {
    /// Shown on the page and used in `/api/faults/<name>/<mode>`.
    pub name: String,
    /// The fault proxy's base URL: its control API, and the packager URL the
    /// proxy knows it by (so the page can show which packager it affects).
    pub control: String,
}

/// The fault proxies the console may switch (none: controls off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultTargets(pub Vec<FaultTarget>);

/// A comma-separated list of [`parse_fault_target`]; empty means none. Each
/// name may appear once.
pub fn parse_fault_targets(s: &str) -> Result<FaultTargets, String> {
    let mut targets: Vec<FaultTarget> = Vec::new();
    for item in s.split(',').filter(|item| !item.trim().is_empty()) {
        let target = parse_fault_target(item)?;
        if targets.iter().any(|t| t.name == target.name) {
            return Err(format!("fault control '{}' is named twice", target.name));
        }
        targets.push(target);
    }
    Ok(FaultTargets(targets))
}

/// `name=http://127.0.0.1:port`, on this machine only.
pub fn parse_fault_target(s: &str) -> Result<FaultTarget, String> {
    let (name, control) = s
        .trim()
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not name=http://127.0.0.1:port"))?;
    let name = name.trim();
    let name_ok = !name.is_empty()
        && name.len() <= MAX_FAULT_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(format!(
            "fault control name '{name}' must be 1 to {MAX_FAULT_NAME} letters, digits, '-' or '_'"
        ));
    }
    let control = parse_base_url(control)?;
    if !is_loopback_url(&control) {
        return Err(format!(
            "fault control '{name}' must be on this machine (localhost, 127.0.0.1 or [::1]), not {control}"
        ));
    }
    Ok(FaultTarget {
        name: name.to_string(),
        control,
    })
}

fn parse_fault_token(s: &str) -> Result<Token, String> {
    Token::parse(s, "CONSOLE_FAULT_TOKEN")
}

fn is_loopback_url(base: &str) -> bool {
    match url::Url::parse(base)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Why the console cannot start: one line, then a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("CONSOLE_FAULTS is set, so CONSOLE_FAULT_TOKEN is required (at least {MIN_TOKEN_LEN} characters); leave CONSOLE_FAULTS empty to keep fault controls off")]
    TokenMissing,
    #[error("fault controls are for localhost demos: the console must listen on a loopback address (LISTEN_HOST=127.0.0.1), not {0}")]
    NotLocal(IpAddr),
    #[error("{what} not found at {path}: {hint}")]
    MissingAsset {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}

/// A file the console serves. The set is closed: no request path is ever
/// turned into a file path, so nothing else under the folder can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asset {
    Page,
    Script,
    HlsJs,
}

impl Asset {
    const ALL: [Asset; 3] = [Asset::Page, Asset::Script, Asset::HlsJs];

    fn relative_path(self) -> &'static str {
        match self {
            Asset::Page => "console.html",
            Asset::Script => "console.js",
            Asset::HlsJs => "node_modules/hls.js/dist/hls.min.js",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Asset::Page => "text/html; charset=utf-8",
            Asset::Script | Asset::HlsJs => "text/javascript; charset=utf-8",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Asset::HlsJs => "run scripts/setup.sh (or npm ci --prefix web) to install hls.js",
            Asset::Page | Asset::Script => "set CONSOLE_ASSETS to the repository's web/ folder",
        }
    }
}

/// What the page shows, gathered every [`REFRESH_INTERVAL`].
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleState {
    /// Local time of the gathering, `YYYY-MM-DD HH:MM:SS`.
    pub generated_at: String,
    /// Milliseconds between two states, so the page knows when one is late.
    pub refresh_ms: u64,
    /// Base of the URL the page plays: `<player_base>/<signal>/playlist.m3u8`.
    pub player_base: String,
    /// Whether the origin answered, and why not.
    pub origin: SourceView,
    /// Whether the proxy answered, and why not.
    pub proxy: SourceView,
    /// Every signal the origin lists or the proxy serves, by name.
    pub signals: Vec<SignalView>,
    /// Switches and faults, newest first.
    pub timeline: Vec<TimelineEntry>,
    pub faults: FaultsView,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    pub url: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// One signal as the console sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SignalView {
    pub signal: String,
    /// The origin lists it (discovery found it live on some packager).
    pub live: bool,
    /// The proxy serves it (someone asked for it): its packagers are known.
    pub watched: bool,
    pub packagers: Vec<PackagerView>,
}

/// One packager of a signal, as the proxy's `GET /status` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackagerView {
    pub packager: String,
    pub health: String,
    pub active: bool,
    pub newest_sequence: Option<u64>,
    pub advanced_ms_ago: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ProxyStatus {
    signals: Vec<ProxySignal>,
}

#[derive(Debug, Clone, Deserialize)]
struct ProxySignal {
    signal: String,
    #[serde(default)]
    packagers: Vec<PackagerView>,
    #[serde(default)]
    switches: Vec<ProxySwitch>,
}

#[derive(Debug, Clone, Deserialize)]
struct ProxySwitch {
    at: String,
    from: Option<String>,
    to: String,
    reason: String,
}

/// Something that happened: the proxy switched packagers, or someone
/// triggered a fault from the console.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TimelineEntry {
    Switch {
        at: String,
        signal: String,
        from: Option<String>,
        to: String,
        reason: String,
    },
    Fault {
        at: String,
        name: String,
        control: String,
        mode: String,
    },
}

impl TimelineEntry {
    fn at(&self) -> &str {
        match self {
            TimelineEntry::Switch { at, .. } | TimelineEntry::Fault { at, .. } => at,
        }
    }
}

/// The fault controls as the page needs them.
#[derive(Debug, Clone, Serialize)]
pub struct FaultsView {
    pub enabled: bool,
    pub modes: Vec<ModeView>,
    pub controls: Vec<ControlView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModeView {
    pub mode: &'static str,
    /// The button's label.
    pub label: &'static str,
    pub help: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlView {
    pub name: String,
    pub control: String,
    /// The fault proxy's current mode, when it answered.
    pub mode: Option<String>,
    pub error: Option<String>,
}

/// Label and help of a mode's button.
fn mode_view(mode: DemoFault) -> ModeView {
    let (label, help) = match mode {
        DemoFault::Reset => ("kill", "every connection is reset, as if the packager died"),
        DemoFault::Hang => ("hang", "requests are read and never answered"),
        DemoFault::Stale => ("stale", "its playlists freeze (200 OK, never advancing)"),
        DemoFault::Error500 => ("500s", "every request gets a 500"),
        DemoFault::None => ("restore", "back to normal"),
    };
    ModeView {
        mode: mode.name(),
        label,
        help,
    }
}

/// The console's shared state.
pub struct Console {
    config: ConsoleConfig,
    client: reqwest::Client,
    /// The latest state; every page's event stream subscribes to it.
    state: watch::Sender<Arc<ConsoleState>>,
    /// Switches and faults seen, oldest first.
    timeline: Mutex<VecDeque<TimelineEntry>>,
    /// Per signal, every packager the proxy routed it to, and when last.
    known: Mutex<HashMap<String, Vec<(String, Instant)>>>,
    /// Wakes the gathering loop early (after a fault was triggered).
    refresh_now: Notify,
    /// The page's Content-Security-Policy: this console and the proxy only.
    csp: String,
    shutdown: Shutdown,
}

pub async fn run(config: ConsoleConfig, shutdown: Shutdown) -> Result<(), ConsoleError> {
    let (listen, port) = (config.listen.clone(), config.port);
    let console = Arc::new(Console::new(config, shutdown.clone())?);
    console.refresh().await;
    tokio::spawn(console.clone().gather_loop());
    crate::service::server::serve("console", &listen, port, routes(console), shutdown).await?;
    Ok(())
}

impl Console {
    /// Checks the configuration (fault controls safe, assets present).
    pub fn new(config: ConsoleConfig, shutdown: Shutdown) -> Result<Console, ConsoleError> {
        if !config.faults.0.is_empty() {
            if config.fault_token.is_none() {
                return Err(ConsoleError::TokenMissing);
            }
            if !config.listen.host.is_loopback() {
                return Err(ConsoleError::NotLocal(config.listen.host));
            }
        } else if config.fault_token.is_some() {
            log::warn!(
                "CONSOLE_FAULT_TOKEN is set but CONSOLE_FAULTS is empty: fault controls stay off"
            );
        }
        for asset in Asset::ALL {
            let path = config.assets.join(asset.relative_path());
            if !path.is_file() {
                return Err(ConsoleError::MissingAsset {
                    what: asset.relative_path(),
                    path,
                    hint: asset.hint(),
                });
            }
        }
        if config.faults.0.is_empty() {
            log::info!(
                "Console reads {} and {}; fault controls off",
                config.origin_url,
                config.proxy_url
            );
        } else {
            let names: Vec<String> = config
                .faults
                .0
                .iter()
                .map(|t| format!("{}={}", t.name, t.control))
                .collect();
            log::warn!(
                "Console fault controls ON (token required): {}",
                names.join(", ")
            );
        }
        let csp = content_security_policy(&config.proxy_url);
        let initial = ConsoleState {
            generated_at: now_text(),
            refresh_ms: REFRESH_INTERVAL.as_millis() as u64,
            player_base: config.proxy_url.clone(),
            origin: SourceView {
                url: config.origin_url.clone(),
                ok: false,
                error: Some("not asked yet".into()),
            },
            proxy: SourceView {
                url: config.proxy_url.clone(),
                ok: false,
                error: Some("not asked yet".into()),
            },
            signals: Vec::new(),
            timeline: Vec::new(),
            faults: faults_view(&config, Vec::new()),
        };
        Ok(Console {
            client: http::client(CONNECT_TIMEOUT),
            state: watch::Sender::new(Arc::new(initial)),
            timeline: Mutex::new(VecDeque::new()),
            known: Mutex::new(HashMap::new()),
            refresh_now: Notify::new(),
            csp,
            config,
            shutdown,
        })
    }

    fn faults_enabled(&self) -> bool {
        !self.config.faults.0.is_empty() && self.config.fault_token.is_some()
    }

    /// The latest state.
    pub fn snapshot(&self) -> Arc<ConsoleState> {
        self.state.borrow().clone()
    }

    /// Gathers and publishes the state every [`REFRESH_INTERVAL`] (sooner when
    /// a fault was just triggered) until shutdown.
    async fn gather_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
                _ = self.refresh_now.notified() => {}
                _ = self.shutdown.wait() => return,
            }
            self.refresh().await;
        }
    }

    /// Asks the origin, the proxy and the fault proxies at once, and publishes.
    pub async fn refresh(&self) {
        let (origin, proxy, controls) = tokio::join!(
            self.origin_signals(),
            self.proxy_status(),
            self.fault_modes()
        );
        let mut signals: BTreeMap<String, SignalView> = BTreeMap::new();
        if let Ok(names) = &origin {
            for name in names {
                signals.insert(
                    name.clone(),
                    SignalView {
                        signal: name.clone(),
                        live: true,
                        watched: false,
                        packagers: Vec::new(),
                    },
                );
            }
        }
        if let Ok(status) = &proxy {
            let now = Instant::now();
            let mut known = lock(&self.known);
            let mut timeline = lock(&self.timeline);
            for s in &status.signals {
                let view = signals
                    .entry(s.signal.clone())
                    .or_insert_with(|| SignalView {
                        signal: s.signal.clone(),
                        live: false,
                        watched: true,
                        packagers: Vec::new(),
                    });
                view.watched = true;
                let seen = known.entry(s.signal.clone()).or_default();
                view.packagers = with_gone(seen, s.packagers.clone(), now);
                for switch in &s.switches {
                    remember(
                        &mut timeline,
                        TimelineEntry::Switch {
                            at: switch.at.clone(),
                            signal: s.signal.clone(),
                            from: switch.from.clone(),
                            to: switch.to.clone(),
                            reason: switch.reason.clone(),
                        },
                    );
                }
            }
        }
        let state = ConsoleState {
            generated_at: now_text(),
            refresh_ms: REFRESH_INTERVAL.as_millis() as u64,
            player_base: self.config.proxy_url.clone(),
            origin: source_view(&self.config.origin_url, &origin),
            proxy: source_view(&self.config.proxy_url, &proxy),
            signals: signals.into_values().collect(),
            timeline: newest_first(&lock(&self.timeline)),
            faults: faults_view(&self.config, controls),
        };
        self.state.send_replace(Arc::new(state));
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let res = self
            .client
            .get(url)
            .timeout(SOURCE_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", http::root_cause(&e)))?;
        if !res.status().is_success() {
            return Err(format!("answered {}", res.status()));
        }
        res.json()
            .await
            .map_err(|e| format!("sent unreadable JSON: {e}"))
    }

    async fn origin_signals(&self) -> Result<Vec<String>, String> {
        self.get_json(&format!("{}/signals", self.config.origin_url))
            .await
    }

    async fn proxy_status(&self) -> Result<ProxyStatus, String> {
        self.get_json(&format!("{}/status", self.config.proxy_url))
            .await
    }

    /// Each fault proxy's current mode (`GET /_fault`).
    async fn fault_modes(&self) -> Vec<ControlView> {
        if !self.faults_enabled() {
            return Vec::new();
        }
        #[derive(Deserialize)]
        struct ModeAnswer {
            mode: String,
        }
        let asks = self.config.faults.0.iter().map(|t| async move {
            let answer: Result<ModeAnswer, String> =
                self.get_json(&format!("{}/_fault", t.control)).await;
            let (mode, error) = match answer {
                Ok(a) => (Some(a.mode), None),
                Err(e) => (None, Some(e)),
            };
            ControlView {
                name: t.name.clone(),
                control: t.control.clone(),
                mode,
                error,
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// `POST /api/faults/<name>/<mode>`: checks, then switches the fault proxy.
    async fn inject(&self, name: &str, mode: &str, authorization: Option<String>) -> Response {
        let Some(token) = self
            .config
            .fault_token
            .as_ref()
            .filter(|_| self.faults_enabled())
        else {
            return json_error(
                StatusCode::NOT_FOUND,
                "fault controls are off (set CONSOLE_FAULTS and CONSOLE_FAULT_TOKEN to enable them)",
            );
        };
        if !token.admits(authorization.as_deref()) {
            log::warn!("Console: fault request refused (missing or wrong token)");
            return json_error(StatusCode::UNAUTHORIZED, "missing or wrong fault token");
        }
        let allowed = CONSOLE_MODES.map(DemoFault::name);
        let Some(mode) = CONSOLE_MODES.into_iter().find(|m| m.name() == mode) else {
            let shown: String = mode.chars().take(32).collect();
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "mode '{shown}' is not offered by the console (one of: {})",
                    allowed.join(", ")
                ),
            );
        };
        let Some(target) = self.config.faults.0.iter().find(|t| t.name == name) else {
            let shown: String = name.chars().take(32).collect();
            return json_error(
                StatusCode::NOT_FOUND,
                format!("no fault control named '{shown}'"),
            );
        };
        let url = format!("{}/_fault/{}", target.control, mode.name());
        let sent = self
            .client
            .put(&url)
            .timeout(FAULT_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", http::root_cause(&e)))
            .and_then(|res| {
                if res.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("answered {}", res.status()))
                }
            });
        if let Err(e) = sent {
            log::warn!("Console: cannot set fault '{mode}' on {name} ({url}): {e}");
            return json_error(StatusCode::BAD_GATEWAY, format!("fault proxy '{name}' {e}"));
        }
        log::warn!("Console: fault '{mode}' set on {name} ({})", target.control);
        remember(
            &mut lock(&self.timeline),
            TimelineEntry::Fault {
                at: now_text(),
                name: target.name.clone(),
                control: target.control.clone(),
                mode: mode.name().to_string(),
            },
        );
        self.refresh_now.notify_one();
        json_ok(&serde_json::json!({
            "name": target.name,
            "control": target.control,
            "mode": mode.name(),
        }))
    }

    /// One of the console's files, read at each request (a page edit shows on
    /// reload), with its content type and the page's security headers.
    async fn asset(&self, asset: Asset) -> Response {
        let path = self.config.assets.join(asset.relative_path());
        let body = match tokio::fs::read(&path).await {
            Ok(body) => body,
            Err(e) => {
                log::error!("Console: cannot read {}: {e}", path.display());
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot read {}: {}", asset.relative_path(), asset.hint()),
                );
            }
        };
        let mut response = Response::new(body.into());
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static(asset.content_type()),
        );
        headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        if asset == Asset::Page {
            if let Ok(csp) = HeaderValue::from_str(&self.csp) {
                headers.insert("content-security-policy", csp);
            }
        }
        response
    }
}

/// The page may load its own files, talk to this console, and play from the
/// proxy (hls.js feeds MediaSource through blob: URLs and may run a worker).
fn content_security_policy(proxy_url: &str) -> String {
    let proxy = url::Url::parse(proxy_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self' {proxy}; media-src 'self' blob: {proxy}; \
         worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

fn faults_view(config: &ConsoleConfig, gathered: Vec<ControlView>) -> FaultsView {
    let enabled = !config.faults.0.is_empty() && config.fault_token.is_some();
    if !enabled {
        return FaultsView {
            enabled,
            modes: Vec::new(),
            controls: Vec::new(),
        };
    }
    let controls = if gathered.is_empty() {
        config
            .faults
            .0
            .iter()
            .map(|t| ControlView {
                name: t.name.clone(),
                control: t.control.clone(),
                mode: None,
                error: None,
            })
            .collect()
    } else {
        gathered
    };
    FaultsView {
        enabled,
        modes: CONSOLE_MODES.into_iter().map(mode_view).collect(),
        controls,
    }
}

fn source_view<T>(url: &str, result: &Result<T, String>) -> SourceView {
    SourceView {
        url: url.to_string(),
        ok: result.is_ok(),
        error: result.as_ref().err().cloned(),
    }
}

/// The proxy's packagers for a signal, followed by those it routed the signal
/// to within [`GONE_SHOWN_FOR`] but no longer does, shown as [`GONE`]. `seen`
/// is the signal's memory of packagers and when they were last routed.
fn with_gone(
    seen: &mut Vec<(String, Instant)>,
    mut current: Vec<PackagerView>,
    now: Instant,
) -> Vec<PackagerView> {
    for p in &current {
        match seen.iter_mut().find(|(base, _)| base == &p.packager) {
            Some(entry) => entry.1 = now,
            None => seen.push((p.packager.clone(), now)),
        }
    }
    seen.retain(|(_, at)| now.saturating_duration_since(*at) < GONE_SHOWN_FOR);
    for (base, _) in seen.iter() {
        if !current.iter().any(|p| &p.packager == base) {
            current.push(PackagerView {
                packager: base.clone(),
                health: GONE.to_string(),
                active: false,
                newest_sequence: None,
                advanced_ms_ago: None,
                last_error: Some(
                    "not in the proxy's routes any more (discovery stopped reporting it)".into(),
                ),
            });
        }
    }
    current
}

/// Adds an entry the timeline does not hold yet (the proxy reports its recent
/// switches at every poll), dropping the oldest beyond [`TIMELINE_CAPACITY`].
fn remember(timeline: &mut VecDeque<TimelineEntry>, entry: TimelineEntry) {
    if timeline.contains(&entry) {
        return;
    }
    timeline.push_back(entry);
    while timeline.len() > TIMELINE_CAPACITY {
        timeline.pop_front();
    }
}

/// Newest first: by time (second resolution), then latest learnt first.
fn newest_first(timeline: &VecDeque<TimelineEntry>) -> Vec<TimelineEntry> {
    let mut entries: Vec<TimelineEntry> = timeline.iter().rev().cloned().collect();
    entries.sort_by(|a, b| b.at().cmp(a.at()));
    entries
}

fn now_text() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn routes(
    console: Arc<Console>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    http::healthcheck("console")
        .or(assets(console.clone()))
        .unify()
        .or(state(console.clone()))
        .unify()
        .or(events(console.clone()))
        .unify()
        .or(faults(console))
        .unify()
        .recover(http::recover)
        .unify()
}

fn with_console(
    console: Arc<Console>,
) -> impl Filter<Extract = (Arc<Console>,), Error = Infallible> + Clone {
    warp::any().map(move || console.clone())
}

/// `GET /`, `GET /console.js`, `GET /hls.min.js`.
fn assets(console: Arc<Console>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let page = warp::path::end().map(|| Asset::Page);
    let script = warp::path!("console.js").map(|| Asset::Script);
    let hls = warp::path!("hls.min.js").map(|| Asset::HlsJs);
    page.or(script)
        .unify()
        .or(hls)
        .unify()
        .and(warp::get())
        .and(with_console(console))
        .then(|asset: Asset, console: Arc<Console>| async move { console.asset(asset).await })
}

/// `GET /api/state`: the latest state as JSON.
fn state(console: Arc<Console>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "state")
        .and(warp::get())
        .and(with_console(console))
        .map(|console: Arc<Console>| {
            let mut response = json_ok(&*console.snapshot());
            response
                .headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
            response
        })
}

/// `GET /api/events`: Server-Sent Events, one `state` event per refresh,
/// the current state first; the stream ends at shutdown.
fn events(console: Arc<Console>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "events")
        .and(warp::get())
        .and(with_console(console))
        .map(|console: Arc<Console>| {
            let stream = state_events(console.state.subscribe(), console.shutdown.clone());
            warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response()
        })
}

fn state_events(
    rx: watch::Receiver<Arc<ConsoleState>>,
    shutdown: Shutdown,
) -> impl futures_util::Stream<Item = Result<warp::sse::Event, Infallible>> + Send + 'static {
    futures_util::stream::unfold((rx, true), move |(mut rx, first)| {
        let shutdown = shutdown.clone();
        async move {
            if !first {
                tokio::select! {
                    changed = rx.changed() => changed.ok()?,
                    _ = shutdown.wait() => return None,
                }
            }
            let state = rx.borrow_and_update().clone();
            let data = match serde_json::to_string(&*state) {
                Ok(data) => data,
                Err(e) => {
                    log::error!("Console: cannot encode the state: {e}");
                    return None;
                }
            };
            let mut event = warp::sse::Event::default().event("state").data(data);
            if first {
                event = event.retry(SSE_RETRY);
            }
            Some((Ok(event), (rx, false)))
        }
    })
}

/// `POST /api/faults/<name>/<mode>` with `Authorization: Bearer <token>`.
fn faults(console: Arc<Console>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "faults" / String / String)
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_console(console))
        .then(
            |name: String, mode: String, auth: Option<String>, console: Arc<Console>| async move {
                console.inject(&name, &mode, auth).await
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    const TOKEN: &str = "console-token-0123456789";

    fn assets_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let hls = dir.path().join("node_modules/hls.js/dist");
        std::fs::create_dir_all(&hls).expect("mkdir");
        std::fs::write(dir.path().join("console.html"), "<!doctype html>page").expect("write");
        std::fs::write(dir.path().join("console.js"), "// script").expect("write");
        std::fs::write(hls.join("hls.min.js"), "// hls").expect("write");
        std::fs::write(dir.path().join("secret.txt"), "secret").expect("write");
        dir
    }

    fn config(assets: &Path, faults: &[&str]) -> ConsoleConfig {
        let mut args = vec![
            "console".to_string(),
            "--listen-host".into(),
            "127.0.0.1".into(),
            "--assets".into(),
            assets.display().to_string(),
            "--proxy-url".into(),
            "http://127.0.0.1:1".into(),
            "--origin-url".into(),
            "http://127.0.0.1:1".into(),
        ];
        if !faults.is_empty() {
            args.push("--faults".into());
            args.push(faults.join(","));
        }
        let mut config = ConsoleConfig::try_parse_from(args).expect("valid flags");
        if !faults.is_empty() {
            config.fault_token = Some(Token::parse(TOKEN, "test token").expect("long enough"));
        }
        config
    }

    fn console(assets: &Path, faults: &[&str]) -> Arc<Console> {
        Arc::new(Console::new(config(assets, faults), Shutdown::new()).expect("valid config"))
    }

    async fn post(c: &Arc<Console>, path: &str, auth: Option<&str>) -> (u16, serde_json::Value) {
        let api = routes(c.clone());
        let mut req = warp::test::request().method("POST").path(path);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.reply(&api).await;
        let body = serde_json::from_slice(res.body()).expect("JSON answer");
        (res.status().as_u16(), body)
    }

    #[tokio::test]
    async fn fault_route_is_404_when_controls_are_off() {
        let dir = assets_dir();
        let c = console(dir.path(), &[]);
        let (status, body) = post(
            &c,
            "/api/faults/server1/reset",
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
        assert_eq!(status, 404);
        assert!(
            body["error"].as_str().unwrap_or("").contains("off"),
            "{body}"
        );
        assert!(!c.snapshot().faults.enabled);
    }

    #[tokio::test]
    async fn fault_route_needs_the_token_and_an_offered_mode() {
        let dir = assets_dir();
        // Nothing listens on port 1: a correct request reaches the forwarding
        // step and fails there with 502, which proves the checks passed.
        let c = console(dir.path(), &["server1=http://127.0.0.1:1"]);
        assert!(c.snapshot().faults.enabled);
        for auth in [None, Some("Bearer wrong-token-0123456789"), Some(TOKEN)] {
            let (status, body) = post(&c, "/api/faults/server1/reset", auth).await;
            assert_eq!(status, 401, "{auth:?}: {body}");
        }
        let bearer = format!("Bearer {TOKEN}");
        let (status, _) = post(&c, "/api/faults/server1/slow", Some(&bearer)).await;
        assert_eq!(status, 400, "slow is not offered");
        let (status, _) = post(&c, "/api/faults/server9/reset", Some(&bearer)).await;
        assert_eq!(status, 404, "unknown control");
        let (status, body) = post(&c, "/api/faults/server1/reset", Some(&bearer)).await;
        assert_eq!(status, 502, "{body}");
    }

    #[tokio::test]
    async fn assets_are_served_with_their_types_and_nothing_else() {
        let dir = assets_dir();
        let api = routes(console(dir.path(), &[]));
        for (path, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/console.js", "text/javascript; charset=utf-8"),
            ("/hls.min.js", "text/javascript; charset=utf-8"),
        ] {
            let res = warp::test::request().path(path).reply(&api).await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.headers()["content-type"], ty, "{path}");
            assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        }
        let res = warp::test::request().path("/").reply(&api).await;
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .expect("ASCII");
        assert!(
            csp.contains("connect-src 'self' http://127.0.0.1:1"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self';"), "{csp}");
        for path in [
            "/secret.txt",
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/console.js/../secret.txt",
            "/..%2fsecret.txt",
            "/node_modules/hls.js/dist/hls.min.js",
            "/console.html",
            "/hls.min.js/x",
        ] {
            let res = warp::test::request().path(path).reply(&api).await;
            assert_eq!(res.status(), 404, "{path}");
            assert!(
                !String::from_utf8_lossy(res.body()).contains("secret"),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn state_is_json_and_health_answers() {
        let dir = assets_dir();
        let api = routes(console(dir.path(), &[]));
        let res = warp::test::request().path("/api/state").reply(&api).await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
        assert_eq!(body["player_base"], "http://127.0.0.1:1");
        assert_eq!(body["faults"]["enabled"], false);
        let res = warp::test::request().path("/healthcheck").reply(&api).await;
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn unsafe_fault_configurations_are_refused() {
        let dir = assets_dir();
        let mut c = config(dir.path(), &["server1=http://127.0.0.1:9091"]);
        c.fault_token = None;
        assert!(matches!(
            Console::new(c, Shutdown::new()),
            Err(ConsoleError::TokenMissing)
        ));
        let mut c = config(dir.path(), &["server1=http://127.0.0.1:9091"]);
        c.listen.host = "0.0.0.0".parse().expect("address");
        assert!(matches!(
            Console::new(c, Shutdown::new()),
            Err(ConsoleError::NotLocal(_))
        ));
        assert!(parse_fault_targets("a=http://127.0.0.1:9091,a=http://127.0.0.1:9092").is_err());
        assert_eq!(parse_fault_targets(""), Ok(FaultTargets::default()));
        assert_eq!(
            parse_fault_targets("a=http://127.0.0.1:1, b=http://[::1]:2").map(|t| t.0.len()),
            Ok(2)
        );
        assert!(parse_fault_target("server1=http://10.0.0.5:9091").is_err());
        assert!(parse_fault_target("server1=http://example.com:9091").is_err());
        assert!(parse_fault_target("http://127.0.0.1:9091").is_err());
        assert!(parse_fault_target("bad name=http://127.0.0.1:9091").is_err());
        assert_eq!(
            parse_fault_target("s-1=http://localhost:9091/").map(|t| t.control),
            Ok("http://localhost:9091".to_string())
        );
        assert!(parse_fault_token("short").is_err());
    }

    #[test]
    fn missing_hls_js_is_one_clear_error() {
        let dir = assets_dir();
        std::fs::remove_file(dir.path().join("node_modules/hls.js/dist/hls.min.js"))
            .expect("remove");
        let error = Console::new(config(dir.path(), &[]), Shutdown::new())
            .err()
            .expect("refused");
        assert!(error.to_string().contains("scripts/setup.sh"), "{error}");
    }

    #[test]
    fn packagers_that_leave_the_routes_show_as_gone_for_a_while() {
        let view = |base: &str| PackagerView {
            packager: base.into(),
            health: "fresh".into(),
            active: false,
            newest_sequence: Some(1),
            advanced_ms_ago: Some(0),
            last_error: None,
        };
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let shown = with_gone(&mut seen, vec![view("a"), view("b")], t0);
        assert_eq!(shown.len(), 2);
        let shown = with_gone(&mut seen, vec![view("b")], t0 + Duration::from_secs(1));
        let healths: Vec<(&str, &str)> = shown
            .iter()
            .map(|p| (p.packager.as_str(), p.health.as_str()))
            .collect();
        assert_eq!(healths, vec![("b", "fresh"), ("a", GONE)]);
        let later = t0 + GONE_SHOWN_FOR + Duration::from_secs(1);
        let shown = with_gone(&mut seen, vec![view("b")], later);
        assert_eq!(shown.len(), 1, "forgotten after {GONE_SHOWN_FOR:?}");
    }

    #[test]
    fn the_timeline_keeps_each_event_once_newest_first() {
        let mut t = VecDeque::new();
        let switch = |at: &str, to: &str| TimelineEntry::Switch {
            at: at.into(),
            signal: "live01".into(),
            from: None,
            to: to.into(),
            reason: "first choice".into(),
        };
        remember(&mut t, switch("2025-01-01 10:00:00", "a"));
        remember(&mut t, switch("2025-01-01 10:00:05", "b"));
        remember(&mut t, switch("2025-01-01 10:00:00", "a"));
        assert_eq!(t.len(), 2);
        let shown = newest_first(&t);
        assert_eq!(shown[0], switch("2025-01-01 10:00:05", "b"));
        for k in 0..(TIMELINE_CAPACITY + 5) {
            remember(&mut t, switch("2025-01-01 11:00:00", &k.to_string()));
        }
        assert_eq!(t.len(), TIMELINE_CAPACITY);
    }
}
