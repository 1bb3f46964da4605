//! Playlists on disk watched for blocking reloads: the packager holds a
//! request until the worker's playlist lists the part it asks for
//! ([`crate::hls::blocking`]). One poller per watched file reads it when its
//! time or size changes (every [`POLL`]) and hands the new snapshot to every
//! request waiting on it, so a thousand held requests for one playlist cost
//! one poller, not a thousand; a file nobody waits on for [`LINGER`] is
//! forgotten.
//!
//! ```text
//! worker --rename--> live01/playlist.m3u8 <--stat every 10 ms-- poller --watch--> held requests
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use crate::hls::PlaylistFacts;

/// How often a watched playlist's file is looked at.
pub const POLL: Duration = Duration::from_millis(10);
/// How long a playlist nobody waits on stays watched.
pub const LINGER: Duration = Duration::from_secs(5);

/// A playlist as read from disk.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub bytes: Bytes,
    pub facts: Arc<PlaylistFacts>,
    pub modified: Option<SystemTime>,
}

/// What a watched file is now: read and parsed, missing, or not a playlist.
pub type Current = Result<Arc<Snapshot>, ReadError>;

/// Why a playlist file has no snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    NotFound,
    Unreadable(String),
}

/// The playlists being watched, by path.
#[derive(Default)]
pub struct PlaylistWatch {
    watched: Arc<Mutex<HashMap<PathBuf, watch::Sender<Current>>>>,
}

impl PlaylistWatch {
    /// The playlist at `path` once `ready` holds for it, waiting at most
    /// `limit`: `Ok` with the snapshot that is ready, `Err` with the latest
    /// one otherwise (or why there is none).
    pub async fn wait_until(
        &self,
        path: &Path,
        limit: Duration,
        ready: impl Fn(&PlaylistFacts) -> bool,
    ) -> Result<Arc<Snapshot>, Current> {
        let mut rx = self.subscribe(path).await;
        let waited = tokio::time::timeout(
            limit,
            rx.wait_for(|current| matches!(current, Ok(s) if ready(&s.facts))),
        )
        .await
        .ok()
        .and_then(|found| found.ok().map(|current| current.clone()));
        match waited {
            Some(Ok(snapshot)) => Ok(snapshot),
            Some(Err(e)) => Err(Err(e)),
            None => Err(rx.borrow().clone()),
        }
    }

    /// The playlist at `path` now, read if it is not watched yet.
    pub async fn current(&self, path: &Path) -> Current {
        let rx = self.subscribe(path).await;
        let current = rx.borrow().clone();
        current
    }

    /// A receiver of `path`'s snapshots, starting its poller if none runs.
    async fn subscribe(&self, path: &Path) -> watch::Receiver<Current> {
        if let Some(tx) = lock(&self.watched).get(path) {
            return tx.subscribe();
        }
        let (stamp, first) = read(path).await;
        let mut watched = lock(&self.watched);
        if let Some(tx) = watched.get(path) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(first);
        watched.insert(path.to_path_buf(), tx);
        tokio::spawn(poll(self.watched.clone(), path.to_path_buf(), stamp));
        rx
    }

    /// Files watched now.
    pub fn len(&self) -> usize {
        lock(&self.watched).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What tells a rewritten file: its time and size.
type Stamp = Option<(SystemTime, u64)>;

/// Reads `path` whenever its stamp changes, until nobody has waited on it
/// for [`LINGER`].
async fn poll(
    watched: Arc<Mutex<HashMap<PathBuf, watch::Sender<Current>>>>,
    path: PathBuf,
    mut stamp: Stamp,
) {
    let mut idle_since = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        {
            let mut map = lock(&watched);
            let Some(tx) = map.get(&path) else {
                return;
            };
            if tx.receiver_count() > 0 {
                idle_since = Instant::now();
            } else if idle_since.elapsed() >= LINGER {
                map.remove(&path);
                return;
            }
        }
        let now = stamp_of(&path).await;
        if now == stamp && now.is_some() {
            continue;
        }
        let (read_stamp, current) = read(&path).await;
        stamp = read_stamp;
        if let Some(tx) = lock(&watched).get(&path) {
            let _ = tx.send_replace(current);
        }
    }
}

async fn stamp_of(path: &Path) -> Stamp {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The file's stamp (read before the bytes, so a rewrite in between is seen
/// next time) and its snapshot.
async fn read(path: &Path) -> (Stamp, Current) {
    let stamp = stamp_of(path).await;
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => Bytes::from(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (stamp, Err(ReadError::NotFound))
        }
        Err(e) => return (stamp, Err(ReadError::Unreadable(e.to_string()))),
    };
    let current = PlaylistFacts::parse(&bytes)
        .map(|facts| {
            Arc::new(Snapshot {
                bytes,
                facts: Arc::new(facts),
                modified: stamp.map(|(t, _)| t),
            })
        })
        .map_err(|e| ReadError::Unreadable(e.to_string()));
    (stamp, current)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playlist(segments: u64) -> String {
        let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
        for n in 0..segments {
            text.push_str(&format!("#EXTINF:2.000,\nsegment{n:06}.ts\n"));
        }
        text
    }

    #[tokio::test]
    async fn waiters_get_the_rewrite_that_satisfies_them_and_one_poller_serves_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("playlist.m3u8");
        std::fs::write(&path, playlist(1)).expect("write");
        let watch = Arc::new(PlaylistWatch::default());
        let now = watch.current(&path).await.expect("read");
        assert_eq!(now.facts.segments.len(), 1);
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let (watch, path) = (watch.clone(), path.clone());
                tokio::spawn(async move {
                    watch
                        .wait_until(&path, Duration::from_secs(5), |f| f.segments.len() >= 3)
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(watch.len(), 1, "one poller for every waiter");
        std::fs::write(&path, playlist(2)).expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, playlist(3)).expect("write");
        for waiter in waiters {
            let got = waiter.await.expect("task").expect("satisfied");
            assert_eq!(got.facts.segments.len(), 3);
        }
        // Not satisfied in time: the latest snapshot comes back as an error.
        let late = watch
            .wait_until(&path, Duration::from_millis(50), |f| f.segments.len() >= 9)
            .await;
        assert!(matches!(late, Err(Ok(s)) if s.facts.segments.len() == 3));
        let missing = watch.current(&dir.path().join("none.m3u8")).await;
        assert_eq!(missing.err(), Some(ReadError::NotFound));
    }
}
