//! Prometheus metrics: the registry helpers every service's own metrics are
//! made with, what every server shares (requests by route template and
//! status, their latency, media bytes served) and `GET /metrics`.
//!
//! Each service keeps its own facts beside its code: the proxy's freshness
//! and switches in `net::proxy::metrics`, the worker's segments and restarts
//! in `pipeline::metrics`, reports received in `net::reporter::metrics`,
//! discovery rounds in `net::discovery`. Route labels are templates
//! (`/:signal/:segment`), never raw paths, so cardinality stays bounded.

use std::convert::Infallible;
use std::sync::LazyLock;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, TextEncoder,
};
use warp::reply::Response;
use warp::Filter;

/// Registers a freshly made metric in the default registry. Both steps fail
/// only on a programming error (a malformed or duplicate name).
pub(crate) fn register<M>(name: &str, made: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = made.unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    prometheus::default_registry()
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

pub(crate) fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(name, IntCounterVec::new(Opts::new(name, help), labels))
}

pub(crate) fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(name, GaugeVec::new(Opts::new(name, help), labels))
}

pub(crate) fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(name, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// Requests answered, by service, route template and status.
pub(crate) static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_http_requests_total",
        "HTTP requests answered, by service, route template and status.",
        &["service", "route", "status"],
    )
});

/// Request latency, by service and route template.
pub(crate) static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let name = "nonstop_http_request_duration_seconds";
    register(
        name,
        HistogramVec::new(
            HistogramOpts::new(
                name,
                "Time to answer an HTTP request, by service and route template.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["service", "route"],
        ),
    )
});

/// Media bytes served to clients (packagers and proxy), by service and kind.
pub(crate) static BYTES_SERVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_bytes_served_total",
        "Playlist and segment bytes served, by service and kind.",
        &["service", "kind"],
    )
});

/// The label of a media kind.
pub(crate) fn kind_label(kind: crate::hls::MediaKind) -> &'static str {
    match kind {
        crate::hls::MediaKind::Playlist => "playlist",
        crate::hls::MediaKind::Segment => "segment",
    }
}

/// Counts media bytes answered by `service`.
pub(crate) fn count_bytes_served(service: &str, kind: crate::hls::MediaKind, bytes: usize) {
    let kind = kind_label(kind);
    BYTES_SERVED
        .with_label_values(&[service, kind])
        .inc_by(bytes as u64);
}

/// The route template of a request path, for labels.
pub(crate) fn route_label(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthcheck"] => "/healthcheck",
        ["metrics"] => "/metrics",
        ["status"] => "/status",
        ["ingests"] => "/ingests",
        ["signals"] => "/signals",
        ["live", _] => "/live/:signal",
        ["live", _, "packagers"] => "/live/:signal/packagers",
        [_, f] if f.ends_with(".m3u8") => "/:signal/:playlist",
        [_, f] if f.ends_with(".ts") => "/:signal/:segment",
        [""] => "/",
        _ => "other",
    }
}

/// `GET /metrics`: every registered metric in Prometheus text format.
pub(crate) fn route() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("metrics").and(warp::get()).map(|| {
        let mut body = Vec::new();
        let families = prometheus::gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut body) {
            log::error!("cannot encode metrics: {e}");
        }
        let mut response = Response::new(body.into());
        response.headers_mut().insert(
            "content-type",
            warp::http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        response
    })
}

/// Wraps a service's routes so every answer is counted and timed.
pub(crate) fn instrument<F>(
    service: &'static str,
    routes: F,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    routes
        .with(warp::log::custom(move |info| {
            let route = route_label(info.path());
            HTTP_REQUESTS
                .with_label_values(&[service, route, info.status().as_str()])
                .inc();
            HTTP_DURATION
                .with_label_values(&[service, route])
                .observe(info.elapsed().as_secs_f64());
        }))
        .map(warp::Reply::into_response)
}

/// A server for a program that has no other HTTP routes (worker, discovery):
/// `GET /metrics` and `GET /healthcheck`.
pub(crate) fn standalone_routes(
    service: &'static str,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    standalone_routes_with(service, super::http::healthcheck(service))
}

/// Like [`standalone_routes`], with the program's own `/healthcheck` (the
/// worker's answers from its signals' statuses).
pub(crate) fn standalone_routes_with<H>(
    service: &'static str,
    healthcheck: H,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone
where
    H: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    instrument(
        service,
        route()
            .or(healthcheck)
            .unify()
            .recover(super::http::recover)
            .unify(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_templates() {
        assert_eq!(route_label("/live01/playlist.m3u8"), "/:signal/:playlist");
        assert_eq!(route_label("/live01/segment000001.ts"), "/:signal/:segment");
        assert_eq!(route_label("/live/live01"), "/live/:signal");
        assert_eq!(route_label("/live/x/packagers"), "/live/:signal/packagers");
        assert_eq!(route_label("/../../etc/passwd"), "other");
        assert_eq!(route_label("/ingests"), "/ingests");
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text() {
        BYTES_SERVED
            .with_label_values(&["metrics_test", "segment"])
            .inc();
        let api = standalone_routes("test");
        let res = warp::test::request().path("/metrics").reply(&api).await;
        assert_eq!(res.status(), 200);
        let text = String::from_utf8_lossy(res.body());
        assert!(
            text.contains("nonstop_bytes_served_total{kind=\"segment\",service=\"metrics_test\"}"),
            "{text}"
        );
        let res = warp::test::request().path("/healthcheck").reply(&api).await;
        assert_eq!(res.status(), 200);
    }
}
