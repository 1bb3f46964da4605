//! Budgeted fetches from packagers. Every failure says what went wrong and the
//! proxy treats each as "try the other packager": a refused or reset
//! connection, no headers within the first-byte budget, a non-2xx status, a
//! body that stalls or ends short, or content that is not what was asked for.

use std::time::SystemTime;

use bytes::Bytes;

use super::budgets::Budget;
use super::metrics;
use crate::hls::multivariant::{is_multivariant, Multivariant};
use crate::hls::{is_complete_transport_stream, MediaKind, PlaylistFacts};
use crate::net::delivery::parse_http_date;
use crate::service::http::root_cause;
use crate::service::metrics::kind_label;

/// Why a fetch from a packager failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum FetchError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("no response within {0} ms")]
    FirstByteTimeout(u64),
    #[error("body not complete within {0} ms")]
    BodyTimeout(u64),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("body cut short: {0}")]
    Body(String),
    #[error("invalid content: {0}")]
    Invalid(String),
}

impl FetchError {
    /// One word for metrics labels.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            FetchError::Connect(_) => "connect",
            FetchError::FirstByteTimeout(_) => "first_byte_timeout",
            FetchError::BodyTimeout(_) => "body_timeout",
            FetchError::Status(s) if *s >= 500 => "status_5xx",
            FetchError::Status(_) => "status_4xx",
            FetchError::Body(_) => "body_cut",
            FetchError::Invalid(_) => "invalid",
        }
    }

    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, FetchError::Status(404))
    }
}

/// A playlist as a packager gave it.
#[derive(Debug, Clone)]
pub(super) struct FetchedPlaylist {
    pub body: Bytes,
    pub facts: PlaylistFacts,
    /// The packager's `Last-Modified`: when the worker last wrote it.
    pub last_modified: Option<SystemTime>,
}

/// GETs `url` within `budget` and returns the whole body and the time the
/// upstream says it last changed.
pub(super) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    budget: Budget,
) -> Result<(Bytes, Option<SystemTime>), FetchError> {
    let response = tokio::time::timeout(budget.first_byte, client.get(url).send())
        .await
        .map_err(|_| FetchError::FirstByteTimeout(budget.first_byte.as_millis() as u64))?
        .map_err(|e| {
            if e.is_timeout() {
                FetchError::FirstByteTimeout(budget.first_byte.as_millis() as u64)
            } else {
                FetchError::Connect(root_cause(&e))
            }
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let expected = response.content_length();
    let last_modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let body = tokio::time::timeout(budget.body, response.bytes())
        .await
        .map_err(|_| FetchError::BodyTimeout(budget.body.as_millis() as u64))?
        .map_err(|e| FetchError::Body(root_cause(&e)))?;
    if let Some(expected) = expected {
        if body.len() as u64 != expected {
            return Err(FetchError::Body(format!(
                "{} of {expected} bytes",
                body.len()
            )));
        }
    }
    Ok((body, last_modified))
}

/// Counts one fetch of a `kind` by its outcome: every request the proxy
/// sends a packager goes through here, so the load it puts on them is read
/// from one metric.
fn count<T>(kind: MediaKind, result: &Result<T, FetchError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics::PROXY_UPSTREAM_FETCHES
        .with_label_values(&[kind_label(kind), outcome])
        .inc();
}

/// A signal's `playlist.m3u8` as a packager gave it: a media playlist (one
/// rendition), or a ladder's multivariant playlist.
#[derive(Debug, Clone)]
pub(super) enum FetchedEntry {
    Media(FetchedPlaylist),
    Multivariant(Multivariant, Option<SystemTime>),
}

/// Fetches and parses a media playlist.
pub(super) async fn fetch_playlist(
    client: &reqwest::Client,
    url: &str,
    budget: Budget,
) -> Result<FetchedPlaylist, FetchError> {
    match fetch_entry(client, url, budget).await? {
        FetchedEntry::Media(playlist) => Ok(playlist),
        FetchedEntry::Multivariant(..) => Err(FetchError::Invalid(
            "a multivariant playlist where a media playlist was expected".into(),
        )),
    }
}

/// Fetches and parses a media or multivariant playlist.
pub(super) async fn fetch_entry(
    client: &reqwest::Client,
    url: &str,
    budget: Budget,
) -> Result<FetchedEntry, FetchError> {
    let result = async {
        let (body, last_modified) = fetch(client, url, budget).await?;
        if is_multivariant(&body) {
            let multivariant = Multivariant::parse(&body).ok_or_else(|| {
                FetchError::Invalid("a multivariant playlist naming nothing".into())
            })?;
            return Ok(FetchedEntry::Multivariant(multivariant, last_modified));
        }
        let facts = PlaylistFacts::parse(&body).map_err(|e| FetchError::Invalid(e.to_string()))?;
        Ok(FetchedEntry::Media(FetchedPlaylist {
            body,
            facts,
            last_modified,
        }))
    }
    .await;
    count(MediaKind::Playlist, &result);
    result
}

/// Fetches a segment and checks it is whole MPEG-TS.
pub(super) async fn fetch_segment(
    client: &reqwest::Client,
    url: &str,
    budget: Budget,
) -> Result<Bytes, FetchError> {
    let result = async {
        let (body, _) = fetch(client, url, budget).await?;
        if !is_complete_transport_stream(&body) {
            return Err(FetchError::Invalid(format!(
                "{} bytes are not whole MPEG-TS packets",
                body.len()
            )));
        }
        Ok(body)
    }
    .await;
    count(MediaKind::Segment, &result);
    result
}
