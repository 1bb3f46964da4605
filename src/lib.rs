//! nonstop: a live HLS platform whose viewers never see a failure.
//!
//! A GStreamer worker encodes each `input/<signal>.mp4` into a live HLS stream
//! on disk; two packagers serve that tree; discovery tells the reporter which
//! signals are live on which packagers; the origin answers where a signal lives;
//! the proxy, the only thing a player talks to, fails over between packagers
//! without the player noticing.
//!
//! # Layout
//! - [`pipeline`]: media. The worker's GStreamer pipeline per signal, its
//!   looping and restarts, and the rolling live playlist it writes.
//! - [`net`]: HTTP services and clients, one module per service (packager,
//!   discovery, reporter, origin, proxy), the failover state machine, the HLS
//!   playlist reading shared by proxy and player probe, and the test tools
//!   (fault-injecting proxy, player probe).
//! - [`logging`]: the seed's log line format (`2024-04-05 11:23:05 INF ...`).
//! - [`shutdown`]: one shutdown signal shared by every task.
//!
//! The programs in `src/bin/` are thin: parse config, call into this library.

pub mod logging;
pub mod net;
pub mod pipeline;
pub mod shutdown;
