//! The viewer-load tool against a real stack: a small crowd through the proxy
//! gets every segment with no failure, the packagers see at most one fetch
//! per segment however many viewers ask, and the tool refuses a URL with no
//! playlist rather than report an empty run.

use nonstop_lab::http::{scrape, total};
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::viewers::{self, ViewersConfig};

const VIEWERS: usize = 50;
const SECONDS: u64 = 10;
const SEGMENT_ROUTE: &str = "route=\"/:signal/:segment\"";

fn crowd(url: &str, signal: &str, server_pid: Vec<u32>) -> Result<viewers::Report, String> {
    let config = ViewersConfig {
        url: url.parse().expect("URL"),
        signal: signal.into(),
        viewers: VIEWERS,
        seconds: SECONDS,
        start_segments: viewers::DEFAULT_START_SEGMENTS,
        timeout_seconds: viewers::DEFAULT_TIMEOUT_SECONDS,
        server_pid,
        json: false,
    };
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(viewers::run(&config))
        .map_err(|e| e.to_string())
}

fn segments_fetched_by_packagers(stack: &Stack) -> [f64; 2] {
    [stack.port(Role::Server1), stack.port(Role::Server2)].map(|port| {
        total(
            &scrape(port),
            "nonstop_http_requests_total",
            &[SEGMENT_ROUTE],
        )
    })
}

#[test]
fn a_crowd_through_the_proxy_gets_every_segment_and_the_packagers_each_once() {
    let stack = Stack::start(StackOptions::default());
    stack.wait_for_window(3);
    let proxy_pid = stack.service(Role::Proxy).pid();
    let before = segments_fetched_by_packagers(&stack);

    let report = crowd(&stack.proxy_url(""), "live01", vec![proxy_pid])
        .unwrap_or_else(|e| panic!("the crowd did not start: {e}\n{}", stack.logs()));

    let after = segments_fetched_by_packagers(&stack);
    let text = report.text();
    assert_eq!(report.errors, 0, "{text}");
    assert_eq!(report.missed_segments, 0, "{text}");
    assert_eq!(report.skipped_segments, 0, "{text}");
    assert_eq!(report.regressions, 0, "{text}");
    assert_eq!(report.viewers_complete, VIEWERS, "{text}");
    assert!(
        report.min_segments_per_viewer > viewers::DEFAULT_START_SEGMENTS as u64,
        "some viewer got no segment beyond the ones it started with: {text}"
    );
    assert!(
        report.segments_new > 0 && report.judged_segments > 0,
        "no segment appeared during the run: {text}"
    );
    let server = report.server.as_ref().expect("the proxy's usage");
    assert!(server.processes >= 1 && server.rss_end_kib > 0, "{text}");
    for (name, (b, a)) in ["server1", "server2"].iter().zip(before.iter().zip(after)) {
        assert!(
            a - b <= report.segments_requested as f64,
            "{name} got {} segment requests for {} distinct segments the crowd asked for: {text}",
            a - b,
            report.segments_requested
        );
    }

    // A signal nobody publishes: no report, an error that says why.
    let error = crowd(&stack.proxy_url(""), "nosuchsignal", vec![]).expect_err("no playlist");
    assert!(error.contains("first playlist"), "{error}");
}
