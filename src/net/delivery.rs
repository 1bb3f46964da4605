//! How playlists and segments are answered to players and CDNs, the same way
//! by the packagers and the proxy: content type (RFC 8216 4), caching, CORS,
//! validators (`Last-Modified`, Apple's authoring spec 8.24: a player or CDN
//! can tell a frozen playlist; a strong `ETag` on playlists), conditional
//! requests answered `304 Not Modified`, and playlists gzip-compressed for
//! clients that accept it (Apple 10.1; a playlist shrinks to about a fifth).
//! `HEAD` is answered like `GET` by the routes (hyper leaves the body out).
//!
//! Caching is the one thing the two services decide differently:
//! - the proxy answers viewers and the CDNs in front of them: a playlist may
//!   be kept for half a target duration (`public, max-age=N`, AWS
//!   MediaPackage's CDN guidance), so a CDN collapses its viewers' reloads
//!   onto one request per half target and never holds a playlist longer;
//!   its 404s for one second;
//! - the packagers answer only the proxy, whose failover judges their
//!   freshness: nothing between them may keep a playlist
//!   (`no-cache, max-age=0`).
//!
//! Segments never change once listed: every cache may keep them for a minute.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::hls::MediaKind;
use crate::service::http::allow_any_origin;
use crate::service::metrics;

/// Packagers' playlists: whatever sits between a packager and the proxy must
/// revalidate every time, or the proxy would judge a stale copy's freshness.
pub(crate) const PLAYLIST_CACHE_CONTROL: &str = "no-cache, max-age=0";
/// Segments never change once listed; a minute covers their time on disk.
pub(crate) const SEGMENT_CACHE_CONTROL: &str = "public, max-age=60";
/// The proxy's 404s: a CDN answers the same question from its copy for a
/// second, so a crowd asking for a missing object reaches the proxy once a
/// second, and an object that appears is found a second later at most.
pub(crate) const NOT_FOUND_CACHE_CONTROL: &str = "public, max-age=1";
/// The proxy's 502s: an outage is never kept.
pub(crate) const UNAVAILABLE_CACHE_CONTROL: &str = "no-store";
/// Shortest time a CDN may keep a proxy playlist: `max-age` counts whole
/// seconds, and 0 would let a CDN send every viewer's reload through.
pub(crate) const MIN_PLAYLIST_MAX_AGE: u64 = 1;

/// How long a shared cache may keep a playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaylistCaching {
    /// Every use revalidated (the packagers': see the module doc).
    Revalidate,
    /// `public, max-age=<seconds>` (the proxy's: half a target duration).
    Shared { max_age: u64 },
}

impl PlaylistCaching {
    /// The proxy's caching for a playlist of `target` duration: half of it,
    /// rounded down to whole seconds, at least [`MIN_PLAYLIST_MAX_AGE`].
    pub(crate) fn half_target(target: Duration) -> Self {
        let max_age = (target.as_secs_f64() / 2.0).floor() as u64;
        PlaylistCaching::Shared {
            max_age: max_age.max(MIN_PLAYLIST_MAX_AGE),
        }
    }

    fn header(self) -> HeaderValue {
        match self {
            PlaylistCaching::Revalidate => HeaderValue::from_static(PLAYLIST_CACHE_CONTROL),
            PlaylistCaching::Shared { max_age } => {
                HeaderValue::from_str(&format!("public, max-age={max_age}"))
                    .unwrap_or_else(|_| HeaderValue::from_static(PLAYLIST_CACHE_CONTROL))
            }
        }
    }
}

/// A playlist's bytes with what answering them needs, computed once and
/// shared by every clone: its strong `ETag` (a hash of the bytes, so every
/// proxy and packager holding the same playlist gives the same tag) and,
/// on first demand, its gzip form (so a crowd of viewers accepting gzip
/// costs one compression per playlist, not one per request).
#[derive(Debug, Clone)]
pub(crate) struct PlaylistBody {
    plain: Bytes,
    /// `"<hash>"`: the plain representation's tag.
    etag: HeaderValue,
    /// `"<hash>-gz"`: the gzip representation's (a strong tag names one
    /// representation, and the two differ byte for byte).
    etag_gzip: HeaderValue,
    /// The gzip bytes, once asked for; `None` inside if compression failed
    /// (then the playlist goes out plain, which every client accepts).
    gzipped: Arc<OnceLock<Option<Bytes>>>,
}

impl PlaylistBody {
    pub(crate) fn new(plain: Bytes) -> Self {
        let digest = Sha1::digest(&plain);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        PlaylistBody {
            plain,
            etag: HeaderValue::from_str(&format!("\"{hex}\""))
                .unwrap_or(HeaderValue::from_static("\"\"")),
            etag_gzip: HeaderValue::from_str(&format!("\"{hex}-gz\""))
                .unwrap_or(HeaderValue::from_static("\"\"")),
            gzipped: Arc::default(),
        }
    }

    /// The bytes gzip-compressed, compressed on the first call only.
    pub(crate) fn gzipped(&self) -> Option<Bytes> {
        self.gzipped.get_or_init(|| gzip(&self.plain)).clone()
    }
}

/// What is answered: a playlist (with its validators and how long shared
/// caches may keep it) or a segment (whose caching never changes).
#[derive(Debug, Clone)]
pub(crate) enum Media {
    Playlist(PlaylistBody, PlaylistCaching),
    Segment(Bytes),
}

impl Media {
    pub(crate) fn kind(&self) -> MediaKind {
        match self {
            Media::Playlist(..) => MediaKind::Playlist,
            Media::Segment(_) => MediaKind::Segment,
        }
    }
}

/// What a media answer says besides its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// The service answering, for the bytes-served counter.
    pub service: &'static str,
    /// When the bytes last changed (the file's time, or the upstream's).
    pub last_modified: Option<SystemTime>,
}

/// The request headers that change a media answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MediaRequest {
    /// The client accepts gzip (only playlists are compressed: segments are
    /// already compressed media).
    pub gzip: bool,
    /// `If-None-Match`: the entity tags of the copies the client holds.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since`, when it is a valid HTTP date.
    pub if_modified_since: Option<SystemTime>,
}

impl MediaRequest {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        MediaRequest {
            gzip: accepts_gzip(text("accept-encoding")),
            if_none_match: text("if-none-match").map(str::to_string),
            if_modified_since: text("if-modified-since").and_then(parse_http_date),
        }
    }

    /// Whether the client's copy is current (RFC 9110 13.2.2): by
    /// `If-None-Match` when sent (weak comparison, `*` matches anything),
    /// else by `If-Modified-Since` against `last_modified` at the one-second
    /// resolution of HTTP dates.
    pub(crate) fn is_current(&self, etag: Option<&str>, last_modified: Option<SystemTime>) -> bool {
        if let Some(tags) = &self.if_none_match {
            return etag.is_some_and(|ours| etag_listed(tags, ours));
        }
        match (self.if_modified_since, last_modified) {
            (Some(since), Some(modified)) => whole_seconds(modified) <= whole_seconds(since),
            _ => false,
        }
    }
}

/// Whether an `If-None-Match` list names `ours` (weak comparison: `W/` is
/// ignored on both sides) or is `*`.
fn etag_listed(list: &str, ours: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let ours = opaque(ours);
    list.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || opaque(tag) == ours
    })
}

fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether an `Accept-Encoding` header value accepts gzip (`gzip;q=0` does not).
pub(crate) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
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
pub(crate) fn http_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Reads an HTTP date, as a packager's `Last-Modified` comes to the proxy.
pub(crate) fn parse_http_date(value: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc2822(value)
        .ok()
        .map(SystemTime::from)
}

/// The answer for media bytes with the headers players and CDNs expect: 200
/// with the bytes, or 304 without them when the client's copy is current
/// (with the same `ETag`, `Cache-Control`, `Last-Modified` and `Vary`, so a
/// CDN refreshes its copy's lifetime from it).
pub(crate) fn media_response(media: Media, delivery: Delivery, request: &MediaRequest) -> Response {
    let kind = media.kind();
    let (body, etag, gzipped, cache_control) = match media {
        Media::Playlist(playlist, caching) => {
            let (body, etag, gzipped) = match request.gzip.then(|| playlist.gzipped()).flatten() {
                Some(compressed) => (compressed, playlist.etag_gzip, true),
                None => (playlist.plain, playlist.etag, false),
            };
            (body, Some(etag), gzipped, caching.header())
        }
        Media::Segment(bytes) => (
            bytes,
            None,
            false,
            HeaderValue::from_static(SEGMENT_CACHE_CONTROL),
        ),
    };
    let current = request.is_current(
        etag.as_ref().and_then(|e| e.to_str().ok()),
        delivery.last_modified,
    );
    let mut response = if current {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        metrics::count_bytes_served(delivery.service, kind, body.len());
        let mut response = Response::new(body.into());
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static(kind.content_type()),
        );
        if gzipped {
            headers.insert("content-encoding", HeaderValue::from_static("gzip"));
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert("cache-control", cache_control);
    if kind == MediaKind::Playlist {
        headers.insert("vary", HeaderValue::from_static("accept-encoding"));
    }
    if let Some(etag) = etag {
        headers.insert("etag", etag);
    }
    if let Some(value) = delivery
        .last_modified
        .and_then(|t| HeaderValue::from_str(&http_date(t)).ok())
    {
        headers.insert("last-modified", value);
    }
    allow_any_origin(response)
}

/// The bytes gzip-compressed, or `None` if compression failed.
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

    const WHEN: u64 = 1_700_000_000;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn playlist_text() -> String {
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n".repeat(20)
    }

    fn proxy_delivery() -> Delivery {
        Delivery {
            service: "test",
            last_modified: Some(at(WHEN)),
        }
    }

    fn request(headers: &[(&'static str, &str)]) -> MediaRequest {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        MediaRequest::from_headers(&map)
    }

    /// A playlist as the proxy answers it (shared caching for half a
    /// six-second target).
    fn playlist() -> Media {
        playlist_cached(PlaylistCaching::half_target(Duration::from_secs(6)))
    }

    fn playlist_cached(caching: PlaylistCaching) -> Media {
        Media::Playlist(PlaylistBody::new(Bytes::from(playlist_text())), caching)
    }

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
        let gz = request(&[("accept-encoding", "gzip")]);
        let res = media_response(playlist(), proxy_delivery(), &gz);
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-encoding"], "gzip");
        assert_eq!(res.headers()["vary"], "accept-encoding");
        assert_eq!(
            res.headers()["last-modified"],
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(
            parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"),
            Some(at(WHEN)),
            "the proxy reads back what a packager wrote"
        );
        let res = media_response(
            Media::Segment(Bytes::from_static(&[0x47; 188])),
            proxy_delivery(),
            &gz,
        );
        assert!(res.headers().get("content-encoding").is_none());
        assert!(res.headers().get("etag").is_none());
        assert_eq!(res.headers()["cache-control"], SEGMENT_CACHE_CONTROL);
    }

    #[test]
    fn a_playlist_is_compressed_once_for_every_request() {
        let body = PlaylistBody::new(Bytes::from(playlist_text()));
        let copy = body.clone();
        let first = body.gzipped().expect("compressed");
        let second = copy.gzipped().expect("compressed");
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the clone served the same compressed bytes, not a new compression"
        );
        let mut plain = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(first.as_ref()),
            &mut plain,
        )
        .expect("valid gzip");
        assert_eq!(plain, playlist_text());
    }

    #[test]
    fn playlists_are_cached_for_half_a_target_at_least_a_second() {
        let max_age =
            |seconds: f64| match PlaylistCaching::half_target(Duration::from_secs_f64(seconds)) {
                PlaylistCaching::Shared { max_age } => max_age,
                PlaylistCaching::Revalidate => panic!("the proxy's playlists are shared"),
            };
        assert_eq!(max_age(6.0), 3);
        assert_eq!(max_age(2.0), 1);
        assert_eq!(max_age(5.0), 2, "never longer than half a target");
        assert_eq!(max_age(1.0), 1, "at least one second");
        let res = media_response(playlist(), proxy_delivery(), &MediaRequest::default());
        assert_eq!(res.headers()["cache-control"], "public, max-age=3");
        let res = media_response(
            playlist_cached(PlaylistCaching::Revalidate),
            proxy_delivery(),
            &MediaRequest::default(),
        );
        assert_eq!(res.headers()["cache-control"], PLAYLIST_CACHE_CONTROL);
    }

    /// The strong entity tag of a playlist's plain bytes, quoted.
    fn tag(body: &PlaylistBody) -> &str {
        body.etag.to_str().unwrap_or_default()
    }

    #[test]
    fn etags_are_strong_hashes_of_the_bytes_per_representation() {
        let a = PlaylistBody::new(Bytes::from_static(b"#EXTM3U\nA\n"));
        let a_again = PlaylistBody::new(Bytes::from_static(b"#EXTM3U\nA\n"));
        let b = PlaylistBody::new(Bytes::from_static(b"#EXTM3U\nB\n"));
        assert_eq!(tag(&a), tag(&a_again), "same bytes, same tag anywhere");
        assert_ne!(tag(&a), tag(&b));
        assert!(tag(&a).starts_with('"') && tag(&a).ends_with('"'));
        assert!(!tag(&a).starts_with("W/"), "strong");
        let plain = media_response(playlist(), proxy_delivery(), &MediaRequest::default());
        let gz = media_response(
            playlist(),
            proxy_delivery(),
            &request(&[("accept-encoding", "gzip")]),
        );
        assert_ne!(
            plain.headers()["etag"],
            gz.headers()["etag"],
            "the gzip bytes are another representation"
        );
    }

    #[test]
    fn a_current_copy_is_answered_304_with_its_validators() {
        let first = media_response(playlist(), proxy_delivery(), &MediaRequest::default());
        let etag = first.headers()["etag"].to_str().expect("etag").to_string();

        let res = media_response(
            playlist(),
            proxy_delivery(),
            &request(&[("if-none-match", &etag)]),
        );
        assert_eq!(res.status(), 304);
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert_eq!(res.headers()["cache-control"], "public, max-age=3");
        assert_eq!(res.headers()["vary"], "accept-encoding");
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        assert!(res.headers().get("last-modified").is_some());
        assert!(res.headers().get("content-encoding").is_none());

        // Weak comparison, lists and `*` match; another tag does not.
        for matching in [
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_string(),
        ] {
            let req = request(&[("if-none-match", &matching)]);
            assert!(req.is_current(Some(&etag), None), "{matching}");
        }
        let res = media_response(
            playlist(),
            proxy_delivery(),
            &request(&[("if-none-match", "\"0123456789abcdef\"")]),
        );
        assert_eq!(res.status(), 200, "a changed playlist is sent whole");
        // The plain tag does not validate the gzip representation.
        let res = media_response(
            playlist(),
            proxy_delivery(),
            &request(&[("if-none-match", &etag), ("accept-encoding", "gzip")]),
        );
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn if_modified_since_is_judged_by_last_modified_unless_if_none_match_is_sent() {
        let since = |seconds: u64| http_date(at(seconds));
        let not_modified = request(&[("if-modified-since", &since(WHEN))]);
        assert!(not_modified.is_current(None, Some(at(WHEN))));
        assert!(
            not_modified.is_current(None, Some(at(WHEN) + Duration::from_millis(700))),
            "HTTP dates count whole seconds"
        );
        assert!(!not_modified.is_current(None, Some(at(WHEN + 1))));
        assert!(!not_modified.is_current(None, None), "no date, no 304");
        let res = media_response(
            Media::Segment(Bytes::from_static(&[0x47; 188])),
            proxy_delivery(),
            &not_modified,
        );
        assert_eq!(res.status(), 304, "a segment with a date is validated too");
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        let both = request(&[
            ("if-modified-since", &since(WHEN)),
            ("if-none-match", "\"changed\""),
        ]);
        assert!(!both.is_current(Some("\"now\""), Some(at(WHEN))));
        let garbage = request(&[("if-modified-since", "yesterday")]);
        assert_eq!(garbage.if_modified_since, None);
        assert!(!garbage.is_current(None, Some(at(WHEN))));
    }
}
