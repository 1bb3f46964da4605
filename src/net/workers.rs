//! What each worker says about its signals, for `status` and the console:
//! the `WORKERS` setting (worker base URLs), asking each worker's
//! `GET /healthcheck`, and reading the answer into plain words (encoding,
//! starting, restarting, stopped; its newest segment and how far behind the
//! wall clock it is), or the worker down with the reason.
//!
//! ```text
//! WORKERS=http://a:9100,http://b:9110 --GET /healthcheck (WorkerHealth)--> WorkerView { up/down, signals[] }
//! ```

use std::time::Duration;

use serde::Serialize;

use crate::api::{SegmentReport, SignalStatus, WorkerHealth};
use crate::service::config::parse_base_url;

/// `status`'s budget for each worker's answer; a frozen worker counts as
/// down after it (the console uses its own, shorter source budget).
pub(crate) const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

/// A signal is "behind" once its newest segment ends this many segment
/// lengths behind the wall clock (a healthy one stays within about one).
pub(crate) const BEHIND_FACTOR: u64 = 3;

/// The workers to ask: `WORKERS`, comma-separated base URLs; empty for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workers(pub Vec<String>);

/// Parses `WORKERS` (`http://host:9100,http://host:9110`; empty: none).
pub(crate) fn parse_workers(s: &str) -> Result<Workers, String> {
    s.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(parse_base_url)
        .collect::<Result<Vec<_>, _>>()
        .map(Workers)
}

/// One worker as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    pub url: String,
    /// Whether it answered its healthcheck with a readable body.
    pub up: bool,
    /// Why it is down (unreachable, timed out, unreadable answer).
    pub error: Option<String>,
    pub signals: Vec<WorkerSignal>,
}

/// One of a worker's signals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerSignal {
    pub signal: String,
    /// Plain state: encoding, starting, restarting, stopped (or what the
    /// worker said, if it is newer than this reader).
    pub state: String,
    pub newest: Option<SegmentReport>,
    /// The newest segment ends more than [`BEHIND_FACTOR`] segment lengths
    /// behind the wall clock.
    pub behind: bool,
}

/// The worker's status in plain words.
pub(crate) fn plain_state(status: &SignalStatus) -> &str {
    match status {
        SignalStatus::Running => "encoding",
        SignalStatus::Retrying => "restarting",
        other => other.as_str(),
    }
}

/// Reads a worker's answer: `Ok((http code, body))` or the transport error.
pub(crate) fn classify(url: &str, answer: Result<(u16, String), String>) -> WorkerView {
    let down = |error: String| WorkerView {
        url: url.to_string(),
        up: false,
        error: Some(error),
        signals: Vec::new(),
    };
    let (code, body) = match answer {
        Ok(a) => a,
        Err(e) => return down(e),
    };
    let health: WorkerHealth = match serde_json::from_str(&body) {
        Ok(h) => h,
        Err(_) => {
            return down(format!(
                "answered HTTP {code} without a worker's health JSON"
            ))
        }
    };
    let signals = health
        .signals
        .iter()
        .map(|(signal, status)| {
            let newest = health.newest.get(signal).cloned();
            let behind = newest
                .as_ref()
                .is_some_and(|n| n.duration_ms > 0 && n.behind_ms > BEHIND_FACTOR * n.duration_ms);
            WorkerSignal {
                signal: signal.clone(),
                state: plain_state(status).to_string(),
                newest,
                behind,
            }
        })
        .collect();
    WorkerView {
        url: url.to_string(),
        up: true,
        error: None,
        signals,
    }
}

/// Asks one worker's `/healthcheck`, waiting at most `timeout`.
pub(crate) async fn ask(client: &reqwest::Client, url: &str, timeout: Duration) -> WorkerView {
    let target = format!("{url}/healthcheck");
    let answer = async {
        let res = client
            .get(&target)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| crate::service::http::root_cause(&e))?;
        let code = res.status().as_u16();
        let body = res
            .text()
            .await
            .map_err(|e| crate::service::http::root_cause(&e))?;
        Ok((code, body))
    }
    .await;
    classify(url, answer)
}

/// Asks every worker at once, in the configured order.
pub(crate) async fn ask_all(
    client: &reqwest::Client,
    workers: &Workers,
    timeout: Duration,
) -> Vec<WorkerView> {
    futures_util::future::join_all(workers.0.iter().map(|w| ask(client, w, timeout))).await
}

/// The WORKERS section of `status`.
pub(crate) fn render(workers: &[WorkerView]) -> String {
    let mut out = String::from("workers:\n");
    out.push_str(&format!(
        "{:<28} {:<12} {:<11} {:<32} {}\n",
        "WORKER", "SIGNAL", "STATE", "NEWEST SEGMENT", "BEHIND"
    ));
    for w in workers {
        if !w.up {
            out.push_str(&format!(
                "{:<28} down ({})\n",
                w.url,
                w.error.as_deref().unwrap_or("no answer")
            ));
            continue;
        }
        if w.signals.is_empty() {
            out.push_str(&format!("{:<28} up, no signal\n", w.url));
        }
        for s in &w.signals {
            let (newest, behind) = match &s.newest {
                Some(n) => (
                    format!("{} #{}", n.name, n.sequence),
                    format!(
                        "{:.1} s{}",
                        n.behind_ms as f64 / 1000.0,
                        if s.behind { " BEHIND" } else { "" }
                    ),
                ),
                None => ("-".to_string(), "-".to_string()),
            };
            out.push_str(&format!(
                "{:<28} {:<12} {:<11} {:<32} {}\n",
                w.url, s.signal, s.state, newest, behind
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://localhost:9100";

    #[test]
    fn parses_the_setting() {
        assert_eq!(parse_workers("").unwrap(), Workers::default());
        assert_eq!(
            parse_workers("http://a:9100/, http://b:9110").unwrap(),
            Workers(vec!["http://a:9100".into(), "http://b:9110".into()])
        );
        assert!(parse_workers("a:9100").is_err());
        assert!(parse_workers("ftp://a:9100").is_err());
    }

    #[test]
    fn reads_a_worker_answer_in_plain_words() {
        let body = r#"{"status":"degraded","service":"worker",
            "signals":{"live01":"running","live02":"retrying","live03":"starting"},
            "newest":{
              "live01":{"name":"segment_00042.ts","sequence":42,"program_date_time":"2026-11-26T03:00:00.000Z","duration_ms":4000,"behind_ms":1200,"written_ms_ago":900},
              "live02":{"name":"segment_00007.ts","sequence":7,"program_date_time":"2026-11-26T02:59:00.000Z","duration_ms":4000,"behind_ms":60000,"written_ms_ago":59000}}}"#;
        let view = classify(URL, Ok((503, body.into())));
        assert!(view.up, "{view:?}");
        let states: Vec<(&str, &str, bool)> = view
            .signals
            .iter()
            .map(|s| (s.signal.as_str(), s.state.as_str(), s.behind))
            .collect();
        assert_eq!(
            states,
            [
                ("live01", "encoding", false),
                ("live02", "restarting", true),
                ("live03", "starting", false)
            ]
        );
        assert_eq!(view.signals[0].newest.as_ref().unwrap().sequence, 42);
        assert!(view.signals[2].newest.is_none());

        let text = render(&[view]);
        let line = |signal: &str| {
            text.lines()
                .find(|l| l.contains(signal))
                .unwrap_or_else(|| panic!("no {signal} line: {text}"))
                .to_string()
        };
        assert!(line("live01").contains("segment_00042.ts #42"), "{text}");
        assert!(line("live01").contains("1.2 s") && !line("live01").contains("BEHIND"));
        assert!(line("live02").contains("60.0 s BEHIND"), "{text}");
        assert!(line("live03").contains("starting"), "{text}");
    }

    #[test]
    fn an_old_worker_answer_still_reads() {
        let view = classify(
            URL,
            Ok((
                200,
                r#"{"status":"ok","service":"worker","signals":{"live01":"running"}}"#.into(),
            )),
        );
        assert!(view.up);
        assert_eq!(view.signals[0].state, "encoding");
        assert!(view.signals[0].newest.is_none());
    }

    #[test]
    fn unreachable_or_foreign_answers_are_down_with_the_reason() {
        let view = classify(URL, Err("connection refused".into()));
        assert!(!view.up);
        let text = render(&[view]);
        assert!(
            text.contains("http://localhost:9100") && text.contains("down (connection refused)"),
            "{text}"
        );
        let view = classify(URL, Ok((404, "not found".into())));
        assert!(!view.up);
        assert!(view.error.unwrap().contains("HTTP 404"));
    }
}
