//! The lab's side of HTTP, blocking and short: GET a URL (bytes or JSON),
//! scrape a service's Prometheus metrics and add series up, and wait until a
//! service says it is healthy.

use std::collections::HashMap;
use std::time::Duration;

use crate::wait::wait_for;

/// Budget of one lab request, from connecting to the last body byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a service may take to answer its healthcheck with 200 once started.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// The base URL of a service listening on `port` of 127.0.0.1.
pub(crate) fn local(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A blocking GET returning status and body, or None when the request failed.
pub fn get(url: &str) -> Option<(u16, Vec<u8>)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .ok()?;
    let res = client.get(url).send().ok()?;
    let status = res.status().as_u16();
    Some((status, res.bytes().ok()?.to_vec()))
}

/// A blocking GET of a JSON body; panics when there is no answer or it is
/// not JSON.
pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get(url).unwrap_or_else(|| panic!("GET {url} failed"));
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "GET {url} ({status}) is not JSON: {e}: {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// Metrics scraped from a service's `GET /metrics`: each series (name with
/// labels) and its value.
pub type Scrape = HashMap<String, f64>;

/// Scrapes `http://127.0.0.1:<port>/metrics` (Prometheus text format).
pub fn scrape(port: u16) -> Scrape {
    scrape_at(&local(port))
}

/// Scrapes `<base>/metrics` (Prometheus text format).
pub fn scrape_at(base: &str) -> Scrape {
    let (status, body) = get(&format!("{base}/metrics")).expect("answers");
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of every series of `name` whose labels contain all of `having`.
pub fn total(metrics: &Scrape, name: &str, having: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) || k.as_str() == name)
        .filter(|(k, _)| having.iter().all(|h| k.contains(h)))
        .map(|(_, v)| v)
        .sum()
}

/// Waits until `http://127.0.0.1:<port>/healthcheck` answers 200.
pub fn wait_healthy(port: u16) {
    wait_healthy_at(&local(port));
}

/// Waits until `<base>/healthcheck` answers 200.
pub fn wait_healthy_at(base: &str) {
    wait_for(HEALTHY_WITHIN, &format!("healthcheck at {base}"), || {
        let (status, _) = get(&format!("{base}/healthcheck"))?;
        (status == 200).then_some(())
    });
}
