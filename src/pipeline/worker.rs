//! The worker: one live signal per `<name>.mp4` in INPUT_STREAM_PATH, each on
//! its own thread with its own pipeline, written to `OUTPUT_STREAM_PATH/<name>/`.
//! A failing signal restarts alone; SIGINT/SIGTERM stop them all. The folder
//! is rescanned while running ([`super::inputs`]): an MP4 added goes live, one
//! removed stops its signal.
//! `GET /healthcheck` on WORKER_METRICS_PORT answers from the signals'
//! statuses; `--print-pipeline` prints each signal's launch line instead of
//! encoding.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::description;
use super::health::SignalHealth;
use super::input::{self, Input, InputError};
use super::inputs::{self, Inputs, Signals, StartError, DEFAULT_RESCAN_EVERY};
use super::ladder::Ladder;
use super::settings::{
    EncodeSettings, DEFAULT_CODEC_THREADS, DEFAULT_PART, DEFAULT_PLAYLIST_LENGTH,
    DEFAULT_RETAINED_SEGMENTS, DEFAULT_SEGMENT_SECONDS, DEFAULT_VIDEO_KBPS, MIN_PART,
};
use crate::service::shutdown::Shutdown;

/// Encodes every INPUT_STREAM_PATH/<signal>.mp4 into a live HLS stream, looping it forever.
#[derive(Debug, Clone, Parser)]
#[command(name = "worker", version)]
pub struct WorkerConfig {
    /// Folder of <signal>.mp4 inputs.
    #[arg(long, env = "INPUT_STREAM_PATH", default_value = "./input")]
    pub input: PathBuf,
    /// Folder the live streams are written to, one sub-folder per signal.
    #[arg(long, env = "OUTPUT_STREAM_PATH", default_value = "./output")]
    pub output: PathBuf,
    /// Segment duration in seconds (also EXT-X-TARGETDURATION).
    #[arg(long, env = "SEGMENT_SECONDS", default_value_t = DEFAULT_SEGMENT_SECONDS, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub segment_seconds: u32,
    /// Segments listed in the live playlist.
    #[arg(long, env = "PLAYLIST_LENGTH", default_value_t = DEFAULT_PLAYLIST_LENGTH, value_parser = parse_playlist_length)]
    pub playlist_length: usize,
    /// Segments kept on disk after they leave the playlist.
    #[arg(long, env = "RETAINED_SEGMENTS", default_value_t = DEFAULT_RETAINED_SEGMENTS)]
    pub retained_segments: usize,
    /// Video bitrate in kbit/s.
    #[arg(long, env = "VIDEO_KBPS", default_value_t = DEFAULT_VIDEO_KBPS, value_parser = clap::value_parser!(u32).range(100..=50_000))]
    pub video_kbps: u32,
    /// Threads of each signal's video encoder and decoder; 0 lets the codecs
    /// choose (one per core or more). One costs the least CPU per minute of
    /// output: a worker's parallelism comes from its signals.
    #[arg(long, env = "CODEC_THREADS", default_value_t = DEFAULT_CODEC_THREADS, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub codec_threads: u32,
    /// Epoch segments are locked to, in seconds since the Unix epoch (at least
    /// an hour ago): segment n starts at EPOCH + n x SEGMENT_SECONDS, so
    /// workers with the same EPOCH, input and settings write interchangeable
    /// segments (same names, dates and timestamps). 0 is the Unix epoch.
    #[arg(long, env = "EPOCH", default_value_t = 0)]
    pub epoch: u64,
    /// Longest low-latency part (LL-HLS partial segment) in seconds, at least
    /// 0.2; 0 lists no parts (standard HLS only). Players that know nothing
    /// of parts play the same playlist either way.
    #[arg(long, env = "PART_SECONDS", default_value_t = DEFAULT_PART.as_secs_f64(), value_parser = parse_part_seconds)]
    pub part_seconds: f64,
    /// HOLD-BACK in seconds: how far behind the live edge players without
    /// low latency start (and so the buffer they hold), at least three
    /// segments and at most the playlist; unset, 4.5 where that is over
    /// three segments and within the playlist (1 s segments), else three
    /// segments (the RFC's minimum: 6 at the default 2 s segments). A
    /// standard player's buffer is about its latency less 1 to 1.5 s:
    /// SEGMENT_SECONDS=1 (so 4.5) kept hls.js 4 to 6 s of buffer and 5.3 to
    /// 6.0 s behind live (OPERATING.md).
    #[arg(long, env = "HOLD_BACK_SECONDS", value_parser = parse_hold_back_seconds)]
    pub hold_back_seconds: Option<f64>,
    /// The bit-rate ladder each input is encoded into: comma-separated
    /// WIDTHxHEIGHT@KBPS rungs (one decode, one encode per rung, never above
    /// the input's size), each its own rendition (`720p.m3u8`) named in a
    /// multivariant `playlist.m3u8`; `recommended` for
    /// 1280x720@2800,854x480@1400,640x360@800 (what `just up` runs); or
    /// `single`: one rendition at the input's size and VIDEO_KBPS,
    /// `playlist.m3u8` its media playlist (the seed's output).
    #[arg(long, env = "LADDER", default_value = "single", value_parser = parse_ladder)]
    pub ladder: Ladder,
    /// Port of the worker's `/metrics` and `/healthcheck`.
    #[arg(long, env = "WORKER_METRICS_PORT", default_value = "9100", value_parser = crate::service::config::parse_port)]
    pub metrics_port: u16,
    /// Print each signal's pipeline as a gst-launch-1.0 line (the very line the
    /// worker parses) and exit without encoding.
    #[arg(long)]
    pub print_pipeline: bool,
    #[command(flatten)]
    pub listen: crate::service::config::ListenArgs,
}

fn parse_ladder(s: &str) -> Result<Ladder, String> {
    s.parse()
}

fn parse_part_seconds(s: &str) -> Result<f64, String> {
    let seconds: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if seconds == 0.0 || (MIN_PART.as_secs_f64()..=30.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!(
            "{s} s: parts last {} s to 30 s (0 turns them off)",
            MIN_PART.as_secs_f64()
        ))
    }
}

fn parse_hold_back_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(seconds) if (1.0..=3600.0).contains(&seconds) => Ok(seconds),
        Ok(_) => Err(format!(
            "{s} s: a hold-back lasts 1 s to 3600 s (at least three segments)"
        )),
        Err(_) => Err(format!("'{s}' is not a number of seconds")),
    }
}

fn parse_playlist_length(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (3..=100).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 3 and 100 (RFC 8216 asks for at least 3)".into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("output folder {0} is not writable: {1}")]
    Output(PathBuf, std::io::Error),
    #[error(transparent)]
    Signal(#[from] StartError),
    #[error("{0}")]
    Settings(String),
    #[error("EPOCH {0}: {1}")]
    Epoch(u64, super::epoch::EpochError),
    #[error(transparent)]
    Metrics(#[from] crate::service::http::ServeError),
}

impl WorkerConfig {
    pub fn settings(&self) -> EncodeSettings {
        EncodeSettings {
            segment_seconds: self.segment_seconds,
            playlist_length: self.playlist_length,
            retained_segments: self.retained_segments,
            video_kbps: self.video_kbps,
            codec_threads: self.codec_threads,
            epoch_unix_seconds: self.epoch,
            part: std::time::Duration::from_secs_f64(self.part_seconds),
            ladder: self.ladder.clone(),
            hold_back: self
                .hold_back_seconds
                .map(std::time::Duration::from_secs_f64),
        }
    }
}

/// Checks every input and the output folder, then encodes until `shutdown`.
/// Any bad input at start stops the worker before anything starts; inputs
/// added later are checked one by one and a bad one only logs.
pub async fn run(config: WorkerConfig, shutdown: Shutdown) -> Result<(), WorkerError> {
    config.settings().check().map_err(WorkerError::Settings)?;
    let inputs = tokio::task::spawn_blocking({
        let folder = config.input.clone();
        move || check_inputs(&folder)
    })
    .await
    .map_err(|e| InputError::Gstreamer(e.to_string()))??;
    check_writable(&config.output)?;
    let grid = config.settings().grid();
    let now = grid.sequence_at(grid.since_epoch(std::time::SystemTime::now()));
    grid.running_time(now)
        .map_err(|e| WorkerError::Epoch(config.epoch, e))?;
    // Bind the metrics port before encoding, so a busy port fails fast.
    let listener = crate::service::server::bind(&config.listen, config.metrics_port).await?;
    let health = SignalHealth::default();
    let metrics = tokio::spawn({
        let listen = config.listen.clone();
        let stop = shutdown.clone();
        let health = health.clone();
        async move {
            let routes = crate::service::metrics::standalone_routes_with(
                "worker",
                super::health::route("worker", health),
            );
            crate::service::server::serve_on("worker", listener, &listen, routes, stop).await
        }
    });

    let mut signals = Signals::new(&config.output, config.settings(), health.clone());
    for input in inputs {
        signals.start(input)?;
    }
    let known = Inputs::live(signals.names());
    // The rescan owns the running signals from here on: it starts and stops
    // them as files come and go, and stops them all at shutdown.
    let watcher = std::thread::Builder::new()
        .name("inputs".into())
        .spawn({
            let folder = config.input.clone();
            let stop = shutdown.clone();
            move || inputs::watch(&folder, signals, known, &stop, DEFAULT_RESCAN_EVERY)
        })
        .map_err(|e| WorkerError::Output(config.output.clone(), e))?;
    shutdown.wait().await;
    tokio::task::spawn_blocking(move || {
        let _ = watcher.join();
    })
    .await
    .ok();
    let _ = metrics.await;
    log::info!("Worker stopped");
    Ok(())
}

/// What `worker --print-pipeline` prints, after checking the inputs as a
/// start would; writes nothing.
pub fn printed_pipelines(config: &WorkerConfig) -> Result<String, WorkerError> {
    let inputs = check_inputs(&config.input)?;
    Ok(pipelines_text(&inputs, &config.settings()))
}

/// For each input, a comment naming the signal and what only the worker adds
/// at run time, then the launch line the worker parses for it (the same
/// function as [`super::signal::SignalRunner::launch_line`]), ready for `gst-launch-1.0 -e`.
fn pipelines_text(inputs: &[Input], settings: &EncodeSettings) -> String {
    let mut text = String::new();
    for input in inputs {
        text.push_str(&format!(
            "# {}: {}\n{}\n",
            input.signal,
            description::RUN_TIME_ADDITIONS,
            description::effective_line(input, settings)
        ));
    }
    text
}

fn check_inputs(folder: &Path) -> Result<Vec<Input>, InputError> {
    input::list(folder)?
        .iter()
        .map(|path| input::probe(path, input::DEFAULT_PROBE_TIMEOUT))
        .collect()
}

fn check_writable(output: &Path) -> Result<(), WorkerError> {
    std::fs::create_dir_all(output).map_err(|e| WorkerError::Output(output.to_path_buf(), e))?;
    let probe = output.join(".nonstop-write-test");
    std::fs::write(&probe, b"ok").map_err(|e| WorkerError::Output(output.to_path_buf(), e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::signal::SignalRunner;

    #[test]
    fn the_printed_line_is_the_line_the_runner_parses() {
        let output = tempfile::tempdir().expect("tempdir");
        let settings = EncodeSettings {
            segment_seconds: 1,
            video_kbps: 900,
            ladder: crate::pipeline::ladder::Ladder::Single,
            ..EncodeSettings::default()
        };
        let inputs: Vec<Input> = [("live01", true), ("live02", false)]
            .into_iter()
            .map(|(signal, has_audio)| Input {
                signal: signal.into(),
                path: PathBuf::from(format!("/media/{signal}.mp4")),
                has_audio,
                duration: None,
                size: (320, 240),
                frame_rate: Some(25.0),
            })
            .collect();
        let text = pipelines_text(&inputs, &settings);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (i, input) in inputs.into_iter().enumerate() {
            assert!(
                lines[2 * i].starts_with(&format!("# {}: ", input.signal)),
                "{text}"
            );
            let runner = SignalRunner::new(
                input,
                output.path(),
                settings.clone(),
                SignalHealth::default(),
            )
            .expect("runner");
            assert_eq!(lines[2 * i + 1], runner.launch_line());
            assert!(lines[2 * i + 1].contains("bitrate=900"), "{text}");
        }
    }
}
