//! One live signal: its GStreamer pipeline, looped forever, restarted on error.
//!
//! ```text
//! filesrc -> decodebin -+-> videoconvert -> clocksync -> x264enc -> h264parse --+-> hlssink2
//!                       +-> audioconvert -> clocksync -> avenc_aac -> aacparse --+   (segments)
//!                                                                                 |
//!       bus: splitmuxsink-fragment-closed --> LivePlaylist --> playlist.m3u8 <----+
//! ```
//!
//! Looping: the first seek is a flushing *segment* seek, so at the end of the
//! input the pipeline posts `SEGMENT_DONE` instead of EOS; answering it with a
//! non-flushing segment seek to 0 replays the input while running time (and so
//! every timestamp in the output) keeps growing.
//!
//! Naming: hlssink2 asks for each fragment's output stream through
//! `get-fragment-stream`; we open `segmentNNNNNN.ts` with our own numbering, so
//! names and the media sequence survive pipeline restarts. hlssink2's own
//! playlist goes to a memory stream and is dropped: [`LivePlaylist`] writes ours.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gio::prelude::*;
use gstreamer as gst;
use gstreamer::prelude::*;

use super::description;
use super::input::Input;
use super::playlist::LivePlaylist;
use crate::service::metrics;
use crate::service::shutdown::Shutdown;

/// Segment duration when none is configured (seconds).
pub const DEFAULT_SEGMENT_SECONDS: u32 = 2;
/// Segments listed in the playlist.
pub const DEFAULT_PLAYLIST_LENGTH: usize = 6;
/// Segments kept on disk after leaving the playlist.
pub const DEFAULT_RETAINED_SEGMENTS: usize = 10;
/// Video bitrate in kbit/s.
pub const DEFAULT_VIDEO_KBPS: u32 = 1500;
/// How far below the segment duration keyframes are requested, so a segment
/// ending on the first frame at or after the request stays within the target.
const SEGMENT_MARGIN: Duration = Duration::from_millis(40);
/// How long the pipeline may take to preroll before it counts as failed.
const PREROLL_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the bus loop wakes to look at the shutdown flag.
const BUS_POLL: Duration = Duration::from_millis(100);
/// First pause before restarting a failed pipeline; doubled per failure in a row.
pub const RESTART_BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest pause between restarts.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A pipeline that ran this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// How often progress is logged at info.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// What the operator configured for every signal.
#[derive(Debug, Clone)]
pub struct EncodeSettings {
    pub segment_seconds: u32,
    pub playlist_length: usize,
    pub retained_segments: usize,
    pub video_kbps: u32,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            segment_seconds: DEFAULT_SEGMENT_SECONDS,
            playlist_length: DEFAULT_PLAYLIST_LENGTH,
            retained_segments: DEFAULT_RETAINED_SEGMENTS,
            video_kbps: DEFAULT_VIDEO_KBPS,
        }
    }
}

/// What a signal's pipeline is doing, as in fallbacksrc's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalStatus {
    Starting,
    Running,
    Retrying,
    Stopped,
}

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

/// Segment names handed to hlssink2 but not yet closed, oldest first.
#[derive(Default)]
struct OpenFragments {
    names: VecDeque<String>,
    /// The number the next opened fragment gets.
    next_sequence: u64,
}

/// Runs one signal until shutdown: builds, loops and restarts its pipeline.
pub struct SignalRunner {
    input: Input,
    /// The signal's output folder: `<OUTPUT_STREAM_PATH>/<signal>`.
    dir: PathBuf,
    settings: EncodeSettings,
    playlist: LivePlaylist,
    status: SignalStatus,
    /// Segments written since the worker started (for progress lines).
    segments_written: u64,
    /// Times the input was looped since the worker started.
    loops: u64,
}

impl SignalRunner {
    /// Prepares the output folder and picks up a playlist left by an earlier run.
    pub fn new(
        input: Input,
        output_root: &Path,
        settings: EncodeSettings,
    ) -> Result<Self, RunError> {
        let dir = output_root.join(&input.signal);
        std::fs::create_dir_all(&dir).map_err(|e| RunError::Write(dir.clone(), e))?;
        let mut playlist = LivePlaylist::new(
            settings.segment_seconds as u64,
            settings.playlist_length,
            settings.retained_segments,
        );
        if let Ok(previous) = std::fs::read(dir.join(crate::hls::PLAYLIST_NAME)) {
            playlist = playlist.resume(&previous);
            if playlist.next_sequence() > 0 {
                log::info!(
                    "Resuming signal '{}' at media sequence {}",
                    input.signal,
                    playlist.next_sequence()
                );
            }
        }
        Ok(SignalRunner {
            input,
            dir,
            settings,
            playlist,
            status: SignalStatus::Starting,
            segments_written: 0,
            loops: 0,
        })
    }

    pub fn status(&self) -> SignalStatus {
        self.status
    }

    /// Runs until `shutdown`, restarting the pipeline with backoff on errors.
    pub fn run(&mut self, shutdown: &Shutdown) {
        let mut failures: u32 = 0;
        while !shutdown.is_triggered() {
            let started = Instant::now();
            self.status = SignalStatus::Starting;
            match self.run_once(shutdown) {
                Ok(()) => break,
                Err(e) => {
                    if started.elapsed() > HEALTHY_RUN {
                        failures = 0;
                    }
                    failures += 1;
                    let pause = backoff(failures);
                    self.status = SignalStatus::Retrying;
                    metrics::WORKER_RESTARTS
                        .with_label_values(&[&self.input.signal])
                        .inc();
                    log::error!(
                        "Signal '{}' pipeline failed: {e}; restarting in {:.1} s (failure {failures} in a row)",
                        self.input.signal,
                        pause.as_secs_f32()
                    );
                    self.playlist.mark_discontinuity();
                    sleep_unless(shutdown, pause);
                }
            }
        }
        self.status = SignalStatus::Stopped;
        log::info!("Signal '{}' stopped", self.input.signal);
    }

    /// One life of the pipeline: Ok when shutdown stopped it, Err when it failed.
    fn run_once(&mut self, shutdown: &Shutdown) -> Result<(), RunError> {
        let open = Arc::new(Mutex::new(OpenFragments {
            names: VecDeque::new(),
            next_sequence: self.playlist.next_sequence(),
        }));
        let pipeline = self.build(open.clone())?;
        let result = self.drive(&pipeline, &open, shutdown);
        let _ = pipeline.set_state(gst::State::Null);
        // A fragment still open was never listed: its file is half written.
        let leftovers: Vec<String> = match open.lock() {
            Ok(mut o) => o.names.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for name in leftovers {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
        result
    }

    fn build(&self, open: Arc<Mutex<OpenFragments>>) -> Result<gst::Pipeline, RunError> {
        gst::init().map_err(|e| RunError::Build(e.to_string()))?;
        let line = description::launch_line(description::for_input(self.input.has_audio));
        let pipeline = gst::parse::launch(&line)
            .map_err(|e| RunError::Build(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| RunError::Build("description is not a pipeline".into()))?;
        let element = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| RunError::Build(format!("no element named '{name}'")))
        };
        element("source")?.set_property("location", self.input.path.to_string_lossy().as_ref());
        continuous_timeline(&element("video_queue")?)?;
        if self.input.has_audio {
            continuous_timeline(&element("audio_queue")?)?;
        }
        let encoder = element("video_encoder")?;
        encoder.set_property("bitrate", self.settings.video_kbps);
        // Keyframes come on request at segment boundaries, not on a fixed cadence.
        encoder.set_property("key-int-max", 100_000u32);

        let hls = element("hls")?;
        hls.set_property("target-duration", self.settings.segment_seconds);
        // We delete old fragments ourselves, after the retention.
        hls.set_property("max-files", 0u32);
        hls.set_property(
            "location",
            self.dir.join("segment%05d.ts").to_string_lossy().as_ref(),
        );
        let segment = Duration::from_secs(self.settings.segment_seconds as u64);
        let split_at = segment.saturating_sub(SEGMENT_MARGIN).max(SEGMENT_MARGIN);
        if let Some(bin) = hls.downcast_ref::<gst::Bin>() {
            for child in bin.iterate_elements().into_iter().flatten() {
                let is_split = child.factory().is_some_and(|f| f.name() == "splitmuxsink");
                if is_split {
                    child.set_property("max-size-time", split_at.as_nanos() as u64);
                }
            }
        }
        hls.connect("get-playlist-stream", false, |_| {
            // hlssink2's own playlist (which would end with ENDLIST) is dropped.
            Some(
                gio::MemoryOutputStream::new_resizable()
                    .upcast::<gio::OutputStream>()
                    .to_value(),
            )
        });
        hls.connect("delete-fragment", false, |_| None);
        let dir = self.dir.clone();
        let signal = self.input.signal.clone();
        hls.connect("get-fragment-stream", false, move |_| {
            let Ok(mut open) = open.lock() else {
                return None;
            };
            let name = LivePlaylist::segment_name(open.next_sequence);
            let path = dir.join(&name);
            match gio::File::for_path(&path).replace(
                None,
                false,
                gio::FileCreateFlags::REPLACE_DESTINATION,
                gio::Cancellable::NONE,
            ) {
                Ok(stream) => {
                    open.next_sequence += 1;
                    open.names.push_back(name);
                    Some(stream.upcast::<gio::OutputStream>().to_value())
                }
                Err(e) => {
                    log::error!("Signal '{signal}': cannot create {}: {e}", path.display());
                    None
                }
            }
        });
        Ok(pipeline)
    }

    /// Starts the pipeline and handles its bus until shutdown or failure.
    fn drive(
        &mut self,
        pipeline: &gst::Pipeline,
        open: &Arc<Mutex<OpenFragments>>,
        shutdown: &Shutdown,
    ) -> Result<(), RunError> {
        let bus = pipeline
            .bus()
            .ok_or_else(|| RunError::Start("pipeline has no bus".into()))?;
        pipeline.set_state(gst::State::Paused).map_err(|_| {
            first_error(&bus).unwrap_or_else(|| RunError::Start("cannot pause".into()))
        })?;
        // clocksync does not preroll, so the pipeline reports PAUSED at once;
        // the seek must wait until decodebin has linked its pads.
        self.wait_for_decoded_pads(pipeline, &bus)?;
        seek_input(pipeline, gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT)
            .map_err(|e| RunError::Start(format!("initial segment seek refused: {e}")))?;
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            first_error(&bus).unwrap_or_else(|| RunError::Start("cannot play".into()))
        })?;
        self.status = SignalStatus::Running;
        log::info!(
            "Encoding signal '{}' from {} into {}",
            self.input.signal,
            self.input.path.display(),
            self.dir.display()
        );

        let started = Instant::now();
        let mut opened_at: VecDeque<gst::ClockTime> = VecDeque::new();
        let mut media_written = Duration::ZERO;
        let mut first_offset: Option<f64> = None;
        let mut last_progress = Instant::now();
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let wall = started.elapsed();
                log::info!(
                    "Signal '{}': {} segments written, {} loops, media {:.1} s in {:.1} s wall (drift since the first segment {:+.2} s)",
                    self.input.signal,
                    self.segments_written,
                    self.loops,
                    media_written.as_secs_f64(),
                    wall.as_secs_f64(),
                    media_written.as_secs_f64() - wall.as_secs_f64() - first_offset.unwrap_or(0.0)
                );
            }
            let Some(msg) =
                bus.timed_pop(gst::ClockTime::from_nseconds(BUS_POLL.as_nanos() as u64))
            else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Element(element) => {
                    let Some(s) = element.structure() else {
                        continue;
                    };
                    let running_time = s.get::<gst::ClockTime>("running-time").ok();
                    if s.name() == "splitmuxsink-fragment-opened" {
                        if let Some(rt) = running_time {
                            opened_at.push_back(rt);
                        }
                    } else if s.name() == "splitmuxsink-fragment-closed" {
                        let start = opened_at.pop_front();
                        let name = open.lock().ok().and_then(|mut o| o.names.pop_front());
                        if let (Some(name), Some(start), Some(end)) = (name, start, running_time) {
                            let duration =
                                Duration::from_nanos(end.saturating_sub(start).nseconds());
                            media_written += duration;
                            self.publish(name, duration)?;
                            // Drift since the first segment: the pipeline's
                            // start-up latency is an offset, not a drift.
                            let ahead =
                                media_written.as_secs_f64() - started.elapsed().as_secs_f64();
                            let offset = *first_offset.get_or_insert(ahead);
                            metrics::WORKER_DRIFT
                                .with_label_values(&[&self.input.signal])
                                .set(ahead - offset);
                        }
                    }
                }
                gst::MessageView::SegmentDone(_) => {
                    self.loops += 1;
                    metrics::WORKER_LOOPS
                        .with_label_values(&[&self.input.signal])
                        .inc();
                    log::debug!(
                        "Signal '{}' looping (loop {})",
                        self.input.signal,
                        self.loops
                    );
                    seek_input(pipeline, gst::SeekFlags::SEGMENT)
                        .map_err(|e| RunError::Start(format!("loop seek refused: {e}")))?;
                }
                gst::MessageView::Eos(_) => return Err(RunError::UnexpectedEos),
                gst::MessageView::Error(err) => return Err(stream_error(err)),
                gst::MessageView::Warning(w) => {
                    log::warn!("Signal '{}': {}", self.input.signal, w.error());
                }
                _ => {}
            }
        }
    }

    /// Waits until decodebin has linked every branch (video, and audio when the
    /// input has it), failing on a bus error or after [`PREROLL_TIMEOUT`].
    fn wait_for_decoded_pads(
        &self,
        pipeline: &gst::Pipeline,
        bus: &gst::Bus,
    ) -> Result<(), RunError> {
        let mut queues = vec!["video_queue"];
        if self.input.has_audio {
            queues.push("audio_queue");
        }
        let pads: Vec<gst::Pad> = queues
            .iter()
            .filter_map(|q| pipeline.by_name(q).and_then(|e| e.static_pad("sink")))
            .collect();
        if pads.len() != queues.len() {
            return Err(RunError::Build("pipeline lacks its queues".into()));
        }
        let deadline = Instant::now() + PREROLL_TIMEOUT;
        while !pads.iter().all(|p| p.is_linked()) {
            if let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(10),
                &[gst::MessageType::Error],
            ) {
                if let gst::MessageView::Error(err) = msg.view() {
                    return Err(stream_error(err));
                }
            }
            if Instant::now() > deadline {
                return Err(RunError::Start(format!(
                    "decoder exposed no stream within {} s",
                    PREROLL_TIMEOUT.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// Lists a finished segment, rewrites the playlist atomically and deletes
    /// segments past the retention.
    fn publish(&mut self, name: String, duration: Duration) -> Result<(), RunError> {
        let target = Duration::from_secs(self.playlist.target_duration());
        if duration > target {
            log::warn!(
                "Signal '{}': segment {name} lasts {:.3} s, longer than the target {} s",
                self.input.signal,
                duration.as_secs_f64(),
                target.as_secs()
            );
        }
        let deletable = self.playlist.push(name.clone(), duration);
        write_atomically(
            &self.dir.join(crate::hls::PLAYLIST_NAME),
            &self.playlist.render(),
        )?;
        self.segments_written += 1;
        metrics::WORKER_SEGMENTS
            .with_label_values(&[&self.input.signal])
            .inc();
        log::debug!(
            "Signal '{}': wrote {name} ({:.3} s)",
            self.input.signal,
            duration.as_secs_f64()
        );
        for old in deletable {
            if let Err(e) = std::fs::remove_file(self.dir.join(&old)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("Signal '{}': cannot delete {old}: {e}", self.input.signal);
                }
            }
        }
        Ok(())
    }
}

/// Keeps one continuous timeline across loops for everything after the
/// decoder.
///
/// Each loop's segment seek makes the demuxer send a new segment (same media
/// times, a later base). Downstream of the decoder that new segment would make
/// the audio encoder drain and restart (AAC frames overlapping at the seam) and
/// splitmuxsink cut a short segment there, which players such as Chromium's
/// native HLS refuse. So on each branch's queue the new segment is replaced by
/// the very first one (the same event, so the pad sees nothing new to send on)
/// and buffer timestamps are moved by the difference: running time, and so
/// every output timestamp, is unchanged.
fn continuous_timeline(queue: &gst::Element) -> Result<(), RunError> {
    let pad = queue
        .static_pad("sink")
        .ok_or_else(|| RunError::Build("queue has no sink pad".into()))?;
    let timeline: Arc<Mutex<Timeline>> = Arc::new(Mutex::new(Timeline::default()));
    pad.add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::EVENT_DOWNSTREAM
            | gst::PadProbeType::EVENT_FLUSH,
        move |_pad, info| {
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
}

impl Timeline {
    /// Returns the event to send instead of `event`, if any.
    fn on_event(&mut self, event: &gst::Event) -> Option<gst::Event> {
        match event.view() {
            gst::EventView::FlushStop(_) => {
                *self = Timeline::default();
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
                        self.shift = ns(segment.base()) - ns(first.base()) + ns(first.start())
                            - ns(segment.start());
                        Some(first_event.clone())
                    }
                }
            }
            _ => None,
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

/// Seeks the input back to its start. The seek goes upstream from the video
/// queue straight to the demuxer (which applies it to every stream): sent to
/// the whole pipeline it would have to pass through hlssink2's muxer, which
/// refuses it.
fn seek_input(pipeline: &gst::Pipeline, flags: gst::SeekFlags) -> Result<(), String> {
    let pad = pipeline
        .by_name("video_queue")
        .and_then(|q| q.static_pad("sink"))
        .ok_or("no video_queue sink pad")?;
    let seek = gst::event::Seek::new(
        1.0,
        flags,
        gst::SeekType::Set,
        gst::ClockTime::ZERO,
        gst::SeekType::None,
        gst::ClockTime::NONE,
    );
    if pad.push_event(seek) {
        Ok(())
    } else {
        Err("the demuxer refused the seek".into())
    }
}

/// Writes through a temporary file and a rename, so a packager never serves a
/// half-written playlist.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("m3u8.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| RunError::Write(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| RunError::Write(path.to_path_buf(), e))
}

fn stream_error(err: &gst::message::Error) -> RunError {
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
fn first_error(bus: &gst::Bus) -> Option<RunError> {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some(stream_error(err));
        }
    }
    None
}

/// Pause before restart number `failures` (1-based): doubling, capped.
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    RESTART_BACKOFF_START
        .saturating_mul(factor)
        .min(RESTART_BACKOFF_MAX)
}

fn sleep_unless(shutdown: &Shutdown, pause: Duration) {
    let until = Instant::now() + pause;
    while Instant::now() < until && !shutdown.is_triggered() {
        std::thread::sleep(BUS_POLL.min(until.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), RESTART_BACKOFF_START);
        assert_eq!(backoff(2), RESTART_BACKOFF_START * 2);
        assert_eq!(backoff(40), RESTART_BACKOFF_MAX);
    }
}
