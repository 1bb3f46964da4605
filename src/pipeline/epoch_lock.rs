//! What locks a GStreamer pipeline to the epoch grid ([`super::epoch`]): a
//! realtime clock whose running time is time since the epoch (less the
//! muxer's constant), and a keyframe forced on the first frame of every
//! grid slot, so every worker starts its segments (and their IDR frames) at
//! the same instants whatever the frame rate.

use std::sync::Mutex;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::epoch::EpochGrid;
use super::error::RunError;

/// Runs `pipeline` on a realtime clock whose running time is time since the
/// epoch less the muxer's constant: clocksync then paces buffers to the wall
/// clock of their epoch-locked timestamps.
pub fn lock_clock(pipeline: &gst::Pipeline, grid: EpochGrid) {
    let clock = glib::Object::builder::<gst::SystemClock>()
        .property("clock-type", gst::ClockType::Realtime)
        .build();
    pipeline.use_clock(Some(&clock));
    // No start time: the pipeline keeps the base time given here.
    pipeline.set_start_time(gst::ClockTime::NONE);
    pipeline.set_base_time(gst::ClockTime::from_nseconds(
        grid.base_time().as_nanos() as u64
    ));
}

/// Asks the video encoder for a keyframe on the first frame of every epoch
/// grid segment; the cutter ([`super::cutter`]) starts segments on those
/// keyframes only.
pub fn keyframes_at_boundaries(encoder: &gst::Element, grid: EpochGrid) -> Result<(), RunError> {
    let pad = encoder
        .static_pad("sink")
        .ok_or_else(|| RunError::Build("video encoder has no sink pad".into()))?;
    let last: Mutex<Option<u64>> = Mutex::new(None);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(segment) = pad
            .sticky_event::<gst::event::Segment>(0)
            .and_then(|e| e.segment().clone().downcast::<gst::ClockTime>().ok())
        else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(running) = segment.to_running_time(pts) else {
            return gst::PadProbeReturn::Ok;
        };
        let sequence = grid.sequence_of_running_time(Duration::from_nanos(running.nseconds()));
        {
            let Ok(mut last) = last.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            if last.is_some_and(|l| sequence <= l) {
                return gst::PadProbeReturn::Ok;
            }
            *last = Some(sequence);
        }
        // GstVideoEncoder's downstream force-key-unit event: this frame
        // (the first at or after the boundary) becomes an IDR frame.
        let request = gst::Structure::builder("GstForceKeyUnit")
            .field("timestamp", pts)
            .field("stream-time", segment.to_stream_time(pts).unwrap_or(pts))
            .field("running-time", running)
            .field("all-headers", true)
            .field("count", 0u32)
            .build();
        pad.send_event(gst::event::CustomDownstream::new(request));
        gst::PadProbeReturn::Ok
    });
    Ok(())
}
