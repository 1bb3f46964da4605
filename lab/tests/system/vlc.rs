//! VLC, one of the two players the user's document names, plays the proxy
//! while packager A is killed: headless VLC (Debian's `vlc-bin` and
//! `vlc-plugin-base`) is asked through its remote interface, once every
//! [`SAMPLE_EVERY`], for its position and decoding counters, and its own log
//! is read for errors and rebuffering; a control plays packager A directly
//! to show the same judgement sees the kill when the proxy is not there. Needs `scripts/setup.sh`; without VLC
//! this test fails saying so, it is never skipped as passing. Each run's record
//! of VLC's position goes to `target/test-artifacts/`.

use std::time::{Duration, Instant};

use nonstop_lab::fault::PackagerFault;
use nonstop_lab::real_players::{self, Judgement, PositionRecord, Vlc, VlcSample, SAMPLE_EVERY};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::wait::try_wait_for;
use nonstop_lab::workspace::test_artifact;

/// Wall time VLC is watched after the kill.
const WATCH: Duration = Duration::from_secs(20);
/// Wall time VLC is watched after the kill in the control, long enough for
/// VLC to use up its buffer and give up on the dead packager.
const CONTROL_WATCH: Duration = Duration::from_secs(14);
/// Budget for VLC to start and reach [`real_players::PLAYED_BEFORE_FAULT`].
const PLAYING_WITHIN: Duration = Duration::from_secs(30);

fn require_vlc() {
    if let Some(missing) = real_players::vlc_missing() {
        panic!("{missing}");
    }
}

/// What VLC showed through a kill of packager A.
struct Watch {
    stack: Stack,
    after: VlcSample,
    /// The viewer's judgement ([`real_players::judge_vlc`]).
    judgement: Judgement,
    /// VLC's whole log.
    log: String,
}

impl Watch {
    /// Everything a failure message needs: figures, VLC's log, the stack's.
    fn context(&self) -> String {
        format!(
            "{}\n--- VLC ---\n{}\n{}",
            self.judgement.summary,
            self.log,
            self.stack.logs()
        )
    }
}

/// Starts a stack, lets VLC play `path` (relative to the proxy, or to
/// packager A with `direct`) until it has played
/// [`real_players::PLAYED_BEFORE_FAULT`], SIGKILLs packager A and samples VLC for
/// `watch`. The record of its position goes to `target/test-artifacts/`.
fn watch_through_a_kill(direct: bool, watch: Duration, record_name: &str) -> Watch {
    require_vlc();
    // The product's 2 s segments, and a viewer who joins a running stream
    // (a full playlist window), as in production.
    let mut stack = Stack::start(StackOptions::as_in_production());
    stack.wait_for_window(5);
    let url = if direct {
        format!("{}/live01/playlist.m3u8", stack.packagers()[0])
    } else {
        stack.proxy_url("live01/playlist.m3u8")
    };
    let started = Instant::now();
    let vlc = Vlc::start(&url);
    let mut record = PositionRecord::default();
    let before = try_wait_for(PLAYING_WITHIN, || {
        let s = vlc.sample();
        record.push(started.elapsed(), s.time.unwrap_or(0) as f64, &describe(&s));
        (s.playing && s.time? as f64 >= real_players::PLAYED_BEFORE_FAULT).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "VLC did not play {} s within {PLAYING_WITHIN:?}:\n--- VLC ---\n{}\n{}",
            real_players::PLAYED_BEFORE_FAULT,
            vlc.log_text(),
            stack.logs()
        )
    });
    stack.inject(PackagerFault::Killed);
    let killed_at = Instant::now();
    record.push(
        started.elapsed(),
        before.time.unwrap_or(0) as f64,
        "packager A killed",
    );
    let mut samples = vec![before];
    while killed_at.elapsed() < watch {
        std::thread::sleep(SAMPLE_EVERY);
        let s = vlc.sample();
        record.push(started.elapsed(), s.time.unwrap_or(0) as f64, &describe(&s));
        samples.push(s);
    }
    let path = test_artifact(&format!("{record_name}.csv"));
    match record.save(&path) {
        Ok(()) => eprintln!("VLC's position through the kill: {}", path.display()),
        Err(e) => eprintln!("cannot save {}: {e}", path.display()),
    }
    let after = *samples.last().expect("samples were taken");
    let log = vlc.log_text();
    let judgement = real_players::judge_vlc(&samples, &log);
    eprintln!("VLC on {url}: {}", judgement.summary);
    Watch {
        stack,
        after,
        judgement,
        log,
    }
}

/// The note of one record line: playing or not, pictures shown so far.
fn describe(s: &VlcSample) -> String {
    format!(
        "playing={} shown={}",
        s.playing,
        s.stats.map_or(0, |st| st.frames_displayed)
    )
}

#[test]
fn vlc_plays_through_a_packager_kill_without_a_stall() {
    let w = watch_through_a_kill(false, WATCH, "vlc-through-a-packager-kill");
    let failures = w.judgement.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{}", w.context());
    w.stack.assert_switched();
}

/// The control: VLC playing packager A itself, without the proxy, is hurt
/// by the same kill, and the judgement above sees it (VLC stops, or logs
/// failed downloads, or the picture freezes). So the passing test is the
/// proxy's doing, not a judge that cannot see failures.
#[test]
fn without_the_proxy_vlc_is_hurt_by_the_same_kill() {
    let w = watch_through_a_kill(true, CONTROL_WATCH, "vlc-without-the-proxy");
    assert!(
        !w.after.playing || w.judgement.longest_freeze > real_players::MAX_FREEZE,
        "VLC played on through the kill without the proxy\n{}",
        w.context()
    );
    assert!(
        !w.judgement.trouble.is_empty(),
        "VLC's log shows no trouble from the kill\n{}",
        w.context()
    );
}
