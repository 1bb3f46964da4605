//! The reporter as a separate process: reports in, the seed's JSON out, expiry,
//! and several reporters sharing one real Redis.

use std::time::Duration;

use nonstop::net::reporter::DEFAULT_REPORT_TTL;
use nonstop_lab::http::{get_json, wait_healthy};
use nonstop_lab::ports::free_port;
use nonstop_lab::process::Service;
use nonstop_lab::redis::RedisServer;
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::bin;

fn post(url: &str, body: serde_json::Value) -> u16 {
    reqwest::blocking::Client::new()
        .post(url)
        .json(&body)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn reporter(dir: &std::path::Path, name: &str, port: u16, store: &str, ttl: &str) -> Service {
    Service::start(
        name,
        &bin("reporter"),
        &[],
        &[
            ("REPORTER_PORT", port.to_string()),
            ("REPORTER_STORE", store.to_string()),
            ("REPORT_TTL_SECONDS", ttl.to_string()),
            ("LISTEN_HOST", "127.0.0.1".to_string()),
        ],
        dir,
    )
}

#[test]
fn reporters_sharing_redis_add_up_each_others_reports_until_they_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(dir.path());
    let store = redis.url();
    let (pa, pb) = (free_port(), free_port());
    let _a = reporter(dir.path(), "reporter-a", pa, &store, "2");
    let _b = reporter(dir.path(), "reporter-b", pb, &store, "2");
    wait_healthy(pa);
    wait_healthy(pb);

    let report = serde_json::json!({"signal": "live01", "packagers": ["http://localhost:8080"]});
    assert_eq!(post(&format!("http://127.0.0.1:{pa}/ingests"), report), 200);
    let seen = get_json(&format!("http://127.0.0.1:{pb}/ingests"));
    assert_eq!(seen[0]["signal"], "live01", "{seen}");
    assert_eq!(
        seen[0]["packagers"],
        serde_json::json!(["http://localhost:8080"])
    );
    // Another host's discovery, through the other reporter, names only its
    // own packager (as when the two hosts cannot reach each other): the
    // signal keeps both, seen the same from either reporter.
    let other = serde_json::json!({"signal": "live01", "packagers": ["http://localhost:9090"]});
    assert_eq!(post(&format!("http://127.0.0.1:{pb}/ingests"), other), 200);
    for port in [pa, pb] {
        let seen = get_json(&format!("http://127.0.0.1:{port}/ingests"));
        assert_eq!(
            seen[0]["packagers"],
            serde_json::json!(["http://localhost:8080", "http://localhost:9090"]),
            "{seen}"
        );
    }

    wait_for(Duration::from_secs(10), "the report to expire", || {
        let v = get_json(&format!("http://127.0.0.1:{pb}/ingests"));
        (v == serde_json::json!([])).then_some(())
    });
}

#[test]
fn an_unreachable_store_is_one_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = free_port();
    let mut r = reporter(
        dir.path(),
        "reporter",
        free_port(),
        &format!("redis://127.0.0.1:{dead}"),
        DEFAULT_REPORT_TTL,
    );
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(1));
    let log = r.log_text();
    assert!(log.contains("cannot open the store"), "{log}");
}

#[test]
fn a_port_in_use_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let mut r = reporter(dir.path(), "reporter", port, "memory", DEFAULT_REPORT_TTL);
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(
        r.log_text().contains(&format!("port {port}")),
        "{}",
        r.log_text()
    );
}

#[test]
fn sigterm_stops_a_server_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut r = reporter(dir.path(), "reporter", port, "memory", DEFAULT_REPORT_TTL);
    wait_healthy(port);
    r.terminate_cleanly();
}
