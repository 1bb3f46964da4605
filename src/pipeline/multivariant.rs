//! A ladder's shared facts and its multivariant playlist: the signal's
//! `playlist.m3u8` (the seed's URL) naming one media playlist per rendition,
//! with what players choose by (Apple's authoring spec 9): `BANDWIDTH` (the
//! peak segment bit rate measured so far), `AVERAGE-BANDWIDTH` (over the
//! recent segments), `CODECS` (read from the stream's own SPS), `RESOLUTION`
//! and `FRAME-RATE`.
//!
//! ```text
//! publisher 720p --segment--+                 #EXT-X-STREAM-INF:BANDWIDTH=..,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,..
//! publisher 480p --segment--+--> LadderFacts --> 720p.m3u8
//! publisher 360p --segment--+        |          ...
//!                                    +--> EXT-X-RENDITION-REPORT for each sibling (low latency)
//! ```
//!
//! The multivariant playlist is written once every rendition has published a
//! segment (so its codecs are known), and again whenever what it says
//! changes; each rendition's publisher tells this shared state what it
//! published, on its own muxer thread. Pure apart from writing the file.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::error::RunError;
use super::files::write_atomically;
use super::ladder::Rung;
use super::playlist::RenditionReport;

/// Segments the average bit rate is taken over (a minute of 2 s segments).
pub const AVERAGE_OVER: usize = 30;
/// The audio codec every rendition carries: AAC-LC from avenc_aac.
pub const AAC_LC: &str = "mp4a.40.2";

/// What one rendition has published, as far as its siblings and the
/// multivariant playlist care.
#[derive(Debug, Clone)]
struct RenditionFacts {
    rung: Rung,
    /// Its media playlist's name: `720p.m3u8`.
    playlist: String,
    /// `avc1.PPCCLL` from the SPS of its first segment.
    video_codec: Option<String>,
    /// The highest segment bit rate so far, bit/s.
    peak_bps: u64,
    /// The recent segments' sizes and durations.
    recent: VecDeque<(u64, Duration)>,
    /// Its newest segment and part: what a sibling's rendition report says.
    newest: Option<(u64, Option<u32>)>,
}

/// A signal's ladder as published: every rendition's facts and the
/// multivariant playlist written from them.
#[derive(Debug)]
pub struct LadderFacts {
    /// Where the multivariant playlist is written.
    path: PathBuf,
    has_audio: bool,
    frame_rate: Option<f64>,
    renditions: Vec<RenditionFacts>,
    /// The text last written.
    written: Option<Vec<u8>>,
}

/// A rendition's media playlist name.
pub fn playlist_name(rung: &Rung) -> String {
    format!("{}.m3u8", rung.name())
}

/// What a rendition's segment and part names start with.
pub fn name_prefix(rung: &Rung) -> String {
    format!("{}_", rung.name())
}

impl LadderFacts {
    pub fn new(path: PathBuf, rungs: &[Rung], has_audio: bool, frame_rate: Option<f64>) -> Self {
        LadderFacts {
            path,
            has_audio,
            frame_rate,
            renditions: rungs
                .iter()
                .map(|rung| RenditionFacts {
                    rung: *rung,
                    playlist: playlist_name(rung),
                    video_codec: None,
                    peak_bps: 0,
                    recent: VecDeque::new(),
                    newest: None,
                })
                .collect(),
            written: None,
        }
    }

    /// Rendition `index` listed part `part` of segment `sequence` (or the
    /// whole segment, `part` none).
    pub fn listed(&mut self, index: usize, sequence: u64, part: Option<u32>) {
        if let Some(r) = self.renditions.get_mut(index) {
            r.newest = Some((sequence, part));
        }
    }

    /// Rendition `index` published a whole `segment`: its bit rate counts,
    /// its codec is read from the first one's SPS, and the multivariant
    /// playlist is written if what it says changed.
    pub fn segment_published(
        &mut self,
        index: usize,
        segment: &[u8],
        duration: Duration,
    ) -> Result<(), RunError> {
        let Some(r) = self.renditions.get_mut(index) else {
            return Ok(());
        };
        if r.video_codec.is_none() {
            r.video_codec = sps_profile(segment).map(|[profile, constraints, level]| {
                format!("avc1.{profile:02x}{constraints:02x}{level:02x}")
            });
        }
        let bytes = segment.len();
        if !duration.is_zero() {
            let bps = (bytes as f64 * 8.0 / duration.as_secs_f64()).ceil() as u64;
            r.peak_bps = r.peak_bps.max(bps);
            r.recent.push_back((bytes as u64, duration));
            while r.recent.len() > AVERAGE_OVER {
                r.recent.pop_front();
            }
        }
        self.write_if_changed()
    }

    /// The rendition reports rendition `index`'s playlist carries: its
    /// siblings' newest segment and part.
    pub fn reports_for(&self, index: usize) -> Vec<RenditionReport> {
        self.renditions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, r)| {
                let (last_msn, last_part) = r.newest?;
                Some(RenditionReport {
                    uri: r.playlist.clone(),
                    last_msn,
                    last_part,
                })
            })
            .collect()
    }

    /// The multivariant playlist, once every rendition's codec is known.
    pub fn render(&self) -> Option<Vec<u8>> {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        for r in &self.renditions {
            let video = r.video_codec.as_ref()?;
            let codecs = if self.has_audio {
                format!("{video},{AAC_LC}")
            } else {
                video.clone()
            };
            let (bytes, seconds) = r.recent.iter().fold((0u64, 0f64), |(b, s), (bytes, d)| {
                (b + bytes, s + d.as_secs_f64())
            });
            let average = if seconds > 0.0 {
                (bytes as f64 * 8.0 / seconds).ceil() as u64
            } else {
                r.peak_bps
            };
            let _ = write!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{codecs}\",RESOLUTION={}x{}",
                round_up_kbps(r.peak_bps),
                round_up_kbps(average),
                r.rung.width,
                r.rung.height
            );
            if let Some(rate) = self.frame_rate {
                let _ = write!(out, ",FRAME-RATE={rate:.3}");
            }
            let _ = writeln!(out, "\n{}", r.playlist);
        }
        Some(out.into_bytes())
    }

    fn write_if_changed(&mut self) -> Result<(), RunError> {
        let Some(text) = self.render() else {
            return Ok(());
        };
        if self.written.as_ref() == Some(&text) {
            return Ok(());
        }
        write_atomically(&self.path, &text)?;
        self.written = Some(text);
        Ok(())
    }
}

/// Bit rates are announced in whole kbit/s, rounded up: the peak stays a
/// peak, and a rate moving by a few bits does not rewrite the playlist.
fn round_up_kbps(bps: u64) -> u64 {
    bps.div_ceil(1000) * 1000
}

/// The SPS bytes naming an H.264 stream's codec (profile_idc, constraint
/// flags, level_idc), found right after the first SPS start code
/// (`00 00 01 67`) in `bytes`.
pub fn sps_profile(bytes: &[u8]) -> Option<[u8; 3]> {
    let at = bytes.windows(4).position(|w| w == [0, 0, 1, 0x67])? + 4;
    let found = bytes.get(at..at + 3)?;
    Some([found[0], found[1], found[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rungs() -> Vec<Rung> {
        vec![
            Rung {
                width: 1280,
                height: 720,
                kbps: 2800,
            },
            Rung {
                width: 640,
                height: 360,
                kbps: 800,
            },
        ]
    }

    #[test]
    fn written_once_every_codec_is_known_and_again_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("playlist.m3u8");
        let mut ladder = LadderFacts::new(path.clone(), &rungs(), true, Some(25.0));
        let two = Duration::from_secs(2);
        let segment = |len: usize, level: u8| {
            let mut bytes = vec![0u8; len];
            bytes[10..17].copy_from_slice(&[0, 0, 1, 0x67, 0x64, 0x00, level]);
            bytes
        };
        ladder
            .segment_published(0, &segment(700_000, 0x1f), two)
            .expect("write");
        assert!(!path.exists(), "360p has no segment yet");
        ladder
            .segment_published(1, &segment(200_000, 0x1e), two)
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("written");
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2800000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=25.000\n720p.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,AVERAGE-BANDWIDTH=800000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=25.000\n360p.m3u8\n"
        );
        // A smaller segment: the peak stays, the average moves.
        ladder
            .segment_published(0, &segment(500_000, 0x1f), two)
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("written");
        assert!(
            text.contains("BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2400000"),
            "{text}"
        );
    }

    #[test]
    fn each_rendition_reports_its_siblings_newest_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ladder = LadderFacts::new(dir.path().join("p.m3u8"), &rungs(), false, None);
        assert!(ladder.reports_for(0).is_empty(), "nothing published yet");
        ladder.listed(0, 42, Some(3));
        ladder.listed(1, 42, Some(2));
        assert_eq!(
            ladder.reports_for(0),
            vec![RenditionReport {
                uri: "360p.m3u8".into(),
                last_msn: 42,
                last_part: Some(2)
            }]
        );
        assert_eq!(ladder.reports_for(1)[0].uri, "720p.m3u8");
    }

    #[test]
    fn the_codec_comes_from_the_sps() {
        let mut pes = vec![
            0u8, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac,
        ];
        assert_eq!(sps_profile(&pes), Some([0x64, 0x00, 0x1f]));
        pes.truncate(12);
        assert_eq!(sps_profile(&pes), None);
        assert_eq!(round_up_kbps(2_400_001), 2_401_000);
    }
}
