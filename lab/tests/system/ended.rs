//! An event ends when its input is removed, and only then: in the redundant
//! topology (two workers, each with its own copy of the input), removing the
//! file on worker A's host ends A's playlist (`EXT-X-ENDLIST`) but the viewer
//! plays on from worker B without noticing; removing it on B's host too ends
//! the stream: the proxy says "ended" and the viewer stops cleanly after the
//! last segment, with no stall and no failed request.

use std::time::{Duration, Instant};

use nonstop::hls::PlaylistFacts;

use nonstop_lab::http::get;
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::wait::wait_for;

/// Longer than the test: the probe must stop on the stream's end, not on this.
const WATCH_SECONDS: u32 = 120;
/// Media played before the first removal: the stack is settled.
const PLAYED_BEFORE_REMOVAL: Duration = Duration::from_secs(4);
/// From a file removed to its playlist ended: the worker rescans its input
/// folder every 2 s; the rest is slack for a busy machine.
const ENDED_WITHIN: Duration = Duration::from_secs(15);
/// Media the viewer must play after worker A's playlist ended: several
/// target durations (2 s), so it plays segments only worker B wrote.
const PLAYED_AFTER_A_ENDED: Duration = Duration::from_secs(8);
/// From the last removal to the probe's exit: it plays what it has, reads the
/// ended playlist and stops.
const STOPS_WITHIN: Duration = Duration::from_secs(30);

/// Whether the playlist in `folder` ends the stream.
fn ended(folder: &std::path::Path) -> Option<()> {
    let body = std::fs::read(folder.join("live01/playlist.m3u8")).ok()?;
    PlaylistFacts::parse(&body).ok()?.end_list.then_some(())
}

#[test]
fn removing_the_input_on_one_host_ends_nothing_and_on_every_host_ends_the_stream() {
    let stack = Stack::start(StackOptions::redundant());
    let (input_a, input_b) = (
        stack.input_a().to_path_buf(),
        stack
            .input_b()
            .expect("the redundant topology has input-b")
            .to_path_buf(),
    );
    let output_b = stack
        .output_b()
        .expect("the redundant topology has output-b")
        .to_path_buf();
    let url = stack.proxy_url("live01/playlist.m3u8");
    let probe = Probe::start(&url, WATCH_SECONDS);
    let playing = probe.wait_playing(PLAYED_BEFORE_REMOVAL, PLAYING_WITHIN);
    let context = || format!("--- stack ---\n{}", stack.logs());

    // Worker A's host loses the file: A's playlist ends, B's goes on.
    std::fs::remove_file(input_a.join("live01.mp4")).expect("remove A's input");
    wait_for(ENDED_WITHIN, "worker A's playlist ended", || {
        ended(stack.output_a())
    });
    assert!(
        ended(&output_b).is_none(),
        "worker B's playlist ended too\n{}",
        context()
    );
    let a_ended_at = Instant::now();
    // The viewer plays on from B, and never gets A's end through the proxy.
    let mut proxy_ended = false;
    while a_ended_at.elapsed() < PLAYED_AFTER_A_ENDED {
        if let Some((200, body)) = get(&url) {
            proxy_ended |= PlaylistFacts::parse(&body).is_ok_and(|f| f.end_list);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !proxy_ended,
        "the proxy served A's ended playlist while B was live\n{}",
        context()
    );
    probe.wait_playing(playing.media_played + PLAYED_AFTER_A_ENDED, PLAYING_WITHIN);
    let (state, health) = stack
        .proxy_view("live01")
        .expect("live01 in the proxy's status");
    assert_eq!(
        (state.as_str(), health[0].as_str()),
        ("degraded", "ended"),
        "A ended, B fresh: {health:?}\n{}",
        context()
    );
    assert!(
        stack
            .proxy_log()
            .contains("ended its stream (EXT-X-ENDLIST)"),
        "the proxy logged no switch away from the ended packager\n{}",
        context()
    );

    // Worker B's host loses it too: the event is over.
    std::fs::remove_file(input_b.join("live01.mp4")).expect("remove B's input");
    wait_for(ENDED_WITHIN, "worker B's playlist ended", || {
        ended(&output_b)
    });
    let removed_b = Instant::now();
    let (report, log) = probe.finish();
    let stopped_after = removed_b.elapsed();
    assert!(
        log.contains("The stream ended (EXT-X-ENDLIST)"),
        "the probe did not see the end:\n{log}\n{}",
        context()
    );
    assert!(
        stopped_after < STOPS_WITHIN,
        "the probe stopped {stopped_after:?} after the last removal\n{log}"
    );
    report.assert_unnoticed(&format!("{log}\n{}", context()));
    let (state, health) = stack
        .proxy_view("live01")
        .expect("live01 in the proxy's status");
    assert_eq!(
        state,
        "ended",
        "every packager ended: {health:?}\n{}",
        context()
    );
    eprintln!(
        "A ended, viewer played on from B ({} segments in all, 0 stalls); B ended: probe stopped {:.1} s later; proxy says {state} {health:?}",
        report.segments_played,
        stopped_after.as_secs_f64()
    );
}
