//! Media: the worker's GStreamer pipelines.
//!
//! - [`input`]: finds `<signal>.mp4` inputs and checks them with the discoverer.
//! - [`settings`]: what the operator configured ([`settings::EncodeSettings`]), immutable.
//! - [`description`]: the pipeline texts from `pipelines/` and the one launch
//!   line the worker parses and `worker --print-pipeline` prints.
//! - [`signal`]: one signal's runner: run, restart with backoff, status.
//! - [`epoch`]: the wall-clock grid (sequence, date, PTS, input position) that
//!   makes two workers' segments interchangeable.
//! - [`looping`]: endless input by segment seeks, one continuous timeline.
//! - [`ladder`]: the bit-rate ladder (`LADDER`): rungs, never upscaled.
//! - [`multivariant`]: a ladder's shared facts and its multivariant playlist.
//! - [`epoch_lock`]: the pipeline's clock and keyframes locked to that grid.
//! - [`cutter`]: the muxed MPEG-TS cut into LL-HLS parts and segments on the
//!   grid (no GStreamer, no I/O).
//! - [`publisher`]: parts, segments and the live playlist written whole on
//!   disk, fed by the appsink on the muxer's thread.
//! - [`error`]: why a run of a pipeline ended.
//! - [`files`]: every output file written whole (temporary file and rename).
//! - [`continuity`]: MPEG-TS continuity counters rewritten per segment, so
//!   segments from different workers follow each other.
//! - [`playlist`]: the rolling live playlist itself (m3u8-rs, no I/O).
//! - [`health`]: the signals' statuses, shared with `GET /healthcheck`.
//! - [`metrics`]: the worker's Prometheus metrics.
//! - [`inputs`]: the running signals and the input folder rescan that starts
//!   and stops them as `<signal>.mp4` files are added and removed.
//! - [`worker`]: runs every signal of the input folder until shutdown.
//!
//! Shared pieces come from [`crate::hls`] (names, playlist facts) and
//! [`crate::service`] (config, metrics, shutdown); never from [`crate::net`].

pub mod continuity;
pub mod cutter;
pub mod description;
pub mod epoch;
pub mod epoch_lock;
pub mod error;
pub mod files;
pub mod health;
pub mod input;
pub mod inputs;
pub mod ladder;
pub mod looping;
pub(crate) mod metrics;
pub mod multivariant;
pub mod playlist;
pub mod publisher;
pub mod settings;
pub mod signal;
pub mod worker;
