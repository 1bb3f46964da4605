//! Two workers that never talk, started apart on the same input, write
//! interchangeable segments: same names, numbers, dates and timestamps, so a
//! packager (or a player) can take segment n from one and n+1 from the other;
//! a worker killed and restarted rejoins the wall clock with the same numbers.
//! The two run different codec threads (`CODEC_THREADS` 1 and 0, the codecs'
//! choice): a fleet upgraded one host at a time still interchanges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nonstop_lab::demux::demux_segment;
use nonstop_lab::input::make_input;
use nonstop_lab::ports::free_port;
use nonstop_lab::process::{Service, Signal};
use nonstop_lab::stack_lock::ExclusiveStack;
use nonstop_lab::ts::{continuity_breaks, video_start, VideoStart};
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::bin;

/// The segment length both workers run with (seconds).
const SEGMENT_SECONDS: u64 = 1;
/// One frame of the test input (25 fps), in 90 kHz ticks: the tolerance on
/// every timestamp comparison.
const FRAME_TICKS: i64 = 90_000 / 25;
/// One frame, as a duration.
const FRAME: Duration = Duration::from_millis(40);
/// MPEG-TS PTS wrap at 2^33.
const PTS_WRAP: i64 = 1 << 33;
/// How long the second worker starts after the first.
const STAGGER: Duration = Duration::from_millis(2_500);
/// Segments both workers must have written before they are compared.
const COMMON_SEGMENTS: usize = 4;

/// One listed segment as the test reads it, with its bytes read at once
/// (old segments are deleted later).
struct Seen {
    sequence: u64,
    duration: Duration,
    /// `EXT-X-PROGRAM-DATE-TIME` in ms since the Unix epoch.
    pdt_ms: i64,
    start: VideoStart,
    discontinuity: bool,
    bytes: Vec<u8>,
}

/// Worker A's codec threads: the default, one per codec.
const THREADS_A: &str = "1";
/// Worker B's codec threads: 0, the codecs choose (x264 slices its frames).
const THREADS_B: &str = "0";

fn worker(input: &Path, output: &Path, logs: &Path, codec_threads: &str) -> Service {
    std::fs::create_dir_all(logs).expect("mkdir logs");
    let args = vec![
        "--input".to_string(),
        input.display().to_string(),
        "--output".to_string(),
        output.display().to_string(),
        "--segment-seconds".to_string(),
        SEGMENT_SECONDS.to_string(),
        "--metrics-port".to_string(),
        free_port().to_string(),
        "--codec-threads".to_string(),
        codec_threads.to_string(),
    ];
    Service::start("worker", &bin("worker"), &args, &[], logs)
}

/// Reads the playlist in `dir` and every listed segment not seen yet.
fn collect(dir: &Path, seen: &mut BTreeMap<String, Seen>) {
    let Ok(bytes) = std::fs::read(dir.join("playlist.m3u8")) else {
        return;
    };
    let Ok(playlist) = m3u8_rs::parse_media_playlist_res(&bytes) else {
        return;
    };
    for (i, s) in playlist.segments.iter().enumerate() {
        if seen.contains_key(&s.uri) {
            continue;
        }
        let Ok(ts) = std::fs::read(dir.join(&s.uri)) else {
            continue;
        };
        let pdt = s
            .program_date_time
            .unwrap_or_else(|| panic!("{} has no EXT-X-PROGRAM-DATE-TIME", s.uri));
        let start = video_start(&ts).unwrap_or_else(|| panic!("{} has no video", s.uri));
        seen.insert(
            s.uri.clone(),
            Seen {
                sequence: playlist.media_sequence + i as u64,
                // EXTINF is written in milliseconds; m3u8-rs reads it as an
                // f32 (0.96 becomes 0.959999979): back to the written value.
                duration: Duration::from_millis((f64::from(s.duration) * 1000.0).round() as u64),
                pdt_ms: pdt.timestamp_millis(),
                start,
                discontinuity: s.discontinuity,
                bytes: ts,
            },
        );
    }
}

/// `b - a` on the 33-bit PTS clock, wrap-aware.
fn pts_diff(a: u64, b: u64) -> i64 {
    let d = (b as i64 - a as i64).rem_euclid(PTS_WRAP);
    if d > PTS_WRAP / 2 {
        d - PTS_WRAP
    } else {
        d
    }
}

/// Reads both folders until they share `at_least` segments numbered from
/// `from` on.
fn collect_common(
    a: &Path,
    b: &Path,
    from: u64,
    at_least: usize,
) -> (BTreeMap<String, Seen>, BTreeMap<String, Seen>) {
    let (mut seen_a, mut seen_b) = (BTreeMap::new(), BTreeMap::new());
    wait_for(
        Duration::from_secs(60),
        "segments written by both workers",
        || {
            collect(a, &mut seen_a);
            collect(b, &mut seen_b);
            let common = seen_a
                .iter()
                .filter(|(k, s)| s.sequence >= from && seen_b.contains_key(*k))
                .count();
            (common >= at_least).then_some(())
        },
    );
    (seen_a, seen_b)
}

/// Checks every segment of either worker against the wall clock.
fn check_on_the_grid(seen: &BTreeMap<String, Seen>) {
    let segment = Duration::from_secs(SEGMENT_SECONDS);
    for (name, s) in seen {
        assert_eq!(
            s.sequence as i64,
            s.pdt_ms / (SEGMENT_SECONDS as i64 * 1000),
            "{name}: media sequence is not floor(PDT / L)"
        );
        assert_eq!(s.pdt_ms % 1000, 0, "{name}: PDT is not on a boundary");
        assert!(s.start.idr, "{name} does not start with an IDR frame");
        // Cut on the grid: L within a frame (the input's frames need not
        // fall on the grid after a loop seam), so within the target once
        // rounded (RFC 8216 4.3.3.1).
        assert!(
            s.duration.abs_diff(segment) <= FRAME,
            "{name} lasts {:?}",
            s.duration
        );
        let expected = ((s.pdt_ms as i128 * 90) % PTS_WRAP as i128) as u64;
        assert!(
            pts_diff(expected, s.start.pts).abs() <= FRAME_TICKS,
            "{name}: first PTS {} is not the time since the epoch ({expected})",
            s.start.pts
        );
    }
}

/// Compares the segments both workers wrote (numbered from `from` on) and
/// joins A(n) with B(n+1); returns how many were compared, the worst first
/// PTS difference (ticks) and the worst EXTINF difference.
fn compare(
    seen_a: &BTreeMap<String, Seen>,
    seen_b: &BTreeMap<String, Seen>,
    from: u64,
) -> (usize, i64, Duration) {
    let mut compared = 0;
    let mut worst_pts = 0i64;
    let mut worst_extinf = Duration::ZERO;
    for (name, sa) in seen_a.iter().filter(|(_, s)| s.sequence >= from) {
        let Some(sb) = seen_b.get(name) else {
            continue;
        };
        compared += 1;
        assert_eq!(sa.sequence, sb.sequence, "{name}: media sequence differs");
        assert_eq!(sa.pdt_ms, sb.pdt_ms, "{name}: PROGRAM-DATE-TIME differs");
        let extinf = sa.duration.abs_diff(sb.duration);
        worst_extinf = worst_extinf.max(extinf);
        assert!(
            extinf <= FRAME,
            "{name}: EXTINF {:?} vs {:?}",
            sa.duration,
            sb.duration
        );
        let pts = pts_diff(sa.start.pts, sb.start.pts).abs();
        worst_pts = worst_pts.max(pts);
        assert!(
            pts <= FRAME_TICKS,
            "{name}: first PTS {} vs {}",
            sa.start.pts,
            sb.start.pts
        );

        // A(n) then B(n+1): one continuous timeline, one playable stream.
        let next = seen_b.values().find(|s| s.sequence == sa.sequence + 1);
        if let Some(nb) = next {
            let step = pts_diff(sa.start.pts, nb.start.pts);
            let expected = (sa.duration.as_secs_f64() * 90_000.0).round() as i64;
            assert!(
                (step - expected).abs() <= FRAME_TICKS,
                "{name} from A then the next from B: PTS step {step}, A's duration {expected}"
            );
            let mut joined = sa.bytes.clone();
            joined.extend_from_slice(&nb.bytes);
            // Continuity counters run on across the workers, as within one
            // (VLC counts each break as a discontinuity).
            let breaks = continuity_breaks(&joined);
            assert!(
                breaks.is_empty(),
                "{name} from A then the next from B: continuity counters break: {breaks:?}"
            );
            let report = demux_segment(&joined).expect("A(n)+B(n+1) demuxes");
            let alone = demux_segment(&sa.bytes).expect("A(n) demuxes").video_frames
                + demux_segment(&nb.bytes)
                    .expect("B(n+1) demuxes")
                    .video_frames;
            assert_eq!(
                report.video_frames, alone,
                "frames lost joining {name} and the next"
            );
            assert!(report.has_aac(), "no sound joining {name} and the next");
        }
    }
    (compared, worst_pts, worst_extinf)
}

#[test]
fn two_workers_started_apart_write_interchangeable_segments() {
    // Two workers encode: never beside a whole stack (see `ExclusiveStack`).
    let _turn = ExclusiveStack::acquire();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");
    // 3 s with audio: both branches, and loops every three segments.
    make_input(&input.join("live01.mp4"), 3, true);
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    let (out_a, out_b) = (path("output-a/live01"), path("output-b/live01"));

    let mut a = worker(&input, &path("output-a"), &path("logs-a"), THREADS_A);
    std::thread::sleep(STAGGER);
    let mut b = worker(&input, &path("output-b"), &path("logs-b"), THREADS_B);

    let (seen_a, seen_b) = collect_common(&out_a, &out_b, 0, COMMON_SEGMENTS);
    check_on_the_grid(&seen_a);
    check_on_the_grid(&seen_b);
    let (compared, worst_pts, worst_extinf) = compare(&seen_a, &seen_b, 0);
    assert!(
        compared >= COMMON_SEGMENTS,
        "only {compared} segments in common"
    );
    eprintln!(
        "started {STAGGER:?} apart: compared {compared} segments, worst first-PTS difference {worst_pts} ticks, worst EXTINF difference {worst_extinf:?}"
    );

    // kill -9 A (no clean shutdown), then start it again on its folder: it
    // rejoins the wall clock, never reusing a number, with no discontinuity
    // (its timestamps follow the grid): its playlist is B's to the letter,
    // so a player may take either copy.
    a.signal(Signal::Kill);
    assert!(
        a.wait_gone(Duration::from_secs(10)),
        "worker A survived kill -9"
    );
    // What A listed when it died (it may have written more since read).
    let mut seen_a = seen_a;
    collect(&out_a, &mut seen_a);
    let newest_before = seen_a.values().map(|s| s.sequence).max().unwrap_or(0);
    std::thread::sleep(STAGGER);
    let mut again = worker(&input, &path("output-a"), &path("logs-a-again"), THREADS_A);
    let (seen_a, seen_b) = collect_common(&out_a, &out_b, newest_before + 1, COMMON_SEGMENTS);
    let rejoined: BTreeMap<String, Seen> = seen_a
        .into_iter()
        .filter(|(_, s)| s.sequence > newest_before)
        .collect();
    let first = rejoined
        .values()
        .min_by_key(|s| s.sequence)
        .expect("new segments");
    assert!(
        rejoined.values().all(|s| !s.discontinuity),
        "the restart is marked EXT-X-DISCONTINUITY, which worker B's copy has not\n{}",
        again.log_text()
    );
    assert!(
        first.sequence > newest_before + 1,
        "down for {STAGGER:?}: the numbers of segments missed are skipped"
    );
    check_on_the_grid(&rejoined);
    let (compared, worst_pts, worst_extinf) = compare(&rejoined, &seen_b, 0);
    assert!(
        compared >= COMMON_SEGMENTS,
        "only {compared} segments in common after the restart"
    );
    eprintln!(
        "after kill -9 and restart: compared {compared} segments, worst first-PTS difference {worst_pts} ticks, worst EXTINF difference {worst_extinf:?}"
    );
    // Every segment's counters ended on 15 (the worker warns when one cannot).
    for (name, worker) in [("A", &again), ("B", &b)] {
        let log = worker.log_text();
        assert!(
            !log.contains("could not end on 15"),
            "worker {name} left a segment's continuity counters unpadded:\n{log}"
        );
    }
    again.terminate_cleanly();
    b.terminate_cleanly();
}
