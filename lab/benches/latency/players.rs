//! The players of the latency bench and how each says how far behind live
//! its picture is: hls.js in headless Chromium (lab/web/hlsjs-player.mjs,
//! low latency or plain), which samples `hls.playingDate` every second, and
//! WebKitGTK's native HLS (`nonstop_lab::real_players::WebKit`), asked every
//! second for its video element's `getStartDate()` and `currentTime`. Each
//! runs until the bench says stop, then reports its samples, stalls and
//! failed requests.
//!
//! WebKitGTK 2.50's `getStartDate()` is NaN (its GStreamer player keeps no
//! program date-time), and its `currentTime` starts at 0 with the first
//! segment it plays. So WebKit plays through a fault proxy in mode `none`
//! whose debug log names each request: the first segment it fetched is
//! dated from the playlist that lists it, and the frame on screen is taken
//! to be that date plus `currentTime` (an approximation: it assumes the
//! player starts with the first segment it fetched and never jumps).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use nonstop::hls::multivariant::Multivariant;
use nonstop_lab::http::{get, wait_healthy};
use nonstop_lab::player_process::{BrowserProgress, PlayingLine};
use nonstop_lab::ports::free_port;
use nonstop_lab::process::Service;
use nonstop_lab::real_players::{self, BlankPage, VideoLook, WebKit};
use nonstop_lab::workspace::{bin, browser_driver};

/// The longest the hls.js driver measures: the bench ends it sooner by
/// closing its stdin.
const DRIVER_MAX_SECONDS: &str = "3600";
/// How long hls.js may take to play its first frame.
const STARTUP_TIMEOUT_SECONDS: &str = "30";
/// How long a player may take to report once told to stop.
const REPORT_WITHIN: Duration = Duration::from_secs(40);
/// How often the latency of WebKit's picture is asked (hls.js samples its own
/// at the same rate).
const LATENCY_EVERY: Duration = Duration::from_secs(1);

/// A kind of player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Player {
    /// hls.js with `lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5`.
    HlsjsLowLatency,
    /// hls.js with its defaults for plain HLS (`lowLatencyMode: false`).
    Hlsjs,
    /// WebKitGTK's own HLS (GStreamer's hlsdemux underneath), as Safari's
    /// engine plays it natively.
    Webkit,
}

impl Player {
    pub(crate) const ALL: [Player; 3] = [Player::HlsjsLowLatency, Player::Hlsjs, Player::Webkit];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Player::HlsjsLowLatency => "hlsjs-ll",
            Player::Hlsjs => "hlsjs",
            Player::Webkit => "webkit",
        }
    }

    /// What it is, for the table.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Player::HlsjsLowLatency => "hls.js LL (Chromium)",
            Player::Hlsjs => "hls.js standard (Chromium)",
            Player::Webkit => "WebKit native",
        }
    }

    /// Whether it plays low latency (parts, blocking reloads): the goal it
    /// is held to.
    pub(crate) fn low_latency(self) -> bool {
        self == Player::HlsjsLowLatency
    }

    /// Starts playing `url`, its log in `log`.
    pub(crate) fn start(self, url: &str, log: &Path) -> Result<Running, String> {
        match self {
            Player::HlsjsLowLatency | Player::Hlsjs => start_hlsjs(self, url, log),
            Player::Webkit => start_webkit(url, log),
        }
    }
}

impl std::str::FromStr for Player {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Player::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Player::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown player '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// One look at how far behind live the picture was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// The wall clock when it was taken.
    pub(crate) wall: SystemTime,
    /// The wall clock minus the program date-time of the frame on screen, s.
    pub(crate) latency: f64,
    /// Media buffered ahead of the picture, s, where the player says
    /// (hls.js): what it can lose to a slower link before it stalls.
    pub(crate) buffer: Option<f64>,
}

/// What a player reported at the end.
#[derive(Debug)]
pub(crate) struct PlayerRun {
    pub(crate) player: Player,
    pub(crate) samples: Vec<Sample>,
    /// Times the picture stopped after it started (hls.js: `waiting` events;
    /// WebKit: freezes over 2.5 s, as its system test judges).
    pub(crate) stalls: Option<u64>,
    pub(crate) stall_ms: Option<u64>,
    /// Requests the player saw fail (hls.js: its `*LoadError`/`*LoadTimeOut`
    /// errors; WebKit: the element's errors).
    pub(crate) failed_requests: Option<u64>,
    /// What a reader should know (never started, fatal errors, no dates).
    pub(crate) notes: Vec<String>,
    /// The player's own report.
    pub(crate) detail: Value,
}

impl PlayerRun {
    /// A player that could not be measured, and why.
    pub(crate) fn failed(player: Player, why: String) -> PlayerRun {
        PlayerRun {
            player,
            samples: Vec::new(),
            stalls: None,
            stall_ms: None,
            failed_requests: None,
            notes: vec![why],
            detail: Value::Null,
        }
    }
}

/// Whether a player has said it is playing, and a way to wait for it.
#[derive(Default)]
struct Watching {
    /// Media played by its latest announcement.
    played: Mutex<Option<Duration>>,
    changed: Condvar,
}

impl Watching {
    /// Media played by the latest announcement.
    fn played(&self) -> Duration {
        self.played
            .lock()
            .expect("watching lock")
            .unwrap_or_default()
    }

    fn say(&self, played: Duration) {
        *self.played.lock().expect("watching lock") = Some(played);
        self.changed.notify_all();
    }

    /// Waits until it said it played `at_least` of media, or `within`.
    fn wait(&self, at_least: Duration, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut played = self.played.lock().expect("watching lock");
        loop {
            if played.is_some_and(|p| p >= at_least) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            played = self
                .changed
                .wait_timeout(played, deadline - now)
                .expect("watching lock")
                .0;
        }
    }
}

/// A player started and running until [`Running::finish`].
pub(crate) struct Running {
    player: Player,
    watching: Arc<Watching>,
    how: How,
}

enum How {
    /// The hls.js driver: closing its stdin ends its measure.
    Driver {
        child: Child,
        stdin: Option<ChildStdin>,
        reader: Option<JoinHandle<()>>,
    },
    /// WebKit driven from a thread of this bench until `stop`.
    WebKit {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<PlayerRun>>,
    },
}

impl Running {
    /// Media the player has said it played so far.
    pub(crate) fn played(&self) -> Duration {
        self.watching.played()
    }

    /// Waits until the player says it played `at_least` of media.
    pub(crate) fn wait_playing(&self, at_least: Duration, within: Duration) -> bool {
        self.watching.wait(at_least, within)
    }

    /// Stops the player and returns its report.
    pub(crate) fn finish(mut self) -> PlayerRun {
        match &mut self.how {
            How::Driver {
                child,
                stdin,
                reader,
            } => {
                drop(stdin.take());
                let deadline = Instant::now() + REPORT_WITHIN;
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let mut stdout = String::new();
                if let Some(mut out) = child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut out, &mut stdout);
                }
                let _ = child.wait();
                if let Some(reader) = reader.take() {
                    let _ = reader.join();
                }
                hlsjs_report(self.player, &stdout)
            }
            How::WebKit { stop, thread } => {
                stop.store(true, Ordering::SeqCst);
                thread
                    .take()
                    .and_then(|t| t.join().ok())
                    .unwrap_or_else(|| {
                        PlayerRun::failed(self.player, "WebKit's thread panicked".into())
                    })
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        match &mut self.how {
            How::Driver { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            How::WebKit { stop, .. } => stop.store(true, Ordering::SeqCst),
        }
    }
}

/// hls.js through lab/web/hlsjs-player.mjs, measuring until its stdin closes.
fn start_hlsjs(player: Player, url: &str, log: &Path) -> Result<Running, String> {
    let mut file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new("node");
    cmd.arg(browser_driver("hlsjs-player.mjs"))
        .args(["--url", url, "--duration", DRIVER_MAX_SECONDS])
        .args([
            "--startup-timeout",
            STARTUP_TIMEOUT_SECONDS,
            "--until-stdin-closes",
        ]);
    if player.low_latency() {
        cmd.arg("--low-latency");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let stdin = child.stdin.take();
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let watching = Arc::new(Watching::default());
    let heard = watching.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Some(progress) = <BrowserProgress as PlayingLine>::parse(&line) {
                heard.say(progress.media_played);
            }
        }
    });
    Ok(Running {
        player,
        watching,
        how: How::Driver {
            child,
            stdin,
            reader: Some(reader),
        },
    })
}

/// The driver's JSON as a run: its latency samples, its stalls, and its
/// network errors as failed requests (as the failover bench counts them).
fn hlsjs_report(player: Player, stdout: &str) -> PlayerRun {
    let Some(report) = stdout.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l.trim())
            .ok()
            .filter(Value::is_object)
    }) else {
        return PlayerRun::failed(player, "the driver printed no report".into());
    };
    let samples = report["latency_samples"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| {
                    let wall = SystemTime::UNIX_EPOCH
                        + Duration::from_millis(s["wall_ms"].as_f64()? as u64);
                    Some(Sample {
                        wall,
                        latency: s["latency_s"].as_f64()?,
                        buffer: s["buffer_s"].as_f64(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
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
    let mut notes = Vec::new();
    if report["played"] != Value::Bool(true) {
        notes.push("never started".to_string());
    }
    if let Some(n) = report["fatal_errors"].as_u64().filter(|n| *n > 0) {
        let last = report["last_error"]["details"].as_str().unwrap_or("?");
        notes.push(format!("{n} fatal error(s) ({last})"));
    }
    if let Some(n) = report["level_switches"].as_u64().filter(|n| *n > 0) {
        notes.push(format!("{n} rendition switch(es)"));
    }
    PlayerRun {
        player,
        samples,
        stalls: report["stalls"].as_u64(),
        stall_ms: report["stall_ms"].as_u64(),
        failed_requests: Some(failed),
        notes,
        detail: report,
    }
}

/// Asks the video element `real_players::WebKit::play` made for its start
/// date (Safari's `getStartDate()`: the program date-time of media time 0)
/// and position, and the page's clock.
const WEBKIT_START_DATE: &str = r#"
const v = document.getElementById('v');
const start = typeof v.getStartDate === 'function' ? v.getStartDate().getTime() : NaN;
return { start: Number.isNaN(start) ? null : start, now: Date.now(), time: v.currentTime,
         has: typeof v.getStartDate === 'function' };
"#;

/// WebKitGTK's MiniBrowser playing `url` natively through a recording fault
/// proxy, looked at every `real_players::SAMPLE_EVERY` (judged as
/// `tests/system/webkit.rs` does) and asked for its start date every
/// [`LATENCY_EVERY`].
fn start_webkit(url: &str, log: &Path) -> Result<Running, String> {
    if let Some(missing) = real_players::webkit_missing() {
        return Err(missing.to_string());
    }
    let mut file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let (origin, path) = split_origin(url).ok_or_else(|| format!("'{url}' has no path"))?;
    let port = free_port();
    let logs = log.parent().unwrap_or(Path::new("."));
    let recorder = Service::start(
        "webkit-recorder",
        &bin("faultproxy"),
        &[
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--upstream".into(),
            origin.to_string(),
        ],
        &[("RUST_LOG", "debug".to_string())],
        logs,
    );
    wait_healthy(port);
    let watching = Arc::new(Watching::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (said, stopped) = (watching.clone(), stop.clone());
    let (direct, recorded) = (url.to_string(), format!("http://127.0.0.1:{port}{path}"));
    let thread = std::thread::spawn(move || {
        let page = BlankPage::start();
        let browser = match std::panic::catch_unwind(WebKit::start) {
            Ok(browser) => browser,
            Err(_) => return PlayerRun::failed(Player::Webkit, "WebKit did not start".into()),
        };
        let played = Played {
            url: &recorded,
            direct: &direct,
            recorder: &recorder,
        };
        let run = watch_webkit(&browser, &page, &played, &said, &stopped, &mut file);
        let _ = writeln!(file, "--- WebKit's own log ---\n{}", browser.log_text());
        run
    });
    Ok(Running {
        player: Player::Webkit,
        watching,
        how: How::WebKit {
            stop,
            thread: Some(thread),
        },
    })
}

/// `http://host:port` and `/path` of a URL.
fn split_origin(url: &str) -> Option<(&str, &str)> {
    let after_scheme = url.find("://")? + 3;
    let slash = after_scheme + url[after_scheme..].find('/')?;
    Some((&url[..slash], &url[slash..]))
}

/// What WebKit plays: the recording proxy's URL, the proxy's own, and the
/// recorder whose log names what WebKit fetched.
struct Played<'a> {
    url: &'a str,
    direct: &'a str,
    recorder: &'a Service,
}

/// The first segment (not a part) the recorder's debug log names
/// (`... GET /live01/480p_segment898118521.ts from ...`).
fn first_segment(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let target = line.split(" GET ").nth(1)?.split_whitespace().next()?;
        let name = target.rsplit('/').next()?;
        (name.ends_with(".ts") && !name.contains("_part")).then(|| name.to_string())
    })
}

/// The program date-time of the segment named `name` in the playlist at
/// `url` (a multivariant playlist's renditions searched in turn).
fn date_of(url: &str, name: &str) -> Option<SystemTime> {
    let (_, body) = get(url)?;
    let playlists: Vec<String> = match Multivariant::parse(&body) {
        Some(ladder) => {
            let (base, _) = url.rsplit_once('/')?;
            ladder.uris().map(|u| format!("{base}/{u}")).collect()
        }
        None => vec![url.to_string()],
    };
    playlists.iter().find_map(|playlist| {
        let (_, body) = get(playlist)?;
        let media = m3u8_rs::parse_media_playlist_res(&body).ok()?;
        let segment = media.segments.iter().find(|s| s.uri == name)?;
        Some(SystemTime::from(segment.program_date_time?))
    })
}

/// WebKit's watch, until `stop`.
fn watch_webkit(
    browser: &WebKit,
    page: &BlankPage,
    played: &Played,
    watching: &Watching,
    stop: &AtomicBool,
    log: &mut std::fs::File,
) -> PlayerRun {
    if let Err(e) = browser.play(&page.url, played.url, None) {
        return PlayerRun::failed(Player::Webkit, e);
    }
    // The date of currentTime 0, once known: the first segment fetched.
    let mut time_zero: Option<SystemTime> = None;
    let mut zero_looked_up = false;
    let started = Instant::now();
    let mut looks: Vec<VideoLook> = Vec::new();
    let mut samples = Vec::new();
    let (mut no_date, mut no_function) = (0u64, false);
    // Samples from the first segment's date when the element has none.
    let mut approximated = Vec::new();
    let mut last_sample = None::<Instant>;
    let mut notes = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match browser.look() {
            Ok(look) => {
                if !looks.is_empty() || look.watching() {
                    watching.say(Duration::from_secs_f64(look.time.max(0.0)));
                    looks.push(look);
                }
            }
            Err(e) => {
                notes.push(format!("the page stopped answering: {e}"));
                break;
            }
        }
        // Dated at once: the segment leaves the playlist's window soon.
        if !zero_looked_up {
            if let Some(first) = first_segment(&played.recorder.log_text()) {
                zero_looked_up = true;
                time_zero = date_of(played.direct, &first);
                let _ = writeln!(log, "first segment fetched: {first}, dated {time_zero:?}");
            }
        }
        let due = last_sample.is_none_or(|at| at.elapsed() >= LATENCY_EVERY);
        if !looks.is_empty() && due {
            last_sample = Some(Instant::now());
            let answer = browser.execute(WEBKIT_START_DATE, &[]);
            let _ = writeln!(log, "start date: {answer:?}");
            match answer {
                Ok(v) => {
                    let zero_ms = time_zero.and_then(|z| {
                        Some(z.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() as f64)
                    });
                    match (v["start"].as_f64(), v["now"].as_f64(), v["time"].as_f64()) {
                        (Some(start), Some(now), Some(time)) => samples.push(Sample {
                            wall: SystemTime::UNIX_EPOCH + Duration::from_millis(now as u64),
                            latency: (now - start) / 1000.0 - time,
                            buffer: None,
                        }),
                        (None, Some(now), Some(time)) => {
                            no_date += 1;
                            no_function |= v["has"] == Value::Bool(false);
                            if let Some(zero) = zero_ms {
                                approximated.push(Sample {
                                    wall: SystemTime::UNIX_EPOCH
                                        + Duration::from_millis(now as u64),
                                    latency: (now - zero) / 1000.0 - time,
                                    buffer: None,
                                });
                            }
                        }
                        _ => no_date += 1,
                    }
                }
                Err(_) => no_date += 1,
            }
        }
        std::thread::sleep(real_players::SAMPLE_EVERY);
    }
    if looks.is_empty() {
        let last = browser.look().map(|l| l.describe()).unwrap_or_else(|e| e);
        return PlayerRun::failed(
            Player::Webkit,
            format!(
                "never played {} s in {:.0} s: {last}",
                real_players::PLAYED_BEFORE_FAULT,
                started.elapsed().as_secs_f64()
            ),
        );
    }
    if no_date > 0 {
        notes.push(format!(
            "{no_date} look(s) without a start date ({}){}",
            if no_function {
                "the element has no getStartDate()"
            } else {
                "getStartDate() is NaN"
            },
            if samples.is_empty() && !approximated.is_empty() {
                ": approximated as the first segment's date plus currentTime"
            } else {
                ""
            }
        ));
    }
    if samples.is_empty() {
        samples = approximated;
    }
    let judgement = real_players::judge_video(&looks);
    notes.extend(judgement.failed_checks.iter().cloned());
    PlayerRun {
        player: Player::Webkit,
        samples,
        stalls: Some(judgement.freezes.len() as u64),
        stall_ms: Some(
            judgement
                .freezes
                .iter()
                .map(|(_, l)| l.as_millis() as u64)
                .sum(),
        ),
        failed_requests: Some(judgement.trouble.len() as u64),
        notes,
        detail: json!({
            "summary": judgement.summary,
            "trouble": judgement.trouble,
            "failed_checks": judgement.failed_checks,
        }),
    }
}
