//! A host whose clock is off: host B (worker B, server2, discovery B) runs
//! 1.5 s behind (libfaketime; monotonic clocks untouched), as a host whose
//! NTP failed. The proxy shows packager B behind its twin by their dates,
//! logs it, and when worker A dies the viewer plays on from B: no stall, no
//! failed request, and the signal is never called down while B serves it.

use std::time::Duration;

use nonstop_lab::fault::WorkerFault;
use nonstop_lab::http::get_json;
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::wait::wait_for;

/// Host B's clock against the others'.
const HOST_B_CLOCK: &str = "-1.5s";
/// Seconds the probe watches.
const WATCH_SECONDS: u32 = 24;
/// Media played before worker A is killed.
const PLAYED_BEFORE_FAULT: Duration = Duration::from_secs(5);

#[test]
fn a_host_whose_clock_is_behind_is_shown_and_serves_alone_when_its_twin_dies() {
    let mut stack = Stack::start(StackOptions {
        host_b_clock: Some(HOST_B_CLOCK),
        ..StackOptions::redundant()
    });
    let b = stack.packagers()[1].clone();
    let status_url = stack.proxy_url("status");
    // Played once so the proxy watches the signal; then B shows 1.5 s behind
    // (a part or a segment may be listed on either side of the read: 1 to 2 s).
    let probe = Probe::start(&stack.proxy_url("live01/playlist.m3u8"), WATCH_SECONDS);
    let behind = wait_for(Duration::from_secs(30), "B shown behind its twin", || {
        let status = get_json(&status_url);
        let packagers = status["signals"][0]["packagers"].as_array()?.clone();
        let of_b = packagers.iter().find(|p| p["packager"] == b.as_str())?;
        of_b["behind_twin_ms"]
            .as_u64()
            .filter(|ms| (1000..=2000).contains(ms))
    });
    probe.wait_playing(PLAYED_BEFORE_FAULT, PLAYING_WITHIN);
    stack.inject(WorkerFault::Killed);
    // Watch the proxy's verdict while the probe plays on.
    let mut states = Vec::new();
    while !probe.is_done() {
        let status = get_json(&status_url);
        if let Some(state) = status["signals"][0]["state"].as_str() {
            states.push(state.to_string());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (report, probe_log) = probe.finish();
    let context = format!(
        "B {behind} ms behind; states {states:?}\n{report:#?}\n--- probe ---\n{probe_log}\n{}",
        stack.logs()
    );
    report.assert_unnoticed(&context);
    assert!(!states.is_empty(), "{context}");
    assert!(
        states.iter().all(|s| s != "down"),
        "the signal was called down while B served it\n{context}"
    );
    assert!(
        stack.proxy_log().contains("behind its twin by their dates"),
        "no warning of B's clock\n{context}"
    );
}
