//! Where each signal is routed: the packagers the origin names for it, kept
//! per signal with everything else the proxy knows of it ([`SignalState`]).
//!
//! ```text
//! first request ─▶ lookup ─known─▶ its state
//!                    │ new: negative cache? ─refused a moment ago─▶ the same refusal
//!                    ▼
//!          one origin lookup per signal at a time (shared by concurrent requests)
//!          GET <origin>/live/<s>/packagers ─▶ only packagers in PACKAGERS ─▶ new state
//! poller ─every ROUTE_REFRESH─▶ refresh: new routes, or (origin down) the known ones
//! ```
//!
//! Routes are asked on a signal's first request and refreshed every
//! [`ROUTE_REFRESH`] by its poller, and kept when the origin, reporter or
//! discovery is down (static stability). A signal the origin refuses is
//! refused again from memory for a second ([`super::negative`]), and
//! concurrent first requests for one signal share one lookup: viewers never
//! drive the origin's load.
//!
//! [`ROUTE_REFRESH`]: super::budgets::ROUTE_REFRESH

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use super::budgets::ORIGIN_TIMEOUT;
use super::flight::Flights;
use super::metrics;
use super::negative::NegativeCache;
use super::refusal::Refusal;
use super::signal::SignalState;
use super::stream::lock;
use crate::api::Packagers;
use crate::service::http;

/// A signal's state, and whether this lookup created it (then its poller
/// must be started).
pub(super) enum Lookup {
    Known(Arc<SignalState>),
    New(Arc<SignalState>),
}

/// The signals being served and where they are routed.
pub(super) struct Routing {
    client: reqwest::Client,
    /// Asked where each signal lives.
    origin_url: String,
    /// `PACKAGERS`: the only packagers ever contacted, whatever the origin says.
    allowed: Vec<String>,
    /// Signals being served, created on their first request.
    signals: RwLock<HashMap<String, Arc<SignalState>>>,
    /// First route lookups at the origin in flight, by signal.
    lookups: Flights<Result<Vec<String>, Refusal>>,
    /// Signals the origin just refused, not asked again for a moment.
    refused: Mutex<NegativeCache>,
}

impl Routing {
    pub(super) fn new(client: reqwest::Client, origin_url: String, allowed: Vec<String>) -> Self {
        Routing {
            client,
            origin_url,
            allowed,
            signals: RwLock::new(HashMap::new()),
            lookups: Flights::default(),
            refused: Mutex::new(NegativeCache::default()),
        }
    }

    /// The state of a signal, created with its routes from the origin on its
    /// first request.
    pub(super) async fn lookup(self: &Arc<Self>, signal: &str) -> Result<Lookup, Refusal> {
        if let Some(state) = self.watched(signal) {
            return Ok(Lookup::Known(state));
        }
        let remembered = lock(&self.refused).get(signal, Instant::now());
        if let Some(refusal) = remembered {
            metrics::PROXY_NEGATIVE_HITS
                .with_label_values(&[refusal.label()])
                .inc();
            return Err(refusal);
        }
        let (routing, name) = (self.clone(), signal.to_string());
        let (looked_up, _) = self
            .lookups
            .run(signal, move || async move {
                let result = routing.routes_from_origin(&name).await;
                let mut refused = lock(&routing.refused);
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
            return Ok(Lookup::Known(existing.clone()));
        }
        signals.insert(signal.to_string(), state.clone());
        drop(signals);
        log::info!("Signal '{signal}': routes {}", packagers.join(", "));
        Ok(Lookup::New(state))
    }

    /// The state of a signal being served, if it is.
    pub(super) fn watched(&self, signal: &str) -> Option<Arc<SignalState>> {
        self.signals().get(signal).cloned()
    }

    /// Every signal being served, by name.
    pub(super) fn all(&self) -> Vec<(String, Arc<SignalState>)> {
        let mut all: Vec<(String, Arc<SignalState>)> = self
            .signals()
            .iter()
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Stops serving `signal` (nobody watches it); its next request looks
    /// it up again.
    pub(super) fn forget(&self, signal: &str) {
        self.signals_mut().remove(signal);
    }

    /// Updates routes from the origin; on any failure keeps the known ones
    /// (static stability: the origin, reporter or discovery may be down).
    pub(super) async fn refresh(&self, signal: &str, state: &SignalState) {
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

    /// Asks the origin for a signal's packagers, keeping only allowed ones;
    /// counted by outcome.
    async fn routes_from_origin(&self, signal: &str) -> Result<Vec<String>, Refusal> {
        let result = self.ask_origin(signal).await;
        let outcome = match &result {
            Ok(_) => "found",
            Err(Refusal::NotFound(_)) => "unknown",
            Err(_) => "failed",
        };
        metrics::PROXY_ORIGIN_LOOKUPS
            .with_label_values(&[outcome])
            .inc();
        result
    }

    async fn ask_origin(&self, signal: &str) -> Result<Vec<String>, Refusal> {
        let url = format!("{}/live/{signal}/packagers", self.origin_url);
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
                let ok = self.allowed.contains(p);
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

    fn signals(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<SignalState>>> {
        self.signals.read().unwrap_or_else(|p| p.into_inner())
    }

    fn signals_mut(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<SignalState>>> {
        self.signals.write().unwrap_or_else(|p| p.into_inner())
    }
}
