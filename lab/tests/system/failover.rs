//! Zero downtime, proven: a fault injected mid-stream on the packager the
//! proxy is using, while the player probe watches through the proxy. Every
//! fault must leave the viewer with no stall, no failed request, no playlist
//! going back in time and no skipped or repeated segment.

use std::time::Duration;

use nonstop_lab::fault::{Fault, PackagerFault};
use nonstop_lab::fault_proxy::FaultMode;
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::stack::{Stack, StackOptions};

/// Seconds the probe watches.
const WATCH_SECONDS: u32 = 22;
/// Media the probe plays before the fault: the viewer is settled at the live
/// edge, and most of the watch is left to judge the failover.
const PLAYED_BEFORE_FAULT: Duration = Duration::from_secs(5);

/// Injects `fault` on packager A (the fault proxy in front of server1: one
/// of its modes, or its process killed or stopped) once the probe plays.
fn watch_through(fault: impl Into<Fault>) -> (Stack, nonstop_lab::probe::ProbeReport) {
    let mut stack = Stack::start(StackOptions {
        fault_front: true,
        ..StackOptions::default()
    });
    let probe = Probe::start(&stack.proxy_url("live01/playlist.m3u8"), WATCH_SECONDS);
    probe.wait_playing(PLAYED_BEFORE_FAULT, PLAYING_WITHIN);
    stack.inject(fault);
    let (report, probe_log) = probe.finish();
    let context = format!("{report:#?}\n--- probe ---\n{probe_log}\n{}", stack.logs());
    report.assert_unnoticed(&context);
    assert!(report.segments_played >= 15, "too few segments\n{context}");
    let proxy_log = stack.proxy_log();
    assert!(
        proxy_log.contains("switching from"),
        "no switch logged\n{context}"
    );
    (stack, report)
}

#[test]
fn packager_killed() {
    watch_through(PackagerFault::Killed);
}

#[test]
fn packager_hangs() {
    watch_through(PackagerFault::Stopped);
}

#[test]
fn packager_serves_a_frozen_playlist() {
    let (stack, _) = watch_through(FaultMode::Stale);
    let log = stack.proxy_log();
    assert!(
        log.contains("behind") || log.contains("stale"),
        "the switch names the frozen playlist:\n{log}"
    );
}

#[test]
fn packager_cuts_segment_bodies_short() {
    watch_through(FaultMode::Cut);
}

#[test]
fn packager_answers_500() {
    watch_through(FaultMode::Error500);
}

#[test]
fn packager_resets_connections() {
    watch_through(FaultMode::Reset);
}

/// The control: the same fault seen by a player that watches packager A
/// directly, without the proxy, is caught by the probe. So the zeros above
/// are the proxy's doing, not a probe that cannot see failures.
#[test]
fn without_the_proxy_the_same_fault_reaches_the_viewer() {
    let mut stack = Stack::start(StackOptions {
        fault_front: true,
        ..StackOptions::default()
    });
    let direct = format!("{}/live01/playlist.m3u8", stack.packagers()[0]);
    let probe = Probe::start(&direct, 14);
    probe.wait_playing(PLAYED_BEFORE_FAULT, PLAYING_WITHIN);
    stack.inject(FaultMode::Error500);
    let (report, _) = probe.finish();
    assert!(report.failed_requests > 0, "{report:#?}");
    assert!(report.stalls > 0, "{report:#?}");
}
