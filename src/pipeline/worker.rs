//! The worker: one live signal per `<name>.mp4` in INPUT_STREAM_PATH, each on
//! its own thread with its own pipeline, written to OUTPUT_STREAM_PATH/<name>/.
//! A failing signal restarts alone; SIGINT/SIGTERM stop them all.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::input::{self, Input, InputError};
use super::signal::{
    EncodeSettings, SignalRunner, DEFAULT_PLAYLIST_LENGTH, DEFAULT_RETAINED_SEGMENTS,
    DEFAULT_SEGMENT_SECONDS, DEFAULT_VIDEO_KBPS,
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
    /// Port of the worker's `/metrics` and `/healthcheck`.
    #[arg(long, env = "WORKER_METRICS_PORT", default_value = "9100", value_parser = crate::service::config::parse_port)]
    pub metrics_port: u16,
    #[command(flatten)]
    pub listen: crate::service::config::ListenArgs,
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
    #[error("signal '{0}' cannot start: {1}")]
    Signal(String, super::signal::RunError),
    #[error(transparent)]
    Metrics(#[from] crate::service::http::ServeError),
}

impl WorkerConfig {
    fn settings(&self) -> EncodeSettings {
        EncodeSettings {
            segment_seconds: self.segment_seconds,
            playlist_length: self.playlist_length,
            retained_segments: self.retained_segments,
            video_kbps: self.video_kbps,
        }
    }
}

/// Checks every input and the output folder, then encodes until `shutdown`.
/// Any bad input stops the worker before anything starts.
pub async fn run(config: WorkerConfig, shutdown: Shutdown) -> Result<(), WorkerError> {
    let inputs = tokio::task::spawn_blocking({
        let folder = config.input.clone();
        move || check_inputs(&folder)
    })
    .await
    .map_err(|e| InputError::Gstreamer(e.to_string()))??;
    check_writable(&config.output)?;
    // Bind the metrics port before encoding, so a busy port fails fast.
    let listener = crate::service::server::bind(&config.listen, config.metrics_port).await?;
    let metrics = tokio::spawn({
        let listen = config.listen.clone();
        let stop = shutdown.clone();
        async move {
            let routes = crate::service::metrics::standalone_routes("worker");
            crate::service::server::serve_on("worker", listener, &listen, routes, stop).await
        }
    });

    let mut threads = Vec::new();
    for input in inputs {
        log::info!(
            "Signal '{}': {} ({}x{}, {}{})",
            input.signal,
            input.path.display(),
            input.size.0,
            input.size.1,
            input
                .duration
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "unknown duration".into()),
            if input.has_audio {
                ", with audio"
            } else {
                ", video only"
            }
        );
        let signal = input.signal.clone();
        let mut runner = SignalRunner::new(input, &config.output, config.settings())
            .map_err(|e| WorkerError::Signal(signal.clone(), e))?;
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("signal-{signal}"))
            .spawn(move || runner.run(&stop))
            .map_err(|e| WorkerError::Output(config.output.clone(), e))?;
        threads.push(thread);
    }
    shutdown.wait().await;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await
    .ok();
    let _ = metrics.await;
    log::info!("Worker stopped");
    Ok(())
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
