//! The packager (server1 and server2 of the seed): serves the worker's output
//! tree over HTTP. `GET /<signal>/playlist.m3u8`, `GET /<signal>/<segment>.ts`
//! and `GET /healthcheck`. Only plain playlist and segment names inside a
//! signal folder can be read, whatever the encoding of the request path.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::delivery::{
    media_response, Delivery, Media, MediaRequest, PlaylistBody, PlaylistCaching,
};
use crate::hls::MediaKind;
use crate::hls::{classify_media_file, is_valid_signal_name};
use crate::service::config::ListenArgs;
use crate::service::http::{self, allow_any_origin, json_error};
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
    let root = Arc::new(root);
    let media = warp::path!(String / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || root.clone()))
        .then(
            move |signal: String,
                  file: String,
                  headers: warp::http::HeaderMap,
                  root: Arc<PathBuf>| async move {
                let request = MediaRequest::from_headers(&headers);
                serve_media(service, &root, &signal, &file, &request).await
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

/// Reads one playlist or segment; 404 for any name that is not a plain
/// signal and media file name (so `..`, `%2e%2e`, `%2f`, `\` never reach the disk).
async fn serve_media(
    service: &'static str,
    root: &Path,
    signal: &str,
    file: &str,
    request: &MediaRequest,
) -> Response {
    let kind = match (is_valid_signal_name(signal), classify_media_file(file)) {
        (true, Some(kind)) => kind,
        _ => return allow_any_origin(json_error(StatusCode::NOT_FOUND, "not found")),
    };
    let path = root.join(signal).join(file);
    // The time is read before the bytes: a playlist rewritten in between is
    // then never older than it claims.
    let last_modified = tokio::fs::metadata(&path)
        .await
        .and_then(|m| m.modified())
        .ok();
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let media = match kind {
                MediaKind::Playlist => {
                    Media::Playlist(PlaylistBody::new(bytes.into()), PlaylistCaching::Revalidate)
                }
                MediaKind::Segment => Media::Segment(bytes.into()),
            };
            let delivery = Delivery {
                service,
                last_modified,
            };
            media_response(media, delivery, request)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
