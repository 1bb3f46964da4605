//! `GET /metrics` on every service, in Prometheus text format, with counters
//! that move as the stack works.

use nonstop_lab::support as common;

use std::time::Duration;

use common::{get, scrape, total, wait_for, Scrape, Stack, StackOptions};

#[test]
fn every_service_exposes_metrics_that_move() {
    let stack = Stack::start(StackOptions::default());
    let services = [
        ("worker", stack.worker_metrics_port),
        ("server1", stack.server1_port),
        ("server2", stack.server2_port),
        ("reporter", stack.reporter_port),
        ("discovery", stack.discovery_metrics_port),
        ("origin", stack.origin_port),
        ("proxy", stack.proxy_port),
    ];
    for (name, port) in services {
        let m = scrape(port);
        assert!(
            m.keys().any(|k| k.starts_with("nonstop_")),
            "{name} exposes no nonstop_ metric"
        );
    }

    // Worker: segments keep being counted.
    let before = total(
        &scrape(stack.worker_metrics_port),
        "nonstop_worker_segments_total",
        &["live01"],
    );
    wait_for(Duration::from_secs(10), "worker segments to grow", || {
        let now = total(
            &scrape(stack.worker_metrics_port),
            "nonstop_worker_segments_total",
            &["live01"],
        );
        (now > before).then_some(())
    });

    // Reporter and discovery: reports accepted, rounds reported.
    wait_for(Duration::from_secs(5), "reports to be counted", || {
        let accepted = total(
            &scrape(stack.reporter_port),
            "nonstop_reporter_reports_total",
            &["accepted"],
        );
        let rounds = total(
            &scrape(stack.discovery_metrics_port),
            "nonstop_discovery_rounds_total",
            &["reported"],
        );
        (accepted >= 1.0 && rounds >= 1.0).then_some(())
    });

    // Proxy: requests by route and status, bytes, freshness per packager.
    let requests = |m: &Scrape| {
        total(
            m,
            "nonstop_http_requests_total",
            &[
                "service=\"proxy\"",
                "route=\"/:signal/:playlist\"",
                "status=\"200\"",
            ],
        )
    };
    let before = requests(&scrape(stack.proxy_port));
    for _ in 0..3 {
        let (status, _) = get(&stack.proxy_url("live01/playlist.m3u8")).expect("answers");
        assert_eq!(status, 200);
    }
    let m = scrape(stack.proxy_port);
    assert!(
        requests(&m) >= before + 3.0,
        "proxy playlist requests did not count"
    );
    assert!(
        total(
            &m,
            "nonstop_bytes_served_total",
            &["service=\"proxy\"", "kind=\"playlist\""]
        ) > 0.0
    );
    assert!(
        total(
            &m,
            "nonstop_http_request_duration_seconds_count",
            &["service=\"proxy\""]
        ) >= 3.0
    );
    wait_for(Duration::from_secs(5), "freshness gauges", || {
        let m = scrape(stack.proxy_port);
        let newest = total(&m, "nonstop_proxy_packager_newest_sequence", &["live01"]);
        let active = total(&m, "nonstop_proxy_packager_active", &["live01"]);
        (newest > 0.0 && active == 1.0).then_some(())
    });
    let switches = total(
        &scrape(stack.proxy_port),
        "nonstop_proxy_switches_total",
        &["reason=\"first\""],
    );
    assert_eq!(switches, 1.0, "the first choice is counted once");
}
