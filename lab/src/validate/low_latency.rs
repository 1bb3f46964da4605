//! The low-latency rules (RFC 8216bis, the LL-HLS of Apple's authoring
//! spec), checked on every read of a media playlist that announces parts
//! (`EXT-X-PART-INF`): what its text says, then what the server does.
//!
//! ```text
//!  playlist text ─▶ parts vs PART-TARGET, parts of a segment vs its EXTINF,
//!                   first part INDEPENDENT, PART-HOLD-BACK, HOLD-BACK,
//!                   CAN-BLOCK-RELOAD, EXT-X-PRELOAD-HINT           (check_playlist)
//!  the server    ─▶ first part of each segment: GET, IDR first
//!                   hinted part, once listed: GET
//!                   ?_HLS_msn=n&_HLS_part=k+1 (after the newest): held, then lists it
//!                   ?_HLS_msn=far ahead: 400 at once                (check_server)
//! ```

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use url::Url;

use nonstop::hls::blocking::{hold_limit, BlockingReload};
use nonstop::hls::parts::attribute;
use nonstop::hls::{is_complete_transport_stream, PartFacts, PlaylistFacts};
use nonstop::service::http::root_cause;

use super::rules;
use crate::ts;

/// Part durations are written with a few decimals: this much over the part
/// target is rounding, not a longer part.
const PART_ROUNDING: Duration = Duration::from_millis(1);
/// Every part but a segment's last (and independent ones) lasts at least
/// this share of the part target (RFC 8216bis 4.4.4.9).
const SHORTEST_PART_SHARE: f64 = 0.85;
/// A completed segment's parts add up to its EXTINF within one frame (25 fps).
const PARTS_SUM_SLACK: Duration = Duration::from_millis(50);
/// PART-HOLD-BACK must be at least this many part targets...
const PART_HOLD_BACK_MUST: u32 = 2;
/// ...and should be at least this many (a warning below).
const PART_HOLD_BACK_SHOULD: u32 = 3;
/// HOLD-BACK, when given, must be at least this many target durations.
const HOLD_BACK_TARGETS: u32 = 3;
/// What a blocking reload may take beyond the three target durations a
/// server may hold it, for the answer to cross the network.
const BLOCKING_SLACK: Duration = Duration::from_secs(2);
/// `_HLS_msn` this many segments after the one being made: far past the two
/// a server may wait for, so a 400 is due whatever completes meanwhile.
const FAR_AHEAD: u64 = 10;
/// The far-ahead request is made on the first read and every this many reads.
const FAR_AHEAD_EVERY: usize = 4;
/// Hinted parts remembered until listed, and first parts remembered as checked.
const REMEMBERED: usize = 64;

/// What the server checks remember between reads.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// Segments whose first part was fetched and checked.
    first_parts: HashSet<u64>,
    /// Hinted part URIs not listed yet, oldest first.
    hints: VecDeque<String>,
}

/// A rule broken: the rule, the URL it was seen on (`None`: the playlist's),
/// and what was seen.
pub(super) type Finding = (&'static str, Option<String>, String);

/// Rules broken by a playlist's text, each with what was seen.
pub(super) type Broken = Vec<(&'static str, String)>;

/// What the text of a low-latency playlist breaks: violations, then warnings.
pub(super) fn check_playlist(
    text: &str,
    facts: &PlaylistFacts,
    ll: &PartFacts,
) -> (Broken, Broken) {
    let (mut broken, mut warned) = (Vec::new(), Vec::new());
    let target = ll.part_target;
    let seconds = |d: Duration| d.as_secs_f64();
    for (i, part) in ll.parts.iter().enumerate() {
        if part.duration > target + PART_ROUNDING {
            broken.push((
                rules::PART_TOO_LONG,
                format!(
                    "part {} lasts {:.3} s, over PART-TARGET {:.3} s",
                    part.uri,
                    seconds(part.duration),
                    seconds(target)
                ),
            ));
        }
        let last_of_segment = ll
            .parts
            .get(i + 1)
            .is_none_or(|next| next.sequence != part.sequence);
        if !last_of_segment
            && !part.independent
            && seconds(part.duration) < SHORTEST_PART_SHARE * seconds(target)
        {
            broken.push((
                rules::PART_TOO_SHORT,
                format!(
                    "part {} lasts {:.3} s, under 85% of PART-TARGET {:.3} s, and is neither independent nor its segment's last",
                    part.uri,
                    seconds(part.duration),
                    seconds(target)
                ),
            ));
        }
        if part.index == 0 && !part.independent {
            broken.push((
                rules::FIRST_PART_INDEPENDENT,
                format!(
                    "part {}, the first of segment {}, is not INDEPENDENT=YES",
                    part.uri, part.sequence
                ),
            ));
        }
    }
    for segment in facts.segments.iter() {
        let mut parts = ll.of_segment(segment.sequence).peekable();
        if parts.peek().is_none_or(|first| first.index != 0) {
            continue;
        }
        let sum: Duration = parts.map(|p| p.duration).sum();
        if sum.abs_diff(segment.duration) > PARTS_SUM_SLACK {
            broken.push((
                rules::PARTS_MAKE_SEGMENT,
                format!(
                    "the parts of segment {} add up to {:.3} s, its EXTINF says {:.3} s",
                    segment.sequence,
                    seconds(sum),
                    seconds(segment.duration)
                ),
            ));
        }
    }
    match ll.part_hold_back {
        None => broken.push((
            rules::PART_HOLD_BACK,
            "EXT-X-SERVER-CONTROL has no PART-HOLD-BACK, required with EXT-X-PART-INF".into(),
        )),
        Some(hold) if hold < target * PART_HOLD_BACK_MUST => broken.push((
            rules::PART_HOLD_BACK,
            format!(
                "PART-HOLD-BACK {:.3} s is under twice PART-TARGET {:.3} s",
                seconds(hold),
                seconds(target)
            ),
        )),
        Some(hold) if hold < target * PART_HOLD_BACK_SHOULD => warned.push((
            rules::PART_HOLD_BACK,
            format!(
                "PART-HOLD-BACK {:.3} s is under three times PART-TARGET {:.3} s (it should not be)",
                seconds(hold),
                seconds(target)
            ),
        )),
        Some(_) => {}
    }
    if let Some(hold) = hold_back(text) {
        if hold < facts.target_duration * HOLD_BACK_TARGETS {
            broken.push((
                rules::HOLD_BACK,
                format!(
                    "HOLD-BACK {:.3} s is under three target durations ({} s)",
                    seconds(hold),
                    (facts.target_duration * HOLD_BACK_TARGETS).as_secs()
                ),
            ));
        }
    }
    if !ll.parts.is_empty() && !ll.can_block_reload {
        broken.push((
            rules::CAN_BLOCK_RELOAD,
            "parts are listed but EXT-X-SERVER-CONTROL does not say CAN-BLOCK-RELOAD=YES".into(),
        ));
    }
    if !facts.end_list && ll.preload_hint.is_none() {
        broken.push((
            rules::PRELOAD_HINT,
            "a live low-latency playlist without EXT-X-PRELOAD-HINT for the next part".into(),
        ));
    }
    (broken, warned)
}

/// `HOLD-BACK` of the playlist's `EXT-X-SERVER-CONTROL`, when given.
fn hold_back(text: &str) -> Option<Duration> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("#EXT-X-SERVER-CONTROL:"))?;
    let seconds: f64 = attribute(line, "HOLD-BACK")?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// What the server does with parts and blocking reloads, asked after one
/// read of the playlist at `url` (`read`: which read, from 0).
pub(super) async fn check_server(
    client: &reqwest::Client,
    url: &Url,
    facts: &PlaylistFacts,
    ll: &PartFacts,
    memory: &mut Memory,
    read: usize,
) -> Vec<Finding> {
    let mut found = Vec::new();
    check_first_parts(client, url, ll, memory, &mut found).await;
    check_hinted_parts(client, url, facts, ll, memory, &mut found).await;
    if ll.can_block_reload && !facts.end_list {
        if let Some((msn, part)) = ll.newest() {
            let next = BlockingReload {
                msn,
                part: Some(part + 1),
            };
            if let Some(message) = blocking_reload(client, url, facts, next).await {
                found.push((rules::BLOCKING_RELOAD, None, message));
            }
        }
        if read.is_multiple_of(FAR_AHEAD_EVERY) {
            if let Some(message) = far_ahead(client, url, facts).await {
                found.push((rules::TOO_FAR_AHEAD, None, message));
            }
        }
    }
    found
}

/// Each segment's first part, once: fetched whole, an IDR frame first.
async fn check_first_parts(
    client: &reqwest::Client,
    url: &Url,
    ll: &PartFacts,
    memory: &mut Memory,
    found: &mut Vec<Finding>,
) {
    for part in ll.parts.iter().filter(|p| p.index == 0) {
        if !memory.first_parts.insert(part.sequence) {
            continue;
        }
        if memory.first_parts.len() > REMEMBERED {
            let oldest = memory.first_parts.iter().min().copied();
            oldest.map(|o| memory.first_parts.remove(&o));
        }
        let Ok(part_url) = url.join(&part.uri) else {
            found.push((
                "RFC 8216 4.2",
                None,
                format!("part URI '{}' does not resolve", part.uri),
            ));
            continue;
        };
        match fetch(client, &part_url).await {
            Err(e) => found.push((
                "RFC 8216 6.2.2",
                Some(part_url.to_string()),
                format!("a listed part could not be fetched: {e}"),
            )),
            Ok(bytes) => match ts::video_start(&bytes) {
                Some(start) if start.idr => {}
                _ => found.push((
                    rules::FIRST_PART_INDEPENDENT,
                    Some(part_url.to_string()),
                    format!(
                        "the first part of segment {} does not start with an IDR frame",
                        part.sequence
                    ),
                )),
            },
        }
    }
}

/// A hinted part, once a later read lists it, is there to fetch.
async fn check_hinted_parts(
    client: &reqwest::Client,
    url: &Url,
    facts: &PlaylistFacts,
    ll: &PartFacts,
    memory: &mut Memory,
    found: &mut Vec<Finding>,
) {
    let listed: HashSet<&str> = ll.parts.iter().map(|p| p.uri.as_str()).collect();
    let (due, waiting): (Vec<String>, Vec<String>) = memory
        .hints
        .drain(..)
        .partition(|hint| listed.contains(hint.as_str()));
    memory.hints.extend(waiting);
    for hint in due {
        let Ok(hint_url) = url.join(&hint) else {
            continue;
        };
        if let Err(e) = fetch(client, &hint_url).await {
            found.push((
                rules::HINTED_PART,
                Some(hint_url.to_string()),
                format!("the hinted part, now listed, could not be fetched: {e}"),
            ));
        }
    }
    if let Some(hint) = ll.preload_hint.as_ref().filter(|_| !facts.end_list) {
        if !listed.contains(hint.as_str()) && !memory.hints.contains(hint) {
            memory.hints.push_back(hint.clone());
            while memory.hints.len() > REMEMBERED {
                memory.hints.pop_front();
            }
        }
    }
}

/// Asks for `next` (the part after the newest listed) and judges the answer:
/// held no longer than the server may, then a playlist that lists it.
async fn blocking_reload(
    client: &reqwest::Client,
    url: &Url,
    facts: &PlaylistFacts,
    next: BlockingReload,
) -> Option<String> {
    let part = next.part.unwrap_or(0);
    let mut ask = url.clone();
    ask.set_query(Some(&format!("_HLS_msn={}&_HLS_part={part}", next.msn)));
    let limit = hold_limit(facts.target_duration);
    let started = Instant::now();
    let answer = client.get(ask).timeout(limit + BLOCKING_SLACK).send().await;
    let took = started.elapsed().as_secs_f64();
    let wanted = format!("part {part} of segment {}", next.msn);
    let response = match answer {
        Err(e) => {
            return Some(format!(
            "asked for {wanted} (the part after the newest listed): no answer within {:.1} s ({})",
            (limit + BLOCKING_SLACK).as_secs_f64(),
            root_cause(&e)
        ))
        }
        Ok(r) => r,
    };
    let status = response.status();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Some(format!(
            "asked for {wanted}: 503 after {took:.1} s, so it was not out within three target durations"
        ));
    }
    if !status.is_success() {
        return Some(format!("asked for {wanted}: answered {status}"));
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return Some(format!("asked for {wanted}: body cut ({})", root_cause(&e))),
    };
    match PlaylistFacts::parse(&body) {
        Err(e) => Some(format!("asked for {wanted}: not a media playlist ({e})")),
        Ok(answer) if !next.is_satisfied_by(&answer) => Some(format!(
            "asked for {wanted}: answered after {took:.1} s with a playlist that does not list it (newest part {:?})",
            answer.low_latency.as_ref().and_then(PartFacts::newest)
        )),
        Ok(_) => None,
    }
}

/// `_HLS_msn` far past the live edge is refused at once (400), not held.
async fn far_ahead(client: &reqwest::Client, url: &Url, facts: &PlaylistFacts) -> Option<String> {
    let msn = facts.next_sequence() + FAR_AHEAD;
    let mut ask = url.clone();
    ask.set_query(Some(&format!("_HLS_msn={msn}")));
    let limit = hold_limit(facts.target_duration) + BLOCKING_SLACK;
    let started = Instant::now();
    match client.get(ask).timeout(limit).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::BAD_REQUEST => None,
        Ok(r) => Some(format!(
            "_HLS_msn={msn} ({FAR_AHEAD} segments past the one being made) answered {} after {:.1} s, not 400",
            r.status(),
            started.elapsed().as_secs_f64()
        )),
        Err(e) => Some(format!(
            "_HLS_msn={msn} ({FAR_AHEAD} segments past the one being made) not answered: {}",
            root_cause(&e)
        )),
    }
}

/// GETs `url`: its bytes when 200 and whole MPEG-TS.
async fn fetch(client: &reqwest::Client, url: &Url) -> Result<bytes::Bytes, String> {
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| root_cause(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    let bytes = response.bytes().await.map_err(|e| root_cause(&e))?;
    if !is_complete_transport_stream(&bytes) {
        return Err(format!(
            "{} bytes are not whole MPEG-TS packets",
            bytes.len()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's playlist (one segment whole with its parts, one being made).
    const GOOD: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200,HOLD-BACK=6.000\n\
#EXT-X-PART-INF:PART-TARGET=0.40000\n#EXT-X-MEDIA-SEQUENCE:41\n\
#EXTINF:2.000,\ns41.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s42_p0.ts\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s42_p1.ts\"\n#EXT-X-PART:DURATION=0.40000,URI=\"s42_p2.ts\"\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s42_p3.ts\"\n#EXT-X-PART:DURATION=0.40000,URI=\"s42_p4.ts\"\n\
#EXTINF:2.000,\ns42.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"s43_p0.ts\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.20000,URI=\"s43_p1.ts\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s43_p2.ts\"\n";

    fn rules_broken(text: &str) -> (Vec<&'static str>, Vec<&'static str>) {
        let facts = PlaylistFacts::parse(text.as_bytes()).expect("parses");
        let ll = facts.low_latency.clone().expect("low latency");
        let (broken, warned) = check_playlist(text, &facts, &ll);
        (
            broken.into_iter().map(|(r, _)| r).collect(),
            warned.into_iter().map(|(r, _)| r).collect(),
        )
    }

    #[test]
    fn the_workers_playlist_breaks_no_rule() {
        // The newest part of the segment being made may be short: it may be its last.
        assert_eq!(rules_broken(GOOD), (vec![], vec![]));
    }

    #[test]
    fn each_text_rule_is_named() {
        for (from, to, rule) in [
            ("URI=\"s42_p1.ts\"", "URI=\"s42_p1.ts\",X=1", ""),
            (
                "DURATION=0.40000,URI=\"s42_p1",
                "DURATION=0.42000,URI=\"s42_p1",
                rules::PART_TOO_LONG,
            ),
            (
                "DURATION=0.20000,URI=\"s43_p1.ts\"\n",
                "DURATION=0.30000,URI=\"s43_p1.ts\"\n#EXT-X-PART:DURATION=0.40000,URI=\"s43_p1b.ts\"\n",
                rules::PART_TOO_SHORT,
            ),
            (
                "DURATION=0.40000,URI=\"s42_p4",
                "DURATION=0.10000,URI=\"s42_p4",
                rules::PARTS_MAKE_SEGMENT,
            ),
            (
                "URI=\"s43_p0.ts\",INDEPENDENT=YES",
                "URI=\"s43_p0.ts\"",
                rules::FIRST_PART_INDEPENDENT,
            ),
            ("PART-HOLD-BACK=1.200", "PART-HOLD-BACK=0.600", rules::PART_HOLD_BACK),
            (",PART-HOLD-BACK=1.200", "", rules::PART_HOLD_BACK),
            ("HOLD-BACK=6.000", "HOLD-BACK=4.000", rules::HOLD_BACK),
            ("CAN-BLOCK-RELOAD=YES", "CAN-BLOCK-RELOAD=NO", rules::CAN_BLOCK_RELOAD),
            (
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s43_p2.ts\"\n",
                "",
                rules::PRELOAD_HINT,
            ),
        ] {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from} not in the playlist");
            let (broken, _) = rules_broken(&text);
            let expected: Vec<&str> = [rule].into_iter().filter(|r| !r.is_empty()).collect();
            assert_eq!(broken, expected, "{from} -> {to}");
        }
    }

    #[test]
    fn a_part_hold_back_under_three_part_targets_is_a_warning() {
        let text = GOOD.replace("PART-HOLD-BACK=1.200", "PART-HOLD-BACK=1.000");
        assert_eq!(rules_broken(&text), (vec![], vec![rules::PART_HOLD_BACK]));
        // Ended: no hint is due.
        let ended = GOOD.replace("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s43_p2.ts\"\n", "")
            + "#EXT-X-ENDLIST\n";
        assert_eq!(rules_broken(&ended), (vec![], vec![]));
    }
}
