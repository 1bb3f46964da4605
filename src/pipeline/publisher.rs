//! Publishing a signal's stream on disk: the muxer's bytes are cut into
//! parts and segments ([`super::cutter`]), each written whole, then listed in
//! the live playlist, itself written whole.
//!
//! ```text
//! mpegtsmux --appsink--> Publisher::push --> Cutter --> Part (segment n, part k)
//!   --> continuity::normalize_part --> segmentNNNNNN_partK.ts (low latency)  --+
//!   --> the segment's bytes so far ... last part --> segmentNNNNNN.ts ---------+
//!   --> LivePlaylist --> playlist.m3u8.tmp --rename--> playlist.m3u8 <---------+
//! ```
//!
//! Our own names mean names and the media sequence survive pipeline
//! restarts and follow the epoch grid ([`super::epoch`]): segment n is
//! `segment{n:06}.ts` and its part k `segment{n:06}_part{k}.ts` in every
//! worker. Continuity counters are made worker-independent part by part
//! ([`super::continuity`]), so a segment is its parts in order and counts 0
//! to 15 per PID. Every file goes through a temporary file and a rename: a
//! packager never serves a half-written part, segment or playlist, and one
//! that could not be written is never listed.
//!
//! It runs on the muxer's streaming thread (the appsink's callback), so a
//! part is listed as soon as the frame after it is muxed. The runner
//! ([`super::signal`]) holds it between runs: [`Publisher::begin_run`] places
//! a run on the grid and [`Publisher::end_run`] drops what a run left unfinished.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::continuity::{self, SegmentCounters};
use super::cutter::{Cutter, Part};
use super::epoch::EpochGrid;
use super::error::RunError;
use super::files::write_atomically;
use super::health::{NewestSegment, SignalHealth, SignalStatus};
use super::ladder::Rung;
use super::metrics;
use super::multivariant::{name_prefix, playlist_name, LadderFacts};
use super::playlist::{LivePlaylist, PartSettings};
use super::settings::EncodeSettings;

/// The output folder of `signal`: `<OUTPUT_STREAM_PATH>/<signal>`.
pub fn signal_dir(output_root: &Path, signal: &str) -> PathBuf {
    output_root.join(signal)
}

/// The segment being assembled from its parts.
#[derive(Debug, Default)]
struct OpenSegment {
    /// Its parts' bytes so far, counters normalized.
    bytes: Vec<u8>,
    /// Its parts' durations so far.
    duration: Duration,
    counters: SegmentCounters,
}

/// One run's facts, for progress and drift.
#[derive(Debug)]
struct RunStats {
    started: Instant,
    /// Media time of the segments this run published.
    media_written: Duration,
    /// Media minus wall time at the first segment: start-up latency, not drift.
    first_offset: Option<f64>,
}

/// Which rendition of a ladder a publisher writes, and the ladder's shared
/// facts it reports to.
#[derive(Clone)]
pub struct Rendition {
    /// Its place in the ladder, highest first: the first reports the
    /// signal's health.
    pub index: usize,
    pub rung: Rung,
    pub ladder: Arc<Mutex<LadderFacts>>,
}

impl Rendition {
    fn ladder(&self) -> std::sync::MutexGuard<'_, LadderFacts> {
        self.ladder.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A signal's published stream (one rendition of it, in a ladder): its
/// folder, live playlist and the run being cut, kept across pipeline restarts.
pub struct Publisher {
    signal: String,
    /// The signal's output folder: `<OUTPUT_STREAM_PATH>/<signal>`.
    dir: PathBuf,
    /// The playlist's file name in `dir`.
    playlist_name: String,
    playlist: LivePlaylist,
    grid: EpochGrid,
    /// Parts are cut this long at most; the segment length when parts are off.
    part_target: Duration,
    /// The current run's cutter, from [`Self::begin_run`] to [`Self::end_run`].
    cutter: Option<Cutter>,
    open: OpenSegment,
    run: Option<RunStats>,
    /// Segments written since the worker started (for progress lines).
    written: u64,
    /// Where the signal's status and newest segment are reported (by a
    /// ladder's first rendition only).
    health: Option<SignalHealth>,
    /// The rendition of a ladder it writes; none for a single rendition.
    rendition: Option<Rendition>,
}

impl Publisher {
    /// Prepares the output folder and picks up a playlist left by an earlier
    /// run: the signal's `playlist.m3u8` for a single rendition, a ladder
    /// rendition's own media playlist (`720p.m3u8`, its files named `720p_...`).
    /// `seam`: how much longer than its neighbours the frame before each loop
    /// seam lasts (see [`super::looping::seam_gap`]).
    pub fn open(
        signal: &str,
        output_root: &Path,
        settings: &EncodeSettings,
        health: SignalHealth,
        rendition: Option<Rendition>,
        seam: Duration,
    ) -> Result<Self, RunError> {
        let dir = signal_dir(output_root, signal);
        std::fs::create_dir_all(&dir).map_err(|e| RunError::Write(dir.clone(), e))?;
        let (playlist_name, prefix) = match &rendition {
            Some(r) => (playlist_name(&r.rung), name_prefix(&r.rung)),
            None => (crate::hls::PLAYLIST_NAME.to_string(), String::new()),
        };
        let mut playlist = LivePlaylist::new(
            settings.segment_seconds as u64,
            settings.playlist_length,
            settings.retained_segments,
        )
        .with_prefix(&prefix);
        if let Some(hold_back) = settings.hold_back() {
            playlist = playlist.with_hold_back(hold_back);
        }
        if let Some(target) = settings.part_target() {
            // Parts are cut on the part grid, but the frame before a loop
            // seam lasts `seam` longer (the input's pass is not a whole
            // number of frames), and so may the part that ends with it.
            playlist = playlist.with_parts(PartSettings {
                target: target + seam,
                per_segment: settings.parts_per_segment(),
            });
        }
        if let Ok(previous) = std::fs::read(dir.join(&playlist_name)) {
            playlist = playlist.resume(&previous);
            if playlist.next_sequence() > 0 {
                log::info!(
                    "Resuming signal '{signal}' at media sequence {}",
                    playlist.first_unused()
                );
            }
        }
        Ok(Publisher {
            signal: signal.to_string(),
            dir,
            playlist_name,
            playlist,
            grid: settings.grid(),
            part_target: settings.part_target().unwrap_or(settings.segment()),
            cutter: None,
            open: OpenSegment::default(),
            run: None,
            written: 0,
            health: rendition
                .as_ref()
                .is_none_or(|r| r.index == 0)
                .then_some(health),
            rendition,
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

    /// The next segment follows a change of content (the input was
    /// replaced): players reset their decoders there.
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
        self.write_playlist()
    }

    /// The first number no part or segment was published under.
    pub fn first_unused(&self) -> u64 {
        self.playlist.first_unused()
    }

    /// Starts a run at the epoch grid's segment `first`, never behind what
    /// was published (so no name is reused for other media): a jump ahead
    /// retires the listed segments. Returns the segment the run starts with.
    pub fn begin_run(&mut self, first: u64) -> u64 {
        let first = first.max(self.playlist.first_unused());
        let retired = self.playlist.skip_to(first);
        self.delete(retired);
        self.cutter = Some(Cutter::new(self.grid, self.part_target, first));
        self.open = OpenSegment::default();
        self.run = Some(RunStats {
            started: Instant::now(),
            media_written: Duration::ZERO,
            first_offset: None,
        });
        first
    }

    /// Ends a run: the segment it was making is never listed, and the
    /// parts of it already listed leave the playlist.
    pub fn end_run(&mut self) {
        self.cutter = None;
        self.open = OpenSegment::default();
        self.run = None;
        let unfinished = self.playlist.discard_trailing();
        if let (Some(r), false) = (&self.rendition, self.playlist.is_empty()) {
            // Siblings report this rendition's last whole segment, not the
            // parts just dropped.
            let last = self.playlist.next_sequence() - 1;
            r.ladder().listed(r.index, last, None);
        }
        if !unfinished.is_empty() {
            if let Err(e) = self.write_playlist() {
                log::warn!("Signal '{}': {e}", self.signal);
            }
            self.delete(unfinished);
        }
    }

    /// Takes the muxer's next bytes and publishes every part (and segment)
    /// they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), RunError> {
        let parts = match self.cutter.as_mut() {
            Some(cutter) => cutter.push(bytes),
            None => return Ok(()),
        };
        for part in parts {
            self.publish(part)?;
        }
        Ok(())
    }

    /// One progress line's figures: segments written, media time written
    /// in this run and the drift since its first segment.
    pub fn progress(&self) -> (u64, Duration, f64) {
        let (media, drift) = self.run.as_ref().map_or((Duration::ZERO, 0.0), |r| {
            let ahead = r.media_written.as_secs_f64() - r.started.elapsed().as_secs_f64();
            (r.media_written, ahead - r.first_offset.unwrap_or(ahead))
        });
        (self.written, media, drift)
    }

    /// Writes a part (low latency) and lists it; the last part of a segment
    /// also writes and lists the segment.
    fn publish(&mut self, part: Part) -> Result<(), RunError> {
        let sequence = part.sequence;
        if sequence < self.playlist.next_sequence() {
            log::warn!(
                "Signal '{}': part {} of segment {sequence} is behind the playlist; dropped",
                self.signal,
                part.index
            );
            return Ok(());
        }
        if sequence > self.playlist.next_sequence() && self.open.bytes.is_empty() {
            // The run's first segment follows the grid: the playlist jumps
            // to it, never reusing a number.
            let retired = self.playlist.skip_to(sequence);
            self.delete(retired);
        }
        let bytes = self.normalize(&part);
        let date = self.grid.program_date_time(sequence);
        if self.playlist.lists_parts() {
            let name = self.playlist.part_uri(sequence, part.index);
            write_atomically(&self.dir.join(&name), &bytes)?;
            let stale = self.playlist.push_part(
                sequence,
                part.index,
                part.duration,
                part.independent,
                date,
            );
            self.delete(stale);
            if let Some(r) = &self.rendition {
                r.ladder().listed(r.index, sequence, Some(part.index));
            }
        }
        self.open.bytes.extend_from_slice(&bytes);
        self.open.duration += part.duration;
        if part.ends_segment {
            self.finish_segment(sequence, date)?;
        }
        // A playlist lists at least one segment: after a jump to the grid
        // (a restart), the old playlist stays until the run's first segment
        // is whole, and that segment's parts are announced with it.
        if self.playlist.is_empty() {
            return Ok(());
        }
        self.write_playlist()
    }

    /// A part's bytes with continuity counters going on from the segment's
    /// earlier parts (the last one padded to end on 15), or as cut, with a
    /// warning, if they are not a transport stream.
    fn normalize(&mut self, part: &Part) -> Vec<u8> {
        match continuity::normalize_part(&part.bytes, &mut self.open.counters, part.ends_segment) {
            Ok(n) => {
                if !n.unpadded_pids.is_empty() {
                    log::warn!(
                        "Signal '{}': segment {}: continuity counters of PIDs {:?} could not end on 15 \
                         (a player switching workers after it counts one discontinuity)",
                        self.signal,
                        part.sequence,
                        n.unpadded_pids
                    );
                }
                n.bytes
            }
            Err(e) => {
                log::warn!(
                    "Signal '{}': part {} of segment {} left as cut: {e}",
                    self.signal,
                    part.index,
                    part.sequence
                );
                part.bytes.clone()
            }
        }
    }

    /// Writes the segment its parts made, lists it and reports it.
    fn finish_segment(&mut self, sequence: u64, date: SystemTime) -> Result<(), RunError> {
        let open = std::mem::take(&mut self.open);
        let name = self.playlist.segment_uri(sequence);
        write_atomically(&self.dir.join(&name), &open.bytes)?;
        // RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer stays within
        // the target. Cut on the epoch grid, a segment lasts L within a frame.
        let target = self.playlist.target_duration();
        if open.duration.as_secs_f64().round() as u64 > target {
            log::warn!(
                "Signal '{}': segment {name} lasts {:.3} s, longer than the target {target} s",
                self.signal,
                open.duration.as_secs_f64(),
            );
        }
        let deletable = self.playlist.push(name.clone(), open.duration, date);
        if let Some(r) = &self.rendition {
            let mut ladder = r.ladder();
            if !self.playlist.lists_parts() {
                ladder.listed(r.index, sequence, None);
            }
            ladder.segment_published(r.index, &open.bytes, open.duration)?;
        }
        self.written += 1;
        metrics::WORKER_SEGMENTS
            .with_label_values(&[&self.signal])
            .inc();
        log::debug!(
            "Signal '{}': wrote {name} ({:.3} s)",
            self.signal,
            open.duration.as_secs_f64()
        );
        self.delete(deletable);
        if let Some(health) = &self.health {
            health.segment_written(
                &self.signal,
                NewestSegment {
                    name,
                    sequence,
                    program_date_time: date,
                    duration: open.duration,
                    written_at: SystemTime::now(),
                },
            );
        }
        if let Some(run) = self.run.as_mut() {
            run.media_written += open.duration;
            let ahead = run.media_written.as_secs_f64() - run.started.elapsed().as_secs_f64();
            if let (None, Some(health)) = (run.first_offset, &self.health) {
                // Segments flow: this run is healthy.
                health.set(&self.signal, SignalStatus::Running);
            }
            // Drift since the first segment: the pipeline's start-up latency
            // is an offset, not a drift.
            let offset = *run.first_offset.get_or_insert(ahead);
            metrics::WORKER_DRIFT
                .with_label_values(&[&self.signal])
                .set(ahead - offset);
        }
        Ok(())
    }

    fn write_playlist(&mut self) -> Result<(), RunError> {
        if let Some(r) = &self.rendition {
            if self.playlist.lists_parts() {
                self.playlist.set_reports(r.ladder().reports_for(r.index));
            }
        }
        write_atomically(&self.dir.join(&self.playlist_name), &self.playlist.render())
    }

    /// Deletes files that left the playlist and their retention.
    fn delete(&self, names: Vec<String>) {
        for old in names {
            if let Err(e) = std::fs::remove_file(self.dir.join(&old)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("Signal '{}': cannot delete {old}: {e}", self.signal);
                }
            }
        }
    }
}
