//! Prometheus metrics for every service, served as text on `GET /metrics`.
//!
//! Every server counts its requests by route template and status and times
//! them; each service adds its own facts (proxy freshness and switches, worker
//! segments and restarts, reports received...). Route labels are templates
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
fn register<M>(name: &str, made: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = made.unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    prometheus::default_registry()
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    metric
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(name, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(name, GaugeVec::new(Opts::new(name, help), labels))
}

fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(name, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// Requests answered, by service, route template and status.
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_http_requests_total",
        "HTTP requests answered, by service, route template and status.",
        &["service", "route", "status"],
    )
});

/// Request latency, by service and route template.
pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
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
pub static BYTES_SERVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_bytes_served_total",
        "Playlist and segment bytes served, by service and kind.",
        &["service", "kind"],
    )
});

/// Proxy: switches of active packager, by signal and reason kind.
pub static PROXY_SWITCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_switches_total",
        "Changes of the packager a signal is served from, by reason (first, failing, stale, behind, unrouted).",
        &["signal", "reason"],
    )
});

/// Proxy: failed fetches from packagers, retried elsewhere.
pub static PROXY_UPSTREAM_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_upstream_failures_total",
        "Fetches from a packager that failed and were retried on another, by packager and kind.",
        &["packager", "kind"],
    )
});

/// Proxy: every fetch from a packager (polls and viewer requests), by kind
/// (playlist, segment) and outcome (`ok` or the failure kind).
pub static PROXY_UPSTREAM_FETCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_upstream_fetches_total",
        "Fetches from packagers (polls and viewer requests), by kind (playlist, segment) and outcome (ok, or the failure kind).",
        &["kind", "outcome"],
    )
});

/// Proxy: viewer requests answered by another request's fetch in flight.
pub static PROXY_COLLAPSED_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_collapsed_requests_total",
        "Viewer requests that shared the upstream fetch another request had in flight, by kind (playlist, segment).",
        &["kind"],
    )
});

/// Proxy: segment requests refused without a fetch, their name unlisted.
pub static PROXY_UNLISTED_SEGMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_unlisted_segments_total",
        "Segment requests answered 404 without asking a packager: no packager listed the name recently.",
        &["signal"],
    )
});

/// Proxy: route lookups at the origin, by outcome (found, unknown, failed).
pub static PROXY_ORIGIN_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_origin_lookups_total",
        "Route lookups at the origin (a signal's first request and every route refresh), by outcome (found, unknown, failed).",
        &["outcome"],
    )
});

/// Proxy: requests refused from a remembered origin refusal, without a lookup.
pub static PROXY_NEGATIVE_HITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_negative_cache_hits_total",
        "Requests for a signal the origin refused within the last second, answered from memory without asking it again, by answer (not_found, unavailable).",
        &["answer"],
    )
});

/// Proxy: distinct viewers per signal.
pub static PROXY_VIEWERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_viewers",
        "Distinct clients (address and User-Agent) that asked for a signal within the last two target durations.",
        &["signal"],
    )
});

/// Proxy: playlists served from the last good copy.
pub static PROXY_FALLBACK_PLAYLISTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_last_good_playlists_total",
        "Playlists served from the last good copy because no packager answered.",
        &["signal"],
    )
});

/// Proxy: newest segment each packager lists, per signal.
pub static PROXY_NEWEST_SEQUENCE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_packager_newest_sequence",
        "Media sequence number of the newest segment a packager lists.",
        &["signal", "packager"],
    )
});

/// Proxy: seconds since each packager's playlist last advanced.
pub static PROXY_ADVANCE_AGE: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "nonstop_proxy_packager_advance_age_seconds",
        "Seconds since a packager's playlist last advanced, per signal.",
        &["signal", "packager"],
    )
});

/// Proxy: 1 for the state each signal is in (up, degraded, down), 0 for the others.
pub static PROXY_SIGNAL_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_signal_state",
        "1 for the state a signal is in (up: served with a fresh twin; degraded: served without one; down: every packager stale or failing), 0 for the others.",
        &["signal", "state"],
    )
});

/// Proxy: 1 when a packager is fresh (or not yet known), 0 when stale or failing.
pub static PROXY_HEALTHY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_packager_healthy",
        "1 when a packager is fresh for a signal, 0 when stale or failing.",
        &["signal", "packager"],
    )
});

/// Proxy: 1 for the packager a signal is served from.
pub static PROXY_ACTIVE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_packager_active",
        "1 for the packager a signal is currently served from.",
        &["signal", "packager"],
    )
});

/// Worker: segments written, per signal.
pub static WORKER_SEGMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_worker_segments_total",
        "Segments written and listed, per signal.",
        &["signal"],
    )
});

/// Worker: pipeline restarts after errors, per signal.
pub static WORKER_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_worker_pipeline_restarts_total",
        "Pipeline restarts after an error, per signal.",
        &["signal"],
    )
});

/// Worker: times the input was looped, per signal.
pub static WORKER_LOOPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_worker_loops_total",
        "Times the input was replayed from the start, per signal.",
        &["signal"],
    )
});

/// Worker: media time written minus wall time since start, per signal.
pub static WORKER_DRIFT: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "nonstop_worker_drift_seconds",
        "Media time written minus wall time, relative to the first segment (start-up latency removed), per signal.",
        &["signal"],
    )
});

/// Worker: 1 for each signal's current status (starting, running, retrying, stopped), else 0.
pub static WORKER_SIGNAL_STATUS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_worker_signal_status",
        "1 for a signal's current pipeline status (starting, running, retrying, stopped), 0 for the others.",
        &["signal", "status"],
    )
});

/// Reporter: reports received, by result (accepted, rejected, unauthorized).
pub static REPORTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_reporter_reports_total",
        "Reports received, by result (accepted, rejected, unauthorized).",
        &["result"],
    )
});

/// Discovery: rounds, by result (reported, reporter_down).
pub static DISCOVERY_ROUNDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_discovery_rounds_total",
        "Discovery rounds, by result (reported, reporter_down).",
        &["result"],
    )
});

/// The label of a media kind.
pub fn kind_label(kind: crate::hls::MediaKind) -> &'static str {
    match kind {
        crate::hls::MediaKind::Playlist => "playlist",
        crate::hls::MediaKind::Segment => "segment",
    }
}

/// Counts media bytes answered by `service`.
pub fn count_bytes_served(service: &str, kind: crate::hls::MediaKind, bytes: usize) {
    let kind = kind_label(kind);
    BYTES_SERVED
        .with_label_values(&[service, kind])
        .inc_by(bytes as u64);
}

/// The route template of a request path, for labels.
pub fn route_label(path: &str) -> &'static str {
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
pub fn route() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
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
pub fn instrument<F>(
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
pub fn standalone_routes(
    service: &'static str,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    standalone_routes_with(service, super::http::healthcheck(service))
}

/// Like [`standalone_routes`], with the program's own `/healthcheck` (the
/// worker's answers from its signals' statuses).
pub fn standalone_routes_with<H>(
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
        REPORTS.with_label_values(&["accepted"]).inc();
        let api = standalone_routes("test");
        let res = warp::test::request().path("/metrics").reply(&api).await;
        assert_eq!(res.status(), 200);
        let text = String::from_utf8_lossy(res.body());
        assert!(
            text.contains("nonstop_reporter_reports_total{result=\"accepted\"}"),
            "{text}"
        );
        let res = warp::test::request().path("/healthcheck").reply(&api).await;
        assert_eq!(res.status(), 200);
    }
}
