//! The operator's console in a real browser: the whole stack with a fault
//! proxy in front of server1, the `console` service in front of it, and
//! `lab/web/console-test.mjs` driving Debian's Chromium (playwright-core) through
//! the page. The page must list the signal and play it; after the page's own
//! "kill" button resets every connection to server1, its timeline must show the
//! proxy switching away while the player's currentTime keeps advancing; after
//! "restore" and a SIGKILL of server2's process, it must show the switch back,
//! still advancing, with no stall counted by the page. A screenshot is kept
//! in `target/test-artifacts/console.png`.
//!
//! Chromium, node, `web/node_modules` and `lab/web/node_modules` are required: when one is missing the
//! test fails and says to run `scripts/setup.sh`; it is never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nonstop_lab::http::{get, get_json, wait_healthy};
use nonstop_lab::ports::free_port;
use nonstop_lab::process::Service;
use nonstop_lab::real_players::chromium_drivers_missing;
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::{bin, browser_driver, repo_root};

/// The fault token the page is given (at least 16 characters).
const TOKEN: &str = "console-test-token-0123456789";
/// Seconds of playback the driver watches after each kill.
const WATCH_SECONDS: u32 = 10;
/// currentTime must advance at least this much in those seconds: playback
/// carried on, at most a short hiccup.
const MIN_ADVANCE_AFTER_KILL: f64 = 8.0;
/// The longest the page's currentTime may stand still after a kill. The
/// stream's segments are 1 s; a player that froze would exceed this.
const MAX_FROZEN_MS: u64 = 2500;

fn repo() -> &'static Path {
    repo_root()
}

/// The console's assets (`CONSOLE_ASSETS`): the product's `web/`.
fn web_dir() -> PathBuf {
    repo().join("web")
}

/// Fails, naming what is missing, unless the browser pieces are installed.
fn require_browser() {
    let missing = chromium_drivers_missing();
    assert!(
        missing.is_empty(),
        "the console test needs {}: run scripts/setup.sh (it installs Debian's chromium and runs npm ci --prefix web and --prefix lab/web)",
        missing.join(", ")
    );
}

/// Runs `lab/web/console-test.mjs` with `args`: whether it succeeded, its
/// JSON verdict (null when it printed none) and its progress log.
fn drive_console(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new("node")
        .arg(browser_driver("console-test.mjs"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("node runs lab/web/console-test.mjs");
    let driver_log = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let verdict = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (out.status.success(), verdict, driver_log)
}

/// What a failed assertion shows: the verdict, the driver's log, the
/// console's and the stack's logs (the first two also printed now).
fn context_of(
    verdict: &serde_json::Value,
    driver_log: &str,
    console: &Service,
    stack: &Stack,
) -> String {
    eprintln!("verdict: {verdict:#}\n--- console-test ---\n{driver_log}");
    format!(
        "{verdict:#}\n--- console-test ---\n{driver_log}\n--- console ---\n{}\n{}",
        console.log_text(),
        stack.logs()
    )
}

/// Starts the console in front of `stack`, with `extra` settings (fault
/// controls, workers); its port.
fn start_console(stack: &Stack, extra: &[(&'static str, String)]) -> (Service, u16) {
    let port = free_port();
    let mut envs = vec![
        ("CONSOLE_PORT", port.to_string()),
        ("PROXY_URL", stack.base_url(Role::Proxy)),
        ("ORIGIN_URL", stack.base_url(Role::Origin)),
        ("CONSOLE_ASSETS", web_dir().display().to_string()),
        ("LISTEN_HOST", "127.0.0.1".to_string()),
    ];
    envs.extend(extra.iter().cloned());
    let console = Service::start("console", &bin("console"), &[], &envs, stack.logs_dir());
    wait_healthy(port);
    (console, port)
}

fn number(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

#[test]
fn console_shows_a_killed_packager_while_playback_carries_on() {
    require_browser();
    let mut stack = Stack::start(StackOptions {
        fault_front: true,
        ..StackOptions::default()
    });
    let server1_base = stack.base_url(Role::FaultProxy);
    let server2_base = stack.base_url(Role::Server2);
    let worker_base = stack.base_url(Role::WorkerA);
    let (console, port) = start_console(
        &stack,
        &[
            ("CONSOLE_FAULTS", format!("server1={server1_base}")),
            ("CONSOLE_FAULT_TOKEN", TOKEN.to_string()),
            ("WORKERS", worker_base.clone()),
        ],
    );
    let console_url = format!("http://127.0.0.1:{port}/");
    let (status, _) = get(&console_url).expect("the console answers");
    assert_eq!(status, 200, "the console page");

    let artifacts = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact folder");
    let screenshot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    let server2_pid = stack.service(Role::Server2).pid();
    let worker_pid = stack.service(Role::WorkerA).pid();
    // The page picks native HLS when the browser has it, else hls.js;
    // CONSOLE_TEST_PLAYER=native|hlsjs forces one.
    let player = std::env::var("CONSOLE_TEST_PLAYER").unwrap_or_else(|_| "auto".into());

    let (succeeded, verdict, driver_log) = drive_console(&[
        "--console",
        &console_url,
        "--token",
        TOKEN,
        "--signal",
        "live01",
        "--fault",
        "server1",
        "--kill-pid",
        &server2_pid.to_string(),
        "--kill-worker-pid",
        &worker_pid.to_string(),
        "--watch",
        &WATCH_SECONDS.to_string(),
        "--player",
        &player,
        "--screenshot",
        &screenshot.display().to_string(),
    ]);
    let context = context_of(&verdict, &driver_log, &console, &stack);
    assert!(succeeded, "console-test failed\n{context}");

    // The page loaded, listed the signal, pushed its state and played.
    assert_eq!(verdict["signal_shown"], true, "{context}");
    assert_eq!(
        verdict["transport"], "live",
        "state pushed by SSE\n{context}"
    );
    assert!(
        number(&verdict, "advanced_before_kill_s") >= 2.0,
        "{context}"
    );
    // The page's own player is the one viewer the proxy counts, shown.
    assert_eq!(verdict["viewers_shown"], 1, "{context}");
    // Kill from the page: the switch away from server1 is shown, with its reason.
    assert_eq!(verdict["kill_clicked"], true, "{context}");
    assert_eq!(verdict["switch_shown"], true, "{context}");
    let reason = verdict["switch_reason"].as_str().unwrap_or_default();
    // A packager is called failing after two failed requests in a row (one
    // blip flips nothing), so the switch away from the dead one may be
    // decided first by its twin listing a newer segment ("behind").
    assert!(
        reason.contains(&server1_base) && (reason.contains("failing") || reason.contains("behind")),
        "the reason names the dead packager: {reason}\n{context}"
    );
    assert_eq!(
        verdict["active_after_kill"].as_str(),
        Some(server2_base.as_str()),
        "{context}"
    );
    // SIGKILL of server2's process: the switch back is shown.
    assert_eq!(verdict["restored_fresh"], true, "{context}");
    assert_eq!(verdict["second_switch_shown"], true, "{context}");
    // Playback carried on through both, with nothing counted by the page.
    for key in ["advanced_after_kill_s", "advanced_after_second_kill_s"] {
        assert!(
            number(&verdict, key) >= MIN_ADVANCE_AFTER_KILL,
            "{key} below {MIN_ADVANCE_AFTER_KILL} s\n{context}"
        );
    }
    for key in [
        "max_frozen_ms_after_kill",
        "max_frozen_ms_after_second_kill",
    ] {
        assert!(
            verdict[key].as_u64().is_some_and(|ms| ms <= MAX_FROZEN_MS),
            "{key} above {MAX_FROZEN_MS} ms\n{context}"
        );
    }
    assert_eq!(
        verdict["stalls"], 0,
        "stalls counted by the page\n{context}"
    );
    assert_eq!(verdict["player_errors"], 0, "{context}");
    // Nothing from the internet, no script error.
    assert_eq!(
        verdict["external_requests"],
        serde_json::json!([]),
        "{context}"
    );
    assert_eq!(verdict["page_errors"], serde_json::json!([]), "{context}");

    // "Killed" means the process is gone.
    let mut server2 = stack.take(Role::Server2).expect("server2");
    assert!(
        server2.wait_gone(Duration::from_secs(5)),
        "server2 still runs"
    );
    // What the page showed is what the proxy did.
    let proxy_status = get_json(&stack.proxy_url("status"));
    let switches = proxy_status["signals"][0]["switches"].to_string();
    assert!(
        switches.contains(&format!(r#""from":"{server1_base}""#)),
        "{switches}"
    );
    // The console's log names the fault it set.
    assert!(
        console.log_text().contains("fault 'reset' set on server1"),
        "{context}"
    );
    // The workers panel named the worker, its signal encoding and its newest
    // segment with how far behind the wall clock it is (read just before the
    // worker's kill).
    let workers = verdict["workers_before_worker_kill"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        workers.iter().any(|w| {
            let text = w["text"].as_str().unwrap_or_default();
            w["worker"] == worker_base.as_str()
                && w["signal"] == "live01"
                && w["state"] == "encoding"
                && text.contains(".ts")
                && text.contains(" s")
        }),
        "the workers panel: {workers:?}\n{context}"
    );
    // The worker killed (by the page's driver, last): the overall badge left
    // "stream up" and named the worker, and the console's state shows it down,
    // with the reason.
    let badge = &verdict["worker_badge"];
    assert!(
        ["degraded", "down"].contains(&badge["status"].as_str().unwrap_or_default())
            && badge["text"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("worker {worker_base} down"))),
        "the overall badge after the worker's kill: {badge}\n{context}"
    );
    let worker = stack.service_mut(Role::WorkerA);
    assert!(worker.wait_gone(Duration::from_secs(5)), "kill -9 worked");
    let state_url = format!("{console_url}api/state");
    let down = wait_for(
        Duration::from_secs(10),
        "the console to show the worker down",
        || {
            let state = get_json(&state_url);
            let w = state["workers"][0].clone();
            (w["url"] == worker_base.as_str() && w["up"] == false).then_some(w)
        },
    );
    assert!(
        down["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );

    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        screenshot.display()
    );
}

/// A ladder in the console's player: the operator picks the lowest rung in
/// the player's list, and the page shows the player on it, the switch
/// counted, while playback goes on without a stall (hls.js switches at the
/// next fragment).
#[test]
fn console_shows_the_player_switching_to_the_rendition_picked() {
    require_browser();
    let stack = Stack::start(StackOptions::default().with_recommended_ladder());
    let (console, port) = start_console(&stack, &[]);
    let console_url = format!("http://127.0.0.1:{port}/");
    let (succeeded, verdict, driver_log) = drive_console(&[
        "--console",
        &console_url,
        "--signal",
        "live01",
        "--player",
        "hlsjs",
        "--pick-rendition",
        "360",
        "--watch",
        "4",
    ]);
    let context = context_of(&verdict, &driver_log, &console, &stack);
    assert!(succeeded, "console-test failed\n{context}");
    // Both rungs offered besides "auto"; the player began on the top one
    // (localhost is fast) and the page shows it on 360p after the pick,
    // with the switch counted.
    let offered: Vec<String> = verdict["renditions_offered"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(offered.len(), 3, "{context}");
    assert_eq!(offered[0], "auto", "{context}");
    assert!(
        offered[1..].iter().any(|o| o.starts_with("480p ")),
        "{context}"
    );
    assert!(
        offered[1..].iter().any(|o| o.starts_with("360p ")),
        "{context}"
    );
    let shown = verdict["rendition_shown"].as_str().unwrap_or_default();
    assert!(
        shown.starts_with("360p ") && shown.contains("(1 switch)"),
        "the page shows: {shown}\n{context}"
    );
    assert!(
        verdict["rendition_before_pick"]
            .as_str()
            .is_some_and(|r| r.starts_with("480p ")),
        "{context}"
    );
    // Playback went on through the switch.
    assert!(
        number(&verdict, "advanced_after_pick_s") >= 3.0,
        "{context}"
    );
    assert!(
        verdict["max_frozen_ms_after_pick"]
            .as_u64()
            .is_some_and(|ms| ms <= MAX_FROZEN_MS),
        "{context}"
    );
    assert_eq!(
        verdict["stalls"], 0,
        "stalls counted by the page\n{context}"
    );
    assert_eq!(verdict["page_errors"], serde_json::json!([]), "{context}");
}
