//! The reporter: keeps, per signal, every packager discovery reported serving
//! it within the TTL (the union of recent reports: see [`store`]) and exposes
//! them. `POST /ingests` takes `{"signal":..,"packagers":[..]}`;
//! `GET /ingests` answers the seed's shape:
//! `[{"signal":"live01","packagers":[...],"last_reported":"Fri, 05 Apr 2024 11:23:45 -03"}]`.

mod metrics;
mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::auth::{Token, TokenArgs};
use crate::api::{Ingest, Report, ReportAccepted};
use crate::hls::is_valid_signal_name;
use crate::service::config::{parse_base_url, parse_port, parse_seconds, ListenArgs};
use crate::service::http::{self, allow_any_origin, json_error, json_ok, MAX_JSON_BODY_BYTES};
use crate::service::shutdown::Shutdown;
use metrics::REPORTS;
use store::{IngestStore, StoreError, StoredIngest};

/// A signal not reported again within this long disappears.
pub const DEFAULT_REPORT_TTL: &str = "15";
/// Most packagers one report may list.
const MAX_PACKAGERS_PER_REPORT: usize = 16;

/// Keeps each signal's recently reported packagers and serves `GET /ingests`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "reporter", version)]
pub struct ReporterConfig {
    /// Port to listen on.
    #[arg(long, env = "REPORTER_PORT", default_value = "2000", value_parser = parse_port)]
    pub port: u16,
    /// Seconds after which a packager no report names any more leaves its
    /// signal's list (and a signal left with none disappears).
    #[arg(long, env = "REPORT_TTL_SECONDS", default_value = DEFAULT_REPORT_TTL, value_parser = parse_seconds)]
    pub ttl: Duration,
    /// Where reports are kept: `memory`, or a `redis://host:port` URL to share
    /// them between several reporters.
    #[arg(long, env = "REPORTER_STORE", default_value = "memory")]
    pub store: String,
    /// The packagers a report may name, comma-separated (scheme, host and port
    /// are compared), in the order a signal's packagers are listed (the
    /// origin answers with the first); defaults to PACKAGERS.
    #[arg(long, env = "REPORTER_ALLOWED_PACKAGERS", value_delimiter = ',', value_parser = parse_base_url)]
    pub allowed_packagers: Option<Vec<String>>,
    /// The configured packagers, the default allow-list.
    #[arg(long, env = "PACKAGERS", default_value = "http://localhost:8080,http://localhost:9090", value_delimiter = ',', value_parser = parse_base_url)]
    pub packagers: Vec<String>,
    /// Require the token for `GET /ingests` too.
    #[arg(long, env = "REPORTER_PROTECT_READS", default_value_t = false)]
    pub protect_reads: bool,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// What the reporter's routes share.
pub(crate) struct ReporterState {
    pub store: IngestStore,
    /// When set, reports (and, with `protect_reads`, reads) need it.
    pub token: Option<Token>,
    pub protect_reads: bool,
    /// Origins (`scheme://host:port`) a reported packager must have, in the
    /// configured order, which is also the order a signal's packagers are
    /// listed in (the origin's first is its answer to `GET /live/<signal>`).
    pub allowed_origins: Vec<String>,
}

/// `scheme://host:port` of a URL, the unit the allow-list compares.
fn origin_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

impl ReporterState {
    pub(crate) fn new(
        store: IngestStore,
        token: Option<Token>,
        protect_reads: bool,
        allowed: &[String],
    ) -> Self {
        ReporterState {
            store,
            token,
            protect_reads,
            allowed_origins: allowed.iter().filter_map(|a| origin_of(a)).collect(),
        }
    }

    /// Puts `packagers` in the configured order (as discovery, iterating the
    /// same list, reports them), whatever the order reports arrived in.
    fn in_configured_order(&self, packagers: &mut [String]) {
        packagers.sort_by_key(|p| {
            origin_of(p)
                .and_then(|o| self.allowed_origins.iter().position(|a| *a == o))
                .unwrap_or(usize::MAX)
        });
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        self.token.as_ref().is_none_or(|t| t.admits(header))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReporterError {
    #[error("cannot open the store '{0}': {1}")]
    Store(String, StoreError),
    #[error("{0}")]
    Token(String),
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}

impl Report {
    /// Checks names and URLs against the allowed packager origins; the
    /// message says what is wrong.
    pub fn validate(&self, allowed_origins: &[String]) -> Result<(), String> {
        if !is_valid_signal_name(&self.signal) {
            return Err(format!(
                "signal '{}' is not a valid name ([A-Za-z0-9_-]{{1,64}})",
                self.signal.chars().take(80).collect::<String>()
            ));
        }
        if self.packagers.len() > MAX_PACKAGERS_PER_REPORT {
            return Err(format!(
                "at most {MAX_PACKAGERS_PER_REPORT} packagers per report"
            ));
        }
        for p in &self.packagers {
            parse_base_url(p).map_err(|e| format!("packager {e}"))?;
            let allowed = origin_of(p).is_some_and(|o| allowed_origins.contains(&o));
            if !allowed {
                return Err(format!("packager '{p}' is not on the allow-list"));
            }
        }
        Ok(())
    }
}

/// Formats a report time as the seed does: `Fri, 05 Apr 2024 11:23:45 -03`.
pub(crate) fn format_report_time(unix_ms: u64) -> String {
    let utc = chrono::DateTime::from_timestamp_millis(unix_ms as i64).unwrap_or_default();
    utc.with_timezone(&chrono::Local)
        .format("%a, %d %b %Y %H:%M:%S %:::z")
        .to_string()
}

impl From<StoredIngest> for Ingest {
    fn from(s: StoredIngest) -> Self {
        Ingest {
            signal: s.signal,
            packagers: s.packagers,
            last_reported: format_report_time(s.reported_at_ms),
        }
    }
}

pub async fn run(config: ReporterConfig, shutdown: Shutdown) -> Result<(), ReporterError> {
    let token = config.token.load().map_err(ReporterError::Token)?;
    if token.is_none() {
        log::warn!("REPORTER_TOKEN is not set: anyone who can reach the reporter can post reports");
    }
    let store = IngestStore::open(&config.store, config.ttl)
        .await
        .map_err(|e| ReporterError::Store(config.store.clone(), e))?;
    let allowed = config
        .allowed_packagers
        .as_ref()
        .unwrap_or(&config.packagers);
    log::info!("Reports may name these packagers: {}", allowed.join(", "));
    log::info!(
        "Reporter keeps reports in {} for {:.0} s",
        store.kind(),
        config.ttl.as_secs_f64()
    );
    crate::service::server::serve(
        "reporter",
        &config.listen,
        config.port,
        crate::service::metrics::instrument(
            "reporter",
            routes(Arc::new(ReporterState::new(
                store,
                token,
                config.protect_reads,
                allowed,
            ))),
        ),
        shutdown,
    )
    .await?;
    Ok(())
}

pub(crate) fn routes(
    state: Arc<ReporterState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let authorization = warp::header::optional::<String>("authorization");
    let list = warp::path!("ingests")
        .and(warp::get())
        .and(authorization)
        .and(with_state.clone())
        .then(
            |auth: Option<String>, state: Arc<ReporterState>| async move {
                if state.protect_reads && !state.authorized(auth.as_deref()) {
                    return unauthorized();
                }
                list_ingests(&state).await
            },
        );
    let report = warp::path!("ingests")
        .and(warp::post())
        .and(authorization)
        .and(with_state)
        .and(warp::body::content_length_limit(MAX_JSON_BODY_BYTES))
        .and(warp::body::bytes())
        .then(
            |auth: Option<String>, state: Arc<ReporterState>, body: bytes::Bytes| async move {
                // The token is checked before the body is even parsed.
                if !state.authorized(auth.as_deref()) {
                    REPORTS.with_label_values(&["unauthorized"]).inc();
                    return unauthorized();
                }
                match serde_json::from_slice::<Report>(&body) {
                    Ok(report) => accept_report(report, &state).await,
                    Err(e) => {
                        REPORTS.with_label_values(&["rejected"]).inc();
                        json_error(StatusCode::BAD_REQUEST, format!("invalid report: {e}"))
                    }
                }
            },
        );
    http::healthcheck("reporter")
        .or(crate::service::metrics::route())
        .unify()
        .or(list)
        .unify()
        .or(report)
        .unify()
        .recover(http::recover)
        .unify()
}

fn unauthorized() -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, "missing or invalid token");
    response.headers_mut().insert(
        "www-authenticate",
        warp::http::HeaderValue::from_static("Bearer"),
    );
    response
}

async fn list_ingests(state: &ReporterState) -> Response {
    match state.store.list().await {
        Ok(list) => {
            let ingests: Vec<Ingest> = list
                .into_iter()
                .map(|mut entry| {
                    state.in_configured_order(&mut entry.packagers);
                    Ingest::from(entry)
                })
                .collect();
            allow_any_origin(json_ok(&ingests))
        }
        Err(e) => {
            log::error!("Cannot read reports: {e}");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {e}"),
            )
        }
    }
}

async fn accept_report(report: Report, state: &ReporterState) -> Response {
    if let Err(reason) = report.validate(&state.allowed_origins) {
        log::warn!("Rejected report: {reason}");
        REPORTS.with_label_values(&["rejected"]).inc();
        return json_error(StatusCode::BAD_REQUEST, reason);
    }
    match state.store.put(&report.signal, &report.packagers).await {
        Ok(()) => {
            REPORTS.with_label_values(&["accepted"]).inc();
            log::debug!(
                "Report for '{}': {}",
                report.signal,
                report.packagers.join(", ")
            );
            json_ok(&ReportAccepted {
                accepted: report.signal,
            })
        }
        Err(e) => {
            log::error!("Cannot store report for '{}': {e}", report.signal);
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {e}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::store::MemoryStore;
    use super::*;

    const TOKEN: &str = "discovery-token-0123456789";

    fn state(token: Option<&str>, protect_reads: bool) -> Arc<ReporterState> {
        let token = TokenArgs {
            token: token.map(String::from),
            token_file: None,
        }
        .load()
        .expect("valid token");
        Arc::new(ReporterState::new(
            IngestStore::Memory(MemoryStore::new(Duration::from_secs(15))),
            token,
            protect_reads,
            &[
                "http://localhost:8080".to_string(),
                "http://localhost:9090".to_string(),
            ],
        ))
    }

    fn api() -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
        routes(state(None, false))
    }

    fn report_body() -> serde_json::Value {
        serde_json::json!({"signal":"live01","packagers":["http://localhost:8080","http://localhost:9090"]})
    }

    #[tokio::test]
    async fn with_a_token_only_discovery_can_report() {
        let api = routes(state(Some(TOKEN), false));
        for auth in [None, Some("Bearer wrong-token-0123456789"), Some(TOKEN)] {
            let mut req = warp::test::request()
                .method("POST")
                .path("/ingests")
                .json(&report_body());
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.reply(&api).await;
            assert_eq!(res.status(), 401, "{auth:?}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer");
        }
        let res = warp::test::request().path("/ingests").reply(&api).await;
        assert_eq!(res.body().as_ref(), b"[]", "nothing changed");
        let res = warp::test::request()
            .method("POST")
            .path("/ingests")
            .header("authorization", format!("Bearer {TOKEN}"))
            .json(&report_body())
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn reads_can_be_protected_too() {
        let api = routes(state(Some(TOKEN), true));
        let res = warp::test::request().path("/ingests").reply(&api).await;
        assert_eq!(res.status(), 401);
        let res = warp::test::request()
            .path("/ingests")
            .header("authorization", format!("Bearer {TOKEN}"))
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn packagers_off_the_allow_list_are_refused() {
        let api = api();
        let res = warp::test::request()
            .method("POST")
            .path("/ingests")
            .json(&serde_json::json!({"signal":"live01","packagers":["http://evil.example:8080"]}))
            .reply(&api)
            .await;
        assert_eq!(res.status(), 400);
        let err: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
        assert!(
            err["error"]
                .as_str()
                .is_some_and(|e| e.contains("allow-list")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_report_comes_back_in_the_seed_shape() {
        let api = api();
        let res = warp::test::request()
            .method("POST")
            .path("/ingests")
            .json(&serde_json::json!({"signal":"live01","packagers":["http://localhost:8080","http://localhost:9090"]}))
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200, "{:?}", res.body());
        let res = warp::test::request().path("/ingests").reply(&api).await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
        let entry = &body[0];
        assert_eq!(entry["signal"], "live01");
        assert_eq!(
            entry["packagers"],
            serde_json::json!(["http://localhost:8080", "http://localhost:9090"])
        );
        let when = entry["last_reported"].as_str().expect("string");
        chrono::DateTime::parse_from_str(&format!("{when}00"), "%a, %d %b %Y %H:%M:%S %z")
            .unwrap_or_else(|e| panic!("'{when}' is not in the seed's format: {e}"));
        assert_eq!(entry.as_object().map(|o| o.len()), Some(3));
    }

    /// Two discoveries each report one packager (their hosts parted): the
    /// signal lists both, in the configured order, not in URL or arrival
    /// order.
    #[tokio::test]
    async fn packagers_reported_apart_are_listed_together_in_the_configured_order() {
        let state = Arc::new(ReporterState::new(
            IngestStore::Memory(MemoryStore::new(Duration::from_secs(15))),
            None,
            false,
            &[
                "http://10.0.0.2:9090".to_string(),
                "http://10.0.0.1:8080".to_string(),
            ],
        ));
        let api = routes(state);
        for packager in ["http://10.0.0.1:8080", "http://10.0.0.2:9090"] {
            let res = warp::test::request()
                .method("POST")
                .path("/ingests")
                .json(&serde_json::json!({"signal":"live01","packagers":[packager]}))
                .reply(&api)
                .await;
            assert_eq!(res.status(), 200, "{:?}", res.body());
        }
        let res = warp::test::request().path("/ingests").reply(&api).await;
        let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
        assert_eq!(
            body[0]["packagers"],
            serde_json::json!(["http://10.0.0.2:9090", "http://10.0.0.1:8080"])
        );
    }

    #[tokio::test]
    async fn bad_reports_are_refused_and_change_nothing() {
        let api = api();
        for body in [
            serde_json::json!({"signal":"../x","packagers":[]}),
            serde_json::json!({"signal":"live01","packagers":["ftp://x"]}),
            serde_json::json!({"signal":"live01"}),
            serde_json::json!({"signal":"live01","packagers":[],"extra":1}),
        ] {
            let res = warp::test::request()
                .method("POST")
                .path("/ingests")
                .json(&body)
                .reply(&api)
                .await;
            assert_eq!(res.status(), 400, "{body}");
            let err: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
            assert!(err["error"].is_string());
        }
        let res = warp::test::request().path("/ingests").reply(&api).await;
        assert_eq!(res.body().as_ref(), b"[]");
    }

    #[tokio::test]
    async fn oversized_bodies_get_413() {
        let api = api();
        let res = warp::test::request()
            .method("POST")
            .path("/ingests")
            .header("content-type", "application/json")
            .body(vec![b' '; (MAX_JSON_BODY_BYTES + 1) as usize])
            .reply(&api)
            .await;
        assert_eq!(res.status(), 413);
    }

    #[test]
    fn report_time_reads_like_the_seed() {
        let text = format_report_time(1_712_327_025_000);
        let re_ok = text.len() == "Fri, 05 Apr 2024 11:23:45 -03".len()
            || text.len() == "Fri, 05 Apr 2024 11:23:45 +00".len();
        assert!(re_ok, "{text}");
        assert!(text.contains("Apr 2024"), "{text}");
    }
}
