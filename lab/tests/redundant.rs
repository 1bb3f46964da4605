//! Two workers that never talk, started apart on the same input, write
//! interchangeable segments: same names, numbers, dates and timestamps, so a
//! packager (or a player) can take segment n from one and n+1 from the other.

use nonstop_lab::support as common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{bin, make_input, wait_for, Service};
use nonstop_lab::demux::demux_segment;
use nonstop_lab::ts::{video_start, VideoStart};

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
    bytes: Vec<u8>,
}

fn worker(input: &Path, output: &Path, logs: &Path) -> Service {
    std::fs::create_dir_all(logs).expect("mkdir logs");
    let args = vec![
        "--input".to_string(),
        input.display().to_string(),
        "--output".to_string(),
        output.display().to_string(),
        "--segment-seconds".to_string(),
        SEGMENT_SECONDS.to_string(),
        "--metrics-port".to_string(),
        common::free_port().to_string(),
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
                duration: Duration::from_secs_f32(s.duration),
                pdt_ms: pdt.timestamp_millis(),
                start,
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

#[test]
fn two_workers_started_apart_write_interchangeable_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");
    // 3 s with audio: both branches, and loops every three segments.
    make_input(&input.join("live01.mp4"), 3, true);
    let out = |name: &str| -> PathBuf { dir.path().join(name) };

    let mut a = worker(&input, &out("output-a"), &out("logs-a"));
    std::thread::sleep(STAGGER);
    let mut b = worker(&input, &out("output-b"), &out("logs-b"));

    let (mut seen_a, mut seen_b) = (BTreeMap::new(), BTreeMap::new());
    wait_for(
        Duration::from_secs(60),
        "segments written by both workers",
        || {
            collect(&out("output-a/live01"), &mut seen_a);
            collect(&out("output-b/live01"), &mut seen_b);
            let common = seen_a.keys().filter(|k| seen_b.contains_key(*k)).count();
            (common >= COMMON_SEGMENTS).then_some(())
        },
    );
    a.terminate_cleanly();
    b.terminate_cleanly();

    let logs = || format!("A:\n{}\nB:\n{}", a.log_text(), b.log_text());
    let segment = Duration::from_secs(SEGMENT_SECONDS);
    // Every segment of either worker is where the wall clock says.
    for (name, s) in seen_a.iter().chain(seen_b.iter()) {
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

    let mut compared = 0;
    let mut worst_pts = 0i64;
    let mut worst_extinf = Duration::ZERO;
    for (name, sa) in &seen_a {
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
            "{name}: first PTS {} vs {}\n{}",
            sa.start.pts,
            sb.start.pts,
            logs()
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
    assert!(
        compared >= COMMON_SEGMENTS,
        "only {compared} segments in common"
    );
    eprintln!(
        "compared {compared} segments: worst first-PTS difference {worst_pts} ticks, worst EXTINF difference {:?}",
        worst_extinf
    );
}
