//! The worker benchmark (`just bench-worker`): what the worker costs in CPU
//! for each minute of live output, beside the ffmpeg CLI and `gst-launch-1.0`
//! encoding the same input at the same settings, in one run.
//!
//! ```text
//!   worker      --input <dir>  ──▶ <out>/live01/playlist.m3u8   (loops the input itself)
//!   ffmpeg -re -stream_loop -1 ──▶ <out>/playlist.m3u8          (libx264 + aac, HLS muxer)
//!   ffmpeg-1t: the same with -threads 1 for the decoder and the encoder
//!   gst-launch-1.0 -e <the line `worker --print-pipeline` prints>
//!               on a stream-copied longer input ──▶ <out>/live01/playlist.m3u8
//!   gst-lean: gst-launch-1.0 -e, the leanest GStreamer arrangement of the same
//!               work on the same longer input  ──▶ <out>/live01/playlist.m3u8
//! ```
//!
//! `gst-lean` is not the worker's pipeline: it shows what GStreamer's elements
//! cost at the least. One streaming thread (the demuxer's) decodes, encodes and
//! paces both streams, as ffmpeg's one loop does; no decodebin (its multiqueue
//! adds a thread per stream), no splitmuxsink (its queues add two more and it
//! cannot take both streams from one thread); mpegtsmux cuts where the segment
//! sink asks for keyframes. It needs an H.264 + AAC input and does none of
//! what the worker adds (looping, the epoch grid, its own playlist).
//!
//! Every contender runs for the same wall time, paced to real time (the worker
//! and the printed line by their `clocksync`s, ffmpeg by `-re`). While it runs
//! its playlist is polled and every new segment's EXTINF added up: the media
//! it produced. Just before the stop signal its CPU time (user + system, all
//! threads, from `/proc/<pid>/stat`) and peak resident memory (`VmHWM` from
//! `/proc/<pid>/status`) are read, so CPU and media cover the same window.
//! The figure is CPU seconds per minute of media written, and its ratio to
//! ffmpeg's (the goal: the worker at 1.0x or less). `ffmpeg-1t` is ffmpeg given
//! the worker's default of one thread per codec (`CODEC_THREADS`), so the
//! table shows how much of the difference is that choice. Contenders run one
//! after another, or with `--together` all at once (each then meets the same
//! machine over the same minutes: steadier ratios on a noisy VM); `--runs`
//! repeats the round and the table shows medians.
//!
//! `--ladder` ([`ladder`]) measures the worker's recommended bit-rate ladder
//! instead (`ladder`: one decode, three encodes), beside ffmpeg making the
//! same ladder in one process (`ffmpeg-ladder`) and three separate
//! single-rendition workers (`separate`), all three at once. A contender's
//! media is its renditions' least (every rendition wrote at least that), its
//! CPU and peak memory the sum over its processes; the table adds memory per
//! rendition.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod ladder;

use clap::Parser;
use nonstop::hls::PlaylistFacts;
use nonstop::pipeline::description::KEY_INT_MAX;
use nonstop::pipeline::ladder::{Rung, RECOMMENDED};
use nonstop::pipeline::settings::{
    DEFAULT_PLAYLIST_LENGTH, DEFAULT_RETAINED_SEGMENTS, DEFAULT_SEGMENT_SECONDS, DEFAULT_VIDEO_KBPS,
};

use nonstop_lab::ports::free_port;
use nonstop_lab::workspace::{bin, repo_root};

/// How long each contender runs by default, in seconds.
const DEFAULT_SECONDS: f64 = 60.0;
/// Frame rate of the sample input (`scripts/setup.sh` makes it at 25 fps):
/// ffmpeg's GOP is this times the segment duration.
pub(crate) const INPUT_FPS: u32 = 25;
/// x264enc's default VBV buffer (`vbv-buf-capacity`, in ms): with its default
/// `pass=cbr`, x264enc caps the rate with a VBV of this size, so ffmpeg gets
/// `-maxrate` = bitrate and `-bufsize` = bitrate x this.
pub(crate) const X264ENC_VBV_MS: u32 = 600;
/// Audio bitrate, the worker's `avenc_aac bitrate=128000`.
pub(crate) const AUDIO_BPS: u32 = 128_000;
/// How often the playlist is read while a contender runs; well under a
/// segment, so no segment leaves a six-segment playlist unseen.
const POLL: Duration = Duration::from_millis(200);
/// How long a contender may take to exit after its stop signal before it is
/// killed (its CPU was read before the signal: this is only cleanup).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Extra input the gst-launch line gets beyond the run, in seconds, so it
/// never reaches the end of its (played once) input while measured.
const GST_INPUT_MARGIN_S: f64 = 30.0;
/// The signal name every contender writes.
const SIGNAL: &str = "live01";

#[derive(Debug, Parser)]
#[command(
    name = "worker bench",
    about = "CPU seconds per minute of live HLS output: the worker beside the ffmpeg CLI and gst-launch-1.0 at equal settings.",
    override_usage = "cargo bench -p nonstop-lab --bench worker -- [options]   (or: just bench-worker [options])"
)]
struct Args {
    /// Wall time each contender runs, in seconds.
    #[arg(long, env = "BENCH_SECONDS", value_name = "N", default_value_t = DEFAULT_SECONDS, value_parser = positive_seconds)]
    seconds: f64,
    /// How many times each contender runs (the table shows medians).
    #[arg(long, env = "BENCH_RUNS", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Segment duration in seconds (keyframes only at segment boundaries).
    #[arg(long, env = "BENCH_SEGMENT_SECONDS", value_name = "N", default_value_t = DEFAULT_SEGMENT_SECONDS, value_parser = clap::value_parser!(u32).range(1..=30))]
    segment_seconds: u32,
    /// Video bitrate in kbit/s.
    #[arg(long, env = "BENCH_VIDEO_KBPS", value_name = "N", default_value_t = DEFAULT_VIDEO_KBPS, value_parser = clap::value_parser!(u32).range(100..=50_000))]
    video_kbps: u32,
    /// Input .mp4 (H.264 + AAC, 25 fps). Default: input/live01.mp4 when
    /// present, else one made like scripts/setup.sh does (30 s, 1280x720).
    #[arg(long, env = "BENCH_INPUT", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Contenders: worker,ffmpeg,ffmpeg-1t,gst-launch,gst-lean (default: all
    /// five), or with --ladder: ladder,ffmpeg-ladder,separate,gst-ladder
    /// (default: the first three).
    #[arg(long, env = "BENCH_CONTENDERS", value_name = "LIST")]
    contenders: Option<String>,
    /// Measure the worker's recommended bit-rate ladder (LADDER=recommended:
    /// one decode, an encode per rung) beside ffmpeg making the same ladder
    /// in one process and three separate single-rendition workers, all at
    /// once (as --together).
    #[arg(long, env = "BENCH_LADDER")]
    ladder: bool,
    /// Run the contenders at the same time instead of one after another:
    /// each then sees the same machine (other load, CPU frequency, the VM's
    /// neighbours) over the same minutes, which steadies their ratios. They
    /// share the cores: fine while all of them together need well under
    /// them (each needs about 15% of one core here).
    #[arg(long, env = "BENCH_TOGETHER")]
    together: bool,
    /// Passed by `cargo bench` to benches without the libtest harness.
    #[arg(long, hide = true)]
    bench: bool,
}

fn positive_seconds(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 5.0)
        .ok_or_else(|| format!("'{v}' is not a number of seconds of at least 5"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Contender {
    Worker,
    Ffmpeg,
    /// ffmpeg with one thread per codec, the worker's default.
    FfmpegOneThread,
    GstLaunch,
    /// The same work in the leanest GStreamer arrangement ([`lean_line`]).
    GstLean,
    /// The worker encoding the recommended ladder from one decode.
    Ladder,
    /// ffmpeg encoding the same ladder in one process ([`ladder`]).
    FfmpegLadder,
    /// One single-rendition worker per rung, each on an input of its size.
    Separate,
    /// `gst-launch-1.0 -e` running the ladder's printed line, its appsinks
    /// replaced by hlssinks: GStreamer's share of the ladder, without the
    /// worker's cutting and writing of parts and segments.
    GstLadder,
}

impl Contender {
    /// The one-rendition contenders, the bench's default.
    const SINGLE: [Contender; 5] = [
        Contender::Worker,
        Contender::Ffmpeg,
        Contender::FfmpegOneThread,
        Contender::GstLaunch,
        Contender::GstLean,
    ];
    /// The ladder's contenders (`--ladder`); the first three by default.
    const LADDER: [Contender; 4] = [
        Contender::Ladder,
        Contender::FfmpegLadder,
        Contender::Separate,
        Contender::GstLadder,
    ];
    /// How many of [`Contender::LADDER`] run when none are named.
    const LADDER_DEFAULT: usize = 3;

    fn name(self) -> &'static str {
        match self {
            Contender::Worker => "worker",
            Contender::Ffmpeg => "ffmpeg",
            Contender::FfmpegOneThread => "ffmpeg-1t",
            Contender::GstLaunch => "gst-launch",
            Contender::GstLean => "gst-lean",
            Contender::Ladder => "ladder",
            Contender::FfmpegLadder => "ffmpeg-ladder",
            Contender::Separate => "separate",
            Contender::GstLadder => "gst-ladder",
        }
    }

    /// Whether it is a `gst-launch-1.0` line on the longer input.
    fn is_launch_line(self) -> bool {
        matches!(
            self,
            Contender::GstLaunch | Contender::GstLean | Contender::GstLadder
        )
    }

    /// The signal that stops it cleanly: the worker's shutdown is SIGTERM,
    /// ffmpeg and `gst-launch-1.0 -e` finish their files on SIGINT.
    fn stop_signal(self) -> &'static str {
        match self {
            Contender::Worker | Contender::Ladder | Contender::Separate => "TERM",
            Contender::Ffmpeg
            | Contender::FfmpegOneThread
            | Contender::GstLaunch
            | Contender::GstLean
            | Contender::FfmpegLadder
            | Contender::GstLadder => "INT",
        }
    }
}

/// One contender's run, measured.
#[derive(Debug, Clone)]
struct Measure {
    /// User + system CPU seconds, all threads, from start to the stop signal.
    cpu_s: f64,
    /// Wall seconds from start to the stop signal.
    wall_s: f64,
    /// Sum of the EXTINF of every segment its playlist listed meanwhile; of
    /// several renditions, the least.
    media_s: f64,
    /// CPU seconds and media seconds when its first segment appeared: what
    /// start-up (probing the input, filling the first segment) cost.
    first_cpu_s: f64,
    first_media_s: f64,
    /// Segments of its first rendition.
    segments: usize,
    /// Peak resident memory (VmHWM), MiB, summed over its processes.
    rss_mib: f64,
    /// The renditions it wrote (1, or a ladder's rungs).
    renditions: usize,
    /// Each process's own CPU seconds and peak memory (MiB), when it has
    /// several (the separate workers), by label.
    processes: Vec<(String, f64, f64)>,
    /// The one-minute load average when it stopped.
    load1: f64,
}

impl Measure {
    /// CPU seconds per minute of media written: the figure compared.
    fn cpu_per_output_minute(&self) -> f64 {
        self.cpu_s / (self.media_s / 60.0)
    }

    /// Peak memory per rendition written, MiB.
    fn rss_per_rendition(&self) -> f64 {
        self.rss_mib / self.renditions.max(1) as f64
    }

    /// The same from the first segment on, start-up left out: the cost of
    /// carrying on once live.
    fn steady_cpu_per_output_minute(&self) -> f64 {
        let media = self.media_s - self.first_media_s;
        if media > 0.0 {
            (self.cpu_s - self.first_cpu_s) / (media / 60.0)
        } else {
            f64::NAN
        }
    }
}

/// Everything a run needs: the settings, the files and the programs.
struct Setup {
    seconds: f64,
    segment_seconds: u32,
    video_kbps: u32,
    /// The input as given to the worker and ffmpeg.
    input: PathBuf,
    /// The folder holding `live01.mp4` for the worker.
    worker_input: PathBuf,
    /// The launch line `worker --print-pipeline` printed, its output folder
    /// placeholder not yet filled in.
    gst_line: Option<String>,
    /// The leanest arrangement's launch line ([`lean_line`]), placeholder
    /// likewise.
    lean_line: Option<String>,
    scratch: PathBuf,
    worker_bin: String,
    clk_tck: f64,
    /// The recommended ladder's rungs for this input (`--ladder`).
    rungs: Vec<Rung>,
    /// Per rung, the folder holding an input of its size for a separate
    /// worker ([`ladder::separate_input`]).
    separate_inputs: Vec<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("worker bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let contenders = parse_contenders(args.contenders.as_deref(), args.ladder)?;
    check_tools(&contenders)?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let worker_input = dir.path().join("input");
    std::fs::create_dir_all(&worker_input).map_err(|e| format!("mkdir: {e}"))?;
    let input = worker_input.join(format!("{SIGNAL}.mp4"));
    let sample = repo_root().join("input/live01.mp4");
    match args.input.as_deref() {
        Some(given) => copy(given, &input)?,
        None if sample.exists() => copy(&sample, &input)?,
        None => {
            eprintln!("worker bench: no input/live01.mp4, making one as scripts/setup.sh does (30 s, 1280x720, H.264 + AAC)");
            make_sample_input(&input)?;
        }
    }
    let input_s = media_duration(&input)?;
    let worker_bin = bin("worker");
    let mut setup = Setup {
        seconds: args.seconds,
        segment_seconds: args.segment_seconds,
        video_kbps: args.video_kbps,
        input: input.clone(),
        worker_input,
        gst_line: None,
        lean_line: None,
        scratch: dir.path().to_path_buf(),
        worker_bin,
        clk_tck: clock_ticks(),
        rungs: Vec::new(),
        separate_inputs: Vec::new(),
    };
    if args.ladder {
        let size = video_size(&input)?;
        setup.rungs = ladder::rungs(size);
        if contenders.contains(&Contender::Separate) {
            eprintln!("worker bench: making an input at each rung's size for the separate workers");
            for rung in &setup.rungs {
                let dir = ladder::separate_input(&input, size, rung, &setup.scratch, SIGNAL)?;
                setup.separate_inputs.push(dir);
            }
        }
    }
    if contenders.iter().any(|c| c.is_launch_line()) {
        let long = long_input(&setup, input_s)?;
        if contenders.contains(&Contender::GstLaunch) {
            setup.gst_line = Some(gst_line(&setup, &long, false)?);
        }
        if contenders.contains(&Contender::GstLadder) {
            setup.gst_line = Some(gst_line(&setup, &long, true)?);
        }
        if contenders.contains(&Contender::GstLean) {
            setup.lean_line = Some(lean_line(&setup, &long));
        }
    }
    if args.ladder {
        let rungs: Vec<String> = setup
            .rungs
            .iter()
            .map(|r| format!("{}x{}@{}", r.width, r.height, r.kbps))
            .collect();
        eprintln!(
            "worker bench: ladder {} (LADDER={RECOMMENDED})",
            rungs.join(",")
        );
    }
    eprintln!(
        "worker bench: input {} ({input_s:.1} s), {} s per contender, {} run(s), {} s segments, {} kbit/s; load average {}",
        args.input
            .as_deref()
            .unwrap_or(if sample.exists() { &sample } else { &input })
            .display(),
        args.seconds,
        args.runs,
        args.segment_seconds,
        args.video_kbps,
        load_average().unwrap_or_else(|| "?".into())
    );

    let mut results: Vec<(Contender, Vec<Measure>)> =
        contenders.iter().map(|&c| (c, Vec::new())).collect();
    for run in 1..=args.runs {
        let together = args.together || args.ladder;
        let measures = run_round(&contenders, &setup, (run, args.runs), together)?;
        for ((_, all), m) in results.iter_mut().zip(measures) {
            all.push(m);
        }
    }
    print_table(&results, args.runs, args.ladder);
    Ok(())
}

/// The contenders `list` names among the mode's set (the single-rendition
/// five, or the ladder's three), in the set's order; all of them by default.
fn parse_contenders(list: Option<&str>, ladder: bool) -> Result<Vec<Contender>, String> {
    let set: &[Contender] = if ladder {
        &Contender::LADDER
    } else {
        &Contender::SINGLE
    };
    let Some(list) = list else {
        let n = if ladder {
            Contender::LADDER_DEFAULT
        } else {
            set.len()
        };
        return Ok(set[..n].to_vec());
    };
    let names: Vec<&str> = set.iter().map(|c| c.name()).collect();
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let c = set
            .iter()
            .copied()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown contender '{name}' ({}{})",
                    names.join(", "),
                    if ladder {
                        " with --ladder"
                    } else {
                        "; the ladder's with --ladder"
                    }
                )
            })?;
        if !chosen.contains(&c) {
            chosen.push(c);
        }
    }
    if chosen.is_empty() {
        return Err("--contenders names none".into());
    }
    Ok(set.iter().copied().filter(|c| chosen.contains(c)).collect())
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// ffprobe measures the input and ffmpeg makes gst-launch's longer copy, so
/// both are needed even without ffmpeg as a contender.
fn check_tools(contenders: &[Contender]) -> Result<(), String> {
    let mut missing = Vec::new();
    for tool in ["ffmpeg", "ffprobe"] {
        if !on_path(tool) {
            missing.push(format!("{tool} (apt-get install ffmpeg)"));
        }
    }
    if contenders.iter().any(|c| c.is_launch_line()) && !on_path("gst-launch-1.0") {
        missing.push(
            "gst-launch-1.0 (apt-get install gstreamer1.0-tools, or ./scripts/setup.sh)".into(),
        );
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing: {}", missing.join("; ")))
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// Runs a tool to completion, its stderr in the error when it fails.
pub(crate) fn run_tool(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The sample input, made the way `scripts/setup.sh` makes input/live01.mp4,
/// so the bench measures the same 1280x720 picture either way.
fn make_sample_input(path: &Path) -> Result<(), String> {
    let line = format!(
        "videotestsrc num-buffers=750 pattern=smpte \
         ! video/x-raw,width=1280,height=720,framerate=25/1,format=I420 \
         ! timeoverlay halignment=center valignment=center font-desc=\"Sans 48\" \
         ! videoconvert ! video/x-raw,format=I420 \
         ! x264enc speed-preset=veryfast bitrate=2500 key-int-max=50 ! h264parse ! queue \
         ! mp4mux name=mux ! filesink location=\"{}\" \
         audiotestsrc num-buffers=1407 samplesperbuffer=1024 wave=ticks \
         ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac bitrate=128000 ! aacparse ! queue ! mux.",
        path.display()
    );
    // gst-launch-1.0 escapes each argument: the shell splits the line.
    run_tool(Command::new("sh").args(["-c", &format!("exec gst-launch-1.0 -q -e {line}")]))
        .map(|_| ())
}

/// The input's duration in seconds, by ffprobe.
fn media_duration(path: &Path) -> Result<f64, String> {
    let out = run_tool(Command::new("ffprobe").args([
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "default=noprint_wrappers=1:nokey=1",
        &path.to_string_lossy(),
    ]))?;
    String::from_utf8_lossy(&out)
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|d| *d > 0.0)
        .ok_or_else(|| format!("ffprobe found no duration in {}", path.display()))
}

/// The input's picture size, by ffprobe.
fn video_size(path: &Path) -> Result<(u32, u32), String> {
    let out = run_tool(Command::new("ffprobe").args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=width,height",
        "-of",
        "csv=p=0",
        &path.to_string_lossy(),
    ]))?;
    let text = String::from_utf8_lossy(&out);
    let (w, h) = text
        .trim()
        .split_once(',')
        .ok_or_else(|| format!("ffprobe found no picture size in {}", path.display()))?;
    match (w.parse(), h.parse()) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(format!(
            "ffprobe said '{}' for {}'s size",
            text.trim(),
            path.display()
        )),
    }
}

/// A longer copy of the input, in its own folder, for the launch lines.
///
/// A launch line plays its input once (the worker loops by seeks a line
/// cannot express), so gst-launch gets the input stream-copied end to end
/// (`ffmpeg -stream_loop K -c copy`: the same frames, no re-encoding) long
/// enough to outlast the run.
fn long_input(setup: &Setup, input_s: f64) -> Result<PathBuf, String> {
    let long_dir = setup.scratch.join("gst-input");
    std::fs::create_dir_all(&long_dir).map_err(|e| format!("mkdir: {e}"))?;
    let long = long_dir.join(format!("{SIGNAL}.mp4"));
    let loops = ((setup.seconds + GST_INPUT_MARGIN_S) / input_s).ceil() as u32;
    run_tool(Command::new("ffmpeg").args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-stream_loop",
        &loops.saturating_sub(1).to_string(),
        "-i",
        &setup.input.to_string_lossy(),
        "-map",
        "0",
        "-c",
        "copy",
        &long.to_string_lossy(),
    ]))?;
    Ok(long)
}

/// The worker's own launch line for the longer input `long` (with
/// `ladder`, its recommended ladder's), each appsink it ends in (the
/// worker's segmenter, which under gst-launch drops what it gets) replaced
/// by an hlssink, so the line writes segments that can be counted: one
/// playlist for a single rendition, one per rung for a ladder. The output
/// folder is written as `@OUT@`, filled in per run.
fn gst_line(setup: &Setup, long: &Path, ladder: bool) -> Result<String, String> {
    let long_dir = long.parent().ok_or("the longer input has no folder")?;
    let placeholder = setup.scratch.join("@OUT@");
    let mut args = worker_args(setup, long_dir, &placeholder, setup.video_kbps);
    if ladder {
        args.extend(["--ladder".into(), RECOMMENDED.into()]);
    }
    let printed = run_tool(
        Command::new(&setup.worker_bin)
            .args(args)
            .arg("--print-pipeline")
            .env_remove("RUST_LOG"),
    )?;
    let text = String::from_utf8_lossy(&printed);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("`worker --print-pipeline` printed no launch line")?;
    let out = placeholder.join(SIGNAL);
    let names: Vec<(String, String)> = if ladder {
        setup
            .rungs
            .iter()
            .map(|r| (r.name(), format!("{}_", r.name())))
            .collect()
    } else {
        vec![("playlist".into(), "segment".into())]
    };
    with_segment_sinks(line, &out, &names, setup.segment_seconds)
}

/// `line` with its appsinks, in order, replaced by hlssinks writing
/// `<out>/<name>.m3u8` and `<out>/<prefix>NNNNN.ts` for each of `names`.
/// hlssink asks its encoder for a keyframe every segment, as the worker
/// does at the grid's boundaries.
fn with_segment_sinks(
    line: &str,
    out: &Path,
    names: &[(String, String)],
    segment_seconds: u32,
) -> Result<String, String> {
    const APPSINK: &str = "appsink name=";
    let mut rest = line;
    let mut result = String::new();
    for (name, prefix) in names {
        let at = rest
            .find(APPSINK)
            .ok_or_else(|| format!("the printed line has no appsink for {name}: {line}"))?;
        // The appsink is the end of its chain: it and its properties
        // (`key=value` words) run up to the next chain or the line's end.
        let end = at + appsink_length(&rest[at..]);
        result.push_str(&rest[..at]);
        result.push_str(&format!(
            "hlssink target-duration={segment_seconds} playlist-length={DEFAULT_PLAYLIST_LENGTH} \
             max-files={DEFAULT_RETAINED_SEGMENTS} location=\"{dir}/{prefix}%05d.ts\" \
             playlist-location=\"{dir}/{name}.m3u8\"",
            dir = out.display()
        ));
        rest = &rest[end..];
    }
    result.push_str(rest);
    if result.contains(APPSINK) {
        return Err(format!(
            "the printed line has more appsinks than renditions: {line}"
        ));
    }
    Ok(result)
}

/// The length of the element at the start of `text` with its properties:
/// its name and the `key=value` words after it.
fn appsink_length(text: &str) -> usize {
    let mut length = 0;
    for (i, word) in text.split(' ').enumerate() {
        let property = word.split_once('=').is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        });
        if i > 0 && !property {
            return length;
        }
        length += word.len() + usize::from(i > 0);
    }
    text.len()
}

/// How much the muxer may hold per stream in the lean line, in ns: one thread
/// feeds both of mpegtsmux's pads, so each pad must take a buffer while the
/// other waits for its next one (with none, the thread blocks on a full pad
/// that the muxer cannot drain until the other pad has data).
const LEAN_MUX_LATENCY_NS: u64 = 500_000_000;

/// The same work as the worker's line (same decoders, encoders and settings,
/// one thread per codec, each stream paced after its encoder) in the leanest
/// GStreamer arrangement: everything before the muxer on the demuxer's one
/// thread, mpegtsmux into hlssink, which asks for a keyframe every segment.
/// Output folder `@OUT@` as in [`gst_line`].
fn lean_line(setup: &Setup, long: &Path) -> String {
    let out = setup.scratch.join("@OUT@").join(SIGNAL);
    format!(
        "filesrc location=\"{input}\" ! qtdemux name=demux \
         demux.video_0 ! h264parse ! avdec_h264 max-threads=1 ! videoconvert ! video/x-raw,format=I420 \
         ! x264enc tune=zerolatency speed-preset=superfast bitrate={kbps} key-int-max={KEY_INT_MAX} threads=1 option-string=scenecut=0 \
         ! clocksync ! h264parse ! mux. \
         demux.audio_0 ! aacparse ! avdec_aac ! audioconvert ! audioresample ! avenc_aac bitrate={AUDIO_BPS} \
         ! clocksync ! aacparse ! mux. \
         mpegtsmux name=mux latency={LEAN_MUX_LATENCY_NS} \
         ! hlssink target-duration={seg} playlist-length={DEFAULT_PLAYLIST_LENGTH} max-files={DEFAULT_RETAINED_SEGMENTS} \
         location=\"{out}/segment%05d.ts\" playlist-location=\"{out}/playlist.m3u8\"",
        input = long.display(),
        kbps = setup.video_kbps,
        seg = setup.segment_seconds,
        out = out.display(),
    )
}

/// The worker's arguments for `input` into `output` at `video_kbps` (a
/// single rendition's bit rate; a ladder's rungs carry their own).
fn worker_args(setup: &Setup, input: &Path, output: &Path, video_kbps: u32) -> Vec<String> {
    vec![
        "--input".into(),
        input.display().to_string(),
        "--output".into(),
        output.display().to_string(),
        "--segment-seconds".into(),
        setup.segment_seconds.to_string(),
        "--video-kbps".into(),
        video_kbps.to_string(),
        "--playlist-length".into(),
        DEFAULT_PLAYLIST_LENGTH.to_string(),
    ]
}

/// One process of a contender.
struct Launch {
    /// Which part of the contender it is (a separate worker's rendition).
    label: String,
    program: String,
    args: Vec<String>,
}

/// A contender's processes and the playlists they write, one per rendition.
struct Plan {
    launches: Vec<Launch>,
    playlists: Vec<PathBuf>,
}

impl Plan {
    /// One process writing one playlist.
    fn one(program: &str, args: Vec<String>, playlist: PathBuf) -> Plan {
        Plan {
            launches: vec![Launch {
                label: program.to_string(),
                program: program.to_string(),
                args,
            }],
            playlists: vec![playlist],
        }
    }
}

/// The processes of a contender writing into `out`, and the playlists they
/// write.
fn plan(contender: Contender, setup: &Setup, out: &Path) -> Plan {
    let seg = setup.segment_seconds;
    match contender {
        Contender::Worker => {
            let mut args = worker_args(setup, &setup.worker_input, out, setup.video_kbps);
            args.extend(["--metrics-port".into(), free_port().to_string()]);
            Plan::one(
                &setup.worker_bin,
                args,
                out.join(SIGNAL).join("playlist.m3u8"),
            )
        }
        Contender::Ladder => {
            let mut args = worker_args(setup, &setup.worker_input, out, setup.video_kbps);
            args.extend([
                "--ladder".into(),
                RECOMMENDED.into(),
                "--metrics-port".into(),
                free_port().to_string(),
            ]);
            let mut plan = Plan::one(&setup.worker_bin, args, PathBuf::new());
            plan.playlists = ladder::playlists(&out.join(SIGNAL), &setup.rungs);
            plan
        }
        Contender::Separate => {
            let mut plan = Plan {
                launches: Vec::new(),
                playlists: Vec::new(),
            };
            for (rung, input) in setup.rungs.iter().zip(&setup.separate_inputs) {
                let folder = out.join(rung.name());
                let mut args = worker_args(setup, input, &folder, rung.kbps);
                args.extend([
                    "--ladder".into(),
                    "single".into(),
                    "--metrics-port".into(),
                    free_port().to_string(),
                ]);
                plan.launches.push(Launch {
                    label: rung.name(),
                    program: setup.worker_bin.clone(),
                    args,
                });
                plan.playlists
                    .push(folder.join(SIGNAL).join("playlist.m3u8"));
            }
            plan
        }
        Contender::FfmpegLadder => {
            let args = ladder::ffmpeg_ladder_args(
                &setup.input,
                &setup.rungs,
                seg,
                DEFAULT_PLAYLIST_LENGTH,
                out,
            );
            let mut plan = Plan::one("ffmpeg", args, PathBuf::new());
            plan.playlists = ladder::playlists(out, &setup.rungs);
            plan
        }
        Contender::Ffmpeg | Contender::FfmpegOneThread => {
            let kbps = setup.video_kbps;
            let mut args: Vec<String> = [
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "warning",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                &setup.input.to_string_lossy(),
                "-map",
                "0:v:0",
                "-map",
                "0:a:0",
                "-c:v",
                "libx264",
                "-preset",
                "superfast",
                "-tune",
                "zerolatency",
                "-pix_fmt",
                "yuv420p",
                "-b:v",
                &format!("{kbps}k"),
                "-maxrate",
                &format!("{kbps}k"),
                "-bufsize",
                &format!("{}k", kbps * X264ENC_VBV_MS / 1000),
                "-g",
                &(INPUT_FPS * seg).to_string(),
                "-sc_threshold",
                "0",
                "-force_key_frames",
                &format!("expr:gte(t,n_forced*{seg})"),
                "-c:a",
                "aac",
                "-b:a",
                &AUDIO_BPS.to_string(),
                "-f",
                "hls",
                "-hls_time",
                &seg.to_string(),
                "-hls_list_size",
                &DEFAULT_PLAYLIST_LENGTH.to_string(),
                "-hls_flags",
                "delete_segments",
                "-hls_segment_filename",
                &out.join("segment%05d.ts").to_string_lossy(),
                &out.join("playlist.m3u8").to_string_lossy(),
            ]
            .map(String::from)
            .to_vec();
            if contender == Contender::FfmpegOneThread {
                // Before -i for the decoder, before -f for the encoders.
                for option in ["-f", "-i"] {
                    if let Some(at) = args.iter().position(|a| a == option) {
                        args.splice(at..at, ["-threads".to_string(), "1".to_string()]);
                    }
                }
            }
            Plan::one("ffmpeg", args, out.join("playlist.m3u8"))
        }
        Contender::GstLaunch | Contender::GstLean | Contender::GstLadder => {
            let line = if contender == Contender::GstLean {
                &setup.lean_line
            } else {
                &setup.gst_line
            };
            let line = line.as_deref().unwrap_or_default().replace(
                &setup.scratch.join("@OUT@").display().to_string(),
                &out.display().to_string(),
            );
            // gst-launch-1.0 escapes each argument, so the line must reach
            // it split as a shell splits it (as `just pipeline` does with
            // eval); `exec` keeps the pid measured gst-launch's own.
            let mut plan = Plan::one(
                "sh",
                vec!["-c".into(), format!("exec gst-launch-1.0 -e {line}")],
                out.join(SIGNAL).join("playlist.m3u8"),
            );
            if contender == Contender::GstLadder {
                plan.playlists = ladder::playlists(&out.join(SIGNAL), &setup.rungs);
            }
            plan
        }
    }
}

/// One rendition's playlist and the media seen listed in it.
struct Rendition {
    playlist: PathBuf,
    /// Segment names already counted.
    seen: HashSet<String>,
    media_s: f64,
}

/// A contender started, writing its streams, and what has been seen of them.
struct Running {
    contender: Contender,
    /// Its processes, by label.
    children: Vec<(String, Child)>,
    out: PathBuf,
    log_paths: Vec<PathBuf>,
    renditions: Vec<Rendition>,
    started: Instant,
    /// CPU and media seconds when every rendition had its first segment.
    first: Option<(f64, f64)>,
}

impl Running {
    /// Starts `contender` writing into its own folder for round `run`
    /// (printing its command lines in the first round).
    fn start(contender: Contender, setup: &Setup, run: u32) -> Result<Running, String> {
        let out = setup
            .scratch
            .join(format!("out-{}-{run}", contender.name()));
        // hlssink2 does not make its folder; the worker and ffmpeg do not mind.
        std::fs::create_dir_all(out.join(SIGNAL)).map_err(|e| format!("mkdir: {e}"))?;
        let plan = plan(contender, setup, &out);
        let mut running = Running {
            contender,
            children: Vec::new(),
            out,
            log_paths: Vec::new(),
            renditions: plan
                .playlists
                .into_iter()
                .map(|playlist| Rendition {
                    playlist,
                    seen: HashSet::new(),
                    media_s: 0.0,
                })
                .collect(),
            started: Instant::now(),
            first: None,
        };
        let several = plan.launches.len() > 1;
        for launch in plan.launches {
            if run == 1 {
                let shown = if contender.is_launch_line() {
                    launch
                        .args
                        .last()
                        .cloned()
                        .unwrap_or_default()
                        .replacen("exec ", "", 1)
                } else {
                    shell_line(&launch.program, &launch.args)
                };
                eprintln!("worker bench:   $ {shown}");
            }
            let log_name = if several {
                format!("{}-{}-{run}.log", contender.name(), launch.label)
            } else {
                format!("{}-{run}.log", contender.name())
            };
            let log_path = setup.scratch.join(log_name);
            let log = File::create(&log_path).map_err(|e| format!("log file: {e}"))?;
            let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
            running.log_paths.push(log_path);
            let child = Command::new(&launch.program)
                .args(&launch.args)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn();
            match child {
                Ok(child) => running.children.push((launch.label, child)),
                Err(e) => {
                    let error = format!("cannot start {}: {e}", launch.program);
                    running.discard();
                    return Err(error);
                }
            }
        }
        running.started = Instant::now();
        Ok(running)
    }

    /// CPU seconds of all its processes so far.
    fn cpu_seconds(&self, clk_tck: f64) -> Option<f64> {
        self.children
            .iter()
            .map(|(_, child)| cpu_seconds(child.id(), clk_tck))
            .sum()
    }

    /// The least media any of its renditions listed so far.
    fn media_s(&self) -> f64 {
        self.renditions
            .iter()
            .map(|r| r.media_s)
            .fold(f64::INFINITY, f64::min)
    }

    /// Reads its playlists once, counting new segments; an error when one
    /// of its processes has exited.
    fn poll(&mut self, clk_tck: f64) -> Result<(), String> {
        for (label, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{label} exited early ({status}) after {:.1} s",
                    self.started.elapsed().as_secs_f64()
                ));
            }
        }
        for rendition in &mut self.renditions {
            let Some(facts) = std::fs::read(&rendition.playlist)
                .ok()
                .and_then(|b| PlaylistFacts::parse(&b).ok())
            else {
                continue;
            };
            for s in facts.segments {
                let duration = s.duration.as_secs_f64();
                if rendition.seen.insert(s.uri) {
                    rendition.media_s += duration;
                }
            }
        }
        if self.first.is_none() && self.renditions.iter().all(|r| !r.seen.is_empty()) {
            self.first = self.cpu_seconds(clk_tck).map(|cpu| (cpu, self.media_s()));
        }
        Ok(())
    }

    /// Its CPU time and peak memory now, with the media seen: read before
    /// anything stops it.
    fn measure(&self, clk_tck: f64) -> Result<Measure, String> {
        let mut processes = Vec::new();
        for (label, child) in &self.children {
            let pid = child.id();
            let cpu = cpu_seconds(pid, clk_tck)
                .ok_or_else(|| format!("cannot read /proc/{pid}/stat ({label})"))?;
            let rss = peak_rss_kib(pid).unwrap_or(0.0) / 1024.0;
            processes.push((label.clone(), cpu, rss));
        }
        let wall_s = self.started.elapsed().as_secs_f64();
        let Some((first_cpu_s, first_media_s)) = self.first else {
            let silent: Vec<String> = self
                .renditions
                .iter()
                .filter(|r| r.seen.is_empty())
                .map(|r| r.playlist.display().to_string())
                .collect();
            return Err(format!(
                "wrote no segment to {} in {wall_s:.0} s",
                silent.join(", ")
            ));
        };
        Ok(Measure {
            cpu_s: processes.iter().map(|p| p.1).sum(),
            wall_s,
            media_s: self.media_s(),
            first_cpu_s,
            first_media_s,
            segments: self.renditions.first().map_or(0, |r| r.seen.len()),
            rss_mib: processes.iter().map(|p| p.2).sum(),
            renditions: self.renditions.len(),
            processes: if processes.len() > 1 {
                processes
            } else {
                Vec::new()
            },
            load1: load_average()
                .and_then(|l| l.split(' ').next().and_then(|v| v.parse().ok()))
                .unwrap_or(f64::NAN),
        })
    }

    /// Stops it and frees its segments and logs.
    fn discard(mut self) {
        stop(&mut self.children, self.contender);
        let _ = std::fs::remove_dir_all(&self.out);
        for log in &self.log_paths {
            let _ = std::fs::remove_file(log);
        }
    }

    /// Stops it; a failed `result` gets its logs' last lines, read before
    /// the logs are freed with its segments.
    fn finish(self, result: Result<Measure, String>) -> Result<Measure, String> {
        let result = result.map_err(|e| {
            let mut text = format!("{}: {e}", self.contender.name());
            for log in &self.log_paths {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let name = log.file_name().unwrap_or_default().to_string_lossy();
                text.push_str(&format!("\n{name} ends:\n{}", tail.join("\n")));
            }
            text
        });
        self.discard();
        result
    }
}

/// Runs `contenders` for the set wall time, one after another or (with
/// `together`) all at once, and measures each.
fn run_round(
    contenders: &[Contender],
    setup: &Setup,
    (run, runs): (u32, u32),
    together: bool,
) -> Result<Vec<Measure>, String> {
    let groups: Vec<&[Contender]> = if together {
        vec![contenders]
    } else {
        contenders.chunks(1).collect()
    };
    let mut measures = Vec::new();
    for group in groups {
        let names: Vec<&str> = group.iter().map(|c| c.name()).collect();
        eprintln!(
            "worker bench: run {run}/{runs}: {}{} for {} s",
            names.join(", "),
            if group.len() > 1 { " together" } else { "" },
            setup.seconds
        );
        let mut running = Vec::new();
        for &c in group {
            match Running::start(c, setup, run) {
                Ok(r) => running.push(r),
                Err(e) => {
                    running.into_iter().for_each(Running::discard);
                    return Err(e);
                }
            }
        }
        let group_measures = run_watched(running, setup)?;
        for (c, m) in group.iter().zip(&group_measures) {
            report(*c, m);
        }
        measures.extend(group_measures);
    }
    Ok(measures)
}

/// Polls every running contender's playlist until the wall time is up, then
/// measures each before stopping any. When one exits early, the others are
/// stopped and its error (with its log's end) is the round's.
fn run_watched(mut running: Vec<Running>, setup: &Setup) -> Result<Vec<Measure>, String> {
    let total = Duration::from_secs_f64(setup.seconds);
    let started = Instant::now();
    // The last poll comes at the deadline, so no segment finished in time
    // goes uncounted.
    loop {
        let failed = running
            .iter_mut()
            .find_map(|r| r.poll(setup.clk_tck).err().map(|e| (r.contender, e)));
        if let Some((contender, e)) = failed {
            let mut error = e.clone();
            for r in running {
                if r.contender == contender {
                    error = r.finish(Err(e.clone())).err().unwrap_or(error);
                } else {
                    r.discard();
                }
            }
            return Err(error);
        }
        if started.elapsed() >= total {
            break;
        }
        std::thread::sleep(POLL.min(total.saturating_sub(started.elapsed())));
    }
    let results: Vec<Result<Measure, String>> =
        running.iter().map(|r| r.measure(setup.clk_tck)).collect();
    // Every contender is stopped before the first error is returned.
    let finished: Vec<Result<Measure, String>> = running
        .into_iter()
        .zip(results)
        .map(|(r, result)| r.finish(result))
        .collect();
    finished.into_iter().collect()
}

/// One contender's figures, as the run goes.
fn report(contender: Contender, m: &Measure) {
    let renditions = if m.renditions > 1 {
        format!(" ({} renditions, the least of them)", m.renditions)
    } else {
        String::new()
    };
    eprintln!(
        "worker bench:   {}: {:.1} CPU s over {:.1} s, {} segments = {:.1} s of media{renditions} -> {:.2} CPU s per output minute ({:.2} once live, from the first segment at {:.1} CPU s), peak RSS {:.1} MiB ({:.1} per rendition), load {:.2}",
        contender.name(),
        m.cpu_s,
        m.wall_s,
        m.segments,
        m.media_s,
        m.cpu_per_output_minute(),
        m.steady_cpu_per_output_minute(),
        m.first_cpu_s,
        m.rss_mib,
        m.rss_per_rendition(),
        m.load1
    );
    for (label, cpu, rss) in &m.processes {
        eprintln!(
            "worker bench:     {label}: {cpu:.1} CPU s ({:.2} per output minute), peak RSS {rss:.1} MiB",
            cpu / (m.media_s / 60.0)
        );
    }
}

/// Sends each of a contender's processes its stop signal, then waits for
/// them all; kills those still running after [`STOP_GRACE`].
fn stop(children: &mut [(String, Child)], contender: Contender) {
    for (_, child) in children.iter_mut() {
        // One that exited is reaped already: its pid may be another's by now.
        if let Ok(Some(_)) = child.try_wait() {
            continue;
        }
        let _ = Command::new("kill")
            .args(["-s", contender.stop_signal(), &child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + STOP_GRACE;
    for (label, child) in children.iter_mut() {
        let stopped = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if !stopped {
            eprintln!(
                "worker bench: {} ({label}) did not stop within {} s of SIG{}, killing it",
                contender.name(),
                STOP_GRACE.as_secs(),
                contender.stop_signal()
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// User + system CPU seconds of every thread of `pid` so far: fields 14 and
/// 15 of `/proc/<pid>/stat`, in clock ticks.
fn cpu_seconds(pid: u32, clk_tck: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: count fields after its closing ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck)
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot say).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t: &f64| *t > 0.0)
        .unwrap_or(100.0)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` says them.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split(' ').take(3).collect::<Vec<_>>().join(" "))
}

/// A command as one could paste it into a shell.
fn shell_line(program: &str, args: &[String]) -> String {
    let quote = |a: &str| {
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,%@".contains(c))
        {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The table of medians, then the goals: the worker against ffmpeg, or with
/// `ladder` the ladder against ffmpeg's ladder and the separate workers.
fn print_table(results: &[(Contender, Vec<Measure>)], runs: u32, ladder: bool) {
    let med = |ms: &[Measure], f: fn(&Measure) -> f64| {
        let mut v: Vec<f64> = ms.iter().map(f).collect();
        median(&mut v)
    };
    let of = |contender: Contender, f: fn(&Measure) -> f64| {
        results
            .iter()
            .find(|(c, _)| *c == contender)
            .map(|(_, ms)| med(ms, f))
    };
    let baseline = if ladder {
        Contender::FfmpegLadder
    } else {
        Contender::Ffmpeg
    };
    let ratio = |value: f64, base: Option<f64>| {
        base.map(|b| format!("{:.2}x", value / b))
            .unwrap_or_else(|| "-".into())
    };
    let (whole, live) = (
        Measure::cpu_per_output_minute as fn(&Measure) -> f64,
        Measure::steady_cpu_per_output_minute as fn(&Measure) -> f64,
    );
    let vs = format!("vs {}", baseline.name());
    println!(
        "\n{:<14} {:>5} {:>10} {:>19} {:>14} {:>17} {:>14} {:>11} {:>13} {:>8} {:>15}",
        "contender",
        "runs",
        "renditions",
        "CPU s / output min",
        vs,
        "once live, s/min",
        vs,
        "CPU % core",
        "media / wall",
        "RSS MiB",
        "RSS / rendition"
    );
    for (contender, ms) in results {
        let (per_min, steady) = (med(ms, whole), med(ms, live));
        println!(
            "{:<14} {:>5} {:>10} {:>19.2} {:>14} {:>17.2} {:>14} {:>10.0}% {:>13.3} {:>8.1} {:>15.1}",
            contender.name(),
            ms.len(),
            ms.first().map_or(1, |m| m.renditions),
            per_min,
            ratio(per_min, of(baseline, whole)),
            steady,
            ratio(steady, of(baseline, live)),
            med(ms, |m| 100.0 * m.cpu_s / m.wall_s),
            med(ms, |m| m.media_s / m.wall_s),
            ms.iter().map(|m| m.rss_mib).fold(0.0, f64::max),
            ms.iter().map(Measure::rss_per_rendition).fold(0.0, f64::max),
        );
    }
    let load = load_average().unwrap_or_else(|| "?".into());
    let verdict = |met: bool| if met { "MET" } else { "MISSED" };
    if ladder {
        println!();
        if let (Some(l), Some(f)) = (
            of(Contender::Ladder, whole),
            of(Contender::FfmpegLadder, whole),
        ) {
            let r = l / f;
            let steady = ratio(
                of(Contender::Ladder, live).unwrap_or(f64::NAN),
                of(Contender::FfmpegLadder, live),
            );
            println!(
                "ladder / ffmpeg-ladder: {r:.2}x CPU per output minute (goal: {:.2}x or less) -> {}; once live {steady}",
                ladder::GOAL_VS_FFMPEG,
                verdict(r <= ladder::GOAL_VS_FFMPEG)
            );
        }
        if let (Some(l), Some(s)) = (of(Contender::Ladder, whole), of(Contender::Separate, whole)) {
            let r = l / s;
            let steady = ratio(
                of(Contender::Ladder, live).unwrap_or(f64::NAN),
                of(Contender::Separate, live),
            );
            println!(
                "ladder / separate: {r:.2}x CPU per output minute (goal: clearly below, {:.2}x or less) -> {}; once live {steady}",
                ladder::GOAL_VS_SEPARATE,
                verdict(r <= ladder::GOAL_VS_SEPARATE)
            );
        }
        let memory: Vec<String> = results
            .iter()
            .map(|(c, ms)| {
                let per = ms
                    .iter()
                    .map(Measure::rss_per_rendition)
                    .fold(0.0, f64::max);
                format!("{} {per:.1} MiB", c.name())
            })
            .collect();
        println!(
            "peak memory per rendition: {}; median of {runs} run(s) each; load average at the end {load}",
            memory.join(", ")
        );
    } else if let (Some(f), Some(w)) = (of(Contender::Ffmpeg, whole), of(Contender::Worker, whole))
    {
        let r = w / f;
        println!(
            "\nworker / ffmpeg: {r:.2}x CPU per output minute (goal: 1.0x or less) -> {}; median of {runs} run(s) each; load average at the end {load}",
            verdict(r <= 1.0)
        );
    }
}
