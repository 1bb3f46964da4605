//! Whether the worker's signals are encoding: each runner writes its
//! [`SignalStatus`] into the shared [`SignalHealth`], and the worker's
//! `GET /healthcheck` reads it.
//!
//! ```text
//! SignalRunner(live01) --set--+
//! SignalRunner(live02) --set--+--> SignalHealth --> GET /healthcheck: 200 ok / 503 degraded
//!                             +--> nonstop_worker_signal_status{signal,status}
//! ```
//!
//! Each signal's newest published segment rides along (`newest`: name,
//! sequence, program date-time, how long ago it was written and how far its
//! end is behind the wall clock), so `status` and the console show what a
//! worker is producing, not only whether it answers.
//!
//! The answer is 200 only while every signal is running (its pipeline has
//! written a segment since it last started), else 503 with the same JSON
//! shape, so a load balancer or an orchestrator sees a signal that keeps
//! failing instead of a process that merely answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::metrics;
use crate::api::{HealthStatus, SegmentReport, WorkerHealth};

/// What a signal's pipeline is doing: the wire word of `/healthcheck`,
/// defined with the other contracts.
pub use crate::api::SignalStatus;

/// A signal's newest published segment, as the runner recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestSegment {
    pub name: String,
    pub sequence: u64,
    /// Wall-clock time of the segment's first frame (its EXT-X-PROGRAM-DATE-TIME).
    pub program_date_time: SystemTime,
    pub duration: Duration,
    /// When the worker listed it in the playlist.
    pub written_at: SystemTime,
}

impl NewestSegment {
    /// Its `/healthcheck` entry at `now`: `behind_ms` is how far the
    /// segment's end is behind the wall clock, `written_ms_ago` how long ago
    /// the worker wrote it (`duration_ms` is the segment's length).
    pub fn report(&self, now: SystemTime) -> SegmentReport {
        let ms_since = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_millis() as u64;
        SegmentReport {
            behind_ms: ms_since(self.program_date_time + self.duration),
            duration_ms: self.duration.as_millis() as u64,
            name: self.name.clone(),
            program_date_time: chrono::DateTime::<chrono::Utc>::from(self.program_date_time)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            sequence: self.sequence,
            written_ms_ago: ms_since(self.written_at),
        }
    }
}

/// The statuses of every signal, shared by the runners (writers) and the
/// health route (reader). Cheap to clone: clones share the same map.
#[derive(Debug, Clone, Default)]
pub struct SignalHealth {
    statuses: Arc<Mutex<BTreeMap<String, SignalStatus>>>,
    newest: Arc<Mutex<BTreeMap<String, NewestSegment>>>,
}

impl SignalHealth {
    /// Records `signal`'s status and mirrors it in the status gauge.
    pub fn set(&self, signal: &str, status: SignalStatus) {
        for s in SignalStatus::ALL {
            metrics::WORKER_SIGNAL_STATUS
                .with_label_values(&[signal, s.as_str()])
                .set(i64::from(s == status));
        }
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.insert(signal.to_string(), status);
        }
    }

    /// Records `signal`'s newest published segment.
    pub(crate) fn segment_written(&self, signal: &str, segment: NewestSegment) {
        if let Ok(mut newest) = self.newest.lock() {
            newest.insert(signal.to_string(), segment);
        }
    }

    /// Every signal's newest published segment, by name.
    pub fn newest(&self) -> BTreeMap<String, NewestSegment> {
        self.newest.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Forgets `signal` (its input was removed): it leaves `/healthcheck`,
    /// and its status and drift gauges leave `/metrics`.
    pub fn remove(&self, signal: &str) {
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.remove(signal);
        }
        if let Ok(mut newest) = self.newest.lock() {
            newest.remove(signal);
        }
        for s in SignalStatus::ALL {
            let _ = metrics::WORKER_SIGNAL_STATUS.remove_label_values(&[signal, s.as_str()]);
        }
        let _ = metrics::WORKER_DRIFT.remove_label_values(&[signal]);
    }

    /// `signal`'s last recorded status.
    pub fn get(&self, signal: &str) -> Option<SignalStatus> {
        self.statuses.lock().ok()?.get(signal).cloned()
    }

    /// Every signal's status, by name.
    pub fn snapshot(&self) -> BTreeMap<String, SignalStatus> {
        self.statuses.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The health answer for these statuses: 200 `ok` when there is at least one
/// signal and all are running, else 503 `degraded`; the body names each
/// signal's status either way, and `newest` each signal's newest segment
/// (a signal that has written none yet is absent from it).
pub fn answer(
    service: &str,
    statuses: BTreeMap<String, SignalStatus>,
    newest: &BTreeMap<String, NewestSegment>,
) -> (StatusCode, WorkerHealth) {
    let now = SystemTime::now();
    let healthy = !statuses.is_empty() && statuses.values().all(|s| *s == SignalStatus::Running);
    let (code, status) = if healthy {
        (StatusCode::OK, HealthStatus::Ok)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Degraded)
    };
    let health = WorkerHealth {
        newest: newest
            .iter()
            .map(|(signal, n)| (signal.clone(), n.report(now)))
            .collect(),
        service: service.to_string(),
        signals: statuses,
        status,
    };
    (code, health)
}

/// `GET /healthcheck` (and HEAD) for the worker, answered from `health`.
pub fn route(
    service: &'static str,
    health: SignalHealth,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("healthcheck")
        .and(warp::get().or(warp::head()).unify())
        .map(move || {
            let (code, body) = answer(service, health.snapshot(), &health.newest());
            let mut response = crate::service::http::json_ok(&body);
            *response.status_mut() = code;
            crate::service::http::allow_any_origin(response)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(health: &SignalHealth) -> (u16, serde_json::Value) {
        let api = route("worker", health.clone());
        let res = warp::test::request().path("/healthcheck").reply(&api).await;
        let body = serde_json::from_slice(res.body()).expect("JSON body");
        (res.status().as_u16(), body)
    }

    #[tokio::test]
    async fn healthy_only_while_every_signal_runs() {
        let health = SignalHealth::default();
        let (code, body) = ask(&health).await;
        assert_eq!(code, 503, "no signal is not healthy: {body}");

        health.set("live01", SignalStatus::Running);
        health.set("live02", SignalStatus::Starting);
        let (code, body) = ask(&health).await;
        assert_eq!(code, 503);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["signals"]["live02"], "starting");
        assert!(
            body["newest"].as_object().is_some_and(|m| m.is_empty()),
            "no segment written yet: {body}"
        );
        let now = SystemTime::now();
        health.segment_written(
            "live01",
            NewestSegment {
                name: "segment_00042.ts".into(),
                sequence: 42,
                program_date_time: now - Duration::from_secs(10),
                duration: Duration::from_secs(4),
                written_at: now - Duration::from_secs(5),
            },
        );
        let (_, body) = ask(&health).await;
        let newest = &body["newest"]["live01"];
        assert_eq!(newest["name"], "segment_00042.ts", "{body}");
        assert_eq!(newest["sequence"], 42, "{body}");
        let behind = newest["behind_ms"].as_u64().expect("behind_ms");
        assert!((6000..7000).contains(&behind), "{body}");
        let ago = newest["written_ms_ago"].as_u64().expect("written_ms_ago");
        assert!((5000..6000).contains(&ago), "{body}");
        assert!(
            newest["program_date_time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{body}"
        );

        health.set("live02", SignalStatus::Running);
        let (code, body) = ask(&health).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["service"], "worker");
        assert_eq!(body["signals"]["live01"], "running");
        assert_eq!(body["signals"]["live02"], "running");

        for bad in [SignalStatus::Retrying, SignalStatus::Stopped] {
            health.set("live01", bad.clone());
            let (code, body) = ask(&health).await;
            assert_eq!(code, 503, "{bad:?}: {body}");
            assert_eq!(body["status"], "degraded");
            assert_eq!(body["signals"]["live01"], bad.as_str());
            assert_eq!(body["signals"]["live02"], "running");
        }
    }

    #[test]
    fn the_status_gauge_is_one_hot() {
        let health = SignalHealth::default();
        health.set("gauge_test", SignalStatus::Retrying);
        health.set("gauge_test", SignalStatus::Running);
        let value = |s: SignalStatus| {
            metrics::WORKER_SIGNAL_STATUS
                .with_label_values(&["gauge_test", s.as_str()])
                .get()
        };
        assert_eq!(value(SignalStatus::Running), 1);
        assert_eq!(value(SignalStatus::Retrying), 0);
        assert_eq!(health.get("gauge_test"), Some(SignalStatus::Running));

        health.segment_written(
            "gauge_test",
            NewestSegment {
                name: "segment_00001.ts".into(),
                sequence: 1,
                program_date_time: SystemTime::now(),
                duration: Duration::from_secs(4),
                written_at: SystemTime::now(),
            },
        );
        health.remove("gauge_test");
        assert_eq!(health.get("gauge_test"), None);
        assert!(!health.newest().contains_key("gauge_test"));
        assert!(!health.snapshot().contains_key("gauge_test"));
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &prometheus::gather(),
            &mut text,
        )
        .expect("encode");
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains("signal=\"gauge_test\""),
            "the removed signal is still in /metrics: {text}"
        );
    }
}
