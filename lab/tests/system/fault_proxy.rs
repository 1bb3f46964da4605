//! The fault proxy over the wire. A tiny warp upstream standing in for a
//! packager and the proxy itself both run in-process on free ports, and every
//! mode is checked with reqwest the way a player would see it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nonstop::service::shutdown::Shutdown;
use reqwest::StatusCode;
use tokio::task::JoinHandle;
use warp::Filter;

use nonstop_lab::fault_proxy::{control_url, FaultConfig, FaultMode, FaultProxy, CONTROL_PATH};
use nonstop_lab::ts::{PACKET_LEN, SYNC_BYTE};

const PLAYLIST: &str = "/live01/playlist.m3u8";
const SEGMENT: &str = "/live01/segment000001.ts";
/// 100 MPEG-TS packets.
const SEGMENT_BYTES: usize = PACKET_LEN * 100;
/// Delay of the `slow` mode in these tests: long enough to measure, short
/// enough to keep the suite quick.
const SLOW_MS: u64 = 300;
/// Budget of an ordinary test request. It is far above anything that should
/// happen, so only a real hang trips it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Budget of the request that `hang` must stall.
const HANG_CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the proxy may take to stop after shutdown.
const STOP_BUDGET: Duration = Duration::from_secs(2);

fn playlist_body(sequence: u64) -> String {
    format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{sequence}\n\
#EXTINF:2.000,\nsegment{sequence:06}.ts\n"
    )
}

/// Packets that start with the sync byte, each with a different counter byte,
/// so a reordered or truncated body would not compare equal.
fn segment_body() -> Vec<u8> {
    let mut body = vec![0xff; SEGMENT_BYTES];
    for (i, packet) in body.chunks_mut(PACKET_LEN).enumerate() {
        packet[0] = SYNC_BYTE;
        packet[1] = i as u8;
    }
    body
}

/// The packager stand-in. Its playlist's media sequence goes up by one on
/// every request, so a frozen copy is easy to tell from a live one.
async fn start_upstream(shutdown: &Shutdown) -> SocketAddr {
    let counter = Arc::new(AtomicU64::new(1));
    let playlist = warp::path!("live01" / "playlist.m3u8").map(move || {
        let sequence = counter.fetch_add(1, Ordering::SeqCst);
        warp::http::Response::builder()
            .header("content-type", "application/vnd.apple.mpegurl")
            .header("cache-control", "max-age=1")
            .header("access-control-allow-origin", "*")
            .body(playlist_body(sequence))
            .expect("valid response")
    });
    let segment = warp::path!("live01" / "segment000001.ts").map(|| {
        warp::http::Response::builder()
            .header("content-type", "video/mp2t")
            .header("cache-control", "max-age=3600")
            .header("access-control-allow-origin", "*")
            .body(segment_body())
            .expect("valid response")
    });
    // HEAD as well as GET, like the packager.
    let routes = warp::get()
        .or(warp::head())
        .unify()
        .and(playlist.or(segment));
    let stop = shutdown.clone();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("upstream binds a free port");
    let addr = listener.local_addr().expect("bound address");
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(async move { stop.wait().await })
        .run();
    tokio::spawn(server);
    addr
}

/// One upstream and one fault proxy in front of it, both stopped on drop.
struct Setup {
    proxy: String,
    upstream: String,
    client: reqwest::Client,
    shutdown: Shutdown,
    /// Taken by a test that waits for the proxy to stop.
    proxy_task: Option<JoinHandle<()>>,
}

impl Setup {
    async fn start(mode: FaultMode) -> Setup {
        let shutdown = Shutdown::new();
        let upstream = start_upstream(&shutdown).await;
        Setup::in_front_of(upstream, mode, shutdown).await
    }

    async fn in_front_of(upstream: SocketAddr, mode: FaultMode, shutdown: Shutdown) -> Setup {
        let config = FaultConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream: format!("http://{upstream}").parse().expect("valid URL"),
            mode,
            slow_ms: SLOW_MS,
        };
        let proxy = FaultProxy::bind(&config).await.expect("proxy binds");
        let addr = proxy.local_addr();
        let proxy_task = tokio::spawn(proxy.run(shutdown.clone()));
        Setup {
            proxy: format!("http://{addr}"),
            upstream: format!("http://{upstream}"),
            client: client(CLIENT_TIMEOUT),
            shutdown,
            proxy_task: Some(proxy_task),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.try_get(path).await.expect("proxy answers")
    }

    async fn try_get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.client
            .get(format!("{}{path}", self.proxy))
            .send()
            .await
    }

    async fn get_upstream(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.upstream))
            .send()
            .await
            .expect("upstream answers")
    }

    /// Switches the mode through the control API, as a benchmark script would.
    async fn set_mode(&self, mode: FaultMode) -> reqwest::Response {
        self.put(&control_url(&self.proxy, mode)).await
    }

    /// Asks the control API for a mode by a name it may not know.
    async fn set_mode_named(&self, name: &str) -> reqwest::Response {
        self.put(&format!("{}{CONTROL_PATH}/{name}", self.proxy))
            .await
    }

    async fn put(&self, url: &str) -> reqwest::Response {
        self.client
            .put(url)
            .send()
            .await
            .expect("control API answers")
    }

    async fn mode(&self) -> serde_json::Value {
        self.get(CONTROL_PATH)
            .await
            .json()
            .await
            .expect("JSON mode")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client builds")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ASCII header")
}

async fn text(response: reqwest::Response) -> String {
    response.text().await.expect("whole body")
}

#[tokio::test]
async fn none_passes_bodies_and_headers_unchanged() {
    let setup = Setup::start(FaultMode::None).await;

    let playlist = setup.get(PLAYLIST).await;
    assert_eq!(playlist.status(), StatusCode::OK);
    assert_eq!(
        header(&playlist, "content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(header(&playlist, "cache-control"), "max-age=1");
    assert_eq!(header(&playlist, "access-control-allow-origin"), "*");
    assert_eq!(header(&playlist, "connection"), "close");
    assert_eq!(text(playlist).await, playlist_body(1));

    let segment = setup.get(SEGMENT).await;
    assert_eq!(segment.status(), StatusCode::OK);
    assert_eq!(header(&segment, "content-type"), "video/mp2t");
    assert_eq!(header(&segment, "cache-control"), "max-age=3600");
    assert_eq!(
        header(&segment, "content-length"),
        SEGMENT_BYTES.to_string()
    );
    let bytes = segment.bytes().await.expect("whole segment");
    assert_eq!(&bytes[..], &segment_body()[..]);

    let head = setup
        .client
        .head(format!("{}{SEGMENT}", setup.proxy))
        .send()
        .await
        .expect("HEAD answered");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), SEGMENT_BYTES.to_string());
    assert!(head.bytes().await.expect("empty body").is_empty());

    let missing = setup.get("/live01/segment999999.ts").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn control_api_shows_switches_and_rejects_unknown_modes() {
    let setup = Setup::start(FaultMode::None).await;
    assert_eq!(setup.mode().await, serde_json::json!({ "mode": "none" }));

    let switched = setup.set_mode(FaultMode::Stale).await;
    assert_eq!(switched.status(), StatusCode::OK);
    assert_eq!(
        switched.json::<serde_json::Value>().await.expect("JSON"),
        serde_json::json!({ "mode": "stale" })
    );
    let posted = setup
        .client
        .post(control_url(&setup.proxy, FaultMode::Segment404))
        .send()
        .await
        .expect("POST answered");
    assert_eq!(posted.status(), StatusCode::OK);
    assert_eq!(
        setup.mode().await,
        serde_json::json!({ "mode": "segment404" })
    );

    let refused = setup.set_mode_named("bogus").await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error: serde_json::Value = refused.json().await.expect("JSON error");
    let message = error["error"].as_str().expect("error message");
    assert!(message.contains("bogus"), "{message}");
    assert_eq!(
        setup.mode().await,
        serde_json::json!({ "mode": "segment404" }),
        "a refused switch leaves the mode alone"
    );
}

#[tokio::test]
async fn control_api_is_never_faulted() {
    let setup = Setup::start(FaultMode::None).await;
    for mode in [
        FaultMode::Error500,
        FaultMode::Slow,
        FaultMode::Cut,
        FaultMode::Reset,
        FaultMode::Hang,
        FaultMode::Stale,
    ] {
        let started = Instant::now();
        assert_eq!(setup.set_mode(mode).await.status(), StatusCode::OK);
        assert_eq!(
            setup.mode().await,
            serde_json::json!({ "mode": mode.name() })
        );
        assert!(
            started.elapsed() < Duration::from_millis(SLOW_MS),
            "control API was delayed in mode {mode}"
        );
    }
}

#[tokio::test]
async fn stale_freezes_playlists_while_upstream_moves_on() {
    let setup = Setup::start(FaultMode::None).await;
    assert_eq!(
        setup.set_mode(FaultMode::Stale).await.status(),
        StatusCode::OK
    );

    let first = text(setup.get(PLAYLIST).await).await;
    let live = text(setup.get_upstream(PLAYLIST).await).await;
    let second = setup.get(PLAYLIST).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second = text(second).await;
    assert_eq!(first, second, "the playlist must stay frozen");
    assert_ne!(live, first, "the upstream moved on meanwhile");

    let segment = setup.get(SEGMENT).await.bytes().await.expect("segment");
    assert_eq!(&segment[..], &segment_body()[..], "segments pass through");

    assert_eq!(
        setup.set_mode(FaultMode::None).await.status(),
        StatusCode::OK
    );
    let thawed = text(setup.get(PLAYLIST).await).await;
    assert_ne!(thawed, first, "switching away drops the frozen copy");
}

#[tokio::test]
async fn error500_fails_every_request() {
    let setup = Setup::start(FaultMode::Error500).await;
    for path in [PLAYLIST, SEGMENT] {
        let response = setup.get(path).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!text(response).await.is_empty(), "a 500 carries a body");
    }
}

#[tokio::test]
async fn segment404_hides_segments_only() {
    let setup = Setup::start(FaultMode::Segment404).await;
    assert_eq!(setup.get(SEGMENT).await.status(), StatusCode::NOT_FOUND);
    let playlist = setup.get(PLAYLIST).await;
    assert_eq!(playlist.status(), StatusCode::OK);
    assert!(text(playlist).await.starts_with("#EXTM3U"));
}

#[tokio::test]
async fn slow_delays_every_response() {
    let setup = Setup::start(FaultMode::Slow).await;
    for path in [PLAYLIST, SEGMENT] {
        let started = Instant::now();
        let response = setup.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.expect("whole body");
        assert!(
            started.elapsed() >= Duration::from_millis(SLOW_MS),
            "{path} answered after {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn cut_sends_segments_short_of_their_length() {
    let setup = Setup::start(FaultMode::Cut).await;
    let segment = setup.get(SEGMENT).await;
    assert_eq!(segment.status(), StatusCode::OK);
    assert_eq!(
        header(&segment, "content-length"),
        SEGMENT_BYTES.to_string(),
        "the header keeps the true length"
    );
    match segment.bytes().await {
        Err(_) => {}
        Ok(bytes) => assert!(
            bytes.len() < SEGMENT_BYTES,
            "got the whole {} bytes",
            bytes.len()
        ),
    }

    let playlist = setup.get(PLAYLIST).await;
    assert!(
        text(playlist).await.starts_with("#EXTM3U"),
        "playlists pass"
    );
}

#[tokio::test]
async fn reset_fails_the_request_without_an_answer() {
    let setup = Setup::start(FaultMode::Reset).await;
    let error = setup
        .try_get(PLAYLIST)
        .await
        .expect_err("a reset connection gives no answer");
    assert!(!error.is_timeout(), "reset must be immediate: {error}");
}

#[tokio::test]
async fn hang_never_answers() {
    let setup = Setup::start(FaultMode::Hang).await;
    let error = client(HANG_CLIENT_TIMEOUT)
        .get(format!("{}{PLAYLIST}", setup.proxy))
        .send()
        .await
        .expect_err("a hung request gets no answer");
    assert!(error.is_timeout(), "{error}");
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_with_a_json_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let upstream = closed.local_addr().expect("address");
    drop(closed);

    let setup = Setup::in_front_of(upstream, FaultMode::None, Shutdown::new()).await;
    let response = setup.get(PLAYLIST).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(header(&response, "content-type"), "application/json");
    let error: serde_json::Value = response.json().await.expect("JSON error");
    assert!(error["error"].as_str().is_some(), "{error}");
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let addr = taken.local_addr().expect("address");
    let config = FaultConfig {
        listen: addr,
        upstream: "http://127.0.0.1:9".parse().expect("valid URL"),
        mode: FaultMode::None,
        slow_ms: SLOW_MS,
    };
    let error = match FaultProxy::bind(&config).await {
        Ok(_) => panic!("bound a port already in use"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("cannot listen on"), "{error}");
    assert!(error.contains(&addr.port().to_string()), "{error}");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drops_hung_connections() {
    let mut setup = Setup::start(FaultMode::Hang).await;
    let hung = tokio::spawn({
        let client = setup.client.clone();
        let url = format!("{}{PLAYLIST}", setup.proxy);
        async move { client.get(url).send().await }
    });
    // Let the proxy accept the hung connection before stopping it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    setup.shutdown.trigger();

    let proxy_task = setup.proxy_task.take().expect("proxy running");
    tokio::time::timeout(STOP_BUDGET, proxy_task)
        .await
        .expect("proxy stops promptly")
        .expect("proxy task ends cleanly");
    let error = tokio::time::timeout(STOP_BUDGET, hung)
        .await
        .expect("hung request ends with the proxy")
        .expect("request task")
        .expect_err("the dropped connection gives no answer");
    assert!(!error.is_timeout(), "dropped at shutdown, not timed out");

    let refused = setup.try_get(CONTROL_PATH).await;
    assert!(refused.is_err(), "no longer accepting after shutdown");
}
