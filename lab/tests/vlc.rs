//! VLC, one of the two players the user's document names, plays the proxy
//! while packager A is killed: headless VLC (Debian's `vlc-bin` and
//! `vlc-plugin-base`) is asked through its remote interface, once every
//! [`SAMPLE_EVERY`], for its position and decoding counters, and its own log
//! is read for errors and rebuffering; a control plays packager A directly
//! to show the same judgement sees the kill when the proxy is not there. Needs `scripts/setup.sh`; without VLC
//! this test fails saying so, it is never skipped as passing.

use nonstop_lab::players::{self, Vlc, VlcSample};
use nonstop_lab::support as common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Stack, StackOptions};

/// Wall time VLC is watched after the kill.
const WATCH: Duration = Duration::from_secs(20);
/// Wall time VLC is watched after the kill in the control, long enough for
/// VLC to use up its buffer and give up on the dead packager.
const CONTROL_WATCH: Duration = Duration::from_secs(14);
/// Media VLC plays before packager A is killed (VLC reports whole seconds).
const PLAYED_BEFORE_KILL: u64 = 4;
/// Budget for VLC to start and reach `PLAYED_BEFORE_KILL`.
const PLAYING_WITHIN: Duration = Duration::from_secs(30);
/// How often VLC is asked how it is doing.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest time without a new picture shown that still counts as smooth:
/// more than this is a freeze a viewer sees.
const MAX_FREEZE: Duration = Duration::from_millis(2500);
/// The stream's frame rate (the lab's inputs are 25 fps).
const FPS: f64 = 25.0;
/// Share of the watch's pictures that must be shown: a viewer would notice
/// less (VLC drops late pictures rather than stalling).
const MIN_SHOWN_SHARE: f64 = 0.85;

fn require_vlc() {
    assert!(
        Path::new(players::CVLC).exists(),
        "VLC is missing: run scripts/setup.sh (installs Debian's vlc-bin and vlc-plugin-base)"
    );
    assert!(
        players::multiarch_file(players::VLC_ADAPTIVE_PLUGIN).is_some(),
        "VLC's HLS reader is missing: run scripts/setup.sh (installs vlc-plugin-base)"
    );
}

/// The longest stretch, between two samples, in which no new picture was
/// shown.
fn longest_freeze(samples: &[VlcSample]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<(Instant, u64)> = None;
    for s in samples {
        let Some(shown) = s.stats.map(|st| st.frames_displayed) else {
            continue;
        };
        match since {
            Some((at, before)) if shown == before => {
                longest = longest.max(s.at - at);
            }
            _ => since = Some((s.at, shown)),
        }
    }
    longest
}

/// What VLC showed through a kill of packager A.
struct Watch {
    stack: Stack,
    before: VlcSample,
    after: VlcSample,
    /// Wall time between the two.
    watched: Duration,
    /// Pictures shown in that time.
    shown: u64,
    freeze: Duration,
    /// VLC's whole log.
    log: String,
    /// One line of figures, for messages.
    summary: String,
}

impl Watch {
    /// Everything a failure message needs: figures, VLC's log, the stack's.
    fn context(&self) -> String {
        format!(
            "{}\n--- VLC ---\n{}\n{}",
            self.summary,
            self.log,
            self.stack.logs()
        )
    }
}

/// Starts a stack, lets VLC play `path` (relative to the proxy, or to
/// packager A with `direct`) until it has played [`PLAYED_BEFORE_KILL`],
/// SIGKILLs packager A and samples VLC for `watch`.
fn watch_through_a_kill(direct: bool, watch: Duration) -> Watch {
    require_vlc();
    // The product's 2 s segments, and a viewer who joins a running stream
    // (a full playlist window), as in production.
    let stack = Stack::start(StackOptions::as_in_production());
    stack.wait_for_window(5);
    let url = if direct {
        format!("{}/live01/playlist.m3u8", stack.packagers[0])
    } else {
        stack.proxy_url("live01/playlist.m3u8")
    };
    let vlc = Vlc::start(&url);
    let before = common::try_wait_for(PLAYING_WITHIN, || {
        let s = vlc.sample();
        (s.playing && s.time? >= PLAYED_BEFORE_KILL).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "VLC did not play {PLAYED_BEFORE_KILL} s within {PLAYING_WITHIN:?}:\n--- VLC ---\n{}\n{}",
            vlc.log_text(),
            stack.logs()
        )
    });
    let rounds_before = players::vlc_buffering_rounds(&vlc.log_text());
    if let Some(fault) = stack.fault.as_ref() {
        fault.signal("KILL");
    }
    let killed_at = Instant::now();
    let mut samples = vec![before];
    while killed_at.elapsed() < watch {
        std::thread::sleep(SAMPLE_EVERY);
        samples.push(vlc.sample());
    }
    let after = *samples.last().expect("samples were taken");
    let log = vlc.log_text();
    let stats_before = before.stats.unwrap_or_default();
    let stats_after = after.stats.unwrap_or_default();
    let freeze = longest_freeze(&samples);
    let watched = after.at - before.at;
    let shown = stats_after
        .frames_displayed
        .saturating_sub(stats_before.frames_displayed);
    let summary = format!(
        "VLC on {url}: time {:?} s -> {:?} s over {watched:.1?}; pictures shown {shown}; longest freeze {freeze:.1?}; \
         playing at the end {}; stats before {stats_before:?}, after {stats_after:?}; buffering rounds {} (before the kill {rounds_before}); \
         trouble {:?}",
        before.time,
        after.time,
        after.playing,
        players::vlc_buffering_rounds(&log),
        players::vlc_trouble(&log),
    );
    eprintln!("{summary}");
    Watch {
        stack,
        before,
        after,
        watched,
        shown,
        freeze,
        log,
        summary,
    }
}

#[test]
fn vlc_plays_through_a_packager_kill_without_a_stall() {
    let w = watch_through_a_kill(false, WATCH);
    let context = w.context();
    let (before, after, watched, shown, freeze) = (w.before, w.after, w.watched, w.shown, w.freeze);
    assert!(after.playing, "VLC stopped playing\n{context}");
    let advanced = after
        .time
        .unwrap_or(0)
        .saturating_sub(before.time.unwrap_or(0));
    assert!(
        advanced as f64 >= watched.as_secs_f64() - 2.0,
        "VLC's position advanced {advanced} s in {watched:.1?}\n{context}"
    );
    assert!(
        shown as f64 >= watched.as_secs_f64() * FPS * MIN_SHOWN_SHARE,
        "VLC showed {shown} pictures in {watched:.1?}\n{context}"
    );
    assert!(
        freeze <= MAX_FREEZE,
        "the picture froze for {freeze:.1?}\n{context}"
    );
    assert_eq!(
        players::vlc_buffering_rounds(&w.log),
        1,
        "VLC ran dry and rebuffered\n{context}"
    );
    let trouble = players::vlc_trouble(&w.log);
    assert!(
        trouble.is_empty(),
        "VLC logged trouble: {trouble:#?}\n{context}"
    );
    let stats_after = after.stats.unwrap_or_default();
    assert_eq!(stats_after.demux_corrupted, 0, "corrupt packets\n{context}");
    assert_eq!(stats_after.discontinuities, 0, "discontinuities\n{context}");
    w.stack.assert_switched();
}

/// The control: VLC playing packager A itself, without the proxy, is hurt
/// by the same kill, and the judgement above sees it (VLC stops, or logs
/// failed downloads, or the picture freezes). So the passing test is the
/// proxy's doing, not a judge that cannot see failures.
#[test]
fn without_the_proxy_vlc_is_hurt_by_the_same_kill() {
    let w = watch_through_a_kill(true, CONTROL_WATCH);
    let trouble = players::vlc_trouble(&w.log);
    assert!(
        !w.after.playing || w.freeze > MAX_FREEZE,
        "VLC played on through the kill without the proxy\n{}",
        w.context()
    );
    assert!(
        !trouble.is_empty(),
        "VLC's log shows no trouble from the kill\n{}",
        w.context()
    );
}
