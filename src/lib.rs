//! nonstop: a live HLS platform whose viewers never see a failure.
//!
//! A GStreamer worker encodes each `input/<signal>.mp4` into a live HLS stream
//! on disk; two packagers serve that tree; discovery tells the reporter which
//! signals are live on which packagers; the origin answers where a signal lives;
//! the proxy, the only thing a player talks to, fails over between packagers
//! without the player noticing.
//!
//! # Layout
//! The folders follow the data path:
//! - [`pipeline`]: media. The worker's GStreamer pipeline per signal, its
//!   looping and restarts, the rolling live playlist it writes, its health
//!   and metrics. It never imports [`net`].
//! - [`net`]: the HTTP services, one module (or folder) each: packager,
//!   discovery, reporter (with its store), origin, proxy (a request's life in
//!   `request`, routes from the origin, the poller, its failover state
//!   machine, upstream fetches and segment cache), console and status. Each
//!   service keeps its metrics beside its code.
//! - [`api`]: the formats services speak to each other, one serde type per
//!   JSON that crosses a service boundary (reporter, origin, proxy status,
//!   every healthcheck, JSON errors), written by the server, read by every
//!   client, pinned by contract tests. At the top because the worker answers
//!   one of them too.
//! - [`hls`]: the HLS format, free of I/O: names, content types, reading a
//!   live playlist's facts, checking MPEG-TS. Shared by media and services.
//! - [`service`]: what every program shares: config parsing, the HTTP server
//!   loop, JSON errors and the HTTP client, the metrics registry and the
//!   request metrics every server shares, the log format and the shutdown
//!   signal.
//!
//! The programs in `src/bin/` are thin: parse config, call into this library.
//! The test lab (fault proxy, player probe, system tests, benchmarks) is the
//! workspace member `lab/`, never part of this crate.

// An application crate: its internals are documented for the people working
// on it (`cargo doc --document-private-items`), so public docs may link to
// the private parts they are made of.
#![allow(rustdoc::private_intra_doc_links)]

pub mod api;
pub mod hls;
pub mod net;
pub mod pipeline;
pub mod service;
