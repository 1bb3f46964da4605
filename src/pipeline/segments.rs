//! Segment publishing: hlssink2 writes each fragment into a file we open, and
//! each closed fragment is listed in our live playlist, written atomically.
//!
//! ```text
//! hlssink2 --get-fragment-stream--> OpenFragments: memory for segmentNNNNNN.ts (our numbering)
//!          --get-playlist-stream--> memory (hlssink2's playlist, with ENDLIST, dropped)
//!          --delete-fragment-----> ignored (we delete after the retention)
//! bus: splitmuxsink-fragment-closed --> Segments::publish
//!        --> continuity::normalize --> segmentNNNNNN.ts.tmp --rename--> segmentNNNNNN.ts
//!        --> LivePlaylist --> playlist.m3u8.tmp --rename--> playlist.m3u8
//! ```
//!
//! Our own names mean names and the media sequence survive pipeline
//! restarts and follow the epoch grid ([`super::epoch`]): segment n is
//! `segment{n:06}.ts` in every worker. A fragment stays in memory until it
//! closes (one segment, a few hundred KiB), then its continuity counters are
//! made worker-independent ([`super::continuity`]) and it is written whole.
//! The renames mean a packager never serves a half-written segment or
//! playlist, and a segment that could not be written is never listed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gio::prelude::*;
use gstreamer as gst;

use super::continuity;
use super::metrics;
use super::playlist::LivePlaylist;
use super::settings::EncodeSettings;
use super::signal::RunError;

/// The output folder of `signal`: `<OUTPUT_STREAM_PATH>/<signal>`.
pub fn signal_dir(output_root: &Path, signal: &str) -> PathBuf {
    output_root.join(signal)
}

/// Segment names handed to hlssink2 but not yet closed, oldest first. Shared
/// between hlssink2's streaming thread (which opens) and the bus loop (which
/// closes).
#[derive(Default)]
pub struct OpenFragments {
    /// Each open fragment, oldest first.
    fragments: VecDeque<Fragment>,
    /// The number the next opened fragment gets.
    next_sequence: u64,
}

/// A fragment hlssink2 is writing or has written: its number, its file name
/// and its bytes so far.
pub struct Fragment {
    pub sequence: u64,
    pub name: String,
    bytes: FragmentBytes,
}

impl Fragment {
    /// The fragment's bytes (all of them once splitmuxsink closed it).
    pub fn take_bytes(&self) -> Vec<u8> {
        self.bytes
            .0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

/// Where hlssink2's fragment stream writes: memory shared with the bus loop.
#[derive(Clone, Default)]
struct FragmentBytes(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for FragmentBytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("fragment buffer poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A signal's published segments: its folder and live playlist, kept across
/// pipeline restarts.
pub struct Segments {
    signal: String,
    /// The signal's output folder: `<OUTPUT_STREAM_PATH>/<signal>`.
    dir: PathBuf,
    playlist: LivePlaylist,
    /// Segments written since the worker started (for progress lines).
    written: u64,
}

impl Segments {
    /// Prepares the output folder and picks up a playlist left by an earlier run.
    pub fn open(
        signal: &str,
        output_root: &Path,
        settings: &EncodeSettings,
    ) -> Result<Self, RunError> {
        let dir = signal_dir(output_root, signal);
        std::fs::create_dir_all(&dir).map_err(|e| RunError::Write(dir.clone(), e))?;
        let mut playlist = LivePlaylist::new(
            settings.segment_seconds as u64,
            settings.playlist_length,
            settings.retained_segments,
        );
        if let Ok(previous) = std::fs::read(dir.join(crate::hls::PLAYLIST_NAME)) {
            playlist = playlist.resume(&previous);
            if playlist.next_sequence() > 0 {
                log::info!(
                    "Resuming signal '{signal}' at media sequence {}",
                    playlist.next_sequence()
                );
            }
        }
        Ok(Segments {
            signal: signal.to_string(),
            dir,
            playlist,
            written: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the output folder again if it is gone (wiped under a running
    /// worker): each run of the pipeline calls it, so the signal comes back
    /// once its disk does, instead of failing on every restart.
    pub fn ensure_dir(&self) -> Result<(), RunError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| RunError::Write(self.dir.clone(), e))
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// The next segment follows a restart: timestamps start over there.
    pub fn mark_discontinuity(&mut self) {
        self.playlist.mark_discontinuity();
    }

    /// Ends the stream (its input was removed): the playlist is rewritten
    /// with `EXT-X-ENDLIST`, so players stop after its last segment instead
    /// of waiting for more. Nothing is written for a signal that never
    /// listed a segment.
    pub fn end(&mut self) -> Result<(), RunError> {
        if self.playlist.is_empty() {
            return Ok(());
        }
        self.playlist.end();
        write_atomically(
            &self.dir.join(crate::hls::PLAYLIST_NAME),
            &self.playlist.render(),
        )
    }

    /// The number the next segment gets, unless the grid is ahead.
    pub fn next_sequence(&self) -> u64 {
        self.playlist.next_sequence()
    }

    /// Fragments of a new run of the pipeline, numbered on from the playlist
    /// until [`Self::align`] places them on the epoch grid.
    pub fn begin_run(&self) -> Arc<Mutex<OpenFragments>> {
        Arc::new(Mutex::new(OpenFragments {
            fragments: VecDeque::new(),
            next_sequence: self.playlist.next_sequence(),
        }))
    }

    /// Numbers the run's fragments from `first` (the epoch grid's segment
    /// where the run starts) but never behind the playlist, so no number is
    /// reused; a jump ahead retires the listed segments and marks a
    /// discontinuity. Returns the number the first fragment gets.
    pub fn align(&mut self, open: &Mutex<OpenFragments>, first: u64) -> u64 {
        let first = first.max(self.playlist.next_sequence());
        for old in self.playlist.skip_to(first) {
            let _ = std::fs::remove_file(self.dir.join(old));
        }
        if let Ok(mut o) = open.lock() {
            o.next_sequence = first;
        }
        first
    }

    /// Connects hlssink2's stream signals: fragments go into files we name,
    /// its own playlist into memory, and it deletes nothing.
    pub fn attach(&self, hls: &gst::Element, open: Arc<Mutex<OpenFragments>>) {
        hls.connect("get-playlist-stream", false, |_| {
            // hlssink2's own playlist (which would end with ENDLIST) is dropped.
            Some(
                gio::MemoryOutputStream::new_resizable()
                    .upcast::<gio::OutputStream>()
                    .to_value(),
            )
        });
        hls.connect("delete-fragment", false, |_| None);
        hls.connect("get-fragment-stream", false, move |_| {
            let Ok(mut open) = open.lock() else {
                return None;
            };
            let bytes = FragmentBytes::default();
            let fragment = Fragment {
                sequence: open.next_sequence,
                name: LivePlaylist::segment_name(open.next_sequence),
                bytes: bytes.clone(),
            };
            open.next_sequence += 1;
            open.fragments.push_back(fragment);
            Some(
                gio::WriteOutputStream::new(bytes)
                    .upcast::<gio::OutputStream>()
                    .to_value(),
            )
        });
    }

    /// The oldest open fragment, which splitmuxsink just closed.
    pub fn closed(open: &Mutex<OpenFragments>) -> Option<Fragment> {
        open.lock().ok().and_then(|mut o| o.fragments.pop_front())
    }

    /// Drops the fragments a run left open: half written, never on disk.
    pub fn discard_unfinished(&self, open: &Mutex<OpenFragments>) {
        if let Ok(mut o) = open.lock() {
            o.fragments.clear();
        }
    }

    /// Writes a finished segment (first frame at `program_date_time`) with
    /// worker-independent continuity counters, lists it, rewrites the
    /// playlist atomically and deletes segments past the retention.
    pub fn publish(
        &mut self,
        name: String,
        bytes: &[u8],
        duration: Duration,
        program_date_time: SystemTime,
    ) -> Result<(), RunError> {
        self.write_segment(&name, bytes)?;
        // RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer stays within
        // the target. Cut on the epoch grid, a segment lasts L within a frame
        // (the input's frames need not fall on the grid after a loop seam).
        let target = self.playlist.target_duration();
        if duration.as_secs_f64().round() as u64 > target {
            log::warn!(
                "Signal '{}': segment {name} lasts {:.3} s, longer than the target {target} s",
                self.signal,
                duration.as_secs_f64(),
            );
        }
        let deletable = self
            .playlist
            .push(name.clone(), duration, program_date_time);
        write_atomically(
            &self.dir.join(crate::hls::PLAYLIST_NAME),
            &self.playlist.render(),
        )?;
        self.written += 1;
        metrics::WORKER_SEGMENTS
            .with_label_values(&[&self.signal])
            .inc();
        log::debug!(
            "Signal '{}': wrote {name} ({:.3} s)",
            self.signal,
            duration.as_secs_f64()
        );
        for old in deletable {
            if let Err(e) = std::fs::remove_file(self.dir.join(&old)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("Signal '{}': cannot delete {old}: {e}", self.signal);
                }
            }
        }
        Ok(())
    }

    /// Writes a segment's file whole: continuity counters rewritten (or the
    /// bytes as they are, with a warning, if they are not a transport
    /// stream), through [`write_atomically`].
    fn write_segment(&self, name: &str, bytes: &[u8]) -> Result<(), RunError> {
        let normalized = continuity::normalize(bytes);
        let bytes = match &normalized {
            Ok(n) => {
                if !n.unpadded_pids.is_empty() {
                    log::warn!(
                        "Signal '{}': {name}: continuity counters of PIDs {:?} could not end on 15 \
                         (a player switching workers after it counts one discontinuity)",
                        self.signal,
                        n.unpadded_pids
                    );
                }
                &n.bytes[..]
            }
            Err(e) => {
                log::warn!("Signal '{}': {name} left as written: {e}", self.signal);
                bytes
            }
        };
        write_atomically(&self.dir.join(name), bytes)
    }
}

/// Writes through a temporary file beside `path` (its name plus `.tmp`) and a
/// rename, so a packager never serves a half-written segment or playlist; a
/// failed write removes the temporary file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(RunError::Write(tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| RunError::Write(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_lists_the_segment_and_survives_a_reopen() {
        let root = tempfile::tempdir().expect("tempdir");
        let settings = EncodeSettings::default();
        let mut segments = Segments::open("live01", root.path(), &settings).expect("open");
        let open = segments.begin_run();
        let first = LivePlaylist::segment_name(0);
        segments
            .publish(
                first.clone(),
                &[],
                Duration::from_secs(2),
                SystemTime::UNIX_EPOCH,
            )
            .expect("publish");
        let text = std::fs::read_to_string(root.path().join("live01/playlist.m3u8"))
            .expect("playlist written");
        assert!(text.contains(&first), "{text}");
        assert!(!root.path().join("live01/playlist.m3u8.tmp").exists());
        assert_eq!(segments.written(), 1);
        drop(open);

        let mut again = Segments::open("live01", root.path(), &settings).expect("reopen");
        let open = again.begin_run();
        assert_eq!(again.align(&open, 0), 1, "numbering never goes back");
        assert_eq!(open.lock().expect("lock").next_sequence, 1);
        assert_eq!(
            again.align(&open, 40),
            40,
            "a restart rejoins the wall clock"
        );
        assert_eq!(open.lock().expect("lock").next_sequence, 40);
    }
}
