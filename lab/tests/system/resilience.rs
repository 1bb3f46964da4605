//! Holding under abuse and the loss of neighbours: static stability, restarts,
//! the reporter's token, no SSRF or traversal through the proxy, and clear
//! errors for bad configuration.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nonstop_lab::fault::{ControlPlane, PackagerFault};
use nonstop_lab::http::{get, get_json, wait_healthy};
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::ports::free_port;
use nonstop_lab::ports::REPORTER_TOKEN;
use nonstop_lab::process::Service;
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::bin;

fn assert_smooth(report: &nonstop_lab::probe::ProbeReport, max_failed: u64, context: &str) {
    assert_eq!(report.stalls, 0, "stalls\n{report:#?}\n{context}");
    assert!(
        report.failed_requests <= max_failed,
        "failed requests\n{report:#?}\n{context}"
    );
    assert_eq!(report.playlist_regressions, 0, "{report:#?}");
    assert_eq!(report.skipped_segments, 0, "{report:#?}");
    assert_eq!(report.repeated_segments, 0, "{report:#?}");
}

#[test]
fn the_proxy_keeps_serving_and_failing_over_with_reporter_origin_and_discovery_down() {
    let mut stack = Stack::start(StackOptions {
        fault_front: true,
        ..StackOptions::default()
    });
    let probe = Probe::start(&stack.proxy_url("live01/playlist.m3u8"), 22);
    let before = probe.wait_playing(Duration::from_secs(4), PLAYING_WITHIN);
    for program in [
        ControlPlane::Discovery,
        ControlPlane::Origin,
        ControlPlane::Reporter,
    ] {
        stack.inject(program);
    }
    // Five seconds of playback with the control plane gone, then packager A dies.
    probe.wait_playing(before.media_played + Duration::from_secs(5), PLAYING_WITHIN);
    stack.inject(PackagerFault::Killed);
    let (report, log) = probe.finish();
    assert_smooth(&report, 0, &format!("{log}\n{}", stack.logs()));
    assert!(report.segments_played >= 15, "{report:#?}");
}

#[test]
fn a_restarted_reporter_refills_within_a_discovery_period() {
    let mut stack = Stack::start(StackOptions::default());
    let url = format!("http://127.0.0.1:{}/ingests", stack.port(Role::Reporter));
    if let Some(mut reporter) = stack.take(Role::Reporter) {
        reporter.terminate_cleanly();
    }
    stack.restart(Role::Reporter);
    wait_healthy(stack.port(Role::Reporter));
    // Discovery reports every 0.5 s here; allow a few periods for scheduling.
    wait_for(Duration::from_secs(3), "the store to refill", || {
        let v = get_json(&url);
        (v.as_array().is_some_and(|a| a.len() == 1)).then_some(())
    });
}

#[test]
fn a_restarted_proxy_loses_no_viewer() {
    let mut stack = Stack::start(StackOptions::default());
    let probe = Probe::start(&stack.proxy_url("live01/playlist.m3u8"), 18);
    probe.wait_playing(Duration::from_secs(5), PLAYING_WITHIN);
    if let Some(mut proxy) = stack.take(Role::Proxy) {
        proxy.terminate_cleanly();
    }
    stack.restart(Role::Proxy);
    let (report, log) = probe.finish();
    // A reload may fail while nothing listens; the viewer must not stall.
    assert_smooth(&report, 3, &format!("{log}\n{}", stack.logs()));
}

#[test]
fn only_the_token_holder_changes_the_reporters_view() {
    let stack = Stack::start(StackOptions::default());
    let url = format!("http://127.0.0.1:{}/ingests", stack.port(Role::Reporter));
    let before = get_json(&url);
    let hijack = serde_json::json!({"signal": "live01", "packagers": [stack.packagers()[1]]});
    let client = reqwest::blocking::Client::new();
    for token in [None, Some("Bearer not-the-token-0123456789")] {
        let mut req = client.post(&url).json(&hijack);
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let res = req.send().expect("answers");
        assert_eq!(res.status(), 401);
        let body: serde_json::Value = res.json().expect("JSON error");
        assert_eq!(body["error"], "missing or invalid token");
    }
    let evil = serde_json::json!({"signal": "live01", "packagers": ["http://203.0.113.7:8080"]});
    let res = client
        .post(&url)
        .header("authorization", format!("Bearer {REPORTER_TOKEN}"))
        .json(&evil)
        .send()
        .expect("answers");
    assert_eq!(
        res.status(),
        400,
        "a packager off the allow-list was accepted"
    );
    let after = get_json(&url);
    assert_eq!(
        before[0]["packagers"], after[0]["packagers"],
        "the view changed"
    );
    let log = stack.service(Role::Reporter).log_text();
    assert!(!log.contains(REPORTER_TOKEN), "the token was logged");
}

#[test]
fn the_proxy_only_connects_to_allowed_packagers() {
    let stack = Stack::start(StackOptions::default());
    // A host that is reported (the reporter allows it here) but not in the
    // proxy's PACKAGERS: the proxy must never connect to it.
    let trap = TcpListener::bind("127.0.0.1:0").expect("bind");
    let trap_url = format!(
        "http://127.0.0.1:{}",
        trap.local_addr().expect("addr").port()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    trap.set_nonblocking(true).expect("nonblocking");
    let counter = hits.clone();
    std::thread::spawn(move || loop {
        if trap.accept().is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(20));
    });
    let reporter_port = free_port();
    let mut env = stack.env().to_vec();
    env.retain(|(k, _)| *k != "REPORTER_PORT");
    env.push(("REPORTER_PORT", reporter_port.to_string()));
    env.push((
        "REPORTER_ALLOWED_PACKAGERS",
        format!("{trap_url},{}", stack.packagers().join(",")),
    ));
    let _reporter = Service::start(
        "reporter-open",
        &bin("reporter"),
        &[],
        &env,
        stack.logs_dir(),
    );
    wait_healthy(reporter_port);
    let origin_port = free_port();
    env.retain(|(k, _)| *k != "REPORTER_URL" && *k != "ORIGIN_PORT");
    env.push(("REPORTER_URL", format!("http://127.0.0.1:{reporter_port}")));
    env.push(("ORIGIN_PORT", origin_port.to_string()));
    let _origin = Service::start("origin-open", &bin("origin"), &[], &env, stack.logs_dir());
    let proxy_port = free_port();
    env.retain(|(k, _)| *k != "ORIGIN_URL" && *k != "PROXY_PORT");
    env.push(("ORIGIN_URL", format!("http://127.0.0.1:{origin_port}")));
    env.push(("PROXY_PORT", proxy_port.to_string()));
    let _proxy = Service::start("proxy-open", &bin("proxy"), &[], &env, stack.logs_dir());
    wait_healthy(origin_port);
    wait_healthy(proxy_port);
    let status = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{reporter_port}/ingests"))
        .header("authorization", format!("Bearer {REPORTER_TOKEN}"))
        .json(&serde_json::json!({"signal": "evil", "packagers": [trap_url]}))
        .send()
        .expect("answers")
        .status();
    assert_eq!(status, 200);
    for path in ["evil/playlist.m3u8", "evil/segment000001.ts"] {
        let (status, _) = get(&format!("http://127.0.0.1:{proxy_port}/{path}")).expect("answers");
        assert_ne!(status, 200, "{path}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the proxy connected to a host outside PACKAGERS"
    );
}

#[test]
fn the_proxy_refuses_traversal_and_other_file_types_in_every_encoding() {
    let stack = Stack::start(StackOptions::default());
    for path in [
        "live01/..%2f..%2fetc%2fpasswd",
        "live01/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "live01/..%5c..%5cwindows",
        "%2e%2e/playlist.m3u8",
        "live01/%2fetc%2fpasswd",
        "live01/playlist.m3u8%00.ts",
        "live01/segment.mp4",
        "live01/other.m3u8",
        "live01/.hidden.ts",
        "http:%2f%2f127.0.0.1:1/x.ts",
    ] {
        let (status, body) = get(&stack.proxy_url(path)).expect("answers");
        assert!(status == 400 || status == 404, "{path}: {status}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert!(json["error"].is_string(), "{path}");
    }
}

#[test]
fn bad_configuration_is_one_clear_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    /// Program, its environment, and what its one error line must say.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "proxy",
            vec![("PROXY_PORT", "70000".into())],
            "out of range",
        ),
        (
            "server1",
            vec![("SERVER_ONE_PORT", "http".into())],
            "not a port",
        ),
        (
            "origin",
            vec![("REPORTER_URL", "localhost:2000".into())],
            "URL",
        ),
        (
            "proxy",
            vec![("PACKAGERS", "http://a:1,ftp://b".into())],
            "http or https",
        ),
        (
            "discovery",
            vec![("DISCOVERY_INTERVAL_SECONDS", "-1".into())],
            "seconds",
        ),
        (
            "server2",
            vec![(
                "OUTPUT_STREAM_PATH",
                dir.path().join("missing").display().to_string(),
            )],
            "does not exist",
        ),
        (
            "reporter",
            vec![("REPORTER_TOKEN", "short".into())],
            "at least",
        ),
    ];
    for (program, env, expected) in cases {
        let mut cmd = std::process::Command::new(bin(program));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.env("LISTEN_HOST", "127.0.0.1").output().expect("runs");
        assert!(!out.status.success(), "{program} {env:?} started");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(expected),
            "{program} {env:?}: expected '{expected}' in:\n{text}"
        );
        let errors = text
            .lines()
            .filter(|l| l.contains("error") || l.contains(" ERR "))
            .count();
        assert_eq!(
            errors, 1,
            "{program} {env:?}: one error line expected:\n{text}"
        );
    }
}
