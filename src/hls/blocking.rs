//! Blocking playlist reload (RFC 8216bis 6.2.5.2): a client asks for the
//! playlist that holds segment `_HLS_msn` (and its part `_HLS_part`), and
//! the server holds the request until it does, for at most three target
//! durations. Parsing the request's query and judging a playlist against it
//! live here, free of I/O, for the packagers and the proxy alike.
//!
//! ```text
//! ?_HLS_msn=43&_HLS_part=1 --parse--> BlockingReload { msn: 43, part: Some(1) }
//!    playlist lists part (43, 1), or segment 43 whole, or later  -> answer now
//!    43 > newest complete segment + 2                            -> 400 at once
//!    otherwise                                                   -> hold (503 after 3 targets)
//! ```
//!
//! Broken or hostile parameters (not a number, negative, too large, given
//! twice, a part without an msn, an unknown skip) are refused with a 400
//! before anything is held or fetched.

use std::time::Duration;

use super::PlaylistFacts;

/// The largest part index asked for that is not refused: far more parts
/// than any segment has (a 30 s segment of 0.2 s parts has 150).
pub const MAX_PART_INDEX: u32 = 10_000;
/// How long a request is held, in target durations, before a 503.
pub const HOLD_TARGETS: u32 = 3;

/// What a blocking reload asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockingReload {
    /// `_HLS_msn`: the segment wanted.
    pub msn: u64,
    /// `_HLS_part`: the part of that segment wanted; none for the whole segment.
    pub part: Option<u32>,
}

/// Why a blocking reload's query is refused (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} is not a non-negative integer")]
    NotANumber(&'static str),
    #[error("{0} is too large")]
    TooLarge(&'static str),
    #[error("{0} is given more than once")]
    Repeated(&'static str),
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    #[error("_HLS_skip must be YES or v2")]
    BadSkip,
    #[error("_HLS_msn {0} is more than two segments ahead of the playlist")]
    TooFarAhead(u64),
}

const MSN: &str = "_HLS_msn";
const PART: &str = "_HLS_part";
const SKIP: &str = "_HLS_skip";

impl BlockingReload {
    /// The blocking reload a raw query string asks for: `None` when it asks
    /// for none (other parameters, such as cache busters, are ignored).
    pub fn parse(query: &str) -> Result<Option<BlockingReload>, ReloadError> {
        let (mut msn, mut part, mut skip) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                MSN => set_once(&mut msn, MSN, number(MSN, value)?)?,
                PART => set_once(&mut part, PART, number(PART, value)?)?,
                SKIP => {
                    if value != "YES" && value != "v2" {
                        return Err(ReloadError::BadSkip);
                    }
                    set_once(&mut skip, SKIP, ())?;
                }
                _ => {}
            }
        }
        let part = match part {
            Some(p) if p > u64::from(MAX_PART_INDEX) => return Err(ReloadError::TooLarge(PART)),
            Some(p) => Some(p as u32),
            None => None,
        };
        match (msn, part) {
            (None, Some(_)) => Err(ReloadError::PartWithoutMsn),
            (None, None) => Ok(None),
            (Some(msn), part) => Ok(Some(BlockingReload { msn, part })),
        }
    }

    /// Whether `facts` holds what was asked: a segment after `msn` (or `msn`
    /// itself whole), or, for a part, that part of segment `msn` listed. An
    /// ended playlist holds all there will ever be.
    pub fn is_satisfied_by(&self, facts: &PlaylistFacts) -> bool {
        let next = facts.next_sequence();
        if facts.end_list || self.msn < next {
            return true;
        }
        match (self.part, &facts.low_latency) {
            (Some(part), Some(ll)) if self.msn == next => {
                ll.of_segment(next).any(|p| p.index >= part)
            }
            _ => false,
        }
    }

    /// Refused at once (400): more than two segments ahead of the newest
    /// complete one, as RFC 8216bis asks (the one being made and the next
    /// may be awaited).
    pub fn check_not_too_far(&self, facts: &PlaylistFacts) -> Result<(), ReloadError> {
        if self.msn > facts.next_sequence() + 1 {
            return Err(ReloadError::TooFarAhead(self.msn));
        }
        Ok(())
    }
}

/// How long a blocking reload is held for a playlist of `target` duration.
pub fn hold_limit(target: Duration) -> Duration {
    target * HOLD_TARGETS
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), ReloadError> {
    if slot.is_some() {
        return Err(ReloadError::Repeated(name));
    }
    *slot = Some(value);
    Ok(())
}

/// A decimal number of at most 19 digits (so it fits a u64), nothing else:
/// no sign, no spaces, no encoding.
fn number(name: &'static str, value: &str) -> Result<u64, ReloadError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReloadError::NotANumber(name));
    }
    if value.len() > 19 {
        return Err(ReloadError::TooLarge(name));
    }
    value.parse().map_err(|_| ReloadError::TooLarge(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(text: &str) -> PlaylistFacts {
        PlaylistFacts::parse(text.as_bytes()).expect("parses")
    }

    const MAKING_43: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.200\n\
#EXT-X-PART-INF:PART-TARGET=0.40000\n#EXT-X-MEDIA-SEQUENCE:41\n\
#EXTINF:2.000,\nsegment000041.ts\n#EXTINF:2.000,\nsegment000042.ts\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000043_part0.ts\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.40000,URI=\"segment000043_part1.ts\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"segment000043_part2.ts\"\n";

    #[test]
    fn queries_are_read_strictly() {
        let ask = |msn, part| Ok(Some(BlockingReload { msn, part }));
        assert_eq!(BlockingReload::parse(""), Ok(None));
        assert_eq!(
            BlockingReload::parse("v=3&x"),
            Ok(None),
            "other parameters are ignored"
        );
        assert_eq!(BlockingReload::parse("_HLS_msn=43"), ask(43, None));
        assert_eq!(
            BlockingReload::parse("_HLS_msn=43&_HLS_part=2"),
            ask(43, Some(2))
        );
        assert_eq!(
            BlockingReload::parse("_HLS_part=0&_HLS_msn=0&_HLS_skip=YES"),
            ask(0, Some(0))
        );
        for (query, error) in [
            ("_HLS_msn=-1", ReloadError::NotANumber(MSN)),
            ("_HLS_msn=abc", ReloadError::NotANumber(MSN)),
            ("_HLS_msn=", ReloadError::NotANumber(MSN)),
            ("_HLS_msn=4%32", ReloadError::NotANumber(MSN)),
            ("_HLS_msn= 4", ReloadError::NotANumber(MSN)),
            ("_HLS_msn=1.5", ReloadError::NotANumber(MSN)),
            (
                "_HLS_msn=99999999999999999999999",
                ReloadError::TooLarge(MSN),
            ),
            ("_HLS_msn=18446744073709551616", ReloadError::TooLarge(MSN)),
            ("_HLS_msn=1&_HLS_msn=2", ReloadError::Repeated(MSN)),
            (
                "_HLS_msn=1&_HLS_part=1&_HLS_part=1",
                ReloadError::Repeated(PART),
            ),
            ("_HLS_part=3", ReloadError::PartWithoutMsn),
            ("_HLS_msn=1&_HLS_part=10001", ReloadError::TooLarge(PART)),
            ("_HLS_msn=1&_HLS_skip=no", ReloadError::BadSkip),
        ] {
            assert_eq!(BlockingReload::parse(query), Err(error), "{query}");
        }
    }

    #[test]
    fn a_playlist_satisfies_the_parts_and_segments_it_lists() {
        let making = facts(MAKING_43);
        let holds = |msn, part| BlockingReload { msn, part }.is_satisfied_by(&making);
        assert!(holds(42, None), "segment 42 is whole");
        assert!(holds(42, Some(9)), "every part of a whole segment");
        assert!(holds(43, Some(0)) && holds(43, Some(1)));
        assert!(!holds(43, Some(2)), "the hinted part is not out yet");
        assert!(!holds(43, None), "segment 43 is not whole yet");
        assert!(!holds(44, Some(0)));
        // Ended: nothing more will come, so nothing is held.
        let ended = facts(&format!("{MAKING_43}#EXT-X-ENDLIST\n"));
        assert!(BlockingReload {
            msn: 44,
            part: Some(0)
        }
        .is_satisfied_by(&ended));
    }

    #[test]
    fn more_than_two_segments_ahead_is_refused() {
        let making = facts(MAKING_43);
        let check = |msn| BlockingReload { msn, part: Some(0) }.check_not_too_far(&making);
        assert_eq!(check(43), Ok(()), "the segment being made");
        assert_eq!(check(44), Ok(()), "the one after");
        assert_eq!(check(45), Err(ReloadError::TooFarAhead(45)));
        assert_eq!(hold_limit(Duration::from_secs(2)), Duration::from_secs(6));
    }
}
