//! The whole stack end to end: seven real processes on free ports, the seed's
//! JSON contracts, a playable stream through the proxy, and a packager killed
//! while a client keeps watching.

use std::time::{Duration, Instant};

use nonstop::hls::PlaylistFacts;

use nonstop_lab::fault::{PackagerFault, WorkerFault};
use nonstop_lab::http::{get, get_json};
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::bin;

#[test]
fn every_route_keeps_the_seed_contract_and_the_stream_plays_through_the_proxy() {
    let mut stack = Stack::start(StackOptions::default());
    let logs = || stack.logs();

    // reporter: GET /ingests, the seed's shape exactly.
    let ingests = get_json(&format!(
        "http://127.0.0.1:{}/ingests",
        stack.port(Role::Reporter)
    ));
    let entry = &ingests[0];
    assert_eq!(entry.as_object().map(|o| o.len()), Some(3), "{ingests}");
    assert_eq!(entry["signal"], "live01");
    assert_eq!(
        entry["packagers"],
        serde_json::json!(stack.packagers()),
        "{ingests}"
    );
    let reported = entry["last_reported"].as_str().expect("string");
    chrono::DateTime::parse_from_str(&format!("{reported}00"), "%a, %d %b %Y %H:%M:%S %z")
        .unwrap_or_else(|e| panic!("last_reported '{reported}': {e}"));

    // origin: /signals, /live/<name>, 404 JSON for an unknown signal.
    let origin = format!("http://127.0.0.1:{}", stack.port(Role::Origin));
    assert_eq!(
        get_json(&format!("{origin}/signals")),
        serde_json::json!(["live01"])
    );
    let live = get_json(&format!("{origin}/live/live01"));
    assert_eq!(live["signal"], "live01");
    assert_eq!(
        live["server"],
        format!("{}/live01/playlist.m3u8", stack.packagers()[0]),
        "{live}"
    );
    assert_eq!(live.as_object().map(|o| o.len()), Some(2));
    let (status, body) = get(&format!("{origin}/live/nope")).expect("answers");
    assert_eq!(status, 404);
    let err: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert!(
        err["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{err}"
    );

    // proxy: a live playlist with the right headers, growing.
    let client = reqwest::blocking::Client::new();
    let res = client
        .get(stack.proxy_url("live01/playlist.m3u8"))
        .send()
        .expect("playlist");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=1",
        "a CDN may keep it half the 1 s target, rounded up to a second"
    );
    let etag = res.headers()["etag"].to_str().expect("etag").to_string();
    let first_body = res.bytes().expect("body");
    revalidation_is_answered_304_until_the_playlist_changes(&stack, etag, first_body.clone());
    let first = PlaylistFacts::parse(&first_body).expect("valid playlist");
    assert!(!first.end_list);
    assert_eq!(first.target_duration, Duration::from_secs(1));
    let later = wait_for(Duration::from_secs(15), "the playlist to advance", || {
        let (_, body) = get(&stack.proxy_url("live01/playlist.m3u8"))?;
        let facts = PlaylistFacts::parse(&body).ok()?;
        (facts.newest_sequence() > first.newest_sequence()).then_some(facts)
    });
    assert!(later.media_sequence >= first.media_sequence);

    // segments through the proxy: MPEG-TS that GStreamer demuxes to H.264 and AAC.
    let newest = later.segments.last().expect("a segment");
    let res = client
        .get(stack.proxy_url(&format!("live01/{}", newest.uri)))
        .send()
        .expect("segment");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "video/mp2t");
    let bytes = res.bytes().expect("body");
    let report = nonstop_lab::demux::demux_segment(&bytes)
        .unwrap_or_else(|e| panic!("segment does not demux: {e}\n{}", logs()));
    assert!(report.has_h264(), "{report:?}");
    assert!(report.has_aac(), "{report:?}");
    assert!(report.video_frames >= 20, "{report:?}");

    // `status` shows the signal, its route and both packagers with the active one.
    let out = std::process::Command::new(bin("status"))
        .env("ORIGIN_URL", &origin)
        .env("PROXY_URL", stack.proxy_url("").trim_end_matches('/'))
        .output()
        .expect("status runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains(&format!(
            "live01 -> {}",
            live["server"].as_str().unwrap_or_default()
        )),
        "{table}"
    );
    for p in stack.packagers() {
        assert!(table.contains(p.as_str()), "{p} missing:\n{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("live01") && l.contains('*')),
        "{table}"
    );

    // the proxy never redirects and refuses names outside the contract.
    for path in [
        "live01/..%2f..%2fetc%2fpasswd",
        "live01/x.mp4",
        "nope/playlist.m3u8",
    ] {
        let (status, _) = get(&stack.proxy_url(path)).expect("answers");
        assert_eq!(status, 404, "{path}");
    }

    workers_show_in_status_until_the_worker_freezes_or_dies(&mut stack, &origin);
}

/// `status` with WORKERS names the worker, its signal encoding, its newest
/// segment and how far behind the wall clock it is; a frozen worker (SIGSTOP)
/// and a killed one (SIGKILL) show as down.
fn workers_show_in_status_until_the_worker_freezes_or_dies(stack: &mut Stack, origin: &str) {
    let worker = format!("http://127.0.0.1:{}", stack.port(Role::WorkerA));
    let status = |stack: &Stack| {
        let out = std::process::Command::new(bin("status"))
            .env("ORIGIN_URL", origin)
            .env("PROXY_URL", stack.proxy_url("").trim_end_matches('/'))
            .env("WORKERS", &worker)
            .output()
            .expect("status runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let worker_line = |table: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&worker))
            .unwrap_or_else(|| panic!("no line for {worker}:\n{table}"))
            .to_string()
    };
    let table = status(stack);
    assert!(table.contains("workers:"), "{table}");
    let line = worker_line(&table);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.get(1), Some(&"live01"), "{table}");
    assert_eq!(words.get(2), Some(&"encoding"), "{table}");
    assert!(
        words.get(3).is_some_and(|w| w.ends_with(".ts")),
        "no newest segment: {table}"
    );
    assert!(
        words.get(4).is_some_and(|w| w.starts_with('#')),
        "no sequence: {table}"
    );
    let behind: f64 = words
        .get(5)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no age in seconds: {table}"));
    assert!(behind >= 0.0, "{table}");
    assert_eq!(words.get(6), Some(&"s"), "{table}");

    stack.inject(WorkerFault::Stopped);
    let table = status(stack);
    assert!(
        worker_line(&table).contains(" down ("),
        "a frozen worker shows down:\n{table}"
    );
    stack.inject(WorkerFault::Killed);
    let service = stack.service_mut(Role::WorkerA);
    assert!(service.wait_gone(Duration::from_secs(5)), "kill -9 worked");
    let table = status(stack);
    assert!(
        worker_line(&table).contains(" down (") && table.contains("refused"),
        "a killed worker shows down with the reason:\n{table}"
    );
}

/// What a CDN or a browser cache does with the tag it holds: revalidates.
/// While the playlist is unchanged the proxy answers 304 with the same tag;
/// once it changed, 200 with the new playlist and a new tag, never a 304
/// for a changed playlist.
fn revalidation_is_answered_304_until_the_playlist_changes(
    stack: &Stack,
    mut etag: String,
    mut body: bytes::Bytes,
) {
    let client = reqwest::blocking::Client::new();
    let (mut not_modified, mut changed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while (not_modified == 0 || changed == 0) && Instant::now() < deadline {
        let res = client
            .get(stack.proxy_url("live01/playlist.m3u8"))
            .header("if-none-match", &etag)
            .send()
            .expect("revalidation");
        let tag = res.headers()["etag"].to_str().expect("etag").to_string();
        assert_eq!(res.headers()["cache-control"], "public, max-age=1");
        match res.status().as_u16() {
            304 => {
                assert_eq!(tag, etag, "a 304 carries the tag it validated");
                assert!(res.bytes().expect("body").is_empty());
                not_modified += 1;
            }
            200 => {
                let now = res.bytes().expect("body");
                assert_ne!(now, body, "a 200 to a revalidation is a changed playlist");
                assert_ne!(tag, etag, "a changed playlist has a new tag");
                (etag, body) = (tag, now);
                changed += 1;
            }
            other => panic!("revalidation answered {other}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        not_modified > 0 && changed > 0,
        "within 15 s: {not_modified} answers 304, {changed} changed playlists"
    );
}

/// New segments the client follows past its first playlist before server1
/// is killed: it is playing the live edge by then.
const ADVANCES_BEFORE_KILL: u64 = 3;

#[test]
fn killing_server1_mid_stream_fails_no_client_request() {
    let mut stack = Stack::start(StackOptions::default());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut failures: Vec<String> = Vec::new();
    let mut fetched: Vec<u64> = Vec::new();
    let mut newest_seen = 0;
    let mut first_newest: Option<u64> = None;
    let started = Instant::now();
    let mut killed = false;
    while started.elapsed() < Duration::from_secs(12) {
        // The kill comes once this client is really playing, however long
        // the first requests took.
        if !killed && first_newest.is_some_and(|first| newest_seen >= first + ADVANCES_BEFORE_KILL)
        {
            // Packager A is server1 itself: this stack has no fault proxy.
            stack.inject(PackagerFault::Killed);
            killed = true;
        }
        match client.get(stack.proxy_url("live01/playlist.m3u8")).send() {
            Ok(res) if res.status() == 200 => {
                let facts = PlaylistFacts::parse(&res.bytes().unwrap_or_default())
                    .expect("the proxy serves valid playlists");
                let newest = facts.newest_sequence().unwrap_or(0);
                assert!(
                    newest >= newest_seen,
                    "playlist went back from {newest_seen} to {newest}"
                );
                newest_seen = newest;
                first_newest.get_or_insert(newest);
                for s in facts
                    .segments
                    .iter()
                    .filter(|s| fetched.last().is_none_or(|&last| s.sequence > last))
                    .collect::<Vec<_>>()
                {
                    match client
                        .get(stack.proxy_url(&format!("live01/{}", s.uri)))
                        .send()
                    {
                        Ok(r) if r.status() == 200 => {
                            let body = r.bytes().unwrap_or_default();
                            assert!(nonstop::hls::is_complete_transport_stream(&body));
                            fetched.push(s.sequence);
                        }
                        Ok(r) => failures.push(format!("segment {}: HTTP {}", s.uri, r.status())),
                        Err(e) => failures.push(format!("segment {}: {e}", s.uri)),
                    }
                }
            }
            Ok(res) => failures.push(format!("playlist: HTTP {}", res.status())),
            Err(e) => failures.push(format!("playlist: {e}")),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        killed,
        "the playlist advanced {} segments, never {ADVANCES_BEFORE_KILL}: server1 was not killed\n{}",
        newest_seen - first_newest.unwrap_or(newest_seen),
        stack.logs()
    );
    if let Some(mut s1) = stack.take(Role::Server1) {
        assert!(s1.wait_gone(Duration::from_secs(1)), "server1 was killed");
    }
    assert!(
        failures.is_empty(),
        "failed requests: {failures:?}\n{}",
        stack.logs()
    );
    assert!(
        fetched.len() >= 8,
        "only {} segments fetched",
        fetched.len()
    );
    let proxy_log = stack.proxy_log();
    assert!(
        proxy_log.contains("switching from"),
        "no switch logged:\n{proxy_log}"
    );
}
