//! WebKit, Safari's engine, plays the proxy while packager A is killed:
//! WebKitGTK's MiniBrowser under Xvfb, driven over W3C WebDriver by
//! WebKitWebDriver (Debian's `webkit2gtk-driver`, `xvfb`), plays the live
//! playlist with its own native HLS (as Safari does) and with hls.js, from
//! a blank page on a local http origin ([`BlankPage`]). The
//! video element is asked every [`SAMPLE_EVERY`] for `currentTime`,
//! `paused`, `readyState` and `error`; its events are recorded. Needs
//! `scripts/setup.sh`; without WebKit these tests fail saying so, they are
//! never skipped as passing.
//! Each run's record of `currentTime` goes to `target/test-artifacts/`.

use std::time::{Duration, Instant};

use nonstop_lab::fault::PackagerFault;
use nonstop_lab::real_players::{self, BlankPage, PositionRecord, VideoLook, WebKit, SAMPLE_EVERY};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::wait::try_wait_for;
use nonstop_lab::workspace::test_artifact;

/// Wall time the player is watched after the kill.
const WATCH: Duration = Duration::from_secs(20);
/// Budget for the page to start playing and reach
/// [`real_players::PLAYED_BEFORE_FAULT`].
const PLAYING_WITHIN: Duration = Duration::from_secs(30);

fn require_webkit() {
    if let Some(missing) = real_players::webkit_missing() {
        panic!("{missing}");
    }
}

fn play_through_a_kill(hls_js: bool, ladder: bool) {
    require_webkit();
    let hls_source = hls_js.then(|| real_players::hlsjs_source().unwrap_or_else(|e| panic!("{e}")));
    let (player, record_name) = match (hls_js, ladder) {
        (true, false) => ("hls.js in WebKit", "webkit-hlsjs-through-a-packager-kill"),
        (false, false) => (
            "WebKit's native HLS",
            "webkit-native-through-a-packager-kill",
        ),
        (true, true) => (
            "hls.js in WebKit on the ladder",
            "webkit-hlsjs-ladder-through-a-packager-kill",
        ),
        (false, true) => (
            "WebKit's native HLS on the ladder",
            "webkit-native-ladder-through-a-packager-kill",
        ),
    };
    // The product's 2 s segments, and a viewer who joins a running stream
    // (a full playlist window), as in production.
    let options = StackOptions::as_in_production();
    let mut stack = Stack::start(if ladder {
        options.with_recommended_ladder()
    } else {
        options
    });
    stack.wait_for_window(5);
    let page = BlankPage::start();
    let started = Instant::now();
    let browser = WebKit::start();
    let fail = |stack: &Stack, what: String| -> ! {
        panic!(
            "{player}: {what}\n--- WebKit ---\n{}\n{}",
            browser.log_text(),
            stack.logs()
        )
    };
    let url = stack.proxy_url("live01/playlist.m3u8");
    browser
        .play(&page.url, &url, hls_source.as_deref())
        .unwrap_or_else(|e| fail(&stack, e));
    let mut record = PositionRecord::default();
    let note = |record: &mut PositionRecord, l: &VideoLook| {
        record.push(
            started.elapsed(),
            l.time,
            &format!("paused={} readyState={}", l.paused, l.ready_state),
        )
    };
    let before = try_wait_for(PLAYING_WITHIN, || {
        let l = browser.look().ok()?;
        note(&mut record, &l);
        l.watching().then_some(l)
    })
    .unwrap_or_else(|| {
        let last = browser.look().map(|l| l.describe()).unwrap_or_else(|e| e);
        fail(
            &stack,
            format!(
                "did not play {} s within {PLAYING_WITHIN:?}: {last}",
                real_players::PLAYED_BEFORE_FAULT
            ),
        )
    });
    stack.inject(PackagerFault::Killed);
    let killed_at = Instant::now();
    record.push(started.elapsed(), before.time, "packager A killed");
    let mut looks = vec![before];
    while killed_at.elapsed() < WATCH {
        std::thread::sleep(SAMPLE_EVERY);
        match browser.look() {
            Ok(l) => {
                note(&mut record, &l);
                looks.push(l)
            }
            Err(e) => fail(&stack, format!("the page stopped answering: {e}")),
        }
    }
    let path = test_artifact(&format!("{record_name}.csv"));
    match record.save(&path) {
        Ok(()) => eprintln!(
            "{player}'s currentTime through the kill: {}",
            path.display()
        ),
        Err(e) => eprintln!("cannot save {}: {e}", path.display()),
    }
    let judgement = real_players::judge_video(&looks);
    eprintln!("{player} through the kill: {}", judgement.summary);
    let failures = judgement.failures();
    assert!(
        failures.is_empty(),
        "{player}: {failures:#?}\n{}\n--- WebKit ---\n{}\n{}",
        judgement.summary,
        browser.log_text(),
        stack.logs()
    );
    stack.assert_switched();
}

#[test]
fn webkit_native_hls_plays_through_a_packager_kill_without_a_stall() {
    play_through_a_kill(false, false);
}

/// Safari's engine on the ladder's multivariant playlist: it picks a
/// rendition itself and plays on through the kill.
#[test]
fn webkit_native_hls_plays_the_ladder_through_a_packager_kill_without_a_stall() {
    play_through_a_kill(false, true);
}

#[test]
fn hlsjs_in_webkit_plays_through_a_packager_kill_without_a_stall() {
    play_through_a_kill(true, false);
}
