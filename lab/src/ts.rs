//! The lab's one MPEG-TS reader (ISO/IEC 13818-1), just enough to judge a
//! segment from outside: its packets (PID, payload start, continuity
//! counter, payload), where its video starts (first PTS) and whether it
//! starts with an IDR frame, which is what a player joining or switching at
//! that segment needs, and where its continuity counters break (what VLC
//! counts as discontinuities). Every test, bench and tool of the lab that
//! looks inside a segment reads it here; decoding is GStreamer's
//! ([`crate::demux`]).
//!
//! ```text
//!   segment bytes ─▶ packets() ─▶ Packet { index, pid, start, counter, payload }
//!                                   ├─▶ continuity_breaks()
//!                                   └─▶ video_start(): first video PES ─▶ PTS, first slice IDR?
//! ```

use std::collections::HashMap;

/// MPEG-TS packets are 188 bytes, each starting with this sync byte.
pub const PACKET_LEN: usize = 188;
pub const SYNC_BYTE: u8 = 0x47;
/// The PID of null (stuffing) packets, which carry no counter.
const NULL_PID: u16 = 0x1fff;
/// PES stream ids 0xE0-0xEF carry video.
const VIDEO_STREAM_IDS: std::ops::RangeInclusive<u8> = 0xE0..=0xEF;
/// H.264 NAL unit types: a coded slice of a non-IDR picture, of an IDR picture.
const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;

/// One whole TS packet as the lab reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packet<'a> {
    /// Its place in the segment, from 0.
    pub(crate) index: usize,
    pub(crate) pid: u16,
    /// Payload unit start: a PES (or a table) begins in this packet.
    pub(crate) start: bool,
    /// The continuity counter (0-15).
    pub(crate) counter: u8,
    /// Whether the packet carries payload (adaptation field control 01 or 11).
    pub(crate) has_payload: bool,
    /// Whether its adaptation field flags a discontinuity: its counter starts over.
    pub(crate) discontinuity: bool,
    /// The payload after any adaptation field; empty when there is none.
    pub(crate) payload: &'a [u8],
}

/// Every whole packet of `ts` that starts with the sync byte, in order (a
/// trailing partial packet, or one out of sync, is left out).
pub(crate) fn packets(ts: &[u8]) -> impl Iterator<Item = Packet<'_>> {
    ts.chunks_exact(PACKET_LEN)
        .enumerate()
        .filter(|(_, p)| p[0] == SYNC_BYTE)
        .map(|(index, p)| {
            let control = (p[3] >> 4) & 0x3;
            let has_adaptation = control & 0x2 != 0;
            let has_payload = control & 0x1 != 0;
            let adaptation_len = if has_adaptation { 1 + p[4] as usize } else { 0 };
            let offset = 4 + adaptation_len;
            let payload = if has_payload && offset < PACKET_LEN {
                &p[offset..]
            } else {
                &[]
            };
            Packet {
                index,
                pid: (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]),
                start: p[1] & 0x40 != 0,
                counter: p[3] & 0x0f,
                has_payload,
                discontinuity: has_adaptation && p[4] > 0 && p[5] & 0x80 != 0,
                payload,
            }
        })
}

/// How a segment's video begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoStart {
    /// PTS of the first video PES, in 90 kHz ticks.
    pub pts: u64,
    /// Whether the first coded picture is an IDR frame.
    pub idr: bool,
}

/// The PTS of a PES header, if it has one.
fn pes_pts(pes: &[u8]) -> Option<u64> {
    if pes.len() < 14 || pes[0..3] != [0, 0, 1] || pes[7] & 0x80 == 0 {
        return None;
    }
    let p = &pes[9..14];
    Some(
        ((u64::from(p[0] >> 1) & 0x07) << 30)
            | (u64::from(p[1]) << 22)
            | ((u64::from(p[2]) >> 1) << 15)
            | (u64::from(p[3]) << 7)
            | (u64::from(p[4]) >> 1),
    )
}

/// The first video PTS of a segment and whether its first picture is an IDR
/// frame: the H.264 bytes of the first video PES are scanned (across packets)
/// for the first coded slice.
pub fn video_start(ts: &[u8]) -> Option<VideoStart> {
    let mut video: Option<(u16, u64)> = None;
    let mut elementary: Vec<u8> = Vec::new();
    for packet in packets(ts).filter(|p| !p.payload.is_empty()) {
        let data = packet.payload;
        match video {
            None if packet.start && data.len() > 9 && VIDEO_STREAM_IDS.contains(&data[3]) => {
                let pts = pes_pts(data)?;
                let header = 9 + data[8] as usize;
                video = Some((packet.pid, pts));
                elementary.extend_from_slice(data.get(header..).unwrap_or_default());
            }
            Some((video_pid, _)) if packet.pid == video_pid => {
                if packet.start {
                    break; // the next PES: the first picture had no slice
                }
                elementary.extend_from_slice(data);
            }
            _ => continue,
        }
        if let Some(kind) = first_slice(&elementary) {
            let (_, pts) = video?;
            return Some(VideoStart {
                pts,
                idr: kind == NAL_IDR,
            });
        }
    }
    video.map(|(_, pts)| VideoStart { pts, idr: false })
}

/// A continuity counter that did not follow its PID's previous one: the
/// packet's index, its PID, the counter expected and the one found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinuityBreak {
    pub packet: usize,
    pub pid: u16,
    pub expected: u8,
    pub found: u8,
}

/// Every continuity-counter break in `ts` (ISO/IEC 13818-1 2.4.3.3): a packet
/// with payload counts one up from its PID's previous packet, one without
/// repeats it. A packet flagged discontinuous in its adaptation field starts
/// over. Null packets are not counted.
pub fn continuity_breaks(ts: &[u8]) -> Vec<ContinuityBreak> {
    let mut last: HashMap<u16, u8> = HashMap::new();
    let mut breaks = Vec::new();
    for packet in packets(ts).filter(|p| p.pid != NULL_PID) {
        if let Some(&previous) = last.get(&packet.pid) {
            let expected = if packet.has_payload {
                (previous + 1) % 16
            } else {
                previous
            };
            if packet.counter != expected && !packet.discontinuity {
                breaks.push(ContinuityBreak {
                    packet: packet.index,
                    pid: packet.pid,
                    expected,
                    found: packet.counter,
                });
            }
        }
        last.insert(packet.pid, packet.counter);
    }
    breaks
}

/// `count` whole packets that are nothing but the sync byte and zeros: a body
/// that passes as whole MPEG-TS ([`nonstop::hls::is_complete_transport_stream`])
/// where no test needs pictures.
pub(crate) fn blank_packets(count: usize) -> Vec<u8> {
    let mut ts = vec![0u8; PACKET_LEN * count];
    ts.iter_mut()
        .step_by(PACKET_LEN)
        .for_each(|b| *b = SYNC_BYTE);
    ts
}

/// The NAL type of the first coded slice in Annex B bytes, if one is there.
fn first_slice(bytes: &[u8]) -> Option<u8> {
    bytes
        .windows(4)
        .filter(|w| w[0] == 0 && w[1] == 0 && w[2] == 1)
        .map(|w| w[3] & 0x1f)
        .find(|&kind| kind == NAL_SLICE || kind == NAL_IDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One TS packet of `pid` carrying `payload` (padded with stuffing
    /// through the adaptation field).
    fn packet(pid: u16, start: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            SYNC_BYTE,
            ((pid >> 8) as u8) | if start { 0x40 } else { 0 },
            pid as u8,
        ];
        let stuffing = PACKET_LEN - 4 - payload.len();
        if stuffing > 0 {
            p.push(0x30);
            p.push((stuffing - 1) as u8);
            if stuffing > 1 {
                p.push(0);
                p.extend(std::iter::repeat_n(0xff, stuffing - 2));
            }
        } else {
            p.push(0x10);
        }
        p.extend_from_slice(payload);
        p
    }

    fn pes(pts: u64, es: &[u8]) -> Vec<u8> {
        let mut h = vec![0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5];
        h.push(0x21 | (((pts >> 30) as u8 & 0x07) << 1));
        h.push((pts >> 22) as u8);
        h.push((((pts >> 15) as u8) << 1) | 1);
        h.push((pts >> 7) as u8);
        h.push(((pts as u8) << 1) | 1);
        h.extend_from_slice(es);
        h
    }

    #[test]
    fn finds_the_pts_and_an_idr_first_picture() {
        // access unit delimiter, SPS, then an IDR slice
        let es = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x65, 0x88,
        ];
        let ts = packet(256, true, &pes(900_000, &es));
        assert_eq!(
            video_start(&ts),
            Some(VideoStart {
                pts: 900_000,
                idr: true
            })
        );
    }

    #[test]
    fn a_segment_starting_on_a_p_frame_is_not_idr_even_across_packets() {
        let es = [0, 0, 0, 1, 9, 0xf0];
        let mut ts = packet(256, true, &pes(1234, &es));
        ts.extend(packet(256, false, &[0, 0, 1, 0x41, 0x9a]));
        assert_eq!(
            video_start(&ts),
            Some(VideoStart {
                pts: 1234,
                idr: false
            })
        );
        assert_eq!(video_start(&[]), None);
    }

    #[test]
    fn continuity_breaks_are_found_per_pid() {
        let with_counter = |pid: u16, counter: u8| {
            let mut p = packet(pid, false, &[1; 184]);
            p[3] |= counter;
            p
        };
        let mut ts = Vec::new();
        for (pid, counter) in [(0x41, 14), (0x42, 3), (0x41, 15), (0x41, 0), (0x42, 4)] {
            ts.extend(with_counter(pid, counter));
        }
        assert!(continuity_breaks(&ts).is_empty());
        ts.extend(with_counter(0x41, 5));
        assert_eq!(
            continuity_breaks(&ts),
            vec![ContinuityBreak {
                packet: 5,
                pid: 0x41,
                expected: 1,
                found: 5
            }]
        );
    }

    #[test]
    fn packets_carry_pid_start_counter_and_payload_after_the_adaptation_field() {
        let mut ts = packet(0x100, true, &[1, 2, 3]);
        ts[3] |= 7;
        ts.extend(packet(0x101, false, &[9; 184]));
        ts.extend([0u8; 100]); // a cut packet is left out
        let read: Vec<Packet> = packets(&ts).collect();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[0].index, read[0].pid, read[0].start, read[0].counter),
            (0, 0x100, true, 7)
        );
        assert_eq!(read[0].payload, &[1, 2, 3]);
        assert!(read[0].has_payload && !read[0].discontinuity);
        assert_eq!((read[1].pid, read[1].start), (0x101, false));
        assert_eq!(read[1].payload, &[9; 184][..]);
    }

    #[test]
    fn blank_packets_are_whole_transport_stream() {
        let ts = blank_packets(3);
        assert_eq!(ts.len(), 3 * PACKET_LEN);
        assert!(nonstop::hls::is_complete_transport_stream(&ts));
        assert_eq!(packets(&ts).count(), 3);
        assert_eq!(video_start(&ts), None);
    }
}
