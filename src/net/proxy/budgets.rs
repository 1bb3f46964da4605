//! The proxy's time budgets and rhythms, in one place: how long a fetch from
//! a packager or the origin may take, how often packagers are polled and
//! routes refreshed, how long a playlist is reused and an idle signal kept.
//! A leaf: every part of the proxy reads these, and they read nothing.

use std::time::Duration;

/// Connecting to a packager must take well under a second (loopback or LAN).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Response headers must arrive within this fraction of the target duration.
pub(super) const FIRST_BYTE_TARGETS: f64 = 0.5;
/// A body must be complete within this many target durations.
pub(super) const BODY_TARGETS: f64 = 1.5;
/// A segment or part fetch of a low-latency stream whose packager has sent
/// nothing within this many part targets is asked of the next packager too
/// (hedged); the first whole answer is served.
pub(super) const HEDGE_PARTS: f64 = 1.5;
/// Each packager's playlist is polled every this fraction of the target.
pub const POLL_TARGETS: f64 = 0.5;
/// Playlists fetched this recently are reused for other viewers.
pub(super) const PLAYLIST_REUSE: Duration = Duration::from_millis(250);
/// Routes are asked of the origin again this often.
pub(super) const ROUTE_REFRESH: Duration = Duration::from_secs(5);
/// A signal nobody asked for this long stops being polled.
pub(super) const SIGNAL_IDLE: Duration = Duration::from_secs(120);
/// A packager whose live edge is this far behind its twin's is logged: a
/// low-latency viewer (about 1.5 s behind live) left with it alone would
/// wait for it.
pub(super) const SKEW_WARNING: Duration = Duration::from_secs(1);
/// Budget for one request to the origin.
pub(super) const ORIGIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Time allowed for one fetch from a packager, phase by phase.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// From sending the request to having the response headers.
    pub first_byte: Duration,
    /// From the headers to the last byte of the body.
    pub body: Duration,
}

impl Budget {
    /// The time allowed to a fetch for a signal whose target duration is
    /// `target`: [`FIRST_BYTE_TARGETS`] and [`BODY_TARGETS`] of it.
    pub(super) fn for_target(target: Duration) -> Budget {
        Budget {
            first_byte: target.mul_f64(FIRST_BYTE_TARGETS),
            body: target.mul_f64(BODY_TARGETS),
        }
    }
}
