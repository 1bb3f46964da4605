//! The stream as players receive it keeps Apple's HLS authoring rules,
//! RFC 8216 and its low-latency second edition: the validator watches the
//! proxy and each packager of a real stack (one rendition, then the
//! recommended ladder's multivariant playlist and its renditions) and finds
//! nothing; and the same validator, on streams that break the rules, names
//! each broken rule (so its zeros mean something).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use nonstop::pipeline::ladder::RECOMMENDED;
use nonstop::pipeline::settings::DEFAULT_PLAYLIST_LENGTH;
use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;
use nonstop::service::shutdown::Shutdown;
use warp::Filter;

use nonstop_lab::input::{init_gst, LADDER_INPUT_SIZE};
use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::ts::PACKET_LEN;
use nonstop_lab::validate::{rules, validate, ValidateConfig, ValidationReport};

/// Seconds each validator watches a one-rendition stack.
const WATCH_SECONDS: u64 = 16;
/// Seconds each validator watches the ladder (two renditions each).
const LADDER_WATCH_SECONDS: u64 = 12;
/// An input the recommended ladder encodes into two rungs (480p, 360p).
const TWO_RUNG_INPUT: (u32, u32) = LADDER_INPUT_SIZE;

/// Runs the validator on `url` for `seconds` (or until the stream ends).
async fn watch(url: String, seconds: u64) -> ValidationReport {
    let config = ValidateConfig {
        url: url.clone(),
        duration: seconds,
    };
    validate(config, Shutdown::new())
        .await
        .unwrap_or_else(|e| panic!("cannot validate {url}: {e}"))
}

/// Validates the proxy and both packagers of a stack started with
/// `options` at once for `seconds`; each must find nothing in
/// `renditions` media playlists.
fn every_rule_kept(options: StackOptions, seconds: u64, renditions: usize) {
    let stack = Stack::start(options);
    stack.wait_for_window(DEFAULT_PLAYLIST_LENGTH);
    let proxy = stack.proxy_url("live01/playlist.m3u8");
    let urls = [
        proxy,
        format!("{}/live01/playlist.m3u8", stack.packagers()[0]),
        format!("{}/live01/playlist.m3u8", stack.packagers()[1]),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let reports = runtime.block_on(async {
        let watches: Vec<_> = urls
            .iter()
            .cloned()
            .map(|u| tokio::spawn(watch(u, seconds)))
            .collect();
        let mut reports = Vec::new();
        for w in watches {
            reports.push(w.await.expect("validator task"));
        }
        reports
    });
    for (url, report) in urls.iter().zip(&reports) {
        assert_eq!(
            report.media_playlists.len(),
            renditions,
            "{url}: {report:#?}"
        );
        assert!(report.playlists_read >= 8, "{url}: {report:#?}");
        assert!(!report.ended, "{url}: a live stream ended: {report:#?}");
        assert!(report.segments_checked >= 8, "{url}: {report:#?}");
        assert!(
            report.violations.is_empty(),
            "{url}: {:#?}\n{}",
            report.summary(),
            stack.logs()
        );
    }
}

#[test]
fn proxy_and_packagers_keep_every_rule() {
    // The product's segment length (and parts), and a full playlist window first.
    every_rule_kept(
        StackOptions {
            segment_seconds: DEFAULT_SEGMENT_SECONDS,
            input_seconds: 6,
            ..StackOptions::default()
        },
        WATCH_SECONDS,
        1,
    );
}

/// The same with `LADDER=recommended` on an input two rungs fit: the
/// multivariant playlist's declarations held to each rendition's segments,
/// and every rendition's media playlist to every rule above.
#[test]
fn proxy_and_packagers_keep_every_rule_with_a_ladder() {
    every_rule_kept(
        StackOptions {
            segment_seconds: DEFAULT_SEGMENT_SECONDS,
            input_seconds: 6,
            input_size: TWO_RUNG_INPUT,
            ladder: Some(RECOMMENDED.to_string()),
            ..StackOptions::default()
        },
        LADDER_WATCH_SECONDS,
        2,
    );
}

/// What a fake server answers for a name under `/live/`: given the name,
/// the raw query and the time since it started, a body and its type, or
/// `None` for a 404.
type Answer = Arc<dyn Fn(&str, &str, Duration) -> Option<(Vec<u8>, &'static str)> + Send + Sync>;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// Serves `answer` under `/live/` on a free port while the validator
/// watches `/live/<playlist>` for `seconds`.
async fn validate_answered(answer: Answer, playlist: &str, seconds: u64) -> ValidationReport {
    let started = Instant::now();
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let routes = warp::path!("live" / String)
        .and(query)
        .map(move |name: String, query: String| {
            match answer(&name, &query, started.elapsed()) {
                Some((body, kind)) => warp::http::Response::builder()
                    .header("content-type", kind)
                    .body(body),
                None => warp::http::Response::builder().status(404).body(Vec::new()),
            }
            .expect("response")
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address");
    let stop = Shutdown::new();
    let stopped = stop.clone();
    tokio::spawn(
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move { stopped.wait().await })
            .run(),
    );
    let report = watch(format!("http://{addr}/live/{playlist}"), seconds).await;
    stop.trigger();
    report
}

/// Serves `playlist` at `/live/playlist.m3u8` and one packet's length of zero bytes (not a
/// transport stream) for any other name while the validator watches it for
/// `seconds`.
async fn validate_served(playlist: &'static str, seconds: u64) -> ValidationReport {
    let answer: Answer = Arc::new(move |name, _, _| {
        Some(if name.ends_with(".m3u8") {
            (playlist.as_bytes().to_vec(), PLAYLIST_TYPE)
        } else {
            (vec![0u8; PACKET_LEN], "application/octet-stream")
        })
    });
    validate_answered(answer, "playlist.m3u8", seconds).await
}

/// The rules `report` names.
fn rules_named(report: &ValidationReport) -> BTreeSet<&'static str> {
    report.violations.iter().map(|v| v.rule).collect()
}

/// A stream a careless packager could serve: no dates, no
/// INDEPENDENT-SEGMENTS, three segments, one far over the target, no
/// Last-Modified, no gzip, and segments that are not MPEG-TS video.
#[tokio::test]
async fn a_stream_breaking_the_rules_is_caught_rule_by_rule() {
    let playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
                    #EXTINF:2.0,\na.ts\n#EXTINF:3.5,\nb.ts\n#EXTINF:2.0,\nc.ts\n";
    let report = validate_served(playlist, 2).await;
    assert!(!report.ended);
    let rules = rules_named(&report);
    for rule in [
        "Apple 8.4",
        "Apple 9.12",
        "Apple 8.11",
        "Apple 7.7",
        "RFC 8216 4.3.3.1",
        "Apple 8.24",
        "Apple 10.1",
        "Apple 10.4",
        "RFC 8216 3.2",
        "Apple 7.4",
    ] {
        assert!(rules.contains(rule), "{rule} not reported: {rules:?}");
    }
}

/// A stream that ended (`EXT-X-ENDLIST`, as nonstop writes when an input is
/// removed) ends the watch at once, and the end itself breaks no rule.
#[tokio::test]
async fn an_ended_stream_ends_the_watch_without_a_violation() {
    let playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
                    #EXTINF:2.0,\na.ts\n#EXT-X-ENDLIST\n";
    let report = validate_served(playlist, 30).await;
    assert!(report.ended, "{report:#?}");
    assert_eq!(report.playlists_read, 1, "the watch stopped at the end");
    assert!(
        report
            .violations
            .iter()
            .all(|v| !v.message.contains("ENDLIST")),
        "{:#?}",
        report.violations
    );
}

/// A low-latency playlist whose text breaks every rule of parts: a part
/// over the part target, one under 85% in the middle of a segment, parts
/// that do not add up to their segment, a first part not independent (and
/// not a picture at all), hold-backs too short, no CAN-BLOCK-RELOAD and no
/// preload hint.
#[tokio::test]
async fn a_low_latency_playlist_breaking_the_part_rules_is_caught_rule_by_rule() {
    let playlist = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=0.600,HOLD-BACK=4.000\n\
#EXT-X-PART-INF:PART-TARGET=0.40000\n#EXT-X-MEDIA-SEQUENCE:0\n\
#EXTINF:2.000,\ns0.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s1_p0.ts\"\n\
#EXT-X-PART:DURATION=0.50000,URI=\"s1_p1.ts\"\n\
#EXT-X-PART:DURATION=0.20000,URI=\"s1_p2.ts\"\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s1_p3.ts\"\n\
#EXTINF:2.000,\ns1.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s2_p0.ts\",INDEPENDENT=YES\n";
    let report = validate_served(playlist, 2).await;
    let named = rules_named(&report);
    for rule in [
        rules::PART_TOO_LONG,
        rules::PART_TOO_SHORT,
        rules::PARTS_MAKE_SEGMENT,
        rules::FIRST_PART_INDEPENDENT,
        rules::PART_HOLD_BACK,
        rules::HOLD_BACK,
        rules::CAN_BLOCK_RELOAD,
        rules::PRELOAD_HINT,
    ] {
        assert!(named.contains(rule), "{rule} not reported: {named:?}");
    }
}

/// A server that says it holds blocking reloads and does not: it answers
/// `_HLS_msn` at once with the playlist it has (never listing the part
/// asked for, and never a 400 however far ahead), and the part it hinted,
/// listed a second later, is not there.
#[tokio::test]
async fn a_server_ignoring_blocking_reloads_and_hints_is_caught() {
    let text = |newest: &str, hint: &str| {
        format!(
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200,HOLD-BACK=6.000\n\
#EXT-X-PART-INF:PART-TARGET=0.40000\n#EXT-X-MEDIA-SEQUENCE:0\n\
#EXTINF:2.000,\ns0.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s1_p0.ts\",INDEPENDENT=YES\n{newest}\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"\n"
        )
    };
    let before = text("", "s1_p1.ts");
    let after = text(
        "#EXT-X-PART:DURATION=0.40000,URI=\"s1_p1.ts\"\n",
        "s1_p2.ts",
    );
    let answer: Answer = Arc::new(move |name, _, since| {
        if name.ends_with(".m3u8") {
            let text = if since < Duration::from_secs(1) {
                &before
            } else {
                &after
            };
            Some((text.clone().into_bytes(), PLAYLIST_TYPE))
        } else if name == "s1_p1.ts" {
            None
        } else {
            Some((vec![0u8; PACKET_LEN], "video/mp2t"))
        }
    });
    let report = validate_answered(answer, "playlist.m3u8", 5).await;
    let named = rules_named(&report);
    for rule in [
        rules::BLOCKING_RELOAD,
        rules::TOO_FAR_AHEAD,
        rules::HINTED_PART,
    ] {
        assert!(named.contains(rule), "{rule} not reported: {named:?}");
    }
}

/// Two seconds of 320x240 H.264 at 25 fps (no audio; x264's ultrafast
/// preset makes it Constrained Baseline, `avc1.42c0..`) muxed to MPEG-TS
/// by GStreamer, its pictures stamped `offset` later than another encode's.
fn encoded_segment(offset: Duration) -> Vec<u8> {
    init_gst();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("segment.ts");
    let line = format!(
        "videotestsrc num-buffers=50 pattern=ball timestamp-offset={} \
         ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast key-int-max=50 ! mpegtsmux ! filesink location={}",
        offset.as_nanos(),
        path.display()
    );
    let pipeline = gst::parse::launch(&line).expect("segment pipeline parses");
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("encoding a segment failed: {}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).expect("stops");
    std::fs::read(&path).expect("the segment")
}

/// A multivariant playlist whose declarations are false: a peak bit rate
/// far under its segments', no AVERAGE-BANDWIDTH, a codec and a size its
/// SPS does not have, audio it does not carry; a second variant without
/// BANDWIDTH whose segment starts 40 ms after the first's.
#[tokio::test]
async fn a_ladder_declaring_what_its_segments_are_not_is_caught_rule_by_rule() {
    let aligned = encoded_segment(Duration::ZERO);
    let late = encoded_segment(Duration::from_millis(40));
    let ladder = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,CODECS=\"avc1.42e00a,mp4a.40.2\",RESOLUTION=1280x720\nhigh.m3u8\n\
#EXT-X-STREAM-INF:AVERAGE-BANDWIDTH=1000,CODECS=\"avc1.64000d\",RESOLUTION=320x240\nlow.m3u8\n";
    let media = |name: &str| {
        format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXTINF:2.000,\n{name}7.ts\n"
        )
    };
    let files: HashMap<String, (Vec<u8>, &'static str)> = HashMap::from([
        (
            "playlist.m3u8".to_string(),
            (ladder.as_bytes().to_vec(), PLAYLIST_TYPE),
        ),
        (
            "high.m3u8".to_string(),
            (media("high").into_bytes(), PLAYLIST_TYPE),
        ),
        (
            "low.m3u8".to_string(),
            (media("low").into_bytes(), PLAYLIST_TYPE),
        ),
        ("high7.ts".to_string(), (aligned, "video/mp2t")),
        ("low7.ts".to_string(), (late, "video/mp2t")),
    ]);
    let answer: Answer = Arc::new(move |name, _, _| files.get(name).cloned());
    let report = validate_answered(answer, "playlist.m3u8", 2).await;
    assert_eq!(report.media_playlists.len(), 2, "{report:#?}");
    let named = rules_named(&report);
    for rule in [
        rules::BANDWIDTH,
        rules::PEAK_BIT_RATE,
        rules::AVERAGE_BANDWIDTH,
        rules::CODECS,
        rules::RESOLUTION,
        rules::ALIGNED,
    ] {
        assert!(named.contains(rule), "{rule} not reported: {named:?}");
    }
    let codecs: Vec<&str> = report
        .violations
        .iter()
        .filter(|v| v.rule == rules::CODECS)
        .map(|v| v.message.as_str())
        .collect();
    assert!(
        codecs.iter().any(|m| m.contains("SPS says avc1.42")),
        "the video codec is read from the SPS: {codecs:?}"
    );
    assert!(
        codecs.iter().any(|m| m.contains("carry no audio")),
        "{codecs:?}"
    );
}
