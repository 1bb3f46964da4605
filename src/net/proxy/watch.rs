//! The poller: how the proxy learns about a signal outside viewer requests.
//! One task per served signal reads each packager's playlist every
//! [`POLL_TARGETS`] target durations, so freshness is known before a viewer
//! needs it, publishes the signal's gauges, has the routes refreshed every
//! [`ROUTE_REFRESH`], and ends when nobody asked for the signal in
//! [`SIGNAL_IDLE`] (or at shutdown).
//!
//! ```text
//! loop: poll every packager ─▶ SignalState (freshness, names, end)
//!       ─▶ gauges (viewers, freshness, serving state)
//!       ─▶ every ROUTE_REFRESH: Routing::refresh
//!       ─▶ idle for SIGNAL_IDLE? Routing::forget, stop
//!       ─▶ sleep target × POLL_TARGETS (or shutdown)
//! ```

use std::sync::Arc;
use std::time::Instant;

use super::budgets::{Budget, POLL_TARGETS, ROUTE_REFRESH, SIGNAL_IDLE};
use super::metrics;
use super::routing::Routing;
use super::signal::SignalState;
use super::upstream;
use crate::api::{PackagerHealth, PackagerStatus, ServingState};
use crate::hls::{MediaKind, PLAYLIST_NAME};
use crate::service::shutdown::Shutdown;

/// Starts one watch per signal the routing learns.
#[derive(Clone)]
pub(super) struct Poller {
    client: reqwest::Client,
    routing: Arc<Routing>,
    shutdown: Shutdown,
}

impl Poller {
    pub(super) fn new(client: reqwest::Client, routing: Arc<Routing>, shutdown: Shutdown) -> Self {
        Poller {
            client,
            routing,
            shutdown,
        }
    }

    /// Watches `signal` in a task of its own until it is idle or the proxy
    /// shuts down.
    pub(super) fn start(&self, signal: &str, state: Arc<SignalState>) {
        tokio::spawn(self.clone().watch(signal.to_string(), state));
    }

    /// Background life of a served signal: polls every packager's playlist to
    /// know its freshness, refreshes routes, and ends when nobody watches.
    async fn watch(self, signal: String, state: Arc<SignalState>) {
        let mut last_routes = Instant::now();
        loop {
            let (packagers, target) = state.packagers_and_target();
            let polls = packagers.iter().map(|base| {
                let url = format!("{base}/{signal}/{PLAYLIST_NAME}");
                let client = &self.client;
                async move {
                    let r =
                        upstream::fetch_playlist(client, &url, Budget::for_target(target)).await;
                    (base.clone(), r)
                }
            });
            for (base, result) in futures_util::future::join_all(polls).await {
                match result {
                    Ok(fetched) => state.observe_playlist(&base, &fetched.facts, Instant::now()),
                    Err(e) => {
                        log::debug!("Signal '{signal}': poll of {base} failed: {e}");
                        state.observe_failure(&base, MediaKind::Playlist, &e.to_string());
                    }
                }
            }
            let now = Instant::now();
            metrics::PROXY_VIEWERS
                .with_label_values(&[&signal])
                .set(state.expire_viewers(now) as i64);
            publish_freshness(&signal, &state.status(now));
            publish_serving_state(&signal, state.health(now));
            if last_routes.elapsed() >= ROUTE_REFRESH {
                last_routes = Instant::now();
                self.routing.refresh(&signal, &state).await;
            }
            let idle = state.idle_for();
            if idle > SIGNAL_IDLE {
                log::info!(
                    "Signal '{signal}': no viewer for {} s, no longer watched",
                    idle.as_secs()
                );
                self.routing.forget(&signal);
                metrics::PROXY_VIEWERS.with_label_values(&[&signal]).set(0);
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(target.mul_f64(POLL_TARGETS)) => {}
                _ = self.shutdown.wait() => return,
            }
        }
    }
}

/// Mirrors one signal's state into its gauge: 1 for the state it is in, 0 for
/// the others (so `== 1` selects it and a change shows as two series moving).
fn publish_serving_state(signal: &str, now: ServingState) {
    for state in ServingState::ALL {
        metrics::PROXY_SIGNAL_STATE
            .with_label_values(&[signal, state.name()])
            .set(i64::from(state == now));
    }
}

/// Mirrors one signal's failover view into the freshness gauges.
fn publish_freshness(signal: &str, packagers: &[PackagerStatus]) {
    for p in packagers {
        let labels = [signal, p.packager.as_str()];
        if let Some(newest) = p.newest_sequence {
            metrics::PROXY_NEWEST_SEQUENCE
                .with_label_values(&labels)
                .set(newest as i64);
        }
        if let Some(ms) = p.advanced_ms_ago {
            metrics::PROXY_ADVANCE_AGE
                .with_label_values(&labels)
                .set(ms as f64 / 1000.0);
        }
        let healthy = matches!(p.health, PackagerHealth::Fresh | PackagerHealth::Unknown);
        metrics::PROXY_HEALTHY
            .with_label_values(&labels)
            .set(healthy as i64);
        metrics::PROXY_ACTIVE
            .with_label_values(&labels)
            .set(p.active as i64);
    }
}
