//! The viewers benchmark (`just bench-viewers`): a crowd of simulated players
//! ([`nonstop_lab::viewers`]) against nonstop's proxy and, in the same run,
//! against nginx as a caching edge (`proxy_cache`, `proxy_cache_lock on`,
//! `proxy_cache_use_stale updating`, playlists cached 1 s, one worker per
//! core) in front of the same two packagers, at each load step (1k, 5k, 10k
//! viewers by default), the two servers taking turns.
//!
//! ```text
//!                     ┌─▶ nonstop proxy ─┐
//!  N viewers (this) ──┤   (one at a time)├─▶ server1, server2 ◀── worker
//!                     └─▶ nginx (cache) ─┘
//! ```
//!
//! Per step it prints both servers side by side: playlist and segment latency
//! (p50, p99), failed requests, late segments, upstream fetches per new
//! segment per packager (from the packagers' own request counters), the
//! server's CPU seconds and resident memory, the generator's own CPU, and the
//! issue's goals marked met or missed. The generator shares the machine with
//! the servers under test; so does everything else running on it.
//!
//! `--low-latency` ([`low_latency`]) runs low-latency players instead (a
//! blocking reload per part, then the part) against nonstop's proxy and
//! nginx set up for LL-HLS, with the release latency of held reloads.

mod low_latency;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;
use serde::Serialize;

use nonstop_lab::http::{scrape, total, wait_healthy};
use nonstop_lab::nginx::{nginx_bin, Nginx, NginxSettings};
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::viewers::{self, Report, ViewersConfig};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Pause between two phases, so the last crowd's connections are gone.
const PAUSE_BETWEEN: Duration = Duration::from_secs(5);
/// Segments both servers must list before the first phase.
const WINDOW_BEFORE: usize = 4;
/// The packagers' request counter, by route.
const REQUESTS: &str = "nonstop_http_requests_total";
const SEGMENT_ROUTE: &str = "route=\"/:signal/:segment\"";
const PLAYLIST_ROUTE: &str = "route=\"/:signal/:playlist\"";

/// The flags, each also read from `BENCH_<FLAG>`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "viewers",
    about = "A crowd of simulated players against nonstop's proxy and a caching nginx, side by side, at several load steps.",
    override_usage = "cargo bench --bench viewers -- [options]   (or: just bench-viewers [options])"
)]
struct Args {
    /// Viewers at each load step.
    #[arg(
        long,
        env = "BENCH_STEPS",
        value_delimiter = ',',
        default_value = "1000,5000,10000"
    )]
    steps: Vec<usize>,
    /// Seconds each server is watched at each step.
    #[arg(long, env = "BENCH_SECONDS", default_value_t = 60)]
    seconds: u64,
    /// Servers: nonstop,nginx.
    #[arg(
        long,
        env = "BENCH_SERVERS",
        value_delimiter = ',',
        default_value = "nonstop,nginx"
    )]
    servers: Vec<String>,
    /// Segment duration of the stream, in seconds (the product's default).
    #[arg(long, env = "BENCH_SEGMENT_SECONDS", default_value_t = DEFAULT_SEGMENT_SECONDS)]
    segment_seconds: u32,
    /// Newest segments each viewer starts with.
    #[arg(long, env = "BENCH_START_SEGMENTS", default_value_t = viewers::DEFAULT_START_SEGMENTS)]
    start_segments: usize,
    /// MAX_CONNECTIONS given to nonstop's proxy.
    #[arg(long, env = "BENCH_MAX_CONNECTIONS", default_value_t = 30_000)]
    max_connections: usize,
    /// Seconds with no viewer at the start, to measure the packagers'
    /// background playlist requests (discovery's checks, nonstop's poller).
    #[arg(long, env = "BENCH_QUIET_SECONDS", default_value_t = 10)]
    quiet_seconds: u64,
    /// Low-latency players: the plain playlist once, then per part a
    /// blocking reload (?_HLS_msn=N&_HLS_part=K) and the part, against
    /// nonstop's proxy and nginx set up for LL-HLS; reports the release
    /// latency of held reloads after each part's publication.
    #[arg(long, env = "BENCH_LOW_LATENCY")]
    low_latency: bool,
    /// Passed by `cargo bench` to benches without the libtest harness.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Server {
    Nonstop,
    Nginx,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Nonstop => "nonstop",
            Server::Nginx => "nginx",
        }
    }
}

/// Requests that reached each packager (server1, server2).
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct PackagerCounts {
    segments: [f64; 2],
    playlists: [f64; 2],
}

impl PackagerCounts {
    fn read(stack: &Stack) -> PackagerCounts {
        let mut counts = PackagerCounts::default();
        for (i, port) in [stack.port(Role::Server1), stack.port(Role::Server2)]
            .into_iter()
            .enumerate()
        {
            let metrics = scrape(port);
            counts.segments[i] = total(&metrics, REQUESTS, &[SEGMENT_ROUTE]);
            counts.playlists[i] = total(&metrics, REQUESTS, &[PLAYLIST_ROUTE]);
        }
        counts
    }

    /// Every count times `factor` (a rate from counts over seconds, counts
    /// from a rate over seconds).
    fn scaled(&self, factor: f64) -> PackagerCounts {
        PackagerCounts {
            segments: self.segments.map(|c| c * factor),
            playlists: self.playlists.map(|c| c * factor),
        }
    }

    fn since(&self, before: &PackagerCounts) -> PackagerCounts {
        let mut d = PackagerCounts::default();
        for i in 0..2 {
            d.segments[i] = self.segments[i] - before.segments[i];
            d.playlists[i] = self.playlists[i] - before.playlists[i];
        }
        d
    }
}

/// Upstream fetches of one phase, per packager, per segment viewers asked for.
#[derive(Debug, Clone, Default, Serialize)]
struct Upstream {
    /// Requests that reached each packager during the phase.
    counts: PackagerCounts,
    /// Playlist requests each packager gets with no viewer, over the phase's length.
    background_playlists: [f64; 2],
    /// Segment fetches per distinct segment viewers asked for.
    segments_per_new: [f64; 2],
    /// Playlist fetches beyond the background per new segment.
    playlists_per_new: [f64; 2],
}

/// One server at one step.
#[derive(Debug, Clone, Serialize)]
struct Phase {
    viewers: usize,
    server: Server,
    /// Load average (1 min) of the machine just before the phase.
    load_before: f64,
    report: Option<Report>,
    upstream: Option<Upstream>,
    note: Option<String>,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let servers: Vec<Server> = args
        .servers
        .iter()
        .map(|s| match s.trim() {
            "nonstop" => Server::Nonstop,
            "nginx" => Server::Nginx,
            other => {
                eprintln!("viewers bench: unknown server {other} (nonstop, nginx)");
                std::process::exit(2);
            }
        })
        .collect();
    if servers.contains(&Server::Nginx) && nginx_bin().is_none() {
        eprintln!(
            "viewers bench: nginx is missing (apt-get install nginx-light, or ./scripts/setup.sh)"
        );
        std::process::exit(1);
    }
    // One socket per viewer here, one per viewer in the server: every child
    // started from now on inherits the raised limit.
    let open_files = viewers::raise_fd_limit();
    let most = args.steps.iter().copied().max().unwrap_or(0);
    let out = Path::new(MANIFEST_DIR).join("bench/out");
    let logs = out.join("logs/viewers");
    std::fs::create_dir_all(&logs).expect("bench output folder");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.low_latency {
        say(&format!(
            "{cores} cores, open-file limit {open_files}; steps {:?} low-latency viewers, {} s per server per step, {} s segments",
            args.steps, args.seconds, args.segment_seconds
        ));
        say("caveat: the load generator runs on the same machine as the server under test and shares its cores");
        low_latency::run(&args, &servers, open_files, cores, &out);
        return;
    }
    say(&format!(
        "{cores} cores, open-file limit {open_files}; steps {:?} viewers, {} s per server per step, {} s segments",
        args.steps, args.seconds, args.segment_seconds
    ));
    if (open_files as usize) < most + 256 {
        say(&format!(
            "warning: the open-file limit ({open_files}) is below {most} viewers plus the stack: raise `ulimit -n` (hard limit)"
        ));
    }
    say("caveat: the load generator runs on the same machine as the server under test and shares its cores");

    say("starting the stack (worker, two packagers, reporter, discovery, origin, proxy)");
    let mut stack = Stack::start(StackOptions {
        segment_seconds: args.segment_seconds,
        input_seconds: 10,
        audio: true,
        ..StackOptions::default()
    });
    // The proxy again, allowed the crowd's connections.
    stack.restart_with(
        Role::Proxy,
        &[("MAX_CONNECTIONS", args.max_connections.to_string())],
    );
    wait_healthy(stack.port(Role::Proxy));
    stack.wait_for_window(WINDOW_BEFORE);
    let nginx = servers.contains(&Server::Nginx).then(|| {
        Nginx::in_front_of_packagers(
            &NginxSettings::caching(cores, open_files),
            &stack.packagers()[0],
            &stack.packagers()[1],
            &logs,
        )
    });

    // Background playlist requests to each packager with nobody watching.
    say(&format!(
        "{} s with no viewer: the packagers' background requests",
        args.quiet_seconds
    ));
    let quiet_from = (PackagerCounts::read(&stack), Instant::now());
    std::thread::sleep(Duration::from_secs(args.quiet_seconds));
    let quiet = PackagerCounts::read(&stack).since(&quiet_from.0);
    let quiet_secs = quiet_from.1.elapsed().as_secs_f64();
    let background_rate = [
        quiet.playlists[0] / quiet_secs,
        quiet.playlists[1] / quiet_secs,
    ];
    say(&format!(
        "background: {:.1} and {:.1} playlist requests/s to server1 and server2, {} and {} segments",
        background_rate[0], background_rate[1], quiet.segments[0], quiet.segments[1]
    ));

    let mut phases = Vec::new();
    for (i, &count) in args.steps.iter().enumerate() {
        let mut order = servers.clone();
        if i % 2 == 1 {
            order.reverse();
        }
        for server in order {
            let (url, pids) = match server {
                Server::Nonstop => (stack.proxy_url(""), vec![stack.service(Role::Proxy).pid()]),
                Server::Nginx => {
                    let nginx = nginx.as_ref().expect("nginx runs");
                    (nginx.url(""), vec![nginx.pid()])
                }
            };
            let load_before = load_average();
            say(&format!(
                "{count} viewers on {} for {} s (load average {load_before:.2})",
                server.name(),
                args.seconds
            ));
            let config = ViewersConfig {
                url: url.parse().expect("a server URL"),
                signal: "live01".into(),
                viewers: count,
                seconds: args.seconds,
                start_segments: args.start_segments,
                timeout_seconds: viewers::DEFAULT_TIMEOUT_SECONDS,
                server_pid: pids,
                json: false,
            };
            let before = PackagerCounts::read(&stack);
            let started = Instant::now();
            let result = crowd(&config);
            let counts = PackagerCounts::read(&stack).since(&before);
            let elapsed = started.elapsed().as_secs_f64();
            let phase = match result {
                Ok(report) => {
                    let new = report.segments_requested.max(1) as f64;
                    let background = [background_rate[0] * elapsed, background_rate[1] * elapsed];
                    let upstream = Upstream {
                        counts,
                        background_playlists: background,
                        segments_per_new: [counts.segments[0] / new, counts.segments[1] / new],
                        playlists_per_new: [
                            (counts.playlists[0] - background[0]).max(0.0) / new,
                            (counts.playlists[1] - background[1]).max(0.0) / new,
                        ],
                    };
                    eprintln!("{}", report.text());
                    Phase {
                        viewers: count,
                        server,
                        load_before,
                        report: Some(report),
                        upstream: Some(upstream),
                        note: None,
                    }
                }
                Err(e) => {
                    say(&format!("{} at {count}: {e}", server.name()));
                    Phase {
                        viewers: count,
                        server,
                        load_before,
                        report: None,
                        upstream: None,
                        note: Some(e),
                    }
                }
            };
            phases.push(phase);
            std::thread::sleep(PAUSE_BETWEEN);
        }
        let step: Vec<&Phase> = phases.iter().filter(|p| p.viewers == count).collect();
        print_step(count, &step, most, &mut std::io::stdout());
    }

    let _ = std::fs::write(logs.join("stack.log"), stack.logs());
    drop(nginx);
    drop(stack);
    let path = out.join("viewers.json");
    let json = serde_json::json!({
        "cores": cores,
        "open_files": open_files,
        "seconds": args.seconds,
        "segment_seconds": args.segment_seconds,
        "background_playlists_per_second": background_rate,
        "phases": phases,
    });
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&json).expect("JSON serialises"),
    ) {
        Ok(()) => println!("JSON: {}", path.display()),
        Err(e) => eprintln!("viewers bench: cannot write {}: {e}", path.display()),
    }
}

/// Runs one crowd on a runtime of its own, dropped afterwards so every
/// connection of the crowd is closed before the next phase.
fn crowd(config: &ViewersConfig) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    let result = runtime
        .block_on(viewers::run(config))
        .map_err(|e| e.to_string());
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

fn say(line: &str) {
    eprintln!("[viewers bench] {line}");
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// A measured phase: the phase, what the crowd saw, what reached the packagers.
type Measured<'a> = (&'a Phase, &'a Report, &'a Upstream);

/// One step's table: a row per figure, a column per server, then the goals.
fn print_step(count: usize, phases: &[&Phase], most: usize, out: &mut dyn Write) {
    let find = |server: Server| -> Option<Measured> {
        phases
            .iter()
            .find(|p| p.server == server)
            .and_then(|p| Some((*p, p.report.as_ref()?, p.upstream.as_ref()?)))
    };
    let columns: Vec<(&str, Option<Measured>)> = [Server::Nonstop, Server::Nginx]
        .into_iter()
        .filter(|s| phases.iter().any(|p| p.server == *s))
        .map(|s| (s.name(), find(s)))
        .collect();
    let target = columns
        .iter()
        .find_map(|(_, c)| c.map(|(_, r, _)| r.target_seconds))
        .unwrap_or(0.0);
    let mut text = format!("\n## {count} viewers (target duration {target:.1} s)\n\n| what |");
    for (name, _) in &columns {
        text.push_str(&format!(" {name} |"));
    }
    text.push_str("\n| --- |");
    for _ in &columns {
        text.push_str(" --- |");
    }
    text.push('\n');
    type Cell = fn(&Phase, &Report, &Upstream) -> String;
    let rows: [(&str, Cell); 16] = [
        ("playlist p50 / p99 ms", |_, r, _| {
            format!("{:.1} / {:.1}", r.playlist.p50_ms, r.playlist.p99_ms)
        }),
        ("segment p50 / p99 ms", |_, r, _| {
            format!("{:.1} / {:.1}", r.segment.p50_ms, r.segment.p99_ms)
        }),
        (
            "after the join: playlist p99 / segment p99 ms",
            |_, r, _| {
                format!(
                    "{:.1} / {:.1}",
                    r.playlist_after_join.p99_ms, r.segment_after_join.p99_ms
                )
            },
        ),
        ("requests: playlists / segments", |_, r, _| {
            format!("{} / {}", r.playlist.count, r.segment.count)
        }),
        ("failed requests", |_, r, _| {
            if r.error_kinds.is_empty() {
                "0".into()
            } else {
                format!("{} {:?}", r.errors, r.error_kinds)
            }
        }),
        ("late segments (of judged)", |_, r, _| {
            format!("{} of {}", r.late_segments, r.judged_segments)
        }),
        ("late since first listed anywhere", |_, r, _| {
            r.late_since_first_listed.to_string()
        }),
        ("missed / skipped / regressions", |_, r, _| {
            format!(
                "{} / {} / {}",
                r.missed_segments, r.skipped_segments, r.regressions
            )
        }),
        ("viewers that got every segment", |_, r, _| {
            format!("{} of {}", r.viewers_complete, r.viewers)
        }),
        ("segments new / distinct requested", |_, r, _| {
            format!("{} / {}", r.segments_new, r.segments_requested)
        }),
        (
            "segment fetches per new segment, server1 / server2",
            |_, _, u| {
                format!(
                    "{:.2} / {:.2} ({:.0} / {:.0})",
                    u.segments_per_new[0],
                    u.segments_per_new[1],
                    u.counts.segments[0],
                    u.counts.segments[1]
                )
            },
        ),
        (
            "playlist fetches per new segment beyond background, server1 / server2",
            |_, _, u| {
                format!(
                    "{:.2} / {:.2}",
                    u.playlists_per_new[0], u.playlists_per_new[1]
                )
            },
        ),
        ("server CPU s (share of one core)", |_, r, _| {
            match &r.server {
                Some(s) => format!(
                    "{:.1} ({:.0}%)",
                    s.cpu_seconds,
                    100.0 * s.cpu_seconds / r.seconds_run.max(0.001)
                ),
                None => "-".into(),
            }
        }),
        ("server resident memory peak MiB", |_, r, _| {
            match &r.server {
                Some(s) => format!(
                    "{:.1} ({} processes)",
                    s.rss_peak_kib as f64 / 1024.0,
                    s.processes
                ),
                None => "-".into(),
            }
        }),
        ("generator CPU s (share of one core)", |_, r, _| {
            format!(
                "{:.1} ({:.0}%)",
                r.generator_cpu_seconds,
                100.0 * r.generator_cpu_seconds / r.seconds_run.max(0.001)
            )
        }),
        ("machine load average before", |p, _, _| {
            format!("{:.2}", p.load_before)
        }),
    ];
    for (label, cell) in rows {
        text.push_str(&format!("| {label} |"));
        for (_, column) in &columns {
            let value = column.map_or_else(|| "failed".to_string(), |(p, r, u)| cell(p, r, u));
            text.push_str(&format!(" {value} |"));
        }
        text.push('\n');
    }
    for phase in phases {
        if let Some(note) = &phase.note {
            text.push_str(&format!("{} failed: {note}\n", phase.server.name()));
        }
    }

    text.push_str("\nGoals:\n");
    let nonstop = find(Server::Nonstop);
    let nginx = find(Server::Nginx);
    for (name, column) in [("nonstop", nonstop), ("nginx", nginx)] {
        let Some((_, r, u)) = column else { continue };
        let scope = if count >= most {
            ""
        } else {
            " (the goal is for the largest step)"
        };
        text.push_str(&format!(
            "- {name}: 0 late segments: {}{scope}; at most 1 upstream fetch per new segment per packager: {}\n",
            verdict(r.late_segments == 0),
            verdict(u.counts.segments.iter().all(|c| *c <= r.segments_requested as f64)),
        ));
    }
    if let (Some((_, a, _)), Some((_, b, _))) = (nonstop, nginx) {
        text.push_str(&format!(
            "- nonstop p99 no worse than nginx: playlist {} ({:.1} vs {:.1} ms), segment {} ({:.1} vs {:.1} ms)\n",
            verdict(a.playlist.p99_ms <= b.playlist.p99_ms),
            a.playlist.p99_ms,
            b.playlist.p99_ms,
            verdict(a.segment.p99_ms <= b.segment.p99_ms),
            a.segment.p99_ms,
            b.segment.p99_ms,
        ));
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
