//! The multivariant rules: what each `EXT-X-STREAM-INF` declares (RFC
//! 8216bis 4.4.6.2, Apple's authoring spec, section 9: multivariant
//! playlists) held to what its rendition's segments measure, and the
//! renditions held to each other.
//!
//! ```text
//!  playlist.m3u8 ─▶ BANDWIDTH, AVERAGE-BANDWIDTH, CODECS, RESOLUTION present
//!     │  each rendition watched as a media playlist (segments fetched once):
//!     ├─▶ 720p.m3u8 ─▶ peak segment bit rate, SPS (avc1.PPCCLL, size), ADTS (mp4a.40.2)
//!     └─▶ 480p.m3u8 ─▶ ...
//!  at the end, playlist.m3u8 again ─▶ BANDWIDTH >= 90% of the measured peak,
//!                                     CODECS and RESOLUTION as the segments say,
//!                                     segment n of every rendition at the same PTS
//! ```
//!
//! Apple's items are named by their section (9) and the attribute: the
//! lab could not confirm the item numbers, so the name says what to look
//! for rather than guess one.

use std::collections::BTreeMap;

use nonstop::hls::multivariant::Multivariant;
use nonstop::hls::parts::{attribute, split_attributes};

use super::rules;
use super::{Measured, VariantSeen};

/// BANDWIDTH may be this much under the measured peak segment bit rate (a
/// live stream's peak is only known so far), no more.
const BANDWIDTH_SHORTFALL: f64 = 0.10;
/// Segment n of every rendition starts at the same picture: within this
/// many 90 kHz ticks (1 ms, far under one frame).
const ALIGNMENT_TICKS: u64 = 90;

/// What one `EXT-X-STREAM-INF` declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Declared {
    /// Its media playlist, as written (relative to the multivariant playlist).
    pub(super) uri: String,
    pub(super) bandwidth: Option<u64>,
    pub(super) average_bandwidth: Option<u64>,
    /// The codecs it names, as written.
    pub(super) codecs: Option<Vec<String>>,
    pub(super) resolution: Option<(u32, u32)>,
}

/// Every variant a multivariant playlist declares, in order; empty for
/// anything else.
pub(super) fn declared(text: &[u8]) -> Vec<Declared> {
    let Some(ladder) = Multivariant::parse(text) else {
        return Vec::new();
    };
    ladder
        .variants
        .iter()
        .map(|v| {
            let number = |name| attribute(&v.attributes, name).and_then(|n| n.parse().ok());
            Declared {
                uri: v.uri.clone(),
                bandwidth: number("BANDWIDTH"),
                average_bandwidth: number("AVERAGE-BANDWIDTH"),
                codecs: codecs_of(&v.attributes),
                resolution: attribute(&v.attributes, "RESOLUTION").and_then(|r| {
                    let (w, h) = r.split_once('x')?;
                    Some((w.parse().ok()?, h.parse().ok()?))
                }),
            }
        })
        .collect()
}

/// The CODECS attribute's list (its commas are inside the quotes, so the
/// attribute list is split first).
fn codecs_of(attributes: &str) -> Option<Vec<String>> {
    split_attributes(attributes).into_iter().find_map(|a| {
        let (key, value) = a.split_once('=')?;
        (key.trim() == "CODECS").then(|| {
            value
                .trim()
                .trim_matches('"')
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
    })
}

/// The attributes a variant must declare, whatever its segments say.
pub(super) fn check_declared(variant: &Declared) -> Vec<(&'static str, String)> {
    let mut broken = Vec::new();
    if variant.bandwidth.is_none() {
        broken.push((
            rules::BANDWIDTH,
            format!("{}: no BANDWIDTH (a decimal integer)", variant.uri),
        ));
    }
    if variant.average_bandwidth.is_none() {
        broken.push((
            rules::AVERAGE_BANDWIDTH,
            format!("{}: no AVERAGE-BANDWIDTH", variant.uri),
        ));
    }
    if variant.codecs.as_ref().is_none_or(Vec::is_empty) {
        broken.push((rules::CODECS, format!("{}: no CODECS", variant.uri)));
    }
    if variant.resolution.is_none() {
        broken.push((
            rules::RESOLUTION,
            format!(
                "{}: no RESOLUTION (WIDTHxHEIGHT) for a video variant",
                variant.uri
            ),
        ));
    }
    broken
}

/// What a variant declares against what its rendition's segments measured.
pub(super) fn check_measured(
    variant: &Declared,
    measured: &Measured,
) -> Vec<(&'static str, String)> {
    let mut broken = Vec::new();
    let uri = &variant.uri;
    if let (Some(declared), Some((sequence, peak))) = (variant.bandwidth, measured.peak) {
        if (declared as f64) < (1.0 - BANDWIDTH_SHORTFALL) * peak {
            broken.push((
                rules::PEAK_BIT_RATE,
                format!(
                    "{uri}: BANDWIDTH {declared} is {:.0}% under segment {sequence}'s {peak:.0} bit/s (the peak measured)",
                    100.0 * (1.0 - declared as f64 / peak)
                ),
            ));
        }
    }
    let Some(codecs) = &measured.codecs else {
        return broken;
    };
    let listed: Vec<String> = variant
        .codecs
        .iter()
        .flatten()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let Some(video) = &codecs.video else {
        broken.push((
            rules::CODECS,
            format!("{uri}: no H.264 SPS at the start of its first segment checked, so CODECS cannot be held to it (and the segment cannot be decoded on its own)"),
        ));
        return broken;
    };
    let said = listed.iter().find(|c| c.starts_with("avc1."));
    if said != Some(video) {
        broken.push((
            rules::CODECS,
            format!(
                "{uri}: CODECS names {} for video, the segments' SPS says {video}",
                said.map_or("nothing", String::as_str)
            ),
        ));
    }
    let audio_listed = listed.iter().find(|c| c.starts_with("mp4a."));
    match (&codecs.audio, codecs.has_audio, audio_listed) {
        (Some(audio), _, said) if said != Some(audio) => broken.push((
            rules::CODECS,
            format!(
                "{uri}: the segments carry {audio} audio, CODECS names {}",
                said.map_or("no audio", String::as_str)
            ),
        )),
        (_, false, Some(said)) => broken.push((
            rules::CODECS,
            format!("{uri}: CODECS names {said}, the segments carry no audio"),
        )),
        _ => {}
    }
    if let Some((width, height)) = codecs.resolution {
        if variant.resolution != Some((width, height)) {
            broken.push((
                rules::RESOLUTION,
                format!(
                    "{uri}: RESOLUTION says {}, the segments' SPS says {width}x{height}",
                    variant
                        .resolution
                        .map_or("nothing".to_string(), |(w, h)| format!("{w}x{h}"))
                ),
            ));
        }
    }
    broken
}

/// What `variant` declared beside what its segments `measured`, for the report.
pub(super) fn seen(variant: &Declared, measured: &Measured) -> VariantSeen {
    let size = |(w, h): (u32, u32)| format!("{w}x{h}");
    let codecs = measured.codecs.as_ref();
    VariantSeen {
        uri: variant.uri.clone(),
        bandwidth: variant.bandwidth,
        peak_bps: measured.peak.map(|(_, bps)| bps.round() as u64),
        codecs: variant.codecs.as_ref().map(|c| c.join(",")),
        codecs_measured: codecs
            .map(|c| c.video.iter().chain(&c.audio).cloned().collect())
            .unwrap_or_default(),
        resolution: variant.resolution.map(size),
        resolution_measured: codecs.and_then(|c| c.resolution).map(size),
    }
}

/// Renditions a player can switch between at any segment: segment n of
/// each starts at the same PTS (each one's IDR frame is checked on its own).
pub(super) fn check_alignment(renditions: &[(&str, &Measured)]) -> Vec<(&'static str, String)> {
    let mut starts: BTreeMap<u64, Vec<(&str, u64)>> = BTreeMap::new();
    for (uri, measured) in renditions {
        for (&sequence, &pts) in &measured.first_pts {
            starts.entry(sequence).or_default().push((uri, pts));
        }
    }
    starts
        .into_iter()
        .filter(|(_, at)| at.len() > 1)
        .filter_map(|(sequence, at)| {
            let lowest = at.iter().map(|(_, pts)| *pts).min()?;
            let highest = at.iter().map(|(_, pts)| *pts).max()?;
            (highest - lowest > ALIGNMENT_TICKS).then(|| {
                let each: Vec<String> = at
                    .iter()
                    .map(|(uri, pts)| format!("{uri} at {pts}"))
                    .collect();
                (
                    rules::ALIGNED,
                    format!(
                        "segment {sequence} starts at different pictures ({}; 90 kHz ticks)",
                        each.join(", ")
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::codecs::SegmentCodecs;
    use super::*;

    const LADDER: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=1500000,AVERAGE-BANDWIDTH=1400000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=854x480,FRAME-RATE=25.000\n480p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS=\"avc1.64001e\"\n360p.m3u8\n";

    fn measured(peak: f64, video: &str, size: (u32, u32), audio: bool) -> Measured {
        Measured {
            peak: Some((7, peak)),
            codecs: Some(SegmentCodecs {
                video: Some(video.into()),
                resolution: Some(size),
                audio: audio.then(|| "mp4a.40.2".into()),
                has_audio: audio,
            }),
            first_pts: BTreeMap::new(),
        }
    }

    #[test]
    fn variants_are_read_with_what_they_declare() {
        let variants = declared(LADDER.as_bytes());
        assert_eq!(variants.len(), 2);
        assert_eq!(
            variants[0],
            Declared {
                uri: "480p.m3u8".into(),
                bandwidth: Some(1_500_000),
                average_bandwidth: Some(1_400_000),
                codecs: Some(vec!["avc1.64001e".into(), "mp4a.40.2".into()]),
                resolution: Some((854, 480)),
            }
        );
        assert!(check_declared(&variants[0]).is_empty());
        let missing: Vec<&str> = check_declared(&variants[1])
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(missing, [rules::AVERAGE_BANDWIDTH, rules::RESOLUTION]);
        assert!(declared(b"#EXTM3U\n#EXTINF:2,\na.ts\n").is_empty());
    }

    #[test]
    fn declarations_are_held_to_the_segments() {
        let variant = &declared(LADDER.as_bytes())[0];
        let rules_of = |m: &Measured| -> Vec<&str> {
            check_measured(variant, m)
                .into_iter()
                .map(|(r, _)| r)
                .collect()
        };
        let truth = measured(1_600_000.0, "avc1.64001e", (854, 480), true);
        assert!(
            rules_of(&truth).is_empty(),
            "within 10% of the peak is fine"
        );
        assert_eq!(
            rules_of(&measured(1_700_000.0, "avc1.64001e", (854, 480), true)),
            [rules::PEAK_BIT_RATE]
        );
        assert_eq!(
            rules_of(&measured(1_000_000.0, "avc1.640028", (854, 480), true)),
            [rules::CODECS]
        );
        assert_eq!(
            rules_of(&measured(1_000_000.0, "avc1.64001e", (854, 480), false)),
            [rules::CODECS],
            "mp4a listed, no audio"
        );
        assert_eq!(
            rules_of(&measured(1_000_000.0, "avc1.64001e", (640, 360), true)),
            [rules::RESOLUTION]
        );
    }

    #[test]
    fn renditions_starting_segments_at_other_pictures_are_named() {
        let mut a = measured(1.0, "avc1.64001e", (854, 480), true);
        let mut b = a.clone();
        a.first_pts = BTreeMap::from([(7, 1_800_000), (8, 1_980_000)]);
        b.first_pts = BTreeMap::from([(7, 1_800_000), (8, 1_983_600), (9, 2_160_000)]);
        let found = check_alignment(&[("480p.m3u8", &a), ("360p.m3u8", &b)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, rules::ALIGNED);
        assert!(found[0].1.starts_with("segment 8 "), "{}", found[0].1);
    }
}
