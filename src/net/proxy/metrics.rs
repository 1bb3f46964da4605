//! The proxy's metrics: switches, fetches from packagers and their failures,
//! collapsed and refused requests, origin lookups, viewers, and each
//! packager's freshness as the failover state machine sees it. Registered in
//! the shared registry (`crate::service::metrics`) on first use.

use std::sync::LazyLock;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec};

use crate::service::metrics::{counter, gauge, int_gauge};

/// Proxy: switches of active packager, by signal and reason kind.
pub(super) static PROXY_SWITCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_switches_total",
        "Changes of the packager a signal is served from, by reason (first, failing, stale, behind, unrouted).",
        &["signal", "reason"],
    )
});

/// Proxy: failed fetches from packagers, retried elsewhere.
pub(super) static PROXY_UPSTREAM_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_upstream_failures_total",
        "Fetches from a packager that failed and were retried on another, by packager and kind.",
        &["packager", "kind"],
    )
});

/// Proxy: segment and part fetches also asked of this packager because the
/// one asked first was silent past the hedge delay.
pub(super) static PROXY_HEDGED_FETCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_hedged_fetches_total",
        "Segment and part fetches also asked of this packager because the one asked first was silent past the hedge delay.",
        &["packager"],
    )
});

/// Proxy: every fetch from a packager (polls and viewer requests), by kind
/// (playlist, segment) and outcome (`ok` or the failure kind).
pub(super) static PROXY_UPSTREAM_FETCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_upstream_fetches_total",
        "Fetches from packagers (polls and viewer requests), by kind (playlist, segment) and outcome (ok, or the failure kind).",
        &["kind", "outcome"],
    )
});

/// Proxy: viewer requests answered by another request's fetch in flight.
pub(super) static PROXY_COLLAPSED_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_collapsed_requests_total",
        "Viewer requests that shared the upstream fetch another request had in flight, by kind (playlist, segment).",
        &["kind"],
    )
});

/// Proxy: segment requests refused without a fetch, their name unlisted.
pub(super) static PROXY_UNLISTED_SEGMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_unlisted_segments_total",
        "Segment requests answered 404 without asking a packager: no packager listed the name recently.",
        &["signal"],
    )
});

/// Proxy: route lookups at the origin, by outcome (found, unknown, failed).
pub(super) static PROXY_ORIGIN_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_origin_lookups_total",
        "Route lookups at the origin (a signal's first request and every route refresh), by outcome (found, unknown, failed).",
        &["outcome"],
    )
});

/// Proxy: requests refused from a remembered origin refusal, without a lookup.
pub(super) static PROXY_NEGATIVE_HITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_negative_cache_hits_total",
        "Requests for a signal the origin refused within the last second, answered from memory without asking it again, by answer (not_found, unavailable).",
        &["answer"],
    )
});

/// Proxy: distinct viewers per signal.
pub(super) static PROXY_VIEWERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_viewers",
        "Distinct clients (address and User-Agent) that asked for a signal within the last two target durations.",
        &["signal"],
    )
});

/// Proxy: playlists served from the last good copy.
pub(super) static PROXY_FALLBACK_PLAYLISTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_last_good_playlists_total",
        "Playlists served from the last good copy because no packager answered.",
        &["signal"],
    )
});

/// Proxy: newest segment each packager lists, per signal.
pub(super) static PROXY_NEWEST_SEQUENCE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_packager_newest_sequence",
        "Media sequence number of the newest segment a packager lists.",
        &["signal", "packager"],
    )
});

/// Proxy: seconds since each packager's playlist last advanced.
pub(super) static PROXY_ADVANCE_AGE: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "nonstop_proxy_packager_advance_age_seconds",
        "Seconds since a packager's playlist last advanced, per signal.",
        &["signal", "packager"],
    )
});

/// Proxy: 1 for the state each signal is in (up, degraded, down), 0 for the others.
pub(super) static PROXY_SIGNAL_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_signal_state",
        "1 for the state a signal is in (up: served with a fresh twin; degraded: served without one; down: every packager stale or failing), 0 for the others.",
        &["signal", "state"],
    )
});

/// Proxy: 1 when a packager is fresh (or not yet known), 0 when stale or failing.
pub(super) static PROXY_HEALTHY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_packager_healthy",
        "1 when a packager is fresh for a signal, 0 when stale or failing.",
        &["signal", "packager"],
    )
});

/// Proxy: 1 for the packager a signal is served from.
pub(super) static PROXY_ACTIVE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_proxy_packager_active",
        "1 for the packager a signal is currently served from.",
        &["signal", "packager"],
    )
});

/// Proxy: blocking reloads (low latency) whose part no packager listed in time (503).
pub(super) static PROXY_HELD_TIMEOUTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_proxy_held_timeouts_total",
        "Viewer blocking reloads (_HLS_msn/_HLS_part) answered 503: no packager listed the part within three target durations.",
        &["signal"],
    )
});

/// Proxy: blocking reloads (low latency) held, and how long each was held.
pub(super) static PROXY_HELD_SECONDS: LazyLock<HistogramVec> =
    LazyLock::new(|| {
        let name = "nonstop_proxy_held_seconds";
        crate::service::metrics::register(
        name,
        HistogramVec::new(
            HistogramOpts::new(
                name,
                "How long the proxy held a viewer's blocking reload before its part was listed.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 6.0]),
            &["signal"],
        ),
    )
    });

/// Proxy: seconds a packager's live edge is behind its freshest twin's, by their dates.
pub(super) static PROXY_BEHIND_TWIN: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "nonstop_proxy_packager_behind_twin_seconds",
        "Seconds a packager's live edge is behind its freshest twin's, by their program date-times: its worker's clock skew, or a late worker. Above 1 s, a low-latency viewer left with it alone would wait.",
        &["signal", "packager"],
    )
});
