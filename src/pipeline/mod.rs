//! Media: the worker's GStreamer pipelines.
//!
//! - [`input`]: finds `<signal>.mp4` inputs and checks them with the discoverer.
//! - [`description`]: the pipeline texts from `pipelines/`, shared with gst-launch.
//! - [`signal`]: one signal's pipeline, looped seamlessly, restarted with backoff.
//! - [`playlist`]: the rolling live playlist the worker writes (m3u8-rs).
//! - [`worker`]: runs every signal of the input folder until shutdown.
//!
//! Shared pieces come from [`crate::hls`] (names, playlist facts) and
//! [`crate::service`] (config, metrics, shutdown); never from [`crate::net`].

pub mod description;
pub mod input;
pub mod playlist;
pub mod signal;
pub mod worker;
