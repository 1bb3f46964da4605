//! A low-latency media playlist read in one pass over its lines: the parts
//! it lists, each placed in its segment as RFC 8216bis places them, and the
//! preload hint's place. What a low-latency viewer asks for next, and what
//! the publication watch reads off the worker's folder.

use super::FetchError;

/// A part: its segment's media sequence number and its index within it.
pub type PartId = (u64, u32);

/// The parts a media playlist lists, in playlist order, and where its
/// preload hint points.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PartList<'a> {
    /// (segment, index within it, URI).
    parts: Vec<(u64, u32, &'a str)>,
    /// The place of `EXT-X-PRELOAD-HINT:TYPE=PART`: the part after the last
    /// listed (of the segment being made, or the first of the next).
    hint: Option<PartId>,
}

impl<'a> PartList<'a> {
    /// Reads a media playlist's parts the way RFC 8216bis places them: each
    /// `EXT-X-PART` belongs to the segment whose URI follows it, numbered
    /// from `EXT-X-MEDIA-SEQUENCE`, indexed from 0 within it.
    pub(crate) fn scan(body: &'a [u8]) -> Result<PartList<'a>, FetchError> {
        let text =
            std::str::from_utf8(body).map_err(|_| FetchError::Playlist("not UTF-8".into()))?;
        if !text.starts_with("#EXTM3U") {
            return Err(FetchError::Playlist("no #EXTM3U".into()));
        }
        let mut list = PartList::default();
        let (mut sequence, mut index) = (0u64, 0u32);
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                sequence = n
                    .trim()
                    .parse()
                    .map_err(|_| FetchError::Playlist(format!("media sequence '{n}'")))?;
            } else if let Some(attributes) = line.strip_prefix("#EXT-X-PART:") {
                if let Some(uri) = quoted(attributes, "URI=\"") {
                    list.parts.push((sequence, index, uri));
                }
                index += 1;
            } else if let Some(attributes) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                if attributes.contains("TYPE=PART") {
                    list.hint = Some((sequence, index));
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                sequence += 1;
                index = 0;
            }
        }
        Ok(list)
    }

    /// Every listed part.
    pub(crate) fn ids(&self) -> impl Iterator<Item = PartId> + '_ {
        self.parts.iter().map(|(s, i, _)| (*s, *i))
    }

    /// The URI of `part`, when listed.
    pub(crate) fn uri_of(&self, part: PartId) -> Option<&'a str> {
        self.parts
            .iter()
            .find(|(s, i, _)| (*s, *i) == part)
            .map(|(_, _, uri)| *uri)
    }

    /// The part a player asks for after `part`: the next one listed, else
    /// the preload hint's place (the next one to be published).
    pub(crate) fn after(&self, part: PartId) -> Option<PartId> {
        self.parts
            .iter()
            .map(|(s, i, _)| (*s, *i))
            .find(|p| *p > part)
            .or(self.hint)
    }

    /// Where a joining player starts: the preload hint's place, else the
    /// part after the newest listed.
    pub(crate) fn start(&self) -> Option<PartId> {
        self.hint
            .or_else(|| self.parts.last().map(|(s, i, _)| (*s, *i + 1)))
    }
}

/// The value after `key` (which ends with its opening quote) up to the
/// closing quote.
fn quoted<'a>(attributes: &'a str, key: &str) -> Option<&'a str> {
    let from = attributes.find(key)? + key.len();
    let len = attributes[from..].find('"')?;
    Some(&attributes[from..from + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200,HOLD-BACK=6.000\n\
        #EXT-X-PART-INF:PART-TARGET=0.40000\n#EXT-X-MEDIA-SEQUENCE:41\n\
        #EXTINF:2.000,\nsegment41.ts\n\
        #EXT-X-PART:DURATION=0.40000,URI=\"segment42_part0.ts\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.40000,URI=\"segment42_part1.ts\"\n\
        #EXTINF:0.800,\nsegment42.ts\n\
        #EXT-X-PART:DURATION=0.40000,URI=\"segment43_part0.ts\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment43_part1.ts\"\n";

    #[test]
    fn parts_are_placed_in_their_segments_as_the_product_places_them() {
        let list = PartList::scan(LIVE.as_bytes()).expect("a playlist");
        let ids: Vec<PartId> = list.ids().collect();
        assert_eq!(ids, [(42, 0), (42, 1), (43, 0)]);
        let facts = nonstop::hls::PlaylistFacts::parse(LIVE.as_bytes()).expect("parses");
        let theirs: Vec<PartId> = facts
            .low_latency
            .expect("low latency")
            .parts
            .iter()
            .map(|p| (p.sequence, p.index))
            .collect();
        assert_eq!(ids, theirs);
        assert_eq!(list.uri_of((42, 1)), Some("segment42_part1.ts"));
        assert_eq!(list.uri_of((44, 0)), None);
    }

    #[test]
    fn a_player_asks_for_the_next_listed_part_then_the_hinted_one() {
        let list = PartList::scan(LIVE.as_bytes()).expect("a playlist");
        assert_eq!(list.start(), Some((43, 1)));
        assert_eq!(list.after((42, 0)), Some((42, 1)));
        assert_eq!(list.after((42, 1)), Some((43, 0)));
        assert_eq!(list.after((43, 0)), Some((43, 1)));
        // A part that left the playlist: the oldest listed after it.
        assert_eq!(list.after((40, 3)), Some((42, 0)));
    }

    #[test]
    fn a_segment_just_finished_hints_the_first_part_of_the_next() {
        let text = LIVE.replace(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment43_part1.ts\"\n",
            "#EXTINF:0.400,\nsegment43.ts\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment44_part0.ts\"\n",
        );
        let list = PartList::scan(text.as_bytes()).expect("a playlist");
        assert_eq!(list.start(), Some((44, 0)));
        assert_eq!(list.after((43, 0)), Some((44, 0)));
    }

    #[test]
    fn what_is_not_a_playlist_is_refused() {
        assert!(PartList::scan(b"<html>").is_err());
        assert!(PartList::scan(&[0xff, 0xfe]).is_err());
    }
}
