//! The segments benchmark (`just bench-segments`): `wrk` asking for the
//! newest segment of a live stack as fast as it can, through nonstop's proxy
//! and, in the same run, through nginx as a caching edge (the viewers
//! bench's: `proxy_cache`, `proxy_cache_lock on`, one worker per core) in
//! front of the same two packagers.
//!
//! ```text
//!                        ┌─▶ nonstop proxy ─┐
//!  wrk -t2 -cN --latency ┤   (one at a time)├─▶ server1, server2 ◀── worker
//!                        └─▶ nginx (cache) ─┘
//! ```
//!
//! At each connection count (64 and 1,000 by default) each server is measured
//! `--runs` times (3), the two taking turns and the first of each pair
//! alternating; before each run the newest segment is looked up again and
//! asked once of the server (so it serves it from memory, as a live edge
//! does), so the answer is the per-request cost of serving a cached segment.
//! Printed per connection count: the median requests per second, p99
//! latency (wrk's), the servers' peak resident memory and CPU, each run's
//! figures, and nonstop's ratio to nginx. `wrk` shares the machine's cores
//! with the server under test, the same for both.

use std::process::Command;
use std::time::Duration;

use nonstop_lab::http::{get, wait_healthy};
use nonstop_lab::nginx::{nginx_bin, Nginx, NginxSettings};
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::viewers::{self, ServerWatch};
use serde::Serialize;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Pause between two measurements, so the last one's connections are gone.
const PAUSE_BETWEEN: Duration = Duration::from_secs(2);

/// The flags, each also read from `BENCH_<FLAG>`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "segments",
    about = "wrk asking for the newest segment through nonstop's proxy and a caching nginx, side by side.",
    override_usage = "cargo bench --bench segments -- [options]   (or: just bench-segments [options])"
)]
struct Args {
    /// wrk connections at each step.
    #[arg(
        long,
        env = "BENCH_CONNECTIONS",
        value_delimiter = ',',
        default_value = "64,1000"
    )]
    connections: Vec<usize>,
    /// Seconds of each wrk run.
    #[arg(long, env = "BENCH_SECONDS", default_value_t = 8)]
    seconds: u64,
    /// wrk threads.
    #[arg(long, env = "BENCH_THREADS", default_value_t = 2)]
    threads: usize,
    /// Runs of each server at each step (medians are reported).
    #[arg(long, env = "BENCH_RUNS", default_value_t = 3)]
    runs: usize,
    /// Servers: nonstop,nginx.
    #[arg(
        long,
        env = "BENCH_SERVERS",
        value_delimiter = ',',
        default_value = "nonstop,nginx"
    )]
    servers: Vec<String>,
    /// A second nonstop to compare with the first, `nonstop-b` in the
    /// servers: the proxy restarted with these variables for its runs
    /// (`KEY=VALUE,...`), and without them for `nonstop`'s.
    #[arg(long, env = "BENCH_PROXY_ENV_B", value_delimiter = ',')]
    proxy_env_b: Vec<String>,
    /// Passed by `cargo bench` to benches without the libtest harness.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One wrk run against one server.
#[derive(Debug, Clone, Serialize)]
struct Run {
    server: String,
    connections: usize,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers that were not 2xx or 3xx, and socket errors (wrk's).
    non_2xx: u64,
    socket_errors: u64,
    cpu_seconds: f64,
    rss_peak_mib: f64,
    /// Connections the kernel dropped because the server's accept queue was
    /// full during the run (`TcpExt ListenOverflows`, machine-wide).
    listen_overflows: u64,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    for server in &args.servers {
        if !["nonstop", "nonstop-b", "nginx"].contains(&server.as_str()) {
            eprintln!("segments bench: unknown server {server} (nonstop, nonstop-b, nginx)");
            std::process::exit(2);
        }
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("segments bench: wrk is missing (apt-get install wrk)");
        std::process::exit(1);
    }
    let with_nginx = args.servers.iter().any(|s| s == "nginx");
    if with_nginx && nginx_bin().is_none() {
        eprintln!(
            "segments bench: nginx is missing (apt-get install nginx-light, or ./scripts/setup.sh)"
        );
        std::process::exit(1);
    }
    let open_files = viewers::raise_fd_limit();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = std::path::Path::new(MANIFEST_DIR).join("bench/out");
    let logs = out.join("logs/segments");
    std::fs::create_dir_all(&logs).expect("bench output folder");
    say(&format!(
        "{cores} cores, open-file limit {open_files}; wrk -t{} -c{:?} -d{}s, {} runs per server per step",
        args.threads, args.connections, args.seconds, args.runs
    ));
    say("caveat: wrk runs on the same machine as the server under test and shares its cores");

    let most = args.connections.iter().copied().max().unwrap_or(0);
    let mut stack = Stack::start(StackOptions {
        input_seconds: 10,
        audio: true,
        ..StackOptions::default()
    });
    let proxy_env_a = vec![("MAX_CONNECTIONS", (most + 1000).to_string())];
    let mut proxy_env_b = proxy_env_a.clone();
    for pair in &args.proxy_env_b {
        let (key, value) = pair.split_once('=').expect("--proxy-env-b KEY=VALUE");
        // The stack takes static names; this program runs once.
        proxy_env_b.push((
            Box::leak(key.to_string().into_boxed_str()),
            value.to_string(),
        ));
    }
    stack.restart_with(Role::Proxy, &proxy_env_a);
    wait_healthy(stack.port(Role::Proxy));
    let mut proxy_is_b = false;
    stack.wait_for_window(4);
    let nginx = with_nginx.then(|| {
        Nginx::in_front_of_packagers(
            &NginxSettings::caching(cores, open_files),
            &stack.packagers()[0],
            &stack.packagers()[1],
            &logs,
        )
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");

    let mut runs: Vec<Run> = Vec::new();
    for (step, &connections) in args.connections.iter().enumerate() {
        for round in 0..args.runs {
            let mut order: Vec<&str> = args.servers.iter().map(String::as_str).collect();
            if (step + round) % 2 == 1 {
                order.reverse();
            }
            for server in order {
                // Looked up again for each run: a run's segment must still
                // be listed (and on disk) when the next server's run starts.
                if server.starts_with("nonstop") && proxy_is_b != (server == "nonstop-b") {
                    proxy_is_b = server == "nonstop-b";
                    let env = if proxy_is_b {
                        &proxy_env_b
                    } else {
                        &proxy_env_a
                    };
                    stack.restart_with(Role::Proxy, env);
                    wait_healthy(stack.port(Role::Proxy));
                }
                let segment = newest_segment(&stack);
                let (url, pid) = match server {
                    "nonstop" | "nonstop-b" => (
                        stack.proxy_url(&format!("live01/{segment}")),
                        stack.service(Role::Proxy).pid(),
                    ),
                    _ => {
                        let nginx = nginx.as_ref().expect("nginx runs");
                        (nginx.url(&format!("live01/{segment}")), nginx.pid())
                    }
                };
                // Once, so it is cached before the clock starts.
                match get(&url) {
                    Some((200, _)) => {}
                    other => say(&format!(
                        "warning: {server} answered {:?} for {url} before the run",
                        other.map(|(status, _)| status)
                    )),
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds + 1);
                let watch = runtime.block_on(async { ServerWatch::start(&[pid], deadline) });
                let overflows_before = listen_overflows();
                let output = Command::new("wrk")
                    .args([
                        format!("-t{}", args.threads),
                        format!("-c{connections}"),
                        format!("-d{}s", args.seconds),
                        "--latency".to_string(),
                        url.clone(),
                    ])
                    .output()
                    .expect("wrk runs");
                let (_, usage) = runtime.block_on(watch.finish());
                let text = String::from_utf8_lossy(&output.stdout).to_string();
                let _ = std::fs::write(
                    logs.join(format!("wrk-{server}-c{connections}-{round}.txt")),
                    &text,
                );
                let mut run = parse_wrk(&text, server, connections, usage);
                run.listen_overflows = listen_overflows().saturating_sub(overflows_before);
                say(&format!(
                    "{server} c{connections} run {}: {:.0} req/s, p99 {:.1} ms, {:.1} MiB, CPU {:.1} s ({:.1} us a request), {} listen overflows{}",
                    round + 1,
                    run.requests_per_second,
                    run.p99_ms,
                    run.rss_peak_mib,
                    run.cpu_seconds,
                    run.cpu_us_per_request(args.seconds),
                    run.listen_overflows,
                    if run.non_2xx + run.socket_errors > 0 {
                        format!(", {} non-2xx, {} socket errors", run.non_2xx, run.socket_errors)
                    } else {
                        String::new()
                    }
                ));
                runs.push(run);
                std::thread::sleep(PAUSE_BETWEEN);
            }
        }
    }
    let _ = std::fs::write(logs.join("stack.log"), stack.logs());
    drop(nginx);
    drop(stack);

    print!("{}", table(&args, &runs));
    let path = out.join("segments.json");
    let json = serde_json::json!({
        "cores": cores,
        "threads": args.threads,
        "seconds": args.seconds,
        "runs": runs,
    });
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&json).expect("JSON serialises"),
    ) {
        Ok(()) => println!("JSON: {}", path.display()),
        Err(e) => eprintln!("segments bench: cannot write {}: {e}", path.display()),
    }
}

impl Run {
    /// The server's CPU microseconds per answered request: steadier than
    /// requests per second on a shared machine.
    fn cpu_us_per_request(&self, seconds: u64) -> f64 {
        self.cpu_seconds * 1e6 / (self.requests_per_second * seconds as f64).max(1.0)
    }
}

/// The machine's `TcpExt ListenOverflows` so far (`/proc/net/netstat`).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines.as_slice() else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// The newest segment the proxy lists for live01.
fn newest_segment(stack: &Stack) -> String {
    let url = stack.proxy_url("live01/playlist.m3u8");
    let (_, body) = get(&url).expect("the proxy serves the playlist");
    let facts = nonstop::hls::PlaylistFacts::parse(&body).expect("a media playlist");
    facts
        .segments
        .last()
        .map(|s| s.uri.clone())
        .expect("the playlist lists a segment")
}

/// wrk's `--latency` output: requests per second, p50 and p99, errors.
fn parse_wrk(
    text: &str,
    server: &str,
    connections: usize,
    usage: Option<viewers::ServerUsage>,
) -> Run {
    let mut run = Run {
        server: server.to_string(),
        connections,
        requests_per_second: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
        socket_errors: 0,
        cpu_seconds: usage.as_ref().map_or(0.0, |u| u.cpu_seconds),
        rss_peak_mib: usage
            .as_ref()
            .map_or(0.0, |u| u.rss_peak_kib as f64 / 1024.0),
        listen_overflows: 0,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => run.requests_per_second = n.parse().unwrap_or(0.0),
            ["50%", v] => run.p50_ms = millis(v),
            ["99%", v] => run.p99_ms = millis(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                run.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    run
}

/// A wrk duration (`850.00us`, `12.34ms`, `1.20s`) in milliseconds.
fn millis(text: &str) -> f64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Per connection count: a row per server with the medians, each run's
/// figures, and nonstop's ratio to nginx.
fn table(args: &Args, runs: &[Run]) -> String {
    let mut text = format!(
        "\n## Newest segment, wrk -t{} -d{}s --latency, {} runs each (medians)\n\n\
         | connections | server | req/s | p50 ms | p99 ms | peak RSS MiB | CPU µs a request | listen overflows | errors | each run: req/s / p99 ms |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        args.threads, args.seconds, args.runs
    );
    for &connections in &args.connections {
        let mut medians = Vec::new();
        for server in &args.servers {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.connections == connections && &r.server == server)
                .collect();
            let m = |f: fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
            let (rps, p50, p99) = (
                m(|r| r.requests_per_second),
                m(|r| r.p50_ms),
                m(|r| r.p99_ms),
            );
            let errors: u64 = mine.iter().map(|r| r.non_2xx + r.socket_errors).sum();
            let each: Vec<String> = mine
                .iter()
                .map(|r| format!("{:.0} / {:.1}", r.requests_per_second, r.p99_ms))
                .collect();
            text.push_str(&format!(
                "| {connections} | {server} | {rps:.0} | {p50:.2} | {p99:.1} | {:.1} | {:.1} | {} | {errors} | {} |\n",
                m(|r| r.rss_peak_mib),
                median(mine.iter().map(|r| r.cpu_us_per_request(args.seconds)).collect()),
                mine.iter().map(|r| r.listen_overflows).sum::<u64>(),
                each.join(", ")
            ));
            medians.push((server.as_str(), rps, p99));
        }
        if let (Some(a), Some(b)) = (
            medians.iter().find(|m| m.0 == "nonstop"),
            medians.iter().find(|m| m.0 == "nginx"),
        ) {
            text.push_str(&format!(
                "| {connections} | nonstop / nginx | {:.2}x | | {:.2}x | | | | | |\n",
                a.1 / b.1,
                a.2 / b.2
            ));
        }
    }
    text
}

fn say(line: &str) {
    eprintln!("[segments bench] {line}");
}
