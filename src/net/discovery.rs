//! Discovery: every few seconds, finds the signals being ingested (a playlist
//! under OUTPUT_STREAM_PATH updated recently) and the packagers that are
//! healthy and serve each one, and POSTs one report per signal to the
//! reporter. Unlike the seed's version it never dies when the reporter is
//! down: it retries with backoff and says so once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use prometheus::IntCounterVec;

use super::auth::{Token, TokenArgs};
use crate::api::Report;
use crate::hls::multivariant::Multivariant;
use crate::hls::{classify_media_file, is_valid_signal_name, PLAYLIST_NAME};
use crate::service::config::{parse_base_url, parse_seconds};
use crate::service::metrics::counter;
use crate::service::shutdown::Shutdown;

/// Budget for one packager check (health or playlist).
const PACKAGER_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Budget for one POST to the reporter.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry pause while the reporter is down; doubles up to the interval.
const RETRY_START: Duration = Duration::from_millis(250);

/// Discovery's metric: rounds, by result (reported, reporter_down).
pub(crate) static DISCOVERY_ROUNDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "nonstop_discovery_rounds_total",
        "Discovery rounds, by result (reported, reporter_down).",
        &["result"],
    )
});

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

/// Signals whose playlist was written within `fresh_within` of `now`: for a
/// ladder (`playlist.m3u8` is its multivariant playlist, written once), every
/// rendition's media playlist it names; a signal is live when its renditions are.
pub(crate) fn live_signals(output: &Path, fresh_within: Duration, now: SystemTime) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(output) else {
        return Vec::new();
    };
    let fresh = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                now.duration_since(modified).unwrap_or(Duration::ZERO) <= fresh_within
            })
    };
    let mut signals: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_valid_signal_name(&name) {
                return None;
            }
            let entry = e.path().join(PLAYLIST_NAME);
            let text = std::fs::read(&entry).ok()?;
            let live = match Multivariant::parse(&text) {
                Some(ladder) => ladder
                    .uris()
                    .all(|uri| classify_media_file(uri).is_some() && fresh(&e.path().join(uri))),
                None => fresh(&entry),
            };
            live.then_some(name)
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
    log::info!(
        "Discovery watching {} for signals, checking {}, reporting to {}",
        config.output.display(),
        config.packagers.join(", "),
        config.reporter_url
    );
    every_round(
        config.interval,
        &config.reporter_url,
        &shutdown,
        async || round(&config, &client, token.as_ref(), &mut registered).await,
    )
    .await;
    let _ = metrics.await;
    log::info!("Discovery stopped");
    Ok(())
}

/// Runs `round` until shutdown: one round per `interval` while the reporter
/// takes the reports, sooner (from [`RETRY_START`], doubling up to `interval`)
/// while it cannot, so a reporter that comes back is refilled quickly without
/// being flooded while it is down. Apart from `round` so the pacing is tested
/// on paused time.
async fn every_round(
    interval: Duration,
    reporter_url: &str,
    shutdown: &Shutdown,
    mut round: impl AsyncFnMut() -> Result<(), String>,
) {
    let mut failures: u32 = 0;
    while !shutdown.is_triggered() {
        let pause = match round().await {
            Ok(()) => {
                DISCOVERY_ROUNDS.with_label_values(&["reported"]).inc();
                if failures > 0 {
                    log::info!("Reporter at {reporter_url} is back");
                }
                failures = 0;
                interval
            }
            Err(e) => {
                DISCOVERY_ROUNDS.with_label_values(&["reporter_down"]).inc();
                failures += 1;
                if failures == 1 {
                    log::warn!("Cannot report to {reporter_url}: {e}; retrying with backoff");
                } else {
                    log::debug!("Still cannot report: {e}");
                }
                RETRY_START
                    .saturating_mul(1 << failures.min(10))
                    .min(interval)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => {}
        }
    }
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
        // A ladder: live while every rendition it names is written.
        let ladder = dir.path().join("ladder");
        std::fs::create_dir_all(&ladder).expect("mkdir");
        std::fs::write(
            ladder.join(PLAYLIST_NAME),
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p.m3u8\n",
        )
        .expect("write");
        std::fs::write(ladder.join("720p.m3u8"), "#EXTM3U\n").expect("write");
        let live = live_signals(dir.path(), Duration::from_secs(10), now);
        assert!(!live.contains(&"ladder".to_string()), "360p is not written");
        std::fs::write(ladder.join("360p.m3u8"), "#EXTM3U\n").expect("write");
        let live = live_signals(dir.path(), Duration::from_secs(10), now);
        assert!(live.contains(&"ladder".to_string()), "{live:?}");
        assert!(live_signals(dir.path(), Duration::from_secs(10), later).is_empty());
        assert!(live_signals(&dir.path().join("nope"), Duration::from_secs(10), now).is_empty());
    }

    /// When each round ran, in seconds after the start: `fails(n)` says
    /// whether round `n` (from 1) cannot reach the reporter; shutdown fires
    /// during round `rounds`.
    async fn round_times(interval: Duration, rounds: usize, fails: fn(usize) -> bool) -> Vec<f64> {
        let shutdown = Shutdown::new();
        let start = tokio::time::Instant::now();
        let mut times = Vec::new();
        every_round(interval, "http://reporter", &shutdown, async || {
            times.push(start.elapsed().as_secs_f64());
            if times.len() == rounds {
                shutdown.trigger();
            }
            if fails(times.len()) {
                Err("connection refused".to_string())
            } else {
                Ok(())
            }
        })
        .await;
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_reporter_gets_one_round_per_interval() {
        let times = round_times(Duration::from_secs(2), 4, |_| false).await;
        assert_eq!(times, vec![0.0, 2.0, 4.0, 6.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_down_reporter_is_retried_sooner_backing_off_to_the_interval() {
        // Rounds 2 to 6 find the reporter down: retries after 0.5, 1, 2 s
        // (doubling from 250 ms, capped at the interval), then the interval.
        let times = round_times(Duration::from_secs(2), 8, |n| (2..=6).contains(&n)).await;
        assert_eq!(times, vec![0.0, 2.0, 2.5, 3.5, 5.5, 7.5, 9.5, 11.5]);
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_long_interval_the_retries_keep_doubling() {
        // With a 60 s interval the retries keep doubling past 2 s.
        let times = round_times(Duration::from_secs(60), 6, |n| n <= 5).await;
        assert_eq!(times, vec![0.0, 0.5, 1.5, 3.5, 7.5, 15.5]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_pause_at_once() {
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            trigger.trigger();
        });
        let start = tokio::time::Instant::now();
        let mut rounds = 0;
        every_round(
            Duration::from_secs(60),
            "http://reporter",
            &shutdown,
            async || {
                rounds += 1;
                Ok(())
            },
        )
        .await;
        assert_eq!(rounds, 1);
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }
}
