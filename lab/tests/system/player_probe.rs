//! The player probe against a synthetic live stream served in-process.
//!
//! One real one-second TS segment is encoded with GStreamer once and served by
//! warp on `127.0.0.1:0` under ever-new names (`segmentN.ts`), listed by a live
//! playlist whose window advances one segment per second of wall time. Each
//! test bends that stream one way (freezes it, sends the window back once,
//! loses segments) and checks the probe counts what a viewer would notice.
//! Assertions are about behaviour (counts zero or not), never timing thresholds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nonstop::service::shutdown::Shutdown;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use nonstop_lab::demux::synthetic_segment;
use nonstop_lab::player_process::Probe;
use nonstop_lab::probe::{self, ProbeConfig, ProbeError, ProbeReport};

/// Media (and wall) time of each segment.
const SEGMENT: Duration = Duration::from_secs(1);
/// Frames per segment at [`FPS`]: one second.
const FRAMES: u32 = 25;
const FPS: u32 = 25;
/// Segments listed in the live playlist.
const WINDOW: u64 = 5;
/// Newest media sequence number when the server starts.
const FIRST_NEWEST: u64 = 10;

/// How the synthetic stream misbehaves.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Advances one segment per second, forever.
    Healthy,
    /// Stops advancing at `after` for `pause`, then goes on from where it stopped.
    Freeze { after: Duration, pause: Duration },
    /// Serves a window three segments older on playlist request number `on_request`.
    RegressOnce { on_request: u64 },
    /// Answers 404 for segments `first..=last`.
    Missing { first: u64, last: u64 },
}

struct LiveStream {
    started: Instant,
    behaviour: Behaviour,
    segment: Bytes,
    playlist_requests: AtomicU64,
}

impl LiveStream {
    /// Seconds of stream produced so far, once a freeze is taken out.
    fn produced(&self) -> u64 {
        let elapsed = self.started.elapsed();
        let produced = match self.behaviour {
            Behaviour::Freeze { after, pause } if elapsed >= after + pause => elapsed - pause,
            Behaviour::Freeze { after, .. } if elapsed >= after => after,
            _ => elapsed,
        };
        produced.as_secs()
    }

    fn playlist(&self) -> String {
        let request = self.playlist_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let mut newest = FIRST_NEWEST + self.produced();
        if let Behaviour::RegressOnce { on_request } = self.behaviour {
            if request == on_request {
                newest -= 3;
            }
        }
        let first = newest + 1 - WINDOW;
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
            SEGMENT.as_secs()
        );
        for sequence in first..=newest {
            text.push_str(&format!(
                "#EXTINF:{:.3},\nsegment{sequence}.ts\n",
                SEGMENT.as_secs_f64()
            ));
        }
        text
    }

    fn answer(&self, name: &str) -> Response {
        if name == "playlist.m3u8" {
            return warp::reply::with_header(
                self.playlist(),
                "content-type",
                "application/vnd.apple.mpegurl",
            )
            .into_response();
        }
        let sequence = name
            .strip_prefix("segment")
            .and_then(|rest| rest.strip_suffix(".ts"))
            .and_then(|n| n.parse::<u64>().ok());
        match (sequence, self.behaviour) {
            (None, _) => StatusCode::NOT_FOUND.into_response(),
            (Some(n), Behaviour::Missing { first, last }) if (first..=last).contains(&n) => {
                StatusCode::NOT_FOUND.into_response()
            }
            (Some(_), _) => {
                warp::reply::with_header(self.segment.to_vec(), "content-type", "video/mp2t")
                    .into_response()
            }
        }
    }
}

/// The one real segment every test serves, encoded once per test binary.
fn segment() -> Bytes {
    static SEGMENT_BYTES: OnceLock<Bytes> = OnceLock::new();
    SEGMENT_BYTES
        .get_or_init(|| Bytes::from(synthetic_segment(FRAMES, FPS).expect("encodes a segment")))
        .clone()
}

/// A running synthetic stream; stops serving when dropped.
struct Server {
    playlist_url: String,
    stop: Shutdown,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

async fn serve(behaviour: Behaviour) -> Server {
    let stream = Arc::new(LiveStream {
        started: Instant::now(),
        behaviour,
        segment: segment(),
        playlist_requests: AtomicU64::new(0),
    });
    let routes = warp::path!("live" / String).map(move |name: String| stream.answer(&name));
    let stop = Shutdown::new();
    let stopped = stop.clone();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("test server binds a free port");
    let addr = listener.local_addr().expect("bound address");
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(async move { stopped.wait().await })
        .run();
    tokio::spawn(server);
    Server {
        playlist_url: format!("http://{addr}/live/playlist.m3u8"),
        stop,
    }
}

async fn probe(server: &Server, seconds: u64, demux: bool) -> ProbeReport {
    let mut config = ProbeConfig::new(server.playlist_url.clone());
    config.duration = Duration::from_secs(seconds);
    config.request_timeout = Duration::from_secs(2);
    config.demux = demux;
    probe::play(config, Shutdown::new())
        .await
        .expect("the probe starts")
}

#[tokio::test]
async fn a_healthy_stream_plays_without_a_hitch() {
    let server = serve(Behaviour::Healthy).await;
    let report = probe(&server, 6, true).await;
    report.assert_unnoticed(&format!("{report:?}"));
    assert_eq!(report.stall_ms, 0, "{report:?}");
    assert!(report.segments_played >= 4, "{report:?}");
    assert!(report.startup_ms.is_some(), "{report:?}");
    assert_eq!(
        report.segment_requests, report.segments_played,
        "{report:?}"
    );
    assert!(report.playlist_requests > 1, "{report:?}");
    assert!(report.last_media_sequence.is_some(), "{report:?}");
}

#[tokio::test]
async fn a_stream_that_stops_advancing_stalls_the_viewer() {
    let server = serve(Behaviour::Freeze {
        after: Duration::from_secs(1),
        pause: Duration::from_secs(4),
    })
    .await;
    let report = probe(&server, 8, false).await;
    assert!(report.stalls >= 1, "{report:?}");
    assert!(report.stall_ms > 0, "{report:?}");
    assert_eq!(report.failed_requests, 0, "{report:?}");
    assert!(report.startup_ms.is_some(), "{report:?}");
}

#[tokio::test]
async fn a_playlist_going_back_in_time_is_a_regression() {
    let server = serve(Behaviour::RegressOnce { on_request: 3 }).await;
    let report = probe(&server, 4, false).await;
    assert!(report.playlist_regressions >= 1, "{report:?}");
    assert_eq!(report.failed_requests, 0, "{report:?}");
    assert_eq!(report.repeated_segments, 0, "{report:?}");
}

#[tokio::test]
async fn a_missing_segment_is_a_failed_request() {
    // The probe starts at 8..=10 and reaches 11 and 12 within two seconds.
    let server = serve(Behaviour::Missing {
        first: FIRST_NEWEST + 1,
        last: FIRST_NEWEST + 2,
    })
    .await;
    let report = probe(&server, 4, false).await;
    assert!(report.failed_requests >= 1, "{report:?}");
    assert!(report.segments_played >= 3, "{report:?}");
    assert!(
        report.segment_requests > report.segments_played,
        "{report:?}"
    );
}

#[tokio::test]
async fn a_bad_url_is_refused_before_any_request() {
    let result = probe::play(ProbeConfig::new("not a url"), Shutdown::new()).await;
    assert!(
        matches!(result, Err(ProbeError::InvalidUrl { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn shutdown_ends_the_probe_early_with_a_report() {
    let server = serve(Behaviour::Healthy).await;
    let shutdown = Shutdown::new();
    let mut config = ProbeConfig::new(server.playlist_url.clone());
    config.duration = Duration::from_secs(30);
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        trigger.trigger();
    });
    let started = Instant::now();
    let report = probe::play(config, shutdown)
        .await
        .expect("the probe starts");
    assert!(started.elapsed() < Duration::from_secs(30), "{report:?}");
    assert!(report.segments_played >= 1, "{report:?}");
    assert_eq!(report.failed_requests, 0, "{report:?}");
}

#[tokio::test]
async fn the_cli_prints_a_json_report_or_one_error_line() {
    let server = serve(Behaviour::Healthy).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["--url", &server.playlist_url, "--duration", "2"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("runs the probe");
    assert!(output.status.success(), "{output:?}");
    let report: ProbeReport = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report.url, server.playlist_url);
    assert!(report.segments_played >= 1, "{report:?}");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["--url", "ftp://example/playlist.m3u8"])
        .output()
        .await
        .expect("runs the probe");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid playlist URL"), "{stderr}");
}

/// What the system tests rely on to inject faults at the right moment: the
/// probe program says when it plays, and how much, as it goes.
#[tokio::test]
async fn the_cli_announces_playback_as_it_goes() {
    let server = serve(Behaviour::Healthy).await;
    let url = server.playlist_url.clone();
    let (progress, report, log) = tokio::task::spawn_blocking(move || {
        let probe = Probe::start(&url, 6);
        let progress = probe.wait_playing(Duration::from_secs(2), Duration::from_secs(6));
        let (report, log) = probe.finish();
        (progress, report, log)
    })
    .await
    .expect("the probe thread");
    assert!(progress.media_played >= Duration::from_secs(2), "{log}");
    assert!(progress.segments >= 3, "the start buffer came first\n{log}");
    assert!(report.segments_played >= progress.segments, "{report:?}");
    assert!(report.startup_ms.is_some(), "{report:?}");
    let announced: Vec<_> = log
        .lines()
        .filter_map(nonstop_lab::probe::Progress::parse)
        .collect();
    assert!(
        announced
            .windows(2)
            .all(|w| w[1].media_played >= w[0].media_played && w[1].segments > w[0].segments),
        "announcements go forward\n{log}"
    );
}
