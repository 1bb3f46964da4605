//! Real players no one here wrote, through the proxy, while packager A dies:
//! hls.js in headless Chromium (Debian's chromium, playwright-core from npm),
//! and Chromium's native HLS (the nearest to Safari here). They need
//! `scripts/setup.sh` (chromium, `npm ci --prefix web` and `--prefix lab/web`);
//! without it these tests fail saying so, they are never skipped as passing.
//! The browser is driven by `lab/web/hlsjs-player.mjs`.

use std::process::Command;
use std::time::Duration;

use nonstop_lab::fault::PackagerFault;
use nonstop_lab::player_process::{BrowserProgress, PlayerProcess};
use nonstop_lab::real_players::chromium_drivers_missing;
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::workspace::{browser_driver, repo_root};

/// Seconds of playback measured, from the first 'playing' event.
const WATCH_SECONDS: u32 = 20;
/// Media the browser plays before packager A is killed.
const PLAYED_BEFORE_KILL: Duration = Duration::from_secs(6);
/// Budget for Chromium to start and the player to reach `PLAYED_BEFORE_KILL`
/// (the script itself gives up on a start after 20 s).
const PLAYING_WITHIN: Duration = Duration::from_secs(60);

fn require_browser() {
    let missing = chromium_drivers_missing();
    assert!(
        missing.is_empty(),
        "{} missing: run scripts/setup.sh (installs Debian's chromium, npm ci --prefix web and --prefix lab/web)",
        missing.join(", ")
    );
}

fn play_through_a_kill(native: bool) {
    require_browser();
    // The product's 2 s segments, and a viewer who joins a running stream
    // (a full playlist window), as in production.
    let mut stack = Stack::start(StackOptions::as_in_production());
    stack.wait_for_window(5);
    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact folder");
    let shot = artifacts.join(if native {
        "native-hls.png"
    } else {
        "hlsjs.png"
    });
    let mut cmd = Command::new("node");
    cmd.arg(browser_driver("hlsjs-player.mjs"))
        .args(["--url", &stack.proxy_url("live01/playlist.m3u8")])
        .args(["--duration", &WATCH_SECONDS.to_string()])
        .arg("--screenshot")
        .arg(&shot);
    if native {
        cmd.arg("--native");
    }
    let player = PlayerProcess::<BrowserProgress>::spawn("the browser player", &mut cmd);
    player.wait_playing(PLAYED_BEFORE_KILL, PLAYING_WITHIN);
    stack.inject(PackagerFault::Killed);
    let (status, stdout, log) = player.finish();
    let verdict: serde_json::Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "no verdict ({e}): {}\n{log}\n{}",
            String::from_utf8_lossy(&stdout),
            stack.logs()
        )
    });
    let context = format!("{verdict:#}\n{log}\n{}", stack.logs());
    assert!(status.success(), "{context}");
    assert_eq!(verdict["played"], true, "{context}");
    assert_eq!(verdict["stalls"], 0, "{context}");
    assert_eq!(verdict["fatal_errors"], 0, "{context}");
    assert_eq!(verdict["errors"], 0, "{context}");
    let advanced = verdict["played_s"].as_f64().unwrap_or(0.0);
    assert!(
        advanced >= WATCH_SECONDS as f64 - 3.0,
        "currentTime advanced only {advanced} s\n{context}"
    );
    stack.assert_switched();
}

#[test]
fn hlsjs_plays_through_a_packager_kill_without_a_stall() {
    play_through_a_kill(false);
}

/// Chromium's own HLS player (`video.src = url`; canPlayType says "maybe"),
/// the nearest to Safari's here. It was left out of CI on 2026-11-25, when
/// Chromium sometimes fired `ended` after its first playlist window (cause not
/// found). The stream has changed much since (epoch grid, program date-times,
/// worker-independent continuity counters): it passed 10 runs of 10 on
/// 2026-11-26, and nonstop's rows of `just bench-failover` with this player
/// (worker, host and input faults) were all clean.
#[test]
fn native_hls_plays_through_a_packager_kill_without_a_stall() {
    play_through_a_kill(true);
}
