//! How the proxy learns about a signal outside viewer requests: its routes
//! from the origin (asked on the first request, refreshed every
//! [`ROUTE_REFRESH`], kept when the origin is down: static stability), and a
//! poller per watched signal that reads each packager's playlist every
//! [`POLL_TARGETS`] target durations so freshness is known before a viewer
//! needs it. A signal nobody asked for in [`SIGNAL_IDLE`] stops being watched.
//!
//! A signal the origin refuses is refused again from memory for a second
//! ([`super::negative`]), and concurrent first requests for one signal share
//! one lookup: viewers never drive the origin's load either.

use std::sync::Arc;
use std::time::Instant;

use super::metrics;
use super::request::budget;
use super::signal::lock;
use super::signal::SignalState;
use super::{upstream, Proxy, Refusal, POLL_TARGETS, ROUTE_REFRESH, SIGNAL_IDLE};
use crate::api::{PackagerHealth, PackagerStatus, Packagers, ServingState};
use crate::hls::{MediaKind, PLAYLIST_NAME};
use crate::service::http;

/// Budget for one request to the origin.
pub const ORIGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl Proxy {
    /// The state of a signal, created (routes asked of the origin, poller
    /// started) on its first request.
    pub(super) async fn signal_state(
        self: &Arc<Self>,
        signal: &str,
    ) -> Result<Arc<SignalState>, Refusal> {
        if let Some(state) = self.signals().get(signal) {
            return Ok(state.clone());
        }
        let remembered = lock(&self.refused).get(signal, Instant::now());
        if let Some(refusal) = remembered {
            metrics::PROXY_NEGATIVE_HITS
                .with_label_values(&[refusal.label()])
                .inc();
            return Err(refusal);
        }
        let (proxy, name) = (self.clone(), signal.to_string());
        let (looked_up, _) = self
            .route_flights
            .run(signal, move || async move {
                let result = proxy.routes_from_origin(&name).await;
                let mut refused = lock(&proxy.refused);
                match &result {
                    Ok(_) => refused.forget(&name),
                    Err(refusal) => refused.remember(&name, refusal.clone(), Instant::now()),
                }
                result
            })
            .await;
        let packagers = looked_up.unwrap_or_else(|| {
            Err(Refusal::Unavailable(format!(
                "the route lookup for '{signal}' ended without a result"
            )))
        })?;
        let state = Arc::new(SignalState::new(&packagers, Instant::now()));
        let mut signals = self.signals_mut();
        if let Some(existing) = signals.get(signal) {
            return Ok(existing.clone());
        }
        signals.insert(signal.to_string(), state.clone());
        drop(signals);
        log::info!("Signal '{signal}': routes {}", packagers.join(", "));
        tokio::spawn(self.clone().watch(signal.to_string(), state.clone()));
        Ok(state)
    }

    /// Asks the origin for a signal's packagers, keeping only allowed ones;
    /// counted by outcome.
    async fn routes_from_origin(&self, signal: &str) -> Result<Vec<String>, Refusal> {
        let result = self.ask_origin(signal).await;
        let outcome = match &result {
            Ok(_) => "found",
            Err(Refusal::NotFound(_)) => "unknown",
            Err(Refusal::Unavailable(_)) => "failed",
        };
        metrics::PROXY_ORIGIN_LOOKUPS
            .with_label_values(&[outcome])
            .inc();
        result
    }

    async fn ask_origin(&self, signal: &str) -> Result<Vec<String>, Refusal> {
        let url = format!("{}/live/{signal}/packagers", self.config.origin_url);
        let res = self
            .client
            .get(&url)
            .timeout(ORIGIN_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                Refusal::Unavailable(format!("origin unreachable: {}", http::root_cause(&e)))
            })?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Refusal::NotFound(format!("signal '{signal}' is not live")));
        }
        if !res.status().is_success() {
            return Err(Refusal::Unavailable(format!(
                "origin answered {}",
                res.status()
            )));
        }
        let answer: Packagers = res
            .json()
            .await
            .map_err(|e| Refusal::Unavailable(format!("origin sent unreadable JSON: {e}")))?;
        let allowed: Vec<String> = answer
            .packagers
            .into_iter()
            .filter(|p| {
                let ok = self.config.packagers.contains(p);
                if !ok {
                    log::warn!("Signal '{signal}': ignoring packager {p}, not in PACKAGERS");
                }
                ok
            })
            .collect();
        if allowed.is_empty() {
            return Err(Refusal::Unavailable(format!(
                "no allowed packager serves '{signal}'"
            )));
        }
        Ok(allowed)
    }

    /// Background life of a served signal: polls every packager's playlist to
    /// know its freshness, refreshes routes, and ends when nobody watches.
    async fn watch(self: Arc<Self>, signal: String, state: Arc<SignalState>) {
        let mut last_routes = Instant::now();
        loop {
            let (packagers, target) = state.packagers_and_target();
            let polls = packagers.iter().map(|base| {
                let url = format!("{base}/{signal}/{PLAYLIST_NAME}");
                let client = &self.client;
                async move {
                    let r = upstream::fetch_playlist(client, &url, budget(target)).await;
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
            publish_signal_health(&signal, state.health(now));
            if last_routes.elapsed() >= ROUTE_REFRESH {
                last_routes = Instant::now();
                self.refresh_routes(&signal, &state).await;
            }
            let idle = state.idle_for();
            if idle > SIGNAL_IDLE {
                log::info!(
                    "Signal '{signal}': no viewer for {} s, no longer watched",
                    idle.as_secs()
                );
                self.signals_mut().remove(&signal);
                metrics::PROXY_VIEWERS.with_label_values(&[&signal]).set(0);
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(target.mul_f64(POLL_TARGETS)) => {}
                _ = self.shutdown.wait() => return,
            }
        }
    }

    /// Updates routes from the origin; on any failure keeps the known ones
    /// (static stability: the origin, reporter or discovery may be down).
    async fn refresh_routes(&self, signal: &str, state: &SignalState) {
        match self.routes_from_origin(signal).await {
            Ok(packagers) => {
                if state.confirm_routes(&packagers, Instant::now()) {
                    log::info!("Signal '{signal}': routes now {}", packagers.join(", "));
                }
            }
            Err(refusal) => log::debug!(
                "Signal '{signal}': origin did not confirm routes ({}); keeping those of {} s ago",
                refusal.message(),
                state.routes_confirmed_ago().as_secs()
            ),
        }
    }
}

/// Mirrors one signal's state into its gauge: 1 for the state it is in, 0 for
/// the others (so `== 1` selects it and a change shows as two series moving).
fn publish_signal_health(signal: &str, health: ServingState) {
    for state in ServingState::ALL {
        metrics::PROXY_SIGNAL_STATE
            .with_label_values(&[signal, state.name()])
            .set(i64::from(state == health));
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
