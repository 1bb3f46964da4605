//! Why a viewer request cannot be answered with media, and the answer it
//! gets instead: a JSON error, 404 (cacheable by a CDN for a second) when
//! the object does not exist, 502 (never cached) when no packager or origin
//! could give it; for a blocking reload (low latency), 400 for broken or
//! too-far parameters and 503 when the part did not come in time (neither
//! cached). A leaf, shared by every part of the proxy.

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::net::delivery::{NOT_FOUND_CACHE_CONTROL, UNAVAILABLE_CACHE_CONTROL};
use crate::service::http::{allow_any_origin, json_error};

/// Why a request cannot be answered with media.
#[derive(Debug, Clone)]
pub(super) enum Refusal {
    NotFound(String),
    Unavailable(String),
    /// A blocking reload's parameters are broken or ask too far ahead.
    BadRequest(String),
    /// A blocking reload's part was not listed within its hold.
    NotYet(String),
}

impl Refusal {
    pub(super) fn message(&self) -> &str {
        match self {
            Refusal::NotFound(m)
            | Refusal::Unavailable(m)
            | Refusal::BadRequest(m)
            | Refusal::NotYet(m) => m,
        }
    }

    /// A label for metrics.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => "not_found",
            Refusal::Unavailable(_) => "unavailable",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::NotYet(_) => "not_yet",
        }
    }

    /// The JSON error, cacheable by a CDN for a second if a 404, never if a
    /// 502.
    pub(super) fn into_response(self) -> Response {
        let (status, msg, caching) = match self {
            Refusal::NotFound(m) => (StatusCode::NOT_FOUND, m, NOT_FOUND_CACHE_CONTROL),
            Refusal::Unavailable(m) => (StatusCode::BAD_GATEWAY, m, UNAVAILABLE_CACHE_CONTROL),
            Refusal::BadRequest(m) => (StatusCode::BAD_REQUEST, m, UNAVAILABLE_CACHE_CONTROL),
            Refusal::NotYet(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                m,
                UNAVAILABLE_CACHE_CONTROL,
            ),
        };
        let mut response = json_error(status, msg);
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static(caching));
        allow_any_origin(response)
    }
}
