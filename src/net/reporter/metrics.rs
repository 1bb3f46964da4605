//! The reporter's metrics: reports received, by result.

use std::sync::LazyLock;

use prometheus::IntCounterVec;

use crate::service::metrics::counter;

/// Reporter: reports received, by result (accepted, rejected, unauthorized).
pub(super) static REPORTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_reporter_reports_total",
        "Reports received, by result (accepted, rejected, unauthorized).",
        &["result"],
    )
});
