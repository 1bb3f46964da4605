//! The pacing benchmark (`just bench-pacing`): runs the worker alone for a set
//! time (default 10 minutes) and checks that media time written keeps within
//! 1 s of wall time, measured from outside: every new segment's arrival in the
//! playlist is timed, and the media written so far (the sum of EXTINF
//! durations) is compared with the wall time since the stream started (the
//! first segment's arrival minus its duration), at each arrival. The
//! worker's own `nonstop_worker_drift_seconds` gauge is printed beside it.

use std::time::{Duration, Instant};

use nonstop::hls::PlaylistFacts;

use nonstop_lab::http::get;
use nonstop_lab::input::make_input;
use nonstop_lab::ports::free_port;
use nonstop_lab::process::Service;
use nonstop_lab::workspace::bin;

const DEFAULT_MINUTES: f64 = 10.0;
const POLL: Duration = Duration::from_millis(100);

fn worker_drift(port: u16) -> Option<f64> {
    let (_, body) = get(&format!("http://127.0.0.1:{port}/metrics"))?;
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with("nonstop_worker_drift_seconds{"))?
        .rsplit_once(' ')?
        .1
        .parse()
        .ok()
}

fn main() {
    let mut minutes = DEFAULT_MINUTES;
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.windows(2) {
        if pair[0] == "--minutes" {
            minutes = pair[1].parse().unwrap_or(DEFAULT_MINUTES);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");
    let sample = std::path::Path::new("input/live01.mp4");
    if sample.exists() {
        std::fs::copy(sample, input.join("live01.mp4")).expect("copy sample");
        eprintln!("pacing: sample input input/live01.mp4");
    } else {
        make_input(&input.join("live01.mp4"), 10, true);
        eprintln!("pacing: generated 10 s input (run scripts/setup.sh for the sample)");
    }
    let metrics_port = free_port();
    let args = vec![
        "--input".to_string(),
        input.display().to_string(),
        "--output".to_string(),
        dir.path().join("output").display().to_string(),
        "--metrics-port".to_string(),
        metrics_port.to_string(),
    ];
    let _worker = Service::start("worker", &bin("worker"), &args, &[], dir.path());
    let playlist = dir.path().join("output/live01/playlist.m3u8");
    let total = Duration::from_secs_f64(minutes * 60.0);
    let mut newest: Option<u64> = None;
    let mut media = 0.0f64;
    let mut origin: Option<Instant> = None;
    let mut worst: f64 = 0.0;
    let mut last_drift: f64 = 0.0;
    let mut segments = 0u64;
    let mut next_report = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    eprintln!("pacing: watching for {minutes:.1} min");
    println!(
        "{:>8} {:>9} {:>12} {:>12} {:>14}",
        "minute", "segments", "media s", "drift s", "worker gauge s"
    );
    while started.elapsed() < total {
        std::thread::sleep(POLL);
        let Some(facts) = std::fs::read(&playlist)
            .ok()
            .and_then(|b| PlaylistFacts::parse(&b).ok())
        else {
            continue;
        };
        for s in &facts.segments {
            if newest.is_some_and(|n| s.sequence <= n) {
                continue;
            }
            let now = Instant::now();
            media += s.duration.as_secs_f64();
            segments += 1;
            // The stream started when the first segment began: its arrival
            // minus its own duration.
            let t0 = *origin.get_or_insert(now - s.duration);
            let drift = media - now.duration_since(t0).as_secs_f64();
            worst = worst.max(drift.abs());
            last_drift = drift;
            newest = Some(s.sequence);
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            println!(
                "{:>8.0} {:>9} {:>12.1} {:>+12.2} {:>+14.2}",
                started.elapsed().as_secs_f64() / 60.0,
                segments,
                media,
                last_drift,
                worker_drift(metrics_port).unwrap_or(f64::NAN)
            );
        }
    }
    println!(
        "\npacing: {segments} segments, {media:.1} s of media in {:.1} min; worst |drift| {worst:.2} s (target: within 1 s) -> {}",
        minutes,
        if worst <= 1.0 { "OK" } else { "MISSED" }
    );
}
