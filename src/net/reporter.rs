//! The reporter: keeps discovery's latest report per signal (with expiry) and
//! exposes it. `POST /ingests` takes `{"signal":..,"packagers":[..]}`;
//! `GET /ingests` answers the seed's shape:
//! `[{"signal":"live01","packagers":[...],"last_reported":"Fri, 05 Apr 2024 11:23:45 -03"}]`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::config::{parse_base_url, parse_port, parse_seconds, ListenArgs};
use super::hls::is_valid_signal_name;
use super::http::{self, allow_any_origin, json_error, json_ok, MAX_JSON_BODY_BYTES};
use super::store::{IngestStore, StoreError, StoredIngest};
use crate::shutdown::Shutdown;

/// A signal not reported again within this long disappears.
pub const DEFAULT_REPORT_TTL: &str = "15";
/// Most packagers one report may list.
const MAX_PACKAGERS_PER_REPORT: usize = 16;

/// Keeps the latest report per signal and serves `GET /ingests`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "reporter", version)]
pub struct ReporterConfig {
    /// Port to listen on.
    #[arg(long, env = "REPORTER_PORT", default_value = "2000", value_parser = parse_port)]
    pub port: u16,
    /// Seconds after which a signal no longer reported disappears.
    #[arg(long, env = "REPORT_TTL_SECONDS", default_value = DEFAULT_REPORT_TTL, value_parser = parse_seconds)]
    pub ttl: Duration,
    /// Where reports are kept: `memory`, or a `redis://host:port` URL to share
    /// them between several reporters.
    #[arg(long, env = "REPORTER_STORE", default_value = "memory")]
    pub store: String,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// What discovery POSTs for one signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub signal: String,
    pub packagers: Vec<String>,
}

/// One entry of `GET /ingests`, exactly the seed's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ingest {
    pub signal: String,
    pub packagers: Vec<String>,
    pub last_reported: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReporterError {
    #[error("cannot open the store '{0}': {1}")]
    Store(String, StoreError),
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}

impl Report {
    /// Checks names and URLs; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
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
        }
        Ok(())
    }
}

/// Formats a report time as the seed does: `Fri, 05 Apr 2024 11:23:45 -03`.
pub fn format_report_time(unix_ms: u64) -> String {
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
    let store = IngestStore::open(&config.store, config.ttl)
        .await
        .map_err(|e| ReporterError::Store(config.store.clone(), e))?;
    log::info!(
        "Reporter keeps reports in {} for {:.0} s",
        store.kind(),
        config.ttl.as_secs_f64()
    );
    super::server::serve(
        "reporter",
        &config.listen,
        config.port,
        routes(Arc::new(store)),
        shutdown,
    )
    .await?;
    Ok(())
}

pub fn routes(
    store: Arc<IngestStore>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_store = warp::any().map(move || store.clone());
    let list = warp::path!("ingests")
        .and(warp::get())
        .and(with_store.clone())
        .then(list_ingests);
    let report = warp::path!("ingests")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_JSON_BODY_BYTES))
        .and(warp::body::json())
        .and(with_store)
        .then(accept_report);
    http::healthcheck("reporter")
        .or(list)
        .unify()
        .or(report)
        .unify()
        .recover(http::recover)
        .unify()
}

async fn list_ingests(store: Arc<IngestStore>) -> Response {
    match store.list().await {
        Ok(list) => {
            let ingests: Vec<Ingest> = list.into_iter().map(Ingest::from).collect();
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

async fn accept_report(report: Report, store: Arc<IngestStore>) -> Response {
    if let Err(reason) = report.validate() {
        log::warn!("Rejected report: {reason}");
        return json_error(StatusCode::BAD_REQUEST, reason);
    }
    match store.put(&report.signal, &report.packagers).await {
        Ok(()) => {
            log::debug!(
                "Report for '{}': {}",
                report.signal,
                report.packagers.join(", ")
            );
            json_ok(&serde_json::json!({ "accepted": report.signal }))
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
    use super::*;
    use crate::net::store::MemoryStore;

    fn api() -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
        routes(Arc::new(IngestStore::Memory(MemoryStore::new(
            Duration::from_secs(15),
        ))))
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
