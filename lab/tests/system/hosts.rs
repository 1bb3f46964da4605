//! No single host left, proven across hosts rather than processes: the
//! redundant topology spread over three network namespaces on one switch
//! (see `nonstop_lab::netns`), as it would be over three machines:
//!
//! - host a: worker A (its own input copy) -> folder A -> server1, discovery A;
//! - host b: worker B (its own input copy) -> folder B -> server2, discovery B;
//! - host c: Redis, the reporter (on Redis), origin and the proxy.
//!
//! The player probe watches through the proxy from the root namespace. Once it
//! plays, the host the proxy serves from fails: its link is cut (every frame
//! dropped, so TCP sees silence, not a reset), its worker is frozen
//! (SIGSTOP: its packager keeps answering with a playlist that no longer
//! moves), or its worker is killed (SIGKILL, no restart while the viewer
//! watches). The viewer (the probe, and ffmpeg beside it) must see no stall,
//! no failed request, no regression, skip or repeat; the proxy must serve
//! from the other host; once the fault is undone (link back, SIGCONT, worker
//! started again) the failed host must be fresh again in the proxy's `/status`.
//!
//! Needs root, iproute2 and nftables: where namespaces cannot be made the
//! tests fail saying so, they are never skipped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;
use nonstop_lab::fault::{ControlPlane, Fault, FaultTarget, HostFault, WorkerFault};
use nonstop_lab::fault_proxy::FaultMode;
use nonstop_lab::http::{get, scrape_at, total, wait_healthy_at};
use nonstop_lab::input::make_input;
use nonstop_lab::netns::Lab;
use nonstop_lab::player_process::{Probe, PLAYING_WITHIN};
use nonstop_lab::ports::{free_port, StackPorts};
use nonstop_lab::probe::ProbeReport;
use nonstop_lab::process::Service;
use nonstop_lab::redis::{store_url, RedisServer};
use nonstop_lab::stack_lock::ExclusiveStack;
use nonstop_lab::wait::{try_wait_for, wait_for};
use nonstop_lab::workspace::bin;

/// Length of the looped input (seconds).
const INPUT_SECONDS: u32 = 6;
/// Seconds the probe watches.
const WATCH_SECONDS: u32 = 36;
/// Media ffmpeg, the second viewer, reads: most of the probe's watch.
const FFMPEG_SECONDS: u32 = WATCH_SECONDS - 8;
/// Media the probe plays before the fault: settled at the live edge.
const PLAYED_BEFORE_FAULT: Duration = Duration::from_secs(5);
/// Budget for the proxy to stop serving from the failed host (a wait's
/// limit, not a speed requirement: the viewer's zero stalls are the point).
const SWITCH_WITHIN: Duration = Duration::from_secs(25);
/// Budget for the failed host to be fresh again once the fault is undone.
const BACK_WITHIN: Duration = Duration::from_secs(45);
/// The signal the test watches.
const SIGNAL: &str = "live01";

/// The three hosts and their services; everything stops on drop, services
/// first (fields drop in order), then the network, then the files.
struct Hosts {
    _proxy: Service,
    _origin: Service,
    _discovery_b: Service,
    _discovery_a: Service,
    _reporter: Service,
    _redis: Service,
    /// Host a's packager (server1), then host b's (server2).
    servers: [Service; 2],
    /// Host a's worker, then host b's.
    workers: [Service; 2],
    /// Host a's settings, then host b's, for a worker started again.
    envs: [Vec<(&'static str, String)>; 2],
    /// Host a's input folder, then host b's.
    inputs: [PathBuf; 2],
    /// Host a's output folder, then host b's.
    outputs: [PathBuf; 2],
    lab: Lab,
    /// The packagers' base URLs as discovery and the proxy know them: host a's
    /// server1, host b's server2.
    packagers: [String; 2],
    /// The proxy's base URL, on host c.
    proxy_base: String,
    /// The origin's routes for the signal, on host c.
    routes: String,
    logs: PathBuf,
    _dir: tempfile::TempDir,
    _exclusive: ExclusiveStack,
}

/// One service's settings on top of the shared ones.
fn with(
    common: &[(&'static str, String)],
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    common.iter().chain(extra).cloned().collect()
}

impl Hosts {
    fn start() -> Hosts {
        let exclusive = ExclusiveStack::acquire();
        let lab = Lab::create(&["a", "b", "c"]);
        let (a, b, c) = (
            lab.host("a").addr.clone(),
            lab.host("b").addr.clone(),
            lab.host("c").addr.clone(),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name);
        let logs = path("logs");
        for d in ["logs", "input-a", "input-b"] {
            std::fs::create_dir_all(path(d)).expect("mkdir");
        }
        // Each host has its own copy of the input: no shared disk.
        make_input(&path("input-a/live01.mp4"), INPUT_SECONDS, true);
        std::fs::copy(path("input-a/live01.mp4"), path("input-b/live01.mp4"))
            .expect("copy the input to host b");

        let port = free_port;
        let ports = StackPorts::free();
        let redis_port = port();
        let packagers = [
            format!("http://{a}:{}", ports.server_one),
            format!("http://{b}:{}", ports.server_two),
        ];
        let shared = ports.shared_env(&packagers, &c, "0.0.0.0", DEFAULT_SEGMENT_SECONDS);
        let host_env = |host: &str| {
            with(
                &shared,
                &[
                    (
                        "INPUT_STREAM_PATH",
                        path(&format!("input-{host}")).display().to_string(),
                    ),
                    (
                        "OUTPUT_STREAM_PATH",
                        path(&format!("output-{host}")).display().to_string(),
                    ),
                    ("WORKER_METRICS_PORT", port().to_string()),
                    ("DISCOVERY_METRICS_PORT", port().to_string()),
                ],
            )
        };
        let (env_a, env_b) = (host_env("a"), host_env("b"));
        let on = |host: &str, name: &str, program: &str, env: &[(&str, String)]| {
            Service::start_on(&lab.on(host), name, &bin(program), &[], env, &logs)
        };

        let worker_a = on("a", "worker-a", "worker", &env_a);
        let worker_b = on("b", "worker-b", "worker", &env_b);
        for host in ["a", "b"] {
            let playlist = path(&format!("output-{host}/{SIGNAL}/playlist.m3u8"));
            wait_for(
                Duration::from_secs(30),
                &format!("worker {host}'s first playlist"),
                || playlist.exists().then_some(()),
            );
        }
        let server1 = on("a", "server1", "server1", &env_a);
        let server2 = on("b", "server2", "server2", &env_b);
        let redis = Service::start_on(
            &lab.on("c"),
            "redis",
            "redis-server",
            &[
                RedisServer::args(redis_port),
                vec!["--dir".to_string(), dir.path().display().to_string()],
            ]
            .concat(),
            &[],
            &logs,
        );
        wait_for(Duration::from_secs(10), "redis on host c", || {
            redis
                .log_text()
                .contains("Ready to accept connections")
                .then_some(())
        });
        let reporter = on(
            "c",
            "reporter",
            "reporter",
            &with(&shared, &[("REPORTER_STORE", store_url(redis_port))]),
        );
        for base in [
            &packagers[0],
            &packagers[1],
            &format!("http://{c}:{}", ports.reporter),
        ] {
            wait_healthy_at(base);
        }
        let discovery_a = on("a", "discovery-a", "discovery", &env_a);
        let discovery_b = on("b", "discovery-b", "discovery", &env_b);
        let origin = on("c", "origin", "origin", &shared);
        let proxy = on("c", "proxy", "proxy", &shared);
        let proxy_base = format!("http://{c}:{}", ports.proxy);
        wait_healthy_at(&format!("http://{c}:{}", ports.origin));
        wait_healthy_at(&proxy_base);
        let hosts = Hosts {
            _proxy: proxy,
            _origin: origin,
            _discovery_b: discovery_b,
            _discovery_a: discovery_a,
            _reporter: reporter,
            _redis: redis,
            servers: [server1, server2],
            workers: [worker_a, worker_b],
            envs: [env_a, env_b],
            inputs: [path("input-a"), path("input-b")],
            outputs: [path("output-a"), path("output-b")],
            lab,
            packagers,
            proxy_base,
            routes: format!("http://{c}:{}/live/{SIGNAL}/packagers", ports.origin),
            logs,
            _dir: dir,
            _exclusive: exclusive,
        };
        hosts.wait(
            Duration::from_secs(30),
            "origin to list both hosts' packagers",
            || (hosts.routes()?.len() == 2).then_some(()),
        );
        hosts
    }

    /// Starts `program` on `host` with `env`, logging to `<name>.log`.
    fn start_on(
        &self,
        host: &str,
        name: &str,
        program: &str,
        env: &[(&'static str, String)],
    ) -> Service {
        Service::start_on(
            &self.lab.on(host),
            name,
            &bin(program),
            &[],
            env,
            &self.logs,
        )
    }

    /// Does `fault` to `host` (a or b).
    fn inject(&mut self, fault: Fault, host: &'static str) {
        fault.inject(&mut OnHost { hosts: self, host });
    }

    /// Undoes `fault` on `host`: link restored, SIGCONT, the worker started
    /// again (see [`Fault::clear`]).
    fn clear(&mut self, fault: Fault, host: &'static str) -> bool {
        fault.clear(&mut OnHost { hosts: self, host })
    }

    /// The packagers the origin routes the signal to.
    fn routes(&self) -> Option<Vec<String>> {
        let (status, body) = get(&self.routes)?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let list = v["packagers"].as_array()?;
        (status == 200).then(|| {
            list.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
    }

    /// Like [`wait_for`], with every log in the failure message.
    fn wait<T>(&self, within: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
        try_wait_for(within, check)
            .unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", self.logs()))
    }

    fn playlist_url(&self) -> String {
        format!("{}/{SIGNAL}/playlist.m3u8", self.proxy_base)
    }

    /// The proxy's `/status` entry for the signal.
    fn status(&self) -> Option<serde_json::Value> {
        let (_, body) = get(&format!("{}/status", self.proxy_base))?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v["signals"]
            .as_array()?
            .iter()
            .find(|s| s["signal"] == SIGNAL)
            .cloned()
    }

    /// The packager the proxy serves the signal from.
    fn active(&self) -> Option<String> {
        let status = self.status()?;
        status["packagers"]
            .as_array()?
            .iter()
            .find(|p| p["active"] == true)
            .and_then(|p| p["packager"].as_str())
            .map(String::from)
    }

    /// How the proxy rates `packager` (fresh, unknown, stale, failing), when
    /// it lists it.
    fn health(&self, packager: &str) -> Option<String> {
        health_in(&self.status()?, packager)
    }

    fn switches(&self) -> f64 {
        total(
            &scrape_at(&self.proxy_base),
            "nonstop_proxy_switches_total",
            &[],
        )
    }

    fn logs(&self) -> String {
        let mut entries: Vec<_> = std::fs::read_dir(&self.logs)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        entries
            .iter()
            .map(|e| {
                format!(
                    "--- {} ---\n{}",
                    e.file_name().to_string_lossy(),
                    tail(&e.path(), 60)
                )
            })
            .collect()
    }
}

/// How the `/status` entry `status` rates `packager`, when it lists it.
fn health_in(status: &serde_json::Value, packager: &str) -> Option<String> {
    status["packagers"]
        .as_array()?
        .iter()
        .find(|p| p["packager"] == packager)
        .and_then(|p| p["health"].as_str())
        .map(String::from)
}

/// The last `lines` lines of a log.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n") + "\n"
}

/// One host of the lab as a fault sees it: its packager, its worker and
/// folders, its link. Faults on the control plane (host c) or on a fault
/// proxy (there is none here) are not this lab's.
struct OnHost<'a> {
    hosts: &'a mut Hosts,
    /// "a" or "b".
    host: &'static str,
}

impl OnHost<'_> {
    fn index(&self) -> usize {
        index(self.host)
    }

    /// The other worker host.
    fn other(&self) -> &'static str {
        if self.host == "a" {
            "b"
        } else {
            "a"
        }
    }
}

impl FaultTarget for OnHost<'_> {
    fn set_packager_mode(&mut self, mode: FaultMode) {
        panic!("the hosts lab has no fault proxy: cannot set {mode}");
    }

    fn packager(&mut self) -> &mut Service {
        &mut self.hosts.servers[index(self.host)]
    }

    fn restart_packager(&mut self) {
        let (host, i) = (self.host, self.index());
        let program = ["server1", "server2"][i];
        self.hosts.servers[i] = self.hosts.start_on(
            host,
            &format!("{program}-again"),
            program,
            &self.hosts.envs[i],
        );
    }

    fn worker(&mut self) -> &mut Service {
        &mut self.hosts.workers[index(self.host)]
    }

    fn restart_worker(&mut self) {
        let (host, i) = (self.host, self.index());
        self.hosts.workers[i] = self.hosts.start_on(
            host,
            &format!("worker-{host}-again"),
            "worker",
            &self.hosts.envs[i],
        );
    }

    fn worker_input(&self) -> PathBuf {
        self.hosts.inputs[self.index()].clone()
    }

    fn worker_output(&self) -> PathBuf {
        self.hosts.outputs[self.index()].clone()
    }

    fn cut_link(&mut self) {
        self.hosts.lab.cut(self.host);
    }

    fn restore_link(&mut self) {
        self.hosts.lab.restore(self.host);
    }

    fn part(&mut self) {
        self.hosts.lab.partition(self.host, self.other());
    }

    fn heal(&mut self) {
        self.hosts.lab.heal(self.host, self.other());
    }

    fn control_plane(&mut self, program: ControlPlane) -> &mut Service {
        panic!(
            "the control plane runs on host c, not on host {}: {program:?}",
            self.host
        );
    }

    fn restart_control_plane(&mut self, program: ControlPlane) {
        panic!(
            "the control plane runs on host c, not on host {}: {program:?}",
            self.host
        );
    }
}

/// Host a's place in [`Hosts`]' pairs, or host b's.
fn index(host: &str) -> usize {
    usize::from(host != "a")
}

/// Watches through the proxy, fails the host it serves from once the probe
/// plays, checks the viewer saw nothing and the proxy moved to the other
/// host, undoes the fault and waits for the host to be fresh again.
fn host_fails(fault: impl Into<Fault>) {
    let fault = fault.into();
    let mut hosts = Hosts::start();
    let probe = Probe::start(&hosts.playlist_url(), WATCH_SECONDS);
    let ffmpeg = Ffmpeg::start(&hosts.playlist_url(), &hosts.logs);
    probe.wait_playing(PLAYED_BEFORE_FAULT, PLAYING_WITHIN);
    let active = hosts.wait(
        Duration::from_secs(10),
        "the proxy to name its packager",
        || hosts.active(),
    );
    let (victim, other) = if active == hosts.packagers[0] {
        ("a", 1)
    } else {
        assert_eq!(
            active, hosts.packagers[1],
            "the proxy serves from a packager it was not given"
        );
        ("b", 0)
    };
    let (victim_url, other_url) = (active.clone(), hosts.packagers[other].clone());
    let switches_before = hosts.switches();

    let faulted = Instant::now();
    hosts.inject(fault, victim);
    if fault == Fault::Worker(WorkerFault::Killed) {
        assert!(
            hosts.workers[index(victim)].wait_gone(Duration::from_secs(10)),
            "worker {victim} survived SIGKILL"
        );
    }
    // A wiped folder costs its worker one segment: it makes the folder again
    // on its next run (0.5 s later) and may list the next segment before its
    // twin has been ahead long enough to take its viewers (half a target).
    // Then no switch is due; the viewer must see nothing either way.
    let must_switch = fault != Fault::Worker(WorkerFault::FolderWiped);
    let switched = if must_switch {
        hosts.wait(
            SWITCH_WITHIN,
            "the proxy to serve from the other host",
            || (hosts.active()? == other_url).then_some(()),
        );
        true
    } else {
        try_wait_for(SWITCH_WITHIN, || {
            (hosts.active()? == other_url).then_some(())
        })
        .is_some()
    };
    let switch_time = faulted.elapsed();
    if fault == Fault::Host(HostFault::LinkCut) {
        // The cut is real: the failed host is out of reach from here too.
        assert!(
            get(&format!("{victim_url}/healthcheck")).is_none(),
            "host {victim}'s packager still answers through a cut link"
        );
    }

    let (report, probe_log) = probe.finish();
    let context = || format!("{report:#?}\n--- probe ---\n{probe_log}\n{}", hosts.logs());
    assert_viewer_saw_nothing(&report, &context);
    let (ffmpeg_said, ffmpeg_watched) = ffmpeg.finish();
    // At -re pace, FFMPEG_SECONDS of media take at least that long, less the
    // start: an ffmpeg done sooner did not watch what it was asked to.
    assert!(
        ffmpeg_watched >= Duration::from_secs(FFMPEG_SECONDS as u64 - 2),
        "ffmpeg ended after {ffmpeg_watched:?}: it did not watch {FFMPEG_SECONDS} s\n{ffmpeg_said}"
    );
    assert!(
        ffmpeg_said.trim().is_empty(),
        "ffmpeg, watching too, complained:\n{ffmpeg_said}\n{}",
        context()
    );
    assert!(
        !switched || hosts.switches() > switches_before,
        "the proxy's switch counter did not move\n{}",
        context()
    );
    let reason = hosts
        .status()
        .and_then(|s| s["switches"].as_array()?.last().cloned())
        .map(|s| s["reason"].to_string())
        .unwrap_or_default();

    let undone = Instant::now();
    hosts.clear(fault, victim);
    hosts.wait(
        BACK_WITHIN,
        &format!("host {victim} fresh again in the proxy's /status"),
        || (hosts.health(&victim_url)? == "fresh").then_some(()),
    );
    let back_time = undone.elapsed();
    let state = hosts.wait(
        Duration::from_secs(10),
        "the signal up with both hosts",
        || {
            let status = hosts.status()?;
            (status["state"] == "up").then_some(status)
        },
    );
    eprintln!(
        "{fault} on host {victim} ({victim_url}) while the probe played: proxy on host {} after {:.2} s ({reason}; switched: {switched}); \
         viewer: {} stalls, {} failed of {} requests, {} regressions, {} segments played; \
         ffmpeg: {} s of media in {:.1} s, no complaint; \
         host {victim} fresh again {:.2} s after the fault was undone ({:.1} s after the fault); /status: {}",
        if other == 0 { "a" } else { "b" },
        switch_time.as_secs_f64(),
        report.stalls,
        report.failed_requests,
        report.playlist_requests + report.segment_requests,
        report.playlist_regressions,
        report.segments_played,
        FFMPEG_SECONDS,
        ffmpeg_watched.as_secs_f64(),
        back_time.as_secs_f64(),
        faulted.elapsed().as_secs_f64(),
        state["packagers"],
    );
}

/// A second viewer no one here wrote: ffmpeg's HLS demuxer reading the
/// playlist at its pace (`-re`) for most of the probe's watch, packets copied
/// to nowhere, saying only what goes wrong (warnings and errors).
struct Ffmpeg {
    pid: u32,
    /// Its exit status and when, sent by the thread that waits for it.
    ended: std::sync::mpsc::Receiver<(std::process::ExitStatus, Instant)>,
    log: PathBuf,
    started: Instant,
    /// Its end was received: nothing to kill.
    reaped: bool,
}

impl Ffmpeg {
    fn start(url: &str, logs: &Path) -> Ffmpeg {
        let log = logs.join("ffmpeg-viewer.log");
        let out = std::fs::File::create(&log).expect("ffmpeg's log");
        let mut child = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "warning",
                "-re",
                "-i",
                url,
            ])
            .args([
                "-t",
                &FFMPEG_SECONDS.to_string(),
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(out)
            .spawn()
            .expect("ffmpeg is installed (scripts/setup.sh)");
        let started = Instant::now();
        let pid = child.id();
        let (sender, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = sender.send((status, Instant::now()));
            }
        });
        Ffmpeg {
            pid,
            ended,
            log,
            started,
            reaped: false,
        }
    }

    /// Waits for ffmpeg to end; its complaints (or why it failed) and how
    /// long it watched.
    fn finish(mut self) -> (String, Duration) {
        let said = |ended: &Result<_, _>| {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            match ended {
                Ok((status, _)) if std::process::ExitStatus::success(status) => log,
                Ok((status, _)) => format!("{log}\nffmpeg exited with {status}"),
                Err(_) => format!("{log}\nffmpeg did not finish its watch"),
            }
        };
        let ended = self.ended.recv_timeout(Duration::from_secs(30));
        self.reaped = ended.is_ok();
        let watched = match &ended {
            Ok((_, at)) => at.duration_since(self.started),
            Err(_) => self.started.elapsed(),
        };
        (said(&ended), watched)
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        if !self.reaped && self.ended.try_recv().is_err() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

fn assert_viewer_saw_nothing(report: &ProbeReport, context: &dyn Fn() -> String) {
    report.assert_unnoticed(&context());
    // 36 s of 2 s segments, less the start buffer: most of the watch played.
    assert!(
        report.segments_played >= 12,
        "too few segments\n{}",
        context()
    );
}

#[test]
fn a_host_cut_off_the_network_goes_unnoticed() {
    host_fails(HostFault::LinkCut);
}

#[test]
fn a_host_whose_worker_freezes_goes_unnoticed() {
    host_fails(WorkerFault::Stopped);
}

#[test]
fn a_host_whose_folder_is_wiped_goes_unnoticed_and_rejoins() {
    host_fails(WorkerFault::FolderWiped);
}

#[test]
fn a_host_whose_worker_is_killed_goes_unnoticed_and_rejoins_when_restarted() {
    host_fails(WorkerFault::Killed);
}

/// Hosts a and b parted from each other (each drops the other's packets)
/// while both still reach host c and the viewer: the workers never talk, so
/// nothing may change. The viewer sees nothing; the origin keeps routing to
/// both packagers, though each host's discovery now finds only its own; the
/// proxy keeps both fresh and does not switch.
#[test]
fn hosts_a_and_b_parted_from_each_other_change_nothing() {
    let mut hosts = Hosts::start();
    let probe = Probe::start(&hosts.playlist_url(), WATCH_SECONDS);
    let started = Instant::now();
    probe.wait_playing(PLAYED_BEFORE_FAULT, PLAYING_WITHIN);
    let switches_before = hosts.switches();
    let b_port: u16 = hosts.packagers[1]
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("server2's port");
    let b_addr = hosts.lab.host("b").addr.clone();
    assert!(
        hosts.lab.connects("a", &b_addr, b_port),
        "host a cannot reach server2 before the partition"
    );
    hosts.inject(HostFault::Partition.into(), "a");
    let parted = Instant::now();
    assert!(
        !hosts.lab.connects("a", &b_addr, b_port),
        "host a still reaches server2 through the partition"
    );
    // Until the probe is nearly done: every read of the routes and of the
    // proxy's view while parted.
    let (mut reads, mut short_routes, mut not_fresh) = (0, Vec::new(), Vec::new());
    let until = started + Duration::from_secs(u64::from(WATCH_SECONDS) - 4);
    while Instant::now() < until {
        reads += 1;
        match hosts.routes() {
            Some(r) if r.len() == 2 => {}
            other => short_routes.push(format!(
                "{:.1} s: {other:?}",
                started.elapsed().as_secs_f64()
            )),
        }
        // One /status read rates both packagers at the same instant.
        let status = hosts.status();
        for packager in &hosts.packagers {
            let health = status.as_ref().and_then(|s| health_in(s, packager));
            if health.as_deref() != Some("fresh") {
                not_fresh.push(format!(
                    "{:.1} s: {packager} {health:?}",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (report, probe_log) = probe.finish();
    let context = || format!("{report:#?}\n--- probe ---\n{probe_log}\n{}", hosts.logs());
    assert_viewer_saw_nothing(&report, &context);
    assert!(
        short_routes.is_empty(),
        "the origin dropped a packager while hosts a and b were parted, {} of {reads} reads: {short_routes:?}\n{}",
        short_routes.len(),
        context()
    );
    assert!(
        not_fresh.is_empty(),
        "the proxy did not rate both packagers fresh while hosts a and b were parted: {not_fresh:?}\n{}",
        context()
    );
    assert_eq!(
        hosts.switches(),
        switches_before,
        "the proxy switched packagers while nothing failed\n{}",
        context()
    );
    hosts.clear(HostFault::Partition.into(), "a");
    assert!(
        hosts.lab.connects("a", &b_addr, b_port),
        "host a cannot reach server2 after the partition healed"
    );
    eprintln!(
        "hosts a and b parted for {:.0} s while the probe played: {reads} reads, routes always both packagers, both fresh, no switch; \
         viewer: {} stalls, {} failed requests, {} regressions, {} segments played",
        parted.elapsed().as_secs_f64(),
        report.stalls,
        report.failed_requests,
        report.playlist_regressions,
        report.segments_played,
    );
}

#[test]
fn leftovers_of_a_crashed_run_are_removed_and_a_lab_leaves_nothing() {
    // Alone, like the host tests: their labs' own clean-up would remove the
    // leftovers this test plants, and concurrent `ip netns add` calls race on
    // the first mount of /run/netns (one failed that way in a full run).
    let _exclusive = ExclusiveStack::acquire();
    // A pid above the kernel's limit: no such process can be alive.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("a number");
    let dead = pid_max + 1;
    let (netns, link, peer) = (
        format!("{}{dead}-0-switch", nonstop_lab::netns::PREFIX),
        format!("nst{dead}0r0"),
        format!("nst{dead}0q0"),
    );
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("ip runs");
        assert!(
            status.success(),
            "ip {args:?} failed (the host lab needs root and iproute2)"
        );
    };
    ip(&["netns", "add", &netns]);
    ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
    let namespaces = || {
        String::from_utf8_lossy(
            &std::process::Command::new("ip")
                .args(["netns", "list"])
                .output()
                .expect("ip runs")
                .stdout,
        )
        .into_owned()
    };
    let links = || {
        String::from_utf8_lossy(
            &std::process::Command::new("ip")
                .args(["-o", "link", "show"])
                .output()
                .expect("ip runs")
                .stdout,
        )
        .into_owned()
    };

    let lab = Lab::create(&["a"]);
    assert!(
        !namespaces().contains(&netns),
        "a dead run's namespace is left"
    );
    assert!(
        !links().contains(&format!("{link}@")),
        "a dead run's link is left"
    );
    let mine = lab.host("a").netns.clone();
    let root_link = lab.root_link.clone();
    assert!(links().contains(&format!(": {root_link}@")));
    assert!(namespaces().contains(&mine));
    drop(lab);
    assert!(!namespaces().contains(&mine), "the lab left its namespace");
    assert!(
        !links().contains(&format!(": {root_link}@")),
        "the lab left its link in the root namespace"
    );
}
