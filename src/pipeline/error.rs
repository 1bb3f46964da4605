//! Why one run of a signal's pipeline ended: the error every pipeline part
//! returns, and reading it off GStreamer's bus.

use std::path::PathBuf;

use gstreamer as gst;
use gstreamer::prelude::*;

/// Why one run of the pipeline ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the pipeline: {0}")]
    Build(String),
    #[error("pipeline did not start: {0}")]
    Start(String),
    #[error("{source_element}: {message}{}", debug.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Stream {
        source_element: String,
        message: String,
        debug: Option<String>,
    },
    #[error("input ended unexpectedly (EOS instead of a loop)")]
    UnexpectedEos,
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// A bus error as a [`RunError`], naming the element that failed.
pub fn stream_error(err: &gst::message::Error) -> RunError {
    RunError::Stream {
        source_element: err
            .src()
            .map(|s| s.path_string().to_string())
            .unwrap_or_else(|| "pipeline".into()),
        message: err.error().to_string(),
        debug: err.debug().map(|d| d.to_string()),
    }
}

/// The first error already on the bus, if any: it says why a state change failed.
pub fn first_error(bus: &gst::Bus) -> Option<RunError> {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some(stream_error(err));
        }
    }
    None
}
