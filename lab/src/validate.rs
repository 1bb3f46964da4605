//! A validator for live HLS (`just validate <url>`): watches a playlist for
//! a while as a player would, and checks what Apple's HLS authoring
//! specification, RFC 8216 and its second edition (RFC 8216bis: low-latency
//! HLS) ask of a live stream, printing each violation with the rule it
//! breaks.
//!
//! ```text
//!  every target/2: GET playlist ──▶ headers, tags, window, sequence rules
//!                  HEAD + gzip GET ─▶ answered like GET, compressed
//!  each new segment: GET ─▶ type, whole MPEG-TS, IDR first, PTS vs EXTINF
//!  one segment again later ─▶ same bytes under the same URI
//!  with parts (EXT-X-PART-INF) ─▶ the low-latency rules (low_latency.rs):
//!                  parts vs PART-TARGET and EXTINF, hold-backs, hints,
//!                  each segment's first part an IDR, blocking reloads held
//!                  then answered, too far ahead refused
//!  a multivariant playlist ─▶ every rendition watched as above, at once,
//!                  and each variant's declarations held to its segments
//!                  (multivariant.rs, codecs.rs)
//! ```
//!
//! Rules are named as the specifications number them (Apple's "HLS authoring
//! specification for Apple devices", RFC 8216, RFC 8216bis), so a violation
//! says where to read why it matters; [`rules`] names the ones of the
//! low-latency and multivariant checks. A playlist that ends
//! (`EXT-X-ENDLIST`: the event is over, as when nonstop's input is removed)
//! ends the watch; it is said, not counted as a violation. What a rule only
//! advises (a SHOULD) is a warning, printed but not failing the watch.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, LAST_MODIFIED, LOCATION};
use serde::Serialize;
use url::Url;

use crate::ts;
use codecs::SegmentCodecs;
use nonstop::hls::multivariant::is_multivariant;
use nonstop::hls::{
    is_complete_transport_stream, PlaylistFacts, PLAYLIST_CONTENT_TYPE, SEGMENT_CONTENT_TYPE,
};
use nonstop::service::http::root_cause;
use nonstop::service::shutdown::Shutdown;

mod codecs;
mod low_latency;
mod multivariant;

/// The names of the low-latency and multivariant rules, as violations carry
/// them (several rules share a section, so each name adds what it is about).
pub mod rules {
    /// Every `EXT-X-PART` lasts at most `PART-TARGET`.
    pub const PART_TOO_LONG: &str = "RFC 8216bis 4.4.4.9 part over PART-TARGET";
    /// Every part but a segment's last, and but independent ones, lasts at
    /// least 85% of `PART-TARGET`.
    pub const PART_TOO_SHORT: &str = "RFC 8216bis 4.4.4.9 part under 85% of PART-TARGET";
    /// A completed segment's parts add up to its `EXTINF` (within a frame).
    pub const PARTS_MAKE_SEGMENT: &str = "RFC 8216bis 4.4.4.9 parts add up to the segment";
    /// Each segment's first part is `INDEPENDENT=YES` and starts with an IDR frame.
    pub const FIRST_PART_INDEPENDENT: &str = "RFC 8216bis 4.4.4.9 first part INDEPENDENT";
    /// `PART-HOLD-BACK` is given and at least twice `PART-TARGET` (a warning
    /// under three times).
    pub const PART_HOLD_BACK: &str = "RFC 8216bis 4.4.3.8 PART-HOLD-BACK";
    /// `HOLD-BACK`, when given, is at least three target durations.
    pub const HOLD_BACK: &str = "RFC 8216bis 4.4.3.8 HOLD-BACK";
    /// A playlist with parts says `CAN-BLOCK-RELOAD=YES`.
    pub const CAN_BLOCK_RELOAD: &str = "RFC 8216bis 4.4.3.8 CAN-BLOCK-RELOAD";
    /// A live low-latency playlist hints the next part.
    pub const PRELOAD_HINT: &str = "RFC 8216bis 4.4.5.3 EXT-X-PRELOAD-HINT";
    /// The hinted part, once listed, can be fetched.
    pub const HINTED_PART: &str = "RFC 8216bis 6.2.6 hinted part";
    /// A blocking reload for the next part is answered within three target
    /// durations with a playlist that lists it.
    pub const BLOCKING_RELOAD: &str = "RFC 8216bis 6.2.5.2 blocking reload";
    /// `_HLS_msn` more than two segments ahead is refused with a 400.
    pub const TOO_FAR_AHEAD: &str = "RFC 8216bis 6.2.5.2 400 when too far ahead";
    /// Every variant declares its peak bit rate.
    pub const BANDWIDTH: &str = "RFC 8216bis 4.4.6.2 BANDWIDTH";
    /// `BANDWIDTH` is not under the measured peak segment bit rate by more than 10%.
    pub const PEAK_BIT_RATE: &str = "Apple 9 BANDWIDTH vs measured peak";
    /// Every variant declares its average bit rate.
    pub const AVERAGE_BANDWIDTH: &str = "Apple 9 AVERAGE-BANDWIDTH";
    /// `CODECS` is given and true: `avc1.PPCCLL` as the SPS says, the audio
    /// codec when there is audio, none when there is not.
    pub const CODECS: &str = "Apple 9 CODECS";
    /// `RESOLUTION` is given and true.
    pub const RESOLUTION: &str = "Apple 9 RESOLUTION";
    /// Segment n of every rendition starts at the same picture.
    pub const ALIGNED: &str = "Apple 9 renditions IDR-aligned";
}

/// How long a fetch may take before it counts as failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// MPEG-TS timestamps tick at 90 kHz.
const PTS_HZ: f64 = 90_000.0;
/// Segments may exceed the target duration by at most this much (Apple 7.7).
const SEGMENT_OVERSHOOT: Duration = Duration::from_millis(500);
/// Apple asks for at least this many segments in a live playlist (8.11).
const MIN_LIVE_SEGMENTS: usize = 6;
/// The playlist's Last-Modified must be at most this many target durations old.
const LAST_MODIFIED_TARGETS: u32 = 3;
/// EXTINF and the media must agree within one frame; 25 fps is the coarsest
/// rate nonstop encodes, so one frame is 40 ms.
const ONE_FRAME: Duration = Duration::from_millis(40);
/// A segment is fetched again this many playlist reads after it was first
/// fetched, to check its URI still names the same bytes.
const REFETCH_AFTER_READS: usize = 4;

/// Watches a live HLS playlist and reports every violation of Apple's
/// authoring rules and RFC 8216 it sees.
#[derive(Debug, Clone, Parser)]
#[command(name = "validate", version)]
pub struct ValidateConfig {
    /// Media playlist URL to watch.
    #[arg(long, env = "VALIDATE_URL")]
    pub url: String,
    /// Seconds to watch.
    #[arg(long, env = "VALIDATE_SECONDS", default_value_t = 30)]
    pub duration: u64,
}

/// One broken rule, where and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The rule, as its specification numbers it (`Apple 8.4`, `RFC 8216 6.2.1`).
    pub rule: &'static str,
    /// The URL it was seen on.
    pub at: String,
    pub message: String,
}

/// What the validator saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationReport {
    pub playlists_read: u64,
    pub segments_checked: u64,
    /// The media playlists watched: the URL's own, or each rendition a
    /// multivariant playlist names.
    pub media_playlists: Vec<String>,
    /// The playlist ended the stream (`EXT-X-ENDLIST`): the watch stopped.
    pub ended: bool,
    pub violations: Vec<Violation>,
    /// What a rule only advises (SHOULD): said, not failing the watch.
    pub warnings: Vec<Violation>,
    /// A multivariant playlist's variants: what each declared by the end
    /// and what its segments measured.
    pub variants: Vec<VariantSeen>,
}

/// One variant of a multivariant playlist as the watch saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantSeen {
    /// Its media playlist, as the multivariant playlist names it.
    pub uri: String,
    /// `BANDWIDTH`, bit/s.
    pub bandwidth: Option<u64>,
    /// The highest segment bit rate measured, bit/s.
    pub peak_bps: Option<u64>,
    /// `CODECS`, as written.
    pub codecs: Option<String>,
    /// The codecs its first segment checked carries (the SPS's `avc1.PPCCLL`,
    /// the ADTS header's `mp4a.40.n`).
    pub codecs_measured: Vec<String>,
    /// `RESOLUTION`.
    pub resolution: Option<String>,
    /// The picture size its SPS gives.
    pub resolution_measured: Option<String>,
}

impl ValidationReport {
    /// Each distinct (rule, message) once, with how often it was seen: a
    /// stream breaks the same rule at every reload.
    pub fn summary(&self) -> Vec<(usize, &Violation)> {
        summarise(&self.violations)
    }

    /// [`ValidationReport::summary`] of the warnings.
    pub fn warnings_summary(&self) -> Vec<(usize, &Violation)> {
        summarise(&self.warnings)
    }

    /// Adds what another watch saw (a rendition of the same ladder).
    fn absorb(&mut self, other: ValidationReport) {
        self.playlists_read += other.playlists_read;
        self.segments_checked += other.segments_checked;
        self.media_playlists.extend(other.media_playlists);
        self.ended |= other.ended;
        self.violations.extend(other.violations);
        self.warnings.extend(other.warnings);
    }
}

/// Each distinct (rule, message) of `found` once, with how often it was seen.
fn summarise(found: &[Violation]) -> Vec<(usize, &Violation)> {
    let mut seen: Vec<(usize, &Violation)> = Vec::new();
    for v in found {
        match seen
            .iter_mut()
            .find(|(_, s)| s.rule == v.rule && same_kind(&s.message, &v.message))
        {
            Some((n, _)) => *n += 1,
            None => seen.push((1, v)),
        }
    }
    seen
}

/// Messages of the same kind differ only in their numbers.
fn same_kind(a: &str, b: &str) -> bool {
    let letters = |s: &str| {
        s.chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    letters(a) == letters(b)
}

/// Why the validator could not watch at all.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("'{0}' is not an http(s) URL")]
    BadUrl(String),
    #[error("the first playlist could not be read: {0}")]
    FirstPlaylist(String),
}

/// What is remembered between reads of one media playlist.
#[derive(Default)]
struct Memory {
    media_sequence: Option<u64>,
    target: Option<u64>,
    /// Sequence number each URI was first listed with.
    sequence_of: HashMap<String, u64>,
    /// First video PTS and EXTINF of each checked segment, by sequence.
    timing: HashMap<u64, (Option<u64>, Duration)>,
    /// Bytes' hash of each fetched segment and the read it was fetched at.
    fetched: HashMap<String, (u64, usize)>,
    /// A multivariant playlist above this one says
    /// `EXT-X-INDEPENDENT-SEGMENTS` for all its renditions.
    independent_segments_above: bool,
    /// What the low-latency checks of the server remember.
    low_latency: low_latency::Memory,
    /// What the segments measured, for a multivariant playlist's rules.
    measured: Measured,
}

/// What one rendition's segments measured over a watch: what a
/// multivariant playlist's declarations are held to.
#[derive(Debug, Clone, Default)]
struct Measured {
    /// The highest segment bit rate (bytes over EXTINF), bit/s, and its segment.
    peak: Option<(u64, f64)>,
    /// The codecs the first segment fetched carries.
    codecs: Option<SegmentCodecs>,
    /// Each checked segment's first video PTS, by sequence number.
    first_pts: BTreeMap<u64, u64>,
}

/// Watches `config.url` for `config.duration` (or until shutdown): a media
/// playlist, or a multivariant playlist and every rendition it names.
pub async fn validate(
    config: ValidateConfig,
    shutdown: Shutdown,
) -> Result<ValidationReport, ValidateError> {
    let url = Url::parse(&config.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| ValidateError::BadUrl(config.url.clone()))?;
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ValidateError::FirstPlaylist(root_cause(&e)))?;
    let deadline = Instant::now() + Duration::from_secs(config.duration);
    if let Some(body) = read_multivariant(&client, &url).await {
        return Ok(watch_ladder(client, url, body, deadline, shutdown).await);
    }
    let (report, _) = watch_media(client, url, deadline, shutdown, false)
        .await
        .map_err(ValidateError::FirstPlaylist)?;
    Ok(report)
}

/// The body at `url` when it is a multivariant playlist.
async fn read_multivariant(client: &reqwest::Client, url: &Url) -> Option<bytes::Bytes> {
    let response = client.get(url.clone()).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = response.bytes().await.ok()?;
    is_multivariant(&body).then_some(body)
}

/// Watches every rendition of the multivariant playlist at `url` (`body`:
/// its first read) at once, each as a media playlist, then holds what each
/// variant declares to what its segments measured, and the renditions to
/// each other.
async fn watch_ladder(
    client: reqwest::Client,
    url: Url,
    body: bytes::Bytes,
    deadline: Instant,
    shutdown: Shutdown,
) -> ValidationReport {
    let mut report = ValidationReport {
        playlists_read: 1,
        ..ValidationReport::default()
    };
    let at = url.to_string();
    let independent = String::from_utf8_lossy(&body).contains("#EXT-X-INDEPENDENT-SEGMENTS");
    let variants = multivariant::declared(&body);
    let mut watches = Vec::new();
    for variant in &variants {
        for (rule, message) in multivariant::check_declared(variant) {
            report.violations.push(Violation {
                rule,
                at: at.clone(),
                message,
            });
        }
        let Ok(rendition) = url.join(&variant.uri) else {
            report.violations.push(Violation {
                rule: "RFC 8216 4.2",
                at: at.clone(),
                message: format!("variant URI '{}' does not resolve", variant.uri),
            });
            continue;
        };
        let watch = watch_media(
            client.clone(),
            rendition.clone(),
            deadline,
            shutdown.clone(),
            independent,
        );
        watches.push((variant.uri.clone(), rendition, tokio::spawn(watch)));
    }
    let mut measured: Vec<(String, Measured)> = Vec::new();
    for (uri, rendition, watch) in watches {
        match watch.await {
            Ok(Ok((watched, facts))) => {
                report.absorb(watched);
                measured.push((uri, facts));
            }
            Ok(Err(e)) => report.violations.push(Violation {
                rule: "RFC 8216 6.2.1",
                at: rendition.to_string(),
                message: format!("a rendition's media playlist could not be read: {e}"),
            }),
            Err(e) => report.violations.push(Violation {
                rule: "RFC 8216 6.2.1",
                at: rendition.to_string(),
                message: format!("the rendition's watch failed: {e}"),
            }),
        }
    }
    // What the variants say by the end: a live stream's peak is only known so far.
    let latest = match read_multivariant(&client, &url).await {
        Some(body) => {
            report.playlists_read += 1;
            multivariant::declared(&body)
        }
        None => variants,
    };
    for (uri, facts) in &measured {
        if let Some(variant) = latest.iter().find(|v| &v.uri == uri) {
            for (rule, message) in multivariant::check_measured(variant, facts) {
                report.violations.push(Violation {
                    rule,
                    at: at.clone(),
                    message,
                });
            }
            report.variants.push(multivariant::seen(variant, facts));
        }
    }
    let renditions: Vec<(&str, &Measured)> =
        measured.iter().map(|(uri, m)| (uri.as_str(), m)).collect();
    for (rule, message) in multivariant::check_alignment(&renditions) {
        report.violations.push(Violation {
            rule,
            at: at.clone(),
            message,
        });
    }
    report
}

/// Watches the media playlist at `url` until `deadline` (or shutdown or
/// its end); `independent_segments_above`: a multivariant playlist above it
/// says `EXT-X-INDEPENDENT-SEGMENTS`. An error when its first read fails.
async fn watch_media(
    client: reqwest::Client,
    url: Url,
    deadline: Instant,
    shutdown: Shutdown,
    independent_segments_above: bool,
) -> Result<(ValidationReport, Measured), String> {
    let mut report = ValidationReport {
        media_playlists: vec![url.to_string()],
        ..ValidationReport::default()
    };
    let mut memory = Memory {
        independent_segments_above,
        ..Memory::default()
    };
    let mut reads = 0usize;
    loop {
        let target = match read_playlist(&client, &url, &mut memory, &mut report, reads).await {
            Ok(target) => target,
            Err(e) if reads == 0 => return Err(e),
            Err(e) => {
                report.violations.push(Violation {
                    rule: "RFC 8216 6.2.1",
                    at: url.to_string(),
                    message: format!("the live playlist could not be read: {e}"),
                });
                Duration::from_secs(1)
            }
        };
        reads += 1;
        if report.ended || Instant::now() >= deadline {
            return Ok((report, memory.measured));
        }
        let pause = (target / 2).min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return Ok((report, memory.measured)),
        }
    }
}

/// One reload: the playlist's headers and rules, then every segment not seen
/// yet. Returns the target duration, to pace the next reload.
async fn read_playlist(
    client: &reqwest::Client,
    url: &Url,
    memory: &mut Memory,
    report: &mut ValidationReport,
    read: usize,
) -> Result<Duration, String> {
    let mut found: Vec<Violation> = Vec::new();
    let mut violation = |rule: &'static str, at: &str, message: String| {
        found.push(Violation {
            rule,
            at: at.to_string(),
            message,
        })
    };
    let at = url.as_str();
    let response = client
        .get(url.clone())
        .header(ACCEPT_ENCODING, "identity")
        .send()
        .await
        .map_err(|e| root_cause(&e))?;
    let status = response.status();
    if status.is_redirection() {
        let to = header(&response, LOCATION);
        return Err(format!(
            "redirected ({status}) to {to}: players need the media where they asked"
        ));
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let content_type = header(&response, CONTENT_TYPE);
    let last_modified = header(&response, LAST_MODIFIED);
    let body = response.bytes().await.map_err(|e| root_cause(&e))?;
    report.playlists_read += 1;
    let playlist = m3u8_rs::parse_media_playlist_res(&body)
        .map_err(|e| format!("not a media playlist: {e:?}"))?;
    let target = Duration::from_secs(playlist.target_duration);

    if !content_type.starts_with(PLAYLIST_CONTENT_TYPE)
        && !content_type.starts_with("audio/mpegurl")
    {
        violation(
            "Apple 10.4",
            at,
            format!("playlist Content-Type is '{content_type}'"),
        );
    }
    // The stream is over: this read is checked, then the watch stops.
    report.ended |= playlist.end_list;
    if !playlist.independent_segments && !memory.independent_segments_above {
        violation("Apple 9.12", at, "no EXT-X-INDEPENDENT-SEGMENTS".into());
    }
    if playlist
        .segments
        .iter()
        .any(|s| s.program_date_time.is_none())
    {
        violation(
            "Apple 8.4",
            at,
            "a segment without EXT-X-PROGRAM-DATE-TIME".into(),
        );
    }
    if playlist.segments.len() < MIN_LIVE_SEGMENTS {
        violation(
            "Apple 8.11",
            at,
            format!(
                "{} segments listed, fewer than {MIN_LIVE_SEGMENTS}",
                playlist.segments.len()
            ),
        );
    }
    let listed: f32 = playlist.segments.iter().map(|s| s.duration).sum();
    if f64::from(listed) < 3.0 * target.as_secs_f64() {
        violation(
            "RFC 8216 6.2.2",
            at,
            format!("the playlist holds {listed:.3} s, less than 3 target durations"),
        );
    }
    match memory.target {
        Some(old) if old != playlist.target_duration => violation(
            "RFC 8216 6.2.1",
            at,
            format!(
                "EXT-X-TARGETDURATION changed from {old} to {}",
                playlist.target_duration
            ),
        ),
        _ => memory.target = Some(playlist.target_duration),
    }
    if let Some(old) = memory.media_sequence {
        if playlist.media_sequence < old {
            violation(
                "RFC 8216 6.2.2",
                at,
                format!(
                    "EXT-X-MEDIA-SEQUENCE went back from {old} to {}",
                    playlist.media_sequence
                ),
            );
        }
    }
    memory.media_sequence = Some(playlist.media_sequence);
    match last_modified_age(&last_modified) {
        None => violation(
            "Apple 8.24",
            at,
            "no usable Last-Modified on the playlist".into(),
        ),
        Some(age) if age > target * LAST_MODIFIED_TARGETS => violation(
            "Apple 8.24",
            at,
            format!(
                "Last-Modified is {} s old, more than {LAST_MODIFIED_TARGETS} target durations",
                age.as_secs()
            ),
        ),
        Some(_) => {}
    }
    for problem in head_and_gzip(client, url, &content_type).await {
        violation(problem.0, at, problem.1);
    }
    if let Ok(facts) = PlaylistFacts::parse(&body) {
        if let Some(ll) = &facts.low_latency {
            let text = String::from_utf8_lossy(&body);
            let (broken, warned) = low_latency::check_playlist(&text, &facts, ll);
            for (rule, message) in broken {
                violation(rule, at, message);
            }
            report
                .warnings
                .extend(warned.into_iter().map(|(rule, message)| Violation {
                    rule,
                    at: at.to_string(),
                    message,
                }));
            let served =
                low_latency::check_server(client, url, &facts, ll, &mut memory.low_latency, read)
                    .await;
            for (rule, where_, message) in served {
                violation(rule, where_.as_deref().unwrap_or(at), message);
            }
        }
    }

    for (i, segment) in playlist.segments.iter().enumerate() {
        let sequence = playlist.media_sequence + i as u64;
        let extinf = Duration::from_secs_f32(segment.duration.max(0.0));
        let segment_url = match url.join(&segment.uri) {
            Ok(u) => u,
            Err(e) => {
                violation(
                    "RFC 8216 4.2",
                    at,
                    format!("segment URI '{}' does not resolve: {e}", segment.uri),
                );
                continue;
            }
        };
        if extinf > target + SEGMENT_OVERSHOOT {
            violation(
                "Apple 7.7",
                segment_url.as_str(),
                format!(
                    "EXTINF {:.3} s exceeds the target {} s by more than 0.5 s",
                    extinf.as_secs_f64(),
                    target.as_secs()
                ),
            );
        }
        if segment.duration.round() as u64 > playlist.target_duration {
            violation(
                "RFC 8216 4.3.3.1",
                segment_url.as_str(),
                format!(
                    "EXTINF {:.3} s rounds above the target duration",
                    segment.duration
                ),
            );
        }
        match memory.sequence_of.get(&segment.uri) {
            Some(&first) if first != sequence => violation(
                "RFC 8216 6.2.1",
                segment_url.as_str(),
                format!("listed with media sequence {sequence}, earlier with {first}"),
            ),
            Some(_) => {}
            None => {
                memory.sequence_of.insert(segment.uri.clone(), sequence);
            }
        }
        let key = segment_url.to_string();
        match memory.fetched.get(&key).copied() {
            None => {
                let (hash, problems) =
                    check_segment(client, &segment_url, sequence, extinf, memory).await;
                report.segments_checked += 1;
                for (rule, message) in problems {
                    violation(rule, segment_url.as_str(), message);
                }
                if let Some(hash) = hash {
                    memory.fetched.insert(key, (hash, read));
                }
            }
            Some((hash, at_read)) if read == at_read + REFETCH_AFTER_READS => {
                if let Ok(bytes) = get_bytes(client, &segment_url).await {
                    if fingerprint(&bytes) != hash {
                        violation(
                            "RFC 8216 6.2.1",
                            segment_url.as_str(),
                            "the same URI now serves other bytes".into(),
                        );
                    }
                }
            }
            Some(_) => {}
        }
    }
    report.violations.extend(found);
    Ok(target)
}

/// Fetches a new segment and checks it; returns its bytes' fingerprint.
async fn check_segment(
    client: &reqwest::Client,
    url: &Url,
    sequence: u64,
    extinf: Duration,
    memory: &mut Memory,
) -> (Option<u64>, Vec<(&'static str, String)>) {
    let mut problems = Vec::new();
    let response = match client.get(url.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            return (
                None,
                vec![(
                    "RFC 8216 6.2.2",
                    format!("a listed segment could not be fetched: {}", root_cause(&e)),
                )],
            )
        }
    };
    if !response.status().is_success() {
        return (
            None,
            vec![(
                "RFC 8216 6.2.2",
                format!("a listed segment answered {}", response.status()),
            )],
        );
    }
    let content_type = header(&response, CONTENT_TYPE);
    if !content_type.starts_with(SEGMENT_CONTENT_TYPE) {
        problems.push((
            "Apple 10.4",
            format!("segment Content-Type is '{content_type}'"),
        ));
    }
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return (
                None,
                vec![(
                    "RFC 8216 6.2.2",
                    format!("segment body cut: {}", root_cause(&e)),
                )],
            )
        }
    };
    if !is_complete_transport_stream(&bytes) {
        problems.push((
            "RFC 8216 3.2",
            format!("{} bytes are not whole MPEG-TS packets", bytes.len()),
        ));
    }
    let bit_rate = bytes.len() as f64 * 8.0 / extinf.as_secs_f64().max(f64::EPSILON);
    if memory.measured.peak.is_none_or(|(_, peak)| bit_rate > peak) {
        memory.measured.peak = Some((sequence, bit_rate));
    }
    if memory.measured.codecs.is_none() {
        memory.measured.codecs = Some(codecs::read(&bytes));
    }
    let start = ts::video_start(&bytes);
    if let Some(start) = start {
        memory.measured.first_pts.insert(sequence, start.pts);
    }
    match start {
        Some(s) if !s.idr => problems.push((
            "Apple 7.4",
            "the segment does not start with an IDR frame".into(),
        )),
        None => problems.push(("Apple 7.4", "no video found in the segment".into())),
        Some(_) => {}
    }
    let pts = start.map(|s| s.pts);
    // Segment n's EXTINF must match the time from its first picture to n+1's.
    let neighbours = [
        (
            sequence.checked_sub(1),
            memory.timing.get(&sequence.wrapping_sub(1)).copied(),
            pts,
        ),
        (
            Some(sequence),
            Some((pts, extinf)),
            memory.timing.get(&(sequence + 1)).and_then(|t| t.0),
        ),
    ];
    for (earlier, earlier_timing, later_pts) in neighbours {
        if let (Some(n), Some((Some(from), listed)), Some(to)) =
            (earlier, earlier_timing, later_pts)
        {
            let media = Duration::from_secs_f64(to.wrapping_sub(from) as f64 / PTS_HZ);
            if media.abs_diff(listed) > ONE_FRAME && to > from {
                problems.push((
                    "Apple 8.1",
                    format!(
                        "segment {n}: EXTINF {:.3} s but its media lasts {:.3} s",
                        listed.as_secs_f64(),
                        media.as_secs_f64()
                    ),
                ));
            }
        }
    }
    memory.timing.insert(sequence, (pts, extinf));
    (Some(fingerprint(&bytes)), problems)
}

/// HEAD must be answered like GET (RFC 9110 9.3.2); a client that accepts
/// gzip gets the playlist compressed (Apple 10.1).
async fn head_and_gzip(
    client: &reqwest::Client,
    url: &Url,
    content_type: &str,
) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match client.head(url.clone()).send().await {
        Ok(r) if r.status().is_success() => {
            let head_type = header(&r, CONTENT_TYPE);
            if head_type != content_type {
                problems.push((
                    "RFC 9110 9.3.2",
                    format!("HEAD says Content-Type '{head_type}', GET '{content_type}'"),
                ));
            }
        }
        Ok(r) => problems.push(("RFC 9110 9.3.2", format!("HEAD answered {}", r.status()))),
        Err(e) => problems.push(("RFC 9110 9.3.2", format!("HEAD failed: {}", root_cause(&e)))),
    }
    match client
        .get(url.clone())
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
    {
        Ok(r) if header(&r, CONTENT_ENCODING) == "gzip" => {}
        Ok(_) => problems.push((
            "Apple 10.1",
            "the playlist is not gzip-compressed for a client that accepts it".into(),
        )),
        Err(e) => problems.push((
            "Apple 10.1",
            format!("GET with gzip failed: {}", root_cause(&e)),
        )),
    }
    problems
}

async fn get_bytes(client: &reqwest::Client, url: &Url) -> Result<bytes::Bytes, String> {
    let r = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| root_cause(&e))?;
    r.bytes().await.map_err(|e| root_cause(&e))
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// How old an HTTP date is, or `None` when it is missing or unreadable.
fn last_modified_age(value: &str) -> Option<Duration> {
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let age = chrono::Utc::now().signed_duration_since(when);
    Some(age.to_std().unwrap_or(Duration::ZERO))
}

/// A content fingerprint (not cryptographic: it only has to notice a change).
fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(rule: &'static str, message: &str) -> Violation {
        Violation {
            rule,
            at: "u".into(),
            message: message.into(),
        }
    }

    #[test]
    fn the_summary_counts_the_same_violation_once_per_kind() {
        let report = ValidationReport {
            violations: vec![
                v("Apple 8.11", "5 segments listed, fewer than 6"),
                v("Apple 8.11", "4 segments listed, fewer than 6"),
                v("Apple 8.4", "a segment without EXT-X-PROGRAM-DATE-TIME"),
            ],
            ..Default::default()
        };
        let summary = report.summary();
        assert_eq!(summary.len(), 2);
        assert_eq!(summary[0].0, 2);
        assert_eq!(summary[1].1.rule, "Apple 8.4");
    }

    #[test]
    fn last_modified_ages_are_read_from_http_dates() {
        let now = chrono::Utc::now().to_rfc2822();
        assert!(last_modified_age(&now).is_some_and(|a| a < Duration::from_secs(2)));
        assert_eq!(last_modified_age(""), None);
        assert_eq!(last_modified_age("yesterday"), None);
    }
}
