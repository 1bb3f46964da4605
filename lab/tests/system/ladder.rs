//! A bit-rate ladder end to end: two epoch-locked workers encode a 480p
//! input into 480p and 360p from one decode, with low-latency parts; the
//! proxy serves the multivariant playlist (every rendition with its codecs
//! and size), renditions cut at the same instants (segment n of each starts
//! with an IDR at the same PTS), per-rendition health in `/status`, and a
//! viewer of the signal's URL plays on through packager A's death.

use std::time::Duration;

use nonstop::hls::multivariant::Multivariant;
use nonstop::hls::PlaylistFacts;
use nonstop_lab::fault::PackagerFault;
use nonstop_lab::http::{get, get_json};
use nonstop_lab::input::LADDER_INPUT_SIZE;
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::ts::video_start;
use nonstop_lab::wait::wait_for;

/// Seconds the probe watches one rendition.
const WATCH_SECONDS: u32 = 16;
/// Media played before packager A is killed.
const PLAYED_BEFORE_FAULT: Duration = Duration::from_secs(4);
/// The renditions a 854x480 input gets from the recommended ladder.
const RENDITIONS: [&str; 2] = ["480p.m3u8", "360p.m3u8"];

fn media(stack: &Stack, rendition: &str) -> Option<PlaylistFacts> {
    let (status, body) = get(&stack.proxy_url(&format!("live01/{rendition}")))?;
    (status == 200).then(|| PlaylistFacts::parse(&body).ok())?
}

#[test]
fn a_ladder_is_served_rendition_by_rendition_aligned_and_fails_over() {
    let mut stack = Stack::start(StackOptions {
        ladder: Some("recommended".to_string()),
        input_size: LADDER_INPUT_SIZE,
        redundant: true,
        fault_front: true,
        ..StackOptions::default()
    });
    let ladder = wait_for(
        Duration::from_secs(40),
        "the proxy's multivariant playlist",
        || {
            let (status, body) = get(&stack.proxy_url("live01/playlist.m3u8"))?;
            let ladder = Multivariant::parse(&body).filter(|_| status == 200)?;
            (ladder.uris().count() == RENDITIONS.len()).then_some(ladder)
        },
    );
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
