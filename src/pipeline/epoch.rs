//! Epoch locking: the wall clock decides what every worker writes, so two
//! workers that never talk produce interchangeable segments (as AWS
//! MediaLive's epoch locking and ffmpeg's `hls_start_number_source epoch`).
//!
//! ```text
//! wall clock t ──> s = t - EPOCH ──> segment n = floor(s / L)
//!                                    ├─ name            segment{n:06}.ts, media sequence n
//!                                    ├─ PROGRAM-DATE-TIME  EPOCH + n·L
//!                                    ├─ input position  (n·L) mod D
//!                                    └─ running time    n·L - MUX_PTS_BASE  ──mpegtsmux──> PTS = n·L·90 kHz mod 2^33
//! ```
//!
//! The pipeline runs on a realtime clock whose base time is
//! `EPOCH + MUX_PTS_BASE`, so a buffer's running time is exactly when (in time
//! since the epoch, less the muxer's constant) it is due: clocksync paces
//! the output to the wall clock and the muxer writes PTS that follow it.
//! Pure arithmetic, free of GStreamer, so it is tested here.

use std::time::{Duration, SystemTime};

/// mpegtsmux adds this constant to every running time it writes as PTS (one
/// hour, its `TS_MUX_CLOCK_BASE`); the pipeline's running time is shifted by
/// it so that written PTS are time since the epoch.
pub const MUX_PTS_BASE: Duration = Duration::from_secs(3600);
/// How long before its first segment boundary a (re)starting worker needs to
/// seek and decode: the first segment starts at the first boundary at least
/// this far away.
pub const DEFAULT_START_MARGIN: Duration = Duration::from_millis(700);
/// The PTS clock of MPEG-TS: 90 kHz, wrapping at 2^33.
pub const PTS_HZ: u64 = 90_000;
pub const PTS_WRAP: u64 = 1 << 33;

/// Why a worker cannot lock to its epoch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    #[error("EPOCH is less than {} s before now: running times would be negative", MUX_PTS_BASE.as_secs())]
    TooRecent,
}

/// The wall-clock grid every worker shares: the epoch and the segment length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochGrid {
    /// The epoch, as time since the Unix epoch.
    pub epoch: Duration,
    /// L, the segment duration.
    pub segment: Duration,
}

impl EpochGrid {
    pub fn new(epoch_unix_seconds: u64, segment: Duration) -> Self {
        EpochGrid {
            epoch: Duration::from_secs(epoch_unix_seconds),
            segment: segment.max(Duration::from_millis(1)),
        }
    }

    /// Time since the epoch at wall-clock `now` (zero before the epoch).
    pub fn since_epoch(&self, now: SystemTime) -> Duration {
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(self.epoch)
    }

    /// The segment being produced at `since` (time since the epoch).
    pub fn sequence_at(&self, since: Duration) -> u64 {
        (since.as_nanos() / self.segment.as_nanos()) as u64
    }

    /// Where segment `sequence` starts, as time since the epoch: n·L.
    pub fn boundary(&self, sequence: u64) -> Duration {
        Duration::from_nanos((self.segment.as_nanos() as u64).saturating_mul(sequence))
    }

    /// The first segment a worker starting at `now` produces: the first
    /// boundary at least [`DEFAULT_START_MARGIN`] ahead, and never before
    /// `not_before` (the next number of an earlier run), so a number is never
    /// reused for other content even if the clock went back.
    pub fn first_sequence(&self, now: SystemTime, not_before: u64) -> u64 {
        let ready = self.since_epoch(now) + DEFAULT_START_MARGIN;
        let mut n = self.sequence_at(ready);
        if self.boundary(n) < ready {
            n += 1;
        }
        n.max(not_before)
    }

    /// `EXT-X-PROGRAM-DATE-TIME` of segment `sequence`: epoch + n·L exactly.
    pub fn program_date_time(&self, sequence: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + self.epoch + self.boundary(sequence)
    }

    /// Where in an input of `input` duration the looped playback is at the
    /// start of segment `sequence`: (n·L) mod D.
    pub fn input_position(&self, sequence: u64, input: Option<Duration>) -> Duration {
        match input.filter(|d| !d.is_zero()) {
            Some(d) => {
                Duration::from_nanos((self.boundary(sequence).as_nanos() % d.as_nanos()) as u64)
            }
            None => Duration::ZERO,
        }
    }

    /// The pipeline's base time on the realtime clock (ns since the Unix
    /// epoch): running time 0 is [`MUX_PTS_BASE`] after the epoch.
    pub fn base_time(&self) -> Duration {
        self.epoch + MUX_PTS_BASE
    }

    /// The running time of segment `sequence`'s first frame: n·L less the
    /// muxer's constant.
    pub fn running_time(&self, sequence: u64) -> Result<Duration, EpochError> {
        self.boundary(sequence)
            .checked_sub(MUX_PTS_BASE)
            .ok_or(EpochError::TooRecent)
    }

    /// The segment a frame with running time `running` belongs to.
    pub fn sequence_of_running_time(&self, running: Duration) -> u64 {
        self.sequence_at(running + MUX_PTS_BASE)
    }

    /// The PTS (90 kHz, wrapped) segment `sequence` starts with.
    pub fn pts(&self, sequence: u64) -> u64 {
        ((self.boundary(sequence).as_nanos() * PTS_HZ as u128 / 1_000_000_000) % PTS_WRAP as u128)
            as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn two_workers_starting_apart_agree_on_every_segment() {
        let grid = EpochGrid::new(0, Duration::from_secs(2));
        let a = grid.first_sequence(at(1_800_000_000, 100), 0);
        let b = grid.first_sequence(at(1_800_000_003, 900), 0);
        assert_eq!(a, 900_000_001, "100 ms in: the next boundary 1.9 s away");
        assert_eq!(b, 900_000_003, "1.9 s in: too close, the one after");
        for n in [a, b] {
            assert_eq!(grid.program_date_time(n), at(n * 2, 0));
            assert_eq!(
                grid.sequence_of_running_time(grid.running_time(n).unwrap()),
                n
            );
        }
        // The segment b starts with is the very one a made at that instant.
        assert_eq!(
            grid.input_position(b, Some(Duration::from_secs(7))),
            Duration::from_secs((b * 2) % 7)
        );
    }

    #[test]
    fn a_restart_never_reuses_a_number() {
        let grid = EpochGrid::new(0, Duration::from_secs(1));
        // The clock went back 10 s since the earlier run numbered up to 5010.
        assert_eq!(grid.first_sequence(at(5_000, 0), 5_011), 5_011);
        assert_eq!(grid.first_sequence(at(6_000, 0), 5_011), 6_001);
    }

    #[test]
    fn pts_is_time_since_the_epoch_wrapped_and_an_epoch_moves_everything() {
        let grid = EpochGrid::new(0, Duration::from_secs(2));
        assert_eq!(grid.pts(1), 180_000);
        assert_eq!(
            grid.pts(PTS_WRAP / 180_000 + 1),
            (PTS_WRAP / 180_000 + 1) * 180_000 - PTS_WRAP
        );
        let shifted = EpochGrid::new(1_700_000_000, Duration::from_secs(2));
        let now = at(1_700_000_101, 0);
        assert_eq!(shifted.sequence_at(shifted.since_epoch(now)), 50);
        assert_eq!(shifted.program_date_time(50), at(1_700_000_100, 0));
        assert_eq!(shifted.running_time(1), Err(EpochError::TooRecent));
        assert_eq!(shifted.input_position(3, None), Duration::ZERO);
    }
}
