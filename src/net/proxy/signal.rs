//! What the proxy knows of one served signal: where it is routed, its media
//! playlists ([`StreamState`]: the signal's own `playlist.m3u8`, or each
//! rendition of its ladder), its ladder's multivariant playlist as the
//! packagers give it, when a viewer last asked, and who is watching.
//!
//! ```text
//! SignalState live01 ─ routes [A, B], viewers, ladder (multivariant from A or B)
//!   ├─ StreamState playlist.m3u8           (one rendition: the seed's output)
//!   └─ StreamState 720p.m3u8, 480p.m3u8 ... (a ladder: failover per rendition)
//! ```
//!
//! Every method takes its lock for a few assignments and never across an
//! `await`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::stream::{lock, StreamState};
use super::viewers::{ViewerId, Viewers, WINDOW_TARGETS};
use crate::api::{ProxySignal, RenditionStatus, ServingState};
use crate::hls::multivariant::Multivariant;
use crate::hls::PLAYLIST_NAME;

/// A ladder's multivariant playlist as a packager gave it.
#[derive(Debug, Clone)]
pub(super) struct Ladder {
    pub multivariant: Multivariant,
    /// When a packager last gave it.
    pub read_at: Instant,
    /// Its `Last-Modified`, else when read.
    pub last_modified: SystemTime,
}

/// One served signal.
pub(super) struct SignalState {
    /// The packagers the origin routes it to (allowed ones only).
    packagers: Mutex<Vec<String>>,
    /// Its media playlists by file name, in the ladder's order.
    streams: Mutex<Vec<Arc<StreamState>>>,
    /// Its ladder, once a packager gave a multivariant playlist.
    ladder: Mutex<Option<Ladder>>,
    /// When a viewer last asked for it (an idle signal is dropped).
    last_request: Mutex<Instant>,
    /// When the origin last confirmed the routes.
    routes_confirmed: Mutex<Instant>,
    /// Distinct clients asking for this signal recently.
    viewers: Mutex<Viewers>,
}

impl SignalState {
    pub(super) fn new(packagers: &[String], now: Instant) -> Self {
        SignalState {
            packagers: Mutex::new(packagers.to_vec()),
            streams: Mutex::new(Vec::new()),
            ladder: Mutex::new(None),
            last_request: Mutex::new(now),
            routes_confirmed: Mutex::new(now),
            viewers: Mutex::new(Viewers::default()),
        }
    }

    pub(super) fn packagers(&self) -> Vec<String> {
        lock(&self.packagers).clone()
    }

    /// The media playlist `name`, known from now on.
    pub(super) fn stream(&self, name: &str) -> Arc<StreamState> {
        let mut streams = lock(&self.streams);
        if let Some(stream) = streams.iter().find(|s| s.name() == name) {
            return stream.clone();
        }
        let stream = Arc::new(StreamState::new(name, &self.packagers()));
        streams.push(stream.clone());
        stream
    }

    /// Every media playlist known, in order.
    pub(super) fn streams(&self) -> Vec<Arc<StreamState>> {
        lock(&self.streams).clone()
    }

    /// The stream the signal-wide facts come from: its only one, or the
    /// ladder's first (top) rendition.
    pub(super) fn main_stream(&self) -> Option<Arc<StreamState>> {
        lock(&self.streams).first().cloned()
    }

    /// A packager gave a multivariant playlist: the signal is a ladder whose
    /// renditions are streams (in its order), the plain stream of a single
    /// rendition gone.
    pub(super) fn set_ladder(&self, multivariant: Multivariant, last_modified: Option<SystemTime>) {
        {
            let mut streams = lock(&self.streams);
            streams.retain(|s| s.name() != PLAYLIST_NAME);
            let packagers = self.packagers();
            let mut ordered = Vec::new();
            for uri in multivariant.uris() {
                let stream = match streams.iter().find(|s| s.name() == uri) {
                    Some(s) => s.clone(),
                    None => Arc::new(StreamState::new(uri, &packagers)),
                };
                ordered.push(stream);
            }
            *streams = ordered;
        }
        *lock(&self.ladder) = Some(Ladder {
            multivariant,
            read_at: Instant::now(),
            last_modified: last_modified.unwrap_or_else(SystemTime::now),
        });
    }

    /// Its ladder, if it has one.
    pub(super) fn ladder(&self) -> Option<Ladder> {
        lock(&self.ladder).clone()
    }

    /// Replaces the routes in every stream; true when they changed.
    pub(super) fn confirm_routes(&self, packagers: &[String], now: Instant) -> bool {
        *lock(&self.routes_confirmed) = now;
        {
            let mut known = lock(&self.packagers);
            if *known == packagers {
                return false;
            }
            *known = packagers.to_vec();
        }
        for stream in self.streams() {
            stream.set_packagers(packagers);
        }
        true
    }

    pub(super) fn routes_confirmed_ago(&self) -> Duration {
        lock(&self.routes_confirmed).elapsed()
    }

    /// The target duration, from its main stream (2 s until one is read).
    pub(super) fn target_duration(&self) -> Duration {
        self.main_stream()
            .map(|s| s.target_duration())
            .unwrap_or(Duration::from_secs(2))
    }

    /// A viewer asked for it now.
    pub(super) fn touch(&self) {
        *lock(&self.last_request) = Instant::now();
    }

    pub(super) fn idle_for(&self) -> Duration {
        lock(&self.last_request).elapsed()
    }

    /// The signal's serving state: its one stream's, or, for a ladder,
    /// up only when every rendition is, ended when all are, down when
    /// none is served, degraded otherwise.
    pub(super) fn health(&self, now: Instant) -> ServingState {
        let states: Vec<ServingState> = self.streams().iter().map(|s| s.health(now)).collect();
        match states.as_slice() {
            [] => ServingState::Degraded,
            [one] => *one,
            many if many.iter().all(|s| *s == ServingState::Up) => ServingState::Up,
            many if many.iter().all(|s| *s == ServingState::Ended) => ServingState::Ended,
            many if many.iter().all(|s| *s == ServingState::Down) => ServingState::Down,
            _ => ServingState::Degraded,
        }
    }

    /// The signal's entry in `GET /status`: its serving state, viewers now,
    /// the main stream's packagers and switches, and with a ladder each
    /// rendition's.
    pub(super) fn report(&self, signal: &str, now: Instant) -> ProxySignal {
        let main = self.main_stream();
        let renditions = match self.ladder() {
            None => Vec::new(),
            Some(_) => self
                .streams()
                .iter()
                .map(|s| RenditionStatus {
                    packagers: s.status(now),
                    playlist: s.name().to_string(),
                    state: s.health(now),
                })
                .collect(),
        };
        ProxySignal {
            packagers: main.as_ref().map(|s| s.status(now)).unwrap_or_default(),
            renditions,
            signal: signal.to_string(),
            state: Some(self.health(now)),
            switches: main.as_ref().map(|s| s.switches()).unwrap_or_default(),
            viewers: Some(self.viewers(now) as u64),
        }
    }

    /// How long a viewer counts after its last request.
    fn viewer_window(&self) -> Duration {
        self.target_duration() * WINDOW_TARGETS
    }

    /// `viewer` asked for this signal now.
    pub(super) fn seen_viewer(&self, viewer: ViewerId, now: Instant) {
        let window = self.viewer_window();
        lock(&self.viewers).seen(viewer, now, window);
    }

    /// Viewers now (see [`Viewers`]).
    pub(super) fn viewers(&self, now: Instant) -> usize {
        let window = self.viewer_window();
        lock(&self.viewers).count(now, window)
    }

    /// Forgets viewers gone; the viewers now.
    pub(super) fn expire_viewers(&self, now: Instant) -> usize {
        let window = self.viewer_window();
        lock(&self.viewers).expire(now, window)
    }
}
