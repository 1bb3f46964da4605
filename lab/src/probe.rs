//! The player probe: plays a live HLS stream the way a viewer's player does and
//! reports what that viewer went through (startup time, stalls, failed
//! requests, playlists that went back in time, segments lost or repeated).
//!
//! ```text
//!   reload playlist (RFC 8216 6.3.4) --> SequenceTracker --> new segments, in order, once
//!                                        (regressions,          |
//!                                         skips, repeats)       v
//!                                                        GET, whole TS? [demux_segment]
//!                                                               |
//!                                        PlaybackModel <--------+  (buffer, startup, stalls)
//!                                               |
//!                                               v
//!                                        ProbeReport (JSON)
//! ```
//!
//! The judging parts, [`PlaybackModel`] and [`SequenceTracker`], are free of I/O
//! and take the time as an argument, so their tests need no sockets and no
//! sleeps. [`play`] is the thin network loop around them. Like a player, the
//! probe starts at the live edge (the last `start_segments` segments of the
//! first playlist), starts playing once those are buffered and then drains the
//! buffer in real time; a segment that fails is lost, as it would be on screen.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use url::Url;

use crate::demux::{demux_segment, DemuxError, DemuxReport};
use nonstop::hls::{is_complete_transport_stream, ListedSegment, PlaylistFacts};
use nonstop::service::http::root_cause;
use nonstop::service::shutdown::Shutdown;

/// Segments buffered before playback starts (what hls.js and most players wait for
/// at the live edge: three target durations).
pub const DEFAULT_START_SEGMENTS: usize = 3;
/// Wall time the probe plays for when none is configured.
const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// Budget of one request, from connecting to the last body byte.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a progress line is logged at info.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Pause before reloading when no playlist has loaded yet, so no target
/// duration is known to pace the reloads.
const RELOAD_BEFORE_FIRST_PLAYLIST: Duration = Duration::from_secs(1);
/// Shortest pause between reloads, so a playlist announcing a zero target
/// duration does not turn the probe into a request flood.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(100);
/// Redirects a player follows before giving up.
const MAX_REDIRECTS: usize = 5;
/// Most segments a player buffers before starting; more is a typing mistake.
const MAX_START_SEGMENTS: usize = 100;

/// Plays a live HLS media playlist as a viewer would and prints what the viewer
/// went through as JSON.
#[derive(Debug, Clone, Parser)]
#[command(name = "probe", version)]
pub struct ProbeConfig {
    /// URL of the live media playlist, e.g. http://127.0.0.1:8002/live01/playlist.m3u8.
    #[arg(long, env = "PROBE_URL")]
    pub url: String,
    /// How long to play, in seconds (wall time).
    #[arg(long, env = "PROBE_DURATION", default_value = "30", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Segments buffered before playback starts; the probe starts this many
    /// segments behind the live edge.
    #[arg(long, env = "PROBE_START_SEGMENTS", default_value_t = DEFAULT_START_SEGMENTS, value_parser = parse_start_segments)]
    pub start_segments: usize,
    /// Budget of each playlist or segment request, in milliseconds.
    #[arg(long = "timeout-ms", env = "PROBE_TIMEOUT_MS", default_value = "5000", value_parser = parse_millis)]
    pub request_timeout: Duration,
    /// Also demux every segment and count those without H.264 frames.
    #[arg(long, env = "PROBE_DEMUX")]
    pub demux: bool,
    /// Address to connect from (any of 127.0.0.0/8 on loopback): probes on
    /// one machine then reach the server as viewers on distinct hosts.
    #[arg(long, env = "PROBE_LOCAL_ADDRESS")]
    pub local_address: Option<std::net::IpAddr>,
    /// Given a multivariant playlist (a ladder), the variant played: 0 the
    /// first listed (the last if there are fewer).
    #[arg(long, env = "PROBE_RENDITION", default_value_t = 0)]
    pub rendition: usize,
}

impl ProbeConfig {
    /// A probe of `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        ProbeConfig {
            url: url.into(),
            duration: DEFAULT_DURATION,
            start_segments: DEFAULT_START_SEGMENTS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            demux: false,
            local_address: None,
            rendition: 0,
        }
    }

    /// Checks what clap cannot when the config is built in code, and parses the URL.
    fn validate(&self) -> Result<Url, ProbeError> {
        let invalid = |reason: &str| ProbeError::InvalidUrl {
            url: self.url.clone(),
            reason: reason.to_string(),
        };
        let url = Url::parse(&self.url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("only http and https are supported"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if self.duration.is_zero() {
            return Err(ProbeError::InvalidConfig(
                "duration must be above zero".into(),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ProbeError::InvalidConfig(
                "request timeout must be above zero".into(),
            ));
        }
        if !(1..=MAX_START_SEGMENTS).contains(&self.start_segments) {
            return Err(ProbeError::InvalidConfig(format!(
                "start segments must be between 1 and {MAX_START_SEGMENTS}"
            )));
        }
        Ok(url)
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err("must be above zero".into());
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

fn parse_millis(s: &str) -> Result<Duration, String> {
    let millis: u64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of milliseconds"))?;
    if millis == 0 {
        return Err("must be above zero".into());
    }
    Ok(Duration::from_millis(millis))
}

fn parse_start_segments(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (1..=MAX_START_SEGMENTS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between 1 and {MAX_START_SEGMENTS}"))
    }
}

/// The word that opens the line the probe logs when playback starts and after
/// each segment played while playing (see [`Progress`]).
const PLAYING_WORD: &str = "playing";

/// How far playback got, as the probe announces it on stderr in a line of its
/// own (`playing 5 segments, 2.040 s of media`): so whoever drives the probe
/// (the system tests, the benchmarks) can act once a viewer is really
/// watching, instead of after a sleep guessed to be long enough.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Segments downloaded whole so far.
    pub segments: u64,
    /// Media the play head has gone through since playback started.
    pub media_played: Duration,
}

impl Progress {
    /// The announcement, as logged.
    pub fn line(&self) -> String {
        format!(
            "{PLAYING_WORD} {} segments, {:.3} s of media",
            self.segments,
            self.media_played.as_secs_f64()
        )
    }

    /// Reads an announcement back from a log line (whatever the logger put
    /// before it); `None` for any other line.
    pub fn parse(line: &str) -> Option<Progress> {
        let start = line.find(&format!("{PLAYING_WORD} "))?;
        let rest = line[start + PLAYING_WORD.len() + 1..].trim_end();
        let (segments, rest) = rest.split_once(" segments, ")?;
        let seconds = rest.strip_suffix(" s of media")?;
        let seconds: f64 = seconds.parse().ok()?;
        Some(Progress {
            segments: segments.parse().ok()?,
            media_played: Duration::try_from_secs_f64(seconds).ok()?,
        })
    }
}

/// Why the probe could not start (said in one line; the bin then exits 1).
/// Once started, failures are what the probe measures: they go in the report.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid playlist URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid probe configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot create the HTTP client: {0}")]
    Client(String),
}

/// What a viewer went through, printed as JSON at the end of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The playlist played.
    pub url: String,
    /// Wall time the probe played for.
    pub duration_ms: u64,
    /// From the first playlist request to playback start; `None` when the start
    /// buffer never filled.
    pub startup_ms: Option<u64>,
    /// Segments downloaded whole (2xx and a complete transport stream).
    pub segments_played: u64,
    /// Times the buffer ran dry while playing.
    pub stalls: u64,
    /// Time spent stalled, including a stall still going on at the end.
    pub stall_ms: u64,
    /// Non-2xx answers, transport errors, timeouts, segment bodies that are not
    /// whole transport streams, unparsable playlists and unresolvable URIs.
    pub failed_requests: u64,
    /// Playlist requests sent.
    pub playlist_requests: u64,
    /// Segment requests sent.
    pub segment_requests: u64,
    /// Playlists whose media sequence or newest sequence was lower than one
    /// seen before: the stream went back in time (a failover to a stale copy).
    pub playlist_regressions: u64,
    /// Segments after the last fetched one that left the window before the
    /// probe could fetch them: a viewer would have jumped over them.
    pub skipped_segments: u64,
    /// URIs listed under two different media sequence numbers: a viewer would
    /// see the same media twice.
    pub repeated_segments: u64,
    /// With demux checking on, segments that gave no H.264 frame.
    pub undecodable_segments: u64,
    /// EXT-X-MEDIA-SEQUENCE of the last playlist loaded.
    pub last_media_sequence: Option<u64>,
}

impl ProbeReport {
    /// Asserts the viewer noticed nothing: no stall, no failed request, no
    /// playlist regression, no skipped, repeated or undecodable segment.
    /// `context` (logs) ends each failure message.
    pub fn assert_unnoticed(&self, context: &str) {
        assert_eq!(self.stalls, 0, "stalls\n{context}");
        assert_eq!(self.failed_requests, 0, "failed requests\n{context}");
        assert_eq!(self.playlist_regressions, 0, "regressions\n{context}");
        assert_eq!(self.skipped_segments, 0, "skipped\n{context}");
        assert_eq!(self.repeated_segments, 0, "repeated\n{context}");
        assert_eq!(self.undecodable_segments, 0, "undecodable\n{context}");
    }
}

/// Where playback stands, as a viewer would describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlayState {
    /// Filling the start buffer; nothing on screen yet.
    Starting,
    Playing,
    /// The buffer ran dry while playing; waiting for the next segment.
    Stalled,
}

/// A player's buffer: fills with segments, drains in real time while playing.
/// Time is passed in, so tests drive it without waiting.
#[derive(Debug, Clone)]
struct PlaybackModel {
    /// Segments buffered before playback starts.
    start_segments: usize,
    /// When the viewer pressed play: startup is measured from here.
    opened_at: Instant,
    /// The time the buffer has been drained up to.
    clock: Instant,
    /// Media left to play in each buffered segment, oldest first.
    buffer: VecDeque<Duration>,
    state: PlayState,
    startup: Option<Duration>,
    stalls: u64,
    /// When the current stall began, while stalled.
    stalled_since: Option<Instant>,
    /// Time spent in stalls that have ended.
    stall_time: Duration,
    /// Media the play head has gone through.
    played: Duration,
}

impl PlaybackModel {
    pub fn new(start_segments: usize, now: Instant) -> Self {
        PlaybackModel {
            start_segments: start_segments.max(1),
            opened_at: now,
            clock: now,
            buffer: VecDeque::new(),
            state: PlayState::Starting,
            startup: None,
            stalls: 0,
            stalled_since: None,
            stall_time: Duration::ZERO,
            played: Duration::ZERO,
        }
    }

    /// Plays the buffer up to `now`; running dry while playing starts a stall
    /// at the moment the last buffered media ended, not at `now`.
    pub fn advance(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.clock) else {
            return;
        };
        self.clock = now;
        if self.state != PlayState::Playing {
            return;
        }
        let mut left = elapsed;
        let played_before = self.played;
        while let Some(front) = self.buffer.front_mut() {
            if *front > left {
                *front -= left;
                left = Duration::ZERO;
                break;
            }
            left -= *front;
            self.buffer.pop_front();
        }
        self.played = played_before + (elapsed - left);
        if self.buffer.is_empty() {
            self.state = PlayState::Stalled;
            self.stalls += 1;
            self.stalled_since = Some(now - left);
        }
    }

    /// A segment of `duration` finished downloading at `now`: it starts
    /// playback once the start buffer is full, and ends a stall.
    fn segment_arrived(&mut self, duration: Duration, now: Instant) {
        self.advance(now);
        self.buffer.push_back(duration);
        match self.state {
            PlayState::Starting if self.buffer.len() >= self.start_segments => {
                self.state = PlayState::Playing;
                self.startup = Some(now.saturating_duration_since(self.opened_at));
            }
            PlayState::Stalled => {
                self.state = PlayState::Playing;
                if let Some(since) = self.stalled_since.take() {
                    self.stall_time += now.saturating_duration_since(since);
                }
            }
            _ => {}
        }
    }

    pub fn state(&self) -> PlayState {
        self.state
    }

    /// Time from pressing play to the first picture, once playback started.
    pub fn startup(&self) -> Option<Duration> {
        self.startup
    }

    pub fn stalls(&self) -> u64 {
        self.stalls
    }

    /// Total time stalled up to `now`, counting a stall still going on.
    fn stall_time(&mut self, now: Instant) -> Duration {
        self.advance(now);
        let ongoing = self
            .stalled_since
            .map(|since| now.saturating_duration_since(since))
            .unwrap_or_default();
        self.stall_time + ongoing
    }

    /// Media played so far; stalls and the start buffer filling add nothing.
    pub fn played(&self) -> Duration {
        self.played
    }

    /// Media buffered ahead of the play head.
    pub(crate) fn buffered(&self) -> Duration {
        self.buffer.iter().sum()
    }

    /// Segments buffered, the one playing included.
    fn buffered_segments(&self) -> usize {
        self.buffer.len()
    }
}

/// What one playlist load changed, as [`SequenceTracker::observe`] sees it.
#[derive(Debug, Clone, PartialEq, Default)]
struct Observation {
    /// New segments to fetch, oldest first.
    to_fetch: Vec<ListedSegment>,
    /// The playlist went back in time.
    pub(crate) regressed: bool,
    /// Segments that left the window before they could be fetched.
    pub skipped: u64,
    /// URIs first seen here under a second sequence number.
    newly_repeated: Vec<String>,
}

/// Media sequence bookkeeping across playlist reloads: which segments are new,
/// and whether the stream went back in time, jumped or repeated itself.
///
/// It remembers every URI it saw (to catch repeats), about 40 bytes per segment:
/// a day of 2 s segments is a few megabytes.
#[derive(Debug, Clone)]
struct SequenceTracker {
    start_segments: usize,
    /// The next sequence number to fetch; `None` until a playlist listed segments.
    next: Option<u64>,
    highest_media_sequence: Option<u64>,
    highest_newest: Option<u64>,
    /// The sequence number each URI was first seen under.
    sequence_of: HashMap<String, u64>,
    /// URIs already counted as repeated, so each counts once.
    repeated_uris: HashSet<String>,
    regressions: u64,
    skipped: u64,
}

impl SequenceTracker {
    pub fn new(start_segments: usize) -> Self {
        SequenceTracker {
            start_segments: start_segments.max(1),
            next: None,
            highest_media_sequence: None,
            highest_newest: None,
            sequence_of: HashMap::new(),
            repeated_uris: HashSet::new(),
            regressions: 0,
            skipped: 0,
        }
    }

    /// Takes a freshly loaded playlist. The first one with segments sets the
    /// start at the live edge; later ones yield the segments not fetched yet.
    fn observe(&mut self, facts: &PlaylistFacts) -> Observation {
        let mut seen = Observation::default();
        let newest = facts.newest_sequence();
        let went_back = |highest: Option<u64>, now: Option<u64>| match (highest, now) {
            (Some(highest), Some(now)) => now < highest,
            _ => false,
        };
        if went_back(self.highest_media_sequence, Some(facts.media_sequence))
            || went_back(self.highest_newest, newest)
        {
            self.regressions += 1;
            seen.regressed = true;
        }
        self.highest_media_sequence = self.highest_media_sequence.max(Some(facts.media_sequence));
        self.highest_newest = self.highest_newest.max(newest);

        for segment in &facts.segments {
            match self.sequence_of.get(&segment.uri) {
                Some(&first) if first != segment.sequence => {
                    if self.repeated_uris.insert(segment.uri.clone()) {
                        seen.newly_repeated.push(segment.uri.clone());
                    }
                }
                Some(_) => {}
                None => {
                    self.sequence_of
                        .insert(segment.uri.clone(), segment.sequence);
                }
            }
        }

        let next = match (self.next, newest) {
            (Some(next), _) if facts.media_sequence > next => {
                seen.skipped = facts.media_sequence - next;
                self.skipped += seen.skipped;
                facts.media_sequence
            }
            (Some(next), _) => next,
            (None, Some(newest)) => (newest + 1)
                .saturating_sub(self.start_segments as u64)
                .max(facts.media_sequence),
            (None, None) => return seen,
        };
        self.next = Some(next);
        seen.to_fetch = facts
            .segments
            .iter()
            .filter(|s| s.sequence >= next)
            .cloned()
            .collect();
        seen
    }

    /// Segment `sequence` was fetched or given up on: it is not fetched again.
    pub fn done(&mut self, sequence: u64) {
        self.next = Some(self.next.map_or(sequence + 1, |n| n.max(sequence + 1)));
    }

    pub fn regressions(&self) -> u64 {
        self.regressions
    }

    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    pub fn repeated(&self) -> u64 {
        self.repeated_uris.len() as u64
    }
}

/// How long to wait before reloading, per RFC 8216 section 6.3.4: the target
/// duration after a playlist that changed, half of it after one that did not
/// (or after a failed load), measured from when the last load began.
fn reload_interval(target_duration: Option<Duration>, changed: bool) -> Duration {
    let Some(target) = target_duration else {
        return RELOAD_BEFORE_FIRST_PLAYLIST;
    };
    let wait = if changed { target } else { target / 2 };
    wait.max(MIN_RELOAD_INTERVAL)
}

/// Why one request failed; only logged, and counted in `failed_requests`.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    /// The probe's time is up or shutdown fired: not a failure of the stream.
    #[error("stopped")]
    Stopped,
}

/// One run of the probe: the configuration, the judging parts and the counters.
struct Probe {
    config: ProbeConfig,
    url: Url,
    client: reqwest::Client,
    shutdown: Shutdown,
    started: Instant,
    /// The probe stops at this instant, even mid-request.
    deadline: Instant,
    model: PlaybackModel,
    tracker: SequenceTracker,
    /// Demux checks running beside the downloads, so they do not delay them.
    demuxes: JoinSet<(u64, Result<DemuxReport, DemuxError>)>,
    next_progress: Instant,
    segments_played: u64,
    failed_requests: u64,
    playlist_requests: u64,
    segment_requests: u64,
    undecodable_segments: u64,
    last_media_sequence: Option<u64>,
}

/// Plays `config.url` for `config.duration` (or until `shutdown`) and reports
/// what a viewer went through. Errors only when the probe cannot start; a
/// stream that fails is a report full of failures, not an error.
pub async fn play(config: ProbeConfig, shutdown: Shutdown) -> Result<ProbeReport, ProbeError> {
    let url = config.validate()?;
    let client = reqwest::Client::builder()
        .connect_timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .local_address(config.local_address)
        .build()
        .map_err(|e| ProbeError::Client(root_cause(&e)))?;
    let url = rendition_of(&client, url, config.rendition).await;
    let started = Instant::now();
    log::info!(
        "Playing {url} for {:.1} s (start buffer {} segments{})",
        config.duration.as_secs_f64(),
        config.start_segments,
        if config.demux {
            ", demuxing segments"
        } else {
            ""
        }
    );
    let mut probe = Probe {
        url,
        client,
        shutdown,
        started,
        deadline: started + config.duration,
        model: PlaybackModel::new(config.start_segments, started),
        tracker: SequenceTracker::new(config.start_segments),
        demuxes: JoinSet::new(),
        next_progress: started + PROGRESS_EVERY,
        segments_played: 0,
        failed_requests: 0,
        playlist_requests: 0,
        segment_requests: 0,
        undecodable_segments: 0,
        last_media_sequence: None,
        config,
    };
    probe.run().await;
    let report = probe.report();
    log::info!(
        "Probe finished: {} segments played, startup {}, {} stalls ({} ms), {} failed requests, {} regressions, {} skipped, {} repeated, {} undecodable",
        report.segments_played,
        report
            .startup_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "never".into()),
        report.stalls,
        report.stall_ms,
        report.failed_requests,
        report.playlist_regressions,
        report.skipped_segments,
        report.repeated_segments,
        report.undecodable_segments
    );
    Ok(report)
}

/// The media playlist a player of `url` plays: `url` itself, or, when it is
/// a multivariant playlist (a ladder), its variant number `pick` (0: the
/// first listed; clamped to the last), as a player picks one. A first read
/// that fails leaves `url` (the watch then counts the failures).
async fn rendition_of(client: &reqwest::Client, url: Url, pick: usize) -> Url {
    let Ok(response) = client.get(url.clone()).send().await else {
        return url;
    };
    let Ok(body) = response.bytes().await else {
        return url;
    };
    let Some(ladder) = nonstop::hls::multivariant::Multivariant::parse(&body) else {
        return url;
    };
    let uris: Vec<&str> = ladder.uris().collect();
    let chosen = uris[pick.min(uris.len() - 1)];
    match url.join(chosen) {
        Ok(media) => {
            log::info!("{url} is a multivariant playlist: playing {chosen}");
            media
        }
        Err(_) => url,
    }
}

impl Probe {
    /// Reloads the playlist and plays its new segments until time is up.
    async fn run(&mut self) {
        let mut previous: Option<Bytes> = None;
        let mut target_duration: Option<Duration> = None;
        while !self.stopping() {
            let load_started = Instant::now();
            self.playlist_requests += 1;
            let changed = match self.fetch(&self.url.clone()).await {
                Err(FetchError::Stopped) => break,
                Err(e) => {
                    self.failed_requests += 1;
                    log::warn!("Playlist request failed: {e}");
                    false
                }
                Ok(body) => match PlaylistFacts::parse(&body) {
                    Err(e) => {
                        self.failed_requests += 1;
                        log::warn!("Playlist unreadable: {e}");
                        false
                    }
                    Ok(facts) => {
                        target_duration = Some(facts.target_duration);
                        self.last_media_sequence = Some(facts.media_sequence);
                        let changed = previous.as_ref() != Some(&body);
                        previous = Some(body);
                        if !self.play_new_segments(&facts).await {
                            break;
                        }
                        if facts.end_list {
                            log::info!("The stream ended (EXT-X-ENDLIST)");
                            break;
                        }
                        changed
                    }
                },
            };
            let reload_at = load_started + reload_interval(target_duration, changed);
            if !self.pause_until(reload_at).await {
                break;
            }
        }
        self.finish_demuxes().await;
    }

    /// Observes a playlist and fetches its new segments in order; `false` when
    /// the probe stopped on the way.
    async fn play_new_segments(&mut self, facts: &PlaylistFacts) -> bool {
        let seen = self.tracker.observe(facts);
        if seen.regressed {
            log::warn!(
                "Playlist went back in time: media sequence {}, newest {:?}",
                facts.media_sequence,
                facts.newest_sequence()
            );
        }
        if seen.skipped > 0 {
            log::warn!(
                "{} segments left the window before they were fetched",
                seen.skipped
            );
        }
        for uri in &seen.newly_repeated {
            log::warn!("Segment {uri} listed under two media sequence numbers");
        }
        for segment in seen.to_fetch {
            if self.stopping() || !self.fetch_segment(&segment).await {
                return false;
            }
            self.tracker.done(segment.sequence);
            self.collect_demuxes();
            self.log_progress_if_due();
        }
        true
    }

    /// Downloads one segment into the buffer; `false` when the probe stopped.
    async fn fetch_segment(&mut self, segment: &ListedSegment) -> bool {
        let url = match self.url.join(&segment.uri) {
            Ok(url) => url,
            Err(e) => {
                self.failed_requests += 1;
                log::warn!(
                    "Segment {} has an unusable URI '{}': {e}",
                    segment.sequence,
                    segment.uri
                );
                return true;
            }
        };
        self.segment_requests += 1;
        match self.fetch(&url).await {
            Err(FetchError::Stopped) => return false,
            Err(e) => {
                self.failed_requests += 1;
                log::warn!("Segment {} ({url}) failed: {e}", segment.sequence);
            }
            Ok(body) if !is_complete_transport_stream(&body) => {
                self.failed_requests += 1;
                log::warn!(
                    "Segment {} ({url}) is not a whole transport stream ({} bytes)",
                    segment.sequence,
                    body.len()
                );
            }
            Ok(body) => {
                self.segments_played += 1;
                self.model.segment_arrived(segment.duration, Instant::now());
                if self.model.state() == PlayState::Playing {
                    let progress = Progress {
                        segments: self.segments_played,
                        media_played: self.model.played(),
                    };
                    log::info!("{}", progress.line());
                }
                log::debug!(
                    "Segment {} played ({} bytes), buffer {:.1} s",
                    segment.sequence,
                    body.len(),
                    self.model.buffered().as_secs_f64()
                );
                if self.config.demux {
                    let sequence = segment.sequence;
                    self.demuxes
                        .spawn_blocking(move || (sequence, demux_segment(&body)));
                }
            }
        }
        true
    }

    /// One GET within the request budget, cut short by the deadline or shutdown.
    async fn fetch(&self, url: &Url) -> Result<Bytes, FetchError> {
        let timeout = self.config.request_timeout;
        let request = async {
            let response = self
                .client
                .get(url.clone())
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| classify(e, timeout))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            response.bytes().await.map_err(|e| classify(e, timeout))
        };
        tokio::select! {
            result = request => result,
            _ = self.shutdown.wait() => Err(FetchError::Stopped),
            _ = tokio::time::sleep_until(self.deadline.into()) => Err(FetchError::Stopped),
        }
    }

    /// Waits until `until`, logging progress on the way; `false` when the
    /// probe's time ran out or shutdown fired first.
    async fn pause_until(&mut self, until: Instant) -> bool {
        let shutdown = self.shutdown.clone();
        loop {
            self.log_progress_if_due();
            self.collect_demuxes();
            let now = Instant::now();
            if self.stopping() {
                return false;
            }
            if now >= until {
                return true;
            }
            let wake = until.min(self.next_progress).min(self.deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = shutdown.wait() => return false,
            }
        }
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_triggered() || Instant::now() >= self.deadline
    }

    fn log_progress_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_progress {
            return;
        }
        self.next_progress = now + PROGRESS_EVERY;
        let stall_time = self.model.stall_time(now);
        log::info!(
            "{:.0} s: {} segments played, buffer {:.1} s ({} segments, {:?}), {} stalls ({} ms), {} failed requests",
            now.saturating_duration_since(self.started).as_secs_f64(),
            self.segments_played,
            self.model.buffered().as_secs_f64(),
            self.model.buffered_segments(),
            self.model.state(),
            self.model.stalls(),
            stall_time.as_millis(),
            self.failed_requests
        );
    }

    /// Counts the demux checks that have finished, without waiting.
    fn collect_demuxes(&mut self) {
        while let Some(done) = self.demuxes.try_join_next() {
            self.judge_demux(done);
        }
    }

    /// Waits for the demux checks still running (each bounded by its own timeout).
    async fn finish_demuxes(&mut self) {
        while let Some(done) = self.demuxes.join_next().await {
            self.judge_demux(done);
        }
    }

    fn judge_demux(
        &mut self,
        done: Result<(u64, Result<DemuxReport, DemuxError>), tokio::task::JoinError>,
    ) {
        match done {
            Ok((_, Ok(report))) if report.has_h264() => {}
            Ok((sequence, Ok(report))) => {
                self.undecodable_segments += 1;
                log::warn!("Segment {sequence} has no H.264 frames ({report:?})");
            }
            Ok((sequence, Err(e))) => {
                self.undecodable_segments += 1;
                log::warn!("Segment {sequence} does not demux: {e}");
            }
            Err(e) => {
                self.undecodable_segments += 1;
                log::warn!("A demux check did not finish: {e}");
            }
        }
    }

    fn report(&mut self) -> ProbeReport {
        let now = Instant::now();
        // Play up to now first: a viewer frozen when the watch ends has
        // stalled, and that stall must be counted, not only timed.
        self.model.advance(now);
        ProbeReport {
            url: self.config.url.clone(),
            duration_ms: millis(now.saturating_duration_since(self.started)),
            startup_ms: self.model.startup().map(millis),
            segments_played: self.segments_played,
            stalls: self.model.stalls(),
            stall_ms: millis(self.model.stall_time(now)),
            failed_requests: self.failed_requests,
            playlist_requests: self.playlist_requests,
            segment_requests: self.segment_requests,
            playlist_regressions: self.tracker.regressions(),
            skipped_segments: self.tracker.skipped(),
            repeated_segments: self.tracker.repeated(),
            undecodable_segments: self.undecodable_segments,
            last_media_sequence: self.last_media_sequence,
        }
    }
}

fn classify(error: reqwest::Error, timeout: Duration) -> FetchError {
    if error.is_timeout() {
        FetchError::Timeout(timeout)
    } else {
        FetchError::Transport(root_cause(&error))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn playlist(media_sequence: u64, count: u64) -> PlaylistFacts {
        PlaylistFacts {
            media_sequence,
            target_duration: SECOND,
            segments: (media_sequence..media_sequence + count)
                .map(|sequence| ListedSegment {
                    sequence,
                    uri: format!("segment{sequence}.ts"),
                    duration: SECOND,
                    discontinuity: false,
                })
                .collect(),
            end_list: false,
            newest_program_date_time: None,
            low_latency: None,
        }
    }

    fn sequences(seen: &Observation) -> Vec<u64> {
        seen.to_fetch.iter().map(|s| s.sequence).collect()
    }

    #[test]
    fn playback_starts_once_the_start_buffer_is_full() {
        let t0 = Instant::now();
        let mut model = PlaybackModel::new(3, t0);
        model.segment_arrived(SECOND, t0 + ms(100));
        model.segment_arrived(SECOND, t0 + ms(200));
        assert_eq!(model.state(), PlayState::Starting);
        assert_eq!(model.startup(), None);
        model.segment_arrived(SECOND, t0 + ms(300));
        assert_eq!(model.state(), PlayState::Playing);
        assert_eq!(model.startup(), Some(ms(300)));
        model.advance(t0 + ms(800));
        assert_eq!(model.buffered(), ms(2500));
        assert_eq!(model.buffered_segments(), 3);
    }

    #[test]
    fn a_steady_stream_never_stalls() {
        let t0 = Instant::now();
        let mut model = PlaybackModel::new(3, t0);
        for _ in 0..3 {
            model.segment_arrived(SECOND, t0);
        }
        for n in 1..=60u32 {
            model.segment_arrived(SECOND, t0 + SECOND * n + ms(300));
        }
        assert_eq!(model.stalls(), 0);
        assert_eq!(model.stall_time(t0 + SECOND * 61), Duration::ZERO);
        assert_eq!(model.state(), PlayState::Playing);
    }

    #[test]
    fn running_dry_counts_a_stall_from_when_media_ran_out() {
        let t0 = Instant::now();
        let mut model = PlaybackModel::new(3, t0);
        for _ in 0..3 {
            model.segment_arrived(SECOND, t0);
        }
        model.advance(t0 + SECOND * 5);
        assert_eq!(model.state(), PlayState::Stalled);
        assert_eq!(model.stalls(), 1);
        // Dry at 3 s; still stalled at 5 s.
        assert_eq!(model.stall_time(t0 + SECOND * 5), SECOND * 2);
        // One segment ends the stall.
        model.segment_arrived(SECOND, t0 + SECOND * 6);
        assert_eq!(model.state(), PlayState::Playing);
        assert_eq!(model.stalls(), 1);
        // It lasts one second, then a second stall begins at 7 s.
        model.advance(t0 + SECOND * 8);
        assert_eq!(model.stalls(), 2);
        assert_eq!(model.stall_time(t0 + SECOND * 8), SECOND * 4);
    }

    #[test]
    fn media_played_counts_only_time_on_screen() {
        let t0 = Instant::now();
        let mut model = PlaybackModel::new(2, t0);
        model.segment_arrived(SECOND, t0 + SECOND);
        model.advance(t0 + SECOND * 3);
        assert_eq!(model.played(), Duration::ZERO, "filling the start buffer");
        model.segment_arrived(SECOND, t0 + SECOND * 3);
        model.advance(t0 + SECOND * 4 + ms(500));
        assert_eq!(model.played(), ms(1500));
        // Dry at 5 s; the stall up to 9 s plays nothing.
        model.advance(t0 + SECOND * 9);
        assert_eq!(model.played(), SECOND * 2);
        model.segment_arrived(SECOND, t0 + SECOND * 9);
        model.advance(t0 + SECOND * 9 + ms(250));
        assert_eq!(model.played(), ms(2250));
    }

    #[test]
    fn the_playing_announcement_reads_back_from_a_log_line() {
        let progress = Progress {
            segments: 7,
            media_played: ms(4250),
        };
        let logged = format!("2026-01-02 03:04:05 INF {}", progress.line());
        assert_eq!(Progress::parse(&logged), Some(progress));
        assert_eq!(Progress::parse(&progress.line()), Some(progress));
        for other in [
            "2026-01-02 03:04:05 INF Playing http://x/playlist.m3u8 for 30.0 s (start buffer 3 segments)",
            "2026-01-02 03:04:05 WRN Segment 4 (http://x/playing.ts) failed: HTTP status 500",
            "playing 7 segments",
            "playing many segments, 1.000 s of media",
        ] {
            assert_eq!(Progress::parse(other), None, "{other}");
        }
    }

    #[test]
    fn waiting_for_the_start_buffer_is_not_a_stall() {
        let t0 = Instant::now();
        let mut model = PlaybackModel::new(3, t0);
        model.segment_arrived(SECOND, t0);
        model.advance(t0 + SECOND * 10);
        assert_eq!(model.stalls(), 0);
        assert_eq!(model.state(), PlayState::Starting);
        assert_eq!(model.stall_time(t0 + SECOND * 10), Duration::ZERO);
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let t0 = Instant::now() + SECOND;
        let mut model = PlaybackModel::new(1, t0);
        model.segment_arrived(SECOND, t0);
        model.advance(t0 - ms(500));
        assert_eq!(model.buffered(), SECOND);
    }

    #[test]
    fn starts_at_the_live_edge() {
        let mut tracker = SequenceTracker::new(3);
        let seen = tracker.observe(&playlist(10, 6));
        assert_eq!(sequences(&seen), vec![13, 14, 15]);
        // A window shorter than the start buffer is played whole.
        let mut tracker = SequenceTracker::new(3);
        assert_eq!(sequences(&tracker.observe(&playlist(7, 2))), vec![7, 8]);
        // An empty playlist sets no start.
        let mut tracker = SequenceTracker::new(3);
        assert!(tracker.observe(&playlist(7, 0)).to_fetch.is_empty());
        assert_eq!(sequences(&tracker.observe(&playlist(7, 4))), vec![8, 9, 10]);
    }

    #[test]
    fn each_segment_is_fetched_once_in_order() {
        let mut tracker = SequenceTracker::new(3);
        for s in sequences(&tracker.observe(&playlist(10, 6))) {
            tracker.done(s);
        }
        assert!(tracker.observe(&playlist(10, 6)).to_fetch.is_empty());
        let seen = tracker.observe(&playlist(12, 6));
        assert_eq!(sequences(&seen), vec![16, 17]);
        tracker.done(16);
        // 17 is still due when it was not done yet.
        assert_eq!(sequences(&tracker.observe(&playlist(12, 6))), vec![17]);
        assert_eq!(tracker.regressions(), 0);
        assert_eq!(tracker.skipped(), 0);
        assert_eq!(tracker.repeated(), 0);
    }

    #[test]
    fn segments_gone_before_fetching_count_as_skipped() {
        let mut tracker = SequenceTracker::new(3);
        for s in sequences(&tracker.observe(&playlist(10, 6))) {
            tracker.done(s);
        }
        let seen = tracker.observe(&playlist(19, 6));
        assert_eq!(seen.skipped, 3);
        assert_eq!(sequences(&seen), vec![19, 20, 21, 22, 23, 24]);
        assert_eq!(tracker.skipped(), 3);
    }

    #[test]
    fn a_playlist_going_back_in_time_is_a_regression() {
        let mut tracker = SequenceTracker::new(3);
        for s in sequences(&tracker.observe(&playlist(10, 6))) {
            tracker.done(s);
        }
        let seen = tracker.observe(&playlist(8, 6));
        assert!(seen.regressed);
        assert!(seen.to_fetch.is_empty());
        // Same media sequence but fewer segments: the newest went back.
        assert!(tracker.observe(&playlist(10, 5)).regressed);
        assert!(!tracker.observe(&playlist(11, 6)).regressed);
        assert_eq!(tracker.regressions(), 2);
    }

    #[test]
    fn a_uri_under_two_sequence_numbers_is_repeated_once() {
        let mut tracker = SequenceTracker::new(3);
        tracker.observe(&playlist(10, 3));
        let mut shifted = playlist(20, 3);
        shifted.segments[0].uri = "segment11.ts".into();
        let seen = tracker.observe(&shifted);
        assert_eq!(seen.newly_repeated, vec!["segment11.ts".to_string()]);
        assert!(tracker.observe(&shifted).newly_repeated.is_empty());
        assert_eq!(tracker.repeated(), 1);
    }

    #[test]
    fn reloads_follow_rfc_8216() {
        let two = Duration::from_secs(2);
        assert_eq!(reload_interval(Some(two), true), two);
        assert_eq!(reload_interval(Some(two), false), SECOND);
        assert_eq!(reload_interval(None, false), RELOAD_BEFORE_FIRST_PLAYLIST);
        assert_eq!(
            reload_interval(Some(Duration::ZERO), true),
            MIN_RELOAD_INTERVAL
        );
    }

    #[test]
    fn config_is_checked_before_any_request() {
        assert!(
            ProbeConfig::new("http://127.0.0.1:8002/live01/playlist.m3u8")
                .validate()
                .is_ok()
        );
        for bad in ["not a url", "ftp://host/p.m3u8", "file:///tmp/p.m3u8", ""] {
            assert!(
                matches!(
                    ProbeConfig::new(bad).validate(),
                    Err(ProbeError::InvalidUrl { .. })
                ),
                "{bad:?} must be refused"
            );
        }
        let mut config = ProbeConfig::new("http://127.0.0.1/p.m3u8");
        config.start_segments = 0;
        assert!(matches!(
            config.validate(),
            Err(ProbeError::InvalidConfig(_))
        ));
    }

    #[test]
    fn flags_parse_into_durations() {
        let config = ProbeConfig::try_parse_from([
            "probe",
            "--url",
            "http://h/p.m3u8",
            "--duration",
            "2.5",
            "--timeout-ms",
            "750",
            "--start-segments",
            "2",
            "--demux",
        ])
        .expect("parses");
        assert_eq!(config.duration, ms(2500));
        assert_eq!(config.request_timeout, ms(750));
        assert_eq!(config.start_segments, 2);
        assert!(config.demux);
        let defaults =
            ProbeConfig::try_parse_from(["probe", "--url", "http://h/p.m3u8"]).expect("parses");
        assert_eq!(defaults.duration, DEFAULT_DURATION);
        assert_eq!(defaults.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert!(ProbeConfig::try_parse_from(["probe", "--url", "u", "--duration", "0"]).is_err());
    }
}
