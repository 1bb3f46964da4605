//! The viewers bench's low-latency mode (`--low-latency`, issue 21): a crowd
//! of low-latency players ([`nonstop_lab::viewers::low_latency`]: a blocking
//! reload per part, then the part) against nonstop's proxy and, in the same
//! run, nginx set up as the best caching edge for LL-HLS (cache keyed on the
//! whole URI, `proxy_cache_lock` held longer than a hold, the packagers
//! doing the blocking: `NginxSettings::low_latency`), the two taking turns.
//!
//! ```text
//!                     ┌─▶ nonstop proxy ─┐ (one follower per packager)
//!  N LL viewers ──────┤   (one at a time)├─▶ server1, server2 ◀── worker ─▶ live01/
//!                     └─▶ nginx (cache) ─┘                                  │ inotify
//!                                                  part published ◀─────────┘
//! ```
//!
//! Per step it prints: release latency of held reloads after each part's
//! publication (the playlist on disk listing it, read by inotify on the
//! worker's folder), reloads not held, part fetches, failures, upstream
//! requests per part per packager (the packagers' own counters less their
//! background; for nonstop also its `nonstop_proxy_upstream_fetches_total`),
//! the server's CPU and memory and the generator's, with the goals marked.
//!
//! Every phase gets a proxy started afresh: a proxy keeps following the
//! packagers for two minutes after its last viewer, which would put its
//! requests into nginx's counts. nonstop's phase starts after one playlist
//! request and [`WARM_UP`], so its followers already run, as on a proxy in
//! service.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use nonstop::hls::PlaylistFacts;
use nonstop_lab::http::{get, scrape, total, wait_healthy};
use nonstop_lab::nginx::{Nginx, NginxSettings};
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::viewers::low_latency::{self, LowLatencyReport};
use nonstop_lab::viewers::published::Published;
use nonstop_lab::viewers::{self, ViewersConfig};
use nonstop_lab::wait::wait_for;

use super::{
    load_average, say, verdict, Args, PackagerCounts, Server, PAUSE_BETWEEN, WINDOW_BEFORE,
};

/// The issue's goal: a held reload answered at most this long after its
/// part was published, at the 99th percentile.
const RELEASE_GOAL_MS: f64 = 50.0;
/// Room above one blocking reload per part per packager for the plain
/// playlist reads an edge makes besides: nonstop's poller reads each
/// packager's `playlist.m3u8` every 5 s (0.08 per 0.4 s part), nginx
/// refreshes the plain playlist joining viewers ask for at most once a
/// second.
const PLAIN_READS_ALLOWANCE: f64 = 0.1;
/// How long nonstop's fresh proxy watches the signal before its crowd
/// comes: its followers are running by then.
const WARM_UP: Duration = Duration::from_secs(3);
/// How long the worker may take to list a window at the packagers.
const WINDOW_WITHIN: Duration = Duration::from_secs(60);
/// Viewers of the control at packager A.
const CONTROL_VIEWERS: usize = 1;
/// The proxy's count of its fetches from packagers.
const PROXY_FETCHES: &str = "nonstop_proxy_upstream_fetches_total";

/// Upstream requests of one phase, per part published.
#[derive(Debug, Clone, Default, Serialize)]
struct Upstream {
    /// Requests that reached each packager during the phase.
    counts: PackagerCounts,
    /// What each packager gets with no viewer (discovery), over the phase.
    background: PackagerCounts,
    /// Parts the worker published between the two readings of the
    /// counters (the crowd's run and its start and end).
    parts: u64,
    /// Playlist requests (blocking reloads and plain reads) per part, per
    /// packager, beyond the background.
    playlists_per_part: [f64; 2],
    /// Part requests per part, per packager, beyond the background.
    parts_per_part: [f64; 2],
    /// nonstop only: its own count of playlist and part fetches (both
    /// packagers together) per part.
    proxy_per_part: Option<[f64; 2]>,
}

/// One server at one step.
#[derive(Debug, Clone, Serialize)]
struct Phase {
    viewers: usize,
    server: Server,
    /// Load average (1 min) of the machine just before the phase.
    load_before: f64,
    report: Option<LowLatencyReport>,
    /// One viewer doing the same at packager A directly during the phase:
    /// what the packager alone adds to a release (its floor).
    control: Option<LowLatencyReport>,
    upstream: Option<Upstream>,
    note: Option<String>,
}

/// The whole low-latency run: the stack, nginx, the publication watch, the
/// quiet background, then every step's phases and tables.
pub(crate) fn run(args: &Args, servers: &[Server], open_files: u64, cores: usize, out: &Path) {
    let logs = out.join("logs/viewers-ll");
    std::fs::create_dir_all(&logs).expect("bench log folder");
    let most = args.steps.iter().copied().max().unwrap_or(0);
    say("low latency: each viewer does a blocking reload per part (?_HLS_msn=N&_HLS_part=K), then fetches the part");
    say("starting the stack (worker, two packagers, reporter, discovery, origin, proxy)");
    let mut stack = Stack::start(StackOptions {
        segment_seconds: args.segment_seconds,
        input_seconds: 10,
        audio: true,
        ..StackOptions::default()
    });
    // The window is awaited at a packager: the proxy must not watch the
    // signal before its phase (its followers would count as background).
    let packager_playlist = stack.url(Role::Server1, "live01/playlist.m3u8");
    wait_for(WINDOW_WITHIN, "a full playlist window at server1", || {
        let (_, body) = get(&packager_playlist)?;
        let facts = PlaylistFacts::parse(&body).ok()?;
        (facts.segments.len() >= WINDOW_BEFORE && facts.low_latency.is_some()).then_some(())
    });
    let folder = stack.output_a().join("live01");
    let published = Published::watch(&folder, "playlist.m3u8")
        .unwrap_or_else(|e| panic!("cannot watch {}: {e}", folder.display()));
    say(&format!(
        "parts' publication: the worker's playlist in {} listing them (inotify)",
        folder.display()
    ));
    let nginx = servers.contains(&Server::Nginx).then(|| {
        Nginx::in_front_of_packagers(
            &NginxSettings::low_latency(cores, open_files),
            &stack.packagers()[0],
            &stack.packagers()[1],
            &logs,
        )
    });

    say(&format!(
        "{} s with no viewer (and no proxy watching): the packagers' background requests",
        args.quiet_seconds
    ));
    let quiet_from = (PackagerCounts::read(&stack), Instant::now());
    std::thread::sleep(Duration::from_secs(args.quiet_seconds));
    let quiet = PackagerCounts::read(&stack).since(&quiet_from.0);
    let quiet_secs = quiet_from.1.elapsed().as_secs_f64();
    let rate = quiet.scaled(1.0 / quiet_secs);
    say(&format!(
        "background: {:.1} and {:.1} playlist requests/s to server1 and server2, {} and {} segment or part requests",
        rate.playlists[0], rate.playlists[1], quiet.segments[0], quiet.segments[1]
    ));

    let mut phases = Vec::new();
    for (i, &count) in args.steps.iter().enumerate() {
        let mut order = servers.to_vec();
        if i % 2 == 1 {
            order.reverse();
        }
        for server in order {
            // A fresh proxy for every phase: none follows the packagers
            // while nginx is measured.
            stack.restart_with(
                Role::Proxy,
                &[("MAX_CONNECTIONS", args.max_connections.to_string())],
            );
            wait_healthy(stack.port(Role::Proxy));
            let (url, pids) = match server {
                Server::Nonstop => {
                    let _ = get(&stack.proxy_url("live01/playlist.m3u8"));
                    std::thread::sleep(WARM_UP);
                    (stack.proxy_url(""), vec![stack.service(Role::Proxy).pid()])
                }
                Server::Nginx => {
                    let nginx = nginx.as_ref().expect("nginx runs");
                    (nginx.url(""), vec![nginx.pid()])
                }
            };
            let load_before = load_average();
            say(&format!(
                "{count} low-latency viewers on {} for {} s (load average {load_before:.2})",
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
            let proxy_before = (server == Server::Nonstop).then(|| proxy_fetches(&stack));
            let started = Instant::now();
            let before = PackagerCounts::read(&stack);
            let control = ViewersConfig {
                url: stack
                    .url(Role::Server1, "")
                    .parse()
                    .expect("a packager URL"),
                viewers: CONTROL_VIEWERS,
                server_pid: Vec::new(),
                ..config.clone()
            };
            let (result, control) = crowd(&config, &control, &published);
            let mut counts = PackagerCounts::read(&stack).since(&before);
            // The control's own requests reached packager A: not the edge's.
            if let Ok(c) = &control {
                let reloads = c.release.count + c.at_once.count + c.unknown_publication as usize;
                counts.playlists[0] -= (c.join.count + reloads) as f64;
                counts.segments[0] -= (c.part.count as u64 + c.missed_parts) as f64;
            }
            let ended = Instant::now();
            let elapsed = (ended - started).as_secs_f64();
            // Parts published between the two readings of the counters.
            let published_parts = published
                .snapshot()
                .values()
                .filter(|t| **t >= started && **t <= ended)
                .count() as u64;
            let proxy = proxy_before.map(|b| {
                let a = proxy_fetches(&stack);
                [a[0] - b[0], a[1] - b[1]]
            });
            let phase = match result {
                Ok(report) => {
                    let parts = published_parts.max(1) as f64;
                    let background = rate.scaled(elapsed);
                    let beyond = |c: f64, b: f64| (c - b).max(0.0) / parts;
                    let upstream = Upstream {
                        counts,
                        background,
                        parts: published_parts,
                        playlists_per_part: [0, 1]
                            .map(|i| beyond(counts.playlists[i], background.playlists[i])),
                        parts_per_part: [0, 1]
                            .map(|i| beyond(counts.segments[i], background.segments[i])),
                        proxy_per_part: proxy.map(|p| [p[0] / parts, p[1] / parts]),
                    };
                    eprintln!("{}", report.text());
                    Phase {
                        viewers: count,
                        server,
                        load_before,
                        report: Some(report),
                        control: control.ok(),
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
                        control: control.ok(),
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

    let _ = std::fs::write(logs.join("stack.log"), stack.all_logs());
    drop(nginx);
    drop(published);
    drop(stack);
    let path = out.join("viewers-ll.json");
    let json = serde_json::json!({
        "cores": cores,
        "open_files": open_files,
        "seconds": args.seconds,
        "segment_seconds": args.segment_seconds,
        "background_per_second": rate,
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

/// The proxy's playlist and segment (part) fetches from packagers so far.
fn proxy_fetches(stack: &Stack) -> [f64; 2] {
    let metrics = scrape(stack.port(Role::Proxy));
    ["kind=\"playlist\"", "kind=\"segment\""].map(|kind| total(&metrics, PROXY_FETCHES, &[kind]))
}

/// A phase's report and its control's.
type Reports = (
    Result<LowLatencyReport, String>,
    Result<LowLatencyReport, String>,
);

/// Runs one low-latency crowd and, at the same time, its `control` (one
/// viewer at a packager), on a runtime of their own, dropped afterwards so
/// every connection of the crowd is closed before the next phase.
fn crowd(config: &ViewersConfig, control: &ViewersConfig, published: &Published) -> Reports {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return (Err(format!("no runtime: {e}")), Err("no runtime".into())),
    };
    let (crowd, control) = runtime.block_on(async {
        tokio::join!(
            low_latency::run(config, Some(published)),
            low_latency::run(control, Some(published))
        )
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    (
        crowd.map_err(|e| e.to_string()),
        control.map_err(|e| e.to_string()),
    )
}

/// A measured phase: the phase, what the crowd saw, what reached the packagers.
type Measured<'a> = (&'a Phase, &'a LowLatencyReport, &'a Upstream);

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
    let part_target = columns
        .iter()
        .find_map(|(_, c)| c.map(|(_, r, _)| r.part_target_seconds))
        .unwrap_or(0.0);
    let mut text =
        format!("\n## {count} low-latency viewers (part target {part_target:.2} s)\n\n| what |");
    for (name, _) in &columns {
        text.push_str(&format!(" {name} |"));
    }
    text.push_str("\n| --- |");
    for _ in &columns {
        text.push_str(" --- |");
    }
    text.push('\n');
    type Cell = fn(&Phase, &LowLatencyReport, &Upstream) -> String;
    let rows: [(&str, Cell); 17] = [
        (
            "release after publication p50 / p99 / max ms (held reloads)",
            |_, r, _| {
                format!(
                    "{:.1} / {:.1} / {:.1} ({})",
                    r.release.p50_ms, r.release.p99_ms, r.release.max_ms, r.release.count
                )
            },
        ),
        (
            "control: one viewer at packager A meanwhile, release p50 / p99 ms",
            |p, _, _| match &p.control {
                Some(c) => format!("{:.1} / {:.1}", c.release.p50_ms, c.release.p99_ms),
                None => "-".into(),
            },
        ),
        (
            "reloads not held (asked after publication): count, answer p99 ms, asked p99 ms after publication",
            |_, r, _| {
                format!(
                    "{}, {:.1}, {:.1}",
                    r.at_once.count, r.at_once.p99_ms, r.behind.p99_ms
                )
            },
        ),
        ("part p50 / p99 ms", |_, r, _| {
            format!("{:.1} / {:.1}", r.part.p50_ms, r.part.p99_ms)
        }),
        ("join (plain playlist) p99 ms", |_, r, _| {
            format!("{:.1}", r.join.p99_ms)
        }),
        ("failed requests", |_, r, _| {
            if r.error_kinds.is_empty() {
                "0".into()
            } else {
                format!("{} {:?}", r.errors, r.error_kinds)
            }
        }),
        (
            "answers without their part / parts missed",
            |_, r, _| format!("{} / {}", r.without_part, r.missed_parts),
        ),
        ("viewers with every part", |_, r, _| {
            format!("{} of {}", r.viewers_complete, r.viewers)
        }),
        (
            "parts published / fetched per viewer",
            |_, r, _| {
                format!(
                    "{} / {:.1}",
                    r.parts_published,
                    r.parts_fetched as f64 / r.viewers.max(1) as f64
                )
            },
        ),
        (
            "upstream playlist requests per part, server1 / server2 (beyond background)",
            |_, _, u| {
                format!(
                    "{:.2} / {:.2} ({:.0} / {:.0})",
                    u.playlists_per_part[0],
                    u.playlists_per_part[1],
                    u.counts.playlists[0],
                    u.counts.playlists[1]
                )
            },
        ),
        (
            "upstream part requests per part, server1 / server2",
            |_, _, u| {
                format!(
                    "{:.2} / {:.2} ({:.0} / {:.0})",
                    u.parts_per_part[0],
                    u.parts_per_part[1],
                    u.counts.segments[0],
                    u.counts.segments[1]
                )
            },
        ),
        (
            "proxy's own upstream fetches per part: playlist / part (both packagers)",
            |_, _, u| match u.proxy_per_part {
                Some([p, s]) => format!("{p:.2} / {s:.2}"),
                None => "-".into(),
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
        ("seconds run", |_, r, _| format!("{:.1}", r.seconds_run)),
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
    let scope = if count >= most {
        ""
    } else {
        " (the goal is for the largest step)"
    };
    for (name, column) in &columns {
        let Some((_, r, u)) = column else { continue };
        let fetches = (0..2).all(|i| {
            u.playlists_per_part[i] <= 1.0 + PLAIN_READS_ALLOWANCE && u.parts_per_part[i] <= 1.0
        });
        text.push_str(&format!(
            "- {name}: p99 release at most {RELEASE_GOAL_MS:.0} ms after publication: {} ({:.1} ms){scope}; 1 upstream fetch per part per packager (playlist requests at most {:.2} with plain reads, part requests at most 1): {}\n",
            verdict(r.release.count > 0 && r.release.p99_ms <= RELEASE_GOAL_MS),
            r.release.p99_ms,
            1.0 + PLAIN_READS_ALLOWANCE,
            verdict(fetches),
        ));
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
