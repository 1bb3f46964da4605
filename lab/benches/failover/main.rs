//! The failover benchmark (`just bench-failover`): every packager, worker and
//! host fault, watched by nine kinds of player, through nonstop's proxy and,
//! at the same moment, through nginx configured the conventional way, side
//! by side.
//!
//! ```text
//!   worker A ──▶ output-a/ ── server1 ── faultproxy ──┐  packager A (faults injected here)
//!   worker B ──▶ output-b/ ── server2 ────────────────┘  packager B
//!   players ──▶ nonstop proxy ──▶ A | B   (failover state machine)
//!   players ──▶ nginx ──────────▶ A | B   (round robin, proxy_next_upstream)
//!   watcher ──▶ each proxy's playlist every 100 ms       (time to switch)
//!   watcher ──▶ packager B's playlist every 100 ms       (control: did the source pause?)
//! ```
//!
//! The redundant topology (`just up`'s): two epoch-locked workers, each with
//! its own folder and packager; `--topology seed` runs the seed's instead
//! (one worker whose folder both packagers serve). Packager faults hit the
//! fault proxy in front of server1, worker and host faults hit worker A or
//! its folder.
//!
//! One stack per fault (and per `--runs`). The players start together (the
//! browsers first, the lighter ones 3 s later so they miss the browsers'
//! start-up burst), the fault comes `--fault-at` seconds after the start, and
//! not before every player that can say so says it is playing, and is
//! cleared at `--clear-at` (a killed packager or worker stays dead), and
//! they all stop at `--seconds`. Each player kind is judged by its own
//! signals; bench/README.md says exactly how. The table goes to stdout,
//! progress to stderr, the same rows as JSON to `bench/out/failover.json`,
//! every log to `bench/out/logs/<fault>/`, and each player's position
//! against wall time (with the fault marked) to
//! `target/bench-failover/<fault>/<proxy>-<player>.csv`. The control watcher
//! asks packager B directly: when the worker or the machine pauses, the notes
//! say so.
//!
//! The GStreamer player runs in a child process (the lab's `gstplayer`
//! program) so a demuxer that hangs or crashes cannot take the bench
//! with it, and so its GStreamer log belongs to that one pipeline.

mod nginx;
mod players;
mod table;
mod watch;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;
use serde_json::{json, Value};

use nonstop_lab::fault::{loopback_cut, Fault, HostFault, PackagerFault, WorkerFault};
use nonstop_lab::fault_proxy::FaultMode;
use nonstop_lab::input::{DEFAULT_INPUT_SIZE, LADDER_INPUT_SIZE};
use nonstop_lab::player_process::PLAYING_WITHIN;
use nonstop_lab::real_players::{
    chromium_drivers_missing, vlc_missing, webkit_missing, PositionRecord,
};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::wait::{try_wait_for, wait_for};
use nonstop_lab::workspace::{hls_js, repo_root};

use nginx::{nginx_bin, start_conventional};
use players::{Outcome, Player, HLSJS_STARTUP_ALLOWANCE, LIGHT_PLAYERS_DELAY};
use table::{print_table, verdict, Row};
use watch::{
    listed_segments, longest_extra_gap, media_playlist, time_to_switch, watch_summary, Watcher,
};

/// How long players watch, when the fault comes and when it is cleared.
const DEFAULT_WATCH: Duration = Duration::from_secs(45);
const DEFAULT_FAULT_AT: Duration = Duration::from_secs(12);
const DEFAULT_CLEAR_AT: Duration = Duration::from_secs(30);
/// The same for `--quick`.
const QUICK_WATCH: Duration = Duration::from_secs(30);
const QUICK_FAULT_AT: Duration = Duration::from_secs(8);
const QUICK_CLEAR_AT: Duration = Duration::from_secs(20);
/// Length of the generated input the worker loops.
const DEFAULT_INPUT_SECONDS: u32 = 10;
/// Segments the playlist must list before players start, so every player can
/// start at the live edge with its usual three-segment buffer.
const LIVE_EDGE_SEGMENTS: usize = 4;
/// A source pause longer than this gets a line under the table.
const SOURCE_GAP_NOTE: Duration = Duration::from_millis(500);
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn main() {
    let options = match Options::from_args(<Args as clap::Parser>::parse()) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("failover bench: {e} (see --help)");
            std::process::exit(2);
        }
    };
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

    let root = repo_root();
    let records = root
        .canonicalize()
        .unwrap_or_else(|_| root.to_path_buf())
        .join("target/bench-failover");
    let mut rows = Vec::new();
    for run_number in 1..=options.runs {
        for &fault in &options.faults {
            for pass in options.proxy_passes() {
                let folder = if options.runs > 1 {
                    format!("{}-run{run_number}", fault.name())
                } else {
                    fault.name().to_string()
                };
                let logs = out.join("logs").join(&folder);
                let _ = std::fs::create_dir_all(&logs);
                let where_ = Where {
                    logs: &logs,
                    records: &records.join(&folder),
                    run: run_number,
                };
                // One retry: a stack that does not come up (a service slow to
                // start on a loaded machine) is not a result.
                let attempt = || {
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_fault(fault, &pass, &options, &where_, &clock)
                    }));
                    // A run that panicked mid-fault leaves no cut link behind.
                    if fault == Fault::Host(HostFault::LinkCut) {
                        loopback_cut::restore();
                    }
                    run
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
                                let mut row = Row::failed(fault, player, proxy, "run failed");
                                row.run = run_number;
                                rows.push(row);
                            }
                        }
                    }
                }
            }
        }
    }
    rows.sort_by_key(|r| (r.fault_index, r.run, r.player_index, r.proxy_index));

    println!();
    print_table(&rows, &mut std::io::stdout());
    println!("{}", verdict(&rows));
    let report = json!({
        "config": {
            "faults": options.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "players": options.players.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "proxies": options.proxies.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "split": options.split,
            "runs": options.runs,
            "topology": if options.seed_topology { "seed" } else { "redundant" },
            "watch_s": options.watch.as_secs_f64(),
            "fault_at_s": options.fault_at.as_secs_f64(),
            "clear_at_s": options.clear_at.as_secs_f64(),
            "segment_seconds": options.segment_seconds,
            "input_seconds": options.input_seconds,
            "ladder": options.ladder.as_deref().unwrap_or("single"),
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
    println!(
        "Records (each player's position against wall time, the fault marked): {}/<fault>/<proxy>-<player>.csv",
        records.display()
    );
}

/// Where one run keeps its logs and records, and which run it is.
struct Where<'a> {
    logs: &'a Path,
    records: &'a Path,
    run: u32,
}

/// The flags, each also read from `BENCH_<FLAG>` (BENCH_FAULTS=kill,stale).
#[derive(Debug, clap::Parser)]
#[command(
    name = "failover",
    about = "Every packager, worker and host fault, watched by nine kinds of player, through nonstop's proxy and nginx side by side.",
    override_usage = "cargo bench --bench failover -- [options]   (or: just bench-failover [options])"
)]
struct Args {
    /// Faults to inject: kill,stop,stale,error500,segment404,slow,cut,reset
    /// (packager A), worker-kill,worker-stop,worker-restart,wipe (worker A
    /// and its folder), link-cut (host A's link: packets to packager A
    /// dropped; needs root and nftables), input-removed (worker A's input
    /// file moved aside) (default: all).
    #[arg(long, env = "BENCH_FAULTS", value_name = "LIST")]
    faults: Option<String>,
    /// Players: probe,gstreamer,ffmpeg,hlsjs,hlsjs-ll,chromium,vlc,webkit,webkit-hlsjs
    /// (default: all).
    #[arg(long, env = "BENCH_PLAYERS", value_name = "LIST")]
    players: Option<String>,
    /// Proxies: nonstop,nginx (default: both).
    #[arg(long, env = "BENCH_PROXIES", value_name = "LIST")]
    proxies: Option<String>,
    /// One pass per proxy instead of both at once (halves the load).
    #[arg(long, env = "BENCH_SPLIT", value_parser = clap::builder::FalseyValueParser::new())]
    split: bool,
    /// Each fault this many times, each on a fresh stack.
    #[arg(long, env = "BENCH_RUNS", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// redundant (two epoch-locked workers, each its own folder and
    /// packager, as `just up`) or seed (one worker, both packagers on its folder).
    #[arg(long, env = "BENCH_TOPOLOGY", value_name = "NAME", default_value = "redundant", value_parser = ["redundant", "seed"])]
    topology: String,
    /// How long players watch, in seconds (default 45).
    #[arg(long, env = "BENCH_SECONDS", value_name = "N", value_parser = positive_seconds)]
    seconds: Option<Duration>,
    /// Fault injected N s after players start, once every player that can
    /// say so says it plays (default 12).
    #[arg(long, env = "BENCH_FAULT_AT", value_name = "N", value_parser = positive_seconds)]
    fault_at: Option<Duration>,
    /// Fault cleared N s after players start (default 30).
    #[arg(long, env = "BENCH_CLEAR_AT", value_name = "N", value_parser = positive_seconds)]
    clear_at: Option<Duration>,
    /// Segment duration in seconds.
    #[arg(long, env = "BENCH_SEGMENT_SECONDS", value_name = "N", default_value_t = DEFAULT_SEGMENT_SECONDS, value_parser = clap::value_parser!(u32).range(1..))]
    segment_seconds: u32,
    /// Length of the looped input in seconds.
    #[arg(long, env = "BENCH_INPUT_SECONDS", value_name = "N", default_value_t = DEFAULT_INPUT_SECONDS, value_parser = clap::value_parser!(u32).range(1..))]
    input_seconds: u32,
    /// The workers' LADDER: single (the product's default, one media
    /// playlist) or recommended (a multivariant playlist over 480p and
    /// 360p of an 854x480 input: players pick and switch renditions).
    #[arg(
        long,
        env = "BENCH_LADDER",
        value_name = "LADDER",
        default_value = "single"
    )]
    ladder: String,
    /// Shorter defaults: --seconds 30 --fault-at 8 --clear-at 20.
    #[arg(long, env = "BENCH_QUICK", value_parser = clap::builder::FalseyValueParser::new())]
    quick: bool,
    /// Passed by `cargo bench` to benches without the libtest harness.
    #[arg(long, hide = true)]
    bench: bool,
}

fn positive_seconds(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{v}' is not a positive number of seconds"))
}

/// What the user asked for.
struct Options {
    faults: Vec<Fault>,
    players: Vec<Player>,
    proxies: Vec<Proxy>,
    split: bool,
    runs: u32,
    seed_topology: bool,
    watch: Duration,
    fault_at: Duration,
    clear_at: Duration,
    segment_seconds: u32,
    input_seconds: u32,
    /// The workers' LADDER; `None` for a single rendition.
    ladder: Option<String>,
}

impl Options {
    /// The flags checked together: names in the lists, and a schedule that
    /// leaves the players time to start.
    fn from_args(args: Args) -> Result<Options, String> {
        let (watch, fault_at, clear_at) = if args.quick {
            (QUICK_WATCH, QUICK_FAULT_AT, QUICK_CLEAR_AT)
        } else {
            (DEFAULT_WATCH, DEFAULT_FAULT_AT, DEFAULT_CLEAR_AT)
        };
        let options = Options {
            faults: list(args.faults.as_ref(), &FAULTS, Fault::name)
                .map_err(|e| format!("--faults: {e}"))?,
            players: list(args.players.as_ref(), &Player::ALL, Player::name)
                .map_err(|e| format!("--players: {e}"))?,
            proxies: list(args.proxies.as_ref(), &Proxy::ALL, Proxy::name)
                .map_err(|e| format!("--proxies: {e}"))?,
            split: args.split,
            runs: args.runs,
            seed_topology: args.topology == "seed",
            watch: args.seconds.unwrap_or(watch),
            fault_at: args.fault_at.unwrap_or(fault_at),
            clear_at: args.clear_at.unwrap_or(clear_at),
            segment_seconds: args.segment_seconds,
            input_seconds: args.input_seconds,
            ladder: (!args.ladder.eq_ignore_ascii_case("single")).then_some(args.ladder),
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
        let mut missing: Vec<String> = Vec::new();
        if self.proxies.contains(&Proxy::Nginx) && nginx_bin().is_none() {
            missing.push("nginx (apt-get install nginx-light, or ./scripts/setup.sh)".into());
        }
        if self.players.contains(&Player::Ffmpeg) && !on_path("ffmpeg") {
            missing.push("ffmpeg (apt-get install ffmpeg)".into());
        }
        if self.players.contains(&Player::Vlc) {
            missing.extend(vlc_missing().map(String::from));
        }
        if self.players.contains(&Player::Webkit) || self.players.contains(&Player::WebkitHlsjs) {
            missing.extend(webkit_missing().map(String::from));
        }
        if self.players.iter().any(|p| {
            matches!(
                p,
                Player::Hlsjs | Player::HlsjsLowLatency | Player::ChromiumNative
            )
        }) {
            missing.extend(chromium_drivers_missing());
        } else if self.players.contains(&Player::WebkitHlsjs) && !hls_js().is_file() {
            missing.push(format!("{} (npm ci --prefix web)", hls_js().display()));
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

/// The faults the bench runs, in its order (issues 4 and 8): on packager A
/// (the fault proxy in front of server1: its process killed or stopped, or
/// one of its modes), on worker A and its folder and input, and host A's
/// link, cut until cleared (packager A's port on loopback stands for its
/// host; the network namespaces of `tests/system/hosts.rs` cut real links).
/// In the seed's topology worker A is the one worker: a removed input then
/// ends the stream for real.
const FAULTS: [Fault; 14] = [
    Fault::Packager(PackagerFault::Killed),
    Fault::Packager(PackagerFault::Stopped),
    Fault::Packager(PackagerFault::Mode(FaultMode::Stale)),
    Fault::Packager(PackagerFault::Mode(FaultMode::Error500)),
    Fault::Packager(PackagerFault::Mode(FaultMode::Segment404)),
    Fault::Packager(PackagerFault::Mode(FaultMode::Slow)),
    Fault::Packager(PackagerFault::Mode(FaultMode::Cut)),
    Fault::Packager(PackagerFault::Mode(FaultMode::Reset)),
    Fault::Worker(WorkerFault::Killed),
    Fault::Worker(WorkerFault::Stopped),
    Fault::Worker(WorkerFault::Restarted),
    Fault::Worker(WorkerFault::FolderWiped),
    Fault::Host(HostFault::LinkCut),
    Fault::Worker(WorkerFault::InputRemoved),
];

/// Whether the bench ends `fault` at `--clear-at`: a killed packager or
/// worker stays dead (players meet what is left), the rest is undone where
/// something lasts (mode back to `none`, SIGCONT, link restored, input put
/// back).
fn cleared_by_the_bench(fault: Fault) -> bool {
    !matches!(
        fault,
        Fault::Packager(PackagerFault::Killed) | Fault::Worker(WorkerFault::Killed)
    )
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
    where_: &Where,
    clock: &Progress,
) -> Vec<Row> {
    let logs = where_.logs;
    let name = fault.name();
    let pass = proxies
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join("+");
    clock.say(&format!(
        "{name} [{pass}]: starting the stack ({}, server1 behind the fault proxy, server2, reporter, discovery, origin, proxy)",
        if options.seed_topology {
            "one worker for both packagers"
        } else {
            "workers A and B, each its own folder and packager"
        }
    ));
    let mut stack = Stack::start(StackOptions {
        segment_seconds: options.segment_seconds,
        input_seconds: options.input_seconds,
        audio: true,
        fault_front: true,
        redundant: !options.seed_topology,
        ladder: options.ladder.clone(),
        input_size: if options.ladder.is_some() {
            LADDER_INPUT_SIZE
        } else {
            DEFAULT_INPUT_SIZE
        },
        ..StackOptions::default()
    });
    let nginx = proxies
        .contains(&Proxy::Nginx)
        .then(|| start_conventional(&stack.packagers()[0], &stack.packagers()[1], logs));
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
    // The watchers poll a media playlist: a ladder's first rendition.
    let mut watched: Vec<(Proxy, String)> = Vec::new();
    for (proxy, url) in &urls {
        let media = wait_for(
            Duration::from_secs(40),
            &format!("{LIVE_EDGE_SEGMENTS} segments listed by {}", proxy.name()),
            || {
                let media = media_playlist(url)?;
                (listed_segments(&media)? >= LIVE_EDGE_SEGMENTS).then_some(media)
            },
        );
        watched.push((*proxy, media));
    }
    let source_url = format!("{}/live01/playlist.m3u8", stack.packagers()[1]);
    let source_url = media_playlist(&source_url).unwrap_or(source_url);

    clock.say(&format!(
        "{name} [{pass}]: {} players watching for {} s; fault at +{} s, cleared at +{} s",
        urls.len() * options.players.len(),
        options.watch.as_secs(),
        options.fault_at.as_secs(),
        options.clear_at.as_secs()
    ));
    let t0 = Instant::now();
    let watchers: Vec<(Proxy, Watcher)> = watched
        .iter()
        .map(|(proxy, url)| (*proxy, Watcher::start(url)))
        .collect();
    let source = Watcher::start(&source_url);
    let mut players: Vec<(Proxy, Player, JoinHandle<Played>)> = Vec::new();
    for (proxy, url) in &urls {
        for &player in &options.players {
            let url = url.clone();
            let delay = player.delay();
            let watch = options.watch - delay;
            let segment = Duration::from_secs(u64::from(options.segment_seconds));
            let log = player_log(logs, *proxy, player);
            players.push((
                *proxy,
                player,
                std::thread::spawn(move || {
                    sleep_until(t0 + delay);
                    let (mut outcome, record) = player.play(&url, watch, segment, &log);
                    if let Value::Object(detail) = &mut outcome.detail {
                        detail.insert("started_at_s".to_string(), json!(delay.as_secs_f64()));
                    }
                    (outcome, record)
                }),
            ));
        }
    }

    sleep_until(t0 + options.fault_at);
    // Never before the players that say so are playing: a fault during a
    // slow start-up would measure the start-up, not the failover.
    let announcing: Vec<(String, PathBuf, SaysPlaying)> = urls
        .iter()
        .flat_map(|(proxy, _)| {
            options.players.iter().filter_map(|&player| {
                let says_playing = player.playing_announcement()?;
                let who = format!("{} via {}", player.name(), proxy.name());
                Some((who, player_log(logs, *proxy, player), says_playing))
            })
        })
        .collect();
    for (who, log, says_playing) in &announcing {
        if !wait_announced_playing(log, *says_playing, PLAYING_WITHIN) {
            clock.say(&format!(
                "{name} [{pass}]: {who} did not say it plays within {} s; injecting anyway",
                PLAYING_WITHIN.as_secs()
            ));
        }
    }
    let injected = Instant::now();
    stack.inject(fault);
    clock.say(&format!(
        "{name} [{pass}]: fault injected on {}",
        fault.target()
    ));
    sleep_until(t0 + options.clear_at);
    let cleared = Instant::now();
    let was_cleared = cleared_by_the_bench(fault) && stack.clear(fault);
    if was_cleared {
        clock.say(&format!(
            "{name} [{pass}]: fault cleared, {} back",
            fault.target()
        ));
    } else {
        clock.say(&format!("{name} [{pass}]: nothing to clear"));
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
        let (mut outcome, mut record) = handle.join().unwrap_or_else(|_| {
            (
                Outcome::unmeasured("player thread panicked"),
                PositionRecord::default(),
            )
        });
        // The fault on the player's own clock (it started `delay` after t0).
        let player_start = t0 + player.delay();
        let on_its_clock = |at: Instant| at.saturating_duration_since(player_start);
        record.mark(
            on_its_clock(injected),
            &format!("{name} injected on {}", fault.target()),
        );
        if was_cleared {
            record.mark(on_its_clock(cleared), &format!("{name} cleared"));
        }
        let csv = where_.records.join(format!(
            "{}-{}.csv",
            proxy.name(),
            player.name().replace('.', "")
        ));
        if let Err(e) = record.save(&csv) {
            clock.say(&format!("cannot save {}: {e}", csv.display()));
        }
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
        row.run = where_.run;
        rows.push(row);
    }

    // Keep what explains the numbers: every service's log, instances
    // started again by the fault (a restarted worker) included.
    let _ = std::fs::write(logs.join(format!("stack-{pass}.log")), stack.all_logs());
    clock.say(&format!("{name} [{pass}]: stopping the stack"));
    drop(nginx);
    drop(stack);
    rows
}

/// What a player thread gives back: how it went, and its position record.
type Played = (Outcome, PositionRecord);

/// Tells from one line of a player's log that it is playing.
type SaysPlaying = fn(&str) -> bool;

/// Where a player's stderr goes for one pass.
fn player_log(logs: &Path, proxy: Proxy, player: Player) -> PathBuf {
    logs.join(format!(
        "{}-{}.log",
        proxy.name(),
        player.name().replace('.', "")
    ))
}

/// Waits until a player's log has a line that `says_playing`; `false` after
/// `within`.
fn wait_announced_playing(log: &Path, says_playing: SaysPlaying, within: Duration) -> bool {
    try_wait_for(within, || {
        let text = std::fs::read_to_string(log).ok()?;
        text.lines().any(says_playing).then_some(())
    })
    .is_some()
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
