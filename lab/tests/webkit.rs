//! WebKit, Safari's engine, plays the proxy while packager A is killed:
//! WebKitGTK's MiniBrowser under Xvfb, driven over W3C WebDriver by
//! WebKitWebDriver (Debian's `webkit2gtk-driver`, `xvfb`), plays the live
//! playlist with its own native HLS (as Safari does) and with hls.js, from
//! a blank page on a local http origin ([`BlankPage`]). The
//! video element is asked every [`SAMPLE_EVERY`] for `currentTime`,
//! `paused`, `readyState` and `error`; its events are recorded. Needs
//! `scripts/setup.sh`; without WebKit these tests fail saying so, they are
//! never skipped as passing.

use nonstop_lab::players::{self, BlankPage, WebKit};
use nonstop_lab::support as common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Stack, StackOptions};
use serde_json::{json, Value};

/// Wall time the player is watched after the kill.
const WATCH: Duration = Duration::from_secs(20);
/// Media played before packager A is killed.
const PLAYED_BEFORE_KILL: f64 = 4.0;
/// Budget for the page to start playing and reach `PLAYED_BEFORE_KILL`.
const PLAYING_WITHIN: Duration = Duration::from_secs(30);
/// How often the video element is asked how it is doing.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest time `currentTime` may stand still and still count as smooth:
/// more is a freeze a viewer sees.
const MAX_FREEZE: Duration = Duration::from_millis(2500);
/// How far `currentTime` may fall behind the wall clock over the watch
/// (sampling and start-up jitter), in seconds.
const MAX_LAG_SECONDS: f64 = 2.0;

/// Builds the video element and starts playback of `arguments[0]`;
/// `arguments[1]` says whether hls.js (already in the page) plays it. The
/// element's events go to `window.judge.events`.
const START_PLAYER: &str = r#"
const [url, useHlsJs] = arguments;
document.body.innerHTML = '';
const v = document.createElement('video');
v.id = 'v'; v.muted = true; v.autoplay = true; v.playsInline = true;
window.judge = { events: [] };
const note = (event, detail) => window.judge.events.push({ event, time: v.currentTime, detail });
for (const e of ['playing', 'waiting', 'stalled', 'error', 'ended', 'pause']) {
  v.addEventListener(e, () => note(e, null));
}
document.body.appendChild(v);
if (useHlsJs) {
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (_, d) => note(d.fatal ? 'hls-fatal' : 'hls-error', d.details));
  hls.loadSource(url);
  hls.attachMedia(v);
} else {
  v.src = url;
}
v.play().catch((e) => note('play-refused', String(e)));
return v.canPlayType('application/vnd.apple.mpegurl');
"#;

/// What the video element says right now.
const LOOK: &str = r#"
const v = document.getElementById('v');
return { time: v.currentTime, paused: v.paused, readyState: v.readyState,
         error: v.error ? v.error.code : null, events: window.judge.events };
"#;

/// Puts hls.js (`arguments[0]`, its source) into the page.
const ADD_HLS_JS: &str = r#"
const s = document.createElement('script');
s.textContent = arguments[0];
document.head.appendChild(s);
return typeof Hls === 'function' && Hls.isSupported();
"#;

fn require_webkit() {
    assert!(
        Path::new(players::WEBKIT_WEBDRIVER).exists() && players::minibrowser().is_some(),
        "WebKitGTK is missing: run scripts/setup.sh (installs Debian's webkit2gtk-driver)"
    );
    assert!(
        Path::new(players::XVFB).exists(),
        "Xvfb is missing: run scripts/setup.sh (installs Debian's xvfb)"
    );
}

/// One look at the video element.
struct Look {
    at: Instant,
    time: f64,
    paused: bool,
    ready_state: u64,
    error: Option<u64>,
    events: Vec<Value>,
}

fn look(browser: &WebKit) -> Result<Look, String> {
    let v = browser.execute(LOOK, &[])?;
    Ok(Look {
        at: Instant::now(),
        time: v["time"].as_f64().unwrap_or(0.0),
        paused: v["paused"].as_bool().unwrap_or(true),
        ready_state: v["readyState"].as_u64().unwrap_or(0),
        error: v["error"].as_u64(),
        events: v["events"].as_array().cloned().unwrap_or_default(),
    })
}

/// The longest wall time between looks in which `currentTime` did not move.
fn longest_freeze(looks: &[Look]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<(Instant, f64)> = None;
    for l in looks {
        match since {
            Some((at, before)) if l.time <= before => longest = longest.max(l.at - at),
            _ => since = Some((l.at, l.time)),
        }
    }
    longest
}

fn play_through_a_kill(hls_js: bool) {
    require_webkit();
    let hls_source = hls_js.then(|| {
        let path = common::repo_root().join("web/node_modules/hls.js/dist/hls.min.js");
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}): run scripts/setup.sh (npm ci --prefix web)",
                path.display()
            )
        })
    });
    let player = if hls_js {
        "hls.js in WebKit"
    } else {
        "WebKit's native HLS"
    };
    // The product's 2 s segments, and a viewer who joins a running stream
    // (a full playlist window), as in production.
    let stack = Stack::start(StackOptions::as_in_production());
    stack.wait_for_window(5);
    let page = BlankPage::start();
    let browser = WebKit::start();
    let fail = |what: String| -> ! {
        panic!(
            "{player}: {what}\n--- WebKit ---\n{}\n{}",
            browser.log_text(),
            stack.logs()
        )
    };
    browser
        .navigate(&page.url)
        .unwrap_or_else(|e| fail(format!("cannot open a page: {e}")));
    if let Some(source) = &hls_source {
        let ready = browser
            .execute(ADD_HLS_JS, &[json!(source)])
            .unwrap_or_else(|e| fail(format!("cannot add hls.js: {e}")));
        if ready != json!(true) {
            fail(format!("hls.js is not supported here: {ready}"));
        }
    }
    let url = stack.proxy_url("live01/playlist.m3u8");
    let can_play = browser
        .execute(START_PLAYER, &[json!(url), json!(hls_js)])
        .unwrap_or_else(|e| fail(format!("cannot start the player: {e}")));
    if !hls_js && can_play.as_str().unwrap_or("").is_empty() {
        fail("canPlayType('application/vnd.apple.mpegurl') is empty: WebKitGTK needs WEBKIT_GST_ENABLE_HLS_SUPPORT=1 and GStreamer's HLS plugins (gstreamer1.0-plugins-bad)".into());
    }
    let before = common::try_wait_for(PLAYING_WITHIN, || {
        let l = look(&browser).ok()?;
        (!l.paused && l.time >= PLAYED_BEFORE_KILL).then_some(l)
    })
    .unwrap_or_else(|| {
        let last = look(&browser)
            .map(|l| {
                format!(
                    "time {} paused {} readyState {} error {:?} events {:?}",
                    l.time, l.paused, l.ready_state, l.error, l.events
                )
            })
            .unwrap_or_else(|e| e);
        fail(format!(
            "did not play {PLAYED_BEFORE_KILL} s within {PLAYING_WITHIN:?}: {last}"
        ))
    });
    let events_before = before.events.len();
    if let Some(fault) = stack.fault.as_ref() {
        fault.signal("KILL");
    }
    let killed_at = Instant::now();
    let mut looks = vec![before];
    while killed_at.elapsed() < WATCH {
        std::thread::sleep(SAMPLE_EVERY);
        match look(&browser) {
            Ok(l) => looks.push(l),
            Err(e) => fail(format!("the page stopped answering: {e}")),
        }
    }
    let (first, last) = (&looks[0], &looks[looks.len() - 1]);
    let watched = last.at - first.at;
    let advanced = last.time - first.time;
    let freeze = longest_freeze(&looks);
    let later_events = &last.events[events_before.min(last.events.len())..];
    let summary = format!(
        "currentTime {:.2} s -> {:.2} s (advanced {advanced:.2} s in {watched:.1?}); longest freeze {freeze:.1?}; \
         paused {}, readyState {}, error {:?}; events before the kill {:?}, after {later_events:?}",
        first.time, last.time, last.paused, last.ready_state, last.error, &last.events[..events_before.min(last.events.len())],
    );
    eprintln!("{player} through the kill: {summary}");
    let context = format!(
        "{player}: {summary}\n--- WebKit ---\n{}\n{}",
        browser.log_text(),
        stack.logs()
    );

    assert_eq!(last.error, None, "the video element failed\n{context}");
    assert!(!last.paused, "the video paused\n{context}");
    assert!(
        looks.iter().all(|l| !l.paused && l.error.is_none()),
        "the video paused or failed during the watch\n{context}"
    );
    assert!(
        advanced >= watched.as_secs_f64() - MAX_LAG_SECONDS,
        "currentTime advanced {advanced:.2} s in {watched:.1?}\n{context}"
    );
    assert!(
        freeze <= MAX_FREEZE,
        "playback froze for {freeze:.1?}\n{context}"
    );
    // 'stalled' only says a download made no progress for 3 s, which a
    // viewer does not see while the buffer lasts (freezes are judged above),
    // and 'playing' says frames are moving (WebKit may fire the first one
    // late, after the kill, seen in CI); every other event after the kill
    // ('waiting', 'error', 'ended', 'pause', an hls.js error) is one a viewer
    // would notice.
    let bad: Vec<&Value> = later_events
        .iter()
        .filter(|e| e["event"] != "stalled" && e["event"] != "playing")
        .collect();
    assert!(
        bad.is_empty(),
        "the player waited, failed or ended after the kill: {bad:?}\n{context}"
    );
    stack.assert_switched();
}

#[test]
fn webkit_native_hls_plays_through_a_packager_kill_without_a_stall() {
    play_through_a_kill(false);
}

#[test]
fn hlsjs_in_webkit_plays_through_a_packager_kill_without_a_stall() {
    play_through_a_kill(true);
}
