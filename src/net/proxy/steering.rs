//! Content Steering (HLS, RFC 8216bis 7.2): player-side pathways. With
//! `PATHWAYS` set, a ladder's multivariant playlist lists every rendition
//! once per edge (a proxy or the CDN host in front of it), and players that
//! steer (hls.js, Safari, Shaka, Media3) ask `GET /steering/<signal>.json`
//! which pathway to prefer: this edge first, then the others that answer
//! their health check, then those that do not. A player whose edge is lost
//! moves to the next pathway on its own (it penalises a pathway that
//! fails), so no balancer is needed in front of the edges; players without
//! steering keep the first pathway and behave as before.
//!
//! ```text
//! #EXT-X-CONTENT-STEERING:SERVER-URI="/steering/live01.json",PATHWAY-ID="a"
//! GET /steering/live01.json -> {"VERSION":1,"TTL":5,"PATHWAY-PRIORITY":["a","b"]}
//! checker: every STEERING_CHECK, GET <peer>/healthcheck for each other pathway
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use warp::http::HeaderValue;
use warp::reply::Response;

use super::refusal::Refusal;
use super::stream::lock;
use crate::hls::is_valid_signal_name;
use crate::hls::multivariant::{Pathway, Steering};
use crate::service::config::parse_base_url;
use crate::service::http::{allow_any_origin, json_ok};
use crate::service::shutdown::Shutdown;

/// How long a player keeps a steering manifest before asking again.
pub(super) const STEERING_TTL: Duration = Duration::from_secs(5);
/// How often the other edges' health is checked.
pub(super) const STEERING_CHECK: Duration = Duration::from_secs(2);
/// An edge whose health check answered within this long counts as up.
pub(super) const HEALTHY_WITHIN: Duration = Duration::from_secs(5);

/// `PATHWAYS`: the edges, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pathways(pub Vec<Pathway>);

/// Parses `PATHWAYS` (`a=http://edge-a:8002,b=http://edge-b:8002`; empty: none).
pub fn parse_pathways(s: &str) -> Result<Pathways, String> {
    let mut pathways: Vec<Pathway> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, base) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}': a pathway is ID=BASE_URL"))?;
        if !is_valid_signal_name(id) {
            return Err(format!(
                "'{id}': a pathway id is letters, digits, '-' and '_'"
            ));
        }
        if pathways.iter().any(|p| p.id == id) {
            return Err(format!("pathway '{id}' is given twice"));
        }
        pathways.push(Pathway {
            id: id.to_string(),
            base: parse_base_url(base)?,
        });
    }
    Ok(Pathways(pathways))
}

/// The steering manifest (RFC 8216bis 7.2.1).
#[derive(Debug, Serialize)]
struct Manifest {
    #[serde(rename = "VERSION")]
    version: u32,
    #[serde(rename = "TTL")]
    ttl: u64,
    #[serde(rename = "PATHWAY-PRIORITY")]
    priority: Vec<String>,
}

/// This edge's pathways and what it knows of the others' health.
pub(super) struct SteeringServer {
    /// This edge's pathway first, then the others in configured order.
    pathways: Vec<Pathway>,
    /// When each other edge last answered its health check.
    answered: Arc<Mutex<BTreeMap<String, Instant>>>,
}

impl SteeringServer {
    /// Steering for these pathways with `own` first (its health checks of
    /// the others running until shutdown); `None` when none is configured.
    pub(super) fn start(
        client: reqwest::Client,
        pathways: Pathways,
        own: &str,
        shutdown: Shutdown,
    ) -> Option<SteeringServer> {
        if pathways.0.is_empty() {
            return None;
        }
        let (mine, others): (Vec<Pathway>, Vec<Pathway>) =
            pathways.0.into_iter().partition(|p| p.id == own);
        let ordered: Vec<Pathway> = mine.into_iter().chain(others).collect();
        let answered = Arc::new(Mutex::new(BTreeMap::new()));
        let peers: Vec<Pathway> = ordered.iter().filter(|p| p.id != own).cloned().collect();
        tokio::spawn(check_peers(client, peers, answered.clone(), shutdown));
        log::info!(
            "Content steering over pathways {} (this edge: {})",
            ordered
                .iter()
                .map(|p| format!("{}={}", p.id, p.base))
                .collect::<Vec<_>>()
                .join(", "),
            if own.is_empty() { "none named" } else { own }
        );
        Some(SteeringServer {
            pathways: ordered,
            answered,
        })
    }

    /// What a signal's multivariant playlist carries.
    pub(super) fn for_signal(&self, signal: &str) -> Steering {
        Steering {
            server_uri: format!("/steering/{signal}.json"),
            pathways: self.pathways.clone(),
        }
    }

    /// The pathways by priority now: this edge, the others that answer, then
    /// those that do not (a player does not come back to a dead edge).
    fn priority(&self, now: Instant) -> Vec<String> {
        let answered = lock(&self.answered);
        let up = |p: &Pathway| {
            answered
                .get(&p.id)
                .is_some_and(|at| now.saturating_duration_since(*at) <= HEALTHY_WITHIN)
        };
        let (first, rest) = self
            .pathways
            .split_first()
            .map_or((None, &[][..]), |(f, r)| (Some(f), r));
        let mut priority: Vec<String> = first.map(|p| p.id.clone()).into_iter().collect();
        priority.extend(rest.iter().filter(|p| up(p)).map(|p| p.id.clone()));
        priority.extend(rest.iter().filter(|p| !up(p)).map(|p| p.id.clone()));
        priority
    }

    /// `GET /steering/<signal>.json`.
    pub(super) fn manifest_response(&self, file: &str) -> Response {
        let valid = file.strip_suffix(".json").is_some_and(is_valid_signal_name);
        if !valid {
            return Refusal::NotFound("not found".into()).into_response();
        }
        let manifest = Manifest {
            version: 1,
            ttl: STEERING_TTL.as_secs(),
            priority: self.priority(Instant::now()),
        };
        let mut response = json_ok(&manifest);
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        allow_any_origin(response)
    }
}

/// Asks every other edge's `/healthcheck` every [`STEERING_CHECK`].
async fn check_peers(
    client: reqwest::Client,
    peers: Vec<Pathway>,
    answered: Arc<Mutex<BTreeMap<String, Instant>>>,
    shutdown: Shutdown,
) {
    loop {
        let checks = peers.iter().map(|p| {
            let url = format!("{}/healthcheck", p.base);
            let client = &client;
            async move {
                let ok = client
                    .get(&url)
                    .timeout(STEERING_CHECK)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                (p.id.clone(), ok)
            }
        });
        for (id, ok) in futures_util::future::join_all(checks).await {
            if ok {
                lock(&answered).insert(id, Instant::now());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(STEERING_CHECK) => {}
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pathways_are_read_strictly() {
        let p = parse_pathways("a=http://edge-a:8002, b=http://edge-b:8002/").expect("valid");
        assert_eq!(p.0.len(), 2);
        assert_eq!(p.0[1].base, "http://edge-b:8002");
        assert_eq!(parse_pathways(""), Ok(Pathways::default()));
        assert!(parse_pathways("a").is_err());
        assert!(parse_pathways("a=http://x:1,a=http://y:2").is_err());
        assert!(parse_pathways("a b=http://x:1").is_err());
        assert!(parse_pathways("a=ftp://x").is_err());
    }

    #[tokio::test]
    async fn this_edge_comes_first_then_live_peers_then_dead_ones() {
        let pathways =
            parse_pathways("a=http://127.0.0.1:9,b=http://127.0.0.1:9,c=http://127.0.0.1:9")
                .expect("valid");
        let shutdown = Shutdown::new();
        let server = SteeringServer::start(reqwest::Client::new(), pathways, "b", shutdown.clone())
            .expect("steering");
        let now = Instant::now();
        assert_eq!(
            server.priority(now),
            ["b", "a", "c"],
            "nobody answered: configured order"
        );
        lock(&server.answered).insert("c".into(), now);
        assert_eq!(server.priority(now), ["b", "c", "a"]);
        assert_eq!(
            server.priority(now + HEALTHY_WITHIN + Duration::from_secs(1)),
            ["b", "a", "c"],
            "c stopped answering"
        );
        let steering = server.for_signal("live01");
        assert_eq!(steering.server_uri, "/steering/live01.json");
        assert_eq!(steering.pathways[0].id, "b");
        shutdown.trigger();
    }
}
