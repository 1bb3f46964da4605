//! The origin's refusals, remembered for a moment: a signal the origin does
//! not know (or could not answer for) is refused again from memory for
//! [`NEGATIVE_TTL`] instead of asking the origin once per request. A crowd
//! (or a script) asking for a signal that is not live costs the origin one
//! lookup per name per second, whatever the request rate; a signal that
//! goes live is found a second later at most.
//!
//! Bounded: expired entries are dropped when the table fills, and past
//! [`MAX_REMEMBERED`] names a new refusal is not remembered (that name is
//! then looked up per request, still one at a time: lookups are collapsed).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::refusal::Refusal;

/// How long a refusal is remembered: about a second, the 404's `max-age`.
pub(super) const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Most signal names remembered at once.
pub(super) const MAX_REMEMBERED: usize = 10_000;

/// Refusals by signal name, with when the origin gave them.
#[derive(Debug, Default)]
pub(super) struct NegativeCache {
    entries: HashMap<String, (Refusal, Instant)>,
}

impl NegativeCache {
    /// The refusal remembered for `signal`, if still fresh.
    pub(super) fn get(&self, signal: &str, now: Instant) -> Option<Refusal> {
        self.entries
            .get(signal)
            .filter(|(_, at)| now.saturating_duration_since(*at) < NEGATIVE_TTL)
            .map(|(refusal, _)| refusal.clone())
    }

    /// Remembers that the origin refused `signal` now.
    pub(super) fn remember(&mut self, signal: &str, refusal: Refusal, now: Instant) {
        if self.entries.len() >= MAX_REMEMBERED {
            self.entries
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < NEGATIVE_TTL);
            if self.entries.len() >= MAX_REMEMBERED {
                return;
            }
        }
        self.entries.insert(signal.to_string(), (refusal, now));
    }

    /// Forgets `signal` (it was found live).
    pub(super) fn forget(&mut self, signal: &str) {
        self.entries.remove(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_remembered_for_about_a_second() {
        let t0 = Instant::now();
        let mut cache = NegativeCache::default();
        assert!(cache.get("nosuch", t0).is_none());
        cache.remember("nosuch", Refusal::NotFound("not live".into()), t0);
        let again = cache.get("nosuch", t0 + Duration::from_millis(900));
        assert!(matches!(again, Some(Refusal::NotFound(_))), "{again:?}");
        assert!(cache.get("other", t0).is_none());
        assert!(
            cache.get("nosuch", t0 + NEGATIVE_TTL).is_none(),
            "asked again after a second"
        );
        cache.remember("nosuch", Refusal::NotFound("not live".into()), t0);
        cache.forget("nosuch");
        assert!(cache.get("nosuch", t0).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut cache = NegativeCache::default();
        for i in 0..MAX_REMEMBERED + 10 {
            cache.remember(&format!("s{i}"), Refusal::NotFound(String::new()), t0);
        }
        assert_eq!(cache.entries.len(), MAX_REMEMBERED);
        // Expired names make room.
        cache.remember("late", Refusal::NotFound(String::new()), t0 + NEGATIVE_TTL);
        assert_eq!(cache.entries.len(), 1);
    }
}
