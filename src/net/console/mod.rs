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
//! on this machine. Only [`CONSOLE_MODES`](config::CONSOLE_MODES) can be set. When off, the fault
//! route answers 404.
//!
//! # Layout
//! - this file: the budgets, the shared [`Console`] and its start-up checks;
//! - [`config`]: flags, fault proxies, offered modes, start-up errors;
//! - `gather`: the one loop that asks the sources and publishes the state;
//! - [`view`]: the state the page reads, and the pure functions building it;
//! - `faults`: the token-guarded relay to the fault proxies;
//! - `assets`: the closed set of files the page needs, with its headers;
//! - `routes`: one small warp filter per route, SSE included.

mod assets;
mod config;
mod faults;
mod gather;
mod routes;
mod view;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::service::http;
use crate::service::shutdown::Shutdown;
use assets::{content_security_policy, Asset};
pub use config::{ConsoleConfig, ConsoleError, DemoFault, CONSOLE_MODES};
use routes::routes;
use view::{faults_view, ConsoleState, SourceView, TimelineEntry};

/// How often the state is gathered and pushed to every open page.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Budget for one request to the origin, the proxy or a fault proxy while
/// gathering: below the refresh interval, so one slow source cannot hold the
/// page's clock.
pub(crate) const SOURCE_TIMEOUT: Duration = Duration::from_millis(800);
/// Budget for switching a fault proxy's mode.
pub(crate) const FAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect budget towards the sources (all on the local network).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Timeline entries kept (switches and faults), oldest dropped first.
pub(crate) const TIMELINE_CAPACITY: usize = 200;
/// How long a browser waits before reconnecting a dropped event stream.
const SSE_RETRY: Duration = Duration::from_secs(1);
/// A packager that left a signal's routes (discovery stopped reporting it) is
/// still shown, as `gone`, for this long: losing redundancy is news.
pub(crate) const GONE_SHOWN_FOR: Duration = Duration::from_secs(600);
/// Health shown for such a packager.
pub(crate) const GONE: &str = "gone";
/// The console's shared state.
pub(crate) struct Console {
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
    pub(crate) fn new(config: ConsoleConfig, shutdown: Shutdown) -> Result<Console, ConsoleError> {
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
            workers: Vec::new(),
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
    pub(crate) fn snapshot(&self) -> Arc<ConsoleState> {
        self.state.borrow().clone()
    }
}

fn now_text() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::config::{parse_fault_target, parse_fault_targets, parse_fault_token, FaultTargets};
    use super::view::{newest_first, remember, with_gone, PackagerView};
    use super::*;
    use crate::net::auth::Token;
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
            edge_ms_ago: None,
            behind_twin_ms: None,
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
