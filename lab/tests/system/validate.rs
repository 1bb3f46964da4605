//! The stream as players receive it keeps Apple's HLS authoring rules and
//! RFC 8216: the validator watches the proxy and each packager of a real
//! stack and finds nothing; and the same validator, on a stream that breaks
//! the rules, names each broken rule (so its zeros mean something).

use std::collections::BTreeSet;

use nonstop::pipeline::settings::DEFAULT_PLAYLIST_LENGTH;
use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;
use nonstop::service::shutdown::Shutdown;
use warp::Filter;

use nonstop_lab::stack::{Stack, StackOptions};
use nonstop_lab::ts::PACKET_LEN;
use nonstop_lab::validate::{validate, ValidateConfig, ValidationReport};

/// Seconds each validator watches.
const WATCH_SECONDS: u64 = 16;

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

#[test]
fn proxy_and_packagers_keep_every_rule() {
    // The product's segment length, and a full playlist window first.
    let stack = Stack::start(StackOptions {
        segment_seconds: DEFAULT_SEGMENT_SECONDS,
        input_seconds: 6,
        ..StackOptions::default()
    });
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
            .map(|u| tokio::spawn(watch(u, WATCH_SECONDS)))
            .collect();
        let mut reports = Vec::new();
        for w in watches {
            reports.push(w.await.expect("validator task"));
        }
        reports
    });
    for (url, report) in urls.iter().zip(&reports) {
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

/// Serves `playlist` at `/live/playlist.m3u8` and one packet's length of zero bytes (not a
/// transport stream) for any other name while the validator watches it for
/// `seconds`.
async fn validate_served(playlist: &'static str, seconds: u64) -> ValidationReport {
    let routes = warp::path!("live" / String).map(move |name: String| {
        let (body, kind) = if name.ends_with(".m3u8") {
            (
                playlist.as_bytes().to_vec(),
                "application/vnd.apple.mpegurl",
            )
        } else {
            (vec![0u8; PACKET_LEN], "application/octet-stream")
        };
        warp::http::Response::builder()
            .header("content-type", kind)
            .body(body)
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
    let report = watch(format!("http://{addr}/live/playlist.m3u8"), seconds).await;
    stop.trigger();
    report
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
    let rules: BTreeSet<&str> = report.violations.iter().map(|v| v.rule).collect();
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
