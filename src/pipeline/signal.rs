//! One live signal's runner: builds its pipeline from the launch line, drives
//! it, and restarts it with backoff when it fails.
//!
//! ```text
//! filesrc -> decodebin -+-> videoconvert -> x264enc -> clocksync -> h264parse --+-> hlssink2
//!                       +-> audioconvert -> avenc_aac -> clocksync -> aacparse --+   (segments)
//!                                                                                 |
//!       bus: splitmuxsink-fragment-closed --> Segments::publish --> playlist.m3u8 <+
//!
//! run:  Starting --first segment--> Running --error--> Retrying --backoff--> Starting ...
//!       (any) --shutdown--> Stopped
//! ```
//!
//! Epoch locking ([`super::epoch`]): the pipeline runs on a realtime clock
//! with base time EPOCH + the muxer's constant; a run starts at the first
//! segment boundary n·L far enough ahead (never behind the playlist), seeks
//! the input to (n·L) mod D and offsets the branches' running time to n·L
//! (clocksync then holds the first frame until that instant), and asks
//! x264enc for a keyframe at every boundary. So a segment's number, date,
//! PTS, content and cut depend on the wall clock alone, never on when or
//! where the worker started.
//!
//! The pieces it puts together: [`super::description`] (the launch line),
//! [`super::looping`] (endless input, one timeline), [`super::segments`] (our
//! segment names and playlist) and [`super::health`] (the status it reports).
//! As in gst-plugins-rs, the operator's [`EncodeSettings`] stay immutable and
//! apart from the mutable state: [`Segments`] and loop count across runs,
//! [`RunState`] within one run.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::description;
use super::epoch::EpochGrid;
use super::health::{NewestSegment, SignalHealth, SignalStatus};
use super::input::Input;
use super::looping;
use super::metrics;
use super::segments::{OpenFragments, Segments};
use super::settings::EncodeSettings;
use crate::service::shutdown::Shutdown;

/// How often the bus loop wakes to look at the shutdown flag.
pub const DEFAULT_BUS_POLL: Duration = Duration::from_millis(100);
/// First pause before restarting a failed pipeline; doubled per failure in a row.
pub const DEFAULT_RESTART_BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest pause between restarts.
pub const DEFAULT_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A pipeline that ran this long resets the backoff.
pub const DEFAULT_HEALTHY_RUN: Duration = Duration::from_secs(30);
/// How often progress is logged at info.
pub const DEFAULT_PROGRESS_EVERY: Duration = Duration::from_secs(60);

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

/// What one run of the pipeline knows, from its start to its end.
struct RunState {
    started: Instant,
    /// Running times of the fragments splitmuxsink opened and has not closed.
    opened_at: VecDeque<gst::ClockTime>,
    /// Media time of the segments this run published.
    media_written: Duration,
    /// Media minus wall time at the first segment: start-up latency, not drift.
    first_offset: Option<f64>,
    last_progress: Instant,
}

impl RunState {
    fn new() -> Self {
        RunState {
            started: Instant::now(),
            opened_at: VecDeque::new(),
            media_written: Duration::ZERO,
            first_offset: None,
            last_progress: Instant::now(),
        }
    }
}

/// Runs one signal until shutdown: builds, loops and restarts its pipeline.
pub struct SignalRunner {
    input: Input,
    /// What the operator configured; never changed while running.
    settings: EncodeSettings,
    /// Where this runner reports its status.
    health: SignalHealth,
    /// The signal's folder and playlist, kept across restarts.
    segments: Segments,
    /// Times the input was looped since the worker started.
    loops: u64,
    /// The current run's pass length (ns) for the timelines, set at its start.
    period: Arc<AtomicU64>,
}

impl SignalRunner {
    /// Prepares the output folder, picks up a playlist left by an earlier run
    /// and reports the signal as starting.
    pub fn new(
        input: Input,
        output_root: &Path,
        settings: EncodeSettings,
        health: SignalHealth,
    ) -> Result<Self, RunError> {
        let segments = Segments::open(&input.signal, output_root, &settings)?;
        health.set(&input.signal, SignalStatus::Starting);
        Ok(SignalRunner {
            input,
            settings,
            health,
            segments,
            loops: 0,
            period: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn status(&self) -> Option<SignalStatus> {
        self.health.get(&self.input.signal)
    }

    fn set_status(&self, status: SignalStatus) {
        self.health.set(&self.input.signal, status);
    }

    /// The launch line this runner's pipeline is built from, as
    /// `worker --print-pipeline` prints it.
    pub fn launch_line(&self) -> String {
        description::effective_line(&self.input, self.segments.dir(), &self.settings)
    }

    /// Ends the stream after [`Self::run`] returned because the signal's input
    /// was removed: its playlist gets `EXT-X-ENDLIST` ([`Segments::end`]).
    pub fn end_stream(&mut self) -> Result<(), RunError> {
        self.segments.end()
    }

    /// Runs until `shutdown`, restarting the pipeline with backoff on errors.
    pub fn run(&mut self, shutdown: &Shutdown) {
        let mut failures: u32 = 0;
        while !shutdown.is_triggered() {
            let started = Instant::now();
            self.set_status(SignalStatus::Starting);
            match self.run_once(shutdown) {
                Ok(()) => break,
                Err(e) => {
                    if started.elapsed() > DEFAULT_HEALTHY_RUN {
                        failures = 0;
                    }
                    failures += 1;
                    let pause = backoff(failures);
                    self.set_status(SignalStatus::Retrying);
                    metrics::WORKER_RESTARTS
                        .with_label_values(&[&self.input.signal])
                        .inc();
                    log::error!(
                        "Signal '{}' pipeline failed: {e}; restarting in {:.1} s (failure {failures} in a row)",
                        self.input.signal,
                        pause.as_secs_f32()
                    );
                    self.segments.mark_discontinuity();
                    sleep_unless(shutdown, pause);
                }
            }
        }
        self.set_status(SignalStatus::Stopped);
        // The worker says why at info (input removed, or "Worker stopped").
        log::debug!("Signal '{}' stopped", self.input.signal);
    }

    /// One life of the pipeline: Ok when shutdown stopped it, Err when it failed.
    fn run_once(&mut self, shutdown: &Shutdown) -> Result<(), RunError> {
        self.segments.ensure_dir()?;
        let open = self.segments.begin_run();
        self.period = Arc::new(AtomicU64::new(0));
        let pipeline = self.build(open.clone())?;
        let result = self.drive(&pipeline, &open, shutdown);
        let _ = pipeline.set_state(gst::State::Null);
        // A fragment still open was never listed: its file is half written.
        self.segments.discard_unfinished(&open);
        result
    }

    /// Parses the launch line, then adds what only the worker does: the
    /// continuous timeline on each branch and our fragment streams.
    fn build(&self, open: Arc<Mutex<OpenFragments>>) -> Result<gst::Pipeline, RunError> {
        gst::init().map_err(|e| RunError::Build(e.to_string()))?;
        let line = self.launch_line();
        let pipeline = gst::parse::launch(&line)
            .map_err(|e| RunError::Build(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| RunError::Build("description is not a pipeline".into()))?;
        let element = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| RunError::Build(format!("no element named '{name}'")))
        };
        for head in looping::branch_heads(self.input.has_audio) {
            looping::continuous_timeline(&element(head)?, self.period.clone())?;
        }
        description::limit_decoder_threads(&pipeline, &self.settings);
        keyframes_at_boundaries(&element(description::VIDEO_ENCODER)?, self.settings.grid())?;
        let hls = element(description::HLS)?;
        if !description::settle_split_child(&hls, &self.settings) {
            return Err(RunError::Build("hlssink2 holds no splitmuxsink".into()));
        }
        self.segments.attach(&hls, open);
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
        let grid = self.settings.grid();
        lock_clock(pipeline, grid);
        pipeline.set_state(gst::State::Paused).map_err(|_| {
            first_error(&bus).unwrap_or_else(|| RunError::Start("cannot pause".into()))
        })?;
        looping::wait_for_decoded_pads(pipeline, &bus, self.input.has_audio)?;
        let wanted = grid.first_sequence(SystemTime::now(), self.segments.next_sequence());
        let first = self.segments.align(open, wanted);
        let running = grid
            .running_time(first)
            .map_err(|e| RunError::Start(e.to_string()))?;
        // D: the pass length the grid maps wall-clock time with, and the
        // timelines place each pass by (see looping::continuous_timeline).
        let pass = looping::pass_duration(pipeline).or(self.input.duration);
        let position = grid.input_position(first, pass);
        self.period.store(
            pass.map(|d| d.as_nanos() as u64).unwrap_or(0),
            Ordering::Relaxed,
        );
        for head in looping::branch_heads(self.input.has_audio) {
            let pad = pipeline
                .by_name(head)
                .and_then(|q| q.static_pad("src"))
                .ok_or_else(|| RunError::Build(format!("no {head} src pad")))?;
            // After the first seek the input's running time starts at 0:
            // the offset makes it the boundary's.
            pad.set_offset(running.as_nanos() as i64);
        }
        looping::seek_input(
            pipeline,
            gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT | gst::SeekFlags::ACCURATE,
            position,
        )
        .map_err(|e| RunError::Start(format!("initial segment seek refused: {e}")))?;
        log::info!(
            "Signal '{}': starting at segment {first} ({:.3} s after the epoch, input at {:.3} s of {:.3} s)",
            self.input.signal,
            grid.boundary(first).as_secs_f64(),
            position.as_secs_f64(),
            pass.unwrap_or_default().as_secs_f64()
        );
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            first_error(&bus).unwrap_or_else(|| RunError::Start("cannot play".into()))
        })?;
        log::info!(
            "Encoding signal '{}' from {} into {}",
            self.input.signal,
            self.input.path.display(),
            self.segments.dir().display()
        );

        let mut run = RunState::new();
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            if run.last_progress.elapsed() >= DEFAULT_PROGRESS_EVERY {
                run.last_progress = Instant::now();
                let wall = run.started.elapsed();
                log::info!(
                    "Signal '{}': {} segments written, {} loops, media {:.1} s in {:.1} s wall (drift since the first segment {:+.2} s)",
                    self.input.signal,
                    self.segments.written(),
                    self.loops,
                    run.media_written.as_secs_f64(),
                    wall.as_secs_f64(),
                    run.media_written.as_secs_f64() - wall.as_secs_f64() - run.first_offset.unwrap_or(0.0)
                );
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(
                DEFAULT_BUS_POLL.as_nanos() as u64,
            )) else {
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
                            run.opened_at.push_back(rt);
                        }
                    } else if s.name() == "splitmuxsink-fragment-closed" {
                        let start = run.opened_at.pop_front();
                        let closed = Segments::closed(open);
                        if let (Some(fragment), Some(start), Some(end)) =
                            (closed, start, running_time)
                        {
                            let bytes = fragment.take_bytes();
                            let (sequence, name) = (fragment.sequence, fragment.name);
                            let duration =
                                Duration::from_nanos(end.saturating_sub(start).nseconds());
                            run.media_written += duration;
                            let on_grid = grid
                                .sequence_of_running_time(Duration::from_nanos(start.nseconds()));
                            if on_grid != sequence {
                                log::warn!(
                                    "Signal '{}': segment {name} starts in the epoch grid's segment {on_grid}",
                                    self.input.signal
                                );
                            }
                            let program_date_time = grid.program_date_time(sequence);
                            self.segments.publish(
                                name.clone(),
                                &bytes,
                                duration,
                                program_date_time,
                            )?;
                            self.health.segment_written(
                                &self.input.signal,
                                NewestSegment {
                                    name,
                                    sequence,
                                    program_date_time,
                                    duration,
                                    written_at: std::time::SystemTime::now(),
                                },
                            );
                            if run.first_offset.is_none() {
                                // Segments flow: this run is healthy.
                                self.set_status(SignalStatus::Running);
                            }
                            // Drift since the first segment: the pipeline's
                            // start-up latency is an offset, not a drift.
                            let ahead = run.media_written.as_secs_f64()
                                - run.started.elapsed().as_secs_f64();
                            let offset = *run.first_offset.get_or_insert(ahead);
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
                    looping::seek_input(pipeline, gst::SeekFlags::SEGMENT, Duration::ZERO)
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
}

/// Runs `pipeline` on a realtime clock whose running time is time since the
/// epoch less the muxer's constant: clocksync then paces buffers to the wall
/// clock of their epoch-locked timestamps.
fn lock_clock(pipeline: &gst::Pipeline, grid: EpochGrid) {
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
/// grid segment, so every worker cuts (and starts its IDR) at the same
/// instants whatever the frame rate; splitmuxsink then cuts on those
/// keyframes only ([`description::settle_split_child`]).
fn keyframes_at_boundaries(encoder: &gst::Element, grid: EpochGrid) -> Result<(), RunError> {
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
    DEFAULT_RESTART_BACKOFF_START
        .saturating_mul(factor)
        .min(DEFAULT_RESTART_BACKOFF_MAX)
}

/// Sleeps `pause`, waking early when shutdown is triggered.
pub fn sleep_unless(shutdown: &Shutdown, pause: Duration) {
    let until = Instant::now() + pause;
    while Instant::now() < until && !shutdown.is_triggered() {
        std::thread::sleep(DEFAULT_BUS_POLL.min(until.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), DEFAULT_RESTART_BACKOFF_START);
        assert_eq!(backoff(2), DEFAULT_RESTART_BACKOFF_START * 2);
        assert_eq!(backoff(40), DEFAULT_RESTART_BACKOFF_MAX);
    }
}
