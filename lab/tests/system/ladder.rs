//! A bit-rate ladder end to end: two epoch-locked workers encode a 480p
//! input into 480p and 360p from one decode, with low-latency parts; the
//! proxy serves the multivariant playlist (every rendition with its codecs
//! and size), renditions cut at the same instants (segment n of each starts
//! with an IDR at the same PTS), per-rendition health in `/status`, and a
//! viewer of the signal's URL plays on through packager A's death: the
//! probe, and GStreamer's own player (`playbin`, whose 1.22 `hlsdemux`
//! knows no `EXT-X-PART` and plays the parts' playlists as standard HLS).

use std::time::Duration;

use nonstop::hls::multivariant::Multivariant;
use nonstop::hls::PlaylistFacts;
use nonstop_lab::fault::PackagerFault;
use nonstop_lab::gst_player::GstPlayer;
use nonstop_lab::http::{get, get_json};
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::real_players::FPS;
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::ts::video_start;
use nonstop_lab::wait::wait_for;

/// Seconds the probe watches one rendition.
const WATCH_SECONDS: u32 = 16;
/// GStreamer's player is watched this long after the kill, then stopped.
const GST_WATCH_AFTER_FAULT: Duration = Duration::from_secs(12);
/// Its watch at most: startup, [`PLAYING_WITHIN`], and the above.
const GST_WATCH_AT_MOST: Duration = Duration::from_secs(60);
/// Media played before packager A is killed.
const PLAYED_BEFORE_FAULT: Duration = Duration::from_secs(4);
/// The renditions a 854x480 input gets from the recommended ladder.
const RENDITIONS: [&str; 2] = ["480p.m3u8", "360p.m3u8"];

fn media(stack: &Stack, rendition: &str) -> Option<PlaylistFacts> {
    let (status, body) = get(&stack.proxy_url(&format!("live01/{rendition}")))?;
    (status == 200).then(|| PlaylistFacts::parse(&body).ok())?
}

/// Two epoch-locked workers cutting the recommended ladder, packager A behind
/// a fault proxy.
fn redundant_ladder() -> Stack {
    Stack::start(StackOptions {
        redundant: true,
        fault_front: true,
        ..StackOptions::default().with_recommended_ladder()
    })
}

/// The proxy's multivariant playlist once it lists every rendition.
fn wait_for_ladder(stack: &Stack) -> Multivariant {
    wait_for(
        Duration::from_secs(40),
        "the proxy's multivariant playlist",
        || {
            let (status, body) = get(&stack.proxy_url("live01/playlist.m3u8"))?;
            let ladder = Multivariant::parse(&body).filter(|_| status == 200)?;
            (ladder.uris().count() == RENDITIONS.len()).then_some(ladder)
        },
    )
}

#[test]
fn a_ladder_is_served_rendition_by_rendition_aligned_and_fails_over() {
    let mut stack = redundant_ladder();
    let ladder = wait_for_ladder(&stack);
    let context = stack.logs();
    assert_eq!(ladder.uris().collect::<Vec<_>>(), RENDITIONS, "{context}");
    for (variant, size) in ladder.variants.iter().zip(["854x480", "640x360"]) {
        let attrs = &variant.attributes;
        assert!(attrs.contains(&format!("RESOLUTION={size}")), "{attrs}");
        assert!(
            attrs.contains("CODECS=\"avc1.") && attrs.contains("mp4a.40.2"),
            "{attrs}"
        );
        assert!(
            attrs.contains("BANDWIDTH=") && attrs.contains("AVERAGE-BANDWIDTH="),
            "{attrs}"
        );
    }

    // Both renditions list segment n: each starts with an IDR at one PTS.
    let (high, low) = wait_for(Duration::from_secs(20), "both renditions listed", || {
        Some((media(&stack, RENDITIONS[0])?, media(&stack, RENDITIONS[1])?))
    });
    let common = high
        .segments
        .iter()
        .rev()
        .find(|s| low.segments.iter().any(|l| l.sequence == s.sequence))
        .map(|s| s.sequence)
        .expect("a segment both renditions list");
    let start = |facts: &PlaylistFacts| {
        let uri = &facts
            .segments
            .iter()
            .find(|s| s.sequence == common)
            .expect("listed")
            .uri;
        let (status, bytes) = get(&stack.proxy_url(&format!("live01/{uri}"))).expect("segment");
        assert_eq!(status, 200, "{uri}");
        video_start(&bytes).unwrap_or_else(|| panic!("{uri} has no video"))
    };
    let (a, b) = (start(&high), start(&low));
    assert!(
        a.idr && b.idr,
        "segment {common} starts with an IDR in both: {a:?} {b:?}"
    );
    assert_eq!(
        a.pts, b.pts,
        "segment {common} starts at one instant in both"
    );
    // Low latency in each rendition, reporting its sibling.
    let (_, body) = get(&stack.proxy_url("live01/480p.m3u8")).expect("480p");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("#EXT-X-PART:") && text.contains("#EXT-X-PRELOAD-HINT"),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-RENDITION-REPORT:URI=\"360p.m3u8\""),
        "{text}"
    );

    // The proxy judges each rendition: both up (served, with a fresh twin).
    wait_for(
        Duration::from_secs(20),
        "both renditions up in /status",
        || {
            let status = get_json(&stack.proxy_url("status"));
            let renditions = status["signals"][0]["renditions"].as_array()?.clone();
            (renditions.len() == RENDITIONS.len() && renditions.iter().all(|r| r["state"] == "up"))
                .then_some(())
        },
    );

    // A viewer of the signal's URL (a player picks the first rendition of
    // the multivariant playlist) plays on through packager A's death.
    let probe = Probe::start(&stack.proxy_url("live01/playlist.m3u8"), WATCH_SECONDS);
    probe.wait_playing(PLAYED_BEFORE_FAULT, PLAYING_WITHIN);
    stack.inject(PackagerFault::Killed);
    let (report, probe_log) = probe.finish();
    let context = format!("{report:#?}\n--- probe ---\n{probe_log}\n{}", stack.logs());
    report.assert_unnoticed(&context);
    assert!(report.segments_played >= 10, "too few segments\n{context}");
    assert!(probe_log.contains("playing 480p.m3u8"), "{context}");
}

/// GStreamer's playbin plays the ladder's multivariant playlist (its
/// renditions' playlists carry parts it ignores) and plays on through
/// packager A's death: pictures never more than 0.5 s apart, no failed
/// request, no error.
#[test]
fn playbin_plays_the_ladder_through_a_packager_kill() {
    let mut stack = redundant_ladder();
    wait_for_ladder(&stack);
    let player = GstPlayer::start(&stack.proxy_url("live01/playlist.m3u8"), GST_WATCH_AT_MOST);
    let before = player.wait_playing(PLAYED_BEFORE_FAULT, PLAYING_WITHIN);
    stack.inject(PackagerFault::Killed);
    std::thread::sleep(GST_WATCH_AFTER_FAULT);
    let (report, log) = player.stop();
    let context = format!("{report:#}\n--- gstplayer ---\n{log}\n{}", stack.logs());
    assert_eq!(report["started"], true, "{context}");
    assert!(report["fatal_error"].is_null(), "{context}");
    assert_eq!(report["stalls"], 0, "{context}");
    assert_eq!(report["failed_requests"], 0, "{context}");
    // No stall up to the stop means pictures to the end; and enough of them
    // after the kill (25 fps) to say it played on, not sat on a buffer.
    let frames = report["frames"].as_u64().unwrap_or(0) as f64;
    let after = frames / FPS - before.media_played.as_secs_f64();
    assert!(
        after >= 10.0,
        "{after:.1} s played after the kill\n{context}"
    );
    stack.assert_switched();
}
