//! The origin: answers where a signal lives, from the reporter's view.
//! `GET /signals` -> `["live01"]`; `GET /live/<name>` ->
//! `{"signal":"live01","server":"http://localhost:8080/live01/playlist.m3u8"}`
//! ([`Location`]); `GET /live/<name>/packagers` -> every packager serving it
//! (what the proxy fails over between: [`Packagers`]). An unknown signal is a
//! 404 with a JSON error ([`crate::api::ErrorBody`]).
//!
//! Static stability: the last good answer from the reporter is kept and used,
//! with a warning, while the reporter cannot be reached.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::auth::{Token, TokenArgs};
use crate::api::{Ingest, Location, Packagers, SignalNames};
use crate::hls::{is_valid_signal_name, PLAYLIST_NAME};
use crate::service::config::{parse_base_url, parse_port, parse_seconds, ListenArgs};
use crate::service::http::{self, allow_any_origin, json_error, json_ok};
use crate::service::shutdown::Shutdown;

/// Budget for one request to the reporter.
const REPORTER_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers which packager serves a signal.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "origin", version)]
pub struct OriginConfig {
    /// Port to listen on.
    #[arg(long, env = "ORIGIN_PORT", default_value = "8001", value_parser = parse_port)]
    pub port: u16,
    /// Reporter base URL.
    #[arg(long, env = "REPORTER_URL", default_value = "http://localhost:2000", value_parser = parse_base_url)]
    pub reporter_url: String,
    /// Seconds a reporter answer is reused before asking again.
    #[arg(long, env = "ORIGIN_CACHE_SECONDS", default_value = "1", value_parser = parse_seconds)]
    pub cache_for: Duration,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// The reporter's view as the origin last saw it.
struct View {
    ingests: Vec<Ingest>,
    fetched_at: Instant,
}

/// Reads the reporter through a short cache, keeping the last good view.
pub(crate) struct ReporterView {
    client: reqwest::Client,
    reporter_url: String,
    cache_for: Duration,
    /// Sent to a reporter whose reads are protected.
    token: Option<Token>,
    last: Mutex<Option<View>>,
}

impl ReporterView {
    pub(crate) fn new(reporter_url: String, cache_for: Duration, token: Option<Token>) -> Self {
        ReporterView {
            client: http::client(REPORTER_TIMEOUT),
            reporter_url,
            cache_for,
            token,
            last: Mutex::new(None),
        }
    }

    /// The current ingests: cached, fresh, or (reporter down) the last known.
    pub(crate) async fn ingests(&self) -> Result<Vec<Ingest>, String> {
        let mut last = self.last.lock().await;
        if let Some(view) = last.as_ref() {
            if view.fetched_at.elapsed() < self.cache_for {
                return Ok(view.ingests.clone());
            }
        }
        match self.fetch().await {
            Ok(ingests) => {
                *last = Some(View {
                    ingests: ingests.clone(),
                    fetched_at: Instant::now(),
                });
                Ok(ingests)
            }
            Err(e) => match last.as_ref() {
                Some(view) => {
                    log::warn!(
                        "Reporter unreachable ({e}); answering from its view of {:.0} s ago",
                        view.fetched_at.elapsed().as_secs_f64()
                    );
                    Ok(view.ingests.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<Vec<Ingest>, String> {
        let mut request = self
            .client
            .get(format!("{}/ingests", self.reporter_url))
            .timeout(REPORTER_TIMEOUT);
        if let Some(token) = &self.token {
            request = request.header("authorization", token.bearer());
        }
        let res = request
            .send()
            .await
            .map_err(|e| format!("reporter unreachable: {}", http::root_cause(&e)))?;
        if !res.status().is_success() {
            return Err(format!("reporter answered {}", res.status()));
        }
        res.json()
            .await
            .map_err(|e| format!("reporter sent unreadable JSON: {e}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("{0}")]
    Token(String),
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}

pub async fn run(config: OriginConfig, shutdown: Shutdown) -> Result<(), OriginError> {
    let token = config.token.load().map_err(OriginError::Token)?;
    let view = Arc::new(ReporterView::new(
        config.reporter_url,
        config.cache_for,
        token,
    ));
    crate::service::server::serve(
        "origin",
        &config.listen,
        config.port,
        crate::service::metrics::instrument("origin", routes(view)),
        shutdown,
    )
    .await?;
    Ok(())
}

pub(crate) fn routes(
    view: Arc<ReporterView>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_view = warp::any().map(move || view.clone());
    let signals = warp::path!("signals")
        .and(warp::get())
        .and(with_view.clone())
        .then(|view: Arc<ReporterView>| async move {
            match view.ingests().await {
                Ok(ingests) => {
                    let names: SignalNames = ingests.into_iter().map(|i| i.signal).collect();
                    allow_any_origin(json_ok(&names))
                }
                Err(e) => unavailable(e),
            }
        });
    let live = warp::path!("live" / String)
        .and(warp::get())
        .and(with_view.clone())
        .then(|name: String, view: Arc<ReporterView>| async move {
            match packagers_of(&view, &name).await {
                Ok(packagers) => allow_any_origin(json_ok(&Location {
                    server: format!("{}/{name}/{PLAYLIST_NAME}", packagers[0]),
                    signal: name,
                })),
                Err(response) => response,
            }
        });
    let all = warp::path!("live" / String / "packagers")
        .and(warp::get())
        .and(with_view)
        .then(|name: String, view: Arc<ReporterView>| async move {
            match packagers_of(&view, &name).await {
                Ok(packagers) => allow_any_origin(json_ok(&Packagers {
                    signal: name,
                    packagers,
                })),
                Err(response) => response,
            }
        });
    http::healthcheck("origin")
        .or(crate::service::metrics::route())
        .unify()
        .or(signals)
        .unify()
        .or(live)
        .unify()
        .or(all)
        .unify()
        .recover(http::recover)
        .unify()
}

/// The packagers of a live signal (never empty), or the error answer.
async fn packagers_of(view: &ReporterView, name: &str) -> Result<Vec<String>, Response> {
    if !is_valid_signal_name(name) {
        return Err(not_found(name));
    }
    let ingests = view.ingests().await.map_err(unavailable)?;
    ingests
        .into_iter()
        .find(|i| i.signal == name && !i.packagers.is_empty())
        .map(|i| i.packagers)
        .ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> Response {
    let shown: String = name.chars().take(64).collect();
    allow_any_origin(json_error(
        StatusCode::NOT_FOUND,
        format!("signal '{shown}' is not live"),
    ))
}

fn unavailable(reason: String) -> Response {
    allow_any_origin(json_error(StatusCode::SERVICE_UNAVAILABLE, reason))
}
