//! What the operator configured for every signal, as gst-plugins-rs keeps an
//! element's `Settings`: fixed for the life of the worker, read by the launch
//! line ([`super::description`]) and the runner ([`super::signal`]), never
//! written by a running pipeline (whose changing facts live in the runner's
//! state and in [`super::publisher`]).

use std::time::Duration;

use super::ladder::Ladder;
use super::playlist::HOLD_BACK_TARGETS;

/// Segment duration when none is configured (seconds): ffmpeg's `hls_time`.
/// At 1 s segments standard players start [`DEFAULT_HOLD_BACK`] behind live
/// (under 6.5 s with hls.js); 1 s is not the default because hls.js in
/// low-latency mode then often jumps a start gap before it plays, a
/// non-fatal error (docs/BENCHMARKS.md, 2026-12-04).
pub const DEFAULT_SEGMENT_SECONDS: u32 = 2;
/// `HOLD-BACK` when HOLD_BACK_SECONDS is unset, where the segments and the
/// playlist allow it (see [`EncodeSettings::hold_back`]; at 1 s segments):
/// 4.5 s kept hls.js 4 to 6 s of buffer, enough to ride a throttle down the
/// ladder without a stall, and 5.3 to 6.0 s behind live (p95).
pub const DEFAULT_HOLD_BACK: Duration = Duration::from_millis(4500);
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
/// Longest part (LL-HLS partial segment, `PART-TARGET`): 0.4 s is a whole
/// number of frames at 25 and 30 fps; a 1 s segment is parts of 0.4, 0.4
/// and 0.2 s, a 2 s one five parts.
pub const DEFAULT_PART: Duration = Duration::from_millis(400);
/// Shortest part allowed: Apple advises against parts under 0.2 s (players
/// then spend more on requests than on media).
pub const MIN_PART: Duration = Duration::from_millis(200);

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
    /// Longest part for low-latency HLS; zero lists no parts.
    pub part: Duration,
    /// The renditions encoded from each input.
    pub ladder: Ladder,
    /// `HOLD-BACK` as configured: how far behind the live edge players
    /// without low latency start; `None`, the default
    /// ([`EncodeSettings::hold_back`]).
    pub hold_back: Option<Duration>,
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
            part: DEFAULT_PART,
            ladder: Ladder::default(),
            hold_back: None,
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

    /// The part target, when parts are listed (low latency); never longer
    /// than a segment.
    pub fn part_target(&self) -> Option<Duration> {
        (!self.part.is_zero()).then(|| self.part.min(self.segment()))
    }

    /// The `HOLD-BACK` the playlists say: the configured one, else
    /// [`DEFAULT_HOLD_BACK`] when that is over three segments and within
    /// the playlist, else `None`: three target durations (the RFC's
    /// minimum; 6 s at 2 s segments).
    pub fn hold_back(&self) -> Option<Duration> {
        if self.hold_back.is_some() {
            return self.hold_back;
        }
        let (least, window) = self.hold_back_range();
        (DEFAULT_HOLD_BACK > least && DEFAULT_HOLD_BACK <= window).then_some(DEFAULT_HOLD_BACK)
    }

    /// The shortest `HOLD-BACK` the RFC allows (three target durations) and
    /// the longest the playlist allows (its whole window).
    fn hold_back_range(&self) -> (Duration, Duration) {
        let least = self.segment() * HOLD_BACK_TARGETS;
        let window = self.segment() * self.playlist_length as u32;
        (least, window)
    }

    /// Settings that contradict each other, said as the operator wrote them.
    pub fn check(&self) -> Result<(), String> {
        let Some(hold_back) = self.hold_back else {
            return Ok(());
        };
        let (least, window) = self.hold_back_range();
        if hold_back < least {
            Err(format!(
                "HOLD_BACK_SECONDS {} is under {HOLD_BACK_TARGETS} segments of {} s: \
                 RFC 8216bis asks for at least three target durations",
                hold_back.as_secs_f64(),
                self.segment_seconds
            ))
        } else if hold_back > window {
            Err(format!(
                "HOLD_BACK_SECONDS {} is longer than the playlist ({} segments of {} s): \
                 players could not start that far behind",
                hold_back.as_secs_f64(),
                self.playlist_length,
                self.segment_seconds
            ))
        } else {
            Ok(())
        }
    }

    /// Parts per segment on the grid: the segment divided by the part target,
    /// rounded up (1 without parts).
    pub fn parts_per_segment(&self) -> u32 {
        match self.part_target() {
            Some(part) => self.segment().as_nanos().div_ceil(part.as_nanos()) as u32,
            None => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_hold_back_must_be_three_segments_at_least_and_within_the_playlist() {
        assert_eq!(EncodeSettings::default().check(), Ok(()), "unset");
        let with = |segment_seconds, seconds: f64| EncodeSettings {
            segment_seconds,
            hold_back: Some(Duration::from_secs_f64(seconds)),
            ..EncodeSettings::default()
        };
        assert_eq!(with(1, 5.0).check(), Ok(()));
        assert_eq!(with(1, 3.0).check(), Ok(()), "the RFC's minimum");
        let under = with(2, 5.0).check().expect_err("under three segments");
        assert!(
            under.contains("HOLD_BACK_SECONDS 5 is under 3 segments of 2 s"),
            "{under}"
        );
        let over = with(1, 6.5).check().expect_err("longer than the playlist");
        assert!(
            over.contains("longer than the playlist (6 segments of 1 s)"),
            "{over}"
        );
    }

    #[test]
    fn an_unset_hold_back_is_the_default_where_segments_and_playlist_allow_it() {
        let with = |segment_seconds, playlist_length| EncodeSettings {
            segment_seconds,
            playlist_length,
            ..EncodeSettings::default()
        };
        assert_eq!(
            EncodeSettings::default().hold_back(),
            None,
            "three 2 s segments"
        );
        assert_eq!(with(1, 6).hold_back(), Some(DEFAULT_HOLD_BACK));
        assert_eq!(DEFAULT_HOLD_BACK, Duration::from_millis(4500));
        assert_eq!(with(2, 6).hold_back(), None, "three 2 s segments are more");
        assert_eq!(with(1, 4).hold_back(), None, "a 4 s playlist is shorter");
        let set = EncodeSettings {
            hold_back: Some(Duration::from_secs(5)),
            ..with(1, 6)
        };
        assert_eq!(set.hold_back(), Some(Duration::from_secs(5)), "configured");
    }

    #[test]
    fn parts_divide_the_segment_and_zero_turns_them_off() {
        let s = EncodeSettings::default();
        assert_eq!(s.part_target(), Some(Duration::from_millis(400)));
        assert_eq!(s.parts_per_segment(), 5);
        let one_second = EncodeSettings {
            segment_seconds: 1,
            ..EncodeSettings::default()
        };
        assert_eq!(one_second.parts_per_segment(), 3, "0.4, 0.4, 0.2 s");
        let odd = EncodeSettings {
            part: Duration::from_millis(300),
            ..s.clone()
        };
        assert_eq!(
            odd.parts_per_segment(),
            7,
            "six of 0.3 s and a shorter last one"
        );
        let off = EncodeSettings {
            part: Duration::ZERO,
            ..s.clone()
        };
        assert_eq!((off.part_target(), off.parts_per_segment()), (None, 1));
        let long = EncodeSettings {
            part: Duration::from_secs(9),
            ..s.clone()
        };
        assert_eq!(long.part_target(), Some(Duration::from_secs(2)));
    }
}
