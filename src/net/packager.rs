//! The packager (server1 and server2 of the seed): serves the worker's output
//! tree over HTTP. `GET /<signal>/playlist.m3u8`, `GET /<signal>/<segment>.ts`
//! and `GET /healthcheck`. Only plain playlist and segment names inside a
//! signal folder can be read, whatever the encoding of the request path.
//!
//! Low latency (LL-HLS): a playlist request with `_HLS_msn` / `_HLS_part` is
//! held until the worker's playlist lists that part (at most three target
//! durations, then 503), refused at once with a 400 when its parameters are
//! broken or ask too far ahead ([`crate::hls::blocking`]); a request for the
//! part the playlist hints at (`EXT-X-PRELOAD-HINT`) is held until the
//! worker lists it. Every held request waits on one poller per playlist
//! ([`super::playlist_watch`]).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::delivery::{
    media_response, Delivery, Media, MediaRequest, PlaylistBody, PlaylistCaching,
};
use super::playlist_watch::{PlaylistWatch, ReadError, Snapshot};
use crate::hls::blocking::{hold_limit, BlockingReload};
use crate::hls::{classify_media_file, is_valid_signal_name, MediaKind, PLAYLIST_NAME};
use crate::service::config::ListenArgs;
use crate::service::http::{self, allow_any_origin, json_error, raw_query};
use crate::service::shutdown::Shutdown;

/// Settings shared by server1 and server2 (each bin adds its own port).
#[derive(Debug, Clone, clap::Args)]
pub struct PackagerArgs {
    /// Folder the worker writes to, served as is.
    #[arg(long, env = "OUTPUT_STREAM_PATH", default_value = "./output")]
    pub output: PathBuf,
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum PackagerError {
    #[error("output folder {0} does not exist or is not a folder (start the worker first, or set OUTPUT_STREAM_PATH)")]
    NoOutput(PathBuf),
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}

/// Serves `args.output` on `port` until shutdown.
pub async fn run(
    service: &'static str,
    args: PackagerArgs,
    port: u16,
    shutdown: Shutdown,
) -> Result<(), PackagerError> {
    if !args.output.is_dir() {
        return Err(PackagerError::NoOutput(args.output));
    }
    let routes = crate::service::metrics::instrument(service, routes(service, args.output.clone()));
    crate::service::server::serve(service, &args.listen, port, routes, shutdown).await?;
    Ok(())
}

/// All packager routes, with JSON errors for anything else.
pub fn routes(
    service: &'static str,
    root: PathBuf,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let tree = Arc::new(Tree {
        root,
        watch: PlaylistWatch::default(),
    });
    let media = warp::path!(String / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::header::headers_cloned())
        .and(raw_query())
        .and(warp::any().map(move || tree.clone()))
        .then(
            move |signal: String,
                  file: String,
                  headers: warp::http::HeaderMap,
                  query: String,
                  tree: Arc<Tree>| async move {
                let request = MediaRequest::from_headers(&headers);
                tree.serve(service, &signal, &file, &query, &request).await
            },
        );
    http::healthcheck(service)
        .or(crate::service::metrics::route())
        .unify()
        .or(media)
        .unify()
        .recover(http::recover)
        .unify()
}

/// The output tree served, and the playlists held requests wait on.
struct Tree {
    root: PathBuf,
    watch: PlaylistWatch,
}

impl Tree {
    /// Reads one playlist or segment; 404 for any name that is not a plain
    /// signal and media file name (so `..`, `%2e%2e`, `%2f`, `\` never reach
    /// the disk). A blocking reload or a hinted part is held (see the
    /// module documentation).
    async fn serve(
        &self,
        service: &'static str,
        signal: &str,
        file: &str,
        query: &str,
        request: &MediaRequest,
    ) -> Response {
        let kind = match (is_valid_signal_name(signal), classify_media_file(file)) {
            (true, Some(kind)) => kind,
            _ => return allow_any_origin(json_error(StatusCode::NOT_FOUND, "not found")),
        };
        let path = self.root.join(signal).join(file);
        let delivery = |last_modified| Delivery {
            service,
            last_modified,
        };
        if kind == MediaKind::Playlist {
            let blocking = match BlockingReload::parse(query) {
                Ok(b) => b,
                Err(e) => return bad_request(e.to_string()),
            };
            if let Some(reload) = blocking {
                return match self.hold_playlist(&path, reload).await {
                    Ok(snapshot) => media_response(
                        Media::Playlist(
                            PlaylistBody::new(snapshot.bytes.clone()),
                            PlaylistCaching::Revalidate,
                        ),
                        delivery(snapshot.modified),
                        request,
                    ),
                    Err(refusal) => refusal,
                };
            }
        } else if !path.exists() {
            self.hold_hinted_part(signal, file).await;
        }
        // The time is read before the bytes: a playlist rewritten in between is
        // then never older than it claims.
        let last_modified = tokio::fs::metadata(&path)
            .await
            .and_then(|m| m.modified())
            .ok();
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let media = match kind {
                    MediaKind::Playlist => Media::Playlist(
                        PlaylistBody::new(bytes.into()),
                        PlaylistCaching::Revalidate,
                    ),
                    MediaKind::Segment => Media::Segment(bytes.into()),
                };
                media_response(media, delivery(last_modified), request)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => allow_any_origin(json_error(
                StatusCode::NOT_FOUND,
                format!("{signal}/{file} not found"),
            )),
            Err(e) => {
                log::warn!("Cannot read {}: {e}", path.display());
                allow_any_origin(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read file",
                ))
            }
        }
    }

    /// A blocking reload: the playlist once it lists what `reload` asks for,
    /// within three target durations (else 503); at once when the playlist
    /// cannot block (no parts) or has ended; 400 when it asks too far ahead.
    async fn hold_playlist(
        &self,
        path: &Path,
        reload: BlockingReload,
    ) -> Result<Arc<Snapshot>, Response> {
        let now = match self.watch.current(path).await {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(unreadable(path, e)),
        };
        let can_block = now
            .facts
            .low_latency
            .as_ref()
            .is_some_and(|ll| ll.can_block_reload);
        if !can_block || reload.is_satisfied_by(&now.facts) {
            return Ok(now);
        }
        if let Err(e) = reload.check_not_too_far(&now.facts) {
            return Err(bad_request(e.to_string()));
        }
        let limit = hold_limit(now.facts.target_duration);
        match self
            .watch
            .wait_until(path, limit, |facts| reload.is_satisfied_by(facts))
            .await
        {
            Ok(snapshot) => Ok(snapshot),
            Err(Ok(_)) => {
                let mut response = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "segment {} part {:?} not listed within {} s",
                        reload.msn,
                        reload.part,
                        limit.as_secs()
                    ),
                );
                response.headers_mut().insert(
                    "cache-control",
                    warp::http::HeaderValue::from_static(
                        super::delivery::UNAVAILABLE_CACHE_CONTROL,
                    ),
                );
                Err(allow_any_origin(response))
            }
            Err(Err(e)) => Err(unreadable(path, e)),
        }
    }

    /// A part not on disk yet that the signal's playlist hints at as the
    /// next one: waits (three target durations at most) until the playlist
    /// lists it. Any other missing name returns at once (its 404 follows).
    async fn hold_hinted_part(&self, signal: &str, file: &str) {
        let playlist = self.root.join(signal).join(PLAYLIST_NAME);
        let Ok(now) = self.watch.current(&playlist).await else {
            return;
        };
        let hinted = now
            .facts
            .low_latency
            .as_ref()
            .is_some_and(|ll| ll.preload_hint.as_deref() == Some(file));
        if !hinted {
            return;
        }
        let limit = hold_limit(now.facts.target_duration);
        let _ = self
            .watch
            .wait_until(&playlist, limit, |facts| {
                facts.end_list
                    || facts
                        .low_latency
                        .as_ref()
                        .is_some_and(|ll| ll.parts.iter().any(|p| p.uri == file))
            })
            .await;
    }
}

fn bad_request(message: String) -> Response {
    let mut response = json_error(StatusCode::BAD_REQUEST, message);
    response.headers_mut().insert(
        "cache-control",
        warp::http::HeaderValue::from_static(super::delivery::UNAVAILABLE_CACHE_CONTROL),
    );
    allow_any_origin(response)
}

fn unreadable(path: &Path, e: ReadError) -> Response {
    match e {
        ReadError::NotFound => allow_any_origin(json_error(StatusCode::NOT_FOUND, "not found")),
        ReadError::Unreadable(why) => {
            log::warn!("Cannot read {}: {why}", path.display());
            allow_any_origin(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read playlist",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("live01")).expect("mkdir");
        std::fs::write(dir.path().join("live01/playlist.m3u8"), "#EXTM3U\n").expect("write");
        std::fs::write(dir.path().join("live01/segment000001.ts"), [0x47u8; 188]).expect("write");
        std::fs::write(dir.path().join("secret.txt"), "secret").expect("write");
        dir
    }

    #[tokio::test]
    async fn serves_playlists_and_segments_with_their_headers() {
        let dir = tree();
        let api = routes("server1", dir.path().to_path_buf());
        let res = warp::test::request()
            .path("/live01/playlist.m3u8")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"],
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(
            res.headers()["cache-control"],
            crate::net::delivery::PLAYLIST_CACHE_CONTROL
        );
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        assert!(res.headers().contains_key("last-modified"));
        assert_eq!(res.body().as_ref(), b"#EXTM3U\n");
        let res = warp::test::request()
            .path("/live01/playlist.m3u8")
            .header("accept-encoding", "gzip")
            .reply(&api)
            .await;
        assert_eq!(res.headers()["content-encoding"], "gzip");
        let mut plain = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(res.body().as_ref()),
            &mut plain,
        )
        .expect("valid gzip");
        assert_eq!(plain, "#EXTM3U\n");
        let res = warp::test::request()
            .method("HEAD")
            .path("/live01/playlist.m3u8")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200, "HEAD is answered like GET");
        let (etag, modified) = (
            res.headers()["etag"].clone(),
            res.headers()["last-modified"].clone(),
        );
        for (name, value) in [("if-none-match", etag), ("if-modified-since", modified)] {
            let res = warp::test::request()
                .path("/live01/playlist.m3u8")
                .header(name, value)
                .reply(&api)
                .await;
            assert_eq!(res.status(), 304, "{name}");
            assert!(res.body().is_empty());
        }
        let res = warp::test::request()
            .path("/live01/segment000001.ts")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "video/mp2t");
        assert_eq!(res.body().len(), 188);
    }

    #[tokio::test]
    async fn nothing_outside_the_tree_can_be_read() {
        let dir = tree();
        let api = routes("server1", dir.path().to_path_buf());
        for path in [
            "/live01/..%2fsecret.txt",
            "/live01/%2e%2e%2fsecret.txt",
            "/..%2f/secret.txt",
            "/live01/..\\secret.txt",
            "/%2e%2e/secret.txt",
            "/live01/secret.txt",
            "/live01/%00.ts",
            "/live01/%2fetc%2fpasswd",
        ] {
            let res = warp::test::request().path(path).reply(&api).await;
            assert_eq!(res.status(), 404, "{path}");
            assert!(
                !String::from_utf8_lossy(res.body()).contains("secret"),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn healthcheck_and_unknown_routes_answer_json() {
        let dir = tree();
        let api = routes("server1", dir.path().to_path_buf());
        let res = warp::test::request().path("/healthcheck").reply(&api).await;
        assert_eq!(res.status(), 200);
        let res = warp::test::request().path("/a/b/c").reply(&api).await;
        assert_eq!(res.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
        assert!(body["error"].is_string());
        let res = warp::test::request()
            .path("/live01/missing.ts")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 404);
    }

    /// A low-latency playlist making segment 43, with `parts` of it out.
    fn making(parts: u32) -> String {
        let mut text = String::from(
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200\n\
#EXT-X-PART-INF:PART-TARGET=0.40000\n#EXT-X-MEDIA-SEQUENCE:42\n\
#EXTINF:1.000,\nsegment000042.ts\n",
        );
        for k in 0..parts {
            text.push_str(&format!(
                "#EXT-X-PART:DURATION=0.40000,URI=\"segment000043_part{k}.ts\"\n"
            ));
        }
        text.push_str(&format!(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment000043_part{parts}.ts\"\n"
        ));
        text
    }

    #[tokio::test]
    async fn a_blocking_reload_is_held_until_its_part_is_listed() {
        let dir = tree();
        let playlist = dir.path().join("live01/playlist.m3u8");
        std::fs::write(&playlist, making(1)).expect("write");
        let api = routes("server1", dir.path().to_path_buf());
        // Listed already: at once.
        let res = warp::test::request()
            .path("/live01/playlist.m3u8?_HLS_msn=43&_HLS_part=0")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200);
        // Not yet: held until the worker lists it.
        let writer = {
            let playlist = playlist.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::write(&playlist, making(2)).expect("write");
            })
        };
        let asked = std::time::Instant::now();
        let res = warp::test::request()
            .path("/live01/playlist.m3u8?_HLS_msn=43&_HLS_part=1")
            .reply(&api)
            .await;
        writer.await.expect("writer");
        assert_eq!(res.status(), 200);
        assert!(asked.elapsed() >= Duration::from_millis(300), "it was held");
        assert!(String::from_utf8_lossy(res.body())
            .contains("segment000043_part1.ts\"\n#EXT-X-PRELOAD"));
        // Never listed within three target durations (3 s): 503, not kept.
        let res = warp::test::request()
            .path("/live01/playlist.m3u8?_HLS_msn=44&_HLS_part=0")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["cache-control"], "no-store");
    }

    #[tokio::test]
    async fn broken_or_far_reloads_are_refused_at_once() {
        let dir = tree();
        std::fs::write(dir.path().join("live01/playlist.m3u8"), making(1)).expect("write");
        let api = routes("server1", dir.path().to_path_buf());
        for query in [
            "_HLS_msn=45",
            "_HLS_msn=-1",
            "_HLS_msn=x",
            "_HLS_part=1",
            "_HLS_msn=43&_HLS_msn=43",
            "_HLS_msn=99999999999999999999999999",
            "_HLS_msn=43&_HLS_part=99999",
        ] {
            let asked = std::time::Instant::now();
            let res = warp::test::request()
                .path(&format!("/live01/playlist.m3u8?{query}"))
                .reply(&api)
                .await;
            assert_eq!(res.status(), 400, "{query}");
            assert!(asked.elapsed() < Duration::from_millis(500), "{query} held");
        }
    }

    #[tokio::test]
    async fn the_hinted_part_is_held_until_it_exists_and_other_missing_names_are_not() {
        let dir = tree();
        let playlist = dir.path().join("live01/playlist.m3u8");
        std::fs::write(&playlist, making(1)).expect("write");
        let api = routes("server1", dir.path().to_path_buf());
        let writer = {
            let dir = dir.path().to_path_buf();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::write(dir.join("live01/segment000043_part1.ts"), [0x47u8; 188])
                    .expect("write");
                std::fs::write(dir.join("live01/playlist.m3u8"), making(2)).expect("write");
            })
        };
        let res = warp::test::request()
            .path("/live01/segment000043_part1.ts")
            .reply(&api)
            .await;
        writer.await.expect("writer");
        assert_eq!(res.status(), 200);
        assert_eq!(res.body().len(), 188);
        let asked = std::time::Instant::now();
        let res = warp::test::request()
            .path("/live01/segment000099_part0.ts")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 404);
        assert!(asked.elapsed() < Duration::from_millis(500));
    }
}
