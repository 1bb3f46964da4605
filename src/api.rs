//! The formats services speak to each other: one serde type per JSON that
//! crosses a service boundary, written by the server that answers it and read
//! by every client, so a field cannot be renamed on one side only.
//!
//! ```text
//! discovery --POST Report-------------> reporter --GET /ingests [Ingest]--> origin
//! origin --GET /signals [names], /live/<s> Location, /live/<s>/packagers Packagers--> proxy, status
//! proxy --GET /status ProxyStatus------> status, console
//! worker --GET /healthcheck WorkerHealth--> status, console (net::workers)
//! every service: ErrorBody for errors, ServiceHealth on /healthcheck
//! ```
//!
//! It sits at the top of the crate, beside `hls`, because both halves of the
//! data path use it: the worker in `pipeline` (which never imports `net`)
//! answers its `/healthcheck` with [`WorkerHealth`].
//!
//! Wire shapes are binding (the seed's shapes in DESIGN.md): field order is
//! the order each server has always written, which for the answers once built
//! as `serde_json::Value` (proxy status, worker and service health) is the
//! alphabetical one. The contract tests at the bottom pin every shape byte for
//! byte. Fields a reader may miss from an older peer carry `#[serde(default)]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The body of every error answer, from every service: `{"error":"..."}`
/// (the origin's 404 for a signal that is not live, a refused report...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Whether a service (or every signal of a worker) is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    /// Only the worker says it: a signal is not running (the answer is a 503).
    Degraded,
}

/// `GET /healthcheck` of every service but the worker: `{"service":"proxy","status":"ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub service: String,
    pub status: HealthStatus,
}

// ---- reporter ---------------------------------------------------------------

/// What discovery POSTs to the reporter's `/ingests` for one signal: the
/// packagers it found serving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub signal: String,
    pub packagers: Vec<String>,
}

/// The reporter's answer to an accepted [`Report`]: `{"accepted":"live01"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAccepted {
    pub accepted: String,
}

/// One entry of the reporter's `GET /ingests`, exactly the seed's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingest {
    pub signal: String,
    pub packagers: Vec<String>,
    /// When last reported, as the seed writes it: `Fri, 05 Apr 2024 11:23:45 -03`.
    pub last_reported: String,
}

// ---- origin -----------------------------------------------------------------

/// The origin's `GET /signals`: the live signals' names, `["live01"]`.
pub type SignalNames = Vec<String>;

/// The origin's `GET /live/<name>`, the seed's shape: where to play a signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub signal: String,
    /// The first packager's playlist URL.
    pub server: String,
}

/// The origin's `GET /live/<name>/packagers`: every packager serving the
/// signal, in the configured order (what the proxy fails over between).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packagers {
    pub signal: String,
    pub packagers: Vec<String>,
}

// ---- proxy --------------------------------------------------------------------

/// The proxy's `GET /status`: every signal it serves, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyStatus {
    pub signals: Vec<ProxySignal>,
}

/// One signal the proxy serves (someone asked for it recently).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxySignal {
    /// Each routed packager's freshness and role, in route order.
    #[serde(default)]
    pub packagers: Vec<PackagerStatus>,
    /// With a ladder, each rendition's media playlist with its own serving
    /// state and packagers (the signal's `packagers` are its first's);
    /// absent for a single rendition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<RenditionStatus>,
    pub signal: String,
    /// Absent from a proxy older than the serving states.
    #[serde(default)]
    pub state: Option<ServingState>,
    /// The recent changes of active packager, oldest first.
    #[serde(default)]
    pub switches: Vec<SwitchRecord>,
    /// Distinct clients watching through the proxy; absent from a proxy
    /// older than the count.
    #[serde(default)]
    pub viewers: Option<u64>,
}

/// One rendition of a ladder in the proxy's `/status`: failover is judged
/// per rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionStatus {
    /// Each routed packager's freshness for this rendition, in route order.
    pub packagers: Vec<PackagerStatus>,
    /// Its media playlist: `720p.m3u8`.
    pub playlist: String,
    pub state: ServingState,
}

/// How the proxy serves a signal as a whole (`nonstop_proxy_signal_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServingState {
    /// Served from a fresh packager, with at least one fresh twin to fail over to.
    Up,
    /// Served, but without a healthy twin (or not known yet).
    Degraded,
    /// No packager is live and one ended its stream (`EXT-X-ENDLIST`): the
    /// event is over, viewers play to its end and stop.
    Ended,
    /// Every packager is stale or failing: viewers get the last playlist, frozen.
    Down,
}

impl ServingState {
    pub const ALL: [ServingState; 4] = [
        ServingState::Up,
        ServingState::Degraded,
        ServingState::Ended,
        ServingState::Down,
    ];

    /// The word in JSON and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ServingState::Up => "up",
            ServingState::Degraded => "degraded",
            ServingState::Ended => "ended",
            ServingState::Down => "down",
        }
    }
}

/// One packager of a signal as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagerStatus {
    /// The signal is served from it now.
    pub active: bool,
    /// Milliseconds since its playlist last advanced.
    pub advanced_ms_ago: Option<u64>,
    /// Milliseconds its live edge is behind its freshest twin's, by their
    /// program date-times (its worker's clock skew, or a late worker); absent
    /// without a dated twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_twin_ms: Option<u64>,
    /// Milliseconds its live edge (newest segment's end, by its date) is
    /// behind the wall clock; absent for undated playlists.
    #[serde(default)]
    pub edge_ms_ago: Option<u64>,
    pub health: PackagerHealth,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Media sequence number of the newest segment it lists.
    pub newest_sequence: Option<u64>,
    /// Its base URL.
    pub packager: String,
}

/// How a packager looks for one signal, best first (the failover order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackagerHealth {
    Fresh,
    /// No playlist read from it yet.
    Unknown,
    /// Its playlist ended the stream (`EXT-X-ENDLIST`).
    Ended,
    Stale,
    Failing,
}

impl PackagerHealth {
    /// The word in JSON.
    pub fn name(self) -> &'static str {
        match self {
            PackagerHealth::Fresh => "fresh",
            PackagerHealth::Unknown => "unknown",
            PackagerHealth::Ended => "ended",
            PackagerHealth::Stale => "stale",
            PackagerHealth::Failing => "failing",
        }
    }
}

/// A change of active packager: the failover state machine's decision, and
/// (inside [`SwitchRecord`]) what `GET /status` shows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    pub from: Option<String>,
    /// The same as [`Switch::reason`] in one word, for metrics.
    pub kind: SwitchKind,
    /// Why the old one lost traffic, for people.
    pub reason: String,
    pub to: String,
}

/// Why the active packager changed, in one word (`nonstop_proxy_switches_total`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchKind {
    /// The signal's first packager.
    First,
    Failing,
    /// The active packager's playlist ended while another is live.
    Ended,
    Stale,
    /// Another packager lists a newer segment.
    Behind,
    /// The routes no longer name the active packager.
    Unrouted,
}

impl SwitchKind {
    /// The word in JSON and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            SwitchKind::First => "first",
            SwitchKind::Failing => "failing",
            SwitchKind::Ended => "ended",
            SwitchKind::Stale => "stale",
            SwitchKind::Behind => "behind",
            SwitchKind::Unrouted => "unrouted",
        }
    }
}

/// A switch as `GET /status` lists it: when (local time,
/// `YYYY-MM-DD HH:MM:SS`), then the [`Switch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRecord {
    pub at: String,
    #[serde(flatten)]
    pub switch: Switch,
}

// ---- worker -------------------------------------------------------------------

/// The worker's `GET /healthcheck` (200 while every signal runs, else 503,
/// the same shape either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHealth {
    /// Each signal's newest published segment; a signal that has written
    /// none yet is absent. Absent from a worker older than the report.
    #[serde(default)]
    pub newest: BTreeMap<String, SegmentReport>,
    pub service: String,
    /// Each signal's pipeline status.
    pub signals: BTreeMap<String, SignalStatus>,
    pub status: HealthStatus,
}

/// What a signal's pipeline is doing, as in fallbacksrc's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalStatus {
    /// The pipeline is being built or started and has written no segment yet.
    Starting,
    /// Segments are being written.
    Running,
    /// The pipeline failed; the runner waits out its backoff before restarting it.
    Retrying,
    /// The runner has ended (shutdown).
    Stopped,
    /// A word from a worker newer than this reader, kept as it was said
    /// (never written by this worker).
    #[serde(untagged)]
    Other(String),
}

impl SignalStatus {
    /// Every status this worker writes, for the one-hot status gauge.
    pub const ALL: [SignalStatus; 4] = [
        SignalStatus::Starting,
        SignalStatus::Running,
        SignalStatus::Retrying,
        SignalStatus::Stopped,
    ];

    /// The word used in JSON and metric labels.
    pub fn as_str(&self) -> &str {
        match self {
            SignalStatus::Starting => "starting",
            SignalStatus::Running => "running",
            SignalStatus::Retrying => "retrying",
            SignalStatus::Stopped => "stopped",
            SignalStatus::Other(word) => word,
        }
    }
}

/// A signal's newest published segment, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentReport {
    /// How far the segment's end is behind the wall clock.
    pub behind_ms: u64,
    /// The segment's length (absent from older workers).
    #[serde(default)]
    pub duration_ms: u64,
    pub name: String,
    /// Its `EXT-X-PROGRAM-DATE-TIME`, RFC 3339 in UTC with milliseconds.
    pub program_date_time: String,
    pub sequence: u64,
    /// How long ago the worker listed it (absent from older workers).
    #[serde(default)]
    pub written_ms_ago: u64,
}

/// Contract tests: each type's JSON pinned byte for byte (serialized), and the
/// seed's or a server's real answer read back (deserialized).
#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    /// `value` serializes to exactly `text`, and `text` reads back as `value`.
    fn pinned<T>(value: &T, text: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let written = serde_json::to_string(value).expect("serializes");
        assert_eq!(written, text, "the wire shape changed");
        let read: T = serde_json::from_str(text).expect("reads back");
        assert_eq!(&read, value);
    }

    /// For the answers once built with `serde_json::json!` (whose objects
    /// sort their keys): the declared field order is the sorted one, so the
    /// bytes did not change when they became types.
    fn sorted_like_before<T: Serialize>(value: &T) {
        let declared = serde_json::to_string(value).expect("serializes");
        let as_value = serde_json::to_value(value).expect("to value");
        let sorted = serde_json::to_string(&as_value).expect("serializes");
        assert_eq!(declared, sorted, "fields must stay in alphabetical order");
    }

    #[test]
    fn error_body() {
        pinned(
            &ErrorBody {
                error: "signal 'nosuch' is not live".into(),
            },
            r#"{"error":"signal 'nosuch' is not live"}"#,
        );
    }

    #[test]
    fn service_health() {
        let health = ServiceHealth {
            service: "proxy".into(),
            status: HealthStatus::Ok,
        };
        pinned(&health, r#"{"service":"proxy","status":"ok"}"#);
        sorted_like_before(&health);
    }

    #[test]
    fn report_and_its_answer() {
        pinned(
            &Report {
                signal: "live01".into(),
                packagers: vec![
                    "http://localhost:8080".into(),
                    "http://localhost:9090".into(),
                ],
            },
            r#"{"signal":"live01","packagers":["http://localhost:8080","http://localhost:9090"]}"#,
        );
        let extra = r#"{"signal":"live01","packagers":[],"extra":1}"#;
        assert!(serde_json::from_str::<Report>(extra).is_err());
        assert!(serde_json::from_str::<Report>(r#"{"signal":"live01"}"#).is_err());
        pinned(
            &ReportAccepted {
                accepted: "live01".into(),
            },
            r#"{"accepted":"live01"}"#,
        );
    }

    #[test]
    fn ingests_in_the_seeds_shape() {
        let seed = r#"[{"signal":"live01","packagers":["http://localhost:8080","http://localhost:9090"],"last_reported":"Fri, 05 Apr 2024 11:23:45 -03"}]"#;
        pinned(
            &vec![Ingest {
                signal: "live01".into(),
                packagers: vec![
                    "http://localhost:8080".into(),
                    "http://localhost:9090".into(),
                ],
                last_reported: "Fri, 05 Apr 2024 11:23:45 -03".into(),
            }],
            seed,
        );
    }

    #[test]
    fn origin_answers_in_the_seeds_shape() {
        let names: SignalNames = vec!["live01".into()];
        pinned(&names, r#"["live01"]"#);
        pinned(
            &Location {
                signal: "live01".into(),
                server: "http://localhost:8080/live01/playlist.m3u8".into(),
            },
            r#"{"signal":"live01","server":"http://localhost:8080/live01/playlist.m3u8"}"#,
        );
        pinned(
            &Packagers {
                signal: "live01".into(),
                packagers: vec![
                    "http://localhost:8080".into(),
                    "http://localhost:9090".into(),
                ],
            },
            r#"{"signal":"live01","packagers":["http://localhost:8080","http://localhost:9090"]}"#,
        );
    }

    fn proxy_status() -> ProxyStatus {
        ProxyStatus {
            signals: vec![ProxySignal {
                packagers: vec![
                    PackagerStatus {
                        behind_twin_ms: None,
                        active: false,
                        advanced_ms_ago: Some(5300),
                        edge_ms_ago: Some(6100),
                        health: PackagerHealth::Failing,
                        last_error: Some("connection refused".into()),
                        newest_sequence: Some(41),
                        packager: "http://localhost:8080".into(),
                    },
                    PackagerStatus {
                        behind_twin_ms: None,
                        active: true,
                        advanced_ms_ago: Some(400),
                        edge_ms_ago: None,
                        health: PackagerHealth::Fresh,
                        last_error: None,
                        newest_sequence: Some(44),
                        packager: "http://localhost:9090".into(),
                    },
                ],
                renditions: Vec::new(),
                signal: "live01".into(),
                state: Some(ServingState::Degraded),
                switches: vec![SwitchRecord {
                    at: "2026-11-25 12:00:00".into(),
                    switch: Switch {
                        from: Some("http://localhost:8080".into()),
                        kind: SwitchKind::Failing,
                        reason: "http://localhost:8080 failing: connection refused".into(),
                        to: "http://localhost:9090".into(),
                    },
                }],
                viewers: Some(3),
            }],
        }
    }

    #[test]
    fn proxy_status_shape() {
        let text = concat!(
            r#"{"signals":[{"packagers":["#,
            r#"{"active":false,"advanced_ms_ago":5300,"edge_ms_ago":6100,"health":"failing","last_error":"connection refused","newest_sequence":41,"packager":"http://localhost:8080"},"#,
            r#"{"active":true,"advanced_ms_ago":400,"edge_ms_ago":null,"health":"fresh","last_error":null,"newest_sequence":44,"packager":"http://localhost:9090"}],"#,
            r#""signal":"live01","state":"degraded","switches":["#,
            r#"{"at":"2026-11-25 12:00:00","from":"http://localhost:8080","kind":"failing","reason":"http://localhost:8080 failing: connection refused","to":"http://localhost:9090"}],"#,
            r#""viewers":3}]}"#
        );
        pinned(&proxy_status(), text);
        sorted_like_before(&proxy_status());
    }

    #[test]
    fn every_word_of_the_proxy_is_its_json() {
        for state in ServingState::ALL {
            let json = serde_json::to_string(&state).expect("serializes");
            assert_eq!(json, format!("\"{}\"", state.name()));
        }
        for health in [
            PackagerHealth::Fresh,
            PackagerHealth::Unknown,
            PackagerHealth::Ended,
            PackagerHealth::Stale,
            PackagerHealth::Failing,
        ] {
            let json = serde_json::to_string(&health).expect("serializes");
            assert_eq!(json, format!("\"{}\"", health.name()));
        }
        for kind in [
            SwitchKind::First,
            SwitchKind::Failing,
            SwitchKind::Ended,
            SwitchKind::Stale,
            SwitchKind::Behind,
            SwitchKind::Unrouted,
        ] {
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
    }

    #[test]
    fn an_older_proxys_status_still_reads() {
        let old = r#"{"signals":[{"signal":"live01","packagers":[{"packager":"http://a:8080","health":"fresh","active":true,"newest_sequence":7,"advanced_ms_ago":100,"last_error":null}],"switches":[{"at":"2025-01-01 10:00:00","from":null,"to":"http://a:8080","reason":"first choice","kind":"first"}]}]}"#;
        let status: ProxyStatus = serde_json::from_str(old).expect("reads");
        let signal = &status.signals[0];
        assert_eq!((signal.state, signal.viewers), (None, None));
        assert_eq!(signal.packagers[0].edge_ms_ago, None);
        assert_eq!(signal.switches[0].switch.kind, SwitchKind::First);
    }

    fn worker_health() -> WorkerHealth {
        WorkerHealth {
            newest: BTreeMap::from([(
                "live01".to_string(),
                SegmentReport {
                    behind_ms: 1200,
                    duration_ms: 4000,
                    name: "segment_00042.ts".into(),
                    program_date_time: "2026-11-26T03:00:00.000Z".into(),
                    sequence: 42,
                    written_ms_ago: 900,
                },
            )]),
            service: "worker".into(),
            signals: BTreeMap::from([
                ("live01".to_string(), SignalStatus::Running),
                ("live02".to_string(), SignalStatus::Starting),
            ]),
            status: HealthStatus::Degraded,
        }
    }

    #[test]
    fn worker_health_shape() {
        let text = concat!(
            r#"{"newest":{"live01":{"behind_ms":1200,"duration_ms":4000,"name":"segment_00042.ts","#,
            r#""program_date_time":"2026-11-26T03:00:00.000Z","sequence":42,"written_ms_ago":900}},"#,
            r#""service":"worker","signals":{"live01":"running","live02":"starting"},"status":"degraded"}"#
        );
        pinned(&worker_health(), text);
        sorted_like_before(&worker_health());
        for status in SignalStatus::ALL {
            let json = serde_json::to_string(&status).expect("serializes");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }

    #[test]
    fn an_older_or_newer_workers_health_still_reads() {
        let old = r#"{"status":"ok","service":"worker","signals":{"live01":"running"}}"#;
        let health: WorkerHealth = serde_json::from_str(old).expect("reads");
        assert!(health.newest.is_empty());
        let newer = r#"{"status":"degraded","service":"worker","signals":{"live01":"paused"},
            "newest":{"live01":{"name":"s.ts","sequence":1,"program_date_time":"x","behind_ms":5}}}"#;
        let health: WorkerHealth = serde_json::from_str(newer).expect("reads");
        assert_eq!(
            health.signals["live01"],
            SignalStatus::Other("paused".into())
        );
        assert_eq!(health.signals["live01"].as_str(), "paused");
        assert_eq!(health.newest["live01"].duration_ms, 0);
    }
}
