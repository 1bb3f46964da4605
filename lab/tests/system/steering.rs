//! Content Steering with a real player: two proxies are two pathways (each
//! started with `PATHWAYS` naming both and its own `PATHWAY_ID`), on a
//! two-rung ladder; hls.js in Chromium plays proxy A's multivariant
//! playlist, which lists every rendition once per proxy. Once it plays,
//! proxy A's process is SIGKILLed: the viewer must go on from pathway b on
//! its own, with no stall and no fatal error, and proxy B must be the one
//! serving its segments.
//!
//! ```text
//!   worker (480p, 360p) ─▶ output/ ─▶ server1, server2 ─┬─ proxy A (pathway a) ──✗ SIGKILL
//!                                                       └─ proxy B (pathway b) ─▶ hls.js
//! ```

use std::process::Command;
use std::time::Duration;

use nonstop::pipeline::playlist::HOLD_BACK_TARGETS;
use nonstop::pipeline::settings::{EncodeSettings, DEFAULT_SEGMENT_SECONDS};
use nonstop_lab::http::{scrape, total};
use nonstop_lab::player_process::{BrowserProgress, PlayerProcess};
use nonstop_lab::process::Signal;
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::workspace::browser_driver;

use crate::browser::{require_browser, verdict_of};

/// Seconds of playback measured, from the first 'playing' event.
const WATCH_SECONDS: u32 = 20;
/// Media played from proxy A before it is killed.
const PLAYED_BEFORE_KILL: Duration = Duration::from_secs(5);
/// Budget for Chromium to start and play `PLAYED_BEFORE_KILL`.
const PLAYING_WITHIN: Duration = Duration::from_secs(60);

/// Segments proxy B answered with 200 so far.
fn segments_served(stack: &Stack, role: Role) -> f64 {
    total(
        &scrape(stack.port(role)),
        "nonstop_http_requests_total",
        &[
            "service=\"proxy\"",
            "route=\"/:signal/:segment\"",
            "status=\"200\"",
        ],
    )
}

#[test]
fn hlsjs_moves_to_the_other_pathway_when_its_proxy_dies_without_a_stall() {
    require_browser();
    let stack = Stack::start(StackOptions {
        steering: true,
        segment_seconds: DEFAULT_SEGMENT_SECONDS,
        input_seconds: 6,
        ..StackOptions::default().with_recommended_ladder()
    });
    stack.wait_for_window(5);
    let proxy_b = stack.base_url(Role::ProxyB);
    let host_b = proxy_b.trim_start_matches("http://").to_string();
    let mut cmd = Command::new("node");
    cmd.arg(browser_driver("hlsjs-player.mjs"))
        .args(["--url", &stack.proxy_url("live01/playlist.m3u8")])
        .args(["--duration", &WATCH_SECONDS.to_string()]);
    let player = PlayerProcess::<BrowserProgress>::spawn("the browser player", &mut cmd);
    let at_kill = player.wait_playing(PLAYED_BEFORE_KILL, PLAYING_WITHIN);
    let served_before = segments_served(&stack, Role::ProxyB);
    stack.service(Role::Proxy).signal(Signal::Kill);
    let (verdict, context) = verdict_of(player, &stack);
    let served_after = segments_served(&stack, Role::ProxyB) - served_before;

    assert_eq!(verdict["played"], true, "{context}");
    assert_eq!(verdict["stalls"], 0, "{context}");
    assert_eq!(verdict["fatal_errors"], 0, "{context}");
    let advanced = verdict["played_s"].as_f64().unwrap_or(0.0);
    assert!(
        advanced >= WATCH_SECONDS as f64 - 3.0,
        "currentTime advanced only {advanced} s\n{context}"
    );
    // hls.js's fragments came from pathway a, then from pathway b (proxy
    // B) up to the end. A pathway switch keeps the level index, so hls.js
    // fires no LEVEL_SWITCHED: the fragments say where it went.
    let pathways: Vec<&str> = verdict["pathway_history"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["pathway"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(pathways, ["a", "b"], "{context}");
    let from_b = &verdict["frag_hosts"][&host_b];
    let last_from_b = from_b["last_ms"].as_f64().unwrap_or(f64::MIN);
    let duration = verdict["duration_ms"].as_f64().unwrap_or(0.0);
    assert!(
        last_from_b >= duration - 1000.0 * (2.0 * DEFAULT_SEGMENT_SECONDS as f64).max(3.0),
        "hls.js's last fragment from proxy B came {last_from_b} ms into {duration} ms\n{context}"
    );
    // Proxy B served what was played after the kill: a segment per target
    // duration, less the buffer hls.js held when A died (about its
    // hold-back).
    let played_after_kill = WATCH_SECONDS as f64 - PLAYED_BEFORE_KILL.as_secs_f64();
    let settings = EncodeSettings::default();
    let hold_back = settings
        .hold_back()
        .unwrap_or(settings.segment() * HOLD_BACK_TARGETS)
        .as_secs_f64();
    let expected = (played_after_kill - hold_back) / DEFAULT_SEGMENT_SECONDS as f64;
    assert!(
        served_after >= expected,
        "proxy B served {served_after} segments after the kill, expected at least {expected}\n{context}"
    );
    eprintln!(
        "proxy A killed after {:.1} s of media; pathways {}; levels {}; errors {} ({}); proxy B served {served_after} segments after the kill",
        at_kill.media_played.as_secs_f64(),
        verdict["pathway_history"],
        verdict["level_history"],
        verdict["errors"], verdict["error_details"]
    );
}
