//! An abusive client cannot drive the proxy: while a viewer plays through the
//! proxy, a client sends a few hundred requests for segment names nobody
//! published (and some path junk). Every one must be a 404, no packager may
//! be judged failing or stale (switched for its health), the viewer must not notice, and the packagers must see no
//! more requests than a window without abuse needs.

use std::time::{Duration, Instant};

use nonstop::net::proxy::POLL_TARGETS;

use nonstop_lab::http::{scrape, total, Scrape};
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::stack::{Role, Stack, StackOptions};

/// Seconds the probe watches: start-up, then a quiet window and an abuse
/// window, with room to spare.
const WATCH_SECONDS: u32 = 40;
/// Media played before measuring: the viewer is settled at the live edge.
const PLAYED_BEFORE: Duration = Duration::from_secs(3);
/// Length of each measured window (quiet, then abused).
const WINDOW: Duration = Duration::from_secs(10);
/// Abusive requests sent over [`WINDOW`].
const ABUSIVE_REQUESTS: usize = 300;
/// One abusive request in this many is path junk; the others are
/// well-formed segment names no packager ever listed.
const JUNK_EVERY: usize = 10;
/// Segments a viewer may fetch beyond one per target duration in a window:
/// the ones on either edge of it.
const SEGMENT_SLACK: u64 = 2;

/// Paths that are not a media request the proxy could ever fetch.
const JUNK: [&str; 8] = [
    "live01/..%2f..%2fetc%2fpasswd",
    "live01/playlist.m3u8.ts",
    "live01/segment000001.ts/extra",
    "live01/.hidden.ts",
    "live01/other.m3u8",
    "live01/segment%00.ts",
    "nosuchsignal/segment000001.ts",
    "../../etc/passwd",
];

/// A counter's value (Prometheus counters are whole numbers here).
fn count(metrics: &Scrape, name: &str, having: &[&str]) -> u64 {
    total(metrics, name, having) as u64
}

/// What the packagers were asked, as of one moment.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Fetches the proxy made from packagers (its own count, every kind).
    proxy_fetches: u64,
    /// Segment fetches among them.
    proxy_segment_fetches: u64,
    /// Segment requests the packagers answered (both servers; only the
    /// proxy fetches segments from them), and how many of those were 404.
    packager_segments: u64,
    packager_segment_404s: u64,
    /// Segment names the proxy refused without a fetch.
    unlisted: u64,
}

impl Load {
    fn read(stack: &Stack) -> Load {
        let proxy = scrape(stack.port(Role::Proxy));
        let servers = [
            scrape(stack.port(Role::Server1)),
            scrape(stack.port(Role::Server2)),
        ];
        let segment_route = "route=\"/:signal/:segment\"";
        Load {
            proxy_fetches: count(&proxy, "nonstop_proxy_upstream_fetches_total", &[]),
            proxy_segment_fetches: count(
                &proxy,
                "nonstop_proxy_upstream_fetches_total",
                &["kind=\"segment\""],
            ),
            packager_segments: servers
                .iter()
                .map(|m| count(m, "nonstop_http_requests_total", &[segment_route]))
                .sum(),
            packager_segment_404s: servers
                .iter()
                .map(|m| {
                    count(
                        m,
                        "nonstop_http_requests_total",
                        &[segment_route, "status=\"404\""],
                    )
                })
                .sum(),
            unlisted: count(&proxy, "nonstop_proxy_unlisted_segments_total", &[]),
        }
    }

    fn since(self, before: Load) -> Load {
        Load {
            proxy_fetches: self.proxy_fetches - before.proxy_fetches,
            proxy_segment_fetches: self.proxy_segment_fetches - before.proxy_segment_fetches,
            packager_segments: self.packager_segments - before.packager_segments,
            packager_segment_404s: self.packager_segment_404s - before.packager_segment_404s,
            unlisted: self.unlisted - before.unlisted,
        }
    }
}

/// Times something happening every `every` can happen within `window`,
/// counting both ends.
fn at_most(window: Duration, every: Duration) -> u64 {
    (window.as_secs_f64() / every.as_secs_f64()).ceil() as u64 + 1
}

/// Fetches one viewer and the proxy's poller need in `window`, derived from
/// the stream's target duration, with no fault anywhere:
/// - polls: each of the 2 packagers every `POLL_TARGETS` target durations;
/// - the viewer's playlist reloads: at most one per half target duration
///   (RFC 8216 6.3.4: a target after a changed playlist, half of it after an
///   unchanged one), each one fetch (no failure to retry);
/// - segments: one per target duration, plus [`SEGMENT_SLACK`].
fn fetches_needed(window: Duration, target: Duration, packagers: u64) -> (u64, u64) {
    let polls = packagers * at_most(window, target.mul_f64(POLL_TARGETS));
    let reloads = at_most(window, target / 2);
    let segments = at_most(window, target) + SEGMENT_SLACK;
    (polls + reloads + segments, segments)
}

/// The abusive client: [`ABUSIVE_REQUESTS`] over [`WINDOW`]; returns the
/// requests that were not answered 404.
fn abuse(proxy_port: u16) -> Vec<String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let pause = WINDOW / ABUSIVE_REQUESTS as u32;
    let mut not_404 = Vec::new();
    for i in 0..ABUSIVE_REQUESTS {
        let path = if i % JUNK_EVERY == JUNK_EVERY - 1 {
            JUNK[(i / JUNK_EVERY) % JUNK.len()].to_string()
        } else if i % 2 == 0 {
            format!("live01/segment{:06}.ts", 900_000 + i)
        } else {
            format!("live01/x{i}.ts")
        };
        let url = format!("http://127.0.0.1:{proxy_port}/{path}");
        match client.get(&url).send() {
            Ok(res) if res.status() == 404 => {}
            Ok(res) => not_404.push(format!("{path}: HTTP {}", res.status())),
            Err(e) => not_404.push(format!("{path}: {e}")),
        }
        std::thread::sleep(pause);
    }
    not_404
}

#[test]
fn an_abusive_client_cannot_move_packagers_or_load_them() {
    let options = StackOptions::default();
    let target = Duration::from_secs(options.segment_seconds as u64);
    let stack = Stack::start(options);
    let packagers = stack.packagers().len() as u64;
    let probe = Probe::start(&stack.proxy_url("live01/playlist.m3u8"), WATCH_SECONDS);
    probe.wait_playing(PLAYED_BEFORE, PLAYING_WITHIN);

    // A quiet window: what the viewer and the poller need.
    let (start, t0) = (Load::read(&stack), Instant::now());
    std::thread::sleep(WINDOW);
    let (middle, t1) = (Load::read(&stack), Instant::now());
    let quiet = middle.since(start);

    // The same length of time with the abusive client at work.
    let not_404 = abuse(stack.port(Role::Proxy));
    let (end, t2) = (Load::read(&stack), Instant::now());
    let abused = end.since(middle);

    let (report, probe_log) = probe.finish();
    let proxy_log = stack.proxy_log();
    let (quiet_bound, quiet_segments) = fetches_needed(t1 - t0, target, packagers);
    let (abused_bound, abused_segments) = fetches_needed(t2 - t1, target, packagers);
    let figures = format!(
        "quiet {:.1} s: {quiet:?} (bound {quiet_bound} fetches, {quiet_segments} segments)\n\
         abused {:.1} s: {abused:?} (bound {abused_bound} fetches, {abused_segments} segments)",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
    );
    println!("{figures}");
    let context = format!(
        "{figures}\n{report:#?}\n--- probe ---\n{probe_log}\n{}",
        stack.logs()
    );

    assert!(
        not_404.is_empty(),
        "answered other than 404: {not_404:?}\n{context}"
    );
    let well_formed = (ABUSIVE_REQUESTS - ABUSIVE_REQUESTS / JUNK_EVERY) as u64;
    assert_eq!(
        abused.unlisted, well_formed,
        "every well-formed bogus name refused as unlisted\n{context}"
    );
    // The proxy may move to the other packager when its own poll finds that
    // one a segment ahead ("behind": both serve one folder here, and a poll
    // can land either side of a new segment). What abuse must never cause is
    // a packager judged failing or stale from requests it answered 404.
    let health_switches: Vec<&str> = proxy_log
        .lines()
        .filter(|l| l.contains("switching from") && !l.contains(" behind: newest segment "))
        .collect();
    assert!(
        health_switches.is_empty(),
        "a packager was switched for its health: {health_switches:?}\n{context}"
    );
    // The bound is a bound: a window without abuse stays within it.
    assert!(
        quiet.proxy_fetches <= quiet_bound,
        "quiet window\n{context}"
    );
    assert!(
        abused.proxy_fetches <= abused_bound,
        "abused window\n{context}"
    );
    assert!(
        abused.proxy_segment_fetches <= abused_segments,
        "segment fetches\n{context}"
    );
    assert!(
        abused.packager_segments <= abused_segments,
        "segment requests seen by the packagers\n{context}"
    );
    assert_eq!(
        abused.packager_segment_404s, 0,
        "packagers' 404s\n{context}"
    );
    assert_eq!(report.stalls, 0, "stalls\n{context}");
    assert_eq!(report.failed_requests, 0, "failed requests\n{context}");
    assert!(report.segments_played >= 20, "too few segments\n{context}");
}
