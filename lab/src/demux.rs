//! Demuxing one MPEG-TS segment in-process, to tell whether a viewer's decoder
//! would get pictures and sound out of it.
//!
//! ```text
//!                       +-> h264parse -> appsink (video/x-h264, alignment=au: one buffer per frame)
//! appsrc -> tsdemux ----+-> aacparse  -> appsink (audio/mpeg: one buffer per AAC frame)
//!                       +-> fakesink  (any other stream, so it never blocks the demuxer)
//! ```
//!
//! The player probe runs this on each segment it downloads when asked to: a
//! segment can be a whole number of TS packets (so it passes
//! [`nonstop::hls::is_complete_transport_stream`]) and still carry no
//! playable video, for instance when an encoder restart left it without a
//! program table or without frames. Counting parsed frames catches that without
//! decoding pictures, which keeps the check cheap enough for every segment.
//!
//! [`synthetic_segment`] makes a small real segment with GStreamer, for tests and
//! benchmarks that need media without an input file.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Longest time one segment may take to go through the pipeline. A few seconds
/// of media parse in milliseconds; hitting this means the pipeline is stuck.
const DEMUX_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time [`synthetic_segment`] may take to encode its segment.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the wait for EOS looks whether the input ended without streams.
const BUS_POLL: Duration = Duration::from_millis(20);
/// Caps of an MPEG-TS byte stream as fed to the demuxer.
const TS_CAPS: &str = "video/mpegts, systemstream=(boolean)true, packetsize=(int)188";
/// Parsed H.264 as the video appsink takes it: whole access units, so each
/// buffer is one frame.
const H264_FRAME_CAPS: &str = "video/x-h264, alignment=(string)au";
/// Parsed AAC as the audio appsink takes it (aacparse outputs one frame per buffer).
const AAC_FRAME_CAPS: &str = "audio/mpeg";

/// What one segment holds, as far as a player's decoders are concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemuxReport {
    /// H.264 access units (frames) that came out of the parser.
    pub video_frames: u32,
    /// AAC frames that came out of the parser.
    pub audio_frames: u32,
    /// Caps of the first parsed video frame: says profile, size and frame rate.
    pub video_caps: Option<String>,
    /// Caps of the first parsed audio frame: says sample rate and channels.
    pub audio_caps: Option<String>,
}

impl DemuxReport {
    /// `true` when the segment gave at least one H.264 frame: a viewer sees pictures.
    pub fn has_h264(&self) -> bool {
        self.video_frames > 0
    }

    /// `true` when the segment gave at least one AAC frame: a viewer hears sound.
    pub fn has_aac(&self) -> bool {
        self.audio_frames > 0
    }
}

/// Why a segment could not be demuxed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DemuxError {
    #[error("GStreamer failed to initialise: {0}")]
    Init(String),
    #[error("cannot build the demux pipeline: {0}")]
    Build(String),
    #[error("the segment is empty")]
    Empty,
    #[error("no program found: not an MPEG-TS segment, or cut before its program table")]
    NoStreams,
    #[error("the demux pipeline did not start")]
    Start,
    #[error("{source_element}: {message}")]
    Stream {
        source_element: String,
        message: String,
    },
    #[error("no end of stream within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// Which parser branch a demuxed stream goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    Video,
    Audio,
}

/// What the streaming threads found, read by the waiting thread.
#[derive(Default)]
struct Tally {
    report: DemuxReport,
    /// Streams tsdemux exposed (each got a branch).
    streams: u32,
    /// The end of the input reached tsdemux before it exposed any stream: no
    /// sink will ever see EOS, so waiting for it would only run into the timeout.
    ended_without_streams: bool,
}

impl Tally {
    fn count(&mut self, branch: Branch, caps: Option<&gst::CapsRef>) {
        let (frames, first_caps) = match branch {
            Branch::Video => (&mut self.report.video_frames, &mut self.report.video_caps),
            Branch::Audio => (&mut self.report.audio_frames, &mut self.report.audio_caps),
        };
        *frames = frames.saturating_add(1);
        if first_caps.is_none() {
            *first_caps = caps.map(|c| c.to_string());
        }
    }
}

type SharedTally = Arc<Mutex<Tally>>;

/// Runs `f` on the tally, even if a streaming thread panicked while holding it.
fn with_tally<T>(tally: &SharedTally, f: impl FnOnce(&mut Tally) -> T) -> T {
    match tally.lock() {
        Ok(mut guard) => f(&mut guard),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// Sets the pipeline to NULL however the demuxing ends, so no streaming thread
/// outlives the call.
struct StopOnDrop(gst::Pipeline);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Pushes one MPEG-TS segment through `tsdemux` and the H.264 and AAC parsers,
/// and counts the frames each elementary stream gave.
///
/// Blocking (up to [`DEMUX_TIMEOUT`]): call it from `spawn_blocking` in async
/// code. Garbage yields [`DemuxError::NoStreams`] and a segment cut short yields
/// fewer frames or an error; neither panics.
pub fn demux_segment(bytes: &[u8]) -> Result<DemuxReport, DemuxError> {
    gst::init().map_err(|e| DemuxError::Init(e.to_string()))?;
    if bytes.is_empty() {
        return Err(DemuxError::Empty);
    }
    let tally = SharedTally::default();
    let (pipeline, source) = build_demuxer(&tally)?;
    let pipeline = StopOnDrop(pipeline);
    let bus = pipeline
        .0
        .bus()
        .ok_or_else(|| DemuxError::Build("pipeline has no bus".into()))?;

    if pipeline.0.set_state(gst::State::Playing).is_err() {
        return Err(first_error(&bus).unwrap_or(DemuxError::Start));
    }
    // A refused push means the pipeline already failed; the bus says why.
    let pushed = source
        .push_buffer(gst::Buffer::from_slice(bytes.to_vec()))
        .and_then(|_| source.end_of_stream());
    if pushed.is_err() {
        return Err(first_error(&bus).unwrap_or(DemuxError::Start));
    }

    wait_for_eos(&bus, &tally, DEMUX_TIMEOUT)?;
    drop(pipeline);
    Ok(with_tally(&tally, |t| t.report.clone()))
}

/// `appsrc ! tsdemux`, with a parser branch added per exposed stream.
fn build_demuxer(tally: &SharedTally) -> Result<(gst::Pipeline, gst_app::AppSrc), DemuxError> {
    let build = |e: glib::BoolError| DemuxError::Build(e.to_string());
    let pipeline = gst::Pipeline::with_name("demux-check");
    let caps = gst::Caps::from_str(TS_CAPS).map_err(build)?;
    let source = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Bytes)
        .build();
    let demux = gst::ElementFactory::make("tsdemux")
        .build()
        .map_err(build)?;
    pipeline
        .add_many([source.upcast_ref::<gst::Element>(), &demux])
        .map_err(build)?;
    source.link(&demux).map_err(build)?;

    // tsdemux exposes its streams while reading the program table, in the same
    // thread and before it handles the EOS that follows the data; so when EOS
    // arrives with no stream exposed, none ever will be.
    let sink_pad = demux
        .static_pad("sink")
        .ok_or_else(|| DemuxError::Build("tsdemux has no sink pad".into()))?;
    let eos_tally = tally.clone();
    sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data {
            if event.type_() == gst::EventType::Eos {
                with_tally(&eos_tally, |t| t.ended_without_streams = t.streams == 0);
            }
        }
        gst::PadProbeReturn::Ok
    });

    let weak_pipeline = pipeline.downgrade();
    let tally = tally.clone();
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak_pipeline.upgrade() else {
            return;
        };
        with_tally(&tally, |t| t.streams += 1);
        if let Err(e) = add_branch(&pipeline, pad, &tally) {
            log::warn!("cannot demux stream {}: {e}", pad.name());
        }
    });
    Ok((pipeline, source))
}

/// Which branch a demuxed stream with these caps goes to; `None` for a fakesink.
fn branch_for(caps: &gst::CapsRef) -> Option<(Branch, &'static str, &'static str)> {
    let s = caps.structure(0)?;
    match s.name().as_str() {
        "video/x-h264" => Some((Branch::Video, "h264parse", H264_FRAME_CAPS)),
        // MPEG-2 and MPEG-4 AAC; mpegversion 1 is MP3, which aacparse refuses.
        "audio/mpeg" if matches!(s.get::<i32>("mpegversion"), Ok(2 | 4)) => {
            Some((Branch::Audio, "aacparse", AAC_FRAME_CAPS))
        }
        _ => None,
    }
}

/// Links a newly exposed demuxer pad to its parser and appsink, or to a
/// fakesink when it is neither H.264 nor AAC, so every stream reaches a sink
/// and every sink sees EOS.
///
/// The sinks are not async: tsdemux pushes every stream from one thread, so a
/// sink waiting for preroll would block the others, and a sink added to a
/// playing pipeline would take it back to PAUSED until all had prerolled.
fn add_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    tally: &SharedTally,
) -> Result<(), DemuxError> {
    let build = |e: glib::BoolError| DemuxError::Build(e.to_string());
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let mut elements: Vec<gst::Element> = Vec::new();
    match branch_for(&caps) {
        Some((branch, parser, sink_caps)) => {
            let parser = gst::ElementFactory::make(parser).build().map_err(build)?;
            let sink_caps = gst::Caps::from_str(sink_caps).map_err(build)?;
            let tally = tally.clone();
            let sink = gst_app::AppSink::builder()
                .caps(&sink_caps)
                .sync(false)
                .async_(false)
                .callbacks(
                    gst_app::AppSinkCallbacks::builder()
                        .new_sample(move |sink| {
                            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            with_tally(&tally, |t| t.count(branch, sample.caps()));
                            Ok(gst::FlowSuccess::Ok)
                        })
                        .build(),
                )
                .build();
            elements.push(parser);
            elements.push(sink.upcast());
        }
        None => {
            log::debug!("ignoring demuxed stream {} ({caps})", pad.name());
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
                .map_err(build)?;
            elements.push(sink);
        }
    }
    pipeline.add_many(&elements).map_err(build)?;
    let linked = gst::Element::link_many(&elements)
        .map_err(build)
        .and_then(|_| {
            let first = elements
                .first()
                .and_then(|e| e.static_pad("sink"))
                .ok_or_else(|| DemuxError::Build("branch has no sink pad".into()))?;
            pad.link(&first)
                .map_err(|e| DemuxError::Build(format!("cannot link {}: {e:?}", pad.name())))?;
            Ok(())
        });
    if let Err(e) = linked {
        // A sink left without data would never see EOS.
        let _ = pipeline.remove_many(&elements);
        return Err(e);
    }
    for element in &elements {
        element.sync_state_with_parent().map_err(build)?;
    }
    Ok(())
}

/// Waits for EOS, turning the first bus error into [`DemuxError::Stream`] and
/// an input without streams into [`DemuxError::NoStreams`].
fn wait_for_eos(bus: &gst::Bus, tally: &SharedTally, timeout: Duration) -> Result<(), DemuxError> {
    let deadline = Instant::now() + timeout;
    loop {
        if with_tally(tally, |t| t.ended_without_streams) {
            return Err(DemuxError::NoStreams);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DemuxError::Timeout(timeout));
        }
        let wait = gst::ClockTime::from_nseconds(left.min(BUS_POLL).as_nanos() as u64);
        let Some(msg) =
            bus.timed_pop_filtered(wait, &[gst::MessageType::Eos, gst::MessageType::Error])
        else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(err) => return Err(stream_error(err)),
            _ => {}
        }
    }
}

fn stream_error(err: &gst::message::Error) -> DemuxError {
    DemuxError::Stream {
        source_element: err
            .src()
            .map(|s| s.path_string().to_string())
            .unwrap_or_else(|| "pipeline".into()),
        message: err.error().to_string(),
    }
}

/// The first error already on the bus, if any: it says why a state change failed.
fn first_error(bus: &gst::Bus) -> Option<DemuxError> {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some(stream_error(err));
        }
    }
    None
}

/// Encodes a small live-like MPEG-TS segment (160x120 test pattern in H.264,
/// a sine tone in AAC) lasting `frames / fps` seconds, starting with a keyframe
/// and the program tables, so it plays on its own as a segment does.
///
/// A tool for tests and benchmarks that need real media without an input file.
///
/// ```text
/// videotestsrc -> x264enc -> h264parse --+-> mpegtsmux -> appsink
/// audiotestsrc -> avenc_aac -> aacparse -+
/// ```
pub fn synthetic_segment(frames: u32, fps: u32) -> Result<Vec<u8>, DemuxError> {
    gst::init().map_err(|e| DemuxError::Init(e.to_string()))?;
    /// Samples per audio buffer at 48 kHz: a fixed size, so the buffer count
    /// for a duration is exact.
    const SAMPLES_PER_BUFFER: u32 = 1024;
    const AUDIO_RATE: u32 = 48_000;
    let fps = fps.max(1);
    let audio_buffers = (u64::from(frames) * u64::from(AUDIO_RATE)
        / (u64::from(fps) * u64::from(SAMPLES_PER_BUFFER)))
    .max(1);
    let line = format!(
        "videotestsrc num-buffers={frames} \
           ! video/x-raw,width=160,height=120,framerate={fps}/1 \
           ! x264enc speed-preset=ultrafast key-int-max={fps} \
           ! h264parse ! mpegtsmux name=mux ! appsink name=out sync=false \
         audiotestsrc num-buffers={audio_buffers} samplesperbuffer={SAMPLES_PER_BUFFER} \
           ! audio/x-raw,rate={AUDIO_RATE} ! audioconvert ! avenc_aac ! aacparse ! mux."
    );
    let pipeline = gst::parse::launch(&line)
        .map_err(|e| DemuxError::Build(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| DemuxError::Build("description is not a pipeline".into()))?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| DemuxError::Build("no appsink named 'out'".into()))?;
    let pipeline = StopOnDrop(pipeline);
    let bus = pipeline
        .0
        .bus()
        .ok_or_else(|| DemuxError::Build("pipeline has no bus".into()))?;
    if pipeline.0.set_state(gst::State::Playing).is_err() {
        return Err(first_error(&bus).unwrap_or(DemuxError::Start));
    }
    let deadline = Instant::now() + ENCODE_TIMEOUT;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DemuxError::Timeout(ENCODE_TIMEOUT));
        }
        if let Some(err) = first_error(&bus) {
            return Err(err);
        }
        if sink.is_eos() {
            break;
        }
        let wait = gst::ClockTime::from_mseconds(100);
        if let Some(sample) = sink.try_pull_sample(wait) {
            if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                out.extend_from_slice(map.as_slice());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::PACKET_LEN;

    #[test]
    fn finds_video_and_audio_in_a_real_segment() {
        let segment = synthetic_segment(50, 25).expect("encodes a test segment");
        assert!(nonstop::hls::is_complete_transport_stream(&segment));
        let report = demux_segment(&segment).expect("demuxes");
        assert!(report.has_h264(), "{report:?}");
        assert!(report.has_aac(), "{report:?}");
        assert_eq!(report.video_frames, 50, "{report:?}");
        let caps = report.video_caps.as_deref().unwrap_or_default();
        assert!(caps.starts_with("video/x-h264"), "{caps}");
        assert!(report
            .audio_caps
            .as_deref()
            .is_some_and(|c| c.starts_with("audio/mpeg")));
    }

    #[test]
    fn garbage_gives_an_error_or_no_video() {
        let garbage: Vec<u8> = (0..PACKET_LEN as u32 * 100)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        match demux_segment(&garbage) {
            Ok(report) => assert!(!report.has_h264(), "{report:?}"),
            Err(e) => assert!(!matches!(e, DemuxError::Timeout(_)), "{e}"),
        }
        assert_eq!(demux_segment(&[]), Err(DemuxError::Empty));
    }

    #[test]
    fn a_truncated_segment_does_not_panic() {
        let segment = synthetic_segment(25, 25).expect("encodes a test segment");
        for cut in [100, PACKET_LEN * 3, segment.len() / 2] {
            match demux_segment(&segment[..cut]) {
                Ok(report) => assert!(report.video_frames < 25, "{report:?}"),
                Err(e) => assert!(!matches!(e, DemuxError::Timeout(_)), "{e}"),
            }
        }
    }
}
