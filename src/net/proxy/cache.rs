//! The proxy's segment cache: segments by `signal/name`, bounded in bytes and
//! in age, oldest out first.
//!
//! A segment fetched once survives the loss of the packager it came from, and
//! viewers behind the live edge are served without another upstream fetch.
//! Equal names are interchangeable because every packager of a signal serves
//! the same segment under the same name (one worker's folder, or epoch-locked
//! workers): a cached `live01/segment000042.ts` is the right bytes whichever
//! packager it came from.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Segments are kept this long at most: as long as caches may keep them
/// (the packagers' `max-age`), far longer than any live playlist lists them.
pub(super) const SEGMENT_CACHE_TTL: Duration = Duration::from_secs(60);

/// Segments by `signal/name`, bounded in bytes, oldest evicted first.
pub(super) struct SegmentCache {
    /// Most bytes held at once.
    capacity: usize,
    /// Bytes held now.
    size: usize,
    entries: HashMap<String, Bytes>,
    /// Keys oldest first, with when they were cached.
    order: VecDeque<(String, Instant)>,
}

impl SegmentCache {
    pub(super) fn new(capacity: usize) -> Self {
        SegmentCache {
            capacity,
            size: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.get(key).cloned()
    }

    /// Caches a segment; drops the oldest ones past the byte capacity and
    /// any older than [`SEGMENT_CACHE_TTL`] (a live segment nobody can still
    /// list), so memory stays at the live working set.
    pub(super) fn insert(&mut self, key: String, body: Bytes, now: Instant) {
        if body.len() > self.capacity || self.entries.contains_key(&key) {
            return;
        }
        self.size += body.len();
        self.order.push_back((key.clone(), now));
        self.entries.insert(key, body);
        while let Some((old, at)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) > SEGMENT_CACHE_TTL;
            if self.size <= self.capacity && !expired {
                break;
            }
            if let Some(b) = self.entries.remove(old) {
                self.size -= b.len();
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_cache_stays_within_its_bytes_and_age() {
        let mut cache = SegmentCache::new(10);
        let t0 = Instant::now();
        cache.insert("a".into(), Bytes::from_static(b"12345"), t0);
        cache.insert("b".into(), Bytes::from_static(b"12345"), t0);
        cache.insert("c".into(), Bytes::from_static(b"123"), t0);
        assert!(cache.get("a").is_none(), "oldest evicted");
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        assert!(cache.size <= 10);
        cache.insert("huge".into(), Bytes::from(vec![0u8; 11]), t0);
        assert!(cache.get("huge").is_none());
        // Past the TTL, old segments go even with room to spare.
        cache.insert(
            "d".into(),
            Bytes::from_static(b"1"),
            t0 + SEGMENT_CACHE_TTL + Duration::from_secs(1),
        );
        assert!(cache.get("b").is_none() && cache.get("c").is_none());
        assert_eq!(cache.size, 1);
    }
}
