//! The poller: how the proxy learns about a signal outside viewer requests.
//! One task per served signal reads the signal's `playlist.m3u8` (to learn
//! whether it is a ladder, and its renditions), and keeps every media
//! playlist's copies current from every packager: a packager that holds
//! blocking reloads (low latency) is followed by a task of its own that
//! asks it for the next part and is answered the moment the part is out;
//! the others are read every [`POLL_TARGETS`] target durations. So freshness
//! is known, part by part, before a viewer needs it. The signal's task also
//! publishes its gauges, has the routes refreshed every [`ROUTE_REFRESH`],
//! and ends when nobody asked for the signal in [`SIGNAL_IDLE`] (or at
//! shutdown), its followers with it.
//!
//! ```text
//! loop: every ROUTE_REFRESH: playlist.m3u8 from every packager ─▶ ladder? renditions
//!       each stream × packager: blocks? ─yes─▶ follower: ?_HLS_msn=n&_HLS_part=k ─▶ copy, again
//!                                          └no─▶ read now ─▶ copy
//!       ─▶ gauges (viewers, freshness, serving state)
//!       ─▶ every ROUTE_REFRESH: Routing::refresh
//!       ─▶ idle for SIGNAL_IDLE? Routing::forget, stop
//!       ─▶ sleep target × POLL_TARGETS (or shutdown)
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::budgets::{
    Budget, BODY_TARGETS, POLL_TARGETS, ROUTE_REFRESH, SIGNAL_IDLE, SKEW_WARNING,
};
use super::flight::Flights;
use super::metrics;
use super::routing::Routing;
use super::signal::SignalState;
use super::stream::{Copy, StreamState};
use super::upstream::{self, FetchedEntry};
use crate::api::{PackagerHealth, PackagerStatus, ServingState};
use crate::hls::blocking::hold_limit;
use crate::hls::multivariant::Multivariant;
use crate::hls::{MediaKind, PLAYLIST_NAME};
use crate::service::shutdown::Shutdown;

/// Starts one watch per signal the routing learns.
#[derive(Clone)]
pub(super) struct Poller {
    client: reqwest::Client,
    routing: Arc<Routing>,
    shutdown: Shutdown,
    /// Reads of every packager a viewer's request started, by `signal/stream`,
    /// shared by every request asking meanwhile.
    reads: Arc<Flights<()>>,
    /// The program's runtime, where watches run: not on a serving thread
    /// (`SERVE_THREADS`), where a signal's first viewer would have started
    /// it, to wait behind that thread's thousands of viewers.
    background: tokio::runtime::Handle,
}

impl Poller {
    /// A poller whose watches run on the runtime it is made on.
    pub(super) fn new(client: reqwest::Client, routing: Arc<Routing>, shutdown: Shutdown) -> Self {
        Poller {
            client,
            routing,
            shutdown,
            reads: Arc::new(Flights::default()),
            background: tokio::runtime::Handle::current(),
        }
    }

    /// Watches `signal` in a task of its own, on the program's runtime,
    /// until it is idle or the proxy shuts down.
    pub(super) fn start(&self, signal: &str, state: Arc<SignalState>) {
        self.background
            .spawn(self.clone().watch(signal.to_string(), state));
    }

    /// Reads `stream` from every packager now (one read at a time per
    /// stream, shared by the requests asking meanwhile): what a viewer's
    /// request for a name no copy lists yet waits for.
    pub(super) async fn read_every_packager(&self, signal: &str, stream: &Arc<StreamState>) {
        let (poller, name, stream) = (self.clone(), signal.to_string(), stream.clone());
        let key = format!("{signal}/{}", stream.name());
        let _ = self
            .reads
            .run(&key, move || async move {
                let packagers = poller.packagers_of(&name);
                poller.read(&name, &stream, &packagers).await;
            })
            .await;
    }

    fn packagers_of(&self, signal: &str) -> Vec<String> {
        self.routing
            .watched(signal)
            .map(|s| s.packagers())
            .unwrap_or_default()
    }

    /// Background life of a served signal (see the module documentation).
    async fn watch(self, signal: String, state: Arc<SignalState>) {
        let mut followers: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
        // Packagers reported behind their twin by more than SKEW_WARNING.
        let mut warned: Vec<String> = Vec::new();
        let mut last_routes = Instant::now();
        let mut last_entry: Option<Instant> = None;
        loop {
            let entry_read = last_entry.is_none_or(|t| t.elapsed() >= ROUTE_REFRESH);
            if entry_read {
                last_entry = Some(Instant::now());
                self.read_entry(&signal, &state).await;
            }
            let packagers = state.packagers();
            let streams = state.streams();
            for stream in &streams {
                // A single rendition's copies were just read as the entry.
                let just_read = entry_read && stream.name() == PLAYLIST_NAME;
                let mut polled = Vec::new();
                for base in &packagers {
                    let key = (stream.name().to_string(), base.clone());
                    if stream.can_block(base) {
                        let running = followers.get(&key).is_some_and(|f| !f.is_finished());
                        if !running {
                            let follower =
                                self.clone()
                                    .follow(signal.clone(), stream.clone(), base.clone());
                            followers.insert(key, tokio::spawn(follower));
                        }
                    } else if !just_read {
                        polled.push(base.clone());
                    }
                }
                self.read(&signal, stream, &polled).await;
            }
            followers.retain(|(name, base), follower| {
                let keep = !follower.is_finished()
                    && packagers.contains(base)
                    && streams.iter().any(|s| s.name() == name);
                if !keep {
                    follower.abort();
                }
                keep
            });
            let now = Instant::now();
            metrics::PROXY_VIEWERS
                .with_label_values(&[&signal])
                .set(state.expire_viewers(now) as i64);
            if let Some(main) = state.main_stream() {
                let status = main.status(now);
                publish_freshness(&signal, &status);
                warn_of_skew(&signal, &status, &mut warned);
            }
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
                break;
            }
            let target = state.target_duration();
            tokio::select! {
                _ = tokio::time::sleep(target.mul_f64(POLL_TARGETS)) => {}
                _ = self.shutdown.wait() => break,
            }
        }
        for follower in followers.values() {
            follower.abort();
        }
    }

    /// Reads the signal's `playlist.m3u8` from every packager: a ladder's
    /// multivariant playlist gives the renditions (every one any packager
    /// names); a media playlist is the single rendition's copy.
    async fn read_entry(&self, signal: &str, state: &SignalState) {
        let budget = Budget::for_target(state.target_duration());
        let reads = state.packagers().into_iter().map(|base| {
            let url = format!("{base}/{signal}/{PLAYLIST_NAME}");
            let client = &self.client;
            async move { (base, upstream::fetch_entry(client, &url, budget).await) }
        });
        let mut ladder: Option<(Multivariant, Option<std::time::SystemTime>)> = None;
        for (base, result) in futures_util::future::join_all(reads).await {
            match result {
                Ok(FetchedEntry::Multivariant(multivariant, modified)) => {
                    ladder = Some(match ladder {
                        None => (multivariant, modified),
                        Some((mut known, at)) => {
                            for v in multivariant.variants {
                                if !known.variants.iter().any(|k| k.uri == v.uri) {
                                    known.variants.push(v);
                                }
                            }
                            (known, at)
                        }
                    });
                }
                Ok(FetchedEntry::Media(fetched)) => {
                    if state.ladder().is_none() {
                        let copy = Copy::new(fetched.body, fetched.facts, fetched.last_modified);
                        state
                            .stream(PLAYLIST_NAME)
                            .observe(&base, copy, Instant::now());
                    }
                }
                Err(e) => {
                    log::debug!("Signal '{signal}': reading {base}'s {PLAYLIST_NAME} failed: {e}")
                }
            }
        }
        if let Some((multivariant, modified)) = ladder {
            state.set_ladder(multivariant, modified);
        }
    }

    /// Reads `stream` from each of `packagers` at once; each copy (or
    /// failure) is observed.
    async fn read(&self, signal: &str, stream: &StreamState, packagers: &[String]) {
        let budget = Budget::for_target(stream.target_duration());
        let reads = packagers.iter().map(|base| {
            let url = format!("{base}/{signal}/{}", stream.name());
            let client = &self.client;
            async move { (base, upstream::fetch_playlist(client, &url, budget).await) }
        });
        for (base, result) in futures_util::future::join_all(reads).await {
            match result {
                Ok(fetched) => stream.observe(
                    base,
                    Copy::new(fetched.body, fetched.facts, fetched.last_modified),
                    Instant::now(),
                ),
                Err(e) => {
                    log::debug!(
                        "Signal '{signal}': read of {base}/{} failed: {e}",
                        stream.name()
                    );
                    stream.observe_failure(base, MediaKind::Playlist, &e.to_string());
                }
            }
        }
    }

    /// Follows `base`'s copy of `stream` part by part: asks for the part
    /// after the newest it listed (a blocking reload, answered as soon as
    /// the part is out), observes each answer, and asks again, until the
    /// packager stops holding blocking reloads, the watch aborts it, or
    /// the proxy shuts down. A failure counts against the packager and the
    /// next try waits a part target.
    async fn follow(self, signal: String, stream: Arc<StreamState>, base: String) {
        loop {
            let Some(reload) = stream.next_reload(&base) else {
                return;
            };
            let target = stream.target_duration();
            let budget = Budget {
                first_byte: hold_limit(target) + target / 2,
                body: target.mul_f64(BODY_TARGETS),
            };
            let url = format!(
                "{base}/{signal}/{}?_HLS_msn={}&_HLS_part={}",
                stream.name(),
                reload.msn,
                reload.part.unwrap_or(0)
            );
            let result = tokio::select! {
                r = upstream::fetch_playlist(&self.client, &url, budget) => r,
                _ = self.shutdown.wait() => return,
            };
            match result {
                Ok(fetched) => stream.observe(
                    &base,
                    Copy::new(fetched.body, fetched.facts, fetched.last_modified),
                    Instant::now(),
                ),
                Err(e) => {
                    log::debug!(
                        "Signal '{signal}': following {base}/{} failed: {e}",
                        stream.name()
                    );
                    stream.observe_failure(&base, MediaKind::Playlist, &e.to_string());
                    let pause = stream.part_target().unwrap_or(target);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.shutdown.wait() => return,
                    }
                }
            }
            if !stream.can_block(&base) {
                return;
            }
        }
    }
}

/// Logs a packager whose live edge drifts more than [`SKEW_WARNING`] behind
/// its freshest twin (once, and once when it is back within it): its
/// worker's clock is off, or it is late, and a viewer left with it alone
/// would wait that long.
fn warn_of_skew(signal: &str, packagers: &[PackagerStatus], warned: &mut Vec<String>) {
    for p in packagers {
        let Some(behind) = p.behind_twin_ms.map(Duration::from_millis) else {
            continue;
        };
        let known = warned.contains(&p.packager);
        if behind > SKEW_WARNING && !known {
            log::warn!(
                "Signal '{signal}': {} is {:.1} s behind its twin by their dates: check its worker's clock (NTP) or load",
                p.packager,
                behind.as_secs_f64()
            );
            warned.push(p.packager.clone());
        } else if behind <= SKEW_WARNING && known {
            log::info!(
                "Signal '{signal}': {} is back within {:.1} s of its twin",
                p.packager,
                SKEW_WARNING.as_secs_f64()
            );
            warned.retain(|w| *w != p.packager);
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
        if let Some(ms) = p.behind_twin_ms {
            metrics::PROXY_BEHIND_TWIN
                .with_label_values(&labels)
                .set(ms as f64 / 1000.0);
        }
    }
}
