//! Many proxies behind a load balancer serve one audience: the redundant
//! topology (two epoch-locked workers, each with its own folder and
//! packager, one discovery per folder), the reporter on a real Redis, the
//! origin, three proxies, and Debian's nginx running the shipped balancer
//! config (`deploy/balancer.conf`: round robin, no caching,
//! `proxy_next_upstream`) in front of them.
//!
//! ```text
//!   worker A ─▶ output-a/ ─▶ server1 ──┐          ┌─ proxy 1 ─┐
//!   worker B ─▶ output-b/ ─▶ server2 ──┼─ routes ─┼─ proxy 2 ─┼─ nginx (round robin) ─▶ probe
//!   discovery A, B ─▶ reporter (Redis) ─▶ origin  └─ proxy 3 ─┘                      ─▶ checker
//! ```
//!
//! The probe plays through the balancer, so its requests alternate between
//! proxies. A checker reloads the playlist through the balancer several times
//! per target duration and fetches each new segment from every proxy. Once
//! the probe says it plays, the packager the proxies serve from is SIGKILLed,
//! or (the other test) the worker behind it: its packager then serves a
//! playlist that stops growing while the twin's goes on, and proxies that
//! have not read the twin yet must not answer 404 for a segment another
//! proxy already listed. The viewer must see no stall, no failed request, no
//! playlist going back and no segment skipped, whichever proxy answers; each
//! proxy must switch.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nonstop::hls::PlaylistFacts;
use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;

use nonstop_lab::http::{get, scrape, total, wait_healthy};
use nonstop_lab::input::make_input;
use nonstop_lab::nginx::Nginx;
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::ports::free_port;
use nonstop_lab::ports::{DISCOVERY_INTERVAL_SECONDS, REPORTER_TOKEN};
use nonstop_lab::process::{Service, Signal};
use nonstop_lab::redis::RedisServer;
use nonstop_lab::stack::FULL_WINDOW_WITHIN;
use nonstop_lab::stack_lock::ExclusiveStack;
use nonstop_lab::ts::{video_start, VideoStart};
use nonstop_lab::wait::{try_wait_for, wait_for};
use nonstop_lab::workspace::bin;

/// One frame of the test input (25 fps) in 90 kHz ticks: how far the same
/// segment's first video PTS may differ between redundant workers.
const ONE_FRAME_TICKS: u64 = 90_000 / 25;
/// Length of the generated input the workers loop.
const INPUT_SECONDS: u32 = 6;
/// Proxies behind the balancer.
const PROXIES: usize = 3;
/// Seconds the probe watches.
const WATCH_SECONDS: u32 = 30;
/// Media the probe plays before the kill: settled at the live edge.
const PLAYED_BEFORE_KILL: Duration = Duration::from_secs(4);
/// The checker's reload period: four times per target duration, faster than
/// any player reloads (RFC 8216 6.3.4: at least half a target duration).
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// Segments the proxies' playlist must list before the probe starts.
const WINDOW_BEFORE_START: usize = 4;
/// How long after the kill every proxy must have moved off the killed
/// packager (a generous bound; the measured times are printed).
const SWITCH_WITHIN: Duration = Duration::from_secs(15);
/// The shipped balancer config the test runs.
const BALANCER_CONF: &str = include_str!("../../../deploy/balancer.conf");

/// The main `nginx.conf` around the shipped `deploy/balancer.conf` (which
/// the nginx image includes inside `http { }`): a prefix of our own for pid,
/// temp paths and logs.
const NGINX_MAIN: &str = "{{user}}
worker_processes 1;
pid {{prefix}}/nginx.pid;
error_log {{prefix}}/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path {{prefix}}/client_body;
    proxy_temp_path {{prefix}}/proxy;
    fastcgi_temp_path {{prefix}}/fastcgi;
    uwsgi_temp_path {{prefix}}/uwsgi;
    scgi_temp_path {{prefix}}/scgi;
    include {{prefix}}/balancer.conf;
}
";

/// Every program of the topology, with what the test needs to reach them.
/// Fields drop in declaration order: the balancer and proxies first, the
/// workers last, the stack lock after everything.
struct Topology {
    nginx: Nginx,
    proxies: Vec<(u16, Service)>,
    origin: Service,
    discovery: Vec<Service>,
    reporter: Service,
    _redis: RedisServer,
    /// server1 then server2, with their base URLs.
    packagers: Vec<(String, Service)>,
    workers: Vec<Service>,
    logs: PathBuf,
    _dir: tempfile::TempDir,
    _exclusive: ExclusiveStack,
}

/// `deploy/balancer.conf` pointed at the test's proxies and port: each
/// `server proxyN:8002` line and the `listen 80` line replaced, each found
/// exactly once (so the test fails if the shipped file changes shape).
fn balancer_conf(prefix_log: &str, proxy_ports: &[u16]) -> String {
    let mut conf = BALANCER_CONF.to_string();
    let mut replace_once = |from: &str, to: &str| {
        assert_eq!(
            conf.matches(from).count(),
            1,
            "deploy/balancer.conf should have `{from}` once"
        );
        conf = conf.replace(from, to);
    };
    for (i, port) in proxy_ports.iter().enumerate() {
        replace_once(
            &format!("server proxy{}:8002 ", i + 1),
            &format!("server 127.0.0.1:{port} "),
        );
    }
    replace_once("listen 80;", "listen 127.0.0.1:{{port}};");
    replace_once("/var/log/nginx/access.log", prefix_log);
    conf
}

impl Topology {
    fn start() -> Topology {
        let exclusive = ExclusiveStack::acquire();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name);
        let (input, logs) = (path("input"), path("logs"));
        for d in [&input, &logs] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        make_input(&input.join("live01.mp4"), INPUT_SECONDS, true);
        let (s1, s2, rep, ori) = (free_port(), free_port(), free_port(), free_port());
        let packager_urls = [
            format!("http://127.0.0.1:{s1}"),
            format!("http://127.0.0.1:{s2}"),
        ];
        let common = vec![
            ("LISTEN_HOST", "127.0.0.1".to_string()),
            ("SEGMENT_SECONDS", DEFAULT_SEGMENT_SECONDS.to_string()),
            ("PACKAGERS", packager_urls.join(",")),
            ("REPORTER_URL", format!("http://127.0.0.1:{rep}")),
            ("ORIGIN_URL", format!("http://127.0.0.1:{ori}")),
            ("REPORTER_TOKEN", REPORTER_TOKEN.to_string()),
            (
                "DISCOVERY_INTERVAL_SECONDS",
                DISCOVERY_INTERVAL_SECONDS.to_string(),
            ),
        ];
        let start = |name: &str, program: &str, extra: &[(&'static str, String)]| {
            let mut env = common.clone();
            env.extend_from_slice(extra);
            Service::start(name, &bin(program), &[], &env, &logs)
        };
        let folder = |side: &str| path(&format!("output-{side}")).display().to_string();

        // One host each: a worker, its folder, its packager, its discovery.
        let workers: Vec<Service> = ["a", "b"]
            .iter()
            .map(|side| {
                start(
                    &format!("worker-{side}"),
                    "worker",
                    &[
                        ("INPUT_STREAM_PATH", input.display().to_string()),
                        ("OUTPUT_STREAM_PATH", folder(side)),
                        ("WORKER_METRICS_PORT", free_port().to_string()),
                    ],
                )
            })
            .collect();
        for side in ["a", "b"] {
            let playlist = Path::new(&folder(side)).join("live01/playlist.m3u8");
            wait_for(
                Duration::from_secs(30),
                "each worker's first playlist",
                || playlist.exists().then_some(()),
            );
        }
        let packagers = vec![
            (
                packager_urls[0].clone(),
                start(
                    "server1",
                    "server1",
                    &[
                        ("OUTPUT_STREAM_PATH", folder("a")),
                        ("SERVER_ONE_PORT", s1.to_string()),
                    ],
                ),
            ),
            (
                packager_urls[1].clone(),
                start(
                    "server2",
                    "server2",
                    &[
                        ("OUTPUT_STREAM_PATH", folder("b")),
                        ("SERVER_TWO_PORT", s2.to_string()),
                    ],
                ),
            ),
        ];
        let redis = RedisServer::start(dir.path());
        let reporter = start(
            "reporter",
            "reporter",
            &[
                ("REPORTER_PORT", rep.to_string()),
                ("REPORTER_STORE", redis.url()),
            ],
        );
        for port in [s1, s2, rep] {
            wait_healthy(port);
        }
        let discovery = ["a", "b"]
            .iter()
            .map(|side| {
                start(
                    &format!("discovery-{side}"),
                    "discovery",
                    &[
                        ("OUTPUT_STREAM_PATH", folder(side)),
                        ("DISCOVERY_METRICS_PORT", free_port().to_string()),
                    ],
                )
            })
            .collect();
        let origin = start("origin", "origin", &[("ORIGIN_PORT", ori.to_string())]);
        let proxies: Vec<(u16, Service)> = (1..=PROXIES)
            .map(|i| {
                let port = free_port();
                let proxy = start(
                    &format!("proxy{i}"),
                    "proxy",
                    &[
                        ("PROXY_PORT", port.to_string()),
                        ("RUST_LOG", "info,nonstop::net::proxy=debug".to_string()),
                    ],
                );
                (port, proxy)
            })
            .collect();
        wait_healthy(ori);
        for (port, _) in &proxies {
            wait_healthy(*port);
        }
        let reported = try_wait_for(Duration::from_secs(30), || {
            let (status, body) = get(&format!("http://127.0.0.1:{ori}/live/live01/packagers"))?;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            (status == 200 && v["packagers"].as_array()?.len() == 2).then_some(())
        });
        let ports: Vec<u16> = proxies.iter().map(|(p, _)| *p).collect();
        let prefix_log = "{{prefix}}/access.log";
        let balancer_file = balancer_conf(prefix_log, &ports);
        let nginx_dir_conf = NGINX_MAIN.replace(
            "include {{prefix}}/balancer.conf;",
            &format!("# deploy/balancer.conf, pointed at the test's proxies:\n{balancer_file}"),
        );
        let nginx = Nginx::start(&nginx_dir_conf, &[], &logs);
        let topology = Topology {
            nginx,
            proxies,
            origin,
            discovery,
            reporter,
            _redis: redis,
            packagers,
            workers,
            logs,
            _dir: dir,
            _exclusive: exclusive,
        };
        assert!(
            reported.is_some(),
            "live01 was not reported with both packagers\n{}",
            topology.all_logs()
        );
        topology
    }

    fn balancer_url(&self, path: &str) -> String {
        self.nginx.url(path)
    }

    fn proxy_url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.proxies[i].0)
    }

    /// Waits until every proxy lists `segments` segments of live01.
    fn wait_for_window(&self, segments: usize) {
        for i in 0..self.proxies.len() {
            let url = self.proxy_url(i, "live01/playlist.m3u8");
            wait_for(FULL_WINDOW_WITHIN, "a full playlist window", || {
                let (_, body) = get(&url)?;
                let facts = PlaylistFacts::parse(&body).ok()?;
                (facts.segments.len() >= segments).then_some(())
            });
        }
    }

    /// The packager each proxy serves live01 from, by its /metrics.
    fn active_packagers(&self) -> Vec<Option<String>> {
        self.proxies
            .iter()
            .map(|(port, _)| active_packager(*port))
            .collect()
    }

    fn all_logs(&self) -> String {
        let services = self
            .workers
            .iter()
            .chain(self.packagers.iter().map(|(_, s)| s))
            .chain(std::iter::once(&self.reporter))
            .chain(self.discovery.iter())
            .chain(std::iter::once(&self.origin))
            .chain(self.proxies.iter().map(|(_, s)| s));
        let mut text: String = services
            .map(|s| format!("--- {} ---\n{}\n", s.name(), s.log_text()))
            .collect();
        text.push_str(&format!(
            "--- nginx ---\n{}\n{}\n(logs kept in {})",
            self.nginx.output(),
            self.nginx.log("error.log"),
            self.logs.display()
        ));
        text
    }
}

/// The packager a proxy's /metrics says live01 is served from.
fn active_packager(port: u16) -> Option<String> {
    scrape(port)
        .into_iter()
        .find(|(k, v)| {
            k.starts_with("nonstop_proxy_packager_active{") && k.contains("live01") && *v == 1.0
        })
        .and_then(|(k, _)| {
            let rest = k.split("packager=\"").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        })
}

/// Switches a proxy counted for live01 other than its first choice.
fn switches(port: u16) -> u64 {
    let metrics = scrape(port);
    (total(
        &metrics,
        "nonstop_proxy_switches_total",
        &["signal=\"live01\""],
    ) - total(
        &metrics,
        "nonstop_proxy_switches_total",
        &["signal=\"live01\"", "reason=\"first\""],
    )) as u64
}

/// Requests the balancer passed on, by proxy (`proxy=` in
/// `deploy/balancer.conf`'s log format) and status.
fn balanced_requests(access_log: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in access_log.lines() {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or("?")
                .to_string()
        };
        *counts
            .entry(format!("{} {}", field("proxy="), field("proxy_status=")))
            .or_default() += 1;
    }
    counts
}

/// What the checker found.
#[derive(Debug, Default)]
struct Checked {
    /// Playlists fetched through the balancer and parsed.
    playlists: u64,
    /// Requests through the balancer that did not give a playlist.
    failed: Vec<String>,
    /// A playlist whose media sequence or newest segment went back.
    regressions: Vec<String>,
    /// Sequence numbers never listed between two consecutive playlists.
    skipped: Vec<String>,
    /// Playlists answered by each proxy (the balancer's `X-Nonstop-Proxy`).
    by_proxy: BTreeMap<String, u64>,
    /// Segments fetched from every proxy and compared.
    segments_compared: u64,
    /// Segment names whose bytes differ between proxies, or that a proxy
    /// did not give.
    segment_mismatches: Vec<String>,
}

/// Whether every proxy gave a segment a player can take in place of the
/// others'. Byte-identical while the proxies read the same packager; when two
/// proxies briefly read packagers fed by different (epoch-locked) workers the
/// muxes differ, so the same name must then start with an IDR frame at the
/// same video PTS, within one frame.
fn interchangeable(bodies: &[Option<bytes::Bytes>]) -> bool {
    if bodies.windows(2).all(|w| w[0] == w[1]) {
        return true;
    }
    let starts: Option<Vec<VideoStart>> = bodies
        .iter()
        .map(|b| b.as_deref().and_then(video_start))
        .collect();
    starts.is_some_and(|starts| {
        starts.iter().all(|s| s.idr)
            && starts
                .windows(2)
                .all(|w| w[0].pts.abs_diff(w[1].pts) <= ONE_FRAME_TICKS)
    })
}

/// Reloads the playlist through the balancer every [`CHECK_EVERY`] until
/// `stop`, checking each against the one before; each newly listed segment
/// is fetched from every proxy directly and the bytes compared.
fn checker(balancer: String, proxies: Vec<String>, stop: Arc<AtomicBool>) -> JoinHandle<Checked> {
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let mut checked = Checked::default();
        let mut previous: Option<(PlaylistFacts, String)> = None;
        let mut compared_up_to: Option<u64> = None;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let answer = client.get(&balancer).send().and_then(|r| {
                let status = r.status().as_u16();
                let proxy = r
                    .headers()
                    .get("x-nonstop-proxy")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_string();
                Ok((status, proxy, r.bytes()?))
            });
            let facts = match answer {
                Ok((200, proxy, body)) => match PlaylistFacts::parse(&body) {
                    Ok(facts) => Some((facts, proxy)),
                    Err(e) => {
                        checked.failed.push(format!("{proxy}: unparsable: {e}"));
                        None
                    }
                },
                Ok((status, proxy, _)) => {
                    checked.failed.push(format!("{proxy}: HTTP {status}"));
                    None
                }
                Err(e) => {
                    checked.failed.push(format!("no answer: {e}"));
                    None
                }
            };
            if let Some((facts, proxy)) = facts {
                checked.playlists += 1;
                *checked.by_proxy.entry(proxy.clone()).or_default() += 1;
                if let Some((before, before_proxy)) = &previous {
                    let (old_newest, new_newest) =
                        (before.newest_sequence(), facts.newest_sequence());
                    if facts.media_sequence < before.media_sequence || new_newest < old_newest {
                        checked.regressions.push(format!(
                            "{before_proxy} listed {}..{:?}, then {proxy} listed {}..{:?}",
                            before.media_sequence, old_newest, facts.media_sequence, new_newest
                        ));
                    }
                    if let Some(old_newest) = old_newest {
                        if facts.media_sequence > old_newest + 1 {
                            checked.skipped.push(format!(
                                "{before_proxy} listed up to {old_newest}, then {proxy} from {}",
                                facts.media_sequence
                            ));
                        }
                    }
                }
                // Every segment newer than the ones compared, from each proxy.
                for segment in &facts.segments {
                    if compared_up_to.is_some_and(|done| segment.sequence <= done) {
                        continue;
                    }
                    let path = format!("live01/{}", segment.uri);
                    let bodies: Vec<Option<bytes::Bytes>> = proxies
                        .iter()
                        .map(|base| {
                            let r = client.get(format!("{base}/{path}")).send().ok()?;
                            (r.status().as_u16() == 200).then(|| r.bytes().ok())?
                        })
                        .collect();
                    checked.segments_compared += 1;
                    if bodies.iter().any(Option::is_none) {
                        checked.segment_mismatches.push(format!(
                            "{}: not served by every proxy ({:?})",
                            segment.uri,
                            bodies.iter().map(Option::is_some).collect::<Vec<_>>()
                        ));
                    } else if !interchangeable(&bodies) {
                        checked.segment_mismatches.push(format!(
                            "{}: not the same media from every proxy (sizes {:?}, video starts {:?})",
                            segment.uri,
                            bodies
                                .iter()
                                .map(|b| b.as_ref().map_or(0, |b| b.len()))
                                .collect::<Vec<_>>(),
                            bodies
                                .iter()
                                .map(|b| b.as_deref().and_then(video_start))
                                .collect::<Vec<_>>()
                        ));
                    }
                    compared_up_to = Some(segment.sequence);
                }
                previous = Some((facts, proxy));
            }
            std::thread::sleep(CHECK_EVERY.saturating_sub(started.elapsed()));
        }
        checked
    })
}

/// What is SIGKILLed: the packager the proxies serve from, or its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Packager,
    Worker,
}

#[test]
fn three_proxies_behind_a_balancer_keep_one_story_through_a_packager_kill() {
    keep_one_story_through(Victim::Packager);
}

#[test]
fn three_proxies_behind_a_balancer_keep_one_story_through_a_worker_kill() {
    keep_one_story_through(Victim::Worker);
}

fn keep_one_story_through(kill: Victim) {
    let topology = Topology::start();
    topology.wait_for_window(WINDOW_BEFORE_START);
    let playlist = "live01/playlist.m3u8";
    let stop = Arc::new(AtomicBool::new(false));
    let proxy_bases: Vec<String> = (0..PROXIES)
        .map(|i| topology.proxy_url(i, "").trim_end_matches('/').to_string())
        .collect();
    let checker = checker(topology.balancer_url(playlist), proxy_bases, stop.clone());
    let probe = Probe::start(&topology.balancer_url(playlist), WATCH_SECONDS);
    probe.wait_playing(PLAYED_BEFORE_KILL, PLAYING_WITHIN);

    // The packager most proxies serve from is the one killed.
    let before = topology.active_packagers();
    let switches_before: Vec<u64> = topology.proxies.iter().map(|(p, _)| switches(*p)).collect();
    let mut votes: HashMap<&str, usize> = HashMap::new();
    for active in before.iter().flatten() {
        *votes.entry(active.as_str()).or_default() += 1;
    }
    let victim = votes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(base, _)| base.to_string())
        .unwrap_or_else(|| panic!("no proxy serves live01\n{}", topology.all_logs()));
    let (survivor, victim_service) = {
        let i = topology
            .packagers
            .iter()
            .position(|(base, _)| *base == victim)
            .expect("the victim is one of the packagers");
        let service = match kill {
            Victim::Packager => &topology.packagers[i].1,
            // Worker A writes server1's folder, worker B server2's.
            Victim::Worker => &topology.workers[i],
        };
        (topology.packagers[1 - i].0.clone(), service)
    };
    victim_service.signal(Signal::Kill);
    let killed_at = Instant::now();

    // Each proxy moves to the survivor; when, by its /metrics.
    let mut switched_after: Vec<Option<Duration>> = vec![None; PROXIES];
    while switched_after.iter().any(Option::is_none) && killed_at.elapsed() < SWITCH_WITHIN {
        for (i, (port, _)) in topology.proxies.iter().enumerate() {
            if switched_after[i].is_none() && active_packager(*port).as_deref() == Some(&survivor) {
                switched_after[i] = Some(killed_at.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let (report, probe_log) = probe.finish();
    stop.store(true, Ordering::SeqCst);
    let checked = checker.join().expect("checker thread");
    let switches_after: Vec<u64> = topology.proxies.iter().map(|(p, _)| switches(*p)).collect();

    let balanced = balanced_requests(&topology.nginx.log("access.log"));
    eprintln!(
        "killed the {kill:?} of {victim} (active on {before:?}); proxies on {survivor} after {:?}; \
         switches counted per proxy {switches_before:?} -> {switches_after:?}; \
         requests through the balancer by proxy and status {balanced:?}; \
         checker: {} playlists through the balancer by proxy {:?}, \
         {} segments compared across the {PROXIES} proxies; \
         probe: {} segments played, {} stalls, {} failed requests",
        switched_after,
        checked.playlists,
        checked.by_proxy,
        checked.segments_compared,
        report.segments_played,
        report.stalls,
        report.failed_requests,
    );
    let context = format!(
        "{report:#?}\n{checked:#?}\n--- probe ---\n{probe_log}\n{}",
        topology.all_logs()
    );
    report.assert_unnoticed(&context);
    assert!(report.segments_played >= 10, "too few segments\n{context}");

    assert!(
        checked.failed.is_empty(),
        "checker: failed requests\n{context}"
    );
    assert!(
        checked.regressions.is_empty(),
        "checker: regressions\n{context}"
    );
    assert!(
        checked.skipped.is_empty(),
        "checker: skipped segments\n{context}"
    );
    assert!(
        checked.segment_mismatches.is_empty(),
        "checker: segments differ between proxies\n{context}"
    );
    assert!(
        checked.playlists >= u64::from(WATCH_SECONDS),
        "checker: too few playlists\n{context}"
    );
    assert!(
        checked.segments_compared >= 10,
        "checker: too few segments\n{context}"
    );
    // No proxy needed the balancer's retry: every answer it passed on was a 200.
    assert!(
        !balanced.is_empty() && balanced.keys().all(|k| k.ends_with(" 200")),
        "a proxy answered the balancer with an error: {balanced:?}\n{context}"
    );
    // Round robin: every proxy answered the checker and the viewer.
    assert_eq!(
        checked.by_proxy.len(),
        PROXIES,
        "not every proxy answered the checker\n{context}"
    );
    assert_eq!(
        balanced.len(),
        PROXIES,
        "the balancer did not use every proxy\n{context}"
    );

    for (i, after) in switched_after.iter().enumerate() {
        assert!(
            after.is_some(),
            "proxy{} never moved to {survivor}\n{context}",
            i + 1
        );
        if before[i].as_deref() == Some(victim.as_str()) {
            assert!(
                switches_after[i] > switches_before[i],
                "proxy{}'s /metrics counted no switch away from {victim}\n{context}",
                i + 1
            );
        }
    }
}
