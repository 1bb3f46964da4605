//! The worker's rolling live playlist, free of GStreamer and I/O.
//!
//! The worker cuts segments (and, for low latency, their parts) itself; this
//! type decides their names and writes the playlist so that it survives
//! pipeline restarts: the media sequence and segment numbers keep growing and
//! the target duration never changes. A restart is no discontinuity: every
//! run's timestamps are time since the epoch ([`super::epoch_lock`]), so the
//! segment after it follows the one before as in an unbroken run, and the
//! playlist stays the twin worker's to the letter (`EXT-X-DISCONTINUITY` and
//! `EXT-X-DISCONTINUITY-SEQUENCE` included: a player that takes one worker's
//! copy after the other's must see the same numbering, or hls.js stops on a
//! "discontinuity sequence mismatch"). `EXT-X-DISCONTINUITY` marks a change of
//! content only: an input replaced, or added back after it ended.
//! `EXT-X-ENDLIST` is written only when the signal's input was removed (the
//! event is over: players stop cleanly instead of waiting for a segment that
//! never comes), never on a worker's restart or shutdown. Segments
//! leave the playlist after `window` entries and their files are kept for
//! `retained` more before the caller is told to delete them, so a slow
//! player can still fetch them.
//!
//! Every segment carries `EXT-X-PROGRAM-DATE-TIME` (Apple's authoring spec
//! 8.4, a MUST for live): the wall-clock time of its first frame, which the
//! caller gives from the epoch grid ([`super::epoch`]: epoch + n·L), so every
//! worker dates a segment alike. Numbers follow that grid too: a restarted
//! worker rejoins at the wall clock's segment ([`LivePlaylist::skip_to`]),
//! so the numbers it missed are never listed and never reused.
//!
//! Low latency (Apple's LL-HLS, RFC 8216bis), when parts are configured:
//! each segment's parts are listed before it (`EXT-X-PART`, `INDEPENDENT=YES`
//! on the one starting with a keyframe) for the last [`PARTS_LISTED_FOR`]
//! segments, the parts of the segment being made follow the last segment,
//! then `EXT-X-PRELOAD-HINT` names the next part; the header says
//! `EXT-X-PART-INF:PART-TARGET` and `EXT-X-SERVER-CONTROL` (blocking reload,
//! `PART-HOLD-BACK` of [`PART_HOLD_BACK_TARGETS`] part targets, `HOLD-BACK`
//! of three target durations). Players that know nothing of parts read the
//! same playlist as before: the tags they do not know are skipped.
//!
//! ```text
//! #EXT-X-PROGRAM-DATE-TIME:...   segment n-1, its parts listed before it
//! #EXT-X-PART:DURATION=0.40000,URI="segment000041_part0.ts",INDEPENDENT=YES
//! ...
//! #EXTINF:2.000,
//! segment000041.ts
//! #EXT-X-PROGRAM-DATE-TIME:...   segment n, being made: its parts so far
//! #EXT-X-PART:DURATION=0.40000,URI="segment000042_part0.ts",INDEPENDENT=YES
//! #EXT-X-PRELOAD-HINT:TYPE=PART,URI="segment000042_part1.ts"
//! ```
//!
//! m3u8-rs (which the worker uses to read a playlist back) has no LL-HLS
//! tags to write (m3u8-rs#89), so the text is written here.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::hls::PartFacts;

/// Segments whose parts stay listed, besides the one being made: two
/// complete segments keep every listed part within three target durations
/// of the playlist's end, as RFC 8216bis 6.2.2 asks.
pub const PARTS_LISTED_FOR: usize = 2;
/// `PART-HOLD-BACK` in part targets: RFC 8216bis asks for at least two,
/// Apple recommends three.
pub const PART_HOLD_BACK_TARGETS: u32 = 3;
/// `HOLD-BACK` in target durations when none is configured: the RFC's
/// minimum (RFC 8216bis 4.4.3.8).
pub const HOLD_BACK_TARGETS: u32 = 3;

/// `EXT-X-RENDITION-REPORT` for a sibling rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    pub uri: String,
    pub last_msn: u64,
    pub last_part: Option<u32>,
}

/// A listed part of a segment.
#[derive(Debug, Clone, PartialEq)]
struct PartEntry {
    uri: String,
    duration: Duration,
    /// It starts with a keyframe.
    independent: bool,
}

/// One listed segment.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    uri: String,
    duration: Duration,
    /// Set on the first segment after a restart: timestamps start over there.
    discontinuity: bool,
    /// Wall-clock time of the segment's first frame.
    program_date_time: Option<SystemTime>,
    /// Its parts (low latency), listed while it is among the last few.
    parts: Vec<PartEntry>,
}

/// The parts of the segment being made, listed after the last segment.
#[derive(Debug, Clone, PartialEq)]
struct Trailing {
    sequence: u64,
    program_date_time: SystemTime,
    parts: Vec<PartEntry>,
}

/// The low-latency settings of a playlist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartSettings {
    /// `PART-TARGET`: no part lasts longer.
    pub target: Duration,
    /// Parts per segment on the grid: the next part hinted after part k is
    /// k+1 below this, else part 0 of the next segment.
    pub per_segment: u32,
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
    /// Prepended to every segment and part name (a rendition's, or none).
    prefix: String,
    /// Low latency: parts listed, blocking reload announced.
    parts: Option<PartSettings>,
    /// `HOLD-BACK` when configured (else three target durations, written
    /// only with parts).
    hold_back: Option<Duration>,
    /// Media sequence number of the first listed segment.
    media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that left the window.
    discontinuity_sequence: u64,
    listed: VecDeque<Entry>,
    /// The segment being made, when some of its parts are out.
    trailing: Option<Trailing>,
    /// Files that left the playlist, oldest first, still kept on disk
    /// (a segment and its parts).
    retired: VecDeque<Vec<String>>,
    /// The next segment added starts after a restart.
    discontinuity_pending: bool,
    /// A number may have had parts published that no playlist lists now
    /// (an earlier run's unfinished segment): the next run starts after it.
    reserved: bool,
    /// The stream is over (`EXT-X-ENDLIST`) until a segment is added again.
    ended: bool,
    /// Where the sibling renditions are (a ladder's, low latency).
    reports: Vec<RenditionReport>,
}

/// The file name of segment `sequence`, after `prefix`.
pub fn segment_name(prefix: &str, sequence: u64) -> String {
    format!("{prefix}segment{sequence:06}.ts")
}

/// The file name of part `index` of segment `sequence`, after `prefix`.
pub fn part_name(prefix: &str, sequence: u64, index: u32) -> String {
    format!("{prefix}segment{sequence:06}_part{index}.ts")
}

impl LivePlaylist {
    pub fn new(target_duration: u64, window: usize, retained: usize) -> Self {
        LivePlaylist {
            target_duration: target_duration.max(1),
            window: window.max(1),
            retained,
            prefix: String::new(),
            parts: None,
            hold_back: None,
            media_sequence: 0,
            discontinuity_sequence: 0,
            listed: VecDeque::new(),
            trailing: None,
            retired: VecDeque::new(),
            discontinuity_pending: false,
            reserved: false,
            ended: false,
            reports: Vec::new(),
        }
    }

    /// The sibling renditions' newest parts, reported after the hint
    /// (`EXT-X-RENDITION-REPORT`) in the next render.
    pub fn set_reports(&mut self, reports: Vec<RenditionReport>) {
        self.reports = reports;
    }

    /// Lists parts (low latency) with these settings.
    pub fn with_parts(mut self, parts: PartSettings) -> Self {
        self.parts = Some(parts);
        self
    }

    /// Says `HOLD-BACK` is `hold_back` (at least three target durations,
    /// which [`super::settings::EncodeSettings::check`] makes sure of).
    pub fn with_hold_back(mut self, hold_back: Duration) -> Self {
        self.hold_back = Some(hold_back);
        self
    }

    /// Names every segment and part after `prefix` (a rendition's).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Continues a playlist an earlier run left on disk: numbering goes on from
    /// it, with no discontinuity (the timestamps follow the epoch grid). One
    /// that ended (`EXT-X-ENDLIST`) goes on too, after a discontinuity: the
    /// stream is live again, maybe on another file. A playlist that does not
    /// parse is ignored (the stream then starts at sequence 0).
    pub fn resume(mut self, previous: &[u8]) -> Self {
        let Ok(old) = m3u8_rs::parse_media_playlist_res(previous) else {
            return self;
        };
        self.media_sequence = old.media_sequence;
        self.discontinuity_sequence = old.discontinuity_sequence;
        let parts = PartFacts::read(&String::from_utf8_lossy(previous), old.media_sequence);
        let parts_of = |sequence: u64| -> Vec<PartEntry> {
            parts
                .iter()
                .flat_map(|f| f.of_segment(sequence))
                .map(|p| PartEntry {
                    uri: p.uri.clone(),
                    duration: p.duration,
                    independent: p.independent,
                })
                .collect()
        };
        self.listed = old
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| Entry {
                uri: s.uri.clone(),
                duration: Duration::from_secs_f32(s.duration.max(0.0)),
                discontinuity: s.discontinuity,
                program_date_time: s.program_date_time.map(SystemTime::from),
                parts: parts_of(old.media_sequence + i as u64),
            })
            .collect();
        self.discontinuity_pending = old.end_list;
        // Parts of the segment the old run was making may be out: skip it.
        self.reserved = parts.is_some_and(|f| {
            f.preload_hint.is_some()
                || f.newest()
                    .is_some_and(|(seq, _)| seq >= old.media_sequence + old.segments.len() as u64)
        });
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

    /// Marks the next segment as following a change of content (the input
    /// was replaced): players reset their decoders there.
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

    /// The first number no part or segment was published under: a new run
    /// starts there or later, so no name is reused for other media.
    pub fn first_unused(&self) -> u64 {
        let next = self.next_sequence();
        match &self.trailing {
            Some(t) => next.max(t.sequence + 1),
            None if self.reserved => next + 1,
            None => next,
        }
    }

    /// The file name for the segment with sequence number `sequence` (a
    /// single rendition's: no prefix).
    pub fn segment_name(sequence: u64) -> String {
        segment_name("", sequence)
    }

    /// This playlist's name for segment `sequence`.
    pub fn segment_uri(&self, sequence: u64) -> String {
        segment_name(&self.prefix, sequence)
    }

    /// This playlist's name for part `index` of segment `sequence`.
    pub fn part_uri(&self, sequence: u64, index: u32) -> String {
        part_name(&self.prefix, sequence, index)
    }

    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Whether parts are listed.
    pub fn lists_parts(&self) -> bool {
        self.parts.is_some()
    }

    /// Lists part `index` of segment `sequence` (being made, its first frame
    /// dated `program_date_time`). Parts of another segment left unfinished
    /// (a run that ended mid-segment) are dropped from the playlist: their
    /// names are returned for deletion.
    pub fn push_part(
        &mut self,
        sequence: u64,
        index: u32,
        duration: Duration,
        independent: bool,
        program_date_time: SystemTime,
    ) -> Vec<String> {
        let stale = match &self.trailing {
            Some(t) if t.sequence != sequence => self.discard_trailing(),
            _ => Vec::new(),
        };
        let uri = self.part_uri(sequence, index);
        let trailing = self.trailing.get_or_insert(Trailing {
            sequence,
            program_date_time,
            parts: Vec::new(),
        });
        trailing.parts.push(PartEntry {
            uri,
            duration,
            independent,
        });
        self.ended = false;
        stale
    }

    /// Drops the parts of a segment that will never be finished (its run
    /// ended); returns their names for deletion.
    pub fn discard_trailing(&mut self) -> Vec<String> {
        match self.trailing.take() {
            Some(t) => {
                self.reserved = true;
                t.parts.into_iter().map(|p| p.uri).collect()
            }
            None => Vec::new(),
        }
    }

    /// Lists a segment whose first frame is dated `program_date_time`, with
    /// the parts already listed for it; returns the files now old enough to
    /// delete.
    pub fn push(
        &mut self,
        uri: String,
        duration: Duration,
        program_date_time: SystemTime,
    ) -> Vec<String> {
        let sequence = self.next_sequence();
        let parts = match self.trailing.take() {
            Some(t) if t.sequence == sequence => t.parts,
            Some(t) => {
                self.trailing = Some(t);
                Vec::new()
            }
            None => Vec::new(),
        };
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        self.ended = false;
        self.reserved = false;
        self.listed.push_back(Entry {
            uri,
            duration,
            discontinuity,
            program_date_time: Some(program_date_time),
            parts,
        });
        let mut deletable = Vec::new();
        self.trim(&mut deletable);
        deletable
    }

    /// Makes `sequence` the number of the next segment when it is ahead of
    /// [`Self::next_sequence`] (a worker rejoining the wall clock after a
    /// pause): a media playlist numbers its entries consecutively, so the
    /// listed ones leave the window (their files are retired as usual); the
    /// next segment is no discontinuity, as in the twin that never paused.
    /// Returns the files now old enough to delete; a `sequence` not ahead
    /// changes nothing.
    pub fn skip_to(&mut self, sequence: u64) -> Vec<String> {
        let mut deletable = Vec::new();
        if sequence <= self.next_sequence() {
            return deletable;
        }
        deletable.extend(self.discard_trailing());
        while let Some(gone) = self.listed.pop_front() {
            if gone.discontinuity {
                self.discontinuity_sequence += 1;
            }
            self.retire(gone);
        }
        self.media_sequence = sequence;
        self.reserved = false;
        self.trim(&mut deletable);
        deletable
    }

    fn retire(&mut self, gone: Entry) {
        let mut files = vec![gone.uri];
        files.extend(gone.parts.into_iter().map(|p| p.uri));
        self.retired.push_back(files);
    }

    fn trim(&mut self, deletable: &mut Vec<String>) {
        while self.listed.len() > self.window {
            if let Some(gone) = self.listed.pop_front() {
                self.media_sequence += 1;
                if gone.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                self.retire(gone);
            }
        }
        while self.retired.len() > self.retained {
            if let Some(old) = self.retired.pop_front() {
                deletable.extend(old);
            }
        }
    }

    /// The part hinted as the next one after part `index` of `sequence`.
    fn next_part(&self, sequence: u64, index: u32) -> Option<String> {
        let parts = self.parts?;
        Some(if index + 1 < parts.per_segment {
            self.part_uri(sequence, index + 1)
        } else {
            self.part_uri(sequence + 1, 0)
        })
    }

    /// The playlist text (RFC 8216, version 3; version 6 with parts, RFC 8216bis).
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::with_capacity(1024);
        let version = if self.parts.is_some() { 6 } else { 3 };
        let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:{version}");
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        let hold_back = self.hold_back.unwrap_or(Duration::from_secs(
            self.target_duration * u64::from(HOLD_BACK_TARGETS),
        ));
        if let Some(parts) = self.parts {
            let part_hold_back = parts.target * PART_HOLD_BACK_TARGETS;
            let _ = writeln!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},HOLD-BACK={:.3}",
                part_hold_back.as_secs_f64(),
                hold_back.as_secs_f64()
            );
            let _ = writeln!(
                out,
                "#EXT-X-PART-INF:PART-TARGET={:.5}",
                parts.target.as_secs_f64()
            );
        } else if self.hold_back.is_some() {
            let _ = writeln!(
                out,
                "#EXT-X-SERVER-CONTROL:HOLD-BACK={:.3}",
                hold_back.as_secs_f64()
            );
        }
        if self.media_sequence != 0 {
            let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        }
        if self.discontinuity_sequence != 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        let with_parts = self.listed.len().saturating_sub(PARTS_LISTED_FOR);
        for (i, e) in self.listed.iter().enumerate() {
            write_dates(&mut out, e.discontinuity, e.program_date_time);
            if self.parts.is_some() && i >= with_parts {
                write_parts(&mut out, &e.parts);
            }
            let _ = writeln!(out, "#EXTINF:{:.3},\n{}", e.duration.as_secs_f64(), e.uri);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
            return out.into_bytes();
        }
        if self.parts.is_none() {
            return out.into_bytes();
        }
        let hint = match &self.trailing {
            Some(t) => {
                write_dates(
                    &mut out,
                    self.discontinuity_pending,
                    Some(t.program_date_time),
                );
                write_parts(&mut out, &t.parts);
                self.next_part(t.sequence, t.parts.len().saturating_sub(1) as u32)
            }
            None => Some(self.part_uri(self.first_unused(), 0)),
        };
        if let Some(hint) = hint {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
        }
        for report in &self.reports {
            let _ = write!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                report.uri, report.last_msn
            );
            match report.last_part {
                Some(part) => {
                    let _ = writeln!(out, ",LAST-PART={part}");
                }
                None => out.push('\n'),
            }
        }
        out.into_bytes()
    }
}

/// A segment's discontinuity and date lines.
fn write_dates(out: &mut String, discontinuity: bool, date: Option<SystemTime>) {
    if discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if let Some(t) = date {
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
    }
}

/// `EXT-X-PART` lines.
fn write_parts(out: &mut String, parts: &[PartEntry]) {
    for p in parts {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
            p.duration.as_secs_f64(),
            p.uri
        );
        out.push_str(if p.independent {
            ",INDEPENDENT=YES\n"
        } else {
            "\n"
        });
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
    fn resume_continues_numbering_without_a_discontinuity() {
        let mut first = LivePlaylist::new(2, 5, 3);
        push_n(&mut first, 9);
        let mut second = LivePlaylist::new(2, 5, 3).resume(&first.render());
        assert_eq!(second.next_sequence(), 9);
        push_n(&mut second, 1);
        let facts = PlaylistFacts::parse(&second.render()).expect("valid");
        assert_eq!(facts.media_sequence, 5);
        let last = facts.segments.last().expect("one segment");
        assert_eq!(last.uri, "segment000009.ts");
        // The twin that never restarted lists the same: no discontinuity.
        assert_eq!(facts.segments.iter().filter(|s| s.discontinuity).count(), 0);
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
    fn skipping_ahead_starts_a_new_window_as_the_twin_lists_it() {
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
        // The discontinuity marked before left with its segment (counted);
        // the rejoin adds none.
        assert!(!facts.segments[0].discontinuity);
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

    fn low_latency() -> LivePlaylist {
        LivePlaylist::new(2, 6, 2).with_parts(PartSettings {
            target: Duration::from_millis(400),
            per_segment: 5,
        })
    }

    /// Lists segment `seq` as the worker does: its five parts, then itself.
    fn push_with_parts(p: &mut LivePlaylist, seq: u64) -> Vec<String> {
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(2 * seq);
        let mut deleted = Vec::new();
        for k in 0..5 {
            deleted.extend(p.push_part(seq, k, Duration::from_millis(400), k == 0, date));
        }
        deleted.extend(p.push(p.segment_uri(seq), Duration::from_secs(2), date));
        deleted
    }

    #[test]
    fn a_configured_hold_back_is_said_with_parts_and_without() {
        let mut p = low_latency().with_hold_back(Duration::from_millis(7500));
        push_with_parts(&mut p, 0);
        let text = String::from_utf8(p.render()).expect("utf8");
        assert!(
            text.contains(
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200,HOLD-BACK=7.500\n"
            ),
            "{text}"
        );
        let mut standard = LivePlaylist::new(1, 6, 2);
        push_n(&mut standard, 1);
        let text = String::from_utf8(standard.render()).expect("utf8");
        assert!(!text.contains("SERVER-CONTROL"), "{text}");
        let mut standard = LivePlaylist::new(1, 6, 2).with_hold_back(Duration::from_secs(5));
        push_n(&mut standard, 1);
        let text = String::from_utf8(standard.render()).expect("utf8");
        assert!(
            text.contains("#EXT-X-SERVER-CONTROL:HOLD-BACK=5.000\n"),
            "{text}"
        );
        assert!(PlaylistFacts::parse(text.as_bytes()).is_ok(), "{text}");
    }

    #[test]
    fn parts_are_listed_before_their_segment_for_the_last_segments_then_the_hint() {
        let mut p = low_latency();
        for seq in 0..4 {
            push_with_parts(&mut p, seq);
        }
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(8);
        p.push_part(4, 0, Duration::from_millis(400), true, date);
        p.push_part(4, 1, Duration::from_millis(400), false, date);
        let text = String::from_utf8(p.render()).expect("utf8");
        assert!(text.contains("#EXT-X-VERSION:6\n"), "{text}");
        assert!(
            text.contains(
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200,HOLD-BACK=6.000\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("#EXT-X-PART-INF:PART-TARGET=0.40000\n"),
            "{text}"
        );
        // Segments 0 and 1 without parts; 2 and 3 with theirs, before them.
        assert!(!text.contains("segment000001_part"), "{text}");
        let three = "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:06.000Z\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000003_part0.ts\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000003_part1.ts\"\n";
        assert!(text.contains(three), "{text}");
        assert!(
            text.contains("segment000003_part4.ts\"\n#EXTINF:2.000,\nsegment000003.ts\n"),
            "{text}"
        );
        // Segment 4 is being made: its two parts, then the third hinted.
        assert!(
            text.ends_with(
                "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:08.000Z\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000004_part0.ts\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000004_part1.ts\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment000004_part2.ts\"\n"
            ),
            "{text}"
        );
        // A reader that knows no parts still reads the segments.
        let facts = PlaylistFacts::parse(text.as_bytes()).expect("valid");
        assert_eq!(facts.segments.len(), 4);
        assert_eq!(facts.newest_sequence(), Some(3));
        // After a segment's last part the next segment's first is hinted.
        push_with_parts(&mut p, 4);
        let text = String::from_utf8(p.render()).expect("utf8");
        assert!(
            text.ends_with(
                "segment000004.ts\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment000005_part0.ts\"\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_ladders_rendition_reports_its_siblings_after_the_hint() {
        let mut p = low_latency().with_prefix("720p_");
        push_with_parts(&mut p, 0);
        p.set_reports(vec![
            RenditionReport {
                uri: "480p.m3u8".into(),
                last_msn: 1,
                last_part: Some(0),
            },
            RenditionReport {
                uri: "360p.m3u8".into(),
                last_msn: 0,
                last_part: None,
            },
        ]);
        let text = String::from_utf8(p.render()).expect("utf8");
        assert!(
            text.contains(
                "URI=\"720p_segment000000_part4.ts\"\n#EXTINF:2.000,\n720p_segment000000.ts\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"720p_segment000001_part0.ts\"\n\
#EXT-X-RENDITION-REPORT:URI=\"480p.m3u8\",LAST-MSN=1,LAST-PART=0\n\
#EXT-X-RENDITION-REPORT:URI=\"360p.m3u8\",LAST-MSN=0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn parts_leave_the_disk_with_their_segment_and_unfinished_ones_are_never_reused() {
        let mut p = low_latency();
        let mut deleted = Vec::new();
        for seq in 0..9 {
            deleted.extend(push_with_parts(&mut p, seq));
        }
        // 6 listed, 2 retained: segment 0 and its parts are gone.
        assert!(
            deleted.contains(&"segment000000.ts".to_string()),
            "{deleted:?}"
        );
        assert!(
            deleted.contains(&"segment000000_part4.ts".to_string()),
            "{deleted:?}"
        );
        assert!(
            !deleted.iter().any(|d| d.starts_with("segment000001")),
            "{deleted:?}"
        );

        // A run ends mid-segment: its parts leave the playlist, the number is not reused.
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(18);
        p.push_part(9, 0, Duration::from_millis(400), true, date);
        assert_eq!(p.next_sequence(), 9);
        assert_eq!(p.first_unused(), 10);
        assert_eq!(
            p.discard_trailing(),
            vec!["segment000009_part0.ts".to_string()]
        );
        assert!(!String::from_utf8(p.render())
            .expect("utf8")
            .contains("segment000009_part0"));
        assert_eq!(p.first_unused(), 10);

        // A worker restarted on a playlist a running one left (parts out):
        // the segment it was making is skipped too, and the parts listed
        // are known (to be deleted in time).
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(18);
        let mut q = low_latency();
        for seq in 0..3 {
            push_with_parts(&mut q, seq);
        }
        q.push_part(3, 0, Duration::from_millis(400), true, date);
        let resumed = low_latency().resume(&q.render());
        assert_eq!(resumed.next_sequence(), 3);
        assert_eq!(resumed.first_unused(), 4);
        assert_eq!(resumed.listed.back().map(|e| e.parts.len()), Some(5));
    }

    #[test]
    fn garbage_on_disk_starts_a_fresh_stream() {
        let p = LivePlaylist::new(2, 5, 3).resume(b"not a playlist");
        assert_eq!(p.next_sequence(), 0);
    }
}
