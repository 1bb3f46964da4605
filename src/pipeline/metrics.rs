//! The worker's metrics: segments written, pipeline restarts, input loops,
//! drift against the wall clock and each signal's status. Registered in the
//! shared registry (`crate::service::metrics`) on first use.

use std::sync::LazyLock;

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec};

use crate::service::metrics::{counter, gauge, int_gauge};

/// Worker: segments written, per signal.
pub(crate) static WORKER_SEGMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_worker_segments_total",
        "Segments written and listed, per signal.",
        &["signal"],
    )
});

/// Worker: pipeline restarts after errors, per signal.
pub(crate) static WORKER_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_worker_pipeline_restarts_total",
        "Pipeline restarts after an error, per signal.",
        &["signal"],
    )
});

/// Worker: times the input was looped, per signal.
pub(crate) static WORKER_LOOPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_worker_loops_total",
        "Times the input was replayed from the start, per signal.",
        &["signal"],
    )
});

/// Worker: media time written minus wall time since start, per signal.
pub(crate) static WORKER_DRIFT: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge(
        "nonstop_worker_drift_seconds",
        "Media time written minus wall time, relative to the first segment (start-up latency removed), per signal.",
        &["signal"],
    )
});

/// Worker: 1 for each signal's current status (starting, running, retrying, stopped), else 0.
pub(crate) static WORKER_SIGNAL_STATUS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    int_gauge(
        "nonstop_worker_signal_status",
        "1 for a signal's current pipeline status (starting, running, retrying, stopped), 0 for the others.",
        &["signal", "status"],
    )
});
