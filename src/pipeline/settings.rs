//! What the operator configured for every signal, as gst-plugins-rs keeps an
//! element's `Settings`: fixed for the life of the worker, read by the launch
//! line ([`super::description`]) and the runner ([`super::signal`]), never
//! written by a running pipeline (whose changing facts live in the runner's
//! state and in [`super::segments`]).

use std::time::Duration;

/// Segment duration when none is configured (seconds).
pub const DEFAULT_SEGMENT_SECONDS: u32 = 2;
/// Segments listed in the playlist.
pub const DEFAULT_PLAYLIST_LENGTH: usize = 6;
/// Segments kept on disk after leaving the playlist.
pub const DEFAULT_RETAINED_SEGMENTS: usize = 10;
/// Video bitrate in kbit/s.
pub const DEFAULT_VIDEO_KBPS: u32 = 1500;
/// Threads each encoder and decoder runs: one, since a worker's parallelism
/// comes from its signals and one thread per codec spends the least CPU per
/// minute of output (`just bench-worker`).
pub const DEFAULT_CODEC_THREADS: u32 = 1;
/// How far below the segment duration keyframes are requested, so a segment
/// ending on the first frame at or after the request stays within the target.
pub const DEFAULT_SEGMENT_MARGIN: Duration = Duration::from_millis(40);

/// What the operator configured for every signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeSettings {
    /// Segment duration and `EXT-X-TARGETDURATION`, in seconds.
    pub segment_seconds: u32,
    /// Segments listed in the live playlist.
    pub playlist_length: usize,
    /// Segments kept on disk after they leave the playlist.
    pub retained_segments: usize,
    /// x264enc's bitrate, in kbit/s.
    pub video_kbps: u32,
    /// Threads of x264enc and of the video decoder (0: the codec's choice).
    pub codec_threads: u32,
    /// The epoch segments are numbered from, in seconds since the Unix
    /// epoch (0: the Unix epoch itself); workers sharing it are interchangeable.
    pub epoch_unix_seconds: u64,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            segment_seconds: DEFAULT_SEGMENT_SECONDS,
            playlist_length: DEFAULT_PLAYLIST_LENGTH,
            retained_segments: DEFAULT_RETAINED_SEGMENTS,
            video_kbps: DEFAULT_VIDEO_KBPS,
            codec_threads: DEFAULT_CODEC_THREADS,
            epoch_unix_seconds: 0,
        }
    }
}

impl EncodeSettings {
    /// The segment duration as a [`Duration`].
    pub fn segment(&self) -> Duration {
        Duration::from_secs(self.segment_seconds as u64)
    }

    /// The wall-clock grid segments are locked to.
    pub fn grid(&self) -> super::epoch::EpochGrid {
        super::epoch::EpochGrid::new(self.epoch_unix_seconds, self.segment())
    }

    /// splitmuxsink's `max-size-time`: a margin below the segment duration,
    /// because it cuts on the first keyframe at or after this time and the
    /// segment must not outlast the target duration.
    pub fn split_at(&self) -> Duration {
        self.segment()
            .saturating_sub(DEFAULT_SEGMENT_MARGIN)
            .max(DEFAULT_SEGMENT_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_cut_a_margin_before_the_target() {
        let s = EncodeSettings {
            segment_seconds: 1,
            ..EncodeSettings::default()
        };
        assert_eq!(s.split_at(), Duration::from_millis(960));
        assert!(s.split_at() < s.segment());
    }
}
