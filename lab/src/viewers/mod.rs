//! A crowd of simulated players against one HTTP base URL (the `viewers`
//! program, and `just bench-viewers` through it): each viewer polls
//! `<base>/<signal>/playlist.m3u8` every target duration on its own
//! keep-alive connection, as hls.js does, and fetches every newly listed
//! segment once, in order, like a player. What the crowd saw is summed up in
//! one [`Report`]: playlist and segment latency (whole body), failed
//! requests, late, missed and skipped segments, and the CPU and memory of the
//! server under test when its process ids are given.
//!
//! ```text
//!  viewer 1 ──keep-alive──┐  every target duration: GET playlist
//!  viewer 2 ──keep-alive──┼─▶ base URL  then GET each new segment once
//!     ...                 │  (start times spread over one target duration)
//!  viewer N ──keep-alive──┘
//! ```
//!
//! **Late** is judged per delivery of a segment that appeared while the viewer
//! watched (not the ones it started with): the segment is late when it
//! arrived more than one target duration after the moment this viewer could
//! first have known of it, which is the later of (a) the first time any
//! viewer saw it listed and (b) the first playlist request this viewer sent
//! after (a). Measuring from (a) alone charges each viewer its own poll phase
//! (up to a whole target duration, by construction); (b) keeps what the server
//! adds (a stale cached playlist, a slow segment) and drops what the viewer's
//! schedule adds. The rule from (a) alone is reported too.
//!
//! Bookkeeping ([`ViewerBook`], [`late_reference`]) is pure and unit-tested;
//! the I/O around it is thin.
//!
//! The low-latency crowd ([`low_latency`]: blocking reloads part by part,
//! release latency from each part's publication, which [`published`] reads
//! off the worker's folder) shares this module's connections, percentiles
//! and server watch.

pub mod low_latency;
pub mod part_list;
pub mod published;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use serde::Serialize;
use tokio::time::Instant;
use url::Url;

use crate::procfs::rss_kib;

/// Viewers simulated when not told otherwise.
const DEFAULT_VIEWERS: usize = 10_000;
/// Seconds the crowd watches when not told otherwise.
pub const DEFAULT_SECONDS: u64 = 60;
/// Segments a viewer fetches from its first playlist (the newest ones), as
/// the probe and hls.js start a few segments behind the live edge.
pub const DEFAULT_START_SEGMENTS: usize = 3;
/// A request (head and whole body) must end within this, or it failed.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// Playlist request send times a viewer remembers for the late rule: more
/// than enough polls for any segment it is still fetching.
const SENDS_KEPT: usize = 16;
/// How often the server's resident memory is sampled for its peak.
const MEMORY_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What the crowd does, from flags (the `viewers` program) or built by the
/// bench.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "viewers",
    version,
    about = "A crowd of simulated HLS players against one base URL: each polls the playlist every \
             target duration on its own keep-alive connection and fetches every new segment once. \
             Prints playlist and segment latency, failed requests, late segments and, with \
             --server-pid, the server's CPU and memory."
)]
pub struct ViewersConfig {
    /// Base URL players use, e.g. http://127.0.0.1:8002 (the proxy).
    #[arg(long, env = "VIEWERS_URL", value_parser = crate::fault_proxy::parse_upstream)]
    pub url: Url,
    /// Signal watched: <url>/<signal>/playlist.m3u8.
    #[arg(long, default_value = "live01")]
    pub signal: String,
    /// Number of viewers, each with its own connection.
    #[arg(long, default_value_t = DEFAULT_VIEWERS)]
    pub viewers: usize,
    /// Seconds the crowd watches (polls start no later than this).
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    pub seconds: u64,
    /// Newest segments a viewer fetches from its first playlist.
    #[arg(long, default_value_t = DEFAULT_START_SEGMENTS)]
    pub start_segments: usize,
    /// Seconds a request (head and whole body) may take before it counts as failed.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECONDS)]
    pub timeout_seconds: u64,
    /// Process ids of the server under test (comma separated); their children
    /// count too (nginx's workers). Their CPU seconds and resident memory are reported.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why the crowd could not start at all (failures during the run are counted
/// in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum ViewersError {
    #[error("{0} has no address: {1}")]
    Address(Url, String),
    #[error("the first playlist from {0} failed: {1}")]
    FirstPlaylist(String, FetchError),
    #[error("the first playlist from {0} is not a media playlist: {1}")]
    NotAPlaylist(String, String),
    #[error("{0} is not a low-latency playlist that holds blocking reloads (no EXT-X-PART-INF or CAN-BLOCK-RELOAD)")]
    NotLowLatency(String),
}

/// One failed request, by kind.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(hyper::Error),
    #[error("status {0}")]
    Status(u16),
    #[error("no whole answer within the timeout")]
    Timeout,
    #[error("unparsable playlist: {0}")]
    Playlist(String),
}

impl FetchError {
    /// A short label to count failures by.
    pub fn kind(&self) -> String {
        match self {
            FetchError::Connect(_) => "connect".into(),
            FetchError::Http(_) => "http".into(),
            FetchError::Status(s) => format!("status {s}"),
            FetchError::Timeout => "timeout".into(),
            FetchError::Playlist(_) => "playlist".into(),
        }
    }
}

/// A segment as a playlist lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    pub sequence: u64,
    pub uri: String,
}

/// What one playlist told a viewer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Listing {
    /// Segments to fetch now, oldest first.
    pub new: Vec<Listed>,
    /// Whether these are the segments the viewer starts with (its first
    /// playlist), not ones that appeared while it watched.
    pub start: bool,
    /// Segments that appeared and left the window between two polls: the
    /// viewer never saw them listed, a player would skip them.
    pub skipped: u64,
    /// The playlist's newest segment is older than one this viewer already saw.
    pub(crate) regressed: bool,
}

/// One viewer's memory of the playlist: the newest segment it was given.
#[derive(Debug)]
struct ViewerBook {
    start_segments: usize,
    newest: Option<u64>,
}

impl ViewerBook {
    pub fn new(start_segments: usize) -> ViewerBook {
        ViewerBook {
            start_segments: start_segments.max(1),
            newest: None,
        }
    }

    /// Reads one playlist's segments (oldest first): the first playlist gives
    /// the newest `start_segments`, every later one what is newer than the
    /// newest seen so far.
    pub fn read(&mut self, segments: &[Listed]) -> Listing {
        let Some(last) = segments.last() else {
            return Listing::default();
        };
        let Some(newest) = self.newest else {
            self.newest = Some(last.sequence);
            let from = segments.len().saturating_sub(self.start_segments);
            return Listing {
                new: segments[from..].to_vec(),
                start: true,
                ..Listing::default()
            };
        };
        if last.sequence < newest {
            return Listing {
                regressed: true,
                ..Listing::default()
            };
        }
        self.newest = Some(last.sequence);
        let new: Vec<Listed> = segments
            .iter()
            .filter(|s| s.sequence > newest)
            .cloned()
            .collect();
        let skipped = new
            .first()
            .map_or(0, |first| first.sequence.saturating_sub(newest + 1));
        Listing {
            new,
            start: false,
            skipped,
            regressed: false,
        }
    }
}

/// The moment a viewer could first have known of a segment any viewer first
/// saw listed at `first_listed`: the first playlist request it sent at or
/// after that moment (`sends`, oldest first, ending with the request that
/// listed the segment to it), or `first_listed` itself when even that request
/// was sent before.
fn late_reference(first_listed: Instant, sends: &[Instant]) -> Instant {
    sends
        .iter()
        .copied()
        .find(|sent| *sent >= first_listed)
        .unwrap_or(first_listed)
}

/// Whether a segment that arrived at `arrived` is later than one `target`
/// duration after `reference`.
fn is_late(reference: Instant, arrived: Instant, target: Duration) -> bool {
    arrived.saturating_duration_since(reference) > target
}

/// Latency of one kind of request, in milliseconds (whole body).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `micros`.
    pub fn of(mut micros: Vec<u32>) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len()) - 1;
            micros[i] as f64 / 1000.0
        };
        Latency {
            count: micros.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
        }
    }
}

/// CPU and memory of the server under test during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerUsage {
    /// Processes counted (the given ids and their descendants), at the end.
    pub processes: usize,
    /// User plus system CPU seconds all of them used during the run.
    pub cpu_seconds: f64,
    /// Highest sum of their resident memory (VmRSS) seen, sampled every second.
    pub rss_peak_kib: u64,
    /// Sum of their resident memory at the end.
    pub rss_end_kib: u64,
}

/// What the crowd saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub url: String,
    pub viewers: usize,
    /// From the first viewer's start to the last viewer's end.
    pub seconds_run: f64,
    pub target_seconds: f64,
    pub playlist: Latency,
    pub segment: Latency,
    /// Playlist latency without each viewer's first request (which opens its
    /// connection while the whole crowd joins).
    pub playlist_after_join: Latency,
    /// Segment latency without the segments each viewer starts with.
    pub segment_after_join: Latency,
    /// Failed requests (connection, HTTP, status other than 200, timeout, unparsable playlist).
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Segment deliveries judged by the late rule: those that appeared while
    /// the viewer watched.
    pub judged_segments: u64,
    /// Judged deliveries that arrived more than one target duration after the
    /// viewer could first have known of the segment (see the module doc).
    pub late_segments: u64,
    /// Judged deliveries that arrived more than one target duration after any
    /// viewer first saw the segment listed, the viewer's own poll phase included.
    pub late_since_first_listed: u64,
    /// Segments a viewer was given but could not fetch.
    pub missed_segments: u64,
    /// Segments that came and went between two polls of a viewer.
    pub skipped_segments: u64,
    /// Playlists older than one the same viewer had already seen.
    pub regressions: u64,
    /// Segments fetched whole.
    pub segments_fetched: u64,
    pub bytes: u64,
    /// Distinct segments viewers asked for.
    pub segments_requested: u64,
    /// Distinct segments first listed after the run began (published during it).
    pub segments_new: u64,
    /// Viewers that got every segment they were given, skipped none and saw no failure.
    pub viewers_complete: usize,
    /// The fewest segments one viewer fetched.
    pub min_segments_per_viewer: u64,
    /// CPU seconds of this program (the load generator) during the run.
    pub generator_cpu_seconds: f64,
    pub server: Option<ServerUsage>,
}

impl Report {
    /// A few lines for a person.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} viewers on {} for {:.0} s (target duration {:.1} s)\n\
             playlist: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             segment:  {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             after the join: playlist p99 {:.1} ms, segment p99 {:.1} ms\n\
             errors {} {:?}; late {} of {} (since first listed anywhere: {}); missed {}; skipped {}; regressions {}\n\
             segments: {} new during the run, {} distinct requested; {} viewers of {} complete\n\
             generator CPU {:.1} s",
            self.viewers,
            self.url,
            self.seconds_run,
            self.target_seconds,
            self.playlist.count,
            self.playlist.p50_ms,
            self.playlist.p99_ms,
            self.playlist.max_ms,
            self.segment.count,
            self.segment.p50_ms,
            self.segment.p99_ms,
            self.segment.max_ms,
            self.playlist_after_join.p99_ms,
            self.segment_after_join.p99_ms,
            self.errors,
            self.error_kinds,
            self.late_segments,
            self.judged_segments,
            self.late_since_first_listed,
            self.missed_segments,
            self.skipped_segments,
            self.regressions,
            self.segments_new,
            self.segments_requested,
            self.viewers_complete,
            self.viewers,
            self.generator_cpu_seconds,
        );
        if let Some(server) = &self.server {
            out.push_str(&format!(
                "\nserver ({} processes): CPU {:.1} s, resident memory peak {:.1} MiB, end {:.1} MiB",
                server.processes,
                server.cpu_seconds,
                server.rss_peak_kib as f64 / 1024.0,
                server.rss_end_kib as f64 / 1024.0
            ));
        }
        out
    }
}

/// One viewer's counts, summed into the report at the end.
#[derive(Debug, Default)]
struct ViewerStats {
    playlist_us: Vec<u32>,
    segment_us: Vec<u32>,
    /// Segments of the first playlist fetched whole: the first this many of
    /// `segment_us`, as `playlist_us[0]` is the first playlist (the join, see
    /// [`Report::playlist_after_join`]).
    start_fetched: usize,
    errors: BTreeMap<String, u64>,
    judged: u64,
    late: u64,
    late_raw: u64,
    missed: u64,
    skipped: u64,
    regressions: u64,
    segments: u64,
    bytes: u64,
}

impl ViewerStats {
    fn failed(&mut self, e: &FetchError) {
        *self.errors.entry(e.kind()).or_default() += 1;
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Where a crowd's requests go: the server's address, the `Host` header
/// and how long a request may take.
pub(crate) struct Endpoint {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
}

impl Endpoint {
    /// The server of `url`, requests timed out after `timeout_seconds`.
    pub(crate) fn of(url: &Url, timeout_seconds: u64) -> Result<Endpoint, ViewersError> {
        let addr = url
            .socket_addrs(|| None)
            .map_err(|e| ViewersError::Address(url.clone(), e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| ViewersError::Address(url.clone(), "nothing resolved".into()))?;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or("localhost")),
            None => url.host_str().unwrap_or("localhost").to_string(),
        };
        Ok(Endpoint {
            addr,
            host,
            timeout: Duration::from_secs(timeout_seconds.max(1)),
        })
    }
}

/// What every viewer of one run shares.
struct Crowd {
    endpoint: Endpoint,
    playlist_path: String,
    /// `<base path>/<signal>/`, where segment URIs are relative to.
    segment_dir: String,
    start_segments: usize,
    deadline: Instant,
    /// When any viewer first saw each segment (by sequence) listed.
    first_listed: Mutex<HashMap<u64, Instant>>,
    /// Segments any viewer asked for.
    requested: Mutex<HashSet<u64>>,
}

/// One keep-alive HTTP/1.1 connection, opened again when the server closed it.
pub(crate) struct Connection {
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, FetchError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(FetchError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(FetchError::Http)?;
        // Ends when the sender is dropped or the server closes.
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Not connected yet: the first request opens the connection.
    pub(crate) fn new() -> Connection {
        Connection { sender: None }
    }

    /// GETs `path`; the whole body when `keep`, else only its length.
    pub(crate) async fn get(
        &mut self,
        endpoint: &Endpoint,
        path: &str,
        keep: bool,
    ) -> Result<(Vec<u8>, u64), FetchError> {
        match tokio::time::timeout(endpoint.timeout, self.exchange(endpoint, path, keep)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                if !matches!(e, FetchError::Status(_)) {
                    self.sender = None;
                }
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(FetchError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        endpoint: &Endpoint,
        path: &str,
        keep: bool,
    ) -> Result<(Vec<u8>, u64), FetchError> {
        if let Some(sender) = &mut self.sender {
            // A server may close an idle keep-alive connection: open another.
            if sender.ready().await.is_err() {
                self.sender = None;
            }
        }
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(Self::open(endpoint.addr).await?),
        };
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, &endpoint.host)
            .body(Empty::new())
            .expect("a GET with a path and a host is a valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(FetchError::Http)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut kept = Vec::new();
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(FetchError::Http)?;
            if let Some(data) = frame.data_ref() {
                length += data.len() as u64;
                if keep {
                    kept.extend_from_slice(data);
                }
            }
        }
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        Ok((kept, length))
    }
}

/// Raises this process's open-file limit to its hard limit (children started
/// afterwards inherit it) and returns the new soft limit: one socket per viewer.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The server's processes: the given ids and all their descendants.
#[derive(Debug, Clone)]
struct ProcessGroup {
    roots: Vec<u32>,
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Parent id and user plus system CPU ticks, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU seconds this process has used so far.
fn own_cpu_seconds() -> f64 {
    stat(std::process::id()).map_or(0.0, |(_, ticks)| ticks as f64 / clock_ticks())
}

impl ProcessGroup {
    pub fn new(roots: &[u32]) -> ProcessGroup {
        ProcessGroup {
            roots: roots.to_vec(),
        }
    }

    /// Every live member with its CPU ticks.
    fn cpu_ticks(&self) -> HashMap<u32, u64> {
        let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| stat(pid).map(|(ppid, ticks)| (pid, ppid, ticks)))
            .collect();
        let mut members: HashMap<u32, u64> = HashMap::new();
        let mut frontier: Vec<u32> = self.roots.clone();
        while let Some(pid) = frontier.pop() {
            if let Some((_, _, ticks)) = all.iter().find(|(p, _, _)| *p == pid) {
                if members.insert(pid, *ticks).is_none() {
                    frontier.extend(
                        all.iter()
                            .filter(|(_, pp, _)| *pp == pid)
                            .map(|(p, _, _)| *p),
                    );
                }
            }
        }
        members
    }

    /// Sum of the members' resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.cpu_ticks()
            .keys()
            .filter_map(|pid| rss_kib(*pid))
            .sum()
    }
}

/// The server under test (and this program, the load generator) watched
/// while a crowd runs: CPU at the start, the server's memory sampled every
/// [`MEMORY_SAMPLE_EVERY`] until the crowd's deadline for its peak.
pub struct ServerWatch {
    server: ProcessGroup,
    /// The server's CPU ticks at the start, by process.
    before: HashMap<u32, u64>,
    own_before: f64,
    /// Whether a server was given (else only the generator is measured).
    sampling: bool,
    peak: tokio::task::JoinHandle<u64>,
}

impl ServerWatch {
    /// Starts watching `pids` (and their children) until `deadline`.
    pub fn start(pids: &[u32], deadline: Instant) -> ServerWatch {
        let server = ProcessGroup::new(pids);
        let sampling = !pids.is_empty();
        let peak = {
            let server = server.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                while sampling && Instant::now() < deadline {
                    let group = server.clone();
                    let now = tokio::task::spawn_blocking(move || group.rss_kib())
                        .await
                        .unwrap_or(0);
                    peak = peak.max(now);
                    tokio::time::sleep(MEMORY_SAMPLE_EVERY).await;
                }
                peak
            })
        };
        ServerWatch {
            before: server.cpu_ticks(),
            server,
            own_before: own_cpu_seconds(),
            sampling,
            peak,
        }
    }

    /// The generator's CPU seconds since the start and the server's usage.
    pub async fn finish(self) -> (f64, Option<ServerUsage>) {
        let generator = own_cpu_seconds() - self.own_before;
        let at_end = self
            .sampling
            .then(|| (self.server.cpu_ticks(), self.server.rss_kib()));
        let peak = self.peak.await.unwrap_or(0);
        let usage = at_end.map(|(after, rss_end_kib)| ServerUsage {
            processes: after.len(),
            cpu_seconds: cpu_seconds_between(&self.before, &after),
            rss_peak_kib: peak.max(rss_end_kib),
            rss_end_kib,
        });
        (generator, usage)
    }
}

/// CPU seconds used by the group between two [`ProcessGroup::cpu_ticks`] readings.
fn cpu_seconds_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> f64 {
    let ticks: u64 = after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / clock_ticks()
}

fn parse_listed(body: &[u8]) -> Result<(Duration, Vec<Listed>), FetchError> {
    let facts = nonstop::hls::PlaylistFacts::parse(body)
        .map_err(|e| FetchError::Playlist(e.to_string()))?;
    let segments = facts
        .segments
        .into_iter()
        .map(|s| Listed {
            sequence: s.sequence,
            uri: s.uri,
        })
        .collect();
    Ok((facts.target_duration, segments))
}

/// Runs the crowd and reports what it saw.
pub async fn run(config: &ViewersConfig) -> Result<Report, ViewersError> {
    let endpoint = Endpoint::of(&config.url, config.timeout_seconds)?;
    let (segment_dir, playlist_path) = signal_paths(&config.url, &config.signal);
    let mut crowd = Crowd {
        endpoint,
        playlist_path,
        segment_dir,
        start_segments: config.start_segments,
        deadline: Instant::now(),
        first_listed: Mutex::new(HashMap::new()),
        requested: Mutex::new(HashSet::new()),
    };

    // One playlist first: the target duration spreads the starts, and its
    // newest segment tells which segments are published during the run.
    let url = format!(
        "{}{}",
        config.url,
        crowd.playlist_path.trim_start_matches('/')
    );
    let mut probe = Connection::new();
    let (body, _) = probe
        .get(&crowd.endpoint, &crowd.playlist_path, true)
        .await
        .map_err(|e| ViewersError::FirstPlaylist(url.clone(), e))?;
    drop(probe);
    let (target, listed) =
        parse_listed(&body).map_err(|e| ViewersError::NotAPlaylist(url, e.to_string()))?;
    let target = if target.is_zero() {
        Duration::from_secs(1)
    } else {
        target
    };
    let newest_at_start = listed.last().map(|s| s.sequence);

    let began = Instant::now();
    crowd.deadline = began + Duration::from_secs(config.seconds);
    let watch = ServerWatch::start(&config.server_pid, crowd.deadline);
    let crowd = Arc::new(crowd);

    let viewers = config.viewers.max(1);
    let mut tasks = Vec::with_capacity(viewers);
    for i in 0..viewers {
        let start_at = began + target.mul_f64(i as f64 / viewers as f64);
        tasks.push(tokio::spawn(viewer(crowd.clone(), start_at, target)));
    }

    let mut all = Vec::with_capacity(viewers);
    for task in tasks {
        match task.await {
            Ok(stats) => all.push(stats),
            Err(e) => panic!("a viewer task failed: {e}"),
        }
    }
    let seconds_run = began.elapsed().as_secs_f64();
    let (generator_cpu_seconds, server_usage) = watch.finish().await;

    let first_listed = crowd.first_listed.lock().expect("first-listed lock");
    let segments_new = first_listed
        .keys()
        .filter(|seq| newest_at_start.is_none_or(|n| **seq > n))
        .count() as u64;
    let segments_requested = crowd.requested.lock().expect("requested lock").len() as u64;
    let mut report = Report {
        url: config.url.to_string(),
        viewers,
        seconds_run,
        target_seconds: target.as_secs_f64(),
        segments_new,
        segments_requested,
        generator_cpu_seconds,
        server: server_usage,
        min_segments_per_viewer: all.iter().map(|s| s.segments).min().unwrap_or(0),
        ..Report::default()
    };
    let mut playlist_us = Vec::new();
    let mut segment_us = Vec::new();
    let mut playlist_after_join = Vec::new();
    let mut segment_after_join = Vec::new();
    for stats in all {
        playlist_after_join.extend_from_slice(stats.playlist_us.get(1..).unwrap_or_default());
        segment_after_join.extend_from_slice(
            stats
                .segment_us
                .get(stats.start_fetched..)
                .unwrap_or_default(),
        );
        report.errors += stats.error_count();
        for (kind, n) in &stats.errors {
            *report.error_kinds.entry(kind.clone()).or_default() += n;
        }
        report.judged_segments += stats.judged;
        report.late_segments += stats.late;
        report.late_since_first_listed += stats.late_raw;
        report.missed_segments += stats.missed;
        report.skipped_segments += stats.skipped;
        report.regressions += stats.regressions;
        report.segments_fetched += stats.segments;
        report.bytes += stats.bytes;
        if stats.error_count() == 0 && stats.missed == 0 && stats.skipped == 0 && stats.segments > 0
        {
            report.viewers_complete += 1;
        }
        playlist_us.extend(stats.playlist_us);
        segment_us.extend(stats.segment_us);
    }
    report.playlist = Latency::of(playlist_us);
    report.segment = Latency::of(segment_us);
    report.playlist_after_join = Latency::of(playlist_after_join);
    report.segment_after_join = Latency::of(segment_after_join);
    Ok(report)
}

/// The folder of a signal's files under `url` (`<base path>/<signal>/`, where
/// its playlist's relative URIs point) and its playlist's path.
pub(crate) fn signal_paths(url: &Url, signal: &str) -> (String, String) {
    let base = url.path().trim_end_matches('/');
    let dir = format!("{base}/{signal}/");
    let playlist = format!("{dir}playlist.m3u8");
    (dir, playlist)
}

pub(crate) fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// One viewer: polls from `start_at` every target duration until the
/// deadline, fetching each new segment once.
async fn viewer(crowd: Arc<Crowd>, start_at: Instant, mut target: Duration) -> ViewerStats {
    let mut stats = ViewerStats::default();
    let mut connection = Connection::new();
    let mut book = ViewerBook::new(crowd.start_segments);
    let mut sends: VecDeque<Instant> = VecDeque::with_capacity(SENDS_KEPT);
    let mut next_poll = start_at;
    while next_poll < crowd.deadline {
        tokio::time::sleep_until(next_poll).await;
        let sent = Instant::now();
        if sends.len() == SENDS_KEPT {
            sends.pop_front();
        }
        sends.push_back(sent);
        let answer = connection
            .get(&crowd.endpoint, &crowd.playlist_path, true)
            .await;
        let received = Instant::now();
        let listed = answer.and_then(|(body, _)| parse_listed(&body));
        match listed {
            Err(e) => stats.failed(&e),
            Ok((listed_target, listed)) => {
                stats.playlist_us.push(micros(received - sent));
                if !listed_target.is_zero() {
                    target = listed_target;
                }
                {
                    let mut first = crowd.first_listed.lock().expect("first-listed lock");
                    for segment in &listed {
                        let seen = first.entry(segment.sequence).or_insert(received);
                        *seen = (*seen).min(received);
                    }
                }
                let listing = book.read(&listed);
                stats.skipped += listing.skipped;
                stats.regressions += u64::from(listing.regressed);
                for segment in listing.new {
                    crowd
                        .requested
                        .lock()
                        .expect("requested lock")
                        .insert(segment.sequence);
                    let path = segment_path(&crowd.segment_dir, &segment.uri);
                    let asked = Instant::now();
                    match connection.get(&crowd.endpoint, &path, false).await {
                        Err(e) => {
                            stats.failed(&e);
                            stats.missed += 1;
                        }
                        Ok((_, length)) => {
                            let arrived = Instant::now();
                            stats.segment_us.push(micros(arrived - asked));
                            stats.segments += 1;
                            stats.bytes += length;
                            if listing.start {
                                stats.start_fetched += 1;
                            } else {
                                let first_listed = crowd
                                    .first_listed
                                    .lock()
                                    .expect("first-listed lock")
                                    .get(&segment.sequence)
                                    .copied()
                                    .unwrap_or(received);
                                let sends = sends.make_contiguous();
                                let reference = late_reference(first_listed, sends);
                                stats.judged += 1;
                                stats.late += u64::from(is_late(reference, arrived, target));
                                stats.late_raw += u64::from(is_late(first_listed, arrived, target));
                            }
                        }
                    }
                }
            }
        }
        // hls.js reloads a live playlist every target duration; one that is
        // already due (slow answers) is asked at once.
        next_poll = (next_poll + target).max(Instant::now());
    }
    stats
}

/// The request path of a segment URI listed in the playlist at `dir`.
pub(crate) fn segment_path(dir: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        uri.to_string()
    } else if let Some(rest) = uri.split_once("://").map(|(_, r)| r) {
        // An absolute URL: its path.
        rest.find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string())
    } else {
        format!("{dir}{uri}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(from: u64, to: u64) -> Vec<Listed> {
        (from..=to)
            .map(|sequence| Listed {
                sequence,
                uri: format!("segment{sequence:06}.ts"),
            })
            .collect()
    }

    fn sequences(listing: &Listing) -> Vec<u64> {
        listing.new.iter().map(|s| s.sequence).collect()
    }

    #[test]
    fn a_viewer_starts_with_the_newest_segments_then_gets_each_new_one_once() {
        let mut book = ViewerBook::new(3);
        let first = book.read(&window(10, 14));
        assert_eq!(sequences(&first), vec![12, 13, 14]);
        assert!(first.start);
        let same = book.read(&window(10, 14));
        assert!(same.new.is_empty() && !same.start && same.skipped == 0);
        let next = book.read(&window(11, 16));
        assert_eq!(sequences(&next), vec![15, 16]);
        assert!(!next.start);
        assert_eq!(next.skipped, 0);
        assert_eq!(next.new[0].uri, "segment000015.ts");
    }

    #[test]
    fn a_short_first_playlist_gives_what_it_has() {
        let mut book = ViewerBook::new(3);
        assert_eq!(sequences(&book.read(&window(0, 1))), vec![0, 1]);
        assert_eq!(book.read(&[]), Listing::default());
    }

    #[test]
    fn segments_that_came_and_went_between_polls_are_skipped() {
        let mut book = ViewerBook::new(1);
        book.read(&window(10, 14));
        let later = book.read(&window(20, 24));
        assert_eq!(sequences(&later), (20..=24).collect::<Vec<_>>());
        assert_eq!(later.skipped, 5, "15 to 19 were never seen");
    }

    #[test]
    fn an_older_playlist_is_a_regression_and_gives_nothing() {
        let mut book = ViewerBook::new(2);
        book.read(&window(10, 14));
        let older = book.read(&window(9, 13));
        assert!(older.regressed);
        assert!(older.new.is_empty());
        // The viewer still expects 15 next.
        assert_eq!(sequences(&book.read(&window(11, 15))), vec![15]);
    }

    #[test]
    fn lateness_counts_from_the_first_poll_the_viewer_sent_after_the_first_listing() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let target = Duration::from_secs(2);
        // Another viewer saw the segment at 1000 ms; this one polls at 0 ms
        // (not listed yet), 1900 ms (listed). Its poll phase is not the
        // server's fault: the clock starts at 1900 ms.
        let sends = [at(0), at(1900)];
        let reference = late_reference(at(1000), &sends);
        assert_eq!(reference, at(1900));
        assert!(!is_late(reference, at(3800), target));
        assert!(is_late(reference, at(3901), target));
        // From the first listing alone it would be late.
        assert!(is_late(at(1000), at(3800), target));
    }

    #[test]
    fn a_stale_playlist_after_the_first_listing_counts_against_the_server() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // First listed at 500 ms; this viewer polled at 600 ms and got a stale
        // copy without it, saw it only at 2600 ms: the clock started at 600 ms.
        let sends = [at(600), at(2600)];
        let reference = late_reference(at(500), &sends);
        assert_eq!(reference, at(600));
        assert!(is_late(reference, at(2700), Duration::from_secs(2)));
    }

    #[test]
    fn the_first_viewer_to_see_a_segment_is_timed_from_that_moment() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Its own request was sent before anyone had seen the segment.
        let reference = late_reference(at(1010), &[at(1000)]);
        assert_eq!(reference, at(1010));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let micros: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let latency = Latency::of(micros);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(Latency::of(vec![]).count, 0);
    }

    #[test]
    fn segment_paths_follow_the_playlist_uri() {
        assert_eq!(
            segment_path("/live01/", "segment1.ts"),
            "/live01/segment1.ts"
        );
        assert_eq!(segment_path("/live01/", "/other/s.ts"), "/other/s.ts");
        assert_eq!(
            segment_path("/live01/", "http://h:1/live01/s.ts"),
            "/live01/s.ts"
        );
    }

    #[test]
    fn cpu_is_summed_over_the_members_alive_at_the_end() {
        let before = HashMap::from([(1, 100), (2, 50)]);
        let after = HashMap::from([(1, 150), (2, 50), (3, 25)]);
        let ticks = clock_ticks();
        assert!((cpu_seconds_between(&before, &after) - 75.0 / ticks).abs() < 1e-9);
    }

    #[test]
    fn this_process_is_its_own_group_with_memory() {
        let group = ProcessGroup::new(&[std::process::id()]);
        assert!(group.cpu_ticks().contains_key(&std::process::id()));
        assert!(group.rss_kib() > 0);
    }
}
