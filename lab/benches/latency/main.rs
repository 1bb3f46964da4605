//! The latency benchmark (`just bench-latency`): how far behind live each
//! player's picture is, sampled every second (the wall clock minus the
//! program date-time of the frame on screen), low latency and standard,
//! through a fault on the side the proxy is using.
//!
//! ```text
//!   worker A ──▶ output-a/ ── server1 ── faultproxy ──┐  packager A (killed), or worker A killed
//!   worker B ──▶ output-b/ ── server2 ────────────────┘  packager B
//!   proxy ◀── hls.js LL (Chromium)        hls.playingDate, every second
//!         ◀── hls.js standard (Chromium)  hls.playingDate, every second
//!         ◀── WebKit native (WebKitGTK)   video.getStartDate() + currentTime, every second
//! ```
//!
//! One fresh stack per fault (`--faults`, packager A killed and worker A
//! killed by default), redundant as `just up` runs it, with `LADDER`
//! (recommended by default: an 854x480 input makes its 480p and 360p rungs).
//! Every player starts together; once each has said it plays (4 s of
//! media) the steady phase starts, the fault comes once each says it has
//! played `--phase-seconds` more, and the fault's phase lasts as long. Per
//! player: median, p95 and max latency over both phases, and p95 per phase;
//! stalls and failed requests in the players' own terms; the goals below.
//! Progress on stderr, the table on stdout, every sample as CSV in
//! `target/bench-latency/<run>/<player>.csv`, the rows as JSON in
//! `lab/bench/out/latency.json`, logs in `lab/bench/out/logs/latency/`.
//!
//! GStreamer's playbin is not measured: hlsdemux (1.22) keeps no program
//! date-time for the position it plays, and its sinks see timestamps rebased
//! to the start of playback (bench/README.md says more).

mod edge;
mod players;
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use serde_json::{json, Value};

use nonstop::pipeline::ladder::RECOMMENDED;
use nonstop::pipeline::settings::{EncodeSettings, DEFAULT_SEGMENT_SECONDS};
use nonstop_lab::fault::Fault;
use nonstop_lab::input::{DEFAULT_INPUT_SIZE, LADDER_INPUT_SIZE};
use nonstop_lab::player_process::PLAYING_WITHIN;
use nonstop_lab::real_players::{chromium_drivers_missing, webkit_missing, PLAYED_BEFORE_FAULT};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::workspace::repo_root;

use edge::EdgeWatch;
use players::{Player, PlayerRun, Running, Sample};
use stats::{picked_within, within, Figures};

/// Low latency's goal: p95 at most this, with no stall through any fault.
const LL_GOAL_P95: f64 = 2.0;
/// Standard HLS's goal: p95 at most this...
const STANDARD_GOAL_P95: f64 = 6.5;
/// ...where it was measured before low latency (the console, standard hls.js).
const STANDARD_BEFORE_LL_P95: f64 = 9.35;
/// The looped input's length.
const DEFAULT_INPUT_SECONDS: u32 = 10;
/// Segments every rendition lists before the players start.
const LIVE_EDGE_SEGMENTS: usize = 4;
/// Each phase's default length (steady, then the fault).
const DEFAULT_PHASE_SECONDS: u64 = 20;
/// How long a player may take to play a phase's media beyond the phase's
/// own length before the bench goes on without it (noted).
const PHASE_SLACK: Duration = Duration::from_secs(30);
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Flags; each also reads `BENCH_<FLAG>`.
#[derive(Debug, Parser)]
#[command(name = "latency bench")]
struct Args {
    /// Players: hlsjs-ll (hls.js, lowLatencyMode, catching up at up to
    /// 1.5x), hlsjs (hls.js defaults, plain HLS), webkit (WebKitGTK's native
    /// HLS) (default: all).
    #[arg(long, env = "BENCH_PLAYERS", value_name = "LIST")]
    players: Option<String>,
    /// Faults, one stack each, hitting the side the proxy uses first: kill
    /// (packager A SIGKILLed), worker-kill (worker A SIGKILLed) or any
    /// other of the failover bench's; `none` for a run without a fault
    /// (default: kill,worker-kill).
    #[arg(
        long,
        env = "BENCH_FAULTS",
        value_name = "LIST",
        default_value = "kill,worker-kill"
    )]
    faults: String,
    /// The workers' LADDER: recommended (playlist.m3u8 a multivariant
    /// playlist) or single (the seed's one media playlist).
    #[arg(long, env = "BENCH_LADDER", value_name = "LADDER", default_value = RECOMMENDED)]
    ladder: String,
    /// The generated input's size (WIDTHxHEIGHT); default 854x480 with a
    /// ladder (two rungs), the lab's default otherwise.
    #[arg(long, env = "BENCH_INPUT_SIZE", value_name = "WxH")]
    input_size: Option<String>,
    /// Seconds of each phase: steady, then with the fault.
    #[arg(long, env = "BENCH_PHASE_SECONDS", value_name = "N", default_value_t = DEFAULT_PHASE_SECONDS, value_parser = clap::value_parser!(u64).range(5..))]
    phase_seconds: u64,
    /// The workers' segment duration in seconds (the product's default 2).
    #[arg(long, env = "BENCH_SEGMENT_SECONDS", value_name = "N", default_value_t = DEFAULT_SEGMENT_SECONDS, value_parser = clap::value_parser!(u32).range(1..=10))]
    segment_seconds: u32,
    /// The workers' HOLD_BACK_SECONDS: how far behind the live edge
    /// standard HLS players start (unset: as the worker sets it, 4.5 s at
    /// 1 s segments, three segments from 2 s).
    #[arg(long, env = "BENCH_HOLD_BACK_SECONDS", value_name = "S")]
    hold_back_seconds: Option<f64>,
    /// Length of the looped input in seconds.
    #[arg(long, env = "BENCH_INPUT_SECONDS", value_name = "N", default_value_t = DEFAULT_INPUT_SECONDS, value_parser = clap::value_parser!(u32).range(2..))]
    input_seconds: u32,
    /// Passed by `cargo bench` to benches without the libtest harness.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the user asked for, checked.
struct Options {
    players: Vec<Player>,
    /// `None`: a run without a fault.
    faults: Vec<Option<Fault>>,
    ladder: String,
    input_size: (u32, u32),
    phase: Duration,
    segment_seconds: u32,
    hold_back_seconds: Option<f64>,
    input_seconds: u32,
}

impl Options {
    fn from_args(args: Args) -> Result<Options, String> {
        let players = match &args.players {
            None => Player::ALL.to_vec(),
            Some(list) => list_of(list, str::parse)?,
        };
        let faults = list_of(&args.faults, |name| match name {
            "none" => Ok(None),
            name => name.parse::<Fault>().map(Some).map_err(|e| e.to_string()),
        })?;
        let single = args.ladder.eq_ignore_ascii_case("single");
        let input_size = match &args.input_size {
            Some(size) => size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .ok_or_else(|| format!("--input-size '{size}' is not WIDTHxHEIGHT"))?,
            None if single => DEFAULT_INPUT_SIZE,
            None => LADDER_INPUT_SIZE,
        };
        Ok(Options {
            players,
            faults,
            ladder: args.ladder,
            input_size,
            phase: Duration::from_secs(args.phase_seconds),
            segment_seconds: args.segment_seconds,
            hold_back_seconds: args.hold_back_seconds,
            input_seconds: args.input_seconds,
        })
    }

    /// The workers' `HOLD-BACK`, as the table says it.
    fn hold_back(&self) -> String {
        let settings = EncodeSettings {
            segment_seconds: self.segment_seconds,
            hold_back: self.hold_back_seconds.map(Duration::from_secs_f64),
            ..EncodeSettings::default()
        };
        settings.hold_back().map_or_else(
            || "three segments".to_string(),
            |h| format!("{} s", h.as_secs_f64()),
        )
    }

    /// What is missing for the chosen players.
    fn check_tools(&self) -> Result<(), String> {
        let mut missing = chromium_drivers_missing();
        if !self.players.iter().any(|p| *p != Player::Webkit) {
            missing.clear();
        }
        if self.players.contains(&Player::Webkit) {
            missing.extend(webkit_missing().map(str::to_string));
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "missing: {} (run scripts/setup.sh)",
                missing.join(", ")
            ))
        }
    }
}

/// A comma-separated list, each item parsed.
fn list_of<T>(list: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    let items: Vec<T> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err(format!("'{list}' names nothing"));
    }
    Ok(items)
}

/// Progress lines on stderr, with the time since the bench started.
struct Progress {
    started: Instant,
}

impl Progress {
    fn say(&self, what: &str) {
        eprintln!(
            "[latency {:>6.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// One phase of a run: its name and when it began and ended.
#[derive(Debug, Clone)]
struct Phase {
    name: String,
    from: SystemTime,
    to: SystemTime,
}

/// One stack's run: its phases and what each player reported.
struct Run {
    fault: Option<Fault>,
    phases: Vec<Phase>,
    players: Vec<PlayerRun>,
    /// How far the live edge in the proxy's playlist was behind the wall clock.
    edge: Vec<Sample>,
    /// The 1-minute load average at the end of each phase.
    load: Vec<f64>,
}

fn main() {
    let options = match Options::from_args(Args::parse()) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("latency bench: {e} (see --help)");
            std::process::exit(2);
        }
    };
    if let Err(e) = options.check_tools() {
        eprintln!("latency bench: {e}");
        std::process::exit(1);
    }
    let out = Path::new(MANIFEST_DIR).join("bench/out");
    let logs = out.join("logs/latency");
    if let Err(e) = std::fs::create_dir_all(&logs) {
        eprintln!("latency bench: cannot create {}: {e}", logs.display());
        std::process::exit(1);
    }
    let progress = Progress {
        started: Instant::now(),
    };
    progress.say(&format!(
        "{} player(s) x {} run(s), LADDER={} on a {}x{} input, {} s segments, hold-back {}, {} s phases, load average {:.2}",
        options.players.len(),
        options.faults.len(),
        options.ladder,
        options.input_size.0,
        options.input_size.1,
        options.segment_seconds,
        options.hold_back(),
        options.phase.as_secs(),
        load_average()
    ));
    let runs: Vec<Run> = options
        .faults
        .iter()
        .map(|&fault| run(fault, &options, &logs, &progress))
        .collect();
    let records = repo_root().join("target/bench-latency");
    for run in &runs {
        save_records(run, &records);
    }
    print_table(&runs, &options);
    let json_path = out.join("latency.json");
    match std::fs::write(&json_path, rows_json(&runs, &options).to_string()) {
        Ok(()) => progress.say(&format!(
            "rows in {}, samples in {}/<run>/<player>.csv",
            json_path.display(),
            records.display()
        )),
        Err(e) => progress.say(&format!("cannot write {}: {e}", json_path.display())),
    }
}

/// A fresh stack, every player on the proxy, a steady phase, then `fault`
/// (on the side the proxy uses first) and its phase.
fn run(fault: Option<Fault>, options: &Options, logs: &Path, progress: &Progress) -> Run {
    let name = fault.map_or("none", Fault::name);
    progress.say(&format!(
        "[{name}] starting the stack (workers A and B, LADDER={}, packager A behind the fault proxy)",
        options.ladder
    ));
    let mut stack = Stack::start(StackOptions {
        segment_seconds: options.segment_seconds,
        hold_back_seconds: options.hold_back_seconds,
        input_seconds: options.input_seconds,
        input_size: options.input_size,
        ladder: Some(options.ladder.clone()),
        ..StackOptions::redundant()
    });
    stack.wait_for_window(LIVE_EDGE_SEGMENTS);
    let url = stack.proxy_url("live01/playlist.m3u8");
    let edge = EdgeWatch::start(&url);
    progress.say(&format!("[{name}] players start on {url}"));
    let mut running: Vec<(Player, Running)> = Vec::new();
    let mut failed: Vec<PlayerRun> = Vec::new();
    for &player in &options.players {
        let log = logs.join(format!("{name}-{}.log", player.name()));
        match player.start(&url, &log) {
            Ok(r) => running.push((player, r)),
            Err(e) => failed.push(PlayerRun::failed(player, e)),
        }
    }
    let playing = Duration::from_secs_f64(PLAYED_BEFORE_FAULT);
    for (player, r) in &running {
        if !r.wait_playing(playing, PLAYING_WITHIN) {
            progress.say(&format!(
                "[{name}] {} did not say it played {PLAYED_BEFORE_FAULT} s within {} s: going on",
                player.name(),
                PLAYING_WITHIN.as_secs()
            ));
        }
    }
    let steady_from = SystemTime::now();
    progress.say(&format!(
        "[{name}] every player plays: steady phase until each has played {} s more",
        options.phase.as_secs()
    ));
    let steady_until: Vec<Duration> = running
        .iter()
        .map(|(_, r)| r.played() + options.phase)
        .collect();
    for ((player, r), until) in running.iter().zip(steady_until) {
        if !r.wait_playing(until, options.phase + PHASE_SLACK) {
            progress.say(&format!(
                "[{name}] {} did not play its steady phase: going on",
                player.name()
            ));
        }
    }
    let mut phases = Vec::new();
    let mut load = Vec::new();
    let fault_from = SystemTime::now();
    phases.push(Phase {
        name: "steady".into(),
        from: steady_from,
        to: fault_from,
    });
    load.push(load_average());
    if let Some(fault) = fault {
        progress.say(&format!("[{name}] {fault} ({})", fault.target()));
        stack.inject(fault);
        std::thread::sleep(options.phase);
        let to = SystemTime::now();
        phases.push(Phase {
            name: format!("after {fault}"),
            from: fault_from,
            to,
        });
        load.push(load_average());
    }
    progress.say(&format!("[{name}] stopping the players"));
    let edge = edge.finish();
    let mut reports: Vec<PlayerRun> = running.into_iter().map(|(_, r)| r.finish()).collect();
    reports.append(&mut failed);
    reports.sort_by_key(|r| Player::ALL.iter().position(|p| *p == r.player));
    for r in &reports {
        let all = within(
            &r.samples,
            steady_from,
            phases.last().map_or(fault_from, |p| p.to),
        );
        let figures = Figures::of(all);
        progress.say(&format!(
            "[{name}] {}: {}, stalls {}, failed requests {}{}",
            r.player.describe(),
            figures.map_or("no samples".to_string(), |f| format!(
                "median {:.2} s, p95 {:.2} s, max {:.2} s ({} samples)",
                f.median, f.p95, f.max, f.count
            )),
            shown(r.stalls),
            shown(r.failed_requests),
            if r.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.notes.join("; "))
            }
        ));
    }
    let stack_log = logs.join(format!("{name}-stack.log"));
    let _ = std::fs::write(&stack_log, stack.all_logs());
    Run {
        fault,
        phases,
        players: reports,
        edge,
        load,
    }
}

fn shown(n: Option<u64>) -> String {
    n.map_or("-".to_string(), |n| n.to_string())
}

/// The 1-minute load average (`/proc/loadavg`): the machine is shared.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A player's samples over every run, and per phase name.
fn samples_of(runs: &[Run], player: Player, phase: Option<&str>) -> Vec<f64> {
    picked_of(runs, player, phase, |s| Some(s.latency))
}

/// What `pick` reads of `player`'s samples in every run's phases (or in
/// `phase` only), where they have it.
fn picked_of(
    runs: &[Run],
    player: Player,
    phase: Option<&str>,
    pick: fn(&Sample) -> Option<f64>,
) -> Vec<f64> {
    runs.iter()
        .flat_map(|run| {
            let report = run.players.iter().find(|r| r.player == player);
            run.phases
                .iter()
                .filter(|p| phase.is_none_or(|name| p.name == name))
                .flat_map(move |p| {
                    report
                        .map(|r| picked_within(&r.samples, p.from, p.to, pick))
                        .unwrap_or_default()
                })
        })
        .collect()
}

/// `player`'s buffer ahead of the picture over every phase, median / least
/// (`-` for players that do not say).
fn buffer_ahead(runs: &[Run], player: Player) -> String {
    let buffers = picked_of(runs, player, None, |s| s.buffer);
    let least = buffers.iter().copied().fold(f64::INFINITY, f64::min);
    match Figures::of(buffers) {
        Some(f) => format!("{:.2} / {least:.2}", f.median),
        None => "-".into(),
    }
}

/// The phase names in the order first seen.
fn phase_names(runs: &[Run]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in runs.iter().flat_map(|r| &r.phases) {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    names
}

fn sum(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.sum()
}

/// The table on stdout, then the goals.
fn print_table(runs: &[Run], options: &Options) {
    let phases = phase_names(runs);
    println!();
    println!(
        "Latency behind live (wall clock - program date-time of the frame on screen, sampled every second), \
         through {}: LADDER={}, {}x{} input, {} s segments, hold-back {}, redundant stack, {} s per phase",
        runs.iter()
            .map(|r| r.fault.map_or("no fault", Fault::name))
            .collect::<Vec<_>>()
            .join(" and "),
        options.ladder,
        options.input_size.0,
        options.input_size.1,
        options.segment_seconds,
        options.hold_back(),
        options.phase.as_secs()
    );
    let mut header = vec![
        "player".to_string(),
        "samples".into(),
        "median s".into(),
        "p95 s".into(),
        "max s".into(),
        "buffer ahead median / min s".into(),
        "stalls".into(),
        "failed requests".into(),
    ];
    header.extend(phases.iter().map(|p| format!("p95 {p}")));
    println!("| {} |", header.join(" | "));
    println!("|{}", " --- |".repeat(header.len()));
    for &player in &options.players {
        let all = Figures::of(samples_of(runs, player, None));
        let reports: Vec<&PlayerRun> = runs
            .iter()
            .flat_map(|r| r.players.iter().filter(|p| p.player == player))
            .collect();
        let mut row = vec![
            player.describe().to_string(),
            all.map_or("0".into(), |f| f.count.to_string()),
            all.map_or("-".into(), |f| format!("{:.2}", f.median)),
            all.map_or("-".into(), |f| format!("{:.2}", f.p95)),
            all.map_or("-".into(), |f| format!("{:.2}", f.max)),
            buffer_ahead(runs, player),
            shown(sum(reports.iter().map(|r| r.stalls))),
            shown(sum(reports.iter().map(|r| r.failed_requests))),
        ];
        for phase in &phases {
            row.push(
                Figures::of(samples_of(runs, player, Some(phase)))
                    .map_or("-".into(), |f| format!("{:.2}", f.p95)),
            );
        }
        println!("| {} |", row.join(" | "));
    }
    let edge: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.phases.iter().flat_map(|p| within(&r.edge, p.from, p.to)))
        .collect();
    if let Some(f) = Figures::of(edge) {
        let mut row = vec![
            "(live edge in the proxy's playlist)".to_string(),
            f.count.to_string(),
            format!("{:.2}", f.median),
            format!("{:.2}", f.p95),
            format!("{:.2}", f.max),
            "".into(),
            "".into(),
            "".into(),
        ];
        for phase in &phases {
            let at: Vec<f64> = runs
                .iter()
                .flat_map(|r| {
                    r.phases
                        .iter()
                        .filter(|p| &p.name == phase)
                        .flat_map(|p| within(&r.edge, p.from, p.to))
                })
                .collect();
            row.push(Figures::of(at).map_or("-".into(), |f| format!("{:.2}", f.p95)));
        }
        println!("| {} |", row.join(" | "));
    }
    for run in runs {
        for report in run.players.iter().filter(|r| !r.notes.is_empty()) {
            println!(
                "- {} ({}): {}",
                report.player.describe(),
                run.fault.map_or("no fault", Fault::name),
                report.notes.join("; ")
            );
        }
    }
    println!();
    for &player in &options.players {
        let Some(all) = Figures::of(samples_of(runs, player, None)) else {
            continue;
        };
        let stalls = sum(runs
            .iter()
            .flat_map(|r| r.players.iter().filter(|p| p.player == player))
            .map(|r| r.stalls));
        if player.low_latency() {
            let met = all.p95 <= LL_GOAL_P95 && stalls == Some(0);
            println!(
                "Goal, {}: p95 <= {LL_GOAL_P95:.1} s with 0 stalls through every fault: {} (p95 {:.2} s, {} stalls)",
                player.describe(),
                if met { "met" } else { "MISSED" },
                all.p95,
                shown(stalls)
            );
        } else {
            let met = all.p95 <= STANDARD_GOAL_P95;
            println!(
                "Goal, {}: p95 <= {STANDARD_GOAL_P95:.1} s (standard HLS; {STANDARD_BEFORE_LL_P95:.2} s measured before LL): {} (p95 {:.2} s)",
                player.describe(),
                if met { "met" } else { "MISSED" },
                all.p95
            );
        }
    }
    let loads: Vec<String> = runs
        .iter()
        .flat_map(|r| &r.load)
        .map(|l| format!("{l:.2}"))
        .collect();
    println!(
        "Load average (1 min) at the end of each phase: {}",
        loads.join(", ")
    );
}

/// Every sample of a run as CSV per player: seconds since the steady phase
/// began, the latency, the phase.
fn save_records(run: &Run, records: &Path) {
    let name = run.fault.map_or("none", Fault::name);
    let Some(start) = run.phases.first().map(|p| p.from) else {
        return;
    };
    for report in &run.players {
        let mut text = String::from("wall_s,latency_s,phase\n");
        for s in &report.samples {
            let phase = run
                .phases
                .iter()
                .find(|p| s.wall >= p.from && s.wall < p.to)
                .map_or("outside", |p| p.name.as_str());
            let at = s
                .wall
                .duration_since(start)
                .map(|d| d.as_secs_f64())
                .unwrap_or_else(|e| -e.duration().as_secs_f64());
            text.push_str(&format!("{at:.3},{:.3},{phase}\n", s.latency));
        }
        let path: PathBuf = records
            .join(name)
            .join(format!("{}.csv", report.player.name()));
        let _ = std::fs::create_dir_all(records.join(name));
        let _ = std::fs::write(path, text);
    }
}

/// The rows as JSON: each run's phases and each player's figures and report.
fn rows_json(runs: &[Run], options: &Options) -> Value {
    let figures = |values: Vec<f64>| {
        Figures::of(values).map(
            |f| json!({ "samples": f.count, "median_s": f.median, "p95_s": f.p95, "max_s": f.max }),
        )
    };
    json!({
        "ladder": options.ladder,
        "input_size": format!("{}x{}", options.input_size.0, options.input_size.1),
        "phase_seconds": options.phase.as_secs(),
        "segment_seconds": options.segment_seconds,
        "hold_back_seconds": options.hold_back_seconds,
        "runs": runs.iter().map(|run| json!({
            "fault": run.fault.map(Fault::name),
            "load_average": run.load,
            "live_edge_lag": figures(run.phases.iter().flat_map(|p| within(&run.edge, p.from, p.to)).collect()),
            "players": run.players.iter().map(|r| json!({
                "player": r.player.name(),
                "all": figures(run.phases.iter().flat_map(|p| within(&r.samples, p.from, p.to)).collect()),
                "phases": run.phases.iter().map(|p| json!({
                    "phase": p.name,
                    "figures": figures(within(&r.samples, p.from, p.to)),
                })).collect::<Vec<_>>(),
                "stalls": r.stalls,
                "stall_ms": r.stall_ms,
                "failed_requests": r.failed_requests,
                "notes": r.notes,
                "detail": r.detail,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
