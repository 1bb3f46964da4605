//! MPEG-TS continuity counters that do not depend on which worker wrote a
//! segment. Every TS packet carries a 4-bit counter per PID that a demuxer
//! expects to go up by one from packet to packet; a muxer counts from its own
//! start, so segment n from worker A and segment n+1 from worker B do not
//! follow each other (VLC counts a discontinuity and may drop what it holds).
//!
//! Each finished segment is rewritten so that, for every PID, its first
//! packet with a payload counts 0 and its last counts 15: any segment then
//! follows any other, from any worker, with no break. To end on 15 a PID
//! needs a multiple of 16 payload packets; the shortfall is made up without
//! changing what is carried:
//! - a PES stream (audio, video): the bytes of the segment's last PES (or
//!   last few, when they are tiny) are spread over more packets, the extra
//!   room filled with adaptation-field stuffing (ISO/IEC 13818-1 2.4.3.5);
//!   each PES keeps its header whole in its first packet, with that packet's
//!   adaptation field (random-access flag, PCR), and packets after it that
//!   carry a PCR stay as they are;
//! - a table (PAT, PMT): the last whole section is repeated, as a muxer
//!   repeats its tables anyway.
//!
//! ```text
//! segment bytes --packets--> per PID: pad to a multiple of 16 --> count 0..15 --> bytes
//! ```

/// MPEG-TS packets are 188 bytes, each starting with the sync byte.
pub const PACKET_LEN: usize = 188;
const SYNC_BYTE: u8 = 0x47;
const HEADER_LEN: usize = 4;
/// Room for payload in a packet without an adaptation field.
const MAX_PAYLOAD: usize = PACKET_LEN - HEADER_LEN;
/// Null packets carry nothing and have no counter to keep.
const NULL_PID: u16 = 0x1fff;
/// The counter's range: 4 bits.
const COUNTER_MODULUS: usize = 16;

/// What [`normalize`] did to a segment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Normalized {
    /// The rewritten segment.
    pub bytes: Vec<u8>,
    /// Packets added to reach a multiple of 16 per PID.
    pub added_packets: usize,
    /// PIDs that could not be padded: their counters start at 0 but do not
    /// end on 15, so the next segment's first packet is a break.
    pub unpadded_pids: Vec<u16>,
}

/// Why a segment was left as written.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTransportStream {
    /// The length is not a whole number of packets.
    PartialPacket(usize),
    /// The packet at this index does not start with the sync byte.
    LostSync(usize),
}

impl std::fmt::Display for NotTransportStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotTransportStream::PartialPacket(len) => {
                write!(f, "{len} bytes is not a whole number of TS packets")
            }
            NotTransportStream::LostSync(index) => {
                write!(f, "packet {index} does not start with the sync byte")
            }
        }
    }
}

type Packet = [u8; PACKET_LEN];

fn pid(p: &Packet) -> u16 {
    (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])
}

fn unit_start(p: &Packet) -> bool {
    p[1] & 0x40 != 0
}

fn has_payload(p: &Packet) -> bool {
    (p[3] >> 4) & 0x1 != 0
}

fn has_adaptation(p: &Packet) -> bool {
    (p[3] >> 4) & 0x2 != 0
}

/// Where the payload starts, or `None` for a packet without one.
fn payload_offset(p: &Packet) -> Option<usize> {
    if !has_payload(p) {
        return None;
    }
    let offset = if has_adaptation(p) {
        HEADER_LEN + 1 + p[4] as usize
    } else {
        HEADER_LEN
    };
    (offset < PACKET_LEN).then_some(offset)
}

fn payload(p: &Packet) -> &[u8] {
    payload_offset(p).map_or(&[], |o| &p[o..])
}

/// A packet whose adaptation field, if any, holds only stuffing: its payload
/// can move to other packets without losing anything.
fn only_stuffing(p: &Packet) -> bool {
    !has_adaptation(p) || p[4] == 0 || p[5] == 0
}

/// What a packet's adaptation field carries besides stuffing: its flags byte
/// and the fields the flags announce (PCR, OPCR, splice countdown, private
/// data, extension), in order; empty for none or stuffing only. `None` when
/// the announced fields do not fit in the field's length.
fn adaptation_content(p: &Packet) -> Option<Vec<u8>> {
    if only_stuffing(p) {
        return Some(Vec::new());
    }
    let end = HEADER_LEN + 1 + p[4] as usize;
    let flags = p[5];
    let mut at = HEADER_LEN + 2;
    if flags & 0x10 != 0 {
        at += 6; // PCR
    }
    if flags & 0x08 != 0 {
        at += 6; // OPCR
    }
    if flags & 0x04 != 0 {
        at += 1; // splice countdown
    }
    if flags & 0x02 != 0 {
        at += 1 + *p.get(at)? as usize; // private data
    }
    if flags & 0x01 != 0 {
        at += 1 + *p.get(at)? as usize; // extension
    }
    (at <= end).then(|| p[HEADER_LEN + 1..at].to_vec())
}

fn set_counter(p: &mut Packet, counter: u8) {
    p[3] = (p[3] & 0xf0) | (counter & 0x0f);
}

/// A packet of `like`'s PID carrying `bytes` (1 to 184 of them, fewer when
/// `adaptation` is not empty), with an adaptation field holding `adaptation`
/// (see [`adaptation_content`]) and stuffing for the room `bytes` leave.
fn packet_with(like: &Packet, start: bool, adaptation: &[u8], bytes: &[u8]) -> Packet {
    debug_assert!(!bytes.is_empty() && bytes.len() <= room_for(adaptation));
    let mut p = [0xff; PACKET_LEN];
    p[0] = SYNC_BYTE;
    p[1] = (like[1] & 0x1f) | if start { 0x40 } else { 0 };
    p[2] = like[2];
    let scrambling = like[3] & 0xc0;
    let room = MAX_PAYLOAD - bytes.len();
    if room == 0 {
        p[3] = scrambling | 0x10;
    } else {
        p[3] = scrambling | 0x30;
        p[4] = (room - 1) as u8;
        if room > 1 {
            p[5] = 0x00;
            p[5..5 + adaptation.len()].copy_from_slice(adaptation);
        }
    }
    p[PACKET_LEN - bytes.len()..].copy_from_slice(bytes);
    p
}

/// Room for payload beside an adaptation field carrying `adaptation`.
fn room_for(adaptation: &[u8]) -> usize {
    if adaptation.is_empty() {
        MAX_PAYLOAD
    } else {
        MAX_PAYLOAD - 1 - adaptation.len()
    }
}

/// Payload packets per PID since the start of the segment being written:
/// what a part's counters go on from ([`normalize_part`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SegmentCounters {
    /// (PID, payload packets so far), in order of first appearance.
    carried: Vec<(u16, usize)>,
}

impl SegmentCounters {
    fn so_far(&self, id: u16) -> usize {
        self.carried
            .iter()
            .find(|(p, _)| *p == id)
            .map_or(0, |(_, n)| *n)
    }

    fn add(&mut self, id: u16, more: usize) {
        match self.carried.iter_mut().find(|(p, _)| *p == id) {
            Some((_, n)) => *n += more,
            None => self.carried.push((id, more)),
        }
    }
}

/// Rewrites a segment's continuity counters so that every PID counts 0 to 15
/// (see the module documentation).
pub fn normalize(ts: &[u8]) -> Result<Normalized, NotTransportStream> {
    normalize_part(ts, &mut SegmentCounters::default(), true)
}

/// Rewrites one part of a segment whose earlier parts `counters` counted:
/// each PID's counters go on from them, and the segment's last part is
/// padded so that every PID of the segment ends on 15. The parts of a
/// segment, normalized in order, concatenate to the segment [`normalize`]
/// would make of their concatenation's packets, counted 0 to 15 per PID.
pub fn normalize_part(
    ts: &[u8],
    counters: &mut SegmentCounters,
    last: bool,
) -> Result<Normalized, NotTransportStream> {
    let mut packets = packets_of(ts)?;
    let mut pids: Vec<u16> = Vec::new();
    for p in &packets {
        let id = pid(p);
        if id != NULL_PID && !pids.contains(&id) {
            pids.push(id);
        }
    }
    let carrying = |packets: &[Packet], id: u16| {
        packets
            .iter()
            .filter(|p| pid(p) == id && has_payload(p))
            .count()
    };
    let mut out = Normalized::default();
    if last {
        for &id in &pids {
            let total = counters.so_far(id) + carrying(&packets, id);
            let missing = (COUNTER_MODULUS - total % COUNTER_MODULUS) % COUNTER_MODULUS;
            if missing == 0 {
                continue;
            }
            let padded = pad_pes(&mut packets, id, missing) || pad_table(&mut packets, id, missing);
            if padded {
                out.added_packets += missing;
            } else {
                out.unpadded_pids.push(id);
            }
        }
        // A PID of earlier parts that this one lacks has nothing to pad with.
        for &(id, carried) in &counters.carried {
            if !pids.contains(&id) && !carried.is_multiple_of(COUNTER_MODULUS) {
                out.unpadded_pids.push(id);
            }
        }
    }
    for &id in &pids {
        // The packet before the first one: the previous part's last (or,
        // at a segment's start, the previous segment's last, which ended on 15).
        let before = counters.so_far(id) + COUNTER_MODULUS - 1;
        let mut counter = (before % COUNTER_MODULUS) as u8;
        for p in packets.iter_mut().filter(|p| pid(p) == id) {
            if has_payload(p) {
                counter = (counter + 1) % COUNTER_MODULUS as u8;
            }
            // A packet without payload repeats the counter (2.4.3.3).
            set_counter(p, counter);
        }
        counters.add(id, carrying(&packets, id));
    }
    out.bytes = packets.concat();
    Ok(out)
}

/// The packets of a transport stream, checked whole and in sync.
fn packets_of(ts: &[u8]) -> Result<Vec<Packet>, NotTransportStream> {
    if !ts.len().is_multiple_of(PACKET_LEN) {
        return Err(NotTransportStream::PartialPacket(ts.len()));
    }
    let mut packets: Vec<Packet> = Vec::with_capacity(ts.len() / PACKET_LEN + 64);
    for (i, chunk) in ts.chunks_exact(PACKET_LEN).enumerate() {
        if chunk[0] != SYNC_BYTE {
            return Err(NotTransportStream::LostSync(i));
        }
        let mut p = [0u8; PACKET_LEN];
        p.copy_from_slice(chunk);
        packets.push(p);
    }
    Ok(packets)
}

/// How many trailing PES units [`pad_pes`] may spread before giving up.
const MAX_PES_TO_SPREAD: usize = 16;

/// The movable end of one PES: the packets whose bytes can be spread over
/// more packets.
struct PesRun {
    /// Indices of the packets, in stream order.
    packets: Vec<usize>,
    /// Whether the first of them starts the PES (its header must stay whole).
    starts_pes: bool,
    /// The PES header's length, when `starts_pes`.
    header_len: usize,
    /// What the first packet's adaptation field carries besides stuffing.
    kept: Vec<u8>,
    /// The payload bytes of the run.
    bytes: usize,
    /// Index of the packet that starts this PES: the next run ends before it.
    pes_start: usize,
}

impl PesRun {
    /// How many packets the run's bytes can fill at most.
    fn most_packets(&self) -> usize {
        let first_needs = if self.starts_pes {
            self.header_len.max(1)
        } else {
            1
        };
        if first_needs > room_for(&self.kept) || self.bytes < first_needs {
            return self.packets.len();
        }
        (self.bytes - first_needs + 1).max(self.packets.len())
    }

    /// How many packets can be added.
    fn spare(&self) -> usize {
        self.most_packets() - self.packets.len()
    }
}

/// The movable end of the last PES of `id` among `packets[..end]`: back from
/// its last packet with a payload up to and including its first packet
/// (whose adaptation field, a random-access flag or a PCR, is kept), or up to
/// a packet after it with more than stuffing in its adaptation field. `None`
/// when there is no such PES (no packet, or `id` carries tables).
fn last_pes(packets: &[Packet], id: u16, end: usize) -> Option<PesRun> {
    let mut run: Vec<usize> = Vec::new();
    let mut blocked = false;
    for i in (0..end).rev() {
        let p = &packets[i];
        if pid(p) != id || !has_payload(p) {
            continue;
        }
        if !unit_start(p) && !only_stuffing(p) {
            blocked = true;
        }
        if !blocked {
            run.push(i);
        }
        if unit_start(p) {
            let body = payload(p);
            if body.len() < 9 || body[..3] != [0, 0, 1] {
                return None; // a table, not a PES
            }
            run.reverse();
            let first = *run.first()?;
            let starts_pes = first == i;
            let kept = adaptation_content(&packets[first])?;
            let bytes = run.iter().map(|&k| payload(&packets[k]).len()).sum();
            return Some(PesRun {
                packets: run,
                starts_pes,
                header_len: 9 + body[8] as usize,
                kept,
                bytes,
                pes_start: i,
            });
        }
    }
    None
}

/// Spreads the last PES units of `id` over `missing` more packets, the last
/// one first. False (and nothing changed) when `id` is not a PES stream or
/// its last [`MAX_PES_TO_SPREAD`] PES units have too few movable bytes.
fn pad_pes(packets: &mut Vec<Packet>, id: u16, missing: usize) -> bool {
    let mut plan: Vec<(PesRun, usize)> = Vec::new();
    let mut left = missing;
    let mut end = packets.len();
    while left > 0 && plan.len() < MAX_PES_TO_SPREAD {
        let Some(run) = last_pes(packets, id, end) else {
            break;
        };
        end = run.pes_start;
        let add = run.spare().min(left);
        left -= add;
        if add > 0 {
            plan.push((run, add));
        }
    }
    if left > 0 {
        return false;
    }
    // Later runs first: inserting after them leaves earlier indices valid.
    for (run, add) in plan {
        spread(packets, &run, add);
    }
    true
}

/// Rewrites `run`'s bytes over `add` more packets: the first ones take the
/// run's places, the extra ones follow its last, so the PES stays in order
/// within its PID.
fn spread(packets: &mut Vec<Packet>, run: &PesRun, add: usize) {
    let Some(&first) = run.packets.first() else {
        return;
    };
    let bytes: Vec<u8> = run
        .packets
        .iter()
        .flat_map(|&i| payload(&packets[i]))
        .copied()
        .collect();
    let count = run.packets.len() + add;
    let like = packets[first];
    let mut rebuilt = Vec::with_capacity(count);
    let mut rest = &bytes[..];
    for k in 0..count {
        let later = count - k - 1;
        let (adaptation, room) = if k == 0 {
            (&run.kept[..], room_for(&run.kept))
        } else {
            (&[][..], MAX_PAYLOAD)
        };
        let take = room.min(rest.len() - later);
        rebuilt.push(packet_with(
            &like,
            run.starts_pes && k == 0,
            adaptation,
            &rest[..take],
        ));
        rest = &rest[take..];
    }
    let last = *run.packets.last().unwrap_or(&first);
    let extra = rebuilt.split_off(run.packets.len());
    for (&i, p) in run.packets.iter().zip(rebuilt) {
        packets[i] = p;
    }
    packets.splice(last + 1..last + 1, extra);
}

/// Repeats the last whole table section of `id` `missing` times. False when
/// `id` carries no section that fits in one packet.
fn pad_table(packets: &mut Vec<Packet>, id: u16, missing: usize) -> bool {
    let Some(index) = packets.iter().rposition(|p| {
        if pid(p) != id || !unit_start(p) {
            return false;
        }
        let body = payload(p);
        // pointer_field 0, then table_id and a section_length that fits.
        if body.len() < 4 || body[0] != 0 || body[1] == 0xff {
            return false;
        }
        let section_len = (usize::from(body[2] & 0x0f) << 8) | usize::from(body[3]);
        1 + 3 + section_len <= body.len()
    }) else {
        return false;
    };
    let copy = packets[index];
    packets.splice(index + 1..index + 1, std::iter::repeat_n(copy, missing));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: u16 = 0x41;
    const AUDIO: u16 = 0x42;
    const PMT: u16 = 0x20;

    /// A PES of `len` bytes on `id` cut into packets as a muxer would, the
    /// last one stuffed; the first carries a PCR when asked.
    fn pes(id: u16, len: usize, pcr: bool) -> Vec<Packet> {
        let mut body = vec![0x00, 0x00, 0x01, 0xe0, 0, 0, 0x80, 0x80, 5, 1, 2, 3, 4, 5];
        body.extend((0..len.saturating_sub(body.len())).map(|i| (i % 251) as u8));
        let like = {
            let mut p = [0u8; PACKET_LEN];
            p[1] = (id >> 8) as u8;
            p[2] = id as u8;
            p
        };
        let mut out = Vec::new();
        let mut rest = &body[..];
        let mut first = true;
        while !rest.is_empty() {
            let room = if first && pcr {
                MAX_PAYLOAD - 8
            } else {
                MAX_PAYLOAD
            };
            let take = room.min(rest.len());
            let mut p = packet_with(&like, first, &[], &rest[..take]);
            if first && pcr {
                // Adaptation field: length 7, PCR flag, a PCR, then payload.
                let mut with_pcr = [0xffu8; PACKET_LEN];
                with_pcr[..4].copy_from_slice(&p[..4]);
                with_pcr[3] = (with_pcr[3] & 0xcf) | 0x30;
                with_pcr[4] = (PACKET_LEN - HEADER_LEN - 1 - take) as u8;
                with_pcr[5] = 0x10;
                with_pcr[6..12].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
                with_pcr[PACKET_LEN - take..].copy_from_slice(&rest[..take]);
                p = with_pcr;
            }
            out.push(p);
            rest = &rest[take..];
            first = false;
        }
        out
    }

    fn table(id: u16, table_id: u8) -> Packet {
        let mut p = [0xffu8; PACKET_LEN];
        p[0] = SYNC_BYTE;
        p[1] = 0x40 | (id >> 8) as u8;
        p[2] = id as u8;
        p[3] = 0x10;
        p[4..12].copy_from_slice(&[0, table_id, 0xb0, 13, 0, 1, 0xc1, 0]);
        p
    }

    /// A segment as a muxer writes it, its counters running on from `from`.
    fn segment(from: u8, video_frames: &[usize], audio_frames: &[usize]) -> Vec<u8> {
        let mut packets = vec![table(0, 0x00), table(PMT, 0x02)];
        let mut audio = audio_frames.iter();
        for (i, &v) in video_frames.iter().enumerate() {
            packets.extend(pes(VIDEO, v, i == 0));
            if let Some(&a) = audio.next() {
                packets.extend(pes(AUDIO, a, false));
            }
        }
        let mut counters = std::collections::HashMap::new();
        for p in &mut packets {
            let c = counters.entry(pid(p)).or_insert(from);
            set_counter(p, *c);
            *c = (*c + 1) % 16;
        }
        packets.concat()
    }

    fn packets_of(ts: &[u8]) -> impl Iterator<Item = &Packet> {
        ts.chunks_exact(PACKET_LEN)
            .map(|p| <&Packet>::try_from(p).expect("whole packets"))
    }

    fn counters(ts: &[u8], id: u16) -> Vec<u8> {
        packets_of(ts)
            .filter(|p| pid(p) == id)
            .map(|p| p[3] & 0x0f)
            .collect()
    }

    /// Every PID's payload bytes, in order: what a demuxer reassembles.
    fn carried(ts: &[u8], id: u16) -> Vec<u8> {
        packets_of(ts)
            .filter(|p| pid(p) == id)
            .flat_map(|p| payload(p).to_vec())
            .collect()
    }

    fn pes_starts(ts: &[u8], id: u16) -> usize {
        packets_of(ts)
            .filter(|p| pid(p) == id && unit_start(p))
            .count()
    }

    #[test]
    fn parts_normalized_in_order_make_the_normalized_segment() {
        // A segment cut into three parts at packet boundaries, each part
        // starting with the tables again (as the worker's parts do).
        let tables = [table(0, 0x00), table(PMT, 0x02)].concat();
        let first = segment(3, &[9000, 1200], &[370, 370]);
        let second = [
            tables.clone(),
            segment(5, &[700, 700], &[370, 370])[2 * PACKET_LEN..].to_vec(),
        ]
        .concat();
        let third = [
            tables,
            segment(7, &[3000, 650], &[370, 370])[2 * PACKET_LEN..].to_vec(),
        ]
        .concat();
        let mut so_far = SegmentCounters::default();
        let parts: Vec<Vec<u8>> = [(&first, false), (&second, false), (&third, true)]
            .into_iter()
            .map(|(part, last)| {
                let out = normalize_part(part, &mut so_far, last).expect("ts");
                assert!(out.unpadded_pids.is_empty(), "{:?}", out.unpadded_pids);
                assert_eq!(out.added_packets > 0, last, "only the last part is padded");
                out.bytes
            })
            .collect();
        let joined = parts.concat();
        for id in [0, PMT, VIDEO, AUDIO] {
            let c = counters(&joined, id);
            assert_eq!(c.first(), Some(&0), "pid {id:#x} starts at 0");
            assert_eq!(c.last(), Some(&15), "pid {id:#x} ends at 15");
            for pair in c.windows(2) {
                assert_eq!(pair[1], (pair[0] + 1) % 16, "pid {id:#x}: {c:?}");
            }
            // Each part goes on from the one before.
            let ends: Vec<u8> = parts
                .iter()
                .map(|p| *counters(p, id).last().expect("pid in part"))
                .collect();
            let starts: Vec<u8> = parts.iter().map(|p| counters(p, id)[0]).collect();
            assert_eq!(starts[1], (ends[0] + 1) % 16, "pid {id:#x}");
            assert_eq!(starts[2], (ends[1] + 1) % 16, "pid {id:#x}");
        }
        let whole = [first.clone(), second.clone(), third.clone()].concat();
        for id in [VIDEO, AUDIO] {
            assert_eq!(
                carried(&joined, id),
                carried(&whole, id),
                "pid {id:#x} carries the same bytes"
            );
        }
    }

    #[test]
    fn every_pid_counts_from_0_to_15_and_carries_the_same_bytes() {
        let written = segment(9, &[9000, 1200, 700, 3000], &[370, 370, 370]);
        let out = normalize(&written).expect("a transport stream");
        assert!(out.unpadded_pids.is_empty(), "{:?}", out.unpadded_pids);
        for id in [0, PMT, VIDEO, AUDIO] {
            let c = counters(&out.bytes, id);
            assert_eq!(c.first(), Some(&0), "pid {id:#x} starts at 0");
            assert_eq!(c.last(), Some(&15), "pid {id:#x} ends at 15");
            assert_eq!(c.len() % 16, 0, "pid {id:#x}: {c:?}");
            for pair in c.windows(2) {
                assert_eq!(pair[1], (pair[0] + 1) % 16, "pid {id:#x}: {c:?}");
            }
        }
        for id in [VIDEO, AUDIO] {
            assert_eq!(
                carried(&out.bytes, id),
                carried(&written, id),
                "pid {id:#x}"
            );
            assert_eq!(pes_starts(&out.bytes, id), pes_starts(&written, id));
        }
        let tables = carried(&out.bytes, 0);
        assert_eq!(tables.len() % MAX_PAYLOAD, 0);
        assert!(tables
            .chunks(MAX_PAYLOAD)
            .all(|t| t == carried(&written, 0).as_slice()));
    }

    #[test]
    fn segments_from_two_writers_follow_each_other() {
        // The same content counted from different starts, as two workers do.
        let a = normalize(&segment(14, &[5000, 800], &[370, 370]))
            .expect("ts")
            .bytes;
        let b = normalize(&segment(1, &[5000, 800], &[370, 370]))
            .expect("ts")
            .bytes;
        assert_eq!(a, b, "the same segment is the same bytes from either");
        let mut joined = a.clone();
        joined.extend(&b);
        for id in [0, PMT, VIDEO, AUDIO] {
            let c = counters(&joined, id);
            for pair in c.windows(2) {
                assert_eq!(pair[1], (pair[0] + 1) % 16, "pid {id:#x}: {c:?}");
            }
        }
    }

    #[test]
    fn a_pcr_stays_where_it_was_and_short_pes_splits_after_its_header() {
        // One small audio PES in one packet: it must split after its header.
        let written = segment(3, &[400], &[60]);
        let out = normalize(&written).expect("ts");
        assert!(out.unpadded_pids.is_empty(), "{:?}", out.unpadded_pids);
        assert_eq!(carried(&out.bytes, AUDIO), carried(&written, AUDIO));
        let first_audio = packets_of(&out.bytes)
            .find(|p| pid(p) == AUDIO)
            .expect("audio");
        assert!(
            payload(first_audio).len() >= 14,
            "the PES header stays whole"
        );
        let pcr_packets = |ts: &[u8]| {
            ts.chunks_exact(PACKET_LEN)
                .filter(|p| p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0)
                .map(|p| p[..12].to_vec())
                .map(|mut h| {
                    h[3] &= 0xf0;
                    h
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(pcr_packets(&out.bytes), pcr_packets(&written));
    }

    #[test]
    fn a_short_pes_whose_first_packet_has_flags_is_split_keeping_them() {
        // Audio as mpegtsmux writes it: each PES's first packet has an
        // adaptation field (here a PCR), and the last PES is short: its one
        // continuation packet carries 10 bytes, too few for 14 more packets.
        let mut packets = vec![table(0, 0x00), table(PMT, 0x02)];
        packets.extend(pes(AUDIO, 176 + 10, true));
        assert_eq!(packets.len(), 4);
        let written: Vec<u8> = packets.concat();
        let out = normalize(&written).expect("ts");
        assert!(out.unpadded_pids.is_empty(), "{:?}", out.unpadded_pids);
        assert_eq!(counters(&out.bytes, AUDIO), (0..16).collect::<Vec<u8>>());
        assert_eq!(carried(&out.bytes, AUDIO), carried(&written, AUDIO));
        let first = packets_of(&out.bytes)
            .find(|p| pid(p) == AUDIO)
            .expect("audio");
        assert!(unit_start(first));
        assert_eq!(first[5], 0x10, "the PCR flag stays");
        assert_eq!(&first[6..12], &[1, 2, 3, 4, 5, 6], "the PCR stays");
        assert!(payload(first).len() >= 14, "the PES header stays whole");
    }

    #[test]
    fn tiny_pes_units_at_the_end_share_the_padding() {
        // Near-silent audio at an input's end: one-packet PES units of 27
        // bytes (a 14-byte header and 13 of AAC), each able to take 13 more
        // packets at most: the last two share the 15 missing.
        let mut packets = vec![table(0, 0x00), table(PMT, 0x02)];
        for _ in 0..17 {
            packets.extend(pes(AUDIO, 27, false));
        }
        let written: Vec<u8> = packets.concat();
        let out = normalize(&written).expect("ts");
        assert!(out.unpadded_pids.is_empty(), "{:?}", out.unpadded_pids);
        let c = counters(&out.bytes, AUDIO);
        assert_eq!(c.len(), 32);
        assert_eq!((c[0], c[31]), (0, 15));
        assert_eq!(carried(&out.bytes, AUDIO), carried(&written, AUDIO));
        assert_eq!(pes_starts(&out.bytes, AUDIO), 17);
        // Every PES still starts with its whole header in its first packet.
        for p in packets_of(&out.bytes).filter(|p| pid(p) == AUDIO && unit_start(p)) {
            assert!(payload(p).len() >= 14, "{:?}", payload(p));
        }
    }

    #[test]
    fn a_multiple_of_16_is_renumbered_without_padding() {
        // 16 video packets exactly: the first has a PCR, 15 full ones follow.
        let written = segment(7, &[MAX_PAYLOAD - 8 + 15 * MAX_PAYLOAD], &[]);
        let video = counters(&written, VIDEO).len();
        assert_eq!(video, 16);
        let out = normalize(&written).expect("ts");
        assert_eq!(counters(&out.bytes, VIDEO), (0..16).collect::<Vec<u8>>());
    }

    #[test]
    fn what_is_not_a_transport_stream_is_refused() {
        assert_eq!(
            normalize(&[0x47; 100]),
            Err(NotTransportStream::PartialPacket(100))
        );
        let mut ts = segment(0, &[400], &[]);
        ts[PACKET_LEN] = 0;
        assert_eq!(normalize(&ts), Err(NotTransportStream::LostSync(1)));
    }
}
