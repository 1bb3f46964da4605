//! The proxy against synthetic packagers and origin (warp servers on free
//! ports that count every request): what packagers see when viewers pile up
//! on one segment, ask for names nobody published, or hit a blip; what the
//! origin sees when viewers ask for a signal it does not know; what a CDN
//! revalidating a playlist gets; who the proxy counts as viewers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::stream::lock;
use super::{routes, Proxy, ProxyConfig};
use crate::api::PackagerHealth;
use crate::service::shutdown::Shutdown;

/// Segments the fake packagers list.
const LISTED: [&str; 3] = ["segment000001.ts", "segment000002.ts", "segment000003.ts"];
/// Parts the fake low-latency packagers list after [`LISTED`].
const LL_PARTS: [&str; 2] = ["segment000004_part0.ts", "segment000004_part1.ts"];
/// How long a fake packager takes to answer: long enough for concurrent
/// viewer requests to overlap.
const ANSWER_DELAY: Duration = Duration::from_millis(300);

/// A fake packager: its base URL and the requests it got, by path.
struct FakePackager {
    base: String,
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl FakePackager {
    /// Serves `live01/playlist.m3u8` listing [`LISTED`] and those segments
    /// (whole MPEG-TS), except `missing` ones, which are 404; every answer
    /// after [`ANSWER_DELAY`].
    async fn start(missing: &'static [&'static str], shutdown: &Shutdown) -> FakePackager {
        FakePackager::answering(shutdown, move |name| async move {
            tokio::time::sleep(ANSWER_DELAY).await;
            if name == "playlist.m3u8" {
                (StatusCode::OK, playlist("#EXT-X-VERSION:3\n", &[]))
            } else if LISTED.contains(&name.as_str()) && !missing.contains(&name.as_str()) {
                (StatusCode::OK, transport_stream())
            } else {
                (StatusCode::NOT_FOUND, b"not found".to_vec())
            }
        })
        .await
    }

    /// A low-latency packager: at once, a playlist listing [`LISTED`] and two
    /// parts of segment 4 ([`LL_PARTS`]); those parts after `media_delay`.
    async fn start_low_latency(media_delay: Duration, shutdown: &Shutdown) -> FakePackager {
        const LOW_LATENCY: &str = "#EXT-X-VERSION:9\n#EXT-X-PART-INF:PART-TARGET=0.4\n\
                                   #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.2\n";
        FakePackager::answering(shutdown, move |name| async move {
            if name == "playlist.m3u8" {
                (StatusCode::OK, playlist(LOW_LATENCY, &LL_PARTS))
            } else if LL_PARTS.contains(&name.as_str()) {
                tokio::time::sleep(media_delay).await;
                (StatusCode::OK, transport_stream())
            } else {
                (StatusCode::NOT_FOUND, b"not found".to_vec())
            }
        })
        .await
    }

    /// A packager counting every request by path and answering each name
    /// under `live01/` with what `answer` gives for it.
    async fn answering<F, A>(shutdown: &Shutdown, answer: F) -> FakePackager
    where
        F: Fn(String) -> A + Clone + Send + Sync + 'static,
        A: std::future::Future<Output = (StatusCode, Vec<u8>)> + Send,
    {
        let requests: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = requests.clone();
        let app = warp::path::tail().then(move |tail: warp::path::Tail| {
            let (counted, answer) = (counted.clone(), answer.clone());
            async move {
                let path = tail.as_str().to_string();
                *lock(&counted).entry(path.clone()).or_default() += 1;
                let name = path.strip_prefix("live01/").unwrap_or("").to_string();
                let (status, body) = answer(name).await;
                warp::reply::with_status(body, status).into_response()
            }
        });
        let base = serve(app, shutdown).await;
        FakePackager { base, requests }
    }

    /// Requests received for `path`.
    fn count(&self, path: &str) -> usize {
        lock(&self.requests).get(path).copied().unwrap_or(0)
    }

    /// Segment requests received, any name.
    fn segment_requests(&self) -> usize {
        lock(&self.requests)
            .iter()
            .filter(|(p, _)| p.ends_with(".ts"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// A media playlist: `tags` after `#EXTM3U`, [`LISTED`] from media sequence
/// 1, then `parts` of the next segment.
fn playlist(tags: &str, parts: &[&str]) -> Vec<u8> {
    let mut text = format!("#EXTM3U\n{tags}#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n");
    for s in LISTED {
        text.push_str(&format!("#EXTINF:2.0,\n{s}\n"));
    }
    for p in parts {
        text.push_str(&format!("#EXT-X-PART:DURATION=0.4,URI=\"{p}\"\n"));
    }
    text.into_bytes()
}

/// Four MPEG-TS packets: a whole transport stream to the proxy's checks.
fn transport_stream() -> Vec<u8> {
    let mut ts = vec![0u8; 188 * 4];
    ts.iter_mut().step_by(188).for_each(|b| *b = 0x47);
    ts
}

/// Serves `app` on a free loopback port; its base URL.
async fn serve<F>(app: F, shutdown: &Shutdown) -> String
where
    F: Filter<Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let listen = ProxyConfig::parse_from(["proxy", "--listen-host", "127.0.0.1"]).listen;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        crate::service::server::serve_on("test", listener, &listen, app, shutdown).await
    });
    base
}

/// An origin saying live01 lives on `packagers`, and the proxy's routes.
async fn proxy_over(
    packagers: &[&FakePackager],
    shutdown: &Shutdown,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    proxy_and_origin(packagers, shutdown, &[]).await.0
}

/// Like [`proxy_over`], with the requests the origin got, by path.
async fn proxy_and_origin(
    packagers: &[&FakePackager],
    shutdown: &Shutdown,
    flags: &[&str],
) -> (
    impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone,
    Arc<Mutex<HashMap<String, usize>>>,
) {
    let bases: Vec<String> = packagers.iter().map(|p| p.base.clone()).collect();
    proxy_for(bases, shutdown, flags).await
}

/// The proxy's routes over packagers at `bases`, with an origin routing
/// live01 to them, and the requests the origin got, by path.
async fn proxy_for(
    bases: Vec<String>,
    shutdown: &Shutdown,
    flags: &[&str],
) -> (
    impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone,
    Arc<Mutex<HashMap<String, usize>>>,
) {
    let answer = serde_json::json!({ "signal": "live01", "packagers": bases });
    let asked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = asked.clone();
    let origin = warp::path::tail().map(move |tail: warp::path::Tail| {
        *lock(&counted).entry(tail.as_str().to_string()).or_default() += 1;
        if tail.as_str() == "live/live01/packagers" {
            warp::reply::json(&answer).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    });
    let origin_url = serve(origin, shutdown).await;
    let packagers = bases.join(",");
    let mut args = vec![
        "proxy",
        "--origin-url",
        &origin_url,
        "--packagers",
        &packagers,
    ];
    args.extend_from_slice(flags);
    let config = ProxyConfig::parse_from(args);
    (
        routes(Arc::new(Proxy::new(config, shutdown.clone()))),
        asked,
    )
}

async fn get(
    routes: &(impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
          + Clone
          + Send
          + Sync
          + 'static),
    path: &str,
) -> (u16, Vec<u8>) {
    let res = warp::test::request().path(path).reply(routes).await;
    (res.status().as_u16(), res.body().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_viewers_of_one_uncached_segment_cause_one_upstream_request() {
    let shutdown = Shutdown::new();
    let a = FakePackager::start(&[], &shutdown).await;
    let proxy = proxy_over(&[&a], &shutdown).await;

    // Twenty viewers start at once on a signal the proxy has not seen: their
    // playlist requests collapse into one fetch (plus the poller's first).
    let playlists =
        futures_util::future::join_all((0..20).map(|_| get(&proxy, "/live01/playlist.m3u8"))).await;
    assert!(playlists.iter().all(|(status, _)| *status == 200));
    let playlist_fetches = a.count("live01/playlist.m3u8");
    assert!(
        (1..=2).contains(&playlist_fetches),
        "20 first playlist requests made {playlist_fetches} fetches (1 for viewers, at most 1 poll)"
    );

    // Then all ask for the same segment.
    let segments =
        futures_util::future::join_all((0..20).map(|_| get(&proxy, "/live01/segment000002.ts")))
            .await;
    let first = &segments[0];
    assert_eq!(first.0, 200);
    assert!(
        segments.iter().all(|s| s == first),
        "every viewer got it whole"
    );
    assert_eq!(a.count("live01/segment000002.ts"), 1);

    // A later viewer is served from the cache.
    assert_eq!(get(&proxy, "/live01/segment000002.ts").await.0, 200);
    assert_eq!(a.count("live01/segment000002.ts"), 1);
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_no_packager_listed_are_404_without_a_fetch() {
    let shutdown = Shutdown::new();
    let a = FakePackager::start(&[], &shutdown).await;
    let b = FakePackager::start(&[], &shutdown).await;
    let proxy = proxy_over(&[&a, &b], &shutdown).await;
    assert_eq!(get(&proxy, "/live01/playlist.m3u8").await.0, 200);

    let bogus = (0..100).map(|i| format!("/live01/segment{:06}.ts", 900_000 + i));
    let junk = [
        "/live01/..%2F..%2Fetc%2Fpasswd",
        "/live01/segment.ts.ts",
        "/live01/other.m3u8",
        "/live01/a/b.ts",
        "/live01/.hidden.ts",
    ];
    for path in bogus.chain(junk.iter().map(|j| j.to_string())) {
        assert_eq!(get(&proxy, &path).await.0, 404, "{path}");
    }
    assert_eq!(a.segment_requests() + b.segment_requests(), 0);
    let status = proxy_status(&proxy).await;
    assert_eq!(switches(&status), 1, "only the first choice: {status}");
    assert!(
        healths(&status)
            .iter()
            .all(|h| *h != PackagerHealth::Failing),
        "{status}"
    );
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_404_for_a_listed_segment_is_retried_elsewhere_and_flips_nothing() {
    let shutdown = Shutdown::new();
    // A lists segments 2 and 3 (its playlist says so) but answers 404.
    let a = FakePackager::start(&["segment000002.ts", "segment000003.ts"], &shutdown).await;
    let b = FakePackager::start(&[], &shutdown).await;
    let proxy = proxy_over(&[&a, &b], &shutdown).await;
    assert_eq!(get(&proxy, "/live01/playlist.m3u8").await.0, 200);

    let (status, body) = get(&proxy, "/live01/segment000003.ts").await;
    assert_eq!(status, 200, "served by B within the same request");
    assert!(!body.is_empty());
    assert_eq!(
        (
            a.count("live01/segment000003.ts"),
            b.count("live01/segment000003.ts")
        ),
        (1, 1)
    );
    let status = proxy_status(&proxy).await;
    assert_eq!(switches(&status), 1, "one 404 moves no traffic: {status}");
    assert_eq!(healths(&status)[0], PackagerHealth::Fresh, "{status}");

    // A second failure in a row does: the viewer is still served by B, and
    // B is the active packager from then on.
    let (code, _) = get(&proxy, "/live01/segment000002.ts").await;
    assert_eq!(code, 200);
    let status = proxy_status(&proxy).await;
    assert_eq!(switches(&status), 2, "{status}");
    assert_eq!(healths(&status)[0], PackagerHealth::Failing, "{status}");
    assert_eq!(status["signals"][0]["switches"][1]["to"], b.base.as_str());
    shutdown.trigger();
}

async fn proxy_status(
    proxy: &(impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
          + Clone
          + Send
          + Sync
          + 'static),
) -> serde_json::Value {
    let (code, body) = get(proxy, "/status").await;
    assert_eq!(code, 200);
    serde_json::from_slice(&body).expect("status is JSON")
}

/// Switches recorded for live01 (the first choice counts as one).
fn switches(status: &serde_json::Value) -> usize {
    status["signals"][0]["switches"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

fn healths(status: &serde_json::Value) -> Vec<PackagerHealth> {
    status["signals"][0]["packagers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| serde_json::from_value(p["health"].clone()).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdn_revalidating_a_playlist_gets_304_and_the_caching_headers() {
    let shutdown = Shutdown::new();
    let a = FakePackager::start(&[], &shutdown).await;
    let proxy = proxy_over(&[&a], &shutdown).await;

    let first = warp::test::request()
        .path("/live01/playlist.m3u8")
        .reply(&proxy)
        .await;
    assert_eq!(first.status(), 200);
    let headers = first.headers();
    assert_eq!(
        headers["cache-control"], "public, max-age=1",
        "half of the 2 s target"
    );
    let etag = headers["etag"].to_str().expect("etag").to_string();
    assert!(headers.contains_key("last-modified"));

    // The CDN revalidates with the tag it holds: 304, no body, same tags.
    let again = warp::test::request()
        .path("/live01/playlist.m3u8")
        .header("if-none-match", &etag)
        .reply(&proxy)
        .await;
    assert_eq!(again.status(), 304);
    assert!(again.body().is_empty());
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert_eq!(again.headers()["cache-control"], "public, max-age=1");
    // A tag of another playlist gets the playlist.
    let other = warp::test::request()
        .path("/live01/playlist.m3u8")
        .header("if-none-match", "\"0000000000000000\"")
        .reply(&proxy)
        .await;
    assert_eq!(other.status(), 200);
    assert_eq!(other.body(), first.body());

    // Gzip: its own tag, the same bytes for every viewer, and they unzip to
    // the playlist.
    let gz = |tag: Option<String>| {
        let mut request = warp::test::request()
            .path("/live01/playlist.m3u8")
            .header("accept-encoding", "gzip");
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        request.reply(&proxy)
    };
    let zipped = gz(None).await;
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let gz_tag = zipped.headers()["etag"].to_str().expect("etag").to_string();
    assert_ne!(gz_tag, etag);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(zipped.body().as_ref()),
        &mut plain,
    )
    .expect("gzip");
    assert_eq!(plain, first.body().to_vec());
    assert_eq!(gz(Some(gz_tag)).await.status(), 304);

    // Segments are kept long, 404s a second, and neither changes the tags.
    let segment = warp::test::request()
        .path("/live01/segment000001.ts")
        .reply(&proxy)
        .await;
    assert_eq!(segment.status(), 200);
    assert_eq!(segment.headers()["cache-control"], "public, max-age=60");
    let missing = warp::test::request()
        .path("/live01/segment999999.ts")
        .reply(&proxy)
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["cache-control"], "public, max-age=1");
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_the_origin_does_not_know_is_looked_up_at_most_once_a_second() {
    let shutdown = Shutdown::new();
    let a = FakePackager::start(&[], &shutdown).await;
    let (proxy, origin) = proxy_and_origin(&[&a], &shutdown, &[]).await;
    let lookups = || {
        lock(&origin)
            .get("live/nosuch/packagers")
            .copied()
            .unwrap_or(0)
    };
    let hits = || {
        super::metrics::PROXY_NEGATIVE_HITS
            .with_label_values(&["not_found"])
            .get()
    };
    let hits_before = hits();
    let started = std::time::Instant::now();

    // A crowd at once, then a steady stream for a few seconds.
    let crowd =
        futures_util::future::join_all((0..20).map(|_| get(&proxy, "/nosuch/playlist.m3u8"))).await;
    assert!(crowd.iter().all(|(status, _)| *status == 404));
    assert_eq!(lookups(), 1, "the crowd shared one lookup");
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        for path in ["/nosuch/playlist.m3u8", "/nosuch/segment000001.ts"] {
            let res = warp::test::request().path(path).reply(&proxy).await;
            assert_eq!(res.status(), 404, "{path}");
            assert_eq!(res.headers()["cache-control"], "public, max-age=1");
            requests += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let bound = elapsed.as_secs_f64().ceil() as usize + 1;
    let made = lookups();
    assert!(
        (2..=bound).contains(&made),
        "{made} lookups in {elapsed:?} for {requests} requests: one per second expected"
    );
    assert!(
        hits() - hits_before >= (requests - made) as u64,
        "answers from memory are counted"
    );
    // The known signal is unaffected.
    assert_eq!(get(&proxy, "/live01/playlist.m3u8").await.0, 200);
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_distinct_clients_by_address_and_user_agent() {
    use crate::service::server::Peer;
    let shutdown = Shutdown::new();
    let a = FakePackager::start(&[], &shutdown).await;
    let (proxy, _) = proxy_and_origin(&[&a], &shutdown, &["--trusted-proxies", "10.0.0.5"]).await;
    let ask = |peer: &str, agent: &str, forwarded: Option<&str>, path: &str| {
        let peer = Peer(std::net::SocketAddr::new(
            peer.parse().expect("address"),
            40000,
        ));
        let mut request = warp::test::request()
            .path(path)
            .extension(peer)
            .header("user-agent", agent);
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        request.reply(&proxy)
    };
    for _ in 0..3 {
        // Two devices behind one address, a third household, each reloading.
        ask("192.0.2.1", "AppleCoreMedia", None, "/live01/playlist.m3u8").await;
        ask("192.0.2.1", "Firefox", None, "/live01/playlist.m3u8").await;
        ask(
            "192.0.2.2",
            "AppleCoreMedia",
            None,
            "/live01/segment000001.ts",
        )
        .await;
        // Two viewers through the trusted balancer, one claiming a fake
        // first hop (the balancer's own entry is the one believed).
        ask(
            "10.0.0.5",
            "VLC",
            Some("198.51.100.1"),
            "/live01/playlist.m3u8",
        )
        .await;
        ask(
            "10.0.0.5",
            "VLC",
            Some("6.6.6.6, 198.51.100.2"),
            "/live01/playlist.m3u8",
        )
        .await;
        // An untrusted peer cannot pose as several viewers.
        ask(
            "192.0.2.3",
            "VLC",
            Some("198.51.100.3"),
            "/live01/playlist.m3u8",
        )
        .await;
        ask(
            "192.0.2.3",
            "VLC",
            Some("198.51.100.4"),
            "/live01/playlist.m3u8",
        )
        .await;
    }
    // Requests without a peer (in-process) are nobody.
    assert_eq!(get(&proxy, "/live01/playlist.m3u8").await.0, 200);
    let status = proxy_status(&proxy).await;
    assert_eq!(status["signals"][0]["viewers"], 6, "{status}");
    shutdown.trigger();
}

/// A fake packager of a two-rung ladder (720p, 480p) and a rung nobody
/// serves (1080p): each media playlist lists segments up to `newest[rung]`,
/// its EXTINF titled with `me` so a test can tell whose copy it got.
async fn ladder_packager(me: &'static str, newest: [u64; 2], shutdown: &Shutdown) -> String {
    let app = warp::path::tail().map(move |tail: warp::path::Tail| {
        let name = tail.as_str().strip_prefix("live01/").unwrap_or("");
        let media = |rung: &str, newest: u64| {
            let mut text = format!(
                "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{}\n",
                newest - 2
            );
            for n in newest - 2..=newest {
                text.push_str(&format!("#EXTINF:2.0,{me}\n{rung}_segment{n:06}.ts\n"));
            }
            text
        };
        let body = match name {
            "playlist.m3u8" => {
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1920x1080\n1080p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720\n720p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=854x480\n480p.m3u8\n"
                    .to_string()
            }
            "720p.m3u8" => media("720p", newest[0]),
            "480p.m3u8" => media("480p", newest[1]),
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
        warp::reply::with_status(body, StatusCode::OK).into_response()
    });
    serve(app, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_is_judged_per_rendition_and_a_rendition_nobody_serves_is_left_out() {
    let shutdown = Shutdown::new();
    // A's 480p is two segments behind B's; their 720p are level.
    let a = ladder_packager("from-a", [40, 38], &shutdown).await;
    let b = ladder_packager("from-b", [40, 40], &shutdown).await;
    let (proxy, _) = proxy_for(vec![a, b], &shutdown, &[]).await;
    let (status, body) = get(&proxy, "/live01/playlist.m3u8").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("720p.m3u8"));
    let (status, body) = get(&proxy, "/live01/720p.m3u8").await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("from-a"),
        "720p from the first packager"
    );
    let (status, body) = get(&proxy, "/live01/480p.m3u8").await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).to_string();
    assert!(
        text.contains("from-b") && text.contains("480p_segment000040.ts"),
        "{text}"
    );
    // 1080p is named but served by nobody: once the poller has read the
    // renditions, viewers no longer get it in the multivariant playlist.
    let mut left_out = false;
    for _ in 0..50 {
        let (_, body) = get(&proxy, "/live01/playlist.m3u8").await;
        let text = String::from_utf8_lossy(&body).to_string();
        if !text.contains("1080p.m3u8") {
            assert!(
                text.contains("720p.m3u8") && text.contains("480p.m3u8"),
                "{text}"
            );
            left_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left_out, "1080p stayed in the multivariant playlist");
    // A rendition the ladder does not name is not asked of anyone.
    let (status, _) = get(&proxy, "/live01/2160p.m3u8").await;
    assert_eq!(status, 404);
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_the_first_packager_sits_on_is_asked_of_its_twin_before_the_budget_runs_out() {
    let shutdown = Shutdown::new();
    // A takes 5 s for a part, far past the first-byte budget (half the 2 s
    // target); B answers at once.
    let a = FakePackager::start_low_latency(Duration::from_secs(5), &shutdown).await;
    let b = FakePackager::start_low_latency(Duration::ZERO, &shutdown).await;
    let proxy = proxy_over(&[&a, &b], &shutdown).await;
    assert_eq!(get(&proxy, "/live01/playlist.m3u8").await.0, 200);

    let (status, body) = get(&proxy, "/live01/segment000004_part1.ts").await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 188 * 4);
    assert_eq!(a.count("live01/segment000004_part1.ts"), 1, "A asked first");
    assert_eq!(b.count("live01/segment000004_part1.ts"), 1, "then B");
    // B was asked while A's fetch was still within its budget (hedged at
    // 1.5 part targets, 0.6 s), not after A's timed out at 1 s.
    let hedged = super::metrics::PROXY_HEDGED_FETCHES
        .with_label_values(&[b.base.as_str()])
        .get();
    assert_eq!(hedged, 1, "B asked as a hedge");
    let a_timeouts = super::metrics::PROXY_UPSTREAM_FAILURES
        .with_label_values(&[a.base.as_str(), "first_byte_timeout"])
        .get();
    assert_eq!(
        a_timeouts, 0,
        "A's fetch ran out its budget before B was asked"
    );
    shutdown.trigger();
}
