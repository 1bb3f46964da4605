//! What a segment says of its own codecs, to hold a multivariant playlist's
//! `CODECS` and `RESOLUTION` to the truth: the H.264 sequence parameter set
//! of its first video PES (profile, constraint flags and level make
//! `avc1.PPCCLL`, RFC 6381; the coded size less its cropping is the
//! picture's size) and, when it carries AAC, the object type in the first
//! ADTS header (`mp4a.40.<type>`: 2 is AAC-LC).
//!
//! ```text
//!  segment ─▶ ts::packets ─▶ first video PES ─▶ NAL 7 (SPS) ─▶ avc1.64001e, 854x480
//!                          └▶ first audio PES ─▶ ADTS header ─▶ mp4a.40.2
//! ```
//!
//! Only what the validator compares is read; the rest of the SPS is walked
//! over as H.264 (ITU-T H.264 7.3.2.1.1) lays it out.

use crate::ts;

/// PES stream ids 0xE0-0xEF carry video, 0xC0-0xDF audio.
const VIDEO_STREAM_IDS: std::ops::RangeInclusive<u8> = 0xE0..=0xEF;
const AUDIO_STREAM_IDS: std::ops::RangeInclusive<u8> = 0xC0..=0xDF;
/// H.264 NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 7;
/// Profiles whose SPS carries chroma format, bit depths and scaling lists.
const HIGH_PROFILES: [u8; 12] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134];

/// A segment's codecs as its bytes say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentCodecs {
    /// `avc1.PPCCLL` from the first SPS, lower-case hex.
    pub video: Option<String>,
    /// The picture's size from that SPS, cropping applied.
    pub resolution: Option<(u32, u32)>,
    /// `mp4a.40.<object type>` from the first ADTS header, when there is audio.
    pub audio: Option<String>,
    /// Whether any audio PES was seen (even one without a readable header).
    pub has_audio: bool,
}

/// Reads the codecs of one MPEG-TS segment.
pub fn read(segment: &[u8]) -> SegmentCodecs {
    let video = first_pes(segment, &VIDEO_STREAM_IDS);
    let audio = first_pes(segment, &AUDIO_STREAM_IDS);
    let sps = video
        .as_deref()
        .and_then(find_sps)
        .and_then(|nal| Sps::parse(&nal));
    SegmentCodecs {
        video: sps.as_ref().map(Sps::codec),
        resolution: sps.as_ref().map(|s| (s.width, s.height)),
        audio: audio.as_deref().and_then(adts_codec),
        has_audio: audio.is_some(),
    }
}

/// The elementary bytes of the first PES whose stream id is in `ids`
/// (header removed), gathered across its packets.
fn first_pes(segment: &[u8], ids: &std::ops::RangeInclusive<u8>) -> Option<Vec<u8>> {
    let mut pid = None;
    let mut bytes = Vec::new();
    for packet in ts::packets(segment).filter(|p| !p.payload.is_empty()) {
        let data = packet.payload;
        match pid {
            None if packet.start
                && data.len() > 9
                && data[0..3] == [0, 0, 1]
                && ids.contains(&data[3]) =>
            {
                pid = Some(packet.pid);
                bytes.extend_from_slice(data.get(9 + data[8] as usize..).unwrap_or_default());
            }
            Some(p) if p == packet.pid => {
                if packet.start {
                    break;
                }
                bytes.extend_from_slice(data);
            }
            _ => {}
        }
    }
    pid.map(|_| bytes)
}

/// The first SPS NAL unit in Annex B bytes, emulation prevention removed.
fn find_sps(es: &[u8]) -> Option<Vec<u8>> {
    let start = es
        .windows(4)
        .position(|w| w[0..3] == [0, 0, 1] && w[3] & 0x1f == NAL_SPS)?
        + 3;
    let rest = &es[start..];
    let end = rest
        .windows(3)
        .position(|w| w == [0, 0, 1] || w == [0, 0, 0])
        .unwrap_or(rest.len());
    let mut nal = Vec::with_capacity(end);
    let mut zeros = 0;
    for &b in &rest[..end] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        nal.push(b);
    }
    Some(nal)
}

/// `mp4a.40.<object type>` from an ADTS header at the start of `es`.
fn adts_codec(es: &[u8]) -> Option<String> {
    let at = es
        .windows(2)
        .position(|w| w[0] == 0xff && w[1] & 0xf6 == 0xf0)?;
    let profile = es.get(at + 2)? >> 6;
    Some(format!("mp4a.40.{}", profile + 1))
}

/// What the validator needs of a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sps {
    profile: u8,
    constraints: u8,
    level: u8,
    width: u32,
    height: u32,
}

impl Sps {
    /// Reads `nal` (header byte first, emulation prevention removed).
    fn parse(nal: &[u8]) -> Option<Sps> {
        let (&profile, &constraints, &level) = (nal.get(1)?, nal.get(2)?, nal.get(3)?);
        let mut r = Bits::new(&nal[4..]);
        r.ue()?; // seq_parameter_set_id
        let mut chroma_format = 1;
        if HIGH_PROFILES.contains(&profile) {
            chroma_format = r.ue()?;
            if chroma_format == 3 {
                r.bit()?; // separate_colour_plane_flag
            }
            r.ue()?; // bit_depth_luma_minus8
            r.ue()?; // bit_depth_chroma_minus8
            r.bit()?; // qpprime_y_zero_transform_bypass_flag
            if r.bit()? == 1 {
                let lists = if chroma_format == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? == 1 {
                        r.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        r.ue()?; // log2_max_frame_num_minus4
        match r.ue()? {
            0 => {
                r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
            }
            1 => {
                r.bit()?; // delta_pic_order_always_zero_flag
                r.se()?; // offset_for_non_ref_pic
                r.se()?; // offset_for_top_to_bottom_field
                for _ in 0..r.ue()? {
                    r.se()?; // offset_for_ref_frame
                }
            }
            _ => {}
        }
        r.ue()?; // max_num_ref_frames
        r.bit()?; // gaps_in_frame_num_value_allowed_flag
        let width_mbs = r.ue()? + 1;
        let height_units = r.ue()? + 1;
        let frame_mbs_only = r.bit()?;
        if frame_mbs_only == 0 {
            r.bit()?; // mb_adaptive_frame_field_flag
        }
        r.bit()?; // direct_8x8_inference_flag
        let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
        if r.bit()? == 1 {
            (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        }
        // Crop units (H.264 7.4.2.1.1): chroma subsampling, and fields count twice.
        let (sub_width, sub_height) = match chroma_format {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let field = 2 - frame_mbs_only;
        let crop_x = sub_width * (left + right);
        let crop_y = sub_height * field * (top + bottom);
        Some(Sps {
            profile,
            constraints,
            level,
            width: (width_mbs * 16).checked_sub(crop_x)?,
            height: (field * height_units * 16).checked_sub(crop_y)?,
        })
    }

    /// `avc1.PPCCLL` (RFC 6381 3.3).
    fn codec(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.constraints, self.level
        )
    }
}

/// A bit reader over an RBSP, with H.264's Exp-Golomb codes.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Bits { bytes, at: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.bytes.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(bit))
    }

    /// ue(v): leading zeros, a one, then as many bits.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut value = 0u64;
        for _ in 0..zeros {
            value = (value << 1) | u64::from(self.bit()?);
        }
        u32::try_from((1u64 << zeros) - 1 + value).ok()
    }

    /// se(v): ue(v) mapped 0, 1, -1, 2, -2...
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    /// Walks over a scaling list of `size` entries (H.264 7.3.2.1.1.1).
    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i64, 8i64);
        for _ in 0..size {
            if next != 0 {
                next = (last + self.se()? + 256) % 256;
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's SPS NAL units (x264, High profile, level 3.0) as they
    /// are in its segments, emulation prevention bytes included: 854x480
    /// (864 coded, 10 columns cropped) and 640x360 (368 coded rows, 8 cropped).
    const SPS_480P: &str = "6764001eacb406c1ef3780b5060606a5000003000100000300328f162ea000";
    const SPS_360P: &str = "6764001eacb405017fcb80b5060606a5000003000100000300328f162ea000";

    fn annex_b(nal_hex: &str) -> Vec<u8> {
        let mut es = vec![0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1];
        es.extend(
            (0..nal_hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&nal_hex[i..i + 2], 16).expect("hex")),
        );
        es.extend([0, 0, 0, 1, 0x68, 0xee]);
        es
    }

    #[test]
    fn the_sps_gives_the_codec_string_and_the_cropped_size() {
        for (nal, size) in [(SPS_480P, (854, 480)), (SPS_360P, (640, 360))] {
            let sps = find_sps(&annex_b(nal)).and_then(|n| Sps::parse(&n));
            let sps = sps.unwrap_or_else(|| panic!("{nal} parses"));
            assert_eq!(sps.codec(), "avc1.64001e");
            assert_eq!((sps.width, sps.height), size);
        }
        assert_eq!(find_sps(&[0, 0, 1, 0x65, 1, 2]), None);
    }

    #[test]
    fn exp_golomb_codes_are_read() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let bytes = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = Bits::new(&bytes);
        let read: Vec<u32> = (0..5).filter_map(|_| r.ue()).collect();
        assert_eq!(read, [0, 1, 2, 3, 4]);
        let mut r = Bits::new(&[0b0100_1100]);
        assert_eq!((r.se(), r.se()), (Some(1), Some(-1)));
    }

    #[test]
    fn adts_headers_name_the_object_type() {
        assert_eq!(
            adts_codec(&[0xff, 0xf1, 0x50, 0x80]).as_deref(),
            Some("mp4a.40.2")
        );
        assert_eq!(adts_codec(&[1, 2, 3]), None);
    }
}
