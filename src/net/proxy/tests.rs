//! The proxy against synthetic packagers and origin (warp servers on free
//! ports that count every request): what packagers see when viewers pile up
//! on one segment, ask for names nobody published, or hit a blip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::{routes, Proxy, ProxyConfig};
use crate::net::proxy::failover::Health;
use crate::service::shutdown::Shutdown;

/// Segments the fake packagers list.
const LISTED: [&str; 3] = ["segment000001.ts", "segment000002.ts", "segment000003.ts"];
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
    /// (whole MPEG-TS), except `missing` ones, which are 404.
    async fn start(missing: &'static [&'static str], shutdown: &Shutdown) -> FakePackager {
        let requests: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = requests.clone();
        let app = warp::path::tail().then(move |tail: warp::path::Tail| {
            let counted = counted.clone();
            async move {
                let path = tail.as_str().to_string();
                *super::lock(&counted).entry(path.clone()).or_default() += 1;
                tokio::time::sleep(ANSWER_DELAY).await;
                let name = path.strip_prefix("live01/").unwrap_or("");
                let (status, body) = if name == "playlist.m3u8" {
                    let mut text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n".to_string();
                    for s in LISTED {
                        text.push_str(&format!("#EXTINF:2.0,\n{s}\n"));
                    }
                    (StatusCode::OK, text.into_bytes())
                } else if LISTED.contains(&name) && !missing.contains(&name) {
                    let mut ts = vec![0u8; 188 * 4];
                    ts.iter_mut().step_by(188).for_each(|b| *b = 0x47);
                    (StatusCode::OK, ts)
                } else {
                    (StatusCode::NOT_FOUND, b"not found".to_vec())
                };
                warp::reply::with_status(body, status).into_response()
            }
        });
        let base = serve(app, shutdown).await;
        FakePackager { base, requests }
    }

    /// Requests received for `path`.
    fn count(&self, path: &str) -> usize {
        super::lock(&self.requests).get(path).copied().unwrap_or(0)
    }

    /// Segment requests received, any name.
    fn segment_requests(&self) -> usize {
        super::lock(&self.requests)
            .iter()
            .filter(|(p, _)| p.ends_with(".ts"))
            .map(|(_, n)| n)
            .sum()
    }
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
    let bases: Vec<String> = packagers.iter().map(|p| p.base.clone()).collect();
    let answer = serde_json::json!({ "signal": "live01", "packagers": bases });
    let origin = warp::path::tail().map(move |tail: warp::path::Tail| {
        if tail.as_str() == "live/live01/packagers" {
            warp::reply::json(&answer).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    });
    let origin_url = serve(origin, shutdown).await;
    let config = ProxyConfig::parse_from([
        "proxy",
        "--origin-url",
        &origin_url,
        "--packagers",
        &bases.join(","),
    ]);
    routes(Arc::new(Proxy::new(config, shutdown.clone())))
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
        healths(&status).iter().all(|h| *h != Health::Failing),
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
    assert_eq!(healths(&status)[0], Health::Fresh, "{status}");

    // A second failure in a row does: the viewer is still served by B, and
    // B is the active packager from then on.
    let (code, _) = get(&proxy, "/live01/segment000002.ts").await;
    assert_eq!(code, 200);
    let status = proxy_status(&proxy).await;
    assert_eq!(switches(&status), 2, "{status}");
    assert_eq!(healths(&status)[0], Health::Failing, "{status}");
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

fn healths(status: &serde_json::Value) -> Vec<Health> {
    status["signals"][0]["packagers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| serde_json::from_value(p["health"].clone()).ok())
        .collect()
}
