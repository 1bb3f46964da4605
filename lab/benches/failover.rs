//! The failover benchmark (`just bench-failover`): every packager fault, watched
//! by four kinds of player, through nonstop's proxy and, at the same moment,
//! through nginx configured the conventional way, side by side.
//!
//! ```text
//!                          ┌── faultproxy ── server1 ──┐  packager A (faults injected here)
//!   worker ──▶ output/ ────┤                           │
//!                          └── server2 ────────────────┘  packager B
//!   probe, GStreamer, ffmpeg, hls.js ──▶ nonstop proxy ──▶ A | B   (failover state machine)
//!   probe, GStreamer, ffmpeg, hls.js ──▶ nginx ──────────▶ A | B   (round robin, proxy_next_upstream)
//!   watcher ──▶ each proxy's playlist every 100 ms                 (time to switch)
//!   watcher ──▶ packager B's playlist every 100 ms                 (control: did the source pause?)
//! ```
//!
//! One stack per fault. The players start together (hls.js first, the lighter
//! ones 3 s later so they miss Chromium's start-up burst), the fault comes
//! `--fault-at` seconds after the start and is cleared at `--clear-at` (a
//! killed packager stays dead), and they all stop at `--seconds`. Each player kind is judged by
//! its own signals; bench/README.md says exactly how. The table goes to stdout,
//! progress to stderr, the same rows as JSON to `bench/out/failover.json` and
//! every log to `bench/out/logs/<fault>/`. The control watcher asks packager B
//! directly: when the worker or the machine pauses, the notes say so.
//!
//! The GStreamer player runs in a child process (this binary again, with
//! `--gst-player`) so a demuxer that hangs or crashes cannot take the bench
//! with it, and so its GStreamer log belongs to that one pipeline.

use nonstop_lab::support as common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{free_port, wait_for, Service, Stack, StackOptions};
use serde::Serialize;
use serde_json::{json, Value};

/// How long players watch, when the fault comes and when it is cleared.
const DEFAULT_WATCH: Duration = Duration::from_secs(45);
const DEFAULT_FAULT_AT: Duration = Duration::from_secs(12);
const DEFAULT_CLEAR_AT: Duration = Duration::from_secs(30);
/// The same for `--quick`.
const QUICK_WATCH: Duration = Duration::from_secs(30);
const QUICK_FAULT_AT: Duration = Duration::from_secs(8);
const QUICK_CLEAR_AT: Duration = Duration::from_secs(20);
/// The product's default segment (and target) duration.
const DEFAULT_SEGMENT_SECONDS: u32 = 2;
/// Length of the generated input the worker loops.
const DEFAULT_INPUT_SECONDS: u32 = 10;
/// Segments the playlist must list before players start, so every player can
/// start at the live edge with its usual three-segment buffer.
const LIVE_EDGE_SEGMENTS: usize = 4;
/// The watcher's poll period and per-request budget.
const WATCH_POLL: Duration = Duration::from_millis(100);
const WATCH_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// GStreamer: a gap between two rendered video frames (40 ms apart at 25 fps)
/// longer than this is a stall.
const GST_STALL_GAP: Duration = Duration::from_millis(500);
/// ffmpeg: how often `-progress` reports, and how much media must be read
/// again before a stalled playhead resumes.
const FFMPEG_STATS_PERIOD: &str = "0.25";
const FFMPEG_RESUME_BUFFER: f64 = 0.5;
/// hls.js measures `--duration` after its first `playing`; this much less than
/// the watch lets it end with the others (it starts in 0.3 to 4 s).
const HLSJS_STARTUP_ALLOWANCE: Duration = Duration::from_secs(4);
const HLSJS_STARTUP_TIMEOUT_SECONDS: &str = "20";
/// Probe, GStreamer and ffmpeg start this long after hls.js (see [`Player::delay`]).
const LIGHT_PLAYERS_DELAY: Duration = Duration::from_secs(3);
/// A source pause longer than this gets a line under the table.
const SOURCE_GAP_NOTE: Duration = Duration::from_millis(500);
/// How long after the watch a player may take to report before it is killed.
const PLAYER_GRACE: Duration = Duration::from_secs(40);
/// GStreamer debug categories whose warnings name failed requests.
const GST_LOG_CATEGORIES: &str = "souphttpsrc:2,adaptivedemux:2,hlsdemux:2";
/// nginx as Debian installs it, configured the conventional way.
const NGINX_TEMPLATE: &str = include_str!("../bench/nginx.conf.template");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--gst-player") {
        gst_player(&args[1..]);
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("failover bench: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if options.help {
        println!("{USAGE}");
        return;
    }
    if let Err(e) = options.check_tools() {
        eprintln!("failover bench: {e}");
        std::process::exit(1);
    }
    // The fault proxy reads its `slow` delay from the environment it inherits:
    // about one target duration, as the issue asks.
    std::env::set_var(
        "FAULT_SLOW_MS",
        (u64::from(options.segment_seconds) * 1000).to_string(),
    );
    let out = Path::new(MANIFEST_DIR).join("bench/out");
    if let Err(e) = std::fs::create_dir_all(out.join("logs")) {
        eprintln!("failover bench: cannot create {}: {e}", out.display());
        std::process::exit(1);
    }
    let clock = Progress::new();
    clock.say(&format!(
        "{} fault(s) x {} player(s) x {}; watch {} s, fault at +{} s, cleared at +{} s, {} s segments",
        options.faults.len(),
        options.players.len(),
        options
            .proxy_passes()
            .iter()
            .map(|pass| pass.iter().map(|p| p.name()).collect::<Vec<_>>().join("+"))
            .collect::<Vec<_>>()
            .join(" then "),
        options.watch.as_secs(),
        options.fault_at.as_secs(),
        options.clear_at.as_secs(),
        options.segment_seconds
    ));

    let mut rows = Vec::new();
    for &fault in &options.faults {
        for pass in options.proxy_passes() {
            let logs = out.join("logs").join(fault.name());
            let _ = std::fs::create_dir_all(&logs);
            // One retry: a stack that does not come up (a service slow to
            // start on a loaded machine) is not a result.
            let attempt = || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_fault(fault, &pass, &options, &logs, &clock)
                }))
            };
            let run = attempt().or_else(|_| {
                clock.say(&format!(
                    "{}: the run failed (see above), trying once more",
                    fault.name()
                ));
                attempt()
            });
            match run {
                Ok(fault_rows) => {
                    print_table(&fault_rows, &mut std::io::stderr());
                    rows.extend(fault_rows);
                }
                Err(_) => {
                    clock.say(&format!(
                        "{}: the run failed (see the panic above)",
                        fault.name()
                    ));
                    for &proxy in &pass {
                        for &player in &options.players {
                            rows.push(Row::failed(fault, player, proxy, "run failed"));
                        }
                    }
                }
            }
        }
    }
    rows.sort_by_key(|r| (r.fault_index, r.player_index, r.proxy_index));

    println!();
    print_table(&rows, &mut std::io::stdout());
    println!("{}", verdict(&rows));
    let report = json!({
        "config": {
            "faults": options.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "players": options.players.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "proxies": options.proxies.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "split": options.split,
            "watch_s": options.watch.as_secs_f64(),
            "fault_at_s": options.fault_at.as_secs_f64(),
            "clear_at_s": options.clear_at.as_secs_f64(),
            "segment_seconds": options.segment_seconds,
            "input_seconds": options.input_seconds,
        },
        "rows": rows,
    });
    let path = out.join("failover.json");
    match serde_json::to_string_pretty(&report)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(&path, text + "\n").map_err(|e| e.to_string()))
    {
        Ok(()) => println!("JSON: {}", path.display()),
        Err(e) => eprintln!("failover bench: cannot write {}: {e}", path.display()),
    }
}

const USAGE: &str =
    "usage: cargo bench --bench failover -- [options]   (or: just bench-failover [options])
  --faults LIST          kill,hang,stale,error500,segment404,slow,cut,reset (default: all)
  --players LIST         probe,gstreamer,ffmpeg,hlsjs (default: all)
  --proxies LIST         nonstop,nginx (default: both)
  --split                one pass per proxy instead of both at once (halves the load)
  --seconds N            how long players watch (default 45)
  --fault-at N           fault injected N s after players start (default 12)
  --clear-at N           fault cleared N s after players start (default 30)
  --segment-seconds N    segment duration (default 2)
  --input-seconds N      length of the looped input (default 10)
  --quick                --seconds 30 --fault-at 8 --clear-at 20
Each flag also reads BENCH_<NAME> from the environment (BENCH_FAULTS=kill,stale).";

/// What the user asked for.
struct Options {
    faults: Vec<Fault>,
    players: Vec<Player>,
    proxies: Vec<Proxy>,
    split: bool,
    watch: Duration,
    fault_at: Duration,
    clear_at: Duration,
    segment_seconds: u32,
    input_seconds: u32,
    help: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for name in [
            "faults",
            "players",
            "proxies",
            "seconds",
            "fault-at",
            "clear-at",
            "segment-seconds",
            "input-seconds",
            "split",
            "quick",
        ] {
            let key = format!("BENCH_{}", name.to_uppercase().replace('-', "_"));
            if let Ok(v) = std::env::var(&key) {
                values.insert(name.to_string(), v);
            }
        }
        let mut help = false;
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                // cargo bench passes --bench to harness = false targets.
                "--bench" => {}
                "-h" | "--help" => help = true,
                "--split" | "--quick" => {
                    values.insert(arg[2..].to_string(), "1".to_string());
                }
                flag if flag.starts_with("--") => {
                    let (name, value) = match flag[2..].split_once('=') {
                        Some((n, v)) => (n.to_string(), v.to_string()),
                        None => (
                            flag[2..].to_string(),
                            rest.next()
                                .ok_or_else(|| format!("{flag} needs a value"))?
                                .clone(),
                        ),
                    };
                    values.insert(name, value);
                }
                other => return Err(format!("unexpected argument '{other}'")),
            }
        }
        let flag = |name: &str| values.get(name).is_some_and(|v| v != "0" && !v.is_empty());
        let quick = flag("quick");
        let seconds = |name: &str, default: Duration| -> Result<Duration, String> {
            match values.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("--{name} '{v}' is not a positive number of seconds")),
            }
        };
        let count = |name: &str, default: u32| -> Result<u32, String> {
            match values.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--{name} '{v}' is not a positive whole number")),
            }
        };
        let (watch, fault_at, clear_at) = if quick {
            (QUICK_WATCH, QUICK_FAULT_AT, QUICK_CLEAR_AT)
        } else {
            (DEFAULT_WATCH, DEFAULT_FAULT_AT, DEFAULT_CLEAR_AT)
        };
        let options = Options {
            faults: list(values.get("faults"), &Fault::ALL, Fault::name)?,
            players: list(values.get("players"), &Player::ALL, Player::name)?,
            proxies: list(values.get("proxies"), &Proxy::ALL, Proxy::name)?,
            split: flag("split"),
            watch: seconds("seconds", watch)?,
            fault_at: seconds("fault-at", fault_at)?,
            clear_at: seconds("clear-at", clear_at)?,
            segment_seconds: count("segment-seconds", DEFAULT_SEGMENT_SECONDS)?,
            input_seconds: count("input-seconds", DEFAULT_INPUT_SECONDS)?,
            help,
        };
        if !(options.fault_at < options.clear_at && options.clear_at <= options.watch) {
            return Err("need --fault-at < --clear-at <= --seconds".into());
        }
        if options.fault_at <= LIGHT_PLAYERS_DELAY + HLSJS_STARTUP_ALLOWANCE {
            return Err(format!(
                "--fault-at must leave the players time to start (more than {} s)",
                (LIGHT_PLAYERS_DELAY + HLSJS_STARTUP_ALLOWANCE).as_secs()
            ));
        }
        Ok(options)
    }

    /// Which proxies run together: both at once, or one after the other.
    fn proxy_passes(&self) -> Vec<Vec<Proxy>> {
        if self.split {
            self.proxies.iter().map(|p| vec![*p]).collect()
        } else {
            vec![self.proxies.clone()]
        }
    }

    /// Every outside program the chosen players and proxies need, checked
    /// before any stack starts, with what to do when one is missing.
    fn check_tools(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        if self.proxies.contains(&Proxy::Nginx) && nginx_bin().is_none() {
            missing.push("nginx (apt-get install nginx-light, or ./scripts/setup.sh)");
        }
        if self.players.contains(&Player::Ffmpeg) && !on_path("ffmpeg") {
            missing.push("ffmpeg (apt-get install ffmpeg)");
        }
        if self.players.contains(&Player::Hlsjs) {
            if !on_path("node") {
                missing.push("node (apt-get install nodejs)");
            }
            if !common::repo_root().join("web/node_modules/hls.js").exists() {
                missing.push("web/node_modules (npm ci --prefix web)");
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing: {}", missing.join("; ")))
        }
    }
}

/// Parses a comma-separated list of names, keeping the canonical order.
fn list<T: Copy + PartialEq>(
    given: Option<&String>,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<Vec<T>, String> {
    let Some(given) = given else {
        return Ok(all.to_vec());
    };
    let wanted: Vec<String> = given
        .split(',')
        .map(|s| s.trim().to_lowercase().replace('.', ""))
        .filter(|s| !s.is_empty())
        .collect();
    for w in &wanted {
        if !all.iter().any(|t| name(*t).replace('.', "") == *w) {
            let names: Vec<_> = all.iter().map(|t| name(*t)).collect();
            return Err(format!("unknown '{w}' (expected {})", names.join(", ")));
        }
    }
    Ok(all
        .iter()
        .copied()
        .filter(|t| wanted.contains(&name(*t).replace('.', "")))
        .collect())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn nginx_bin() -> Option<String> {
    if on_path("nginx") {
        Some("nginx".to_string())
    } else {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .map(str::to_string)
    }
}

/// A packager fault, as the issue lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL to packager A: connections refused from then on.
    Kill,
    /// SIGSTOP to packager A: connections accepted, never answered.
    Hang,
    /// Playlists 200 OK but frozen.
    Stale,
    /// HTTP 500 on everything.
    Error500,
    /// 404 on segments only.
    Segment404,
    /// Every response delayed by about one target duration.
    Slow,
    /// Segment bodies cut short.
    Cut,
    /// TCP reset once the request is read.
    Reset,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::Kill,
        Fault::Hang,
        Fault::Stale,
        Fault::Error500,
        Fault::Segment404,
        Fault::Slow,
        Fault::Cut,
        Fault::Reset,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Hang => "hang",
            Fault::Stale => "stale",
            Fault::Error500 => "error500",
            Fault::Segment404 => "segment404",
            Fault::Slow => "slow",
            Fault::Cut => "cut",
            Fault::Reset => "reset",
        }
    }

    fn inject(self, stack: &Stack) {
        match self {
            Fault::Kill => fault_process(stack).signal("KILL"),
            Fault::Hang => fault_process(stack).signal("STOP"),
            mode => stack.inject(mode.name()),
        }
    }

    /// Ends the fault; false when there is nothing to end (a kill stays).
    fn clear(self, stack: &Stack) -> bool {
        match self {
            Fault::Kill => false,
            Fault::Hang => {
                fault_process(stack).signal("CONT");
                true
            }
            _ => {
                stack.inject("none");
                true
            }
        }
    }
}

fn fault_process(stack: &Stack) -> &Service {
    stack
        .fault
        .as_ref()
        .expect("the stack runs a fault proxy in front of packager A")
}

/// A kind of player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Player {
    Probe,
    Gstreamer,
    Ffmpeg,
    Hlsjs,
}

impl Player {
    const ALL: [Player; 4] = [
        Player::Probe,
        Player::Gstreamer,
        Player::Ffmpeg,
        Player::Hlsjs,
    ];

    fn name(self) -> &'static str {
        match self {
            Player::Probe => "probe",
            Player::Gstreamer => "gstreamer",
            Player::Ffmpeg => "ffmpeg",
            Player::Hlsjs => "hls.js",
        }
    }

    /// When this player starts after the others' start. Chromium is the
    /// heaviest thing to start, so hls.js goes first and the light players
    /// start once it is up, not all in the same CPU burst.
    fn delay(self) -> Duration {
        match self {
            Player::Hlsjs => Duration::ZERO,
            _ => LIGHT_PLAYERS_DELAY,
        }
    }

    fn play(self, url: &str, watch: Duration, segment: Duration, log: &Path) -> Outcome {
        let outcome = match self {
            Player::Probe => play_probe(url, watch, log),
            Player::Gstreamer => play_gstreamer(url, watch, log),
            Player::Ffmpeg => play_ffmpeg(url, watch, segment, log),
            Player::Hlsjs => play_hlsjs(url, watch, log),
        };
        outcome.unwrap_or_else(|note| Outcome::unmeasured(&note))
    }
}

/// What the players talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proxy {
    Nonstop,
    Nginx,
}

impl Proxy {
    const ALL: [Proxy; 2] = [Proxy::Nonstop, Proxy::Nginx];

    fn name(self) -> &'static str {
        match self {
            Proxy::Nonstop => "nonstop",
            Proxy::Nginx => "nginx",
        }
    }
}

/// What one player went through.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    stalls: Option<u64>,
    stall_ms: Option<u64>,
    failed_requests: Option<u64>,
    /// Anything a reader of the table should know (died early, never started).
    note: String,
    /// The player's own report, for digging.
    detail: Value,
}

impl Outcome {
    fn unmeasured(note: &str) -> Outcome {
        Outcome {
            stalls: None,
            stall_ms: None,
            failed_requests: None,
            note: note.to_string(),
            detail: Value::Null,
        }
    }

    fn clean(&self) -> bool {
        self.stalls == Some(0) && self.failed_requests == Some(0)
    }
}

/// One line of the table and of the JSON.
#[derive(Debug, Clone, Serialize)]
struct Row {
    fault: &'static str,
    player: &'static str,
    proxy: &'static str,
    #[serde(flatten)]
    outcome: Outcome,
    /// Longest extra wait for the playlist to advance during the fault; None
    /// when it never advanced again before the fault was cleared.
    time_to_switch_ms: Option<u64>,
    /// The control: the longest extra wait for packager B's own playlist to
    /// advance, asked directly, during the whole watch. Above zero, the worker
    /// or the machine paused, and every player and proxy saw it.
    source_extra_gap_ms: Option<u64>,
    #[serde(skip)]
    fault_index: usize,
    #[serde(skip)]
    player_index: usize,
    #[serde(skip)]
    proxy_index: usize,
}

impl Row {
    fn new(
        fault: Fault,
        player: Player,
        proxy: Proxy,
        outcome: Outcome,
        switch: Option<Duration>,
    ) -> Row {
        Row {
            fault: fault.name(),
            player: player.name(),
            proxy: proxy.name(),
            outcome,
            time_to_switch_ms: switch.map(millis),
            source_extra_gap_ms: None,
            fault_index: Fault::ALL.iter().position(|f| *f == fault).unwrap_or(0),
            player_index: Player::ALL.iter().position(|p| *p == player).unwrap_or(0),
            proxy_index: Proxy::ALL.iter().position(|p| *p == proxy).unwrap_or(0),
        }
    }

    fn failed(fault: Fault, player: Player, proxy: Proxy, note: &str) -> Row {
        Row::new(fault, player, proxy, Outcome::unmeasured(note), None)
    }
}

/// Progress lines on stderr, stamped with the time since the bench started.
struct Progress {
    started: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
        }
    }

    fn say(&self, what: &str) {
        eprintln!(
            "[bench {:>6.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// One fault against the proxies of one pass: a fresh stack, nginx beside it,
/// every player watching, the fault in the middle.
fn run_fault(
    fault: Fault,
    proxies: &[Proxy],
    options: &Options,
    logs: &Path,
    clock: &Progress,
) -> Vec<Row> {
    let name = fault.name();
    let pass = proxies
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join("+");
    clock.say(&format!(
        "{name} [{pass}]: starting the stack (worker, server1 behind the fault proxy, server2, reporter, discovery, origin, proxy)"
    ));
    let stack = Stack::start(StackOptions {
        segment_seconds: options.segment_seconds,
        input_seconds: options.input_seconds,
        audio: true,
        fault_front: true,
    });
    let nginx = proxies
        .contains(&Proxy::Nginx)
        .then(|| Nginx::start(&stack.packagers[0], &stack.packagers[1], logs));
    let urls: Vec<(Proxy, String)> = proxies
        .iter()
        .map(|&proxy| {
            let url = match (proxy, &nginx) {
                (Proxy::Nginx, Some(nginx)) => nginx.url("live01/playlist.m3u8"),
                _ => stack.proxy_url("live01/playlist.m3u8"),
            };
            (proxy, url)
        })
        .collect();
    for (proxy, url) in &urls {
        wait_for(
            Duration::from_secs(40),
            &format!("{LIVE_EDGE_SEGMENTS} segments listed by {}", proxy.name()),
            || (listed_segments(url)? >= LIVE_EDGE_SEGMENTS).then_some(()),
        );
    }

    clock.say(&format!(
        "{name} [{pass}]: {} players watching for {} s; fault at +{} s, cleared at +{} s",
        urls.len() * options.players.len(),
        options.watch.as_secs(),
        options.fault_at.as_secs(),
        options.clear_at.as_secs()
    ));
    let t0 = Instant::now();
    let watchers: Vec<(Proxy, Watcher)> = urls
        .iter()
        .map(|(proxy, url)| (*proxy, Watcher::start(url)))
        .collect();
    let source = Watcher::start(&format!("{}/live01/playlist.m3u8", stack.packagers[1]));
    let mut players: Vec<(Proxy, Player, JoinHandle<Outcome>)> = Vec::new();
    for (proxy, url) in &urls {
        for &player in &options.players {
            let url = url.clone();
            let delay = player.delay();
            let watch = options.watch - delay;
            let segment = Duration::from_secs(u64::from(options.segment_seconds));
            let log = logs.join(format!(
                "{}-{}.log",
                proxy.name(),
                player.name().replace('.', "")
            ));
            players.push((
                *proxy,
                player,
                std::thread::spawn(move || {
                    sleep_until(t0 + delay);
                    let mut outcome = player.play(&url, watch, segment, &log);
                    if let Value::Object(detail) = &mut outcome.detail {
                        detail.insert("started_at_s".to_string(), json!(delay.as_secs_f64()));
                    }
                    outcome
                }),
            ));
        }
    }

    sleep_until(t0 + options.fault_at);
    fault.inject(&stack);
    let injected = Instant::now();
    clock.say(&format!("{name} [{pass}]: fault injected on packager A"));
    sleep_until(t0 + options.clear_at);
    let cleared = Instant::now();
    if fault.clear(&stack) {
        clock.say(&format!("{name} [{pass}]: fault cleared, packager A back"));
    } else {
        clock.say(&format!("{name} [{pass}]: packager A stays dead"));
    }
    sleep_until(t0 + options.watch);
    let load = load_average();
    clock.say(&format!(
        "{name} [{pass}]: watch over (load average {load}), collecting reports"
    ));

    let segment = Duration::from_secs(u64::from(options.segment_seconds));
    let source_gap = longest_extra_gap(&source.finish(), segment);
    if source_gap > SOURCE_GAP_NOTE {
        clock.say(&format!(
            "{name} [{pass}]: packager B's own playlist paused {:.1} s longer than a segment (worker or machine, not a proxy)",
            source_gap.as_secs_f64()
        ));
    }
    let switches: Vec<(Proxy, Option<Duration>, Value)> = watchers
        .into_iter()
        .map(|(proxy, watcher)| {
            let samples = watcher.finish();
            let switch = time_to_switch(&samples, injected, cleared, segment);
            (proxy, switch, watch_summary(&samples, injected, cleared))
        })
        .collect();
    let mut rows = Vec::new();
    for (proxy, player, handle) in players {
        let mut outcome = handle
            .join()
            .unwrap_or_else(|_| Outcome::unmeasured("player thread panicked"));
        let (switch, watch) = switches
            .iter()
            .find(|(p, _, _)| *p == proxy)
            .map(|(_, s, w)| (*s, w.clone()))
            .unwrap_or((None, Value::Null));
        if let Value::Object(detail) = &mut outcome.detail {
            detail.insert("watcher".to_string(), watch);
            detail.insert("load_average_at_end".to_string(), json!(load));
        }
        let mut row = Row::new(fault, player, proxy, outcome, switch);
        row.source_extra_gap_ms = Some(millis(source_gap));
        rows.push(row);
    }

    // Keep what explains the numbers: every service's log.
    let _ = std::fs::write(logs.join(format!("stack-{pass}.log")), stack.logs());
    clock.say(&format!("{name} [{pass}]: stopping the stack"));
    drop(nginx);
    drop(stack);
    rows
}

/// The 1-minute load average, to tell a loaded machine from a failover stall.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// nginx in front of the same two packagers, as a child process with its
/// prefix, logs and temp paths in a temp dir.
struct Nginx {
    port: u16,
    service: Service,
    dir: tempfile::TempDir,
    logs: PathBuf,
}

impl Nginx {
    fn start(packager_a: &str, packager_b: &str, logs: &Path) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx temp dir");
        let prefix = dir.path().display().to_string();
        let port = free_port();
        let host = |url: &str| {
            url.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        };
        let running_as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let config = NGINX_TEMPLATE
            .replace(
                "{{user}}",
                if running_as_root {
                    "user root;"
                } else {
                    "# (not root: no user directive)"
                },
            )
            .replace("{{prefix}}", &prefix)
            .replace("{{port}}", &port.to_string())
            .replace("{{packager_a}}", &host(packager_a))
            .replace("{{packager_b}}", &host(packager_b));
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, &config).expect("nginx.conf written");
        let _ = std::fs::write(logs.join("nginx.conf"), &config);
        let args = [
            "-p".to_string(),
            prefix.clone(),
            "-c".to_string(),
            conf.display().to_string(),
            "-e".to_string(),
            format!("{prefix}/error.log"),
            "-g".to_string(),
            "daemon off;".to_string(),
        ];
        let bin = nginx_bin().expect("nginx was checked at start");
        let service = Service::start("nginx", &bin, &args, &[], dir.path());
        let nginx = Nginx {
            port,
            service,
            dir,
            logs: logs.to_path_buf(),
        };
        let url = nginx.url("live01/playlist.m3u8");
        wait_for(
            Duration::from_secs(10),
            "nginx serving the playlist",
            || {
                let (status, _) = common::get(&url)?;
                (status == 200).then_some(())
            },
        );
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::copy(&self.service.log, self.logs.join("nginx-output.log"));
        for file in ["access.log", "error.log"] {
            let _ = std::fs::copy(
                self.dir.path().join(file),
                self.logs.join(format!("nginx-{file}")),
            );
        }
        // `service` then stops nginx (TERM, then KILL), before `dir` goes.
    }
}

/// The newest segment's media sequence number in a playlist text.
fn newest_segment(playlist: &str) -> Option<u64> {
    let sequence = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let count = playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF:"))
        .count() as u64;
    (count > 0).then(|| sequence + count - 1)
}

fn listed_segments(url: &str) -> Option<usize> {
    let (status, body) = common::get(url)?;
    (status == 200).then(|| {
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with("#EXTINF:"))
            .count()
    })
}

/// One poll of a proxy's playlist: when, and the newest segment (None when
/// the request failed or the answer was not a playlist).
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    newest: Option<u64>,
}

/// Polls a proxy's playlist every [`WATCH_POLL`] in the background.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Watcher {
    fn start(url: &str) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let url = url.to_string();
        let stopping = stop.clone();
        let handle = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(WATCH_REQUEST_TIMEOUT)
                .build()
                .expect("HTTP client");
            let mut samples = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                let at = Instant::now();
                let newest = client
                    .get(&url)
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.text().ok())
                    .and_then(|text| newest_segment(&text));
                samples.push(Sample { at, newest });
                sleep_until(at + WATCH_POLL);
            }
            samples
        });
        Watcher { stop, handle }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// When the newest segment went up (a new high), in order.
fn advances(samples: &[Sample]) -> Vec<Instant> {
    let mut highest = None;
    let mut out = Vec::new();
    for s in samples {
        if let Some(n) = s.newest {
            if highest.is_some_and(|h| n > h) {
                out.push(s.at);
            }
            if highest.is_none_or(|h| n > h) {
                highest = Some(n);
            }
        }
    }
    out
}

/// The longest wait between two advances of the proxy's playlist while the
/// fault was on (from the last advance before it to the last one before it
/// was cleared), minus the normal segment duration, floored at zero. None when
/// the playlist never advanced between injection and clearing.
fn time_to_switch(
    samples: &[Sample],
    injected: Instant,
    cleared: Instant,
    segment: Duration,
) -> Option<Duration> {
    let advances = advances(samples);
    let before = advances.iter().rev().find(|t| **t <= injected).copied();
    let during: Vec<Instant> = advances
        .iter()
        .copied()
        .filter(|t| *t > injected && *t <= cleared)
        .collect();
    if during.is_empty() {
        return None;
    }
    let mut previous = before.unwrap_or(injected);
    let mut longest = Duration::ZERO;
    for t in during {
        longest = longest.max(t - previous);
        previous = t;
    }
    Some(longest.saturating_sub(segment))
}

/// The longest wait between two advances over the whole watch, minus the
/// segment duration, floored at zero.
fn longest_extra_gap(samples: &[Sample], segment: Duration) -> Duration {
    advances(samples)
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default()
        .saturating_sub(segment)
}

/// What the watcher saw, for the JSON: failed polls and advances during the fault.
fn watch_summary(samples: &[Sample], injected: Instant, cleared: Instant) -> Value {
    let during = |s: &&Sample| s.at > injected && s.at <= cleared;
    let first_advance_after = advances(samples)
        .into_iter()
        .find(|t| *t > injected)
        .map(|t| millis(t - injected));
    json!({
        "polls": samples.len(),
        "failed_polls": samples.iter().filter(|s| s.newest.is_none()).count(),
        "failed_polls_during_fault": samples.iter().filter(during).filter(|s| s.newest.is_none()).count(),
        "first_advance_after_fault_ms": first_advance_after,
    })
}

/// A child process killed when dropped, so no player outlives the bench.
struct Kid(Child);

impl Kid {
    /// Waits until `deadline`; kills the child then if it is still running.
    /// Returns the exit status and whether it was killed.
    fn wait_until(&mut self, deadline: Instant) -> (Option<ExitStatus>, bool) {
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

    fn stdout_text(&mut self) -> String {
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
fn spawn(cmd: &mut Command, log: &Path) -> Result<Kid, String> {
    let err = std::fs::File::create(log).map_err(|e| format!("log {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .map(Kid)
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
}

/// The last JSON object a program printed on stdout.
fn last_json(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .or_else(|| serde_json::from_str::<Value>(stdout.trim()).ok())
}

/// The project's probe: its own JSON report (buffer model stalls, failed requests).
fn play_probe(url: &str, watch: Duration, log: &Path) -> Result<Outcome, String> {
    let mut kid = spawn(
        Command::new(common::bin("probe"))
            .args(["--url", url, "--duration"])
            .arg(format!("{:.1}", watch.as_secs_f64()))
            .args(["--start-segments", "3"])
            .env("RUST_LOG", "info"),
        log,
    )?;
    let (_, killed) = kid.wait_until(Instant::now() + watch + PLAYER_GRACE);
    let report = last_json(&kid.stdout_text()).ok_or("probe printed no report")?;
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
    Ok(Outcome {
        stalls: report["stalls"].as_u64(),
        stall_ms: report["stall_ms"].as_u64(),
        failed_requests: report["failed_requests"].as_u64(),
        note: note.trim_end_matches("; ").to_string(),
        detail: report,
    })
}

/// hls.js in headless Chromium through web/hlsjs-player.mjs.
fn play_hlsjs(url: &str, watch: Duration, log: &Path) -> Result<Outcome, String> {
    let script = common::repo_root().join("web/hlsjs-player.mjs");
    let measure = watch.saturating_sub(HLSJS_STARTUP_ALLOWANCE);
    let mut kid = spawn(
        Command::new("node")
            .arg(script)
            .args(["--url", url, "--duration"])
            .arg(format!("{:.1}", measure.as_secs_f64()))
            .args(["--startup-timeout", HLSJS_STARTUP_TIMEOUT_SECONDS]),
        log,
    )?;
    let (status, killed) = kid.wait_until(Instant::now() + watch + PLAYER_GRACE);
    let report = last_json(&kid.stdout_text()).ok_or_else(|| {
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
    if let Some(n) = report["fatal_errors"].as_u64().filter(|n| *n > 0) {
        let last = report["last_error"]["details"].as_str().unwrap_or("?");
        note.push(format!("{n} fatal ({last})"));
    }
    let played = report["played"] == Value::Bool(true);
    Ok(Outcome {
        stalls: played.then(|| report["stalls"].as_u64()).flatten(),
        stall_ms: played.then(|| report["stall_ms"].as_u64()).flatten(),
        failed_requests: Some(failed),
        note: note.join("; "),
        detail: report,
    })
}

/// Stalls a player went through: how many, how long in all, and each one as
/// (start, length) in seconds since the player started.
#[derive(Debug, Default)]
struct Stalls {
    count: u64,
    total: Duration,
    spans: Vec<(f64, f64)>,
}

impl Stalls {
    fn add(&mut self, origin: Instant, from: Instant, length: Duration) {
        self.count += 1;
        self.total += length;
        self.spans.push((
            round_ms(from.saturating_duration_since(origin)),
            round_ms(length),
        ));
    }

    fn ms(&self) -> u64 {
        millis(self.total)
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Stalls from the instants media was rendered: every gap longer than `gap`
/// between two renders, and from the last one to `end`, is one stall of that
/// length. Nothing counts before the first render (startup).
fn frozen_spans(origin: Instant, rendered: &[Instant], end: Instant, gap: Duration) -> Stalls {
    let mut stalls = Stalls::default();
    let mut times = rendered.to_vec();
    if rendered.last().is_some_and(|last| end > *last) {
        times.push(end);
    }
    for pair in times.windows(2) {
        let span = pair[1].saturating_duration_since(pair[0]);
        if span > gap {
            stalls.add(origin, pair[0], span);
        }
    }
    stalls
}

/// A player's buffer fed by what ffmpeg's HLS demuxer has read: `reports`
/// are (when, media seconds read so far). Playback starts once `start` seconds
/// are read and runs in real time; when the playhead reaches the end of what
/// was read it stalls, until [`FFMPEG_RESUME_BUFFER`] more has been read.
/// None when playback never started.
fn buffer_model(
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

/// Counts failed exchanges in a player's log lines, each once: a transfer-level
/// line (an HTTP error status, a body cut short) counts and marks one failure
/// as told; the player-level line that follows for the same failure ("could
/// not reload the playlist") is then not counted again, but one without a
/// transfer-level line before it (a reset, a refused connection) is.
#[derive(Debug, Default)]
struct FailureCounter {
    failed: u64,
    told: bool,
    lines: Vec<String>,
}

impl FailureCounter {
    fn transfer(&mut self, line: &str) {
        self.failed += 1;
        self.told = true;
        self.lines.push(line.to_string());
    }

    fn player(&mut self, line: &str) {
        if self.told {
            self.told = false;
        } else {
            self.failed += 1;
        }
        self.lines.push(line.to_string());
    }
}

/// ffmpeg 5.1's HLS demuxer (as ffplay would use it: reading ahead, not
/// `-re`), stream copy to the null muxer; `-progress` tells how much media it
/// has read, which feeds [`buffer_model`].
fn play_ffmpeg(
    url: &str,
    watch: Duration,
    segment: Duration,
    log: &Path,
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
        note: note.join("; "),
        detail: json!({
            "media_seconds_read": reports.iter().map(|(_, s)| *s).fold(0.0, f64::max),
            "progress_reports": reports.len(),
            "stall_spans_s": stalls.map(|s| s.spans).unwrap_or_default(),
            "failure_lines": counter.lines,
        }),
    })
}

/// GStreamer's playbin in a child process of this binary (`--gst-player`).
fn play_gstreamer(url: &str, watch: Duration, log: &Path) -> Result<Outcome, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut kid = spawn(
        Command::new(me)
            .args(["--gst-player", "--url", url, "--seconds"])
            .arg(format!("{:.1}", watch.as_secs_f64()))
            .env("GST_DEBUG", GST_LOG_CATEGORIES)
            .env("GST_DEBUG_NO_COLOR", "1"),
        log,
    )?;
    let (status, _) = kid.wait_until(Instant::now() + watch + PLAYER_GRACE);
    let report = last_json(&kid.stdout_text()).ok_or_else(|| {
        format!(
            "GStreamer player printed no report (exit {:?})",
            status.and_then(|s| s.code())
        )
    })?;
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
        note: note.join("; "),
        detail: report,
    })
}

/// The GStreamer player itself (child process): playbin to fake sinks that
/// sync on the clock, buffering handled as gst-launch and gst-play do (pause
/// below 100 %, play again at 100 %). Prints one JSON line and exits.
fn gst_player(args: &[String]) -> ! {
    use gstreamer as gst;
    use gstreamer::prelude::*;

    let mut url = String::new();
    let mut seconds = DEFAULT_WATCH.as_secs_f64();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--url" => url = rest.next().cloned().unwrap_or_default(),
            "--seconds" => seconds = rest.next().and_then(|s| s.parse().ok()).unwrap_or(seconds),
            _ => {}
        }
    }
    let started_at = Instant::now();
    let deadline = started_at + Duration::from_secs_f64(seconds);
    common::init_gst();

    // Failed requests, from the warnings of the HTTP source and the demuxer.
    let failures = Arc::new(Mutex::new(FailureCounter::default()));
    gst::log::remove_default_log_function();
    gst::log::set_active(true);
    gst::log::set_threshold_from_string(GST_LOG_CATEGORIES, true);
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
    let build = || -> Result<gst::Element, String> {
        let playbin = gst::ElementFactory::make("playbin")
            .property("uri", &url)
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
        let rendered = frames.clone();
        video.connect("handoff", false, move |_| {
            rendered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
            None
        });
        playbin.set_property("video-sink", &video);
        playbin.set_property("audio-sink", &audio);
        Ok(playbin)
    };
    let playbin = match build() {
        Ok(p) => p,
        Err(e) => {
            println!("{}", json!({ "started": false, "fatal_error": e }));
            std::process::exit(1);
        }
    };
    let _ = playbin.set_state(gst::State::Playing);
    let bus = playbin.bus().expect("a pipeline has a bus");
    let mut buffering = false;
    let mut buffering_dips = 0u64;
    let mut fatal: Option<String> = None;
    let mut warnings = Vec::new();
    let mut ended = false;
    while Instant::now() < deadline {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Buffering(b) => {
                let playing = !frames.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
                if b.percent() < 100 && !buffering {
                    buffering = true;
                    if playing {
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
    let stalls = frozen_spans(started_at, &frames, deadline, GST_STALL_GAP);
    let counter = failures.lock().unwrap_or_else(|p| p.into_inner());
    let report = json!({
        "player": "gstreamer playbin",
        "url": url,
        "started": !frames.is_empty(),
        "startup_ms": frames.first().map(|t| millis(*t - started_at)),
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
    });
    println!("{report}");
    let _ = std::io::stdout().flush();
    // No teardown: a demuxer stuck on a hung server must not hold the report.
    std::process::exit(0);
}

/// The table: one row per fault and player, nonstop and nginx side by side.
fn print_table(rows: &[Row], out: &mut dyn Write) {
    let mut keys: Vec<(usize, usize, &str, &str)> = rows
        .iter()
        .map(|r| (r.fault_index, r.player_index, r.fault, r.player))
        .collect();
    keys.sort();
    keys.dedup();
    let proxies: Vec<Proxy> = Proxy::ALL
        .into_iter()
        .filter(|p| rows.iter().any(|r| r.proxy == p.name()))
        .collect();
    let num = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
    let mut header = format!("{:<11} {:<10}", "fault", "player");
    let mut rule = format!("{:<11} {:<10}", "", "");
    for p in &proxies {
        header.push_str(&format!(
            " | {:<7} {:>6} {:>8} {:>6} {:>8}",
            p.name(),
            "stalls",
            "stall ms",
            "failed",
            "switch s"
        ));
        rule.push_str(" | ----------------------------------------");
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{rule}");
    let mut notes = Vec::new();
    let mut noted_sources = Vec::new();
    for (_, _, fault, player) in keys {
        let source = rows
            .iter()
            .filter(|r| r.fault == fault)
            .filter_map(|r| r.source_extra_gap_ms)
            .max()
            .unwrap_or(0);
        if millis(SOURCE_GAP_NOTE) < source && !noted_sources.contains(&fault) {
            noted_sources.push(fault);
            notes.push(format!(
                "{fault}: packager B's own playlist paused {:.1} s longer than a segment (the worker or the machine, seen by every row of {fault})",
                source as f64 / 1000.0
            ));
        }
        let mut line = format!("{fault:<11} {player:<10}");
        for p in &proxies {
            match rows
                .iter()
                .find(|r| r.fault == fault && r.player == player && r.proxy == p.name())
            {
                Some(r) => {
                    let o = &r.outcome;
                    let switch = r
                        .time_to_switch_ms
                        .map_or("-".to_string(), |ms| format!("{:.1}", ms as f64 / 1000.0));
                    let mark = if o.clean() { " " } else { "*" };
                    line.push_str(&format!(
                        " | {:<7}{mark}{:>6} {:>8} {:>6} {:>8}",
                        "",
                        num(o.stalls),
                        num(o.stall_ms),
                        num(o.failed_requests),
                        switch
                    ));
                    if !o.note.is_empty() {
                        notes.push(format!("{fault}/{player}/{}: {}", p.name(), o.note));
                    }
                }
                None => line.push_str(&format!(" | {:<40}", "")),
            }
        }
        let _ = writeln!(out, "{line}");
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for n in notes {
            let _ = writeln!(out, "  {n}");
        }
    }
}

/// The issue's target, checked: zero stalls and zero failed requests everywhere.
fn verdict(rows: &[Row]) -> String {
    Proxy::ALL
        .into_iter()
        .filter_map(|p| {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.proxy == p.name()).collect();
            (!mine.is_empty()).then(|| {
                format!(
                    "{}: {}/{} rows with 0 stalls and 0 failed requests",
                    p.name(),
                    mine.iter().filter(|r| r.outcome.clean()).count(),
                    mine.len()
                )
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}
