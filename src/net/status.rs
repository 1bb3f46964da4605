//! `status`: a table of the running stack for the people running an event:
//! every live signal, where the origin routes it, and each packager's
//! freshness and role as the proxy sees it, its viewers, plus the latest
//! switches; with `WORKERS`, each worker's signals, newest segment and how
//! far behind the wall clock it is.

use std::time::Duration;

use super::workers::{self, parse_workers, WorkerView, Workers};
use crate::api::{Location, PackagerHealth, ProxyStatus, SignalNames, SwitchRecord};
use crate::service::config::parse_base_url;

/// Budget for each request to the stack.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Prints signals, routes and packager freshness from the running stack.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "status", version)]
pub struct StatusConfig {
    /// Origin base URL.
    #[arg(long, env = "ORIGIN_URL", default_value = "http://localhost:8001", value_parser = parse_base_url)]
    pub origin_url: String,
    /// Proxy base URL.
    #[arg(long, env = "PROXY_URL", default_value = "http://localhost:8002", value_parser = parse_base_url)]
    pub proxy_url: String,
    /// Workers to show, comma-separated base URLs of their healthcheck/metrics
    /// port (e.g. http://localhost:9100,http://localhost:9110). Empty: none.
    #[arg(long, env = "WORKERS", default_value = "", hide_default_value = true, value_parser = parse_workers)]
    pub workers: Workers,
}

/// What the stack said; each part may be missing when its service is down.
#[derive(Debug)]
pub struct Snapshot {
    pub signals: Result<SignalNames, String>,
    /// Origin's route (the `server` of `/live/<name>`) per signal.
    pub routes: Vec<(String, Result<String, String>)>,
    pub proxy: Result<ProxyStatus, String>,
    /// Each worker in `WORKERS`, in order (empty without the setting).
    pub workers: Vec<WorkerView>,
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let res = client
        .get(url)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::service::http::root_cause(&e)))?;
    if !res.status().is_success() {
        return Err(format!("{url}: HTTP {}", res.status()));
    }
    res.json().await.map_err(|e| format!("{url}: {e}"))
}

/// Asks the origin and the proxy.
pub async fn snapshot(config: &StatusConfig) -> Snapshot {
    let client = crate::service::http::client(REQUEST_TIMEOUT);
    let signals: Result<SignalNames, String> =
        get_json(&client, &format!("{}/signals", config.origin_url)).await;
    let mut routes = Vec::new();
    for name in signals.as_deref().unwrap_or_default() {
        let route = get_json::<Location>(&client, &format!("{}/live/{name}", config.origin_url))
            .await
            .map(|l| l.server);
        routes.push((name.clone(), route));
    }
    let proxy_status = format!("{}/status", config.proxy_url);
    let (proxy, workers) = tokio::join!(
        get_json(&client, &proxy_status),
        workers::ask_all(&client, &config.workers, workers::WORKER_TIMEOUT)
    );
    Snapshot {
        signals,
        routes,
        proxy,
        workers,
    }
}

/// The table as text.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    match &s.signals {
        Ok(names) if names.is_empty() => out.push_str("origin: no live signal\n"),
        Ok(names) => out.push_str(&format!(
            "origin: {} live signal(s): {}\n",
            names.len(),
            names.join(", ")
        )),
        Err(e) => out.push_str(&format!("origin: unreachable ({e})\n")),
    }
    for (name, route) in &s.routes {
        match route {
            Ok(server) => out.push_str(&format!("  {name} -> {server}\n")),
            Err(e) => out.push_str(&format!("  {name} -> no route ({e})\n")),
        }
    }
    out.push('\n');
    match &s.proxy {
        Err(e) => out.push_str(&format!("proxy: unreachable ({e})\n")),
        Ok(status) if status.signals.is_empty() => {
            out.push_str("proxy: no signal watched yet (nobody has played one)\n")
        }
        Ok(status) => {
            out.push_str(&format!(
                "{:<12} {:<8} {:>7} {:<32} {:<8} {:<6} {:>8} {:>10} {:>10}  {}\n",
                "SIGNAL",
                "STATE",
                "VIEWERS",
                "PACKAGER",
                "HEALTH",
                "ACTIVE",
                "NEWEST",
                "ADVANCED",
                "EDGE",
                "LAST ERROR"
            ));
            for signal in &status.signals {
                let state = signal
                    .state
                    .map(|s| s.name().to_uppercase())
                    .unwrap_or_else(|| "-".into());
                let viewers = signal
                    .viewers
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into());
                for p in &signal.packagers {
                    out.push_str(&format!(
                        "{:<12} {:<8} {:>7} {:<32} {:<8} {:<6} {:>8} {:>10} {:>10}  {}\n",
                        signal.signal,
                        state,
                        viewers,
                        p.packager,
                        p.health.name(),
                        if p.active { "*" } else { "" },
                        p.newest_sequence
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "-".into()),
                        p.advanced_ms_ago
                            .map(|ms| format!("{:.1} s ago", ms as f64 / 1000.0))
                            .unwrap_or_else(|| "-".into()),
                        p.edge_ms_ago
                            .map(|ms| {
                                let behind = p
                                    .behind_twin_ms
                                    .filter(|b| *b >= 1000)
                                    .map(|b| format!(" ({:.1} s behind twin)", b as f64 / 1000.0))
                                    .unwrap_or_default();
                                format!("{:.1} s old{behind}", ms as f64 / 1000.0)
                            })
                            .unwrap_or_else(|| "-".into()),
                        p.last_error.as_deref().unwrap_or("")
                    ));
                }
            }
            for signal in status.signals.iter().filter(|s| !s.renditions.is_empty()) {
                let renditions: Vec<String> = signal
                    .renditions
                    .iter()
                    .map(|r| {
                        let fresh = r
                            .packagers
                            .iter()
                            .filter(|p| p.health == PackagerHealth::Fresh)
                            .count();
                        format!(
                            "{} {} ({fresh}/{} fresh)",
                            r.playlist.trim_end_matches(".m3u8"),
                            r.state.name(),
                            r.packagers.len()
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "{} renditions: {}\n",
                    signal.signal,
                    renditions.join(", ")
                ));
            }
            let mut switches: Vec<(&str, &SwitchRecord)> = status
                .signals
                .iter()
                .flat_map(|s| s.switches.iter().map(move |w| (s.signal.as_str(), w)))
                .collect();
            switches.sort_by(|a, b| b.1.at.cmp(&a.1.at));
            if !switches.is_empty() {
                out.push_str("\nlatest switches:\n");
                for (signal, w) in switches.into_iter().take(10) {
                    out.push_str(&format!(
                        "  {} {signal}: {} -> {} ({})\n",
                        w.at,
                        w.switch.from.as_deref().unwrap_or("-"),
                        w.switch.to,
                        w.switch.reason
                    ));
                }
            }
        }
    }
    if !s.workers.is_empty() {
        out.push('\n');
        out.push_str(&workers::render(&s.workers));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        PackagerHealth, PackagerStatus, ProxySignal, ServingState, Switch, SwitchKind,
    };

    #[test]
    fn renders_packagers_switches_and_outages() {
        let snapshot = Snapshot {
            signals: Ok(vec!["live01".into()]),
            routes: vec![(
                "live01".into(),
                Ok("http://a:8080/live01/playlist.m3u8".into()),
            )],
            proxy: Ok(ProxyStatus {
                signals: vec![ProxySignal {
                    renditions: Vec::new(),
                    signal: "live01".into(),
                    state: Some(ServingState::Degraded),
                    viewers: Some(1234),
                    packagers: vec![
                        PackagerStatus {
                            behind_twin_ms: None,
                            packager: "http://a:8080".into(),
                            health: PackagerHealth::Failing,
                            active: false,
                            newest_sequence: Some(41),
                            advanced_ms_ago: Some(5300),
                            edge_ms_ago: Some(6100),
                            last_error: Some("connection refused".into()),
                        },
                        PackagerStatus {
                            behind_twin_ms: None,
                            packager: "http://b:9090".into(),
                            health: PackagerHealth::Fresh,
                            active: true,
                            newest_sequence: Some(44),
                            advanced_ms_ago: Some(400),
                            edge_ms_ago: None,
                            last_error: None,
                        },
                    ],
                    switches: vec![SwitchRecord {
                        at: "2026-11-25 12:00:00".into(),
                        switch: Switch {
                            from: Some("http://a:8080".into()),
                            kind: SwitchKind::Failing,
                            reason: "http://a:8080 failing: connection refused".into(),
                            to: "http://b:9090".into(),
                        },
                    }],
                }],
            }),
            workers: Vec::new(),
        };
        let text = render(&snapshot);
        assert!(!text.contains("workers:"), "no WORKERS, no section: {text}");
        assert!(
            text.contains("live01 -> http://a:8080/live01/playlist.m3u8"),
            "{text}"
        );
        assert!(text.contains("failing"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("live01") && l.contains("DEGRADED")),
            "{text}"
        );
        assert!(text.contains("VIEWERS"), "{text}");
        assert!(
            text.lines()
                .filter(|l| l.starts_with("live01 "))
                .all(|l| l.contains(" 1234 ")),
            "{text}"
        );
        assert!(text.contains("6.1 s old"), "{text}");
        assert!(text.contains("5.3 s ago"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("http://b:9090") && l.contains('*')),
            "{text}"
        );
        assert!(
            text.contains("-> http://b:9090 (http://a:8080 failing"),
            "{text}"
        );

        let down = Snapshot {
            signals: Err("connection refused".into()),
            routes: vec![],
            proxy: Err("connection refused".into()),
            workers: vec![workers::classify(
                "http://w:9100",
                Err("connection refused".into()),
            )],
        };
        let text = render(&down);
        assert!(text.contains("origin: unreachable"), "{text}");
        assert!(text.contains("proxy: unreachable"), "{text}");
        assert!(text.contains("workers:"), "{text}");
        assert!(
            text.contains("http://w:9100") && text.contains("down (connection refused)"),
            "{text}"
        );
    }
}
