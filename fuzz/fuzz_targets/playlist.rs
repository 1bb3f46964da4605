//! Any bytes as a live playlist: parsing never panics, and what parses has
//! consecutive sequence numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nonstop::hls::PlaylistFacts;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = PlaylistFacts::parse(data) {
        for (i, s) in facts.segments.iter().enumerate() {
            assert_eq!(s.sequence, facts.media_sequence + i as u64);
        }
    }
});
