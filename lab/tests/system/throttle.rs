//! A viewer whose network slows down: hls.js in Chromium plays a two-rung
//! ladder (480p, 360p) through the proxy; a while after it plays, the
//! page's download rate is capped (Chromium's network emulation, through
//! the DevTools protocol) below what the top rung needs but above what the
//! lowest needs, then lifted. hls.js must go down the ladder during the
//! throttle and back up after it, and the viewer must see no stall.
//!
//! ```text
//!   worker (480p, 360p) ─▶ server1, server2 ─▶ proxy ─▶ [throttle KBPS] ─▶ hls.js
//!   playing ──AFTER── throttled ──FOR── lifted ──── end
//!            480p        → 360p           → 480p
//! ```
//!
//! Plain hls.js, not low latency: its three segments of buffer are what a
//! viewer on a slowing network has to ride a rung change on; in low-latency
//! mode hls.js holds about a second of buffer, so a throttle would measure
//! how fast its estimate falls more than whether the ladder serves a
//! viewer whose network changes.

use std::process::Command;
use std::time::Duration;

use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;
use nonstop_lab::input::Picture;
use nonstop_lab::player_process::{BrowserProgress, PlayerProcess};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::workspace::browser_driver;

use crate::browser::{require_browser, verdict_of};

/// The longest pause allowed in all (see where it is checked).
const STALL_AT_MOST_MS: f64 = 150.0;

/// The rungs' picture heights, top first.
const TOP: i64 = 480;
const LOWEST: i64 = 360;
/// The download cap (kbit/s): below what the top rung needs (measured on
/// this input: 480p 1,570 kbit/s on average, 1,733 peak as its BANDWIDTH
/// says), well above the lowest (360p: 960 on average, 1,059 peak), so
/// 360p downloads faster than it plays and the buffer holds. Just below the
/// top rung, not far below: stock hls.js goes on loading 480p until its
/// estimate falls (10 to 19 s into the throttle), and at 1,300 kbit/s the
/// buffer drained in that time once in four runs on 2026-12-03 (a 242 ms
/// stall, 13.4 s in; none in ten runs the day before); at 1,450 it loses
/// about 0.08 s of buffer a second meanwhile.
const THROTTLE_KBPS: u32 = 1450;
/// Seconds after the first 'playing' when the throttle starts: hls.js is on
/// the top rung from its first fragments (localhost is fast).
const THROTTLE_AFTER_S: u32 = 6;
/// How long the throttle lasts. Stock hls.js is slow to believe a slower
/// network (its estimate is the lower of two moving averages, 3 s and 9 s
/// half-lives, that start from localhost's hundreds of Mbit/s), and the
/// picture changes only once playback reaches the first 360p segment, a
/// buffer (about 6 s) after it is loaded: at 1,300 kbit/s 360p was on
/// screen 12.6 to 16.9 s into the throttle in ten runs (2026-12-02, load
/// average 2 to 19); at 1,450 hls.js chose 360p 15.3 to 19.3 s in (six
/// runs, 2026-12-03), hence 30 s.
const THROTTLE_FOR_S: u32 = 30;
/// Seconds measured after the throttle is lifted: 480p was back on screen
/// 7.7 to 12.4 s after it in the same ten runs. Outside the throttle the network is
/// left uncapped on purpose: capped at 8 or 20 Mbit/s (a home connection),
/// stock hls.js took 14.6 s to come back up, and once not within 16 s.
const AFTER_THROTTLE_S: u32 = 18;
/// The longest the picture may stand still: a freeze a viewer notices.
const FROZEN_AT_MOST_MS: f64 = 1000.0;
/// Budget for Chromium to start and play.
const PLAYING_WITHIN: Duration = Duration::from_secs(60);

/// `(at_ms, height)` of every level hls.js switched to: hls.js fires
/// `LEVEL_SWITCHED` when playback reaches a fragment of another level, so
/// these are the moments the picture changed rung.
fn switches(verdict: &serde_json::Value) -> Vec<(f64, i64)> {
    verdict["level_history"]
        .as_array()
        .map(|levels| {
            levels
                .iter()
                .filter_map(|l| Some((l["at_ms"].as_f64()?, l["height"].as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The height hls.js was on at `at_ms`.
fn level_at(switches: &[(f64, i64)], at_ms: f64) -> Option<i64> {
    switches
        .iter()
        .take_while(|(t, _)| *t <= at_ms)
        .last()
        .map(|(_, h)| *h)
}

#[test]
fn hlsjs_goes_down_the_ladder_while_throttled_and_back_up_without_a_stall() {
    goes_down_and_back_up_without_a_stall(DEFAULT_SEGMENT_SECONDS);
}

/// The standard-latency setting OPERATING.md offers, `SEGMENT_SECONDS=1`
/// alone: the worker then says `HOLD-BACK=4.5` unasked, so hls.js at its
/// defaults is about 5.5 s behind live instead of 6.5 to 8, with about 4 s
/// of buffer where three 1 s segments of hold-back left it 2.7 s (and a
/// throttle like this one stalled it, 2026-12-03).
#[test]
fn hlsjs_rides_the_throttle_on_one_second_segments() {
    goes_down_and_back_up_without_a_stall(1);
}

fn goes_down_and_back_up_without_a_stall(segment_seconds: u32) {
    require_browser();
    let stack = Stack::start(StackOptions {
        // The ball encodes far below both rungs' rates, so nearly the same
        // (265 and 253 kbit/s, most of it audio): no throttle tells them
        // apart. The zone plate encodes near the rungs' rates.
        input_picture: Picture::MovingZonePlate,
        segment_seconds,
        input_seconds: 6,
        ..StackOptions::default().with_recommended_ladder()
    });
    stack.wait_for_window(5);
    let watch = THROTTLE_AFTER_S + THROTTLE_FOR_S + AFTER_THROTTLE_S;
    let mut cmd = Command::new("node");
    cmd.arg(browser_driver("hlsjs-player.mjs"))
        .args(["--url", &stack.proxy_url("live01/playlist.m3u8")])
        .args(["--duration", &watch.to_string()])
        .args(["--throttle-kbps", &THROTTLE_KBPS.to_string()])
        .args(["--throttle-after", &THROTTLE_AFTER_S.to_string()])
        .args(["--throttle-for", &THROTTLE_FOR_S.to_string()]);
    let player = PlayerProcess::<BrowserProgress>::spawn("the browser player", &mut cmd);
    player.wait_playing(Duration::ZERO, PLAYING_WITHIN);
    let (verdict, context) = verdict_of(player, &stack);

    assert_eq!(verdict["played"], true, "{context}");
    // No rebuffering. Twice in 13 runs Chromium fired one 'waiting' of 63
    // and 94 ms about 65 ms before a segment boundary with 2 s buffered and
    // no gap in it (cause not found, reported on the issue); a pause that
    // short is counted and bounded here, a rebuffering takes seconds.
    let stall_ms = verdict["stall_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(
        verdict["stalls"].as_u64().unwrap_or(u64::MAX) <= 1 && stall_ms <= STALL_AT_MOST_MS,
        "stalled {} time(s), {stall_ms} ms in all\n{context}",
        verdict["stalls"]
    );
    assert_eq!(verdict["fatal_errors"], 0, "{context}");
    let frozen = verdict["max_frozen_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(
        frozen <= FROZEN_AT_MOST_MS,
        "the picture stood still for {frozen} ms\n{context}"
    );
    // On a loaded 2-core machine Chromium plays the zone plate a little
    // slower than real time without a single freeze (measured: 34.5 s of
    // media in 38 s at a load average of 14), so the bound is relative;
    // freezes are caught above.
    let advanced = verdict["played_s"].as_f64().unwrap_or(0.0);
    assert!(
        advanced >= 0.85 * watch as f64,
        "currentTime advanced only {advanced} s in {watch} s\n{context}"
    );
    let on = verdict["throttle"]["on_ms"].as_f64().expect("throttled");
    let off = verdict["throttle"]["off_ms"]
        .as_f64()
        .expect("throttle lifted");
    let levels = switches(&verdict);
    eprintln!(
        "throttled to {THROTTLE_KBPS} kbit/s from {on} to {off} ms; hls.js levels (ms, height): {levels:?}; errors {} ({})",
        verdict["errors"], verdict["error_details"]
    );
    assert_eq!(
        level_at(&levels, on),
        Some(TOP),
        "hls.js was not on the top rung when the throttle began\n{context}"
    );
    assert!(
        levels
            .iter()
            .any(|&(t, h)| t > on && t <= off && h == LOWEST),
        "hls.js did not go down to {LOWEST}p while throttled\n{context}"
    );
    assert!(
        levels.iter().any(|&(t, h)| t > off && h == TOP),
        "hls.js did not come back up to {TOP}p after the throttle\n{context}"
    );
    // The picture, not only the playlist hls.js loads: the frames on screen
    // were the lowest rung's during the throttle and the top's at the end.
    let heights: Vec<(f64, i64)> = verdict["latency_samples"]
        .as_array()
        .map(|samples| {
            samples
                .iter()
                .filter_map(|s| Some((s["wall_ms"].as_f64()?, s["height"].as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        heights.iter().any(|&(_, h)| h == LOWEST),
        "no frame of the {LOWEST}p rung was shown\n{context}"
    );
    assert_eq!(
        heights.last().map(|&(_, h)| h),
        Some(TOP),
        "the last frames shown were not the {TOP}p rung's\n{context}"
    );
}
