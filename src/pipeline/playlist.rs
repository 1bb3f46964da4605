//! The worker's rolling live playlist, free of GStreamer and I/O.
//!
//! hlssink2 writes the segments; this type decides their names and writes the
//! playlist (with m3u8-rs) so that, unlike hlssink2's own, it survives pipeline
//! restarts: the media sequence and segment numbers keep growing, a restart is
//! marked with `EXT-X-DISCONTINUITY` and the target duration never changes.
//! `EXT-X-ENDLIST` is written only when the signal's input was removed (the
//! event is over: players stop cleanly instead of waiting for a segment that
//! never comes), never on a worker's restart or shutdown; an input added back
//! continues the stream after a discontinuity. Segments leave the playlist after
//! `window` entries and their files are kept for `retained` more before the
//! caller is told to delete them, so a slow player can still fetch them.
//!
//! Every segment carries `EXT-X-PROGRAM-DATE-TIME` (Apple's authoring spec
//! 8.4, a MUST for live): the wall-clock time of its first frame, which the
//! caller gives from the epoch grid ([`super::epoch`]: epoch + n·L), so every
//! worker dates a segment alike. Numbers follow that grid too: a restarted
//! worker rejoins at the wall clock's segment ([`LivePlaylist::skip_to`]),
//! so the numbers it missed are never listed and never reused.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use m3u8_rs::{MediaPlaylist, MediaSegment};

/// One listed segment.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    uri: String,
    duration: Duration,
    /// Set on the first segment after a restart: timestamps start over there.
    discontinuity: bool,
    /// Wall-clock time of the segment's first frame.
    program_date_time: Option<SystemTime>,
}

/// The rolling window of a live signal's playlist.
#[derive(Debug, Clone)]
pub struct LivePlaylist {
    /// `EXT-X-TARGETDURATION`, fixed for the life of the stream.
    target_duration: u64,
    /// How many segments the playlist lists.
    window: usize,
    /// How many segments stay on disk after they leave the playlist.
    retained: usize,
    /// Media sequence number of the first listed segment.
    media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that left the window.
    discontinuity_sequence: u64,
    listed: VecDeque<Entry>,
    /// Files that left the playlist, oldest first, still kept on disk.
    retired: VecDeque<String>,
    /// The next segment added starts after a restart.
    discontinuity_pending: bool,
    /// The stream is over (`EXT-X-ENDLIST`) until a segment is added again.
    ended: bool,
}

impl LivePlaylist {
    pub fn new(target_duration: u64, window: usize, retained: usize) -> Self {
        LivePlaylist {
            target_duration: target_duration.max(1),
            window: window.max(1),
            retained,
            media_sequence: 0,
            discontinuity_sequence: 0,
            listed: VecDeque::new(),
            retired: VecDeque::new(),
            discontinuity_pending: false,
            ended: false,
        }
    }

    /// Continues a playlist an earlier run left on disk: numbering goes on from
    /// it and the next segment is marked as a discontinuity. One that ended
    /// (`EXT-X-ENDLIST`) goes on too: the stream is live again. A playlist that
    /// does not parse is ignored (the stream then starts at sequence 0).
    pub fn resume(mut self, previous: &[u8]) -> Self {
        let Ok(old) = m3u8_rs::parse_media_playlist_res(previous) else {
            return self;
        };
        self.media_sequence = old.media_sequence;
        self.discontinuity_sequence = old.discontinuity_sequence;
        self.listed = old
            .segments
            .iter()
            .map(|s| Entry {
                uri: s.uri.clone(),
                duration: Duration::from_secs_f32(s.duration.max(0.0)),
                discontinuity: s.discontinuity,
                program_date_time: s.program_date_time.map(SystemTime::from),
            })
            .collect();
        self.discontinuity_pending = true;
        // Keep the window rule if the old run listed more than we do.
        let mut dropped = Vec::new();
        self.trim(&mut dropped);
        self
    }

    /// Ends the stream: the playlist is rendered with `EXT-X-ENDLIST` until a
    /// segment is added again (which follows a discontinuity).
    pub fn end(&mut self) {
        self.ended = true;
        self.mark_discontinuity();
    }

    /// Marks the next segment as following a restart of the pipeline.
    pub fn mark_discontinuity(&mut self) {
        if !self.listed.is_empty() {
            self.discontinuity_pending = true;
        }
    }

    /// No segment is listed.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Sequence number the next added segment will get.
    pub fn next_sequence(&self) -> u64 {
        self.media_sequence + self.listed.len() as u64
    }

    /// The file name for the segment with sequence number `sequence`.
    pub fn segment_name(sequence: u64) -> String {
        format!("segment{sequence:06}.ts")
    }

    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Lists a segment whose first frame is dated `program_date_time`;
    /// returns the files now old enough to delete.
    pub fn push(
        &mut self,
        uri: String,
        duration: Duration,
        program_date_time: SystemTime,
    ) -> Vec<String> {
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        self.ended = false;
        self.listed.push_back(Entry {
            uri,
            duration,
            discontinuity,
            program_date_time: Some(program_date_time),
        });
        let mut deletable = Vec::new();
        self.trim(&mut deletable);
        deletable
    }

    /// Makes `sequence` the number of the next segment when it is ahead of
    /// [`Self::next_sequence`] (a worker rejoining the wall clock after a
    /// pause): a media playlist numbers its entries consecutively, so the
    /// listed ones leave the window (their files are retired as usual) and
    /// the next segment is a discontinuity. Returns the files now old enough
    /// to delete; a `sequence` not ahead changes nothing.
    pub fn skip_to(&mut self, sequence: u64) -> Vec<String> {
        let mut deletable = Vec::new();
        if sequence <= self.next_sequence() {
            return deletable;
        }
        let had_any = !self.listed.is_empty();
        while let Some(gone) = self.listed.pop_front() {
            if gone.discontinuity {
                self.discontinuity_sequence += 1;
            }
            self.retired.push_back(gone.uri);
        }
        self.media_sequence = sequence;
        if had_any {
            self.discontinuity_pending = true;
        }
        self.trim(&mut deletable);
        deletable
    }

    fn trim(&mut self, deletable: &mut Vec<String>) {
        while self.listed.len() > self.window {
            if let Some(gone) = self.listed.pop_front() {
                self.media_sequence += 1;
                if gone.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                self.retired.push_back(gone.uri);
            }
        }
        while self.retired.len() > self.retained {
            if let Some(old) = self.retired.pop_front() {
                deletable.push(old);
            }
        }
    }

    /// The playlist text (RFC 8216, version 3).
    pub fn render(&self) -> Vec<u8> {
        let playlist = MediaPlaylist {
            version: Some(3),
            target_duration: self.target_duration,
            media_sequence: self.media_sequence,
            discontinuity_sequence: self.discontinuity_sequence,
            independent_segments: true,
            end_list: self.ended,
            segments: self
                .listed
                .iter()
                .map(|e| MediaSegment {
                    uri: e.uri.clone(),
                    duration: e.duration.as_secs_f32(),
                    discontinuity: e.discontinuity,
                    program_date_time: e
                        .program_date_time
                        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).fixed_offset()),
                    ..MediaSegment::empty()
                })
                .collect(),
            ..MediaPlaylist::default()
        };
        let mut out = Vec::with_capacity(512);
        // Writing into a Vec cannot fail.
        let _ = playlist.write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::PlaylistFacts;

    fn push_n(p: &mut LivePlaylist, n: usize) -> Vec<String> {
        let mut deleted = Vec::new();
        for _ in 0..n {
            let seq = p.next_sequence();
            deleted.extend(p.push(
                LivePlaylist::segment_name(seq),
                Duration::from_secs(2),
                SystemTime::UNIX_EPOCH + Duration::from_secs(2 * seq),
            ));
        }
        deleted
    }

    #[test]
    fn window_rolls_and_sequence_grows() {
        let mut p = LivePlaylist::new(2, 5, 3);
        push_n(&mut p, 12);
        let facts = PlaylistFacts::parse(&p.render()).expect("valid playlist");
        assert_eq!(facts.media_sequence, 7);
        assert_eq!(facts.segments.len(), 5);
        assert_eq!(facts.segments[0].uri, "segment000007.ts");
        assert_eq!(facts.target_duration, Duration::from_secs(2));
        assert!(!facts.end_list);
    }

    #[test]
    fn files_are_deleted_only_after_the_retention() {
        let mut p = LivePlaylist::new(2, 5, 3);
        assert!(push_n(&mut p, 8).is_empty(), "3 retired, none deleted yet");
        assert_eq!(push_n(&mut p, 1), vec!["segment000000.ts".to_string()]);
    }

    #[test]
    fn resume_continues_numbering_with_a_discontinuity() {
        let mut first = LivePlaylist::new(2, 5, 3);
        push_n(&mut first, 9);
        let mut second = LivePlaylist::new(2, 5, 3).resume(&first.render());
        assert_eq!(second.next_sequence(), 9);
        push_n(&mut second, 1);
        let facts = PlaylistFacts::parse(&second.render()).expect("valid");
        assert_eq!(facts.media_sequence, 5);
        let last = facts.segments.last().expect("one segment");
        assert_eq!(last.uri, "segment000009.ts");
        assert!(last.discontinuity);
        assert_eq!(facts.segments.iter().filter(|s| s.discontinuity).count(), 1);
    }

    #[test]
    fn discontinuity_sequence_counts_discontinuities_that_left() {
        let mut p = LivePlaylist::new(2, 2, 0);
        push_n(&mut p, 2);
        p.mark_discontinuity();
        push_n(&mut p, 3);
        let text = String::from_utf8(p.render()).expect("utf8");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    }

    #[test]
    fn every_segment_is_dated_by_the_caller_and_dates_survive_a_resume() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut p = LivePlaylist::new(2, 6, 3);
        let two = Duration::from_secs(2);
        p.push(LivePlaylist::segment_name(0), two, t0);
        p.push(LivePlaylist::segment_name(1), two, t0 + two);
        let text = String::from_utf8(p.render()).expect("utf8");
        let dates: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
            .collect();
        assert_eq!(
            dates,
            ["2027-01-15T08:00:00.000Z", "2027-01-15T08:00:02.000Z"],
            "{text}"
        );
        // A restarted worker keeps the dates it listed.
        let resumed = LivePlaylist::new(2, 6, 3).resume(&p.render());
        let again = String::from_utf8(resumed.render()).expect("utf8");
        assert_eq!(again.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 2);
    }

    #[test]
    fn skipping_ahead_starts_a_new_window_with_a_discontinuity() {
        let mut p = LivePlaylist::new(2, 5, 3);
        push_n(&mut p, 4);
        p.mark_discontinuity();
        push_n(&mut p, 1);
        assert!(p.skip_to(3).is_empty(), "not ahead: nothing changes");
        assert_eq!(p.next_sequence(), 5);
        let deleted = p.skip_to(20);
        assert_eq!(
            deleted,
            vec![
                "segment000000.ts".to_string(),
                "segment000001.ts".to_string()
            ]
        );
        assert_eq!(p.next_sequence(), 20);
        push_n(&mut p, 1);
        let facts = PlaylistFacts::parse(&p.render()).expect("valid");
        assert_eq!(facts.media_sequence, 20);
        assert_eq!(facts.segments[0].uri, "segment000020.ts");
        assert!(facts.segments[0].discontinuity);
        let text = String::from_utf8(p.render()).expect("utf8");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{text}");
    }

    #[test]
    fn an_ended_stream_lists_endlist_and_goes_on_when_resumed() {
        let mut p = LivePlaylist::new(2, 5, 3);
        push_n(&mut p, 3);
        p.end();
        let ended = p.render();
        let facts = PlaylistFacts::parse(&ended).expect("valid");
        assert!(facts.end_list, "{}", String::from_utf8_lossy(&ended));
        assert_eq!(facts.segments.len(), 3, "the last segments stay listed");

        // The input comes back (or the worker restarts with it): live again,
        // numbering on, the first new segment after a discontinuity.
        let mut resumed = LivePlaylist::new(2, 5, 3).resume(&ended);
        assert!(
            !PlaylistFacts::parse(&resumed.render())
                .expect("valid")
                .end_list
        );
        push_n(&mut resumed, 1);
        let facts = PlaylistFacts::parse(&resumed.render()).expect("valid");
        assert!(!facts.end_list);
        let last = facts.segments.last().expect("segments");
        assert_eq!(last.uri, "segment000003.ts");
        assert!(last.discontinuity);

        // Within one run too: a segment after the end takes it back.
        push_n(&mut p, 1);
        let facts = PlaylistFacts::parse(&p.render()).expect("valid");
        assert!(!facts.end_list);
        assert!(facts.segments.last().expect("segments").discontinuity);
    }

    #[test]
    fn garbage_on_disk_starts_a_fresh_stream() {
        let p = LivePlaylist::new(2, 5, 3).resume(b"not a playlist");
        assert_eq!(p.next_sequence(), 0);
    }
}
