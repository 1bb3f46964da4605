//! Seamless looping: the input replays forever while everything after the
//! decoder sees one continuous timeline.
//!
//! ```text
//!            seek(SEGMENT) on SEGMENT_DONE
//!          +-------------------------------+
//!          v                               |
//! filesrc -> decodebin -> [probe] identity -> ... -> x264enc -> hlssink2
//!                           |
//!                           +- each loop's new segment event -> the first one
//!                           +- buffer timestamps shifted by the loop's offset
//!                           +- SEGMENT_DONE consumed (encoders never drain)
//! ```
//!
//! The first seek is a flushing, accurate *segment* seek to where the epoch
//! grid says the input is ([`super::epoch`]), so at the end of the input the
//! pipeline posts `SEGMENT_DONE` instead of EOS; answering it with a
//! non-flushing segment seek to 0 replays the input while running time (and so
//! every timestamp in the output) keeps growing. Because downstream sees no
//! new segment, x264enc keeps its GOP and splitmuxsink its fragment: every
//! segment still starts with an IDR frame and keeps its length across seams.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::description::{AUDIO_TIMELINE, VIDEO_TIMELINE};
use super::error::{stream_error, RunError};

/// How long the pipeline may take to expose its decoded streams before it
/// counts as failed.
pub const DEFAULT_PREROLL_TIMEOUT: Duration = Duration::from_secs(20);
/// How much shorter than a frame a first video buffer must be to count as
/// clipped by the first seek (timestamps round to the nanosecond).
const CLIPPED_MARGIN: gst::ClockTime = gst::ClockTime::from_mseconds(1);
/// How long one look at the bus waits while the decoder's pads are awaited.
const PAD_POLL: Duration = Duration::from_millis(10);

/// The identities at the head of each branch, right after the decoder:
/// where the timeline is made continuous and where the seeks enter.
pub fn branch_heads(has_audio: bool) -> Vec<&'static str> {
    if has_audio {
        vec![VIDEO_TIMELINE, AUDIO_TIMELINE]
    } else {
        vec![VIDEO_TIMELINE]
    }
}

/// Keeps one continuous timeline across loops for everything after the
/// decoder.
///
/// Each loop's segment seek makes the demuxer send a new segment (same media
/// times, a later base). Downstream of the decoder that new segment would make
/// the audio encoder drain and restart (AAC frames overlapping at the seam) and
/// splitmuxsink cut a short segment there, which players such as Chromium's
/// native HLS refuse. So at each branch's head the new segment is replaced by
/// the very first one (the same event, so the pad sees nothing new to send on)
/// and buffer timestamps are moved by the difference: running time, and so
/// every output timestamp, is unchanged.
///
/// `period` (ns, 0 while unknown) is the pass length the epoch grid assumes
/// ([`pass_duration`]): when set, pass k is placed exactly k periods after
/// the first pass's start rather than where the demuxer's new segment says
/// (which can be a fraction of a frame shorter, the streams ending apart), so
/// every worker maps a wall-clock instant to the same input position.
pub fn continuous_timeline(head: &gst::Element, period: Arc<AtomicU64>) -> Result<(), RunError> {
    let pad = head
        .static_pad("sink")
        .ok_or_else(|| RunError::Build("branch head has no sink pad".into()))?;
    let timeline: Arc<Mutex<Timeline>> = Arc::new(Mutex::new(Timeline {
        period,
        ..Timeline::default()
    }));
    pad.add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::EVENT_DOWNSTREAM
            | gst::PadProbeType::EVENT_FLUSH,
        move |pad, info| {
            let Ok(mut timeline) = timeline.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            let replacement = match &mut info.data {
                // The end of each pass would make the encoders drain (and
                // x264enc start a new GOP): downstream, the passes are one.
                // (Handled, not Drop: the event is consumed here.)
                Some(gst::PadProbeData::Event(event))
                    if event.type_() == gst::EventType::SegmentDone =>
                {
                    return gst::PadProbeReturn::Handled;
                }
                Some(gst::PadProbeData::Event(event)) => timeline.on_event(event),
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    if timeline.is_clipped_frame(buffer, pad) {
                        // Handled, not Drop: the binding has taken the
                        // buffer, so Drop would make GStreamer unref NULL.
                        return gst::PadProbeReturn::Handled;
                    }
                    timeline.shift(buffer);
                    None
                }
                _ => None,
            };
            if let Some(first) = replacement {
                info.data = Some(gst::PadProbeData::Event(first));
            }
            gst::PadProbeReturn::Ok
        },
    );
    Ok(())
}

/// One branch's view of the loops: the first segment and the shift (ns) that
/// maps the current loop's timestamps onto it.
#[derive(Default)]
struct Timeline {
    first: Option<(gst::Event, gst::FormattedSegment<gst::ClockTime>)>,
    shift: i128,
    /// New segments (passes) since the first.
    passes: u64,
    /// The pass length in ns, 0 while unknown.
    period: Arc<AtomicU64>,
}

impl Timeline {
    /// Returns the event to send instead of `event`, if any.
    fn on_event(&mut self, event: &gst::Event) -> Option<gst::Event> {
        match event.view() {
            gst::EventView::FlushStop(_) => {
                self.first = None;
                self.shift = 0;
                self.passes = 0;
                None
            }
            gst::EventView::Segment(seg) => {
                let segment = seg.segment().clone().downcast::<gst::ClockTime>().ok()?;
                match &self.first {
                    None => {
                        // Open-ended, so later loops' timestamps stay inside it.
                        let mut open = segment.clone();
                        open.set_stop(gst::ClockTime::NONE);
                        open.set_duration(gst::ClockTime::NONE);
                        let first_event = gst::event::Segment::new(&open);
                        self.first = Some((first_event.clone(), segment));
                        Some(first_event)
                    }
                    Some((first_event, first)) => {
                        let ns = |t: Option<gst::ClockTime>| {
                            t.map(|t| t.nseconds() as i128).unwrap_or(0)
                        };
                        self.passes += 1;
                        let period = self.period.load(Ordering::Relaxed);
                        self.shift = if period > 0 {
                            // Pass k's stream time is k periods after the
                            // first pass's. A demuxer may stamp a track a
                            // constant apart from its stream time (qtdemux
                            // puts a video track with an edit list at +80 ms:
                            // start 0.08 for time 0), so buffers are placed
                            // by stream time, not by the segment's start.
                            let offset = |s: &gst::FormattedSegment<gst::ClockTime>| {
                                ns(s.time()) - ns(s.start())
                            };
                            i128::from(self.passes) * i128::from(period) + offset(&segment)
                                - offset(first)
                        } else {
                            ns(segment.base()) - ns(first.base()) + ns(first.start())
                                - ns(segment.start())
                        };
                        Some(first_event.clone())
                    }
                }
            }
            _ => None,
        }
    }

    /// Whether `buffer` is the remnant of a video frame that straddled the
    /// first seek's position: the decoder clips it to start there, so it
    /// would show the previous frame at the boundary where a worker already
    /// running shows the next one (and put every frame after it one frame
    /// off). Only on the first pass, only for video (whose caps say the
    /// frame duration).
    fn is_clipped_frame(&self, buffer: &gst::Buffer, pad: &gst::Pad) -> bool {
        let Some((_, first)) = &self.first else {
            return false;
        };
        if self.passes > 0 || buffer.pts().is_none() || buffer.pts() != first.start() {
            return false;
        }
        let frame = pad.current_caps().and_then(|caps| {
            let rate = caps.structure(0)?.get::<gst::Fraction>("framerate").ok()?;
            let (num, den) = (rate.numer(), rate.denom());
            (num > 0 && den > 0)
                .then(|| gst::ClockTime::SECOND.mul_div_floor(den as u64, num as u64))?
        });
        match (frame, buffer.duration()) {
            (Some(frame), Some(duration)) => duration + CLIPPED_MARGIN < frame,
            _ => false,
        }
    }

    fn shift(&self, buffer: &mut gst::Buffer) {
        if self.shift == 0 {
            return;
        }
        let shift = self.shift;
        let moved = |t: Option<gst::ClockTime>| {
            t.map(|t| gst::ClockTime::from_nseconds((t.nseconds() as i128 + shift).max(0) as u64))
        };
        let b = buffer.make_mut();
        let (pts, dts) = (moved(b.pts()), moved(b.dts()));
        b.set_pts(pts);
        b.set_dts(dts);
        // The timeline is continuous, so the seam is no discontinuity.
        b.unset_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::RESYNC);
    }
}

/// Seeks the input to `position` (its start for a loop, the epoch grid's
/// position for the first seek). The seek goes upstream from the video
/// branch's head straight to the demuxer (which applies it to every stream): sent to
/// the whole pipeline it would have to pass through hlssink2's muxer, which
/// refuses it.
pub fn seek_input(
    pipeline: &gst::Pipeline,
    flags: gst::SeekFlags,
    position: Duration,
) -> Result<(), String> {
    let pad = pipeline
        .by_name(VIDEO_TIMELINE)
        .and_then(|e| e.static_pad("sink"))
        .ok_or("no video_timeline sink pad")?;
    let seek = gst::event::Seek::new(
        1.0,
        flags,
        gst::SeekType::Set,
        gst::ClockTime::from_nseconds(position.as_nanos() as u64),
        gst::SeekType::None,
        gst::ClockTime::NONE,
    );
    if pad.push_event(seek) {
        Ok(())
    } else {
        Err("the demuxer refused the seek".into())
    }
}

/// How long one pass over the input lasts, D: the demuxer's duration. The
/// demuxer's own next segment can start a fraction of a frame earlier (when
/// the streams end apart, as an AAC track a little shorter than the video),
/// which would depend on how many loops a worker has made; so the timelines
/// place pass k exactly k·D on and the epoch grid maps wall-clock time with
/// the same D.
pub fn pass_duration(pipeline: &gst::Pipeline) -> Option<Duration> {
    let pad = pipeline
        .by_name(VIDEO_TIMELINE)
        .and_then(|e| e.static_pad("sink"))?;
    let duration = pad.peer_query_duration::<gst::ClockTime>()?;
    Some(Duration::from_nanos(duration.nseconds())).filter(|d| !d.is_zero())
}

/// How much longer than a frame the last frame before each loop seam lasts:
/// the input's pass length `duration` (its longest track) beyond a whole
/// number of frames at `frame_rate` (an audio track a little longer than its
/// pictures). Zero when either is unknown or the pass is whole frames.
pub fn seam_gap(duration: Option<Duration>, frame_rate: Option<f64>) -> Duration {
    let (Some(duration), Some(rate)) = (duration, frame_rate.filter(|r| *r > 0.0)) else {
        return Duration::ZERO;
    };
    let frame = Duration::from_secs_f64(1.0 / rate);
    let frames = duration.as_nanos() / frame.as_nanos().max(1);
    let gap = duration.saturating_sub(frame * frames as u32);
    // A pass within a millisecond of whole frames is whole frames.
    if gap < Duration::from_millis(1) || frame.saturating_sub(gap) < Duration::from_millis(1) {
        Duration::ZERO
    } else {
        gap
    }
}

/// Waits until decodebin has linked every branch (video, and audio when the
/// input has it), failing on a bus error or after [`DEFAULT_PREROLL_TIMEOUT`]:
/// clocksync does not preroll, so the pipeline reports PAUSED at once, but the
/// first seek must wait for the decoder's pads.
pub fn wait_for_decoded_pads(
    pipeline: &gst::Pipeline,
    bus: &gst::Bus,
    has_audio: bool,
) -> Result<(), RunError> {
    let heads = branch_heads(has_audio);
    let pads: Vec<gst::Pad> = heads
        .iter()
        .filter_map(|h| pipeline.by_name(h).and_then(|e| e.static_pad("sink")))
        .collect();
    if pads.len() != heads.len() {
        return Err(RunError::Build("pipeline lacks its branch heads".into()));
    }
    let deadline = Instant::now() + DEFAULT_PREROLL_TIMEOUT;
    while !pads.iter().all(|p| p.is_linked()) {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(PAD_POLL.as_nanos() as u64),
            &[gst::MessageType::Error],
        ) {
            if let gst::MessageView::Error(err) = msg.view() {
                return Err(stream_error(err));
            }
        }
        if Instant::now() > deadline {
            return Err(RunError::Start(format!(
                "decoder exposed no stream within {} s",
                DEFAULT_PREROLL_TIMEOUT.as_secs()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seam_gap_is_what_the_pass_has_beyond_whole_frames() {
        let secs = Duration::from_secs_f64;
        assert_eq!(seam_gap(Some(secs(30.0)), Some(25.0)), Duration::ZERO);
        let gap = seam_gap(Some(secs(30.016)), Some(25.0));
        assert!((gap.as_secs_f64() - 0.016).abs() < 1e-6, "{gap:?}");
        assert_eq!(seam_gap(None, Some(25.0)), Duration::ZERO);
        assert_eq!(seam_gap(Some(secs(30.0)), None), Duration::ZERO);
        // Rounding in the container's duration is not a gap.
        assert_eq!(seam_gap(Some(secs(30.0399995)), Some(25.0)), Duration::ZERO);
    }
}
