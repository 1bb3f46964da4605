//! Discovery: every few seconds, finds the signals being ingested (a playlist
//! under OUTPUT_STREAM_PATH updated recently) and the packagers that are
//! healthy and serve each one, and POSTs one report per signal to the
//! reporter. Unlike the seed's version it never dies when the reporter is
//! down: it retries with backoff and says so once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::auth::{Token, TokenArgs};
use super::reporter::Report;
use crate::hls::{is_valid_signal_name, PLAYLIST_NAME};
use crate::service::config::{parse_base_url, parse_seconds};
use crate::service::metrics::DISCOVERY_ROUNDS;
use crate::service::shutdown::Shutdown;

/// Budget for one packager check (health or playlist).
const PACKAGER_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Budget for one POST to the reporter.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry pause while the reporter is down; doubles up to the interval.
const RETRY_START: Duration = Duration::from_millis(250);

/// Finds live signals and healthy packagers and reports them.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "discovery", version)]
pub struct DiscoveryConfig {
    /// Folder the worker writes to.
    #[arg(long, env = "OUTPUT_STREAM_PATH", default_value = "./output")]
    pub output: PathBuf,
    /// Packager base URLs to check, comma-separated.
    #[arg(long, env = "PACKAGERS", default_value = "http://localhost:8080,http://localhost:9090", value_delimiter = ',', value_parser = parse_base_url)]
    pub packagers: Vec<String>,
    /// Reporter base URL.
    #[arg(long, env = "REPORTER_URL", default_value = "http://localhost:2000", value_parser = parse_base_url)]
    pub reporter_url: String,
    /// Seconds between two rounds.
    #[arg(long, env = "DISCOVERY_INTERVAL_SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub interval: Duration,
    /// A signal whose playlist is older than this many seconds is not live.
    #[arg(long, env = "SIGNAL_FRESH_SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub fresh_within: Duration,
    #[command(flatten)]
    pub token: TokenArgs,
    /// Port of discovery's `/metrics` and `/healthcheck`.
    #[arg(long, env = "DISCOVERY_METRICS_PORT", default_value = "9101", value_parser = crate::service::config::parse_port)]
    pub metrics_port: u16,
    #[command(flatten)]
    pub listen: crate::service::config::ListenArgs,
}

/// Signals whose playlist was written within `fresh_within` of `now`.
pub fn live_signals(output: &Path, fresh_within: Duration, now: SystemTime) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(output) else {
        return Vec::new();
    };
    let mut signals: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_valid_signal_name(&name) {
                return None;
            }
            let modified = std::fs::metadata(e.path().join(PLAYLIST_NAME))
                .and_then(|m| m.modified())
                .ok()?;
            let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
            (age <= fresh_within).then_some(name)
        })
        .collect();
    signals.sort();
    signals
}

/// Runs until shutdown; fails only on a bad token setting.
pub async fn run(config: DiscoveryConfig, shutdown: Shutdown) -> Result<(), String> {
    let token = config.token.load()?;
    let client = crate::service::http::client(PACKAGER_CHECK_TIMEOUT);
    let listener = crate::service::server::bind(&config.listen, config.metrics_port)
        .await
        .map_err(|e| e.to_string())?;
    let metrics = tokio::spawn({
        let listen = config.listen.clone();
        let stop = shutdown.clone();
        async move {
            let routes = crate::service::metrics::standalone_routes("discovery");
            crate::service::server::serve_on("discovery", listener, &listen, routes, stop).await
        }
    });
    let mut registered: BTreeSet<String> = BTreeSet::new();
    let mut failures: u32 = 0;
    log::info!(
        "Discovery watching {} for signals, checking {}, reporting to {}",
        config.output.display(),
        config.packagers.join(", "),
        config.reporter_url
    );
    while !shutdown.is_triggered() {
        let pause = match round(&config, &client, token.as_ref(), &mut registered).await {
            Ok(()) => {
                DISCOVERY_ROUNDS.with_label_values(&["reported"]).inc();
                if failures > 0 {
                    log::info!("Reporter at {} is back", config.reporter_url);
                }
                failures = 0;
                config.interval
            }
            Err(e) => {
                DISCOVERY_ROUNDS.with_label_values(&["reporter_down"]).inc();
                failures += 1;
                if failures == 1 {
                    log::warn!(
                        "Cannot report to {}: {e}; retrying with backoff",
                        config.reporter_url
                    );
                } else {
                    log::debug!("Still cannot report: {e}");
                }
                RETRY_START
                    .saturating_mul(1 << failures.min(10))
                    .min(config.interval)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => {}
        }
    }
    let _ = metrics.await;
    log::info!("Discovery stopped");
    Ok(())
}

/// One round: scan, check, report. Fails only when the reporter cannot be told.
async fn round(
    config: &DiscoveryConfig,
    client: &reqwest::Client,
    token: Option<&Token>,
    registered: &mut BTreeSet<String>,
) -> Result<(), String> {
    let signals = live_signals(&config.output, config.fresh_within, SystemTime::now());
    let healthy = healthy_packagers(client, &config.packagers).await;
    for gone in registered
        .iter()
        .filter(|s| !signals.contains(s))
        .cloned()
        .collect::<Vec<_>>()
    {
        log::info!("Signal '{gone}' is no longer ingested");
        registered.remove(&gone);
    }
    for signal in signals {
        let mut serving = Vec::new();
        for base in &healthy {
            if serves(client, base, &signal).await {
                serving.push(base.clone());
            }
        }
        if serving.is_empty() {
            log::warn!("Signal '{signal}' is ingested but no healthy packager serves it");
            continue;
        }
        let report = Report {
            signal: signal.clone(),
            packagers: serving,
        };
        let mut request = client
            .post(format!("{}/ingests", config.reporter_url))
            .timeout(REPORT_TIMEOUT)
            .json(&report);
        if let Some(token) = token {
            request = request.header("authorization", token.bearer());
        }
        let res = request
            .send()
            .await
            .map_err(|e| crate::service::http::root_cause(&e))?;
        if !res.status().is_success() {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            return Err(format!("reporter answered {status}: {body}"));
        }
        if registered.insert(signal.clone()) {
            log::info!("Registered signal '{signal}' as ingest source");
        }
    }
    Ok(())
}

async fn healthy_packagers(client: &reqwest::Client, packagers: &[String]) -> Vec<String> {
    let checks = packagers.iter().map(|base| async move {
        let ok = client
            .get(format!("{base}/healthcheck"))
            .timeout(PACKAGER_CHECK_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            log::debug!("Packager {base} is not healthy");
        }
        ok.then(|| base.clone())
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn serves(client: &reqwest::Client, base: &str, signal: &str) -> bool {
    client
        .get(format!("{base}/{signal}/{PLAYLIST_NAME}"))
        .timeout(PACKAGER_CHECK_TIMEOUT)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recent_playlists_count_as_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["live01", "old", "empty", "bad name"] {
            std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
        }
        for name in ["live01", "old", "bad name"] {
            std::fs::write(dir.path().join(name).join(PLAYLIST_NAME), "#EXTM3U\n").expect("write");
        }
        let now = SystemTime::now();
        let live = live_signals(dir.path(), Duration::from_secs(10), now);
        assert_eq!(live, vec!["live01".to_string(), "old".to_string()]);
        let later = now + Duration::from_secs(60);
        assert!(live_signals(dir.path(), Duration::from_secs(10), later).is_empty());
        assert!(live_signals(&dir.path().join("nope"), Duration::from_secs(10), now).is_empty());
    }
}
