//! Segment publishing: hlssink2 writes each fragment into a file we open, and
//! each closed fragment is listed in our live playlist, written atomically.
//!
//! ```text
//! hlssink2 --get-fragment-stream--> OpenFragments: open segmentNNNNNN.ts (our numbering)
//!          --get-playlist-stream--> memory (hlssink2's playlist, with ENDLIST, dropped)
//!          --delete-fragment-----> ignored (we delete after the retention)
//! bus: splitmuxsink-fragment-closed --> Segments::publish --> LivePlaylist
//!                                       --> playlist.m3u8.tmp --rename--> playlist.m3u8
//! ```
//!
//! Our own names mean names and the media sequence survive pipeline
//! restarts and follow the epoch grid ([`super::epoch`]): segment n is
//! `segment{n:06}.ts` in every worker. The rename means a packager never
//! serves a half-written playlist.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gio::prelude::*;
use gstreamer as gst;

use super::playlist::LivePlaylist;
use super::settings::EncodeSettings;
use super::signal::RunError;
use crate::service::metrics;

/// The output folder of `signal`: `<OUTPUT_STREAM_PATH>/<signal>`.
pub fn signal_dir(output_root: &Path, signal: &str) -> PathBuf {
    output_root.join(signal)
}

/// Segment names handed to hlssink2 but not yet closed, oldest first. Shared
/// between hlssink2's streaming thread (which opens) and the bus loop (which
/// closes).
#[derive(Default)]
pub struct OpenFragments {
    /// Sequence number and name of each open fragment.
    names: VecDeque<(u64, String)>,
    /// The number the next opened fragment gets.
    next_sequence: u64,
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

    /// The number the next segment gets, unless the grid is ahead.
    pub fn next_sequence(&self) -> u64 {
        self.playlist.next_sequence()
    }

    /// Fragments of a new run of the pipeline, numbered on from the playlist
    /// until [`Self::align`] places them on the epoch grid.
    pub fn begin_run(&self) -> Arc<Mutex<OpenFragments>> {
        Arc::new(Mutex::new(OpenFragments {
            names: VecDeque::new(),
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
        let dir = self.dir.clone();
        let signal = self.signal.clone();
        hls.connect("get-fragment-stream", false, move |values| {
            let Ok(mut open) = open.lock() else {
                return None;
            };
            let name = LivePlaylist::segment_name(open.next_sequence);
            let path = dir.join(&name);
            match gio::File::for_path(&path).replace(
                None,
                false,
                gio::FileCreateFlags::REPLACE_DESTINATION,
                gio::Cancellable::NONE,
            ) {
                Ok(stream) => {
                    let sequence = open.next_sequence;
                    open.next_sequence += 1;
                    open.names.push_back((sequence, name));
                    Some(stream.upcast::<gio::OutputStream>().to_value())
                }
                Err(e) => {
                    log::error!("Signal '{signal}': cannot create {}: {e}", path.display());
                    // The error on the bus makes the runner restart the
                    // pipeline. hlssink2 still needs a stream: a bare None
                    // aborts the process, and a NULL stream stalls the
                    // pipeline without an error, so the fragment goes to
                    // memory and is never listed (its name is not queued).
                    if let Some(hls) = values.first().and_then(|v| v.get::<gst::Element>().ok()) {
                        gst::element_error!(
                            hls,
                            gst::ResourceError::OpenWrite,
                            ("cannot create {}: {e}", path.display())
                        );
                    }
                    Some(
                        gio::MemoryOutputStream::new_resizable()
                            .upcast::<gio::OutputStream>()
                            .to_value(),
                    )
                }
            }
        });
    }

    /// The sequence and name of the oldest open fragment, which splitmuxsink
    /// just closed.
    pub fn closed(open: &Mutex<OpenFragments>) -> Option<(u64, String)> {
        open.lock().ok().and_then(|mut o| o.names.pop_front())
    }

    /// Deletes the fragments a run left open: never listed, half written.
    pub fn discard_unfinished(&self, open: &Mutex<OpenFragments>) {
        let leftovers: Vec<String> = match open.lock() {
            Ok(mut o) => o.names.drain(..).map(|(_, name)| name).collect(),
            Err(_) => Vec::new(),
        };
        for name in leftovers {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }

    /// Lists a finished segment (first frame at `program_date_time`),
    /// rewrites the playlist atomically and deletes segments past the
    /// retention.
    pub fn publish(
        &mut self,
        name: String,
        duration: Duration,
        program_date_time: SystemTime,
    ) -> Result<(), RunError> {
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
}

/// Writes through a temporary file and a rename, so a packager never serves a
/// half-written playlist.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("m3u8.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| RunError::Write(tmp.clone(), e))?;
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
