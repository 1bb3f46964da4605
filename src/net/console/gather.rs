//! The one background loop that asks the origin, the proxy, the workers and
//! the fault proxies every refresh and publishes the state every page receives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::view::{
    faults_view, newest_first, remember, source_view, with_gone, ConsoleState, ControlView,
    PackagerView, RenditionView, SignalView, TimelineEntry,
};
use super::{lock, now_text, Console, REFRESH_INTERVAL, SOURCE_TIMEOUT};
use crate::api::{PackagerHealth, ProxyStatus, SignalNames};
use crate::service::http;

impl Console {
    /// Gathers and publishes the state every [`REFRESH_INTERVAL`] (sooner when
    /// a fault was just triggered) until shutdown.
    pub(super) async fn gather_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
                _ = self.refresh_now.notified() => {}
                _ = self.shutdown.wait() => return,
            }
            self.refresh().await;
        }
    }

    /// Asks the origin, the proxy, the workers and the fault proxies at once,
    /// and publishes.
    pub(crate) async fn refresh(&self) {
        let (origin, proxy, controls, workers) = tokio::join!(
            self.origin_signals(),
            self.proxy_status(),
            self.fault_modes(),
            crate::net::workers::ask_all(&self.client, &self.config.workers, SOURCE_TIMEOUT)
        );
        let mut signals: BTreeMap<String, SignalView> = BTreeMap::new();
        if let Ok(names) = &origin {
            for name in names {
                signals.insert(
                    name.clone(),
                    SignalView {
                        signal: name.clone(),
                        live: true,
                        watched: false,
                        state: None,
                        viewers: None,
                        packagers: Vec::new(),
                        renditions: Vec::new(),
                    },
                );
            }
        }
        if let Ok(status) = &proxy {
            let now = Instant::now();
            let mut known = lock(&self.known);
            let mut timeline = lock(&self.timeline);
            for s in &status.signals {
                let view = signals
                    .entry(s.signal.clone())
                    .or_insert_with(|| SignalView {
                        signal: s.signal.clone(),
                        live: false,
                        watched: true,
                        state: None,
                        viewers: None,
                        packagers: Vec::new(),
                        renditions: Vec::new(),
                    });
                view.watched = true;
                view.state = s.state.map(|state| state.name().to_string());
                view.viewers = s.viewers;
                view.renditions = s
                    .renditions
                    .iter()
                    .map(|r| RenditionView {
                        playlist: r.playlist.clone(),
                        state: r.state.name().to_string(),
                        fresh: r
                            .packagers
                            .iter()
                            .filter(|p| p.health == PackagerHealth::Fresh)
                            .count(),
                        packagers: r.packagers.len(),
                    })
                    .collect();
                let seen = known.entry(s.signal.clone()).or_default();
                let packagers = s.packagers.iter().map(PackagerView::from).collect();
                view.packagers = with_gone(seen, packagers, now);
                for record in &s.switches {
                    remember(
                        &mut timeline,
                        TimelineEntry::Switch {
                            at: record.at.clone(),
                            signal: s.signal.clone(),
                            from: record.switch.from.clone(),
                            to: record.switch.to.clone(),
                            reason: record.switch.reason.clone(),
                        },
                    );
                }
            }
        }
        let state = ConsoleState {
            generated_at: now_text(),
            refresh_ms: REFRESH_INTERVAL.as_millis() as u64,
            player_base: self.config.proxy_url.clone(),
            origin: source_view(&self.config.origin_url, &origin),
            proxy: source_view(&self.config.proxy_url, &proxy),
            signals: signals.into_values().collect(),
            timeline: newest_first(&lock(&self.timeline)),
            faults: faults_view(&self.config, controls),
            workers,
        };
        self.state.send_replace(Arc::new(state));
    }

    pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, String> {
        let res = self
            .client
            .get(url)
            .timeout(SOURCE_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", http::root_cause(&e)))?;
        if !res.status().is_success() {
            return Err(format!("answered {}", res.status()));
        }
        res.json()
            .await
            .map_err(|e| format!("sent unreadable JSON: {e}"))
    }

    pub(super) async fn origin_signals(&self) -> Result<SignalNames, String> {
        self.get_json(&format!("{}/signals", self.config.origin_url))
            .await
    }

    pub(super) async fn proxy_status(&self) -> Result<ProxyStatus, String> {
        self.get_json(&format!("{}/status", self.config.proxy_url))
            .await
    }

    /// Each fault proxy's current mode (`GET /_fault`).
    pub(super) async fn fault_modes(&self) -> Vec<ControlView> {
        if !self.faults_enabled() {
            return Vec::new();
        }
        #[derive(Deserialize)]
        struct ModeAnswer {
            mode: String,
        }
        let asks = self.config.faults.0.iter().map(|t| async move {
            let answer: Result<ModeAnswer, String> =
                self.get_json(&format!("{}/_fault", t.control)).await;
            let (mode, error) = match answer {
                Ok(a) => (Some(a.mode), None),
                Err(e) => (None, Some(e)),
            };
            ControlView {
                name: t.name.clone(),
                control: t.control.clone(),
                mode,
                error,
            }
        });
        futures_util::future::join_all(asks).await
    }
}
