//! The console's routes, one small filter each: assets, state, Server-Sent
//! Events and fault controls.

use std::convert::Infallible;
use std::sync::Arc;

use tokio::sync::watch;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::assets::Asset;
use super::view::ConsoleState;
use super::{Console, SSE_RETRY};
use crate::service::http::{self, json_ok};
use crate::service::shutdown::Shutdown;

pub(super) fn routes(
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

pub(super) fn with_console(
    console: Arc<Console>,
) -> impl Filter<Extract = (Arc<Console>,), Error = Infallible> + Clone {
    warp::any().map(move || console.clone())
}

/// `GET /`, `GET /console.js`, `GET /hls.min.js`.
pub(super) fn assets(
    console: Arc<Console>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
pub(super) fn state(
    console: Arc<Console>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
pub(super) fn events(
    console: Arc<Console>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "events")
        .and(warp::get())
        .and(with_console(console))
        .map(|console: Arc<Console>| {
            let stream = state_events(console.state.subscribe(), console.shutdown.clone());
            warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response()
        })
}

pub(super) fn state_events(
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
pub(super) fn faults(
    console: Arc<Console>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
