//! The bit-rate ladder a signal is encoded into (`LADDER`): from one decode,
//! one encode per rung, each its own rendition (media playlist, segments and
//! parts), so every viewer gets the best picture their network carries.
//!
//! ```text
//! LADDER=recommended   the ladder below: what `just up` and the compose file run
//! LADDER=1280x720@2800,854x480@1400,640x360@800
//!   input 1920x1080 -> 720p, 480p, 360p
//!   input 854x480   -> 480p, 360p          (never upscaled)
//!   input 320x240   -> 240p at 800 kbit/s  (nothing fits: the input's size, the lowest rate)
//! LADDER=single (the worker's default)       the seed's one rendition: playlist.m3u8 is its media playlist
//! ```
//!
//! Pure: parsing, choosing rungs for an input, naming. Free of GStreamer.

use std::fmt;
use std::str::FromStr;

/// The recommended ladder (`LADDER=recommended`, what `just up` runs):
/// Apple's authoring spec's 16:9 rungs up to 720p, at the rates it suggests
/// for H.264 (a little above them for the 2 s GOP every segment starts).
pub const RECOMMENDED_LADDER: &str = "1280x720@2800,854x480@1400,640x360@800";
/// The word for [`RECOMMENDED_LADDER`] in `LADDER`.
pub const RECOMMENDED: &str = "recommended";
/// The most rungs a ladder may have: each is one more encode.
pub const MAX_RUNGS: usize = 6;

/// One rung: a picture size and the video bit rate it is encoded at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    /// x264enc's bit rate, kbit/s.
    pub kbps: u32,
}

impl Rung {
    /// The rendition's name: its height, as players and operators say it.
    pub fn name(&self) -> String {
        format!("{}p", self.height)
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ladder {
    /// One rendition at the input's size and `VIDEO_KBPS`: the seed's output.
    Single,
    /// These rungs, highest first, each kept only where it does not upscale.
    Rungs(Vec<Rung>),
}

/// The worker's default: the seed's single rendition, so `playlist.m3u8`
/// stays a media playlist unless a ladder is asked for.
impl Default for Ladder {
    fn default() -> Self {
        Ladder::Single
    }
}

impl FromStr for Ladder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("single") {
            return Ok(Ladder::Single);
        }
        if s.eq_ignore_ascii_case(RECOMMENDED) {
            return RECOMMENDED_LADDER.parse();
        }
        let mut rungs = Vec::new();
        for item in s.split(',').map(str::trim) {
            let (size, kbps) = item.split_once('@').ok_or_else(|| {
                format!("'{item}': a rung is WIDTHxHEIGHT@KBPS, e.g. 1280x720@2800")
            })?;
            let (width, height) = size
                .split_once('x')
                .ok_or_else(|| format!("'{item}': the size is WIDTHxHEIGHT"))?;
            let number = |what: &str, v: &str, range: std::ops::RangeInclusive<u32>| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        format!(
                            "'{item}': {what} must be {} to {}",
                            range.start(),
                            range.end()
                        )
                    })
            };
            let rung = Rung {
                width: number("the width", width, 16..=7680)?,
                height: number("the height", height, 16..=4320)?,
                kbps: number("the bit rate (kbit/s)", kbps, 100..=50_000)?,
            };
            if !rung.width.is_multiple_of(2) || !rung.height.is_multiple_of(2) {
                return Err(format!(
                    "'{item}': width and height must be even (4:2:0 video)"
                ));
            }
            if rungs.iter().any(|r: &Rung| r.height == rung.height) {
                return Err(format!(
                    "'{item}': two rungs of height {} would share a name",
                    rung.height
                ));
            }
            rungs.push(rung);
        }
        if rungs.is_empty() || rungs.len() > MAX_RUNGS {
            return Err(format!(
                "a ladder has 1 to {MAX_RUNGS} rungs, or is 'single'"
            ));
        }
        rungs.sort_by(|a, b| b.height.cmp(&a.height).then(b.kbps.cmp(&a.kbps)));
        Ok(Ladder::Rungs(rungs))
    }
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ladder::Single => write!(f, "single"),
            Ladder::Rungs(rungs) => {
                let items: Vec<String> = rungs
                    .iter()
                    .map(|r| format!("{}x{}@{}", r.width, r.height, r.kbps))
                    .collect();
                write!(f, "{}", items.join(","))
            }
        }
    }
}

impl Ladder {
    /// [`RECOMMENDED_LADDER`].
    pub fn recommended() -> Ladder {
        RECOMMENDED_LADDER.parse().unwrap_or(Ladder::Single)
    }

    /// The rungs encoded for an input of `size`, highest first: those no
    /// larger than the input in either dimension; when none is, one at the
    /// input's size and the lowest rate. `None` for a single rendition.
    pub fn rungs_for(&self, size: (u32, u32)) -> Option<Vec<Rung>> {
        let Ladder::Rungs(rungs) = self else {
            return None;
        };
        let fitting: Vec<Rung> = rungs
            .iter()
            .copied()
            .filter(|r| r.width <= size.0 && r.height <= size.1)
            .collect();
        if !fitting.is_empty() {
            return Some(fitting);
        }
        let lowest = rungs.iter().map(|r| r.kbps).min().unwrap_or(800);
        Some(vec![Rung {
            width: size.0 & !1,
            height: size.1 & !1,
            kbps: lowest,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recommended_ladder_reads_and_prints_back() {
        assert_eq!(Ladder::default(), Ladder::Single);
        let ladder = Ladder::recommended();
        assert_eq!(ladder.to_string(), RECOMMENDED_LADDER);
        assert_eq!("recommended".parse::<Ladder>(), Ok(ladder.clone()));
        let Ladder::Rungs(rungs) = &ladder else {
            panic!("the default is a ladder");
        };
        let names: Vec<String> = rungs.iter().map(Rung::name).collect();
        assert_eq!(names, ["720p", "480p", "360p"]);
        assert_eq!("single".parse::<Ladder>(), Ok(Ladder::Single));
        assert_eq!("SINGLE".parse::<Ladder>(), Ok(Ladder::Single));
        // Any order in, highest first out.
        let mixed: Ladder = "640x360@800, 1280x720@2800".parse().expect("valid");
        assert_eq!(mixed.to_string(), "1280x720@2800,640x360@800");
    }

    #[test]
    fn bad_ladders_say_what_is_wrong() {
        for (text, says) in [
            ("", "WIDTHxHEIGHT@KBPS"),
            ("1280x720", "WIDTHxHEIGHT@KBPS"),
            ("1280-720@800", "WIDTHxHEIGHT"),
            ("1280x720@fast", "bit rate"),
            ("1280x720@10", "bit rate"),
            ("99999x720@800", "width"),
            ("641x360@800", "even"),
            ("640x360@800,480x360@600", "share a name"),
            ("2x2@800", "width"),
        ] {
            let error = text.parse::<Ladder>().expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
        let seven = ["64x64@100"; 7].join(",");
        assert!(seven.parse::<Ladder>().is_err());
    }

    #[test]
    fn rungs_never_upscale_the_input() {
        let ladder = Ladder::recommended();
        let heights = |size| -> Vec<u32> {
            ladder
                .rungs_for(size)
                .expect("a ladder")
                .iter()
                .map(|r| r.height)
                .collect()
        };
        assert_eq!(heights((1920, 1080)), [720, 480, 360]);
        assert_eq!(heights((1280, 720)), [720, 480, 360]);
        assert_eq!(heights((854, 480)), [480, 360]);
        assert_eq!(
            ladder.rungs_for((321, 241)),
            Some(vec![Rung {
                width: 320,
                height: 240,
                kbps: 800
            }]),
            "nothing fits: the input's (even) size at the lowest rate"
        );
        assert_eq!(Ladder::Single.rungs_for((1280, 720)), None);
    }
}
