//! Where the reporter keeps the latest report per signal: in memory (the
//! default, one reporter) or in Redis (several reporters and origins sharing
//! one view). Both forget a signal that is not reported again within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Redis key holding the set of reported signal names.
const REDIS_SIGNALS_KEY: &str = "nonstop:signals";
/// Prefix of the per-signal Redis keys, which expire with the TTL.
const REDIS_INGEST_PREFIX: &str = "nonstop:ingest:";

/// One signal's latest report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredIngest {
    pub signal: String,
    pub packagers: Vec<String>,
    /// When it was reported, as milliseconds since the Unix epoch.
    pub reported_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis holds an unreadable entry: {0}")]
    Corrupt(String),
}

/// The reporter's store, chosen by `REPORTER_STORE` (`memory` or a `redis://` URL).
pub enum IngestStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl IngestStore {
    /// Opens the store named by `spec`; Redis is contacted once to fail early.
    pub async fn open(spec: &str, ttl: Duration) -> Result<IngestStore, StoreError> {
        if spec == "memory" {
            return Ok(IngestStore::Memory(MemoryStore::new(ttl)));
        }
        let client = redis::Client::open(spec)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(IngestStore::Redis(RedisStore { conn, ttl }))
    }

    pub async fn put(&self, signal: &str, packagers: &[String]) -> Result<(), StoreError> {
        let entry = StoredIngest {
            signal: signal.to_string(),
            packagers: packagers.to_vec(),
            reported_at_ms: now_ms(),
        };
        match self {
            IngestStore::Memory(m) => {
                m.put(entry, Instant::now());
                Ok(())
            }
            IngestStore::Redis(r) => r.put(entry).await,
        }
    }

    /// Every signal reported within the TTL, sorted by name.
    pub async fn list(&self) -> Result<Vec<StoredIngest>, StoreError> {
        let mut list = match self {
            IngestStore::Memory(m) => m.list(Instant::now()),
            IngestStore::Redis(r) => r.list().await?,
        };
        list.sort_by(|a, b| a.signal.cmp(&b.signal));
        Ok(list)
    }

    pub fn kind(&self) -> &'static str {
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

/// In-process store; time is passed in so expiry is testable without sleeps.
pub struct MemoryStore {
    ttl: Duration,
    entries: Mutex<HashMap<String, (StoredIngest, Instant)>>,
}

impl MemoryStore {
    pub fn new(ttl: Duration) -> Self {
        MemoryStore {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn put(&self, entry: StoredIngest, now: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(entry.signal.clone(), (entry, now));
        }
    }

    /// Live entries; expired ones are dropped on the way.
    pub fn list(&self, now: Instant) -> Vec<StoredIngest> {
        let Ok(mut entries) = self.entries.lock() else {
            return Vec::new();
        };
        entries.retain(|_, (_, at)| now.saturating_duration_since(*at) <= self.ttl);
        entries.values().map(|(e, _)| e.clone()).collect()
    }
}

/// Redis-backed store: one key per signal with the TTL as expiry, plus a set
/// of names to list them without scanning the keyspace.
pub struct RedisStore {
    conn: redis::aio::MultiplexedConnection,
    ttl: Duration,
}

impl RedisStore {
    async fn put(&self, entry: StoredIngest) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let value =
            serde_json::to_string(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = format!("{REDIS_INGEST_PREFIX}{}", entry.signal);
        let _: () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(REDIS_SIGNALS_KEY)
            .arg(&entry.signal)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<StoredIngest>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(REDIS_SIGNALS_KEY)
            .query_async(&mut conn)
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names
            .iter()
            .map(|n| format!("{REDIS_INGEST_PREFIX}{n}"))
            .collect();
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (name, value) in names.iter().zip(values) {
            match value {
                Some(json) => live.push(
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ),
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

    fn entry(signal: &str) -> StoredIngest {
        StoredIngest {
            signal: signal.into(),
            packagers: vec!["http://localhost:8080".into()],
            reported_at_ms: 1,
        }
    }

    #[test]
    fn memory_entries_expire_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let t0 = Instant::now();
        store.put(entry("live01"), t0);
        store.put(entry("live02"), t0 + Duration::from_secs(8));
        assert_eq!(store.list(t0 + Duration::from_secs(9)).len(), 2);
        let later = store.list(t0 + Duration::from_secs(11));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].signal, "live02");
    }

    #[test]
    fn a_new_report_replaces_the_old_one() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let t0 = Instant::now();
        store.put(entry("live01"), t0);
        let mut newer = entry("live01");
        newer.packagers = vec!["http://localhost:9090".into()];
        store.put(newer.clone(), t0 + Duration::from_secs(5));
        assert_eq!(store.list(t0 + Duration::from_secs(12)), vec![newer]);
    }
}
