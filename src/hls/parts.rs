//! What a low-latency media playlist says of its parts (RFC 8216bis: LL-HLS):
//! the part target, whether the server holds blocking reloads, every
//! `EXT-X-PART` with the segment and index it belongs to, and the preload
//! hint. m3u8-rs reads none of these tags (m3u8-rs#89), so they are read
//! here from the text, beside its parse.
//!
//! ```text
//! #EXT-X-MEDIA-SEQUENCE:41
//! #EXT-X-PART:...URI="segment000042_part0.ts"   -> part (42, 0): listed before segment 42
//! #EXTINF:2.000,
//! segment000042.ts                              -> segment 42 complete
//! #EXT-X-PART:...URI="segment000043_part0.ts"   -> part (43, 0): segment 43 being made
//! #EXT-X-PRELOAD-HINT:TYPE=PART,URI="segment000043_part1.ts"
//! ```

use std::time::Duration;

/// One `EXT-X-PART`, placed in its segment.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    /// The media sequence number of its (parent) segment.
    pub sequence: u64,
    /// Its index within the segment, from 0.
    pub index: u32,
    pub uri: String,
    pub duration: Duration,
    pub independent: bool,
}

/// The low-latency facts of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct PartFacts {
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target: Duration,
    /// `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK`, when given.
    pub part_hold_back: Option<Duration>,
    /// Every listed part, in playlist order.
    pub parts: Vec<ListedPart>,
    /// `EXT-X-PRELOAD-HINT:TYPE=PART`'s URI.
    pub preload_hint: Option<String>,
}

impl PartFacts {
    /// Reads the part tags of a media playlist whose first segment is
    /// `media_sequence`; `None` when it announces no parts (no
    /// `EXT-X-PART-INF`).
    pub fn read(text: &str, media_sequence: u64) -> Option<PartFacts> {
        let mut facts = PartFacts {
            part_target: Duration::ZERO,
            can_block_reload: false,
            part_hold_back: None,
            parts: Vec::new(),
            preload_hint: None,
        };
        let mut has_part_inf = false;
        let (mut sequence, mut index) = (media_sequence, 0u32);
        for line in text.lines().map(str::trim) {
            if let Some(attributes) = line.strip_prefix("#EXT-X-PART-INF:") {
                has_part_inf = true;
                facts.part_target = seconds(attribute(attributes, "PART-TARGET")?)?;
            } else if let Some(attributes) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                facts.can_block_reload = attribute(attributes, "CAN-BLOCK-RELOAD") == Some("YES");
                facts.part_hold_back = attribute(attributes, "PART-HOLD-BACK").and_then(seconds);
            } else if let Some(attributes) = line.strip_prefix("#EXT-X-PART:") {
                if let (Some(uri), Some(duration)) = (
                    attribute(attributes, "URI"),
                    attribute(attributes, "DURATION").and_then(seconds),
                ) {
                    facts.parts.push(ListedPart {
                        sequence,
                        index,
                        uri: uri.to_string(),
                        duration,
                        independent: attribute(attributes, "INDEPENDENT") == Some("YES"),
                    });
                }
                index += 1;
            } else if let Some(attributes) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                if attribute(attributes, "TYPE") == Some("PART") {
                    facts.preload_hint = attribute(attributes, "URI").map(str::to_string);
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                sequence += 1;
                index = 0;
            }
        }
        has_part_inf.then_some(facts)
    }

    /// The newest listed part: (segment, index).
    pub fn newest(&self) -> Option<(u64, u32)> {
        self.parts.last().map(|p| (p.sequence, p.index))
    }

    /// The parts of segment `sequence`.
    pub fn of_segment(&self, sequence: u64) -> impl Iterator<Item = &ListedPart> {
        self.parts.iter().filter(move |p| p.sequence == sequence)
    }
}

/// The value of `name` in an attribute list, quotes removed.
pub fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    split_attributes(list).into_iter().find_map(|a| {
        let (key, value) = a.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// An attribute list split on the commas outside quotes.
pub fn split_attributes(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

fn seconds(value: &str) -> Option<Duration> {
    let s: f64 = value.parse().ok()?;
    (0.0..1e6).contains(&s).then(|| Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const LOW_LATENCY: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200,HOLD-BACK=6.000\n\
#EXT-X-PART-INF:PART-TARGET=0.40000\n#EXT-X-MEDIA-SEQUENCE:41\n\
#EXTINF:2.000,\nsegment000041.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000042_part0.ts\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000042_part1.ts\"\n\
#EXTINF:0.800,\nsegment000042.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000043_part0.ts\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment000043_part1.ts\"\n";

    #[test]
    fn parts_are_placed_in_their_segments_and_the_hint_is_read() {
        let facts = PartFacts::read(LOW_LATENCY, 41).expect("low latency");
        assert_eq!(facts.part_target, Duration::from_millis(400));
        assert!(facts.can_block_reload);
        assert_eq!(facts.part_hold_back, Some(Duration::from_millis(1200)));
        let placed: Vec<(u64, u32, bool)> = facts
            .parts
            .iter()
            .map(|p| (p.sequence, p.index, p.independent))
            .collect();
        assert_eq!(placed, [(42, 0, true), (42, 1, false), (43, 0, true)]);
        assert_eq!(facts.newest(), Some((43, 0)));
        assert_eq!(facts.of_segment(42).count(), 2);
        assert_eq!(
            facts.preload_hint.as_deref(),
            Some("segment000043_part1.ts")
        );
    }

    #[test]
    fn a_playlist_without_part_inf_has_no_part_facts() {
        let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\na.ts\n";
        assert_eq!(PartFacts::read(plain, 0), None);
        assert_eq!(attribute("A=1,URI=\"x,y\",B=2", "URI"), Some("x,y"));
        assert_eq!(attribute("A=1", "B"), None);
    }
}
