//! The proxy: the only thing a player talks to. `GET /<signal>/playlist.m3u8`
//! and `GET /<signal>/<segment>.ts` are reverse-proxied (never redirected) from
//! the packager the failover state machine picks, and retried on the next one
//! within the same viewer request when a packager fails in any way.
//!
//! ```text
//! player --GET--> proxy --plan()--> [A, B] --fetch A (budgeted)--x--> fetch B --> 200
//!                   ^                                     |
//!                   +---- poller: every target/2, each packager's playlist --+
//!                   +---- routes: origin /live/<s>/packagers, kept if origin is down
//! ```
//!
//! Guarantees: a viewer never gets a playlist older than one already served for
//! the signal; never a truncated body with a 200 (segments are buffered whole
//! and checked to be complete MPEG-TS); a playlist that no packager can give
//! fresh is served from the last good copy for up to one target duration.
//!
//! Load on packagers is the proxy's, not the viewers': a segment name no
//! packager listed recently is answered 404 without a fetch, concurrent
//! requests for the same object share one fetch ([`flight`]), and a packager
//! changes health only after consecutive failures of the proxy's own fetches.
//! Load on the origin likewise: a signal it does not know is refused from
//! memory for a second ([`negative`]).
//!
//! Answers are cacheable by a CDN in front (see [`crate::net::delivery`]):
//! playlists for half a target duration with a strong `ETag`, revalidated
//! with `304`; segments for a minute; 404s for a second.
//!
//! # Layout
//! Every import runs down or sideways: no part imports this file (only its
//! tests do).
//! - this file: config, the HTTP routes, [`Proxy::handle`] (a viewer's
//!   request to its answer) and `GET /status`;
//! - [`request`]: the life of one viewer request, playlist or segment, as
//!   decision points read top to bottom (at hand? may this name be served?
//!   pick a packager, a fetch failed, admit what arrived, nobody left), with
//!   one retry loop for both kinds;
//! - [`failover`]: the pure state machine those decisions ask (time passed
//!   in, unit-tested without sockets);
//! - [`routing`]: where each signal is routed (origin lookups, first lookups
//!   shared, refusals remembered in [`negative`], refresh);
//!   [`watch`]: the poller, one task per served signal;
//! - [`signal`]: what is known per signal (failover state, last good
//!   playlist, listed names, switches, viewers);
//! - [`upstream`]: budgeted fetches from packagers; [`cache`]: segments;
//!   [`listed`]: segment names packagers listed recently; [`flight`]:
//!   request collapsing; [`viewers`]: who is watching each signal;
//! - leaves every part reads: [`budgets`] (timeouts and rhythms),
//!   [`refusal`] (the 404/502 answer), [`metrics`].

mod budgets;
mod cache;
pub mod failover;
mod flight;
mod listed;
mod metrics;
mod negative;
mod refusal;
mod request;
mod routing;
mod signal;
mod steering;
mod stream;
mod upstream;
mod viewers;
mod watch;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use warp::http::{HeaderMap, HeaderValue};
use warp::reply::Response;
use warp::Filter;

use crate::api::ProxyStatus;
use crate::hls::blocking::BlockingReload;
use crate::hls::{classify_media_file, is_valid_signal_name, MediaKind};
use crate::net::delivery::{media_response, Delivery, Media, MediaRequest};
use crate::service::config::{
    parse_address_list, parse_base_url, parse_port, AddressList, ListenArgs,
};
use crate::service::http::{self, allow_any_origin, json_ok, raw_query};
use crate::service::server::Peer;
use crate::service::shutdown::Shutdown;
use budgets::CONNECT_TIMEOUT;
/// How often the poller reads each packager's playlist, in target durations
/// (the lab paces its checks by it).
pub use budgets::POLL_TARGETS;
use refusal::Refusal;
use request::Requests;
use routing::Routing;
use steering::{parse_pathways, Pathways, SteeringServer};
use viewers::{client_address, ViewerId, ViewerKeys};
use watch::Poller;

/// Default megabytes of segments kept in memory.
pub(crate) const DEFAULT_CACHE_MB: usize = 64;

/// Reverse proxy with freshness-aware failover between packagers.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "proxy", version)]
pub struct ProxyConfig {
    /// Port to listen on.
    #[arg(long, env = "PROXY_PORT", default_value = "8002", value_parser = parse_port)]
    pub port: u16,
    /// Origin base URL, asked where each signal lives.
    #[arg(long, env = "ORIGIN_URL", default_value = "http://localhost:8001", value_parser = parse_base_url)]
    pub origin_url: String,
    /// The packagers the proxy may connect to, comma-separated: routes naming
    /// any other host are ignored.
    #[arg(long, env = "PACKAGERS", default_value = "http://localhost:8080,http://localhost:9090", value_delimiter = ',', value_parser = parse_base_url)]
    pub packagers: Vec<String>,
    /// Megabytes of segments kept in memory.
    #[arg(long, env = "PROXY_CACHE_MB", default_value_t = DEFAULT_CACHE_MB)]
    pub cache_mb: usize,
    /// Addresses of load balancers in front of the proxy, comma-separated:
    /// for requests from them, the viewer is the address they put in
    /// `X-Forwarded-For` (for the viewers count only). Empty: none.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = parse_address_list)]
    pub trusted_proxies: AddressList,
    /// Content Steering: the edges players may move between on their own,
    /// comma-separated `ID=BASE_URL` (this proxy and its peers, or CDN
    /// hosts in front of them), e.g. `a=http://edge-a:8002,b=http://edge-b:8002`.
    /// A ladder's multivariant playlist then lists every rendition once per
    /// pathway, and `GET /steering/<signal>.json` answers their priority
    /// from their health. Empty: no steering.
    #[arg(long, env = "PATHWAYS", default_value = "", value_parser = parse_pathways)]
    pub pathways: Pathways,
    /// This proxy's own pathway among PATHWAYS (listed first).
    #[arg(long, env = "PATHWAY_ID", default_value = "")]
    pub pathway_id: String,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// The proxy's shared state.
pub(crate) struct Proxy {
    /// Load balancers whose `X-Forwarded-For` is believed (viewers count).
    trusted_proxies: AddressList,
    /// The signals served and where they are routed.
    routing: Arc<Routing>,
    /// What viewer requests share: cache and fetches in flight.
    requests: Arc<Requests>,
    /// The key viewers are hashed with.
    viewer_keys: ViewerKeys,
    /// Content Steering's pathway priority, when configured.
    steering: Option<Arc<SteeringServer>>,
}

pub async fn run(config: ProxyConfig, shutdown: Shutdown) -> Result<(), http::ServeError> {
    let (listen, port) = (config.listen.clone().with_thread_per_core(), config.port);
    log::info!(
        "Proxy asks {} for routes; allowed packagers: {}",
        config.origin_url,
        config.packagers.join(", ")
    );
    let proxy = Arc::new(Proxy::new(config, shutdown.clone()));
    let routes = crate::service::metrics::instrument("proxy", routes(proxy));
    crate::service::server::serve("proxy", &listen, port, routes, shutdown).await
}

pub(crate) fn routes(
    proxy: Arc<Proxy>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_proxy = warp::any().map(move || proxy.clone());
    let status = warp::path!("status")
        .and(warp::get())
        .and(with_proxy.clone())
        .map(|proxy: Arc<Proxy>| allow_any_origin(json_ok(&proxy.status())));
    let steering = warp::path!("steering" / String)
        .and(warp::get())
        .and(with_proxy.clone())
        .map(|file: String, proxy: Arc<Proxy>| match &proxy.steering {
            Some(steering) => steering.manifest_response(&file),
            None => Refusal::NotFound("no content steering here".into()).into_response(),
        });
    let media = warp::path!(String / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::header::headers_cloned())
        .and(raw_query())
        .and(warp::ext::optional::<Peer>())
        .and(with_proxy)
        .then(
            |signal: String,
             file: String,
             headers: HeaderMap,
             query: String,
             peer: Option<Peer>,
             proxy: Arc<Proxy>| async move {
                let request = MediaRequest::from_headers(&headers);
                let viewer = proxy.viewer(peer, &headers);
                proxy.handle(&signal, &file, &query, &request, viewer).await
            },
        );
    http::healthcheck("proxy")
        .or(crate::service::metrics::route())
        .unify()
        .or(status)
        .unify()
        .or(steering)
        .unify()
        .or(media)
        .unify()
        .recover(http::recover)
        .unify()
}

impl Proxy {
    pub(crate) fn new(config: ProxyConfig, shutdown: Shutdown) -> Self {
        let client = http::client(CONNECT_TIMEOUT);
        let routing = Arc::new(Routing::new(
            client.clone(),
            config.origin_url,
            config.packagers,
        ));
        let poller = Poller::new(client.clone(), routing.clone(), shutdown.clone());
        let cache_bytes = config.cache_mb.saturating_mul(1024 * 1024);
        let steering = SteeringServer::start(
            client.clone(),
            config.pathways,
            &config.pathway_id,
            shutdown,
        )
        .map(Arc::new);
        Proxy {
            trusted_proxies: config.trusted_proxies,
            requests: Arc::new(Requests::new(
                client,
                routing.clone(),
                poller,
                cache_bytes,
                steering.clone(),
            )),
            routing,
            viewer_keys: ViewerKeys::default(),
            steering,
        }
    }

    /// Who sent a request, for the viewers count (see [`viewers`]).
    fn viewer(&self, peer: Option<Peer>, headers: &HeaderMap) -> Option<ViewerId> {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let address = client_address(peer.map(|p| p.0.ip()), forwarded, &self.trusted_proxies.0)?;
        let agent = headers.get("user-agent").map(HeaderValue::as_bytes);
        Some(self.viewer_keys.id(address, agent))
    }

    /// Serves one playlist or segment request (its life is in [`request`]),
    /// and counts who asked as a viewer of the signal once the signal is
    /// known.
    async fn handle(
        &self,
        signal: &str,
        file: &str,
        query: &str,
        request: &MediaRequest,
        viewer: Option<ViewerId>,
    ) -> Response {
        let kind = match (is_valid_signal_name(signal), classify_media_file(file)) {
            (true, Some(kind)) => kind,
            _ => return Refusal::NotFound("not found".into()).into_response(),
        };
        let result = match kind {
            MediaKind::Playlist => match BlockingReload::parse(query) {
                Err(e) => Err(Refusal::BadRequest(e.to_string())),
                Ok(reload) => self.requests.playlist(signal, file, reload).await.map(|p| {
                    let delivery = Delivery {
                        service: "proxy",
                        last_modified: Some(p.last_modified),
                    };
                    (Media::Playlist(p.body, p.caching), delivery)
                }),
            },
            MediaKind::Segment => self.requests.segment(signal, file).await.map(|body| {
                let delivery = Delivery {
                    service: "proxy",
                    last_modified: None,
                };
                (Media::Segment(body), delivery)
            }),
        };
        if let Some(viewer) = viewer {
            if let Some(state) = self.routing.watched(signal) {
                state.seen_viewer(viewer, Instant::now());
            }
        }
        match result {
            Ok((media, delivery)) => media_response(media, delivery, request),
            Err(refusal) => refusal.into_response(),
        }
    }

    /// `GET /status`: per signal, by name, its serving state, viewers now,
    /// each packager's freshness and the recent switches.
    pub(crate) fn status(&self) -> ProxyStatus {
        let now = Instant::now();
        ProxyStatus {
            signals: self
                .routing
                .all()
                .iter()
                .map(|(name, state)| state.report(name, now))
                .collect(),
        }
    }
}
