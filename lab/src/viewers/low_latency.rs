//! A crowd of low-latency players (`viewers --low-latency`, and
//! `just bench-viewers --low-latency` through it): each viewer reads the
//! plain playlist once, then, as hls.js does in low-latency mode, asks for
//! the playlist that lists the next part with a blocking reload
//! (`?_HLS_msn=N&_HLS_part=K`, held by the server until the part is out),
//! fetches that part, and asks for the one after, on its own keep-alive
//! connection.
//!
//! ```text
//!  viewer ─▶ GET playlist.m3u8 ──────────────── next part = the preload hint's place
//!     ┌──▶ GET playlist.m3u8?_HLS_msn=N&_HLS_part=K   (held until (N, K) is published)
//!     │    GET <the part's URI>
//!     └─── (N, K) = the part listed after it, or the new preload hint's place
//! ```
//!
//! **Release latency** is what the issue asks about: for a blocking reload
//! sent before its part was published, the time from the part's
//! publication to the whole answer at the viewer. Publication is the
//! moment the worker's playlist on disk first listed the part
//! ([`Published`], inotify on the signal's folder), or, without a folder to
//! watch, the first answer any viewer got listing it (which leaves out how
//! long the first viewer waited). A reload sent after its part was out (the
//! viewer was behind) is not held: it is counted apart, with its answer
//! time and how far behind the viewer asked.
//!
//! Playlists are read with one pass over their lines ([`PartList`]), not a
//! full parse: the crowd reads thousands of them a second on the machine it
//! measures.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::part_list::{PartId, PartList};
use super::published::Published;
use super::{
    micros, segment_path, signal_paths, Connection, Endpoint, FetchError, Latency, ServerUsage,
    ServerWatch, ViewersConfig, ViewersError,
};

/// One blocking reload as the viewer saw it: the part it asked for, when it
/// sent the request and when the whole answer was in, in microseconds since
/// the crowd began.
#[derive(Debug, Clone, Copy)]
struct Reload {
    part: PartId,
    sent_us: u64,
    received_us: u64,
}

/// One viewer's counts, summed into the report at the end.
#[derive(Debug, Default)]
struct ViewerStats {
    join_us: Vec<u32>,
    reloads: Vec<Reload>,
    part_us: Vec<u32>,
    parts: u64,
    bytes: u64,
    errors: BTreeMap<String, u64>,
    /// Answers that did not list the part asked for (it left the playlist).
    without_part: u64,
    /// Parts listed but not fetched.
    missed: u64,
}

impl ViewerStats {
    fn failed(&mut self, e: &FetchError) {
        *self.errors.entry(e.kind()).or_default() += 1;
    }
}

/// What every viewer of one low-latency crowd shares.
struct Crowd {
    endpoint: Endpoint,
    playlist_path: String,
    /// `<base path>/<signal>/`, where part URIs are relative to.
    dir: String,
    part_target: Duration,
    began: Instant,
    deadline: Instant,
}

impl Crowd {
    fn since_began(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.began).as_micros() as u64
    }
}

/// What a low-latency crowd saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LowLatencyReport {
    pub url: String,
    pub viewers: usize,
    pub seconds_run: f64,
    pub part_target_seconds: f64,
    /// Where publication times come from: the playlist on disk, or the
    /// first viewer's answer.
    pub published_by: String,
    /// Each viewer's first (plain) playlist request.
    pub join: Latency,
    /// Blocking reloads sent before their part was published: publication
    /// to the whole answer.
    pub release: Latency,
    /// Blocking reloads sent after their part was published (the viewer
    /// was behind): request to answer.
    pub at_once: Latency,
    /// For those, how long after the part's publication the viewer asked.
    pub behind: Latency,
    /// Blocking reloads whose part has no known publication time (listed
    /// before the watch began).
    pub unknown_publication: u64,
    /// Part fetches, request to whole body.
    pub part: Latency,
    /// Parts first listed on disk while the crowd watched.
    pub parts_published: u64,
    pub parts_fetched: u64,
    pub bytes: u64,
    /// Failed requests (connection, HTTP, status other than 200 such as a
    /// hold's 503, timeout, unreadable playlist).
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Answers to a blocking reload that did not list the part asked for.
    pub without_part: u64,
    /// Listed parts a viewer could not fetch.
    pub missed_parts: u64,
    /// Viewers with no failure and no part lost.
    pub viewers_complete: usize,
    pub generator_cpu_seconds: f64,
    pub server: Option<ServerUsage>,
}

impl LowLatencyReport {
    /// A few lines for a person.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} low-latency viewers on {} for {:.0} s (part target {:.2} s; published: {})\n\
             release after publication: {} held, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             not held (asked after publication): {}, answered p50 {:.1} ms, p99 {:.1} ms; asked p50 {:.1} ms, p99 {:.1} ms after publication\n\
             part: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; join p99 {:.1} ms\n\
             errors {} {:?}; answers without their part {}; parts missed {}; unknown publication {}\n\
             parts: {} published during the run, {} fetched; {} viewers of {} complete\n\
             generator CPU {:.1} s",
            self.viewers,
            self.url,
            self.seconds_run,
            self.part_target_seconds,
            self.published_by,
            self.release.count,
            self.release.p50_ms,
            self.release.p99_ms,
            self.release.max_ms,
            self.at_once.count,
            self.at_once.p50_ms,
            self.at_once.p99_ms,
            self.behind.p50_ms,
            self.behind.p99_ms,
            self.part.count,
            self.part.p50_ms,
            self.part.p99_ms,
            self.part.max_ms,
            self.join.p99_ms,
            self.errors,
            self.error_kinds,
            self.without_part,
            self.missed_parts,
            self.unknown_publication,
            self.parts_published,
            self.parts_fetched,
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

/// Runs a low-latency crowd; `published` gives the parts' publication
/// times (else the first answer listing each part stands for it).
pub async fn run(
    config: &ViewersConfig,
    published: Option<&Published>,
) -> Result<LowLatencyReport, ViewersError> {
    let endpoint = Endpoint::of(&config.url, config.timeout_seconds)?;
    let (dir, playlist_path) = signal_paths(&config.url, &config.signal);
    let url = format!("{}{}", config.url, playlist_path.trim_start_matches('/'));
    let mut probe = Connection::new();
    let (body, _) = probe
        .get(&endpoint, &playlist_path, true)
        .await
        .map_err(|e| ViewersError::FirstPlaylist(url.clone(), e))?;
    drop(probe);
    let facts = nonstop::hls::PlaylistFacts::parse(&body)
        .map_err(|e| ViewersError::NotAPlaylist(url.clone(), e.to_string()))?;
    let part_target = match &facts.low_latency {
        Some(ll) if ll.can_block_reload && !ll.part_target.is_zero() => ll.part_target,
        _ => return Err(ViewersError::NotLowLatency(url)),
    };
    let target = if facts.target_duration.is_zero() {
        Duration::from_secs(1)
    } else {
        facts.target_duration
    };

    let began = Instant::now();
    let deadline = began + Duration::from_secs(config.seconds);
    let watch = ServerWatch::start(&config.server_pid, deadline);
    let crowd = Arc::new(Crowd {
        endpoint,
        playlist_path,
        dir,
        part_target,
        began,
        deadline,
    });
    let viewers = config.viewers.max(1);
    let mut tasks = Vec::with_capacity(viewers);
    for i in 0..viewers {
        // Joins spread over one target duration, as the plain crowd's.
        let start_at = began + target.mul_f64(i as f64 / viewers as f64);
        tasks.push(tokio::spawn(viewer(crowd.clone(), start_at)));
    }
    let mut all = Vec::with_capacity(viewers);
    for task in tasks {
        match task.await {
            Ok(stats) => all.push(stats),
            Err(e) => panic!("a viewer task failed: {e}"),
        }
    }
    let ended = Instant::now();
    let seconds_run = (ended - began).as_secs_f64();
    let (generator_cpu_seconds, server) = watch.finish().await;

    // Publication times in microseconds since the crowd began (negative:
    // before it).
    let offset = |at: std::time::Instant| -> i64 {
        let began = began.into_std();
        if at >= began {
            (at - began).as_micros() as i64
        } else {
            -((began - at).as_micros() as i64)
        }
    };
    let (publication, published_by, parts_published): (HashMap<PartId, i64>, &str, u64) =
        match published {
            Some(published) => {
                let times = published.snapshot();
                let during = times
                    .values()
                    .filter(|t| **t >= began.into_std() && **t <= ended.into_std())
                    .count() as u64;
                let by_part = times.into_iter().map(|(p, t)| (p, offset(t))).collect();
                (by_part, "the playlist on disk (inotify)", during)
            }
            None => {
                let mut first: HashMap<PartId, i64> = HashMap::new();
                for r in all.iter().flat_map(|s| &s.reloads) {
                    let at = first.entry(r.part).or_insert(r.received_us as i64);
                    *at = (*at).min(r.received_us as i64);
                }
                let count = first.len() as u64;
                (first, "the first answer listing it", count)
            }
        };

    let mut report = LowLatencyReport {
        url: config.url.to_string(),
        viewers,
        seconds_run,
        part_target_seconds: part_target.as_secs_f64(),
        published_by: published_by.into(),
        parts_published,
        generator_cpu_seconds,
        server,
        ..LowLatencyReport::default()
    };
    let (mut release, mut at_once, mut behind) = (Vec::new(), Vec::new(), Vec::new());
    let (mut join, mut part) = (Vec::new(), Vec::new());
    for stats in all {
        for r in &stats.reloads {
            let Some(&published) = publication.get(&r.part) else {
                report.unknown_publication += 1;
                continue;
            };
            let micros_between = |from: i64, to: i64| (to - from).clamp(0, u32::MAX as i64) as u32;
            if (r.sent_us as i64) < published {
                release.push(micros_between(published, r.received_us as i64));
            } else {
                at_once.push(micros_between(r.sent_us as i64, r.received_us as i64));
                behind.push(micros_between(published, r.sent_us as i64));
            }
        }
        let errors: u64 = stats.errors.values().sum();
        report.errors += errors;
        for (kind, n) in &stats.errors {
            *report.error_kinds.entry(kind.clone()).or_default() += n;
        }
        report.without_part += stats.without_part;
        report.missed_parts += stats.missed;
        report.parts_fetched += stats.parts;
        report.bytes += stats.bytes;
        if errors == 0 && stats.without_part == 0 && stats.missed == 0 && stats.parts > 0 {
            report.viewers_complete += 1;
        }
        join.extend(stats.join_us);
        part.extend(stats.part_us);
    }
    report.release = Latency::of(release);
    report.at_once = Latency::of(at_once);
    report.behind = Latency::of(behind);
    report.join = Latency::of(join);
    report.part = Latency::of(part);
    Ok(report)
}

/// One low-latency viewer from `start_at` until the crowd's deadline (see
/// the module documentation). After a failure it joins again with a plain
/// playlist, as a player recovers.
async fn viewer(crowd: Arc<Crowd>, start_at: Instant) -> ViewerStats {
    let mut stats = ViewerStats::default();
    let mut connection = Connection::new();
    let mut next: Option<PartId> = None;
    tokio::time::sleep_until(start_at).await;
    while Instant::now() < crowd.deadline {
        let Some(want) = next else {
            let sent = Instant::now();
            match connection
                .get(&crowd.endpoint, &crowd.playlist_path, true)
                .await
            {
                Ok((body, _)) => {
                    stats.join_us.push(micros(sent.elapsed()));
                    match PartList::scan(&body) {
                        Ok(list) => next = list.start(),
                        Err(e) => stats.failed(&e),
                    }
                }
                Err(e) => stats.failed(&e),
            }
            if next.is_none() {
                tokio::time::sleep(crowd.part_target).await;
            }
            continue;
        };
        let path = format!(
            "{}?_HLS_msn={}&_HLS_part={}",
            crowd.playlist_path, want.0, want.1
        );
        let sent = Instant::now();
        let answer = connection.get(&crowd.endpoint, &path, true).await;
        let received = Instant::now();
        let body = match answer {
            Ok((body, _)) => body,
            Err(e) => {
                stats.failed(&e);
                next = None;
                continue;
            }
        };
        stats.reloads.push(Reload {
            part: want,
            sent_us: crowd.since_began(sent),
            received_us: crowd.since_began(received),
        });
        let list = match PartList::scan(&body) {
            Ok(list) => list,
            Err(e) => {
                stats.failed(&e);
                next = None;
                continue;
            }
        };
        match list.uri_of(want) {
            Some(uri) => {
                let part_path = segment_path(&crowd.dir, uri);
                let asked = Instant::now();
                match connection.get(&crowd.endpoint, &part_path, false).await {
                    Ok((_, length)) => {
                        stats.part_us.push(micros(asked.elapsed()));
                        stats.parts += 1;
                        stats.bytes += length;
                    }
                    Err(e) => {
                        stats.failed(&e);
                        stats.missed += 1;
                    }
                }
            }
            None => stats.without_part += 1,
        }
        next = list.after(want);
    }
    stats
}
