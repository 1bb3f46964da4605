//! GStreamer's own player as a viewer: `playbin` (which picks `hlsdemux`,
//! GStreamer 1.22) playing a URL to fake sinks that sync on the clock, as a
//! player renders, with buffering handled as `gst-launch-1.0` and `gst-play-1.0`
//! do (pause below 100 %, play again at 100 %). It runs as its own program
//! (`gstplayer`) so a demuxer that hangs or crashes cannot take a test or a
//! bench with it: [`play`] is that program's body, [`GstPlayer`] runs it in
//! the background for a test.
//!
//! Judged from outside what it does: every gap over [`STALL_GAP`] between two
//! rendered pictures is a stall ([`frozen_spans`]), every warning of the HTTP
//! source or the demuxer naming a failed request is a failed request
//! ([`FailureCounter`]). While playing it says so on stderr once a second,
//! `[judge] playing 4.120 s of media` ([`BrowserProgress`]), so a test injects
//! its fault once it really plays. It stops at the end of its watch, or at
//! SIGTERM or SIGINT (a test that has seen enough), and reports either way.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::{json, Value};

use crate::input::init_gst;
use crate::player_judging::{frozen_spans, FailureCounter};
use crate::player_process::{last_json, BrowserProgress, PlayerProcess};
use crate::real_players::FPS;
use crate::workspace::bin;

/// A gap between two rendered video frames (40 ms apart at 25 fps) longer
/// than this is a stall.
pub const STALL_GAP: Duration = Duration::from_millis(500);
/// The report's record: pictures rendered by each step.
pub const RECORD_STEP: Duration = Duration::from_millis(250);
/// GStreamer debug categories whose warnings name failed requests.
pub const LOG_CATEGORIES: &str = "souphttpsrc:2,adaptivedemux:2,hlsdemux:2";
/// How often the player says how much it has played.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// Set by SIGTERM or SIGINT: stop watching and report.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stop_on_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// What to play and for how long.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "gstplayer",
    about = "Plays a live HLS URL with GStreamer's playbin (hlsdemux) to clock-synced fake sinks \
             and prints a JSON report: frames rendered, stalls (gaps over 500 ms between \
             pictures), failed requests (souphttpsrc / hlsdemux warnings), bus errors."
)]
pub struct GstPlayerConfig {
    /// The playlist to play (a multivariant or a media playlist).
    #[arg(long)]
    pub url: String,
    /// Wall-clock seconds to watch, from the start (SIGTERM ends it sooner).
    #[arg(long, default_value_t = 45.0)]
    pub seconds: f64,
}

/// Plays `config.url` for `config.seconds` and returns the report (see the
/// module's documentation), or why playbin could not be built. Every debug
/// line at warning level or worse goes to stderr as it comes.
pub fn play(config: &GstPlayerConfig) -> Result<Value, String> {
    let started_at = Instant::now();
    let mut deadline = started_at + Duration::from_secs_f64(config.seconds.max(0.0));
    stop_on_signals();
    init_gst();

    // Failed requests, from the warnings of the HTTP source and the demuxer.
    let failures = Arc::new(Mutex::new(FailureCounter::default()));
    gst::log::remove_default_log_function();
    gst::log::set_active(true);
    gst::log::set_threshold_from_string(LOG_CATEGORIES, true);
    let counting = failures.clone();
    gst::log::add_log_function(
        move |category, level, _file, _function, _line, object, message| {
            if level > gst::DebugLevel::Warning {
                return;
            }
            let text = message.get().map(|m| m.to_string()).unwrap_or_default();
            let object = object.map(|o| o.to_string()).unwrap_or_default();
            let line = format!("{level:?} {} <{object}> {text}", category.name());
            eprintln!("{line}");
            let mut counter = counting.lock().unwrap_or_else(|p| p.into_inner());
            match category.name() {
                "souphttpsrc" if text.contains("URL:") => counter.transfer(&line),
                "adaptivedemux" | "hlsdemux"
                    if text.contains("Could not update the playlist")
                        || text.contains("Got custom error") =>
                {
                    counter.player(&line)
                }
                _ => {}
            }
        },
    );

    let frames: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let rendered = frames.clone();
    let playbin = build_playbin(&config.url, move || {
        rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
    })?;
    let _ = playbin.set_state(gst::State::Playing);
    let bus = playbin.bus().expect("a pipeline has a bus");
    let mut buffering = false;
    let mut buffering_dips = 0u64;
    let mut fatal: Option<String> = None;
    let mut warnings = Vec::new();
    let mut ended = false;
    let mut announced = Instant::now();
    while Instant::now() < deadline {
        if STOP.load(Ordering::SeqCst) {
            deadline = Instant::now();
            eprintln!("asked to stop");
            break;
        }
        let shown = frames.lock().unwrap_or_else(|p| p.into_inner()).len();
        if shown > 0 && announced.elapsed() >= ANNOUNCE_EVERY {
            announced = Instant::now();
            eprintln!("[judge] playing {:.3} s of media", shown as f64 / FPS);
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Buffering(b) => {
                if b.percent() < 100 && !buffering {
                    buffering = true;
                    if shown > 0 {
                        buffering_dips += 1;
                        eprintln!("buffering dip to {} % while playing", b.percent());
                    }
                    let _ = playbin.set_state(gst::State::Paused);
                } else if b.percent() >= 100 && buffering {
                    buffering = false;
                    let _ = playbin.set_state(gst::State::Playing);
                }
            }
            gst::MessageView::Error(e) => {
                let text = format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                );
                eprintln!("ERROR message: {text}");
                fatal.get_or_insert(text);
            }
            gst::MessageView::Warning(w) => {
                eprintln!("WARNING message: {}", w.error());
                warnings.push(w.error().to_string());
            }
            gst::MessageView::Eos(_) => {
                eprintln!("end of stream");
                ended = true;
            }
            _ => {}
        }
    }
    let frames = frames.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let stalls = frozen_spans(started_at, &frames, deadline, STALL_GAP);
    let counter = failures.lock().unwrap_or_else(|p| p.into_inner());
    let steps = (deadline - started_at).as_millis() / RECORD_STEP.as_millis();
    let rendered_by_quarter_second: Vec<usize> = (0..=steps as u32)
        .map(|i| {
            let by = started_at + RECORD_STEP * i;
            frames.partition_point(|t| *t <= by)
        })
        .collect();
    Ok(json!({
        "player": "gstreamer playbin",
        "url": config.url,
        "started": !frames.is_empty(),
        "startup_ms": frames.first().map(|t| (*t - started_at).as_millis() as u64),
        "frames": frames.len(),
        "stalls": stalls.count,
        "stall_ms": stalls.ms(),
        "stall_spans_s": stalls.spans,
        "failed_requests": counter.failed,
        "buffering_dips": buffering_dips,
        "bus_warnings": warnings,
        "fatal_error": fatal,
        "eos": ended,
        "failure_lines": counter.lines,
        "rendered_by_quarter_second": rendered_by_quarter_second,
    }))
}

/// `playbin` for `url` to fake sinks synced on the clock; `on_picture` is
/// called for each video frame rendered.
fn build_playbin(
    url: &str,
    on_picture: impl Fn() + Send + Sync + 'static,
) -> Result<gst::Element, String> {
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", url)
        .build()
        .map_err(|e| e.to_string())?;
    let video = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .property("signal-handoffs", true)
        .build()
        .map_err(|e| e.to_string())?;
    let audio = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .build()
        .map_err(|e| e.to_string())?;
    video.connect("handoff", false, move |_| {
        on_picture();
        None
    });
    playbin.set_property("video-sink", &video);
    playbin.set_property("audio-sink", &audio);
    Ok(playbin)
}

/// The `gstplayer` program's command for `url`, watching `watch`, with the
/// debug categories its judgement reads.
pub fn command(url: &str, watch: Duration) -> Command {
    let mut cmd = Command::new(bin("gstplayer"));
    cmd.args(["--url", url, "--seconds"])
        .arg(format!("{:.1}", watch.as_secs_f64()))
        .env("GST_DEBUG", LOG_CATEGORIES)
        .env("GST_DEBUG_NO_COLOR", "1");
    cmd
}

/// The `gstplayer` program playing in the background for a test:
/// `wait_playing` until it has played enough, `finish` for its report.
pub struct GstPlayer {
    process: PlayerProcess<BrowserProgress>,
}

impl GstPlayer {
    pub fn start(url: &str, watch: Duration) -> GstPlayer {
        GstPlayer {
            process: PlayerProcess::spawn("GStreamer's playbin", &mut command(url, watch)),
        }
    }

    /// See [`PlayerProcess::wait_playing`].
    pub fn wait_playing(&self, min_media_played: Duration, within: Duration) -> BrowserProgress {
        self.process.wait_playing(min_media_played, within)
    }

    /// Ends the watch now (SIGTERM) and returns the report and the log.
    pub fn stop(self) -> (Value, String) {
        self.process.terminate();
        self.finish()
    }

    /// Waits for the player to end; returns its report and its log.
    pub fn finish(self) -> (Value, String) {
        let (_, stdout, log) = self.process.finish();
        let text = String::from_utf8_lossy(&stdout);
        let report = last_json(&text)
            .unwrap_or_else(|| panic!("gstplayer printed no report: {text}\n{log}"));
        (report, log)
    }
}
