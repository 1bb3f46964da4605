//! Property tests: playlist parsing and writing, path handling, report
//! decoding and the failover state machine never panic on any input, and keep
//! their promises on every input proptest can find.

use std::time::{Duration, Instant};

use nonstop::hls::{classify_media_file, is_valid_signal_name, PlaylistFacts};
use nonstop::net::proxy::failover::Failover;
use nonstop::net::reporter::Report;
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
            playlist.push(LivePlaylist::segment_name(seq), Duration::from_millis(ms as u64));
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
    fn failover_never_serves_backwards_whatever_it_observes(
        events in proptest::collection::vec((0usize..3, 0u64..50, any::<bool>(), 0u64..3000), 0..120),
    ) {
        let packagers: Vec<String> = (0..3).map(|i| format!("http://p{i}:80")).collect();
        let mut failover = Failover::new(&packagers);
        let t0 = Instant::now();
        let mut served: Option<u64> = None;
        let mut now = t0;
        for (who, newest, fails, step_ms) in events {
            now += Duration::from_millis(step_ms);
            if fails {
                failover.observe_failure(&packagers[who], "boom");
            } else {
                failover.observe_playlist(&packagers[who], Some(newest), Duration::from_secs(2), now);
            }
            let (order, _) = failover.plan(now);
            prop_assert_eq!(order.len(), 3, "every packager stays in the plan");
            if failover.admit_playlist(Some(newest)) {
                prop_assert!(served.is_none_or(|s| newest >= s));
                served = Some(newest);
            } else {
                prop_assert!(served.is_some_and(|s| newest < s));
            }
        }
    }
}
