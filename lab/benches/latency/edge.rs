//! How far the live edge itself is behind the wall clock where players
//! read it: a watcher reads the proxy's media playlist (a ladder's first
//! rendition) every [`EVERY`] and notes the wall clock minus the
//! program date-time at which its newest part (or segment) ends. A player
//! can be no nearer live than this plus what it holds back, so the table
//! shows it beside the players' figures: the seconds the stream spends
//! before any player sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use nonstop::hls::multivariant::Multivariant;
use nonstop::hls::PlaylistFacts;
use nonstop_lab::http::get;

use super::players::Sample;

/// How often the watcher reads the playlist.
const EVERY: Duration = Duration::from_millis(200);

/// The watcher, until [`EdgeWatch::finish`].
pub(crate) struct EdgeWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl EdgeWatch {
    /// Starts watching the playlist at `url` (`.../playlist.m3u8`; a
    /// multivariant playlist's first rendition is watched instead).
    pub(crate) fn start(url: &str) -> EdgeWatch {
        let url = media_playlist(url);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                if let Some(sample) = edge_lag(&url) {
                    samples.push(sample);
                }
                std::thread::sleep(EVERY);
            }
            samples
        });
        EdgeWatch { stop, thread }
    }

    /// Stops and returns every sample: when read, how far behind.
    pub(crate) fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// The media playlist behind `url`: itself, or a multivariant playlist's
/// first rendition.
fn media_playlist(url: &str) -> String {
    let first = get(url)
        .and_then(|(_, body)| Multivariant::parse(&body))
        .and_then(|ladder| ladder.uris().next().map(str::to_string));
    match (first, url.rsplit_once('/')) {
        (Some(rendition), Some((base, _))) => format!("{base}/{rendition}"),
        _ => url.to_string(),
    }
}

/// One read: the wall clock when the answer came minus the date at which
/// the newest part (or, without parts, segment) listed ends.
fn edge_lag(url: &str) -> Option<Sample> {
    let (status, body) = get(url)?;
    let read = SystemTime::now();
    if status != 200 {
        return None;
    }
    let facts = PlaylistFacts::parse(&body).ok()?;
    let newest = facts.segments.last()?;
    let mut edge = facts.newest_program_date_time? + newest.duration;
    if let Some(ll) = &facts.low_latency {
        edge += ll
            .of_segment(facts.next_sequence())
            .map(|p| p.duration)
            .sum::<Duration>();
    }
    let lag = match read.duration_since(edge) {
        Ok(behind) => behind.as_secs_f64(),
        Err(ahead) => -ahead.duration().as_secs_f64(),
    };
    Some(Sample {
        wall: read,
        latency: lag,
        buffer: None,
    })
}
