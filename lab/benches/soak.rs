//! The soak benchmark (`just bench-soak`): the whole stack for a set time
//! (default 30 minutes) under random faults across every service, one at a
//! time, with the player probe watching through the proxy the whole while.
//! Prints the probe's verdict (stalls, failed requests, regressions) and each
//! process's resident memory at start and end. Target: zero stalls, zero
//! failed requests, memory flat.
//!
//! The stack is the redundant topology `just up` runs: worker A -> folder A ->
//! packager A (behind the fault proxy), worker B -> folder B -> packager B.
//! Faults, each followed by recovery before the next: a fault mode on packager
//! A (stale, error500, segment404, slow, cut, reset, hang) for a while;
//! packager A's process stopped (SIGSTOP) then continued; packager B restarted;
//! reporter, origin or discovery killed (SIGKILL) and started again; worker A
//! killed (SIGKILL) and started again, frozen (SIGSTOP) then continued, or its
//! folder wiped (`rm -rf`) under it.
//! The proxy itself is not restarted: a proxy restart is covered by
//! tests/system/resilience.rs and would, by design, fail the reload in flight.

use std::time::{Duration, Instant};

use nonstop_lab::fault::{ControlPlane, Fault, PackagerFault, WorkerFault};
use nonstop_lab::fault_proxy::FaultMode;
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::process::Signal;
use nonstop_lab::procfs::rss_kib;
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::workspace::repo_root;

/// Media the viewer plays before the first fault (and the first memory reading).
const PLAYED_BEFORE_FAULTS: Duration = Duration::from_secs(10);

const DEFAULT_MINUTES: f64 = 30.0;
/// Seconds between the start of two faults.
const DEFAULT_FAULT_EVERY: u64 = 25;
/// How long a fault lasts before recovery.
const FAULT_LASTS: Duration = Duration::from_secs(10);

struct Args {
    minutes: f64,
    fault_every: Duration,
    seed: u64,
}

fn args() -> Args {
    let mut args = Args {
        minutes: DEFAULT_MINUTES,
        fault_every: Duration::from_secs(DEFAULT_FAULT_EVERY),
        seed: 0x5eed,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < raw.len() {
        let value = raw.get(i + 1).cloned().unwrap_or_default();
        match raw[i].as_str() {
            "--minutes" => args.minutes = value.parse().unwrap_or_else(|_| usage("--minutes")),
            "--fault-every" => {
                args.fault_every =
                    Duration::from_secs(value.parse().unwrap_or_else(|_| usage("--fault-every")))
            }
            "--seed" => args.seed = value.parse().unwrap_or_else(|_| usage("--seed")),
            "--bench" => {
                i += 1;
                continue;
            }
            "--help" | "-h" => usage(""),
            other => usage(other),
        }
        i += 2;
    }
    args
}

fn usage(bad: &str) -> ! {
    if !bad.is_empty() {
        eprintln!("soak: bad or unknown argument {bad}");
    }
    eprintln!("usage: just bench-soak [--minutes 30] [--fault-every 25] [--seed N]");
    std::process::exit(2);
}

/// A small deterministic generator (xorshift), so a run can be replayed by seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % sides as u64) as usize
    }
}

fn memory(stack: &Stack) -> Vec<(String, Option<u64>)> {
    stack
        .services()
        .map(|(_, s)| (s.name().to_string(), rss_kib(s.pid())))
        .collect()
}

/// The fault proxy's modes the soak puts packager A in.
const MODES: [FaultMode; 7] = [
    FaultMode::Stale,
    FaultMode::Error500,
    FaultMode::Segment404,
    FaultMode::Slow,
    FaultMode::Cut,
    FaultMode::Reset,
    FaultMode::Hang,
];

/// How long a killed program stays dead before it is started again.
const DEAD_FOR: Duration = Duration::from_secs(5);

/// Injects `fault`, clears it after `lasts`, then waits out the rest of
/// [`FAULT_LASTS`].
fn hold(stack: &mut Stack, fault: impl Into<Fault>, lasts: Duration) {
    let fault = fault.into();
    stack.inject(fault);
    std::thread::sleep(lasts);
    stack.clear(fault);
    std::thread::sleep(FAULT_LASTS.saturating_sub(lasts));
}

fn main() {
    let args = args();
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    eprintln!(
        "soak: {:.1} min, a fault every {} s (seed {})",
        args.minutes,
        args.fault_every.as_secs(),
        args.seed
    );
    let mut stack = Stack::start(StackOptions {
        input_seconds: 10,
        ..StackOptions::redundant()
    });
    let probe = Probe::start(
        &stack.proxy_url("live01/playlist.m3u8"),
        total.as_secs() as u32,
    );
    // The first fault comes once the viewer has watched a while, however long
    // the stack took to settle.
    probe.wait_playing(PLAYED_BEFORE_FAULTS, PLAYING_WITHIN);
    let memory_start = memory(&stack);
    let started = Instant::now();
    let mut dice = Dice(args.seed.max(1));
    let mut restarts = 0u32;
    let mut faults = 0u32;
    while started.elapsed() + args.fault_every < total {
        std::thread::sleep(args.fault_every.saturating_sub(FAULT_LASTS));
        faults += 1;
        let at = started.elapsed().as_secs();
        match dice.roll(9) {
            0 | 1 => {
                let mode = MODES[dice.roll(MODES.len())];
                eprintln!(
                    "soak: {at:>5} s  packager A: {mode} for {} s",
                    FAULT_LASTS.as_secs()
                );
                hold(&mut stack, mode, FAULT_LASTS);
            }
            2 => {
                eprintln!("soak: {at:>5} s  packager A process stopped (SIGSTOP)");
                hold(&mut stack, PackagerFault::Stopped, FAULT_LASTS);
            }
            3 => {
                eprintln!("soak: {at:>5} s  packager B restarted");
                if let Some(mut s2) = stack.take(Role::Server2) {
                    s2.signal(Signal::Term);
                    s2.wait_gone(Duration::from_secs(10));
                }
                std::thread::sleep(Duration::from_secs(2));
                restarts += 1;
                stack.restart(Role::Server2);
                std::thread::sleep(FAULT_LASTS - Duration::from_secs(2));
            }
            4 => {
                eprintln!(
                    "soak: {at:>5} s  worker A killed (SIGKILL), started again in {} s",
                    DEAD_FOR.as_secs()
                );
                restarts += 1;
                hold(&mut stack, WorkerFault::Killed, DEAD_FOR);
            }
            5 => {
                eprintln!("soak: {at:>5} s  worker A frozen (SIGSTOP)");
                hold(&mut stack, WorkerFault::Stopped, FAULT_LASTS);
            }
            6 => {
                eprintln!("soak: {at:>5} s  worker A's folder wiped (rm -rf)");
                hold(&mut stack, WorkerFault::FolderWiped, FAULT_LASTS);
            }
            _ => {
                let program = [
                    ControlPlane::Reporter,
                    ControlPlane::Origin,
                    ControlPlane::Discovery,
                ][dice.roll(3)];
                eprintln!(
                    "soak: {at:>5} s  {} killed (SIGKILL), back in {} s",
                    Fault::from(program).target(),
                    DEAD_FOR.as_secs()
                );
                restarts += 1;
                hold(&mut stack, program, DEAD_FOR);
            }
        }
    }
    let memory_end = memory(&stack);
    let (report, probe_log) = probe.finish();
    // What happened when, kept for after the run: the probe's own log (its
    // stalls and failed requests with times) and every service's log.
    let kept = repo_root().join("target/bench-soak");
    let _ = std::fs::create_dir_all(&kept);
    let _ = std::fs::write(kept.join("probe.log"), &probe_log);
    let _ = std::fs::write(kept.join("services.log"), stack.all_logs());
    eprintln!("soak: logs kept in {}", kept.display());
    println!(
        "\nsoak: {:.1} min, {faults} faults, {restarts} restarts\n",
        started.elapsed().as_secs_f64() / 60.0
    );
    println!("  segments played       {}", report.segments_played);
    println!(
        "  stalls                {} ({} ms)",
        report.stalls, report.stall_ms
    );
    println!("  failed requests       {}", report.failed_requests);
    println!("  playlist regressions  {}", report.playlist_regressions);
    println!(
        "  skipped / repeated    {} / {}",
        report.skipped_segments, report.repeated_segments
    );
    println!("  undecodable segments  {}", report.undecodable_segments);
    println!(
        "\n  {:<12} {:>12} {:>12}",
        "process", "RSS start", "RSS end"
    );
    for (name, start) in &memory_start {
        let end = memory_end
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| *v);
        let show = |v: Option<u64>| {
            v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "restarted".into())
        };
        println!("  {:<12} {:>12} {:>12}", name, show(*start), show(end));
    }
}
