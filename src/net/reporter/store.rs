//! Where the reporter keeps what discovery reports: in memory (the default,
//! one reporter) or in Redis (several reporters and origins sharing one view).
//!
//! A signal's packagers are every packager some report named within the TTL,
//! not only the latest report's. Each host's discovery checks the packagers
//! from its own host, so when two hosts cannot reach each other (and both
//! still reach the reporter) each reports only its own packager: the latest
//! report alone would drop the other host's healthy packager from the routes
//! (or flip between the two), leaving viewers one host from an outage. A
//! packager no report names any more leaves the routes once its last report
//! is older than the TTL; until then the proxy's own freshness checks keep
//! viewers off it. A signal no packager serves any more disappears with its
//! last packager.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Redis key holding the set of reported signal names.
const REDIS_SIGNALS_KEY: &str = "nonstop:signals";
/// Prefix of the per-signal Redis hashes (packager -> when it was last
/// reported, ms since the Unix epoch), which expire with the TTL.
const REDIS_PACKAGERS_PREFIX: &str = "nonstop:packagers:";

/// One signal's packagers, reported within the TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIngest {
    pub signal: String,
    /// Sorted by URL, whatever the order reports arrived in (the reporter
    /// then puts them in its configured order).
    pub packagers: Vec<String>,
    /// When it was last reported, as milliseconds since the Unix epoch.
    pub reported_at_ms: u64,
}

impl StoredIngest {
    /// The entry for `signal` from its packagers' report times (ms since the
    /// Unix epoch); None when none is left.
    fn from_times(signal: &str, times: impl IntoIterator<Item = (String, u64)>) -> Option<Self> {
        let mut times: Vec<(String, u64)> = times.into_iter().collect();
        times.sort();
        let reported_at_ms = times.iter().map(|(_, at)| *at).max()?;
        Some(StoredIngest {
            signal: signal.to_string(),
            packagers: times.into_iter().map(|(p, _)| p).collect(),
            reported_at_ms,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis holds an unreadable entry: {0}")]
    Corrupt(String),
}

/// The reporter's store, chosen by `REPORTER_STORE` (`memory` or a `redis://` URL).
pub(crate) enum IngestStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl IngestStore {
    /// Opens the store named by `spec`; Redis is contacted once to fail early.
    pub(crate) async fn open(spec: &str, ttl: Duration) -> Result<IngestStore, StoreError> {
        if spec == "memory" {
            return Ok(IngestStore::Memory(MemoryStore::new(ttl)));
        }
        let client = redis::Client::open(spec)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(IngestStore::Redis(RedisStore { conn, ttl }))
    }

    /// Records that `packagers` serve `signal` now.
    pub(crate) async fn put(&self, signal: &str, packagers: &[String]) -> Result<(), StoreError> {
        match self {
            IngestStore::Memory(m) => {
                m.put(signal, packagers, Instant::now(), now_ms());
                Ok(())
            }
            IngestStore::Redis(r) => r.put(signal, packagers, now_ms()).await,
        }
    }

    /// Every signal with a packager reported within the TTL, sorted by name.
    pub(crate) async fn list(&self) -> Result<Vec<StoredIngest>, StoreError> {
        let mut list = match self {
            IngestStore::Memory(m) => m.list(Instant::now()),
            IngestStore::Redis(r) => r.list(now_ms()).await?,
        };
        list.sort_by(|a, b| a.signal.cmp(&b.signal));
        Ok(list)
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            IngestStore::Memory(_) => "memory",
            IngestStore::Redis(_) => "redis",
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When a packager was last reported: for expiry, and for the answer.
type Reported = (Instant, u64);

/// In-process store; time is passed in so expiry is testable without sleeps.
pub(crate) struct MemoryStore {
    ttl: Duration,
    /// Signal -> packager -> when it was last reported.
    signals: Mutex<HashMap<String, HashMap<String, Reported>>>,
}

impl MemoryStore {
    pub(crate) fn new(ttl: Duration) -> Self {
        MemoryStore {
            ttl,
            signals: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn put(&self, signal: &str, packagers: &[String], now: Instant, now_ms: u64) {
        if packagers.is_empty() {
            return;
        }
        if let Ok(mut signals) = self.signals.lock() {
            let entry = signals.entry(signal.to_string()).or_default();
            for p in packagers {
                entry.insert(p.clone(), (now, now_ms));
            }
        }
    }

    /// Live entries; expired packagers (and signals left with none) are
    /// dropped on the way.
    pub(crate) fn list(&self, now: Instant) -> Vec<StoredIngest> {
        let Ok(mut signals) = self.signals.lock() else {
            return Vec::new();
        };
        for packagers in signals.values_mut() {
            packagers.retain(|_, (at, _)| now.saturating_duration_since(*at) <= self.ttl);
        }
        signals.retain(|_, packagers| !packagers.is_empty());
        signals
            .iter()
            .filter_map(|(signal, packagers)| {
                StoredIngest::from_times(
                    signal,
                    packagers.iter().map(|(p, (_, ms))| (p.clone(), *ms)),
                )
            })
            .collect()
    }
}

/// Redis-backed store: one hash per signal (packager -> last report, ms since
/// the Unix epoch) expiring with the TTL after its latest report, plus a set
/// of names to list them without scanning the keyspace. Reporters on several
/// hosts compare report times with their own clocks, which the workers'
/// epoch locking already needs in step.
pub(crate) struct RedisStore {
    conn: redis::aio::MultiplexedConnection,
    ttl: Duration,
}

impl RedisStore {
    async fn put(&self, signal: &str, packagers: &[String], now_ms: u64) -> Result<(), StoreError> {
        if packagers.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let key = format!("{REDIS_PACKAGERS_PREFIX}{signal}");
        let mut set = redis::cmd("HSET");
        set.arg(&key);
        for p in packagers {
            set.arg(p).arg(now_ms);
        }
        let _: () = redis::pipe()
            .atomic()
            .add_command(set)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(self.ttl.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(REDIS_SIGNALS_KEY)
            .arg(signal)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn list(&self, now_ms: u64) -> Result<Vec<StoredIngest>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(REDIS_SIGNALS_KEY)
            .query_async(&mut conn)
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut read = redis::pipe();
        for name in &names {
            read.cmd("HGETALL")
                .arg(format!("{REDIS_PACKAGERS_PREFIX}{name}"));
        }
        let hashes: Vec<HashMap<String, String>> = read.query_async(&mut conn).await?;
        let ttl_ms = self.ttl.as_millis() as u64;
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (name, hash) in names.iter().zip(hashes) {
            let mut times = Vec::new();
            for (packager, at) in hash {
                let at: u64 = at
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("{name}: {packager} = {at}")))?;
                if now_ms.saturating_sub(at) <= ttl_ms {
                    times.push((packager, at));
                }
            }
            match StoredIngest::from_times(name, times) {
                Some(entry) => live.push(entry),
                None => expired.push(name.clone()),
            }
        }
        if !expired.is_empty() {
            let _: () = redis::cmd("SREM")
                .arg(REDIS_SIGNALS_KEY)
                .arg(&expired)
                .query_async(&mut conn)
                .await?;
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "http://localhost:8080";
    const S2: &str = "http://localhost:9090";

    fn list_of(store: &MemoryStore, at: Instant) -> Vec<(String, Vec<String>)> {
        let mut list: Vec<_> = store
            .list(at)
            .into_iter()
            .map(|e| (e.signal, e.packagers))
            .collect();
        list.sort();
        list
    }

    #[test]
    fn memory_entries_expire_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let t0 = Instant::now();
        store.put("live01", &[S1.into()], t0, 1);
        store.put("live02", &[S1.into()], t0 + Duration::from_secs(8), 2);
        assert_eq!(store.list(t0 + Duration::from_secs(9)).len(), 2);
        let later = store.list(t0 + Duration::from_secs(11));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].signal, "live02");
        assert_eq!(later[0].reported_at_ms, 2);
    }

    /// Two hosts that cannot reach each other each report their own
    /// packager: the signal keeps both, in one order whatever came last.
    #[test]
    fn reports_naming_different_packagers_add_up() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let t0 = Instant::now();
        store.put("live01", &[S2.into()], t0, 1);
        store.put("live01", &[S1.into()], t0 + Duration::from_secs(1), 2);
        let both = vec![("live01".to_string(), vec![S1.to_string(), S2.to_string()])];
        assert_eq!(list_of(&store, t0 + Duration::from_secs(2)), both);
        store.put("live01", &[S2.into()], t0 + Duration::from_secs(3), 3);
        assert_eq!(list_of(&store, t0 + Duration::from_secs(4)), both);
        assert_eq!(store.list(t0 + Duration::from_secs(4))[0].reported_at_ms, 3);
    }

    #[test]
    fn a_packager_no_report_names_leaves_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let t0 = Instant::now();
        store.put("live01", &[S1.into(), S2.into()], t0, 1);
        store.put("live01", &[S1.into()], t0 + Duration::from_secs(5), 2);
        assert_eq!(
            list_of(&store, t0 + Duration::from_secs(9))[0].1,
            vec![S1.to_string(), S2.to_string()]
        );
        assert_eq!(
            list_of(&store, t0 + Duration::from_secs(11)),
            vec![("live01".to_string(), vec![S1.to_string()])]
        );
        assert!(store.list(t0 + Duration::from_secs(16)).is_empty());
    }

    #[test]
    fn a_report_naming_no_packager_adds_nothing() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let t0 = Instant::now();
        store.put("live01", &[], t0, 1);
        assert!(store.list(t0).is_empty());
    }
}
