//! Cutting the muxer's MPEG-TS stream into parts and segments on the epoch
//! grid, free of GStreamer: bytes in, [`Part`]s out.
//!
//! ```text
//! mpegtsmux --bytes--> Cutter::push --> Part { segment n, index k, bytes, start, duration, independent, ends_segment }
//!
//!   segment n:  | part 0 (IDR) | part 1 | part 2 | part 3 | part 4 |
//!               n·L           +P       +2P      +3P      +4P      (n+1)·L
//! ```
//!
//! A segment starts at the video keyframe the worker forces on the first
//! frame of each grid slot `n·L` ([`super::epoch`]); within it a part ends
//! before the first frame at or after the next part line `n·L + k·P`, or
//! earlier, before the frame that would make it longer than `P` (a frame
//! rate that does not divide `P`): so no part outlasts `P`, the part target
//! of LL-HLS (RFC 8216bis 4.4.4.9), and the cuts depend only on the frames'
//! timestamps, which are the same in every worker. Two workers therefore
//! cut the same parts at the same instants: part k of segment n from one
//! follows part k-1 from the other.
//!
//! A cut falls between whole packets, before the video frame's PES, and
//! before the tables (PAT, PMT) the muxer wrote right before it. Every part
//! after the first of a run starts with the latest tables, so any part can
//! be demuxed on its own; the bytes of a segment are its parts in order.
//! Timestamps are read from PES headers and unwrapped past the 33-bit PTS
//! wrap from the run's first segment, so a run may last any time.

use std::time::Duration;

use super::epoch::{EpochGrid, PTS_HZ, PTS_WRAP};

/// MPEG-TS packets are 188 bytes, each starting with the sync byte.
const PACKET_LEN: usize = 188;
const SYNC_BYTE: u8 = 0x47;
/// The PAT's PID.
const PAT_PID: u16 = 0;
/// Stream types of video in a PMT: MPEG-2, H.264, H.265.
const VIDEO_STREAM_TYPES: [u8; 3] = [0x02, 0x1b, 0x24];
/// Timestamps within this of a grid line count as on it (90 kHz ticks: 1 ms),
/// for frame times rounded to the nanosecond on their way to 90 kHz.
const ON_LINE: u64 = 90;

/// One cut part: a whole number of packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The segment it belongs to (its media sequence number).
    pub sequence: u64,
    /// Its index within the segment, from 0.
    pub index: u32,
    /// Its packets, as the muxer wrote them (tables prepended after the first part).
    pub bytes: Vec<u8>,
    /// Its first frame, as time since the epoch.
    pub start: Duration,
    /// From its first frame to the next part's.
    pub duration: Duration,
    /// It starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// It is the last part of its segment: the segment is complete.
    pub ends_segment: bool,
}

/// The part being filled.
#[derive(Debug, Clone, Copy)]
struct OpenPart {
    sequence: u64,
    index: u32,
    /// Its first frame, in 90 kHz ticks since the epoch.
    start: u64,
    independent: bool,
}

/// Cuts one run's muxed stream (see the module documentation).
#[derive(Debug)]
pub struct Cutter {
    /// Segment length L and the epoch, in 90 kHz ticks.
    segment_ticks: u64,
    /// The part target P in 90 kHz ticks (L for segments only).
    part_ticks: u64,
    /// The first segment of the run, which unwraps the first PTS.
    first_sequence: u64,
    first_boundary: u64,
    /// Bytes of a packet not yet complete.
    carry: Vec<u8>,
    /// The open part's packets so far.
    part: Vec<u8>,
    /// Where, in `part`, a run of table packets started that nothing but
    /// tables followed yet: a cut before the next frame goes there.
    tables_from: Option<usize>,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    /// The latest PAT and PMT packets, prepended to every new part.
    pat: Option<[u8; PACKET_LEN]>,
    pmt: Option<[u8; PACKET_LEN]>,
    open: Option<OpenPart>,
    /// The latest video frame, unwrapped (90 kHz ticks since the epoch).
    last_frame: Option<u64>,
    /// The interval between the last two frames.
    frame_ticks: Option<u64>,
    /// Bytes dropped to find the sync byte again.
    pub lost_bytes: u64,
}

/// 90 kHz ticks of `d`.
pub fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * PTS_HZ as u128 / 1_000_000_000) as u64
}

/// The duration of `t` 90 kHz ticks.
pub fn from_ticks(t: u64) -> Duration {
    Duration::from_nanos((t as u128 * 1_000_000_000 / PTS_HZ as u128) as u64)
}

impl Cutter {
    /// A cutter for a run starting at segment `first_sequence` of `grid`,
    /// cutting parts of at most `part_target` (the segment length, or
    /// longer, for whole segments only).
    pub fn new(grid: EpochGrid, part_target: Duration, first_sequence: u64) -> Self {
        let segment_ticks = ticks(grid.segment).max(1);
        Cutter {
            segment_ticks,
            part_ticks: ticks(part_target).clamp(1, segment_ticks),
            first_sequence,
            first_boundary: ticks(grid.boundary(first_sequence)),
            carry: Vec::new(),
            part: Vec::new(),
            tables_from: None,
            pmt_pid: None,
            video_pid: None,
            pat: None,
            pmt: None,
            open: None,
            last_frame: None,
            frame_ticks: None,
            lost_bytes: 0,
        }
    }

    /// Takes the muxer's next bytes; returns the parts they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Part> {
        self.carry.extend_from_slice(bytes);
        let mut cut = Vec::new();
        let mut at = 0;
        while self.carry.len() - at >= PACKET_LEN {
            if self.carry[at] != SYNC_BYTE {
                at += 1;
                self.lost_bytes += 1;
                continue;
            }
            let mut packet = [0u8; PACKET_LEN];
            packet.copy_from_slice(&self.carry[at..at + PACKET_LEN]);
            at += PACKET_LEN;
            if let Some(part) = self.packet(&packet) {
                cut.push(part);
            }
        }
        self.carry.drain(..at);
        cut
    }

    /// The segment the open part belongs to, if a frame was seen.
    pub fn current_sequence(&self) -> Option<u64> {
        self.open.map(|o| o.sequence)
    }

    fn packet(&mut self, p: &[u8; PACKET_LEN]) -> Option<Part> {
        let id = pid(p);
        if id == PAT_PID || Some(id) == self.pmt_pid {
            self.table(id, p);
            self.tables_from.get_or_insert(self.part.len());
            self.part.extend_from_slice(p);
            return None;
        }
        let mut cut = None;
        if Some(id) == self.video_pid && unit_start(p) {
            if let Some(pts) = pes_pts(p) {
                let t = self.unwrap(pts);
                cut = self.frame(t, random_access(p));
            }
        }
        self.part.extend_from_slice(p);
        self.tables_from = None;
        cut
    }

    /// Learns the PMT's PID from a PAT and the video PID from a PMT, and
    /// keeps the latest of each for the next parts.
    fn table(&mut self, id: u16, p: &[u8; PACKET_LEN]) {
        let Some(section) = section(p) else {
            return;
        };
        if id == PAT_PID {
            // program_number (2), reserved + PID (2), per program; 0 is the NIT.
            let programs = section
                .get(8..section.len().saturating_sub(4))
                .unwrap_or(&[]);
            for entry in programs.chunks_exact(4) {
                if u16::from_be_bytes([entry[0], entry[1]]) != 0 {
                    self.pmt_pid = Some(u16::from_be_bytes([entry[2] & 0x1f, entry[3]]));
                    break;
                }
            }
            self.pat = Some(*p);
        } else {
            let info_len = section
                .get(10..12)
                .map_or(0, |b| usize::from(b[0] & 0x0f) << 8 | usize::from(b[1]));
            let mut at = 12 + info_len;
            let end = section.len().saturating_sub(4);
            while at + 5 <= end {
                let stream_type = section[at];
                let pid = u16::from_be_bytes([section[at + 1] & 0x1f, section[at + 2]]);
                let es_len =
                    usize::from(section[at + 3] & 0x0f) << 8 | usize::from(section[at + 4]);
                if VIDEO_STREAM_TYPES.contains(&stream_type) {
                    self.video_pid = Some(pid);
                    break;
                }
                at += 5 + es_len;
            }
            self.pmt = Some(*p);
        }
    }

    /// A PTS as 90 kHz ticks since the epoch: the first one placed from the
    /// run's first segment, each next one from the one before.
    fn unwrap(&mut self, pts: u64) -> u64 {
        let (from, from_pts) = match self.last_frame {
            Some(last) => (last, last % PTS_WRAP),
            None => (self.first_boundary, self.first_boundary % PTS_WRAP),
        };
        let forward = (pts + PTS_WRAP - from_pts) % PTS_WRAP;
        if forward < PTS_WRAP / 2 {
            from + forward
        } else {
            from.saturating_sub(PTS_WRAP - forward)
        }
    }

    /// A video frame starts at `t`: the part it ends, if it starts a new one.
    fn frame(&mut self, t: u64, keyframe: bool) -> Option<Part> {
        let interval = self
            .last_frame
            .and_then(|l| t.checked_sub(l))
            .filter(|&i| i > 0);
        if interval.is_some() {
            self.frame_ticks = interval;
        }
        self.last_frame = Some(t);
        let Some(open) = self.open else {
            self.open = Some(OpenPart {
                sequence: self.sequence_of(t).max(self.first_sequence),
                index: 0,
                start: t,
                independent: keyframe,
            });
            return None;
        };
        let sequence = self.sequence_of(t);
        if sequence > open.sequence && keyframe {
            return Some(self.cut(t, true, sequence, 0, true));
        }
        let segment_start = open.sequence * self.segment_ticks;
        let next_line = segment_start + u64::from(open.index + 1) * self.part_ticks;
        let due = t + ON_LINE >= next_line;
        let too_long = self
            .frame_ticks
            .is_some_and(|f| t + f > open.start + self.part_ticks + ON_LINE);
        if due || too_long {
            return Some(self.cut(t, false, open.sequence, open.index + 1, keyframe));
        }
        None
    }

    /// Closes the open part before the frame at `t` and opens the next.
    fn cut(
        &mut self,
        t: u64,
        ends_segment: bool,
        sequence: u64,
        index: u32,
        independent: bool,
    ) -> Part {
        let at = self.tables_from.take().unwrap_or(self.part.len());
        let rest = self.part.split_off(at);
        let bytes = std::mem::replace(&mut self.part, rest);
        if self.part.is_empty() {
            // The muxer wrote no tables here: the part starts with ours.
            for table in [self.pat, self.pmt].into_iter().flatten() {
                self.part.extend_from_slice(&table);
            }
        }
        let open = self.open.replace(OpenPart {
            sequence,
            index,
            start: t,
            independent,
        });
        let open = open.unwrap_or(OpenPart {
            sequence,
            index,
            start: t,
            independent,
        });
        Part {
            sequence: open.sequence,
            index: open.index,
            bytes,
            start: from_ticks(open.start),
            duration: from_ticks(t.saturating_sub(open.start)),
            independent: open.independent,
            ends_segment,
        }
    }

    fn sequence_of(&self, t: u64) -> u64 {
        (t + ON_LINE) / self.segment_ticks
    }
}

fn pid(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[1] & 0x1f, p[2]])
}

fn unit_start(p: &[u8]) -> bool {
    p[1] & 0x40 != 0
}

/// Where the payload starts, if the packet has one.
fn payload_offset(p: &[u8]) -> Option<usize> {
    let control = (p[3] >> 4) & 0x3;
    if control & 0x1 == 0 {
        return None;
    }
    let offset = if control & 0x2 != 0 {
        5 + p[4] as usize
    } else {
        4
    };
    (offset < PACKET_LEN).then_some(offset)
}

/// Whether the adaptation field flags a random access point (a keyframe).
fn random_access(p: &[u8]) -> bool {
    (p[3] >> 4) & 0x2 != 0 && p[4] > 0 && p[5] & 0x40 != 0
}

/// The PTS of a PES starting in this packet.
fn pes_pts(p: &[u8]) -> Option<u64> {
    let pes = &p[payload_offset(p)?..];
    if pes.len() < 14 || pes[..3] != [0, 0, 1] || pes[7] & 0x80 == 0 {
        return None;
    }
    let b = &pes[9..14];
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}

/// The table section starting in this packet (pointer field skipped).
fn section(p: &[u8]) -> Option<&[u8]> {
    if !unit_start(p) {
        return None;
    }
    let payload = &p[payload_offset(p)?..];
    let start = 1 + usize::from(*payload.first()?);
    let section = payload.get(start..)?;
    let len = 3 + (usize::from(*section.get(1)? & 0x0f) << 8 | usize::from(*section.get(2)?));
    section.get(..len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PMT_PID: u16 = 0x20;
    const VIDEO: u16 = 0x41;
    const AUDIO: u16 = 0x42;
    /// 25 frames a second.
    const FRAME: u64 = 3600;

    fn header(id: u16, start: bool) -> [u8; PACKET_LEN] {
        let mut p = [0xffu8; PACKET_LEN];
        p[0] = SYNC_BYTE;
        p[1] = (id >> 8) as u8 | if start { 0x40 } else { 0 };
        p[2] = id as u8;
        p[3] = 0x10;
        p
    }

    fn pat() -> [u8; PACKET_LEN] {
        let mut p = header(PAT_PID, true);
        // pointer, table 0, length 13, ts id, version, section 0/0, program 1 -> PMT, CRC.
        let body = [
            0,
            0x00,
            0xb0,
            13,
            0,
            1,
            0xc1,
            0,
            0,
            0,
            1,
            0xe0 | (PMT_PID >> 8) as u8,
            PMT_PID as u8,
            1,
            2,
            3,
            4,
        ];
        p[4..4 + body.len()].copy_from_slice(&body);
        p
    }

    fn pmt() -> [u8; PACKET_LEN] {
        let mut p = header(PMT_PID, true);
        // pointer, table 2, length 23, program 1, version, sections, PCR PID,
        // no program info, H.264 on VIDEO, AAC on AUDIO, CRC.
        let body = [
            0,
            0x02,
            0xb0,
            23,
            0,
            1,
            0xc1,
            0,
            0,
            0xe0,
            VIDEO as u8,
            0xf0,
            0,
            0x1b,
            0xe0,
            VIDEO as u8,
            0xf0,
            0,
            0x0f,
            0xe0,
            AUDIO as u8,
            0xf0,
            0,
            1,
            2,
            3,
            4,
        ];
        p[4..4 + body.len()].copy_from_slice(&body);
        p
    }

    /// A PES start at `pts` on `id`; a keyframe flags random access.
    fn pes(id: u16, pts: u64, keyframe: bool) -> [u8; PACKET_LEN] {
        let mut p = header(id, true);
        let mut at = 4;
        if keyframe {
            p[3] = 0x30;
            p[4] = 1;
            p[5] = 0x40;
            at = 6;
        }
        let pts = pts % PTS_WRAP;
        let stamp = [
            0x21 | ((pts >> 29) & 0x0e) as u8,
            (pts >> 22) as u8,
            0x01 | ((pts >> 14) & 0xfe) as u8,
            (pts >> 7) as u8,
            0x01 | ((pts << 1) & 0xfe) as u8,
        ];
        p[at..at + 9].copy_from_slice(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5]);
        p[at + 9..at + 14].copy_from_slice(&stamp);
        p
    }

    /// A run as mpegtsmux writes it: tables first and every 4th frame,
    /// each frame followed by a continuation packet and an audio PES; a
    /// keyframe at every `segment` frames counted from `from` (ticks).
    fn stream(from: u64, frames: u64, frame: u64, segment: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..frames {
            let t = from + i * frame;
            if i % 4 == 0 {
                out.extend(pat());
                out.extend(pmt());
            }
            out.extend(pes(VIDEO, t, t.is_multiple_of(segment)));
            out.extend(header(VIDEO, false));
            out.extend(pes(AUDIO, t + 100, false));
        }
        out
    }

    fn grid(epoch: u64) -> EpochGrid {
        EpochGrid::new(epoch, Duration::from_secs(2))
    }

    #[test]
    fn parts_follow_the_part_lines_and_segments_the_keyframes() {
        let segment = 2 * PTS_HZ;
        let first = 1_000;
        let mut cutter = Cutter::new(grid(0), Duration::from_millis(400), first);
        // Fed in odd-sized chunks, as a muxer's buffers come.
        let bytes = stream(first * segment, 2 * 50 + 1, FRAME, segment);
        let parts: Vec<Part> = bytes.chunks(1000).flat_map(|c| cutter.push(c)).collect();
        assert_eq!(parts.len(), 10, "two segments of five parts");
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.sequence, first + i as u64 / 5);
            assert_eq!(part.index, i as u32 % 5);
            assert_eq!(part.duration, Duration::from_millis(400), "part {i}");
            assert_eq!(part.independent, i % 5 == 0, "part {i}");
            assert_eq!(part.ends_segment, i % 5 == 4, "part {i}");
            assert_eq!(part.bytes.len() % PACKET_LEN, 0);
            assert_eq!(
                &part.bytes[..PACKET_LEN],
                &pat(),
                "part {i} starts with the PAT"
            );
            assert_eq!(
                part.start,
                Duration::from_secs(2 * part.sequence) + Duration::from_millis(400) * part.index
            );
        }
        assert_eq!(cutter.lost_bytes, 0);
        // Nothing is lost or repeated but the tables put before parts.
        let media = |b: &[u8]| {
            b.chunks(PACKET_LEN)
                .filter(|p| pid(p) == VIDEO || pid(p) == AUDIO)
                .count()
        };
        let cut: usize = parts.iter().map(|p| media(&p.bytes)).sum();
        assert_eq!(cut + media(&cutter.part), media(&bytes));
    }

    #[test]
    fn a_frame_rate_that_does_not_divide_the_part_never_makes_a_part_longer() {
        // 24 frames a second: 0.4 s is 9.6 frames.
        let frame = PTS_HZ / 24;
        let segment = 2 * PTS_HZ;
        let mut cutter = Cutter::new(grid(0), Duration::from_millis(400), 7);
        let parts = cutter.push(&stream(7 * segment, 48 * 2 + 1, frame, segment));
        assert!(parts.len() >= 10, "{}", parts.len());
        for part in &parts {
            assert!(part.duration <= Duration::from_millis(400), "{part:?}");
            if !part.ends_segment {
                assert!(
                    part.duration * 100 >= Duration::from_millis(400) * 85,
                    "{:?}",
                    part.duration
                );
            }
        }
        let per_segment: u64 = parts
            .iter()
            .filter(|p| p.sequence == 7)
            .map(|p| ticks(p.duration))
            .sum();
        assert_eq!(per_segment, segment, "the parts of a segment add up to it");
    }

    #[test]
    fn timestamps_unwrap_past_the_pts_wrap() {
        let segment = 2 * PTS_HZ;
        // Segment 47722 starts 26.5 hours after the epoch: past one PTS wrap.
        let first = PTS_WRAP / segment + 1;
        let mut cutter = Cutter::new(grid(0), Duration::from_secs(1), first);
        let parts = cutter.push(&stream(first * segment, 51, FRAME, segment));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].sequence, first);
        assert_eq!(parts[0].start, Duration::from_secs(2 * first));
        assert_eq!(parts[1].duration, Duration::from_secs(1));
        assert!(parts[1].ends_segment);
        assert_eq!(cutter.current_sequence(), Some(first + 1));
    }

    #[test]
    fn whole_segments_when_the_part_is_the_segment_and_garbage_is_skipped() {
        let segment = 2 * PTS_HZ;
        let mut cutter = Cutter::new(grid(0), Duration::from_secs(2), 3);
        let mut bytes = vec![0u8; 5];
        bytes.extend(stream(3 * segment, 101, FRAME, segment));
        let parts = cutter.push(&bytes);
        assert_eq!(cutter.lost_bytes, 5);
        assert_eq!(parts.len(), 2);
        assert!(parts
            .iter()
            .all(|p| p.ends_segment && p.independent && p.index == 0));
        assert_eq!(parts[1].sequence, 4);
    }
}
