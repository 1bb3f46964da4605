//! Reading live HLS: names, content types and the facts the proxy and the player
//! probe need from a media playlist, parsed with m3u8-rs.
//!
//! Free of I/O and GStreamer so it is unit-tested on its own; the worker's
//! writing side lives in [`crate::pipeline::playlist`].

use std::time::{Duration, SystemTime};

pub mod blocking;
pub mod multivariant;
pub mod parts;

pub use parts::{ListedPart, PartFacts};

/// `Content-Type` of a playlist (RFC 8216 section 4).
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// `Content-Type` of an MPEG-TS segment.
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";
/// The playlist every signal publishes, as in the seed's URLs.
pub(crate) const PLAYLIST_NAME: &str = "playlist.m3u8";
/// MPEG-TS packets are 188 bytes, each starting with this sync byte.
const TS_PACKET_LEN: usize = 188;
const TS_SYNC_BYTE: u8 = 0x47;

/// What a request under `/<signal>/` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Playlist,
    Segment,
}

impl MediaKind {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaKind::Playlist => PLAYLIST_CONTENT_TYPE,
            MediaKind::Segment => SEGMENT_CONTENT_TYPE,
        }
    }
}

/// A signal name as the reporter and every route accept it: `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_signal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Classifies a file name inside a signal folder, refusing anything that is not
/// a plain `name.m3u8` or `name.ts` (no separators, no dot-dot, no hidden files),
/// so no request can name a file outside the tree or of another type.
pub fn classify_media_file(name: &str) -> Option<MediaKind> {
    let (stem, ext) = name.rsplit_once('.')?;
    if !is_valid_signal_name(stem) {
        return None;
    }
    match ext {
        "m3u8" => Some(MediaKind::Playlist),
        "ts" => Some(MediaKind::Segment),
        _ => None,
    }
}

/// One segment as listed in a media playlist, with its media sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    pub sequence: u64,
    pub uri: String,
    pub duration: Duration,
    pub discontinuity: bool,
}

/// The facts of a live media playlist that failover and players reason about.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistFacts {
    pub media_sequence: u64,
    pub target_duration: Duration,
    pub segments: Vec<ListedSegment>,
    pub end_list: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` of the newest segment: its own tag, else
    /// the latest dated segment's plus the durations listed since (RFC 8216
    /// section 4.3.2.6); `None` when no segment is dated.
    pub newest_program_date_time: Option<SystemTime>,
    /// Its parts and blocking-reload support, when it is low latency.
    pub low_latency: Option<PartFacts>,
}

impl PlaylistFacts {
    /// Parses a media playlist; a master playlist or garbage is an error.
    pub fn parse(bytes: &[u8]) -> Result<PlaylistFacts, PlaylistError> {
        let playlist = m3u8_rs::parse_media_playlist_res(bytes)
            .map_err(|e| PlaylistError::Malformed(truncate(&format!("{e:?}"), 120)))?;
        if !bytes.starts_with(b"#EXTM3U") {
            return Err(PlaylistError::Malformed("missing #EXTM3U header".into()));
        }
        let segments = playlist
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| ListedSegment {
                sequence: playlist.media_sequence + i as u64,
                uri: s.uri.clone(),
                duration: Duration::from_secs_f32(s.duration.max(0.0)),
                discontinuity: s.discontinuity,
            })
            .collect();
        Ok(PlaylistFacts {
            media_sequence: playlist.media_sequence,
            target_duration: Duration::from_secs(playlist.target_duration),
            segments,
            end_list: playlist.end_list,
            newest_program_date_time: newest_date(&playlist.segments),
            low_latency: PartFacts::read(&String::from_utf8_lossy(bytes), playlist.media_sequence),
        })
    }

    /// Wall-clock time the newest segment ends at (its date plus its
    /// duration): where the live edge was when the playlist was written, so a
    /// reader can tell a stopped edge from a fresh one without a twin to
    /// compare with. `None` when the playlist is empty or undated.
    pub(crate) fn newest_segment_end(&self) -> Option<SystemTime> {
        let newest = self.segments.last()?;
        Some(self.newest_program_date_time? + newest.duration)
    }

    /// The number the next segment will have: the one being made, whose
    /// parts a low-latency playlist may already list.
    pub fn next_sequence(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Media sequence number of the newest listed segment; `None` when empty.
    pub fn newest_sequence(&self) -> Option<u64> {
        self.segments.last().map(|s| s.sequence)
    }
}

/// The date of the last of `segments`: walks back to the latest dated one and
/// adds the durations of the segments after it, since a writer may date only
/// some segments.
fn newest_date(segments: &[m3u8_rs::MediaSegment]) -> Option<SystemTime> {
    let dated = segments
        .iter()
        .rposition(|s| s.program_date_time.is_some())?;
    let date = SystemTime::from(segments[dated].program_date_time?);
    let since: f64 = segments[dated..segments.len() - 1]
        .iter()
        .map(|s| f64::from(s.duration.max(0.0)))
        .sum();
    Some(date + Duration::from_secs_f64(since))
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PlaylistError {
    #[error("malformed playlist: {0}")]
    Malformed(String),
}

/// `true` when `bytes` is a whole number of MPEG-TS packets, each starting with
/// the sync byte: a body cut short or padded with garbage fails this.
pub fn is_complete_transport_stream(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len().is_multiple_of(TS_PACKET_LEN)
        && bytes
            .iter()
            .step_by(TS_PACKET_LEN)
            .all(|&b| b == TS_SYNC_BYTE)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
#EXTINF:2.000,\nsegment000041.ts\n#EXTINF:1.960,\nsegment000042.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nsegment000043.ts\n";

    #[test]
    fn reads_sequence_numbers_and_durations() {
        let facts = PlaylistFacts::parse(LIVE.as_bytes()).expect("parses");
        assert_eq!(facts.media_sequence, 41);
        assert_eq!(facts.target_duration, Duration::from_secs(2));
        assert_eq!(facts.newest_sequence(), Some(43));
        assert_eq!(facts.segments[1].uri, "segment000042.ts");
        assert!(facts.segments[2].discontinuity);
        assert!(!facts.end_list);
    }

    #[test]
    fn reads_the_newest_segments_date_and_where_it_ends() {
        assert_eq!(
            PlaylistFacts::parse(LIVE.as_bytes())
                .expect("parses")
                .newest_segment_end(),
            None
        );
        let dated = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:00.000Z\n#EXTINF:2.000,\nsegment000007.ts\n\
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:02.000Z\n#EXTINF:1.500,\nsegment000008.ts\n";
        let facts = PlaylistFacts::parse(dated.as_bytes()).expect("parses");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            facts.newest_program_date_time,
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(
            facts.newest_segment_end(),
            Some(t0 + Duration::from_millis(3500))
        );
        // Only the first segment dated: the newest one's date follows from durations.
        let first_only = dated.replace("#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:02.000Z\n", "");
        let facts = PlaylistFacts::parse(first_only.as_bytes()).expect("parses");
        assert_eq!(
            facts.newest_program_date_time,
            Some(t0 + Duration::from_secs(2))
        );
    }

    #[test]
    fn rejects_what_is_not_a_media_playlist() {
        assert!(PlaylistFacts::parse(b"<html>502 Bad Gateway</html>").is_err());
        assert!(PlaylistFacts::parse(b"").is_err());
    }

    #[test]
    fn only_plain_playlist_and_segment_names_pass() {
        assert_eq!(
            classify_media_file("playlist.m3u8"),
            Some(MediaKind::Playlist)
        );
        assert_eq!(
            classify_media_file("segment000001.ts"),
            Some(MediaKind::Segment)
        );
        for bad in [
            "../etc/passwd",
            "..",
            ".ts",
            "a/b.ts",
            "a\\b.ts",
            "x.mp4",
            "x.ts\0",
            "%2e%2e.ts",
            "",
            ".hidden.m3u8",
        ] {
            assert_eq!(classify_media_file(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn signal_names_follow_the_contract() {
        assert!(is_valid_signal_name("live01"));
        assert!(is_valid_signal_name("a-b_C9"));
        assert!(!is_valid_signal_name(""));
        assert!(!is_valid_signal_name("live 01"));
        assert!(!is_valid_signal_name(&"x".repeat(65)));
    }

    #[test]
    fn transport_stream_check_catches_cut_bodies() {
        let mut ts = vec![0u8; 188 * 3];
        for i in 0..3 {
            ts[i * 188] = 0x47;
        }
        assert!(is_complete_transport_stream(&ts));
        assert!(!is_complete_transport_stream(&ts[..300]));
        ts[188] = 0;
        assert!(!is_complete_transport_stream(&ts));
        assert!(!is_complete_transport_stream(&[]));
    }
}
