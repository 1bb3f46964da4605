//! HTTP pieces every service shares: binding with graceful shutdown, JSON
//! errors, CORS and the outgoing client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::api::{ErrorBody, HealthStatus, ServiceHealth};

/// Largest JSON body any service accepts (a report is a few hundred bytes).
pub(crate) const MAX_JSON_BODY_BYTES: u64 = 16 * 1024;

/// Why a server could not start: said in one line, then the program exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {reason} (is another program using port {port}?)")]
    Bind {
        addr: SocketAddr,
        port: u16,
        reason: String,
    },
}

/// A JSON error answer with the given status ([`ErrorBody`]).
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: message.into(),
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// A JSON answer with status 200.
pub(crate) fn json_ok<T: Serialize>(value: &T) -> Response {
    warp::reply::json(value).into_response()
}

/// Adds `Access-Control-Allow-Origin: *` so a page on another origin can play
/// the stream or read the JSON (the routes are public and carry no cookies).
pub(crate) fn allow_any_origin(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    response
}

/// Turns warp's own rejections (unknown route, wrong method, body too large or
/// not JSON) into JSON errors, so every answer of every service is JSON or media.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_string())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_JSON_BODY_BYTES} bytes"),
        )
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        (StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_string(),
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json".to_string(),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "length required".to_string())
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(allow_any_origin(json_error(status, message)))
}

/// `GET /healthcheck`: 200 with `{"status":"ok","service":<name>}` while the
/// process serves requests.
pub fn healthcheck(
    service: &'static str,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("healthcheck")
        .and(warp::get().or(warp::head()).unify())
        .map(move || {
            allow_any_origin(json_ok(&ServiceHealth {
                service: service.to_string(),
                status: HealthStatus::Ok,
            }))
        })
}

/// The innermost error message, which is the one that says what went wrong
/// ("Address already in use" rather than "error creating server listener").
/// The request's query string, empty when it has none (low-latency
/// playlist requests carry `_HLS_msn` / `_HLS_part` there).
pub(crate) fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The outgoing HTTP client: no redirects followed (a packager has no business
/// sending the proxy elsewhere), bounded connect time, pooled connections.
pub fn client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|e| panic!("the TLS backend failed to initialise: {e}"))
}
