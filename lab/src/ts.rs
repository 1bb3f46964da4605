//! Just enough MPEG-TS reading to judge a segment from outside: where its
//! video starts (first PTS) and whether it starts with an IDR frame, which is
//! what a player joining or switching at that segment needs, and where its
//! continuity counters break (what VLC counts as discontinuities).

/// MPEG-TS packets are 188 bytes, each starting with this sync byte.
const PACKET_LEN: usize = 188;
const SYNC_BYTE: u8 = 0x47;
/// PES stream ids 0xE0-0xEF carry video.
const VIDEO_STREAM_IDS: std::ops::RangeInclusive<u8> = 0xE0..=0xEF;
/// H.264 NAL unit types: a coded slice of a non-IDR picture, of an IDR picture.
const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;

/// How a segment's video begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoStart {
    /// PTS of the first video PES, in 90 kHz ticks.
    pub pts: u64,
    /// Whether the first coded picture is an IDR frame.
    pub idr: bool,
}

/// The payload of a TS packet and whether it starts a PES, or `None` for a
/// packet that is not whole or carries no payload.
fn payload(packet: &[u8]) -> Option<(u16, bool, &[u8])> {
    if packet.len() < PACKET_LEN || packet[0] != SYNC_BYTE {
        return None;
    }
    let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
    let start = packet[1] & 0x40 != 0;
    let adaptation = (packet[3] >> 4) & 0x3;
    let mut offset = 4;
    if adaptation & 0x2 != 0 {
        offset += 1 + packet[4] as usize;
    }
    if adaptation & 0x1 == 0 || offset >= PACKET_LEN {
        return None;
    }
    Some((pid, start, &packet[offset..PACKET_LEN]))
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
    for packet in ts.chunks(PACKET_LEN) {
        let Some((pid, start, data)) = payload(packet) else {
            continue;
        };
        match video {
            None if start && data.len() > 9 && VIDEO_STREAM_IDS.contains(&data[3]) => {
                let pts = pes_pts(data)?;
                let header = 9 + data[8] as usize;
                video = Some((pid, pts));
                elementary.extend_from_slice(data.get(header..).unwrap_or_default());
            }
            Some((video_pid, _)) if pid == video_pid => {
                if start {
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
    let mut last: std::collections::HashMap<u16, u8> = std::collections::HashMap::new();
    let mut breaks = Vec::new();
    for (index, packet) in ts.chunks_exact(PACKET_LEN).enumerate() {
        if packet[0] != SYNC_BYTE {
            continue;
        }
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        if pid == 0x1fff {
            continue;
        }
        let control = (packet[3] >> 4) & 0x3;
        let found = packet[3] & 0x0f;
        let flagged = control & 0x2 != 0 && packet[4] > 0 && packet[5] & 0x80 != 0;
        if let Some(&previous) = last.get(&pid) {
            let expected = if control & 0x1 != 0 {
                (previous + 1) % 16
            } else {
                previous
            };
            if found != expected && !flagged {
                breaks.push(ContinuityBreak {
                    packet: index,
                    pid,
                    expected,
                    found,
                });
            }
        }
        last.insert(pid, found);
    }
    breaks
}

/// The first video PTS (90 kHz) in an MPEG-TS segment: the PES with
/// stream id 0xE0 that starts first.
pub fn first_video_pts(ts: &[u8]) -> Option<u64> {
    for packet in ts.chunks(188) {
        if packet.len() < 188 || packet[0] != 0x47 || packet[1] & 0x40 == 0 {
            continue;
        }
        let adaptation = (packet[3] >> 4) & 0x3;
        let mut offset = 4;
        if adaptation & 0x2 != 0 {
            offset += 1 + packet[4] as usize;
        }
        if adaptation & 0x1 == 0 || offset + 14 > 188 {
            continue;
        }
        let pes = &packet[offset..];
        if pes[0..3] != [0, 0, 1] || pes[3] != 0xE0 || pes[7] & 0x80 == 0 {
            continue;
        }
        let p = &pes[9..14];
        let pts = (((p[0] as u64 >> 1) & 0x07) << 30)
            | ((p[1] as u64) << 22)
            | (((p[2] as u64) >> 1) << 15)
            | ((p[3] as u64) << 7)
            | ((p[4] as u64) >> 1);
        return Some(pts);
    }
    None
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
}
