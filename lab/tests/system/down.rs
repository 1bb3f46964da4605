//! The proxy tells the truth when the live edge stops: in the seed topology
//! one worker feeds both packagers, so when it freezes both playlists freeze
//! together and no packager is "behind" another. The proxy must still call
//! both stale (their dated newest segment falls behind the wall clock) and
//! the signal down in `GET /status` and its gauge, then up again once the
//! worker resumes.

use std::time::{Duration, Instant};

use nonstop_lab::fault::WorkerFault;
use nonstop_lab::http::{get, get_json, scrape, total};
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::process::{send, Signal};
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::wait::try_wait_for;

/// Seconds the probe watches: longer than the whole test, so a viewer keeps
/// asking (the proxy watches a signal while someone does).
const WATCH_SECONDS: u32 = 120;
/// Media played before the worker is stopped: the stack is settled and both
/// packagers are fresh.
const PLAYED_BEFORE_STOP: Duration = Duration::from_secs(3);
/// Segment length of the stack: the target duration of its playlists.
const SEGMENT: Duration = Duration::from_secs(1);
/// How long the signal must stay up while playing normally, before the stop.
const STEADY_FOR: Duration = Duration::from_secs(5);
/// From SIGSTOP to DOWN: the edge is stale once 2.5 targets plus the worker
/// latency allowance (1.5 s) behind the wall clock, and it is already about
/// the worker's latency old at the stop; the proxy polls every half target:
/// about 3 targets; the rest is slack for a busy machine.
const DOWN_WITHIN: Duration = Duration::from_secs(6);
/// From SIGCONT to UP: the worker's next segment, one poll, slack.
const UP_WITHIN: Duration = Duration::from_secs(10);

/// Sends SIGCONT to the worker when dropped, so a failed assertion never
/// leaves a stopped process that the stack's teardown would wait on forever.
struct ResumeOnDrop(u32);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        send(Signal::Cont, self.0);
    }
}

/// Polls `/status` until `live01` is in `state`; how long it took and what
/// the proxy said then, or None (with the last answer) after `within`.
fn time_until(
    stack: &Stack,
    state: &str,
    within: Duration,
) -> (Option<Duration>, Option<(String, Vec<String>)>) {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < within {
        last = stack.proxy_view("live01");
        if last.as_ref().is_some_and(|(s, _)| s == state) {
            return (Some(start.elapsed()), last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (None, last)
}

/// The gauge is set by the proxy's poller, `/status` answers at once: the
/// gauge may follow a poll (half a target) later.
const GAUGE_FOLLOWS_WITHIN: Duration = Duration::from_secs(2);

/// Whether `nonstop_proxy_signal_state{signal="live01"}` is 1 for `state`
/// and 0 for the others, within [`GAUGE_FOLLOWS_WITHIN`].
fn gauge_says(stack: &Stack, state: &str) -> bool {
    try_wait_for(GAUGE_FOLLOWS_WITHIN, || {
        let m = scrape(stack.port(Role::Proxy));
        let value = |s: &str| {
            total(
                &m,
                "nonstop_proxy_signal_state",
                &["signal=\"live01\"", &format!("state=\"{s}\"")],
            )
        };
        let others = ["up", "degraded", "down"]
            .into_iter()
            .filter(|s| *s != state);
        (value(state) == 1.0 && others.map(value).all(|v| v == 0.0)).then_some(())
    })
    .is_some()
}

#[test]
fn a_stopped_worker_behind_both_packagers_is_down_then_up_again() {
    let mut stack = Stack::start(StackOptions {
        segment_seconds: SEGMENT.as_secs() as u32,
        ..StackOptions::default()
    });
    let probe = Probe::start(&stack.proxy_url("live01/playlist.m3u8"), WATCH_SECONDS);
    probe.wait_playing(PLAYED_BEFORE_STOP, PLAYING_WITHIN);
    let context = |stack: &Stack| format!("--- stack ---\n{}", stack.logs());

    let (up, seen) = time_until(&stack, "up", UP_WITHIN);
    assert!(
        up.is_some(),
        "not up while playing: {seen:?}\n{}",
        context(&stack)
    );
    assert!(
        gauge_says(&stack, "up"),
        "gauge not up\n{}",
        context(&stack)
    );

    // Playing normally, it stays up: the live edge lags the wall clock by
    // the worker's latency, well inside the threshold.
    let mut edge_ms_max = 0;
    let steady = Instant::now();
    while steady.elapsed() < STEADY_FOR {
        let status = get_json(&stack.proxy_url("status"));
        let signal = &status["signals"][0];
        assert_eq!(
            signal["state"],
            "up",
            "not up while playing: {signal}\n{}",
            context(&stack)
        );
        for p in signal["packagers"].as_array().into_iter().flatten() {
            edge_ms_max = edge_ms_max.max(p["edge_ms_ago"].as_u64().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("steady play: live edge at most {edge_ms_max} ms behind the wall clock");

    let _resume = ResumeOnDrop(stack.service(Role::WorkerA).pid());
    stack.inject(WorkerFault::Stopped);
    let (to_down, seen) = time_until(&stack, "down", DOWN_WITHIN);
    let Some(to_down) = to_down else {
        panic!(
            "not down {} s after SIGSTOP: {seen:?}\n{}",
            DOWN_WITHIN.as_secs(),
            context(&stack)
        );
    };
    let (_, health) = seen.expect("a status");
    assert!(
        health.len() == 2 && health.iter().all(|h| h == "stale"),
        "both packagers must be stale: {health:?}\n{}",
        context(&stack)
    );
    assert!(
        gauge_says(&stack, "down"),
        "gauge not down\n{}",
        context(&stack)
    );
    // The proxy keeps serving the last playlist it had.
    let (code, _) = get(&stack.proxy_url("live01/playlist.m3u8")).expect("answers");
    assert_eq!(
        code,
        200,
        "the frozen playlist is still served\n{}",
        context(&stack)
    );

    stack.clear(WorkerFault::Stopped);
    let (to_up, seen) = time_until(&stack, "up", UP_WITHIN);
    let Some(to_up) = to_up else {
        panic!(
            "not up {} s after SIGCONT: {seen:?}\n{}",
            UP_WITHIN.as_secs(),
            context(&stack)
        );
    };
    eprintln!(
        "SIGSTOP -> down in {:.1} s, SIGCONT -> up in {:.1} s",
        to_down.as_secs_f64(),
        to_up.as_secs_f64()
    );
    let proxy_log = stack.proxy_log();
    assert!(
        !proxy_log.contains("panicked"),
        "the proxy panicked\n{}",
        context(&stack)
    );
}
