//! `GET /metrics` on every service, in Prometheus text format, with counters
//! that move as the stack works: among them, the proxy's audience (viewers
//! per signal, also in `/status` and `status`) and its memory of signals the
//! origin does not know (one origin lookup per second at most).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use nonstop_lab::http::{get, get_json, scrape, total, Scrape};
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::bin;

/// Probes watching at once, each from its own loopback address.
const PROBES: u8 = 3;
/// How long each probe watches.
const PROBE_SECONDS: u32 = 20;
/// How long a client keeps asking for a signal the origin does not know.
const UNKNOWN_FOR: Duration = Duration::from_secs(3);

#[test]
fn every_service_exposes_metrics_that_move() {
    let stack = Stack::start(StackOptions::default());
    let services = [
        ("worker", stack.port(Role::WorkerA)),
        ("server1", stack.port(Role::Server1)),
        ("server2", stack.port(Role::Server2)),
        ("reporter", stack.port(Role::Reporter)),
        ("discovery", stack.port(Role::DiscoveryA)),
        ("origin", stack.port(Role::Origin)),
        ("proxy", stack.port(Role::Proxy)),
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
        &scrape(stack.port(Role::WorkerA)),
        "nonstop_worker_segments_total",
        &["live01"],
    );
    wait_for(Duration::from_secs(10), "worker segments to grow", || {
        let now = total(
            &scrape(stack.port(Role::WorkerA)),
            "nonstop_worker_segments_total",
            &["live01"],
        );
        (now > before).then_some(())
    });

    // Reporter and discovery: reports accepted, rounds reported.
    wait_for(Duration::from_secs(5), "reports to be counted", || {
        let accepted = total(
            &scrape(stack.port(Role::Reporter)),
            "nonstop_reporter_reports_total",
            &["accepted"],
        );
        let rounds = total(
            &scrape(stack.port(Role::DiscoveryA)),
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
    let before = requests(&scrape(stack.port(Role::Proxy)));
    for _ in 0..3 {
        let (status, _) = get(&stack.proxy_url("live01/playlist.m3u8")).expect("answers");
        assert_eq!(status, 200);
    }
    let m = scrape(stack.port(Role::Proxy));
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
        let m = scrape(stack.port(Role::Proxy));
        let newest = total(&m, "nonstop_proxy_packager_newest_sequence", &["live01"]);
        let active = total(&m, "nonstop_proxy_packager_active", &["live01"]);
        (newest > 0.0 && active == 1.0).then_some(())
    });
    let switches = total(
        &scrape(stack.port(Role::Proxy)),
        "nonstop_proxy_switches_total",
        &["reason=\"first\""],
    );
    assert_eq!(switches, 1.0, "the first choice is counted once");

    unknown_signals_cost_the_origin_one_lookup_a_second(&stack);
    viewers_are_the_distinct_clients_watching(&stack);
}

/// A client asking over and over for a signal the origin does not know gets
/// 404s (cacheable for a second), and the origin sees at most one lookup
/// per second of it, by the origin's own count.
fn unknown_signals_cost_the_origin_one_lookup_a_second(stack: &Stack) {
    let lookups = || {
        total(
            &scrape(stack.port(Role::Origin)),
            "nonstop_http_requests_total",
            &[
                "service=\"origin\"",
                "route=\"/live/:signal/packagers\"",
                "status=\"404\"",
            ],
        )
    };
    let remembered = || {
        total(
            &scrape(stack.port(Role::Proxy)),
            "nonstop_proxy_negative_cache_hits_total",
            &["answer=\"not_found\""],
        )
    };
    let (lookups_before, remembered_before) = (lookups(), remembered());
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    let mut asked = 0u32;
    while started.elapsed() < UNKNOWN_FOR {
        let res = client
            .get(stack.proxy_url("nosuchsignal/playlist.m3u8"))
            .send()
            .expect("the proxy answers");
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["cache-control"], "public, max-age=1");
        asked += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let made = lookups() - lookups_before;
    let bound = elapsed.as_secs_f64().ceil() + 1.0;
    assert!(
        (1.0..=bound).contains(&made),
        "{made} origin lookups for {asked} requests in {elapsed:?}: at most {bound}"
    );
    assert!(
        remembered() - remembered_before >= f64::from(asked) - made,
        "the answers from memory are counted"
    );
}

/// Probes on distinct addresses are each one viewer, in `/metrics`, in the
/// proxy's `/status` and in `status`; once they stop, nobody is.
fn viewers_are_the_distinct_clients_watching(stack: &Stack) {
    let url = stack.proxy_url("live01/playlist.m3u8");
    let probes: Vec<Probe> = (0..PROBES)
        .map(|n| {
            let from = IpAddr::from([127, 0, 0, 11 + n]);
            Probe::start_from(&url, PROBE_SECONDS, Some(from))
        })
        .collect();
    for probe in &probes {
        probe.wait_playing(Duration::from_secs(2), PLAYING_WITHIN);
    }
    let gauge = || {
        total(
            &scrape(stack.port(Role::Proxy)),
            "nonstop_proxy_viewers",
            &["live01"],
        )
    };
    // The test's own requests above (from 127.0.0.1) leave the window too.
    wait_for(
        Duration::from_secs(10),
        "the viewers gauge to count the probes",
        || (gauge() == f64::from(PROBES)).then_some(()),
    );
    let status = get_json(&stack.proxy_url("status"));
    assert_eq!(
        status["signals"][0]["viewers"],
        u64::from(PROBES),
        "{status}"
    );
    let out = std::process::Command::new(bin("status"))
        .env(
            "ORIGIN_URL",
            format!("http://127.0.0.1:{}", stack.port(Role::Origin)),
        )
        .env("PROXY_URL", stack.proxy_url("").trim_end_matches('/'))
        .output()
        .expect("status runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("VIEWERS")
            && table
                .lines()
                .filter(|l| l.starts_with("live01 "))
                .all(|l| l.split_whitespace().nth(2) == Some(&PROBES.to_string())),
        "{table}"
    );
    for probe in probes {
        let (report, log) = probe.finish();
        assert_eq!(report.failed_requests, 0, "{report:?}\n{log}");
    }
    wait_for(
        Duration::from_secs(10),
        "the viewers gauge to fall to zero once the probes stopped",
        || (gauge() == 0.0).then_some(()),
    );
}
