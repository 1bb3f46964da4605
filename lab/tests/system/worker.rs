//! The worker as a user runs it: real GStreamer, real files, real signals.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use nonstop::hls::PlaylistFacts;

use nonstop_lab::http::{get, scrape, total};
use nonstop_lab::input::{init_gst, make_input};
use nonstop_lab::ports::free_port;
use nonstop_lab::process::Service;
use nonstop_lab::stack_lock::ExclusiveStack;
use nonstop_lab::ts::{video_start, PACKET_LEN};
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::bin;

fn worker(dir: &std::path::Path, extra: &[&str]) -> Service {
    worker_on(dir, free_port(), extra)
}

fn worker_on(dir: &std::path::Path, metrics_port: u16, extra: &[&str]) -> Service {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let mut args = vec![
        "--input".to_string(),
        dir.join("input").display().to_string(),
        "--output".to_string(),
        dir.join("output").display().to_string(),
        "--segment-seconds".to_string(),
        "1".to_string(),
        "--metrics-port".to_string(),
        metrics_port.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Service::start("worker", &bin("worker"), &args, &[], &logs)
}

/// The machine's turn, for a test whose worker encodes for a while: it
/// never runs beside a whole stack (whose tests assert zero stalls), as it
/// never did when each subject was its own test binary.
fn encoding_turn() -> ExclusiveStack {
    ExclusiveStack::acquire()
}

fn playlist(dir: &std::path::Path) -> Option<PlaylistFacts> {
    let bytes = std::fs::read(dir.join("output/live01/playlist.m3u8")).ok()?;
    PlaylistFacts::parse(&bytes).ok()
}

#[test]
fn loops_the_input_forever_without_a_seam() {
    let _turn = encoding_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("input")).expect("mkdir");
    make_input(&dir.path().join("input/live01.mp4"), 3, true);
    let mut w = worker(dir.path(), &[]);

    // A 3 s input with 1 s segments: by segment 10 it has looped three times.
    let mut seen: Vec<(u64, String, Duration)> = Vec::new();
    let mut last_media_sequence = 0;
    wait_for(Duration::from_secs(40), "ten segments", || {
        let facts = playlist(dir.path())?;
        assert!(
            facts.media_sequence >= last_media_sequence,
            "media sequence went back"
        );
        last_media_sequence = facts.media_sequence;
        assert_eq!(
            facts.target_duration,
            Duration::from_secs(1),
            "target duration changed"
        );
        assert!(!facts.end_list, "EXT-X-ENDLIST while live");
        for s in &facts.segments {
            // RFC 8216 4.3.3.1: EXTINF rounded is within the target (cut on
            // the epoch grid, a segment lasts L within a frame).
            assert!(
                s.duration.as_secs_f64().round() <= facts.target_duration.as_secs_f64(),
                "{} lasts {:?}",
                s.uri,
                s.duration
            );
            // No short segment at the loop seam: the passes are one timeline.
            assert!(
                s.duration >= facts.target_duration.mul_f64(0.8),
                "{} lasts only {:?}",
                s.uri,
                s.duration
            );
            if !seen.iter().any(|(q, _, _)| *q == s.sequence) {
                // Read the segment now: old ones are deleted later.
                seen.push((s.sequence, s.uri.clone(), s.duration));
            }
        }
        (seen.len() >= 10).then_some(())
    });
    let mut pts = Vec::new();
    for (sequence, uri, _) in &seen {
        let bytes = std::fs::read(dir.path().join("output/live01").join(uri))
            .unwrap_or_else(|e| panic!("segment {uri} (#{sequence}) unreadable: {e}"));
        let start = video_start(&bytes).unwrap_or_else(|| panic!("{uri} has no video PTS"));
        pts.push(start.pts);
    }
    // Demuxed across every seam, as a player does: each video frame's DTS
    // grows and no PTS comes before its DTS (ffmpeg reported "pts<dts" and
    // "non monotonically increasing dts" at each seam of a source with
    // B-frames before passes were placed by stream time).
    let joined = dir.path().join("joined.ts");
    let mut all = Vec::new();
    for (_, uri, _) in &seen {
        all.extend(std::fs::read(dir.path().join("output/live01").join(uri)).expect("segment"));
    }
    std::fs::write(&joined, all).expect("write joined segments");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts,dts",
            "-of",
            "csv=p=0",
        ])
        .arg(&joined)
        .output()
        .expect("ffprobe runs (scripts/setup.sh installs ffmpeg)");
    let frames: Vec<(i64, i64)> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| {
            let (pts, dts) = l.trim_end_matches(',').split_once(',')?;
            Some((pts.parse().ok()?, dts.parse().ok()?))
        })
        .collect();
    assert!(frames.len() > 200, "ffprobe read {} frames", frames.len());
    for (i, pair) in frames.windows(2).enumerate() {
        let ((_, dts0), (pts1, dts1)) = (pair[0], pair[1]);
        assert!(dts1 > dts0, "frame {}: dts {dts1} after {dts0}", i + 1);
        assert!(
            pts1 >= dts1,
            "frame {}: pts {pts1} before dts {dts1}",
            i + 1
        );
    }
    // Timestamps keep growing across every loop, by about one segment each.
    for (i, pair) in pts.windows(2).enumerate() {
        // PTS follow time since the epoch: wrap-aware at 2^33.
        let step = (pair[1] as i64 - pair[0] as i64).rem_euclid(1 << 33);
        let expected = (seen[i].2.as_secs_f64() * 90_000.0) as i64;
        assert!(
            (step - expected).abs() < 9_000,
            "PTS step {step} between {} and {} is not one segment ({expected}); all: {pts:?}\n{}",
            seen[i].1,
            seen[i + 1].1,
            w.log_text()
        );
    }
    w.terminate_cleanly();
}

#[test]
fn a_restart_continues_the_media_sequence_on_the_grid_without_a_discontinuity() {
    let _turn = encoding_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("input")).expect("mkdir");
    make_input(&dir.path().join("input/live01.mp4"), 2, false);
    let mut first = worker(dir.path(), &[]);
    let before = wait_for(Duration::from_secs(30), "three segments", || {
        let facts = playlist(dir.path())?;
        (facts.segments.len() >= 3).then_some(facts)
    });
    first.terminate_cleanly();
    let newest_before = playlist(dir.path())
        .and_then(|f| f.newest_sequence())
        .expect("a playlist");
    assert!(newest_before >= before.newest_sequence().unwrap_or(0));

    let _second = worker(dir.path(), &[]);
    let after = wait_for(
        Duration::from_secs(30),
        "a new segment after the restart",
        || {
            let facts = playlist(dir.path())?;
            (facts.newest_sequence()? > newest_before).then_some(facts)
        },
    );
    // The restarted worker rejoins the wall clock: its first segment is the
    // one of the moment it started (numbers missed while it was down are
    // skipped, never reused), with no discontinuity: its timestamps follow
    // the epoch grid as a twin's that never stopped.
    let resumed = after
        .segments
        .iter()
        .find(|s| s.sequence > newest_before)
        .expect("a new segment after the last old one");
    assert!(
        after.segments.iter().all(|s| !s.discontinuity),
        "a restart is marked EXT-X-DISCONTINUITY, which a twin that never stopped does not list"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(
        resumed.sequence <= now && resumed.sequence + 30 > now,
        "1 s segments are numbered by seconds since the epoch: {} at {now}",
        resumed.sequence
    );
    assert!(after.media_sequence >= before.media_sequence);
}

#[test]
fn bad_inputs_are_one_clear_error_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");

    let mut empty = worker(dir.path(), &[]);
    assert_eq!(empty.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        empty.log_text().contains("no inputs"),
        "{}",
        empty.log_text()
    );

    std::fs::write(input.join("notvideo.mp4"), b"this is not a video").expect("write");
    let mut bad = worker(dir.path(), &[]);
    assert_eq!(bad.wait_exit(Duration::from_secs(20)), Some(1));
    let log = bad.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERR ")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("notvideo.mp4"), "{log}");

    let missing = dir.path().join("nope");
    let mut gone = Service::start(
        "missing",
        &bin("worker"),
        &[
            "--input".into(),
            missing.display().to_string(),
            "--metrics-port".into(),
            free_port().to_string(),
        ],
        &[],
        dir.path(),
    );
    assert_eq!(gone.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        gone.log_text().contains(&missing.display().to_string()),
        "{}",
        gone.log_text()
    );
}

#[test]
fn help_describes_every_setting() {
    let out = std::process::Command::new(bin("worker"))
        .arg("--help")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "INPUT_STREAM_PATH",
        "OUTPUT_STREAM_PATH",
        "--segment-seconds",
        "--part-seconds",
        "PART_SECONDS",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

/// The worker's healthcheck: status code and JSON body.
fn health(port: u16) -> Option<(u16, serde_json::Value)> {
    let (status, body) = get(&format!("http://127.0.0.1:{port}/healthcheck"))?;
    Some((status, serde_json::from_slice(&body).ok()?))
}

#[test]
fn healthcheck_is_503_while_a_signal_retries_and_200_once_it_runs_again() {
    let _turn = encoding_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("input")).expect("mkdir");
    make_input(&dir.path().join("input/live01.mp4"), 2, false);
    let port = free_port();
    let mut w = worker_on(dir.path(), port, &[]);
    let out = dir.path().join("output/live01");

    wait_for(Duration::from_secs(30), "the first playlist", || {
        playlist(dir.path())
    });
    let (_, body) = wait_for(Duration::from_secs(10), "healthcheck 200", || {
        health(port).filter(|(status, _)| *status == 200)
    });
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["service"], "worker", "{body}");
    assert_eq!(body["signals"]["live01"], "running", "{body}");

    // A file where the signal's folder was: no segment or playlist can be
    // written (even as root), so the pipeline fails and restarts with backoff.
    std::fs::remove_dir_all(&out).expect("remove the output folder");
    std::fs::write(&out, b"in the way").expect("write a file in its place");
    let (_, body) = wait_for(Duration::from_secs(30), "healthcheck 503 retrying", || {
        health(port)
            .filter(|(status, body)| *status == 503 && body["signals"]["live01"] == "retrying")
    });
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["service"], "worker", "{body}");
    let log = w.log_text();
    assert!(log.contains("Signal 'live01' pipeline failed"), "{log}");

    // The folder back: the next restart runs again.
    std::fs::remove_file(&out).expect("remove the file");
    std::fs::create_dir_all(&out).expect("mkdir");
    let (_, body) = wait_for(Duration::from_secs(40), "healthcheck 200 again", || {
        health(port).filter(|(status, _)| *status == 200)
    });
    assert_eq!(body["signals"]["live01"], "running", "{body}");
    assert!(playlist(dir.path()).is_some(), "a playlist after recovery");

    w.terminate_cleanly();
}

/// A small tmpfs mounted on `at` for the test's life (needs root, as CI
/// runs), unmounted on drop.
struct SmallDisk {
    at: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).expect("mkdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} (the full-disk test needs root)",
            at.display()
        );
        SmallDisk {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// Fills the file system holding `path` up: writes until the disk refuses.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the filler");
    let block = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&block).and_then(|_| f.sync_data()) {
            assert_eq!(
                e.raw_os_error(),
                Some(28),
                "the filler stopped on {e}, not ENOSPC"
            );
            return;
        }
    }
}

#[test]
fn a_full_disk_restarts_the_signal_with_backoff_and_it_comes_back_once_there_is_room() {
    let _turn = encoding_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("input")).expect("mkdir");
    make_input(&dir.path().join("input/live01.mp4"), 2, false);
    // The output folder on its own small disk.
    let disk = SmallDisk::mount(&dir.path().join("output"), "32m");
    let port = free_port();
    let mut w = worker_on(dir.path(), port, &[]);
    wait_for(Duration::from_secs(30), "the first playlist", || {
        playlist(dir.path())
    });
    wait_for(Duration::from_secs(10), "healthcheck 200", || {
        health(port).filter(|(status, _)| *status == 200)
    });
    let filler = disk.at.join("filler");
    fill(&filler);

    let (_, body) = wait_for(Duration::from_secs(30), "healthcheck 503 retrying", || {
        health(port)
            .filter(|(status, body)| *status == 503 && body["signals"]["live01"] == "retrying")
    });
    assert_eq!(body["status"], "degraded", "{body}");
    let log = w.log_text();
    assert!(
        log.contains("Signal 'live01' pipeline failed") && log.contains("No space left on device"),
        "one clear error naming the cause:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let restarts = total(
        &scrape(port),
        "nonstop_worker_pipeline_restarts_total",
        &["signal=\"live01\""],
    );
    assert!(restarts >= 1.0, "restarts counted in /metrics: {restarts}");
    let listed_when_full = playlist(dir.path()).map(|p| p.media_sequence + p.segments.len() as u64);

    // Room again: the next restart writes segments again, numbered on.
    std::fs::remove_file(&filler).expect("remove the filler");
    let (_, body) = wait_for(Duration::from_secs(40), "healthcheck 200 again", || {
        health(port).filter(|(status, _)| *status == 200)
    });
    assert_eq!(body["signals"]["live01"], "running", "{body}");
    let after = wait_for(Duration::from_secs(20), "a new segment listed", || {
        playlist(dir.path())
            .map(|p| p.media_sequence + p.segments.len() as u64)
            .filter(|&next| Some(next) > listed_when_full)
    });
    assert!(after > listed_when_full.unwrap_or(0));
    // Every listed segment is on the disk, whole: none half written.
    let facts = playlist(dir.path()).expect("playlist");
    for s in &facts.segments {
        let bytes = std::fs::read(disk.at.join("live01").join(&s.uri))
            .unwrap_or_else(|e| panic!("{} is listed but cannot be read: {e}", s.uri));
        assert!(
            !bytes.is_empty() && bytes.len().is_multiple_of(PACKET_LEN),
            "{} is not whole TS packets ({} bytes)",
            s.uri,
            bytes.len()
        );
    }
    w.terminate_cleanly();
    drop(disk);
}

#[test]
fn print_pipeline_prints_the_line_gst_launch_runs_and_encodes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");
    make_input(&input.join("live01.mp4"), 1, true);
    let output = dir.path().join("output");
    let run = std::process::Command::new(bin("worker"))
        .args([
            "--print-pipeline",
            "--video-kbps",
            "777",
            "--segment-seconds",
            "3",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        !output.exists(),
        "--print-pipeline wrote {}",
        output.display()
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("# live01: "), "{text}");
    assert!(lines[0].contains("segment seeks"), "{text}");

    init_gst();
    let pipeline = gst::parse::launch(lines[1])
        .unwrap_or_else(|e| panic!("{e}: {}", lines[1]))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let element = |n: &str| pipeline.by_name(n).unwrap_or_else(|| panic!("{n}: {text}"));
    assert_eq!(
        element("source").property::<Option<String>>("location"),
        Some(input.join("live01.mp4").display().to_string())
    );
    assert_eq!(element("video_encoder").property::<u32>("bitrate"), 777);
    assert!(
        pipeline.by_name("audio_encoder").is_some(),
        "the input has audio: {text}"
    );
    // The muxed stream ends in the appsink the worker's segmenter reads.
    assert_eq!(
        element("mux")
            .factory()
            .map(|f| f.name().to_string())
            .as_deref(),
        Some("mpegtsmux")
    );
    assert_eq!(
        element("segmenter")
            .factory()
            .map(|f| f.name().to_string())
            .as_deref(),
        Some("appsink")
    );
    assert!(lines[0].contains("segmentNNNNNN_partK.ts"), "{text}");
}

/// The number of `signal`'s newest listed segment, if it has a playlist.
fn newest_segment(dir: &std::path::Path, signal: &str) -> Option<u64> {
    let bytes = std::fs::read(dir.join(format!("output/{signal}/playlist.m3u8"))).ok()?;
    let facts = PlaylistFacts::parse(&bytes).ok()?;
    Some(facts.media_sequence + facts.segments.len() as u64)
}

/// Waits until `signal`'s newest segment is past `after`, and returns it.
fn advances_past(dir: &std::path::Path, signal: &str, after: u64) -> u64 {
    wait_for(
        Duration::from_secs(30),
        &format!("{signal} past segment {after}"),
        || newest_segment(dir, signal).filter(|n| *n > after),
    )
}

#[test]
fn inputs_added_while_running_go_live_replaced_ones_restart_and_removed_ones_stop_alone() {
    let _turn = encoding_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("mkdir");
    make_input(&input.join("live01.mp4"), 2, false);
    // Generated outside the watched folder, copied in while the worker runs.
    let staged = dir.path().join("staged-live02.mp4");
    make_input(&staged, 2, true);
    let port = free_port();
    let w = worker_on(dir.path(), port, &[]);
    let first = advances_past(dir.path(), "live01", 0);

    std::fs::copy(&staged, input.join("live02.mp4")).expect("copy live02 in");
    let started = advances_past(dir.path(), "live02", 0);
    advances_past(dir.path(), "live02", started);
    let (_, body) = wait_for(
        Duration::from_secs(20),
        "healthcheck 200 with live02",
        || {
            health(port)
                .filter(|(status, body)| *status == 200 && body["signals"]["live02"] == "running")
        },
    );
    assert_eq!(body["signals"]["live01"], "running", "{body}");
    // Epoch-locked like the first: the same grid, so the same newest number.
    let (a, b) = wait_for(Duration::from_secs(20), "both signals on one grid", || {
        let a = newest_segment(dir.path(), "live01")?;
        let b = newest_segment(dir.path(), "live02")?;
        (a == b).then_some((a, b))
    });
    assert!(
        a > first,
        "live01 advanced meanwhile ({a} after {first}, live02 {b})"
    );

    // A file that is no video: one error line, no retry loop, nothing else hurt.
    std::fs::write(input.join("broken.mp4"), b"not an mp4 at all").expect("write");
    wait_for(
        Duration::from_secs(30),
        "the broken input's error line",
        || w.log_text().contains("broken.mp4").then_some(()),
    );
    let now = newest_segment(dir.path(), "live01").expect("live01 playlist");
    // Five more segments of 1 s each: more than two rescans (2 s) later.
    advances_past(dir.path(), "live01", now + 5);
    let log = w.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("broken.mp4") && l.contains(" ERR "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one error line for the broken input:\n{log}"
    );
    assert!(
        errors[0].contains("signal 'broken' not started until its file changes"),
        "{log}"
    );
    let (_, body) = health(port).expect("healthcheck answers");
    assert!(body["signals"].get("broken").is_none(), "{body}");
    assert_eq!(body["signals"]["live02"], "running", "{body}");

    // live01's file replaced in place by another input (3 s, with audio):
    // once it has settled, the signal restarts on it and numbers on.
    let replacement = dir.path().join("staged-live01.mp4");
    make_input(&replacement, 3, true);
    let before = newest_segment(dir.path(), "live01").expect("live01 playlist");
    std::fs::copy(&replacement, input.join("live01.mp4")).expect("copy over live01");
    wait_for(
        Duration::from_secs(30),
        "live01 restarted on its new file",
        || {
            let log = w.log_text();
            (log.contains("Signal 'live01': its input")
                && log.contains("was replaced; restarting on the new file"))
            .then_some(())
        },
    );
    let log = w.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("Signal 'live01': ") && l.contains("3.0 s, with audio")),
        "the new file is the one encoded:\n{log}"
    );
    let after = advances_past(dir.path(), "live01", before);
    advances_past(dir.path(), "live01", after);
    let facts = playlist(dir.path()).expect("live01 playlist");
    assert!(
        facts.segments.iter().any(|s| s.discontinuity),
        "the restart on the new file is marked EXT-X-DISCONTINUITY"
    );
    wait_for(Duration::from_secs(20), "live01 running again", || {
        health(port).filter(|(_, body)| body["signals"]["live01"] == "running")
    });

    std::fs::remove_file(input.join("live02.mp4")).expect("remove live02");
    let (status, body) = wait_for(
        Duration::from_secs(20),
        "live02 gone from the healthcheck",
        || health(port).filter(|(_, body)| body["signals"].get("live02").is_none()),
    );
    assert_eq!(status, 200, "live01 alone is healthy: {body}");
    assert_eq!(body["signals"]["live01"], "running", "{body}");
    let log = w.log_text();
    assert!(
        log.contains("Signal 'live02' stopped: its input") && log.contains("was removed"),
        "{log}"
    );
    // live02's playlist ends there (players stop instead of waiting)...
    let bytes = std::fs::read(dir.path().join("output/live02/playlist.m3u8"))
        .expect("live02's playlist stays");
    let facts = PlaylistFacts::parse(&bytes).expect("live02's playlist parses");
    assert!(
        facts.end_list && !facts.segments.is_empty(),
        "live02's playlist lists its last segments and ends (EXT-X-ENDLIST):\n{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        !playlist(dir.path()).expect("live01 playlist").end_list,
        "live01 goes on"
    );
    // ...while live01 keeps going; live02's playlist no longer moves.
    let last02 = newest_segment(dir.path(), "live02").expect("live02 playlist stays");
    let now = newest_segment(dir.path(), "live01").expect("live01 playlist");
    advances_past(dir.path(), "live01", now + 2);
    assert_eq!(
        newest_segment(dir.path(), "live02"),
        Some(last02),
        "live02 still written"
    );
}
