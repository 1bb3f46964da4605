//! The console's files (page, script, hls.js): a closed set read from
//! `CONSOLE_ASSETS`, never a request path turned into a file path, served
//! with the page's security headers.

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::Console;
use crate::service::http::json_error;

/// A file the console serves. The set is closed: no request path is ever
/// turned into a file path, so nothing else under the folder can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asset {
    Page,
    Script,
    HlsJs,
}

impl Asset {
    pub(super) const ALL: [Asset; 3] = [Asset::Page, Asset::Script, Asset::HlsJs];

    pub(super) fn relative_path(self) -> &'static str {
        match self {
            Asset::Page => "console.html",
            Asset::Script => "console.js",
            Asset::HlsJs => "node_modules/hls.js/dist/hls.min.js",
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Asset::Page => "text/html; charset=utf-8",
            Asset::Script | Asset::HlsJs => "text/javascript; charset=utf-8",
        }
    }

    pub(super) fn hint(self) -> &'static str {
        match self {
            Asset::HlsJs => "run scripts/setup.sh (or npm ci --prefix web) to install hls.js",
            Asset::Page | Asset::Script => "set CONSOLE_ASSETS to the repository's web/ folder",
        }
    }
}

/// The page may load its own files, talk to this console, and play from the
/// proxy (hls.js feeds MediaSource through blob: URLs and may run a worker).
pub(super) fn content_security_policy(proxy_url: &str) -> String {
    let proxy = url::Url::parse(proxy_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self' {proxy}; media-src 'self' blob: {proxy}; \
         worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

impl Console {
    /// One of the console's files, read at each request (a page edit shows on
    /// reload), with its content type and the page's security headers.
    pub(super) async fn asset(&self, asset: Asset) -> Response {
        let path = self.config.assets.join(asset.relative_path());
        let body = match tokio::fs::read(&path).await {
            Ok(body) => body,
            Err(e) => {
                log::error!("Console: cannot read {}: {e}", path.display());
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot read {}: {}", asset.relative_path(), asset.hint()),
                );
            }
        };
        let mut response = Response::new(body.into());
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static(asset.content_type()),
        );
        headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        if asset == Asset::Page {
            if let Ok(csp) = HeaderValue::from_str(&self.csp) {
                headers.insert("content-security-policy", csp);
            }
        }
        response
    }
}
