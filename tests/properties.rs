//! Property tests: playlist parsing and writing, path handling, report
//! decoding and the failover state machine never panic on any input, and keep
//! their promises on every input proptest can find. The failover's promise is
//! stated as what a viewer sees: the playlists it lets through never go back
//! in time, and one at least as new as anything shown is never held back,
//! whatever the proxy observed, however routes changed and time passed.

use std::time::{Duration, Instant};

use nonstop::api::Report;
use nonstop::api::{PackagerHealth, ServingState};
use nonstop::hls::{classify_media_file, is_valid_signal_name, MediaKind, PlaylistFacts};
use nonstop::net::proxy::failover::{Failover, LiveEdge};
use nonstop::pipeline::playlist::LivePlaylist;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn playlist_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = PlaylistFacts::parse(&bytes);
    }

    #[test]
    fn playlist_like_text_never_panics(lines in proptest::collection::vec(
        prop_oneof![
            Just("#EXTM3U".to_string()),
            Just("#EXT-X-TARGETDURATION:2".to_string()),
            "#EXT-X-MEDIA-SEQUENCE:[0-9-]{0,25}",
            "#EXTINF:[0-9.e-]{0,12},.{0,8}",
            Just("#EXT-X-DISCONTINUITY".to_string()),
            Just("#EXT-X-ENDLIST".to_string()),
            "[a-z0-9/._-]{0,20}",
            ".{0,30}",
        ], 0..30)) {
        let text = lines.join("\n");
        if let Ok(facts) = PlaylistFacts::parse(text.as_bytes()) {
            for (i, s) in facts.segments.iter().enumerate() {
                prop_assert_eq!(s.sequence, facts.media_sequence + i as u64);
            }
        }
    }

    #[test]
    fn accepted_media_names_never_leave_the_folder(name in ".{0,40}") {
        if classify_media_file(&name).is_some() {
            prop_assert!(!name.contains('/') && !name.contains('\\'));
            prop_assert!(!name.contains("..") && !name.contains('\0'));
            prop_assert!(!name.starts_with('.'));
            let root = std::path::Path::new("/srv/output/live01");
            let joined = root.join(&name);
            prop_assert_eq!(joined.parent(), Some(root));
        }
    }

    #[test]
    fn signal_names_are_exactly_the_contract(name in ".{0,70}") {
        let expected = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        prop_assert_eq!(is_valid_signal_name(&name), expected);
    }

    #[test]
    fn report_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(report) = serde_json::from_slice::<Report>(&bytes) {
            let _ = report.validate(&["http://localhost:8080".to_string()]);
        }
    }

    #[test]
    fn valid_reports_name_only_allowed_packagers(
        signal in "[A-Za-z0-9_-]{0,70}",
        packagers in proptest::collection::vec(
            prop_oneof![
                Just("http://localhost:8080".to_string()),
                Just("http://localhost:8080/".to_string()),
                Just("http://localhost:9999".to_string()),
                Just("https://localhost:8080".to_string()),
                "[a-z:/.0-9]{0,30}",
            ], 0..4),
    ) {
        let report = Report { signal: signal.clone(), packagers: packagers.clone() };
        if report.validate(&["http://localhost:8080".to_string()]).is_ok() {
            prop_assert!(is_valid_signal_name(&signal));
            for p in &packagers {
                prop_assert!(p.trim_end_matches('/') == "http://localhost:8080", "{}", p);
            }
        }
    }

    #[test]
    fn the_live_playlist_round_trips_and_keeps_its_promises(
        steps in proptest::collection::vec((0u32..2000, any::<bool>()), 1..80),
        window in 3usize..10,
    ) {
        let mut playlist = LivePlaylist::new(2, window, 4);
        let mut pushed = 0u64;
        for (ms, restart) in steps {
            if restart {
                playlist.mark_discontinuity();
            }
            let seq = playlist.next_sequence();
            playlist.push(
                LivePlaylist::segment_name(seq),
                Duration::from_millis(ms as u64),
                std::time::SystemTime::now(),
            );
            pushed += 1;
        }
        let facts = PlaylistFacts::parse(&playlist.render()).expect("our playlist parses");
        prop_assert_eq!(facts.target_duration, Duration::from_secs(2));
        prop_assert!(!facts.end_list);
        prop_assert_eq!(facts.segments.len() as u64, pushed.min(window as u64));
        prop_assert_eq!(facts.newest_sequence(), Some(pushed - 1));
        for s in &facts.segments {
            prop_assert_eq!(&s.uri, &LivePlaylist::segment_name(s.sequence));
            prop_assert!(s.duration <= facts.target_duration);
        }
    }

    #[test]
    fn a_viewer_never_sees_the_stream_go_back_and_never_misses_a_newer_playlist(
        steps in proptest::collection::vec(failover_step(), 0..160),
    ) {
        let all: Vec<String> = (0..PACKAGERS).map(|i| format!("http://p{i}:80")).collect();
        let mut failover = Failover::new(&all);
        let mut routed = all.clone();
        let mut now = Instant::now();
        let (start, wall) = (now, std::time::SystemTime::now());
        // What the viewer has been shown: the newest segment of each playlist
        // served, in order.
        let mut shown: Vec<Option<u64>> = Vec::new();
        for step in steps {
            match step {
                Step::Playlist { who, newest, target_ms, edge_lag_ms } => failover.observe_playlist(
                    &all[who],
                    newest,
                    Duration::from_millis(target_ms),
                    edge_lag_ms.map(|ms| LiveEdge {
                        newest_end: wall + (now - start) - Duration::from_millis(ms),
                        read_at: wall + (now - start),
                    }),
                    now,
                ),
                Step::Failure { who, segment } => {
                    let kind = if segment { MediaKind::Segment } else { MediaKind::Playlist };
                    failover.observe_failure(&all[who], kind, "boom", now)
                }
                Step::SegmentOk { who } => failover.observe_segment(&all[who]),
                Step::Routes { mask } => {
                    routed = all
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, p)| p.clone())
                        .collect();
                    failover.set_packagers(&routed);
                }
                Step::Plan => {
                    let (mut order, _) = failover.plan(now);
                    order.sort();
                    let mut expected = routed.clone();
                    expected.sort();
                    prop_assert_eq!(order, expected, "every routed packager is tried");
                    let status = failover.status(now);
                    let nobody_serviceable = status
                        .iter()
                        .all(|p| matches!(p.health, PackagerHealth::Stale | PackagerHealth::Failing));
                    prop_assert_eq!(
                        failover.signal_health(now) == ServingState::Down,
                        nobody_serviceable,
                        "down exactly when every packager is stale or failing: {:?}",
                        status
                    );
                }
                Step::Wait { ms } => now += Duration::from_millis(ms),
                Step::Serve { newest } => {
                    let newest_shown = shown.iter().flatten().max().copied();
                    let admitted = failover.admit_playlist(newest);
                    if admitted {
                        shown.push(newest);
                    }
                    let at_least_as_new = match (newest_shown, newest) {
                        (None, _) => true,
                        (Some(old), Some(new)) => new >= old,
                        (Some(_), None) => false,
                    };
                    prop_assert!(
                        !at_least_as_new || admitted,
                        "refused newest {:?} though the viewer was shown at most {:?}",
                        newest,
                        newest_shown
                    );
                }
            }
            // What the viewer saw never goes back: each playlist's newest
            // segment is at least the one before, and once a segment was
            // shown, an empty playlist never is.
            for pair in shown.windows(2) {
                let ok = match (pair[0], pair[1]) {
                    (Some(before), Some(after)) => after >= before,
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                prop_assert!(ok, "the viewer was shown {:?} then {:?}", pair[0], pair[1]);
            }
        }
    }
}

/// Packagers the failover property juggles.
const PACKAGERS: usize = 3;

/// One thing that happens to a signal's failover: what the proxy observes,
/// a route change, a plan, time passing, or a playlist offered to a viewer.
#[derive(Debug, Clone)]
enum Step {
    Playlist {
        who: usize,
        newest: Option<u64>,
        target_ms: u64,
        /// How far its dated newest segment ended before the wall clock at
        /// the read; `None` for an undated playlist.
        edge_lag_ms: Option<u64>,
    },
    /// A fetch (of a segment, else a playlist) failed.
    Failure {
        who: usize,
        segment: bool,
    },
    /// A segment was fetched whole.
    SegmentOk {
        who: usize,
    },
    /// The routes now list the packagers whose bit is set.
    Routes {
        mask: u8,
    },
    Plan,
    Wait {
        ms: u64,
    },
    /// A playlist whose newest segment is `newest` is about to be served.
    Serve {
        newest: Option<u64>,
    },
}

fn failover_step() -> impl Strategy<Value = Step> {
    let newest = || proptest::option::weighted(0.9, 0u64..60);
    prop_oneof![
        4 => (0..PACKAGERS, newest(), 0u64..4000, proptest::option::of(0u64..20_000))
            .prop_map(|(who, newest, target_ms, edge_lag_ms)| Step::Playlist { who, newest, target_ms, edge_lag_ms }),
        2 => (0..PACKAGERS, any::<bool>()).prop_map(|(who, segment)| Step::Failure { who, segment }),
        1 => (0..PACKAGERS).prop_map(|who| Step::SegmentOk { who }),
        1 => (0u8..1 << PACKAGERS).prop_map(|mask| Step::Routes { mask }),
        2 => Just(Step::Plan),
        2 => (0u64..5000).prop_map(|ms| Step::Wait { ms }),
        4 => newest().prop_map(|newest| Step::Serve { newest }),
    ]
}
