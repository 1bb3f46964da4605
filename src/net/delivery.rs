//! How playlists and segments are answered to players and CDNs, the same way
//! by the packagers and the proxy: content type (RFC 8216 4), caching, CORS,
//! `Last-Modified` (Apple's authoring spec 8.24: a player or CDN can tell a
//! frozen playlist), and playlists gzip-compressed for clients that accept it
//! (Apple 10.1; a playlist shrinks to about a fifth). `HEAD` is answered like
//! `GET` by the routes (hyper leaves the body out).

use std::io::Write;
use std::time::SystemTime;

use bytes::Bytes;
use warp::http::HeaderValue;
use warp::reply::Response;

use crate::hls::MediaKind;
use crate::service::http::allow_any_origin;

/// Playlists change every segment: caches must revalidate every time.
pub const PLAYLIST_CACHE_CONTROL: &str = "no-cache, max-age=0";
/// Segments never change once listed; a minute covers their time on disk.
pub const SEGMENT_CACHE_CONTROL: &str = "public, max-age=60";

/// What a media answer says besides its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery {
    /// When the bytes last changed (the file's time, or the upstream's).
    pub last_modified: Option<SystemTime>,
    /// The client accepts gzip (only playlists are compressed: segments are
    /// already compressed media).
    pub gzip: bool,
}

/// Whether an `Accept-Encoding` header value accepts gzip (`gzip;q=0` does not).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        value.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused =
                parts.any(|p| p.replace(' ', "") == "q=0" || p.replace(' ', "") == "q=0.0");
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

/// An HTTP date (`Wed, 25 Nov 2026 12:00:00 GMT`).
pub fn http_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Reads an HTTP date, as a packager's `Last-Modified` comes to the proxy.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc2822(value)
        .ok()
        .map(SystemTime::from)
}

/// A 200 answer for media bytes with the headers players and CDNs expect.
pub fn media_response(kind: MediaKind, body: Bytes, delivery: Delivery) -> Response {
    let compressed = match kind {
        MediaKind::Playlist if delivery.gzip => gzip(&body),
        _ => None,
    };
    let gzipped = compressed.is_some();
    let mut response = Response::new(compressed.unwrap_or(body).into());
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(kind.content_type()),
    );
    headers.insert(
        "cache-control",
        HeaderValue::from_static(match kind {
            MediaKind::Playlist => PLAYLIST_CACHE_CONTROL,
            MediaKind::Segment => SEGMENT_CACHE_CONTROL,
        }),
    );
    if kind == MediaKind::Playlist {
        headers.insert("vary", HeaderValue::from_static("accept-encoding"));
    }
    if gzipped {
        headers.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    if let Some(value) = delivery
        .last_modified
        .and_then(|t| HeaderValue::from_str(&http_date(t)).ok())
    {
        headers.insert("last-modified", value);
    }
    allow_any_origin(response)
}

/// The bytes gzip-compressed, or `None` if compression failed (then the
/// playlist goes out plain, which every client accepts).
fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 2),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn gzip_is_accepted_unless_refused() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn playlists_are_compressed_when_accepted_and_segments_never() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n".repeat(20);
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let delivery = Delivery {
            last_modified: Some(when),
            gzip: true,
        };
        let res = media_response(MediaKind::Playlist, Bytes::from(text.clone()), delivery);
        assert_eq!(res.headers()["content-encoding"], "gzip");
        assert_eq!(res.headers()["vary"], "accept-encoding");
        assert_eq!(
            res.headers()["last-modified"],
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(
            parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"),
            Some(when),
            "the proxy reads back what a packager wrote"
        );
        let res = media_response(
            MediaKind::Segment,
            Bytes::from_static(&[0x47; 188]),
            delivery,
        );
        assert!(res.headers().get("content-encoding").is_none());
    }
}
