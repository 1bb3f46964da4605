//! The players and how each is judged: the project's probe (its own
//! report), hls.js and Chromium's native HLS in headless Chromium
//! (lab/web/hlsjs-player.mjs), GStreamer's playbin in a child process of this
//! binary, ffmpeg's HLS demuxer fed into a buffer model, VLC and WebKit
//! (native HLS and hls.js) driven from outside and judged as
//! `tests/system/vlc.rs` and `tests/system/webkit.rs` judge them
//! (`nonstop_lab::real_players::judge_vlc`, `judge_video`). Each runs as a child
//! process killed if it outlives the bench, and leaves a CSV record of its
//! position against wall time.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use nonstop_lab::gst_player::{self, RECORD_STEP};
use nonstop_lab::player_judging::{FailureCounter, Stalls};
use nonstop_lab::player_process::{last_json, BrowserProgress, PlayingLine};
use nonstop_lab::real_players::{
    self, BlankPage, Judgement, PositionRecord, VideoLook, Vlc, VlcSample, WebKit,
};
use nonstop_lab::workspace::{bin, browser_driver};

use super::{millis, SaysPlaying};

/// ffmpeg: how often `-progress` reports, and how much media must be read
/// again before a stalled playhead resumes.
pub(crate) const FFMPEG_STATS_PERIOD: &str = "0.25";
pub(crate) const FFMPEG_RESUME_BUFFER: f64 = 0.5;
/// hls.js measures `--duration` after its first `playing`; this much less than
/// the watch lets it end with the others (it starts in 0.3 to 4 s).
pub(crate) const HLSJS_STARTUP_ALLOWANCE: Duration = Duration::from_secs(4);
pub(crate) const HLSJS_STARTUP_TIMEOUT_SECONDS: &str = "20";
/// Probe, GStreamer and ffmpeg start this long after hls.js (see [`Player::delay`]).
pub(crate) const LIGHT_PLAYERS_DELAY: Duration = Duration::from_secs(3);
/// How long after the watch a player may take to report before it is killed.
pub(crate) const PLAYER_GRACE: Duration = Duration::from_secs(40);
/// A probe that played this much less than the watch stopped early: the
/// stream ended for it (an `EXT-X-ENDLIST` passed on) while it went on.
const PROBE_EARLY_STOP: Duration = Duration::from_secs(2);

/// A kind of player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Player {
    Probe,
    Gstreamer,
    Ffmpeg,
    /// hls.js in headless Chromium.
    Hlsjs,
    /// hls.js in headless Chromium in low-latency mode: parts and blocking
    /// playlist reloads, about 1.5 s behind live.
    HlsjsLowLatency,
    /// Chromium's own HLS (`video.src = url`).
    ChromiumNative,
    Vlc,
    /// WebKitGTK's own HLS, as Safari plays it.
    Webkit,
    /// hls.js in WebKitGTK.
    WebkitHlsjs,
}

impl Player {
    pub(crate) const ALL: [Player; 9] = [
        Player::Probe,
        Player::Gstreamer,
        Player::Ffmpeg,
        Player::Hlsjs,
        Player::HlsjsLowLatency,
        Player::ChromiumNative,
        Player::Vlc,
        Player::Webkit,
        Player::WebkitHlsjs,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Player::Probe => "probe",
            Player::Gstreamer => "gstreamer",
            Player::Ffmpeg => "ffmpeg",
            Player::Hlsjs => "hls.js",
            Player::HlsjsLowLatency => "hls.js-ll",
            Player::ChromiumNative => "chromium",
            Player::Vlc => "vlc",
            Player::Webkit => "webkit",
            Player::WebkitHlsjs => "webkit-hls.js",
        }
    }

    /// When this player starts after the others' start. Chromium is the
    /// heaviest thing to start, so hls.js goes first and the light players
    /// start once it is up, not all in the same CPU burst.
    pub(crate) fn delay(self) -> Duration {
        match self {
            Player::Hlsjs
            | Player::HlsjsLowLatency
            | Player::ChromiumNative
            | Player::Webkit
            | Player::WebkitHlsjs => Duration::ZERO,
            _ => LIGHT_PLAYERS_DELAY,
        }
    }

    /// How to tell, from a line of its log, that it is playing (the probe's
    /// and the browsers' `playing ...` lines; VLC and WebKit get theirs
    /// written by the bench once they played
    /// [`real_players::PLAYED_BEFORE_FAULT`], as the tests wait for), so the fault
    /// can wait for it; `None` for players that do not say.
    pub(crate) fn playing_announcement(self) -> Option<SaysPlaying> {
        match self {
            Player::Probe => Some(|line| nonstop_lab::probe::Progress::parse(line).is_some()),
            Player::Hlsjs
            | Player::HlsjsLowLatency
            | Player::ChromiumNative
            | Player::Vlc
            | Player::Webkit
            | Player::WebkitHlsjs => {
                Some(|line| <BrowserProgress as PlayingLine>::parse(line).is_some())
            }
            Player::Gstreamer | Player::Ffmpeg => None,
        }
    }

    /// Plays `url` for `watch`, its log in `log`; returns how it went and
    /// the record of its position against wall time since it started.
    pub(crate) fn play(
        self,
        url: &str,
        watch: Duration,
        segment: Duration,
        log: &Path,
    ) -> (Outcome, PositionRecord) {
        let mut positions = PositionRecord::default();
        let outcome = match self {
            Player::Probe => play_probe(url, watch, log, &mut positions),
            Player::Gstreamer => play_gstreamer(url, watch, log, &mut positions),
            Player::Ffmpeg => play_ffmpeg(url, watch, segment, log, &mut positions),
            Player::Hlsjs => play_hlsjs(url, watch, log, BrowserHls::Hlsjs, &mut positions),
            Player::HlsjsLowLatency => {
                play_hlsjs(url, watch, log, BrowserHls::HlsjsLowLatency, &mut positions)
            }
            Player::ChromiumNative => {
                play_hlsjs(url, watch, log, BrowserHls::Native, &mut positions)
            }
            Player::Vlc => play_vlc(url, watch, log, &mut positions),
            Player::Webkit => play_webkit(url, watch, log, false, &mut positions),
            Player::WebkitHlsjs => play_webkit(url, watch, log, true, &mut positions),
        };
        (
            outcome.unwrap_or_else(|note| Outcome::unmeasured(&note)),
            positions,
        )
    }
}

/// What one player went through.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    pub(crate) stalls: Option<u64>,
    pub(crate) stall_ms: Option<u64>,
    pub(crate) failed_requests: Option<u64>,
    /// Checks a test asserts that failed besides stalls and failed requests
    /// (VLC and WebKit: stopped, fell behind, waited...); each is in the note.
    pub(crate) failed_checks: u64,
    /// Anything a reader of the table should know (died early, never started).
    pub(crate) note: String,
    /// The player's own report, for digging.
    pub(crate) detail: Value,
}

impl Outcome {
    pub(crate) fn unmeasured(note: &str) -> Outcome {
        Outcome {
            stalls: None,
            stall_ms: None,
            failed_requests: None,
            failed_checks: 0,
            note: note.to_string(),
            detail: Value::Null,
        }
    }

    pub(crate) fn clean(&self) -> bool {
        self.stalls == Some(0) && self.failed_requests == Some(0) && self.failed_checks == 0
    }

    /// A viewer's judgement of VLC or WebKit as a row: freezes are stalls,
    /// the player's trouble lines are failed requests, every other failed
    /// check is counted and noted. Clean exactly when the test would pass.
    pub(crate) fn judged(judgement: &Judgement, mut note: Vec<String>) -> Outcome {
        note.extend(judgement.failed_checks.iter().cloned());
        Outcome {
            stalls: Some(judgement.freezes.len() as u64),
            stall_ms: Some(judgement.freezes.iter().map(|(_, l)| millis(*l)).sum()),
            failed_requests: Some(judgement.trouble.len() as u64),
            failed_checks: judgement.failed_checks.len() as u64,
            note: note.join("; "),
            detail: json!({
                "summary": judgement.summary,
                "longest_freeze_ms": millis(judgement.longest_freeze),
                "trouble": judgement.trouble,
                "failed_checks": judgement.failed_checks,
            }),
        }
    }
}

/// A child process killed when dropped, so no player outlives the bench.
pub(crate) struct Kid(Child);

impl Kid {
    /// Waits until `deadline`; kills the child then if it is still running.
    /// Returns the exit status and whether it was killed.
    pub(crate) fn wait_until(&mut self, deadline: Instant) -> (Option<ExitStatus>, bool) {
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return (Some(status), false);
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                return (self.0.wait().ok(), true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn stdout_text(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `cmd` with stdout piped and stderr into `log`.
pub(crate) fn spawn(cmd: &mut Command, log: &Path) -> Result<Kid, String> {
    let err = std::fs::File::create(log).map_err(|e| format!("log {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .map(Kid)
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
}

/// Reads a player's position from one line of its stderr, if the line says.
pub(crate) type SaysPosition = fn(&str) -> Option<f64>;

/// Like [`spawn`], with stderr read line by line as it comes: each line goes
/// to `log` at once (so the fault can wait for a playing line), each one
/// `position` reads goes into the record with the time since the start, and
/// lines about trouble (stall, waiting, error, fail) become notes at the
/// last position.
pub(crate) fn spawn_recorded(
    cmd: &mut Command,
    log: &Path,
    position: SaysPosition,
) -> Result<(Kid, JoinHandle<PositionRecord>), String> {
    let mut file = std::fs::File::create(log).map_err(|e| format!("log {}: {e}", log.display()))?;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut record = PositionRecord::default();
        let mut last = 0.0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Some(p) = position(&line) {
                last = p;
                record.push(started.elapsed(), p, "");
            } else {
                let lower = line.to_lowercase();
                if ["stall", "waiting", "error", "fail"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    record.push(started.elapsed(), last, line.trim());
                }
            }
        }
        record
    });
    Ok((Kid(child), reader))
}

/// The project's probe: its own JSON report (buffer model stalls, failed requests).
pub(crate) fn play_probe(
    url: &str,
    watch: Duration,
    log: &Path,
    record: &mut PositionRecord,
) -> Result<Outcome, String> {
    let (mut kid, reader) = spawn_recorded(
        Command::new(bin("probe"))
            .args(["--url", url, "--duration"])
            .arg(format!("{:.1}", watch.as_secs_f64()))
            .arg("--start-segments")
            .arg(nonstop_lab::probe::DEFAULT_START_SEGMENTS.to_string())
            .env("RUST_LOG", "info"),
        log,
        |line| nonstop_lab::probe::Progress::parse(line).map(|p| p.media_played.as_secs_f64()),
    )?;
    let (_, killed) = kid.wait_until(Instant::now() + watch + PLAYER_GRACE);
    let stdout = kid.stdout_text();
    *record = reader.join().unwrap_or_default();
    let report = last_json(&stdout).ok_or("probe printed no report")?;
    let mut note = String::new();
    if killed {
        note.push_str("killed after the grace period; ");
    }
    if report["startup_ms"].is_null() {
        note.push_str("never started; ");
    }
    for key in [
        "playlist_regressions",
        "skipped_segments",
        "repeated_segments",
    ] {
        if let Some(n) = report[key].as_u64().filter(|n| *n > 0) {
            note.push_str(&format!("{n} {}; ", key.replace('_', " ")));
        }
    }
    // The probe stops on `EXT-X-ENDLIST`, as a player does: before the
    // watch is over, that is a viewer whose stream ended while it went on.
    let played = Duration::from_millis(report["duration_ms"].as_u64().unwrap_or(0));
    let stopped_early = !killed && played + PROBE_EARLY_STOP < watch;
    if stopped_early {
        note.push_str(&format!(
            "stopped after {:.1} s of a {:.0} s watch (the playlist it was given ended); ",
            played.as_secs_f64(),
            watch.as_secs_f64()
        ));
    }
    Ok(Outcome {
        stalls: report["stalls"].as_u64(),
        stall_ms: report["stall_ms"].as_u64(),
        failed_requests: report["failed_requests"].as_u64(),
        failed_checks: u64::from(stopped_early),
        note: note.trim_end_matches("; ").to_string(),
        detail: report,
    })
}

/// How Chromium plays HLS in lab/web/hlsjs-player.mjs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrowserHls {
    /// hls.js with its defaults.
    Hlsjs,
    /// hls.js in low-latency mode (`--low-latency`).
    HlsjsLowLatency,
    /// Chromium's own HLS (`--native`).
    Native,
}

/// hls.js in headless Chromium through lab/web/hlsjs-player.mjs, in low
/// latency mode, or Chromium's own HLS, each judged the same way.
pub(crate) fn play_hlsjs(
    url: &str,
    watch: Duration,
    log: &Path,
    how: BrowserHls,
    record: &mut PositionRecord,
) -> Result<Outcome, String> {
    let script = browser_driver("hlsjs-player.mjs");
    let measure = watch.saturating_sub(HLSJS_STARTUP_ALLOWANCE);
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .args(["--url", url, "--duration"])
        .arg(format!("{:.1}", measure.as_secs_f64()))
        .args(["--startup-timeout", HLSJS_STARTUP_TIMEOUT_SECONDS]);
    match how {
        BrowserHls::Hlsjs => {}
        BrowserHls::HlsjsLowLatency => {
            cmd.arg("--low-latency");
        }
        BrowserHls::Native => {
            cmd.arg("--native");
        }
    }
    let (mut kid, reader) = spawn_recorded(&mut cmd, log, |line| {
        <BrowserProgress as PlayingLine>::parse(line).map(|p| p.media_played.as_secs_f64())
    })?;
    let (status, killed) = kid.wait_until(Instant::now() + watch + PLAYER_GRACE);
    let stdout = kid.stdout_text();
    *record = reader.join().unwrap_or_default();
    let report = last_json(&stdout).ok_or_else(|| {
        format!(
            "hls.js printed no report (exit {:?}{})",
            status.and_then(|s| s.code()),
            if killed { ", killed" } else { "" }
        )
    })?;
    // Network failures only: *LoadError and *LoadTimeOut. bufferStalledError
    // and friends are stalls, counted as stalls.
    let failed: u64 = report["error_details"]
        .as_object()
        .map(|details| {
            details
                .iter()
                .filter(|(k, _)| k.contains("Load"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    let mut note = Vec::new();
    if report["played"] != Value::Bool(true) {
        note.push("never started".to_string());
    }
    // A fatal error ends playback without a 'waiting' event, so it is no
    // stall: it fails a check, as would `currentTime` standing still longer
    // than the tests allow with no stall to explain it.
    let mut failed_checks = 0;
    if let Some(n) = report["fatal_errors"].as_u64().filter(|n| *n > 0) {
        let last = report["last_error"]["details"].as_str().unwrap_or("?");
        note.push(format!("{n} fatal ({last})"));
        failed_checks += 1;
    }
    let played = report["played"] == Value::Bool(true);
    let frozen = report["max_frozen_ms"].as_u64().unwrap_or(0);
    if played && report["stalls"].as_u64() == Some(0) && frozen > millis(real_players::MAX_FREEZE) {
        note.push(format!(
            "currentTime stood still {:.1} s with no 'waiting'",
            frozen as f64 / 1000.0
        ));
        failed_checks += 1;
    }
    Ok(Outcome {
        stalls: played.then(|| report["stalls"].as_u64()).flatten(),
        stall_ms: played.then(|| report["stall_ms"].as_u64()).flatten(),
        failed_requests: Some(failed),
        failed_checks,
        note: note.join("; "),
        detail: report,
    })
}

/// A player's buffer fed by what ffmpeg's HLS demuxer has read: `reports`
/// are (when, media seconds read so far). Playback starts once `start` seconds
/// are read and runs in real time; when the playhead reaches the end of what
/// was read it stalls, until [`FFMPEG_RESUME_BUFFER`] more has been read.
/// None when playback never started.
pub(crate) fn buffer_model(
    origin: Instant,
    reports: &[(Instant, f64)],
    start: f64,
    end: Instant,
) -> Option<Stalls> {
    let first = reports.iter().position(|(_, read)| *read >= start)?;
    let mut stalls = Stalls::default();
    let (mut now, mut read) = reports[first];
    let mut playhead = 0.0_f64;
    let mut stalled_since: Option<Instant> = None;
    let tail = [(end, f64::MIN)];
    for &(at, media) in reports[first + 1..].iter().chain(tail.iter()) {
        let at = at.max(now);
        if stalled_since.is_none() {
            let left = (read - playhead).max(0.0);
            let elapsed = (at - now).as_secs_f64();
            if elapsed <= left {
                playhead += elapsed;
            } else {
                playhead = read;
                stalled_since = Some(now + Duration::from_secs_f64(left));
            }
        }
        now = at;
        read = read.max(media);
        if let Some(since) = stalled_since {
            if read - playhead >= FFMPEG_RESUME_BUFFER {
                stalls.add(origin, since, now.saturating_duration_since(since));
                stalled_since = None;
            }
        }
    }
    if let Some(since) = stalled_since {
        stalls.add(origin, since, end.saturating_duration_since(since));
    }
    Some(stalls)
}

/// ffmpeg 5.1's HLS demuxer (as ffplay would use it: reading ahead, not
/// `-re`), stream copy to the null muxer; `-progress` tells how much media it
/// has read, which feeds [`buffer_model`].
pub(crate) fn play_ffmpeg(
    url: &str,
    watch: Duration,
    segment: Duration,
    log: &Path,
    record: &mut PositionRecord,
) -> Result<Outcome, String> {
    let mut file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let deadline = started + watch;
    let mut child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "repeat+level+warning",
            "-stats_period",
            FFMPEG_STATS_PERIOD,
            "-progress",
            "pipe:1",
            "-i",
            url,
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg: {e}"))?;
    let stdout = child.stdout.take().ok_or("no ffmpeg stdout")?;
    let stderr = child.stderr.take().ok_or("no ffmpeg stderr")?;
    let mut kid = Kid(child);
    let progress = std::thread::spawn(move || {
        let mut reports = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(us) = line
                .strip_prefix("out_time_us=")
                .and_then(|v| v.trim().parse::<i64>().ok())
            {
                reports.push((Instant::now(), us.max(0) as f64 / 1e6));
            }
        }
        reports
    });
    let errors = std::thread::spawn(move || {
        let mut counter = FailureCounter::default();
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            let at_least_warning =
                line.contains("[warning]") || line.contains("[error]") || line.contains("[fatal]");
            if !at_least_warning || line.contains("[null @") {
                continue;
            }
            if line.contains("[http @") || line.contains("[tcp @") {
                counter.transfer(&line);
            } else if line.contains("Failed to reload playlist")
                || line.contains("Failed to open segment")
            {
                counter.player(&line);
            }
        }
        (counter, text)
    });
    let (status, killed) = kid.wait_until(deadline);
    let ended = Instant::now();
    let reports = progress.join().map_err(|_| "progress reader panicked")?;
    let (counter, text) = errors.join().map_err(|_| "stderr reader panicked")?;
    let _ = file.write_all(text.as_bytes());
    // ffmpeg reads ahead: its record is media read, not a playhead.
    for (at, read) in &reports {
        record.push(at.saturating_duration_since(started), *read, "media read");
    }
    let mut note = Vec::new();
    if !killed {
        note.push(format!(
            "exited at +{:.0} s ({:?})",
            (ended - started).as_secs_f64(),
            status.and_then(|s| s.code())
        ));
    }
    let stalls = buffer_model(
        started,
        &reports,
        segment.as_secs_f64(),
        deadline.max(ended),
    );
    if stalls.is_none() {
        note.push("never played".to_string());
    }
    Ok(Outcome {
        stalls: stalls.as_ref().map(|s| s.count),
        stall_ms: stalls.as_ref().map(Stalls::ms),
        failed_requests: Some(counter.failed),
        failed_checks: 0,
        note: note.join("; "),
        detail: json!({
            "media_seconds_read": reports.iter().map(|(_, s)| *s).fold(0.0, f64::max),
            "progress_reports": reports.len(),
            "stall_spans_s": stalls.map(|s| s.spans).unwrap_or_default(),
            "failure_lines": counter.lines,
        }),
    })
}

/// GStreamer's playbin in the lab's `gstplayer` program (`nonstop_lab::gst_player`).
pub(crate) fn play_gstreamer(
    url: &str,
    watch: Duration,
    log: &Path,
    record: &mut PositionRecord,
) -> Result<Outcome, String> {
    let mut kid = spawn(&mut gst_player::command(url, watch), log)?;
    let (status, _) = kid.wait_until(Instant::now() + watch + PLAYER_GRACE);
    let report = last_json(&kid.stdout_text()).ok_or_else(|| {
        format!(
            "GStreamer player printed no report (exit {:?})",
            status.and_then(|s| s.code())
        )
    })?;
    // Pictures rendered by each quarter second, as media seconds at 25 fps.
    if let Some(counts) = report["rendered_by_quarter_second"].as_array() {
        for (i, n) in counts.iter().enumerate() {
            let n = n.as_u64().unwrap_or(0);
            record.push(
                RECORD_STEP * i as u32,
                n as f64 / real_players::FPS,
                &format!("frames={n}"),
            );
        }
    }
    let started = report["started"] == Value::Bool(true);
    let mut note = Vec::new();
    if !started {
        note.push("never started".to_string());
    }
    if let Some(e) = report["fatal_error"].as_str() {
        note.push(format!("fatal: {e}"));
    }
    Ok(Outcome {
        stalls: started.then(|| report["stalls"].as_u64()).flatten(),
        stall_ms: started.then(|| report["stall_ms"].as_u64()).flatten(),
        failed_requests: report["failed_requests"].as_u64(),
        failed_checks: 0,
        note: note.join("; "),
        detail: report,
    })
}

/// Writes the announcement the fault waits for ([`BrowserProgress`]'s line).
fn announce(log: &mut std::fs::File, played: f64) {
    let _ = writeln!(log, "[judge] playing {played:.3} s of media");
}

/// VLC (`nonstop_lab::real_players::Vlc`: headless, as `nobody` with its own HOME
/// when root) sampled every [`real_players::SAMPLE_EVERY`] through its remote
/// interface, judged by `real_players::judge_vlc` from the first sample with
/// [`real_players::PLAYED_BEFORE_FAULT`] played to the end, as `tests/system/vlc.rs`.
pub(crate) fn play_vlc(
    url: &str,
    watch: Duration,
    log: &Path,
    record: &mut PositionRecord,
) -> Result<Outcome, String> {
    if let Some(missing) = real_players::vlc_missing() {
        return Err(missing.to_string());
    }
    let mut file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let deadline = started + watch;
    let vlc = std::panic::catch_unwind(|| Vlc::start(url))
        .map_err(|_| "VLC did not start (see the panic above)".to_string())?;
    let mut samples: Vec<VlcSample> = Vec::new();
    while Instant::now() < deadline {
        let s = vlc.sample();
        let time = s.time.unwrap_or(0) as f64;
        record.push(
            s.at.saturating_duration_since(started),
            time,
            &format!(
                "playing={} shown={}",
                s.playing,
                s.stats.map_or(0, |st| st.frames_displayed)
            ),
        );
        if !samples.is_empty() || (s.playing && time >= real_players::PLAYED_BEFORE_FAULT) {
            announce(&mut file, time);
            samples.push(s);
        }
        std::thread::sleep(real_players::SAMPLE_EVERY);
    }
    let vlc_log = vlc.log_text();
    let _ = writeln!(file, "--- VLC's own log ---\n{vlc_log}");
    drop(vlc);
    if samples.is_empty() {
        return Err(format!(
            "never played {} s (see its log)",
            real_players::PLAYED_BEFORE_FAULT
        ));
    }
    Ok(Outcome::judged(
        &real_players::judge_vlc(&samples, &vlc_log),
        Vec::new(),
    ))
}

/// WebKitGTK's MiniBrowser under Xvfb (`nonstop_lab::real_players::WebKit`, with
/// `WEBKIT_GST_ENABLE_HLS_SUPPORT=1`), its video element playing natively or
/// through hls.js, looked at every [`real_players::SAMPLE_EVERY`], judged by
/// `real_players::judge_video` from the first look with
/// [`real_players::PLAYED_BEFORE_FAULT`] played to the end, as `tests/system/webkit.rs`.
pub(crate) fn play_webkit(
    url: &str,
    watch: Duration,
    log: &Path,
    hls_js: bool,
    record: &mut PositionRecord,
) -> Result<Outcome, String> {
    if let Some(missing) = real_players::webkit_missing() {
        return Err(missing.to_string());
    }
    let source = if hls_js {
        Some(real_players::hlsjs_source()?)
    } else {
        None
    };
    let mut file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let deadline = started + watch;
    let page = BlankPage::start();
    let browser = std::panic::catch_unwind(WebKit::start)
        .map_err(|_| "WebKit did not start (see the panic above)".to_string())?;
    let outcome = (|| {
        browser.play(&page.url, url, source.as_deref())?;
        let mut looks: Vec<VideoLook> = Vec::new();
        let mut lost = None;
        while Instant::now() < deadline {
            match browser.look() {
                Ok(l) => {
                    record.push(
                        l.at.saturating_duration_since(started),
                        l.time,
                        &format!("paused={} readyState={}", l.paused, l.ready_state),
                    );
                    if !looks.is_empty() || l.watching() {
                        announce(&mut file, l.time);
                        looks.push(l);
                    }
                }
                Err(e) => {
                    lost = Some(format!("the page stopped answering: {e}"));
                    break;
                }
            }
            std::thread::sleep(real_players::SAMPLE_EVERY);
        }
        if looks.is_empty() {
            let last = browser.look().map(|l| l.describe()).unwrap_or_else(|e| e);
            return Err(format!(
                "never played {} s: {last}",
                real_players::PLAYED_BEFORE_FAULT
            ));
        }
        let mut judgement = real_players::judge_video(&looks);
        judgement.failed_checks.extend(lost);
        Ok(Outcome::judged(&judgement, Vec::new()))
    })();
    let _ = writeln!(file, "--- WebKit's own log ---\n{}", browser.log_text());
    outcome
}
