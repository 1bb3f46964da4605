//! One live signal's runner: builds its pipeline from the launch line, drives
//! it, and restarts it with backoff when it fails.
//!
//! ```text
//! filesrc -> decodebin -+-> videoconvert -> x264enc -> clocksync -> h264parse --+-> mpegtsmux -> appsink
//!                       +-> audioconvert -> avenc_aac -> clocksync -> aacparse --+        |
//!                                                                                  Publisher::push
//!                                                       (parts, segments, playlist.m3u8) <-+
//!
//! run:  Starting --first segment--> Running --error--> Retrying --backoff--> Starting ...
//!       (any) --shutdown--> Stopped
//! ```
//!
//! Epoch locking ([`super::epoch`]): the pipeline runs on a realtime clock
//! with base time EPOCH + the muxer's constant; a run starts at the first
//! segment boundary n·L far enough ahead (never behind what was published),
//! seeks the input to (n·L) mod D and offsets the branches' running time to
//! n·L (clocksync then holds the first frame until that instant), and asks
//! x264enc for a keyframe at every boundary ([`super::epoch_lock`]). So a
//! segment's number, date, PTS, content and cut depend on the wall clock
//! alone, never on when or where the worker started.
//!
//! The pieces it puts together: [`super::description`] (the launch line),
//! [`super::looping`] (endless input, one timeline), [`super::publisher`]
//! (parts, segments and playlist, fed by the appsink on the muxer's thread)
//! and [`super::health`] (the status it reports). As in gst-plugins-rs, the
//! operator's [`EncodeSettings`] stay immutable and apart from the mutable
//! state: the [`Publisher`] and loop count across runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::description;
use super::epoch_lock::{keyframes_at_boundaries, lock_clock};
use super::error::{first_error, stream_error, RunError};
use super::health::{SignalHealth, SignalStatus};
use super::input::Input;
use super::looping;
use super::metrics;
use super::multivariant::LadderFacts;
use super::publisher::{signal_dir, Publisher, Rendition};
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

/// Runs one signal until shutdown: builds, loops and restarts its pipeline.
pub struct SignalRunner {
    input: Input,
    /// What the operator configured; never changed while running.
    settings: EncodeSettings,
    /// Where this runner reports its status.
    health: SignalHealth,
    /// The signal's published streams, one per rendition (one alone
    /// without a ladder), kept across restarts; each appsink's callback
    /// feeds its own on its muxer's thread while a run lasts.
    publishers: Vec<Arc<Mutex<Publisher>>>,
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
        output_root: &std::path::Path,
        settings: EncodeSettings,
        health: SignalHealth,
    ) -> Result<Self, RunError> {
        let seam = looping::seam_gap(input.duration, input.frame_rate);
        let publishers = match settings.ladder.rungs_for(input.size) {
            None => vec![Publisher::open(
                &input.signal,
                output_root,
                &settings,
                health.clone(),
                None,
                seam,
            )?],
            Some(rungs) => {
                let ladder = Arc::new(Mutex::new(LadderFacts::new(
                    signal_dir(output_root, &input.signal).join(crate::hls::PLAYLIST_NAME),
                    &rungs,
                    input.has_audio,
                    input.frame_rate,
                )));
                rungs
                    .iter()
                    .enumerate()
                    .map(|(index, rung)| {
                        let rendition = Rendition {
                            index,
                            rung: *rung,
                            ladder: ladder.clone(),
                        };
                        Publisher::open(
                            &input.signal,
                            output_root,
                            &settings,
                            health.clone(),
                            Some(rendition),
                            seam,
                        )
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        health.set(&input.signal, SignalStatus::Starting);
        Ok(SignalRunner {
            input,
            settings,
            health,
            publishers: publishers
                .into_iter()
                .map(|p| Arc::new(Mutex::new(p)))
                .collect(),
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

    /// Every rendition's publisher, locked in turn.
    fn each_publisher(&self) -> impl Iterator<Item = MutexGuard<'_, Publisher>> {
        self.publishers
            .iter()
            .map(|p| p.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The first (top) rendition's publisher: the one that reports health.
    fn first_publisher(&self) -> Option<MutexGuard<'_, Publisher>> {
        self.each_publisher().next()
    }

    /// The launch line this runner's pipeline is built from, as
    /// `worker --print-pipeline` prints it.
    pub fn launch_line(&self) -> String {
        description::effective_line(&self.input, &self.settings)
    }

    /// The next segment of every rendition follows a change of content (the
    /// input was replaced): a discontinuity, so players reset their decoders.
    pub fn follows_new_content(&mut self) {
        self.each_publisher()
            .for_each(|mut p| p.mark_discontinuity());
    }

    /// Ends the stream after [`Self::run`] returned because the signal's input
    /// was removed: its playlist gets `EXT-X-ENDLIST` ([`Publisher::end`]).
    pub fn end_stream(&mut self) -> Result<(), RunError> {
        self.each_publisher().try_for_each(|mut p| p.end())
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
                    // No discontinuity: the next run's timestamps follow the
                    // epoch grid, as the twin's do.
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
        self.each_publisher().try_for_each(|p| p.ensure_dir())?;
        self.period = Arc::new(AtomicU64::new(0));
        let pipeline = self.build()?;
        let result = self
            .start(&pipeline)
            .and_then(|bus| self.drive(&pipeline, &bus, shutdown));
        let _ = pipeline.set_state(gst::State::Null);
        // The segment being made was never listed; its parts leave the playlist.
        self.each_publisher().for_each(|mut p| p.end_run());
        result
    }

    /// Parses the launch line, then adds what only the worker does: the
    /// continuous timeline on each branch, keyframes on the grid and the
    /// publisher behind the appsink.
    fn build(&self) -> Result<gst::Pipeline, RunError> {
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
        let ladder = self.settings.ladder.rungs_for(self.input.size).is_some();
        for (rung, publisher) in self.publishers.iter().enumerate() {
            let name = |base: &str| {
                if ladder {
                    description::rung_element(base, rung)
                } else {
                    base.to_string()
                }
            };
            keyframes_at_boundaries(
                &element(&name(description::VIDEO_ENCODER))?,
                self.settings.grid(),
            )?;
            let sink = element(&name(description::SEGMENTER))?
                .downcast::<gst_app::AppSink>()
                .map_err(|_| RunError::Build("the segmenter is not an appsink".into()))?;
            feed_publisher(&sink, publisher.clone());
        }
        Ok(pipeline)
    }

    /// Starts the pipeline on the epoch grid: pauses it, waits for the
    /// decoder's streams, places the run at the first segment boundary far
    /// enough ahead, seeks the input there and plays.
    fn start(&mut self, pipeline: &gst::Pipeline) -> Result<gst::Bus, RunError> {
        let bus = pipeline
            .bus()
            .ok_or_else(|| RunError::Start("pipeline has no bus".into()))?;
        let grid = self.settings.grid();
        lock_clock(pipeline, grid);
        pipeline.set_state(gst::State::Paused).map_err(|_| {
            first_error(&bus).unwrap_or_else(|| RunError::Start("cannot pause".into()))
        })?;
        looping::wait_for_decoded_pads(pipeline, &bus, self.input.has_audio)?;
        // Every rendition starts on the same segment, past any name any of
        // them published.
        let unused = self
            .each_publisher()
            .map(|p| p.first_unused())
            .max()
            .unwrap_or(0);
        let first = grid.first_sequence(SystemTime::now(), unused);
        self.each_publisher().for_each(|mut p| {
            p.begin_run(first);
        });
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
        renegotiate_decoder_allocation(pipeline, self.input.has_audio);
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
        let dir = self
            .first_publisher()
            .map(|p| p.dir().display().to_string())
            .unwrap_or_default();
        log::info!(
            "Encoding signal '{}' from {} into {dir}",
            self.input.signal,
            self.input.path.display(),
        );
        Ok(bus)
    }

    /// Handles the bus until shutdown (Ok) or a failure (Err): loops the
    /// input at each pass's end and logs progress.
    fn drive(
        &mut self,
        pipeline: &gst::Pipeline,
        bus: &gst::Bus,
        shutdown: &Shutdown,
    ) -> Result<(), RunError> {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            if last_progress.elapsed() >= DEFAULT_PROGRESS_EVERY {
                last_progress = Instant::now();
                self.log_progress(started);
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(
                DEFAULT_BUS_POLL.as_nanos() as u64,
            )) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::SegmentDone(_) => self.loop_input(pipeline)?,
                gst::MessageView::Eos(_) => return Err(RunError::UnexpectedEos),
                gst::MessageView::Error(err) => return Err(stream_error(err)),
                gst::MessageView::Warning(w) => {
                    log::warn!("Signal '{}': {}", self.input.signal, w.error());
                }
                _ => {}
            }
        }
    }

    /// The input's pass ended: seek back to its start without a flush, so
    /// the timeline goes on ([`looping`]).
    fn loop_input(&mut self, pipeline: &gst::Pipeline) -> Result<(), RunError> {
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
            .map_err(|e| RunError::Start(format!("loop seek refused: {e}")))
    }

    fn log_progress(&self, started: Instant) {
        let (written, media, drift) = self
            .first_publisher()
            .map(|p| p.progress())
            .unwrap_or_default();
        log::info!(
            "Signal '{}': {written} segments written, {} loops, media {:.1} s in {:.1} s wall (drift since the first segment {drift:+.2} s)",
            self.input.signal,
            self.loops,
            media.as_secs_f64(),
            started.elapsed().as_secs_f64(),
        );
    }
}

/// Asks the decoders to query their allocation again. The seek above
/// flushes while the video decoder's first allocation query is often still
/// on its way downstream; that query then fails, the decoder settles for a
/// pool of its own that downstream never saw, and avdec_h264 copies every
/// decoded frame into it for the whole run (about 1.4% of a ladder worker's
/// CPU, measured with `perf`). A reconfigure event from each branch head
/// makes the decoder renegotiate on its next frame, and decode straight into
/// the pool the scalers and encoders agreed on.
fn renegotiate_decoder_allocation(pipeline: &gst::Pipeline, has_audio: bool) {
    for head in looping::branch_heads(has_audio) {
        if let Some(pad) = pipeline.by_name(head).and_then(|e| e.static_pad("sink")) {
            pad.push_event(gst::event::Reconfigure::new());
        }
    }
}

/// Hands everything the muxer writes to the publisher, on the muxer's
/// thread: a part is published as soon as the frame after it is muxed. The
/// appsink takes mpegtsmux's buffer lists whole (`buffer-list=true`): one
/// list per muxed frame instead of one sample per 188-byte TS packet. A file
/// that cannot be written fails the run with the reason (an element error
/// the bus loop reports).
fn feed_publisher(sink: &gst_app::AppSink, publisher: Arc<Mutex<Publisher>>) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut publisher = publisher.lock().unwrap_or_else(|p| p.into_inner());
                let pushed = match (sample.buffer_list(), sample.buffer()) {
                    (Some(list), _) => list.iter().try_for_each(|b| push_buffer(&mut publisher, b)),
                    (None, Some(buffer)) => push_buffer(&mut publisher, buffer),
                    (None, None) => Ok(()),
                };
                pushed.map(|()| gst::FlowSuccess::Ok).map_err(|e| {
                    if let Some(e) = e {
                        gst::element_error!(sink, gst::ResourceError::Write, ["{}", e]);
                    }
                    gst::FlowError::Error
                })
            })
            .build(),
    );
}

/// One muxed buffer to the publisher; `None` when it cannot be read.
fn push_buffer(publisher: &mut Publisher, buffer: &gst::BufferRef) -> Result<(), Option<RunError>> {
    let map = buffer.map_readable().map_err(|_| None)?;
    publisher.push(map.as_slice()).map_err(Some)
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
