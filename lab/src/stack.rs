//! A whole stack on free ports, as the system tests and benches run it: the
//! seed's seven programs (or the redundant topology's nine), optionally a
//! fault proxy in front of server1 and a second proxy (Content Steering's
//! pathway b), started in order once no other stack runs, stopped in order
//! on drop.
//!
//! ```text
//!   worker A ─▶ output(-a)/ ─▶ server1 ─[faultproxy]─┐ packager A   proxy (pathway a) ─▶ viewers
//!  [worker B ─▶ output-b/ ]─▶ server2 ───────────────┘ packager B ─▶[proxy B (pathway b)]
//!   discovery A [, B] ─▶ reporter ─▶ origin ─▶ proxy [, proxy B] (routes)
//! ```
//!
//! Tests reach the programs by [`Role`]: their URLs, their processes (to
//! signal, stop or start again), and inject [`Fault`]s with
//! [`Stack::inject`] / [`Stack::clear`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use nonstop::hls::multivariant::Multivariant;
use nonstop::hls::PlaylistFacts;
use nonstop::pipeline::settings::DEFAULT_SEGMENT_SECONDS;

use crate::fault::{ControlPlane, Fault, FaultTarget};
use crate::fault_proxy::{self, FaultMode};
use crate::http::{get, get_json, local, wait_healthy};
use crate::input::{make_input_picture, Picture, DEFAULT_INPUT_SIZE, LADDER_INPUT_SIZE};
use crate::ports::{free_port, StackPorts};
use crate::process::{logs_in, Service};
use crate::stack_lock::ExclusiveStack;
use crate::wait::{try_wait_for, wait_for};
use crate::workspace::bin;

/// How long a stack's proxy may take to list a full playlist window.
pub const FULL_WINDOW_WITHIN: Duration = Duration::from_secs(30);
/// How long a worker may take to write its first playlist: a budget, not a
/// measure (a ladder's is written once every rung has a segment; once in a
/// full test run on 2026-12-03 a 1 s zone-plate ladder missed 30 s, its logs
/// lost, so they are now shown when it is missed).
const FIRST_PLAYLIST_WITHIN: Duration = Duration::from_secs(60);
/// How long discovery, reporter and origin may take to route the signal to
/// both packagers.
const ROUTED_WITHIN: Duration = Duration::from_secs(30);
/// The signal every stack streams.
const SIGNAL: &str = "live01";

/// Options for a whole stack.
pub struct StackOptions {
    pub segment_seconds: u32,
    pub input_seconds: u32,
    pub audio: bool,
    /// Put a fault-injecting proxy in front of server1: packager A is then the
    /// fault proxy (the one the proxy uses first), packager B is server2.
    pub fault_front: bool,
    /// The redundant topology (`just up`'s default): two epoch-locked
    /// workers that never talk, each reading its own copy of the input
    /// (`input/`, `input-b/`: separate hosts), worker A writing `output-a/`
    /// served by server1, worker B writing `output-b/` served by server2, each
    /// folder watched by its own discovery. Otherwise the seed's: one worker
    /// reading `input/` whose `output/` both packagers serve.
    pub redundant: bool,
    /// The workers' `LADDER`; `None` for their default (a single rendition).
    pub ladder: Option<String>,
    /// The generated input's picture size (a ladder never upscales it).
    pub input_size: (u32, u32),
    /// What the generated input shows: [`Picture::MovingZonePlate`] where a
    /// ladder's rungs must differ in bit rate as a real picture's do.
    pub input_picture: Picture,
    /// Host B's clock shifted (libfaketime's `FAKETIME`, e.g. `-1.5s`; its
    /// monotonic clock untouched) for worker B, server2 and discovery B,
    /// in the redundant topology: a host whose NTP is off.
    pub host_b_clock: Option<&'static str>,
    /// Content Steering over two edges: a second proxy ([`Role::ProxyB`])
    /// beside the first, both started with `PATHWAYS=a=<proxy>,b=<proxy B>`
    /// and their own `PATHWAY_ID` (`a`, `b`), so a ladder's multivariant
    /// playlist lists every rendition once per proxy and players may move
    /// from one to the other on their own.
    pub steering: bool,
    /// The workers' `HOLD_BACK_SECONDS`; `None` for their default (three
    /// segments).
    pub hold_back_seconds: Option<f64>,
}

/// libfaketime, from Debian's `faketime` package (scripts/setup.sh).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

impl StackOptions {
    /// The product's segments (`DEFAULT_SEGMENT_SECONDS`) with a fault proxy
    /// in front of server1: what the real-player tests run.
    pub fn as_in_production() -> Self {
        StackOptions {
            fault_front: true,
            segment_seconds: DEFAULT_SEGMENT_SECONDS,
            input_seconds: 6,
            ..StackOptions::default()
        }
    }

    /// These options with the recommended ladder (`LADDER=recommended`) on an
    /// input it cuts into two renditions, 480p and 360p ([`LADDER_INPUT_SIZE`]).
    pub fn with_recommended_ladder(self) -> Self {
        StackOptions {
            ladder: Some("recommended".to_string()),
            input_size: LADDER_INPUT_SIZE,
            ..self
        }
    }

    /// [`StackOptions::as_in_production`] in the redundant topology: each
    /// packager fed by its own worker and folder, as `just up` runs it.
    pub fn redundant() -> Self {
        StackOptions {
            redundant: true,
            ..StackOptions::as_in_production()
        }
    }
}

impl Default for StackOptions {
    /// Short segments and a short input, so a test's stack settles fast.
    fn default() -> Self {
        StackOptions {
            segment_seconds: 1,
            input_seconds: 4,
            audio: true,
            fault_front: false,
            redundant: false,
            ladder: None,
            input_size: DEFAULT_INPUT_SIZE,
            input_picture: Picture::Ball,
            host_b_clock: None,
            steering: false,
            hold_back_seconds: None,
        }
    }
}

/// One program of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The worker whose folder packager A serves (the only worker in the
    /// seed's topology).
    WorkerA,
    /// The second worker, in the redundant topology.
    WorkerB,
    Server1,
    /// The fault proxy in front of server1, when the stack has one.
    FaultProxy,
    Server2,
    Reporter,
    /// The discovery watching folder A (the only one in the seed's topology).
    DiscoveryA,
    /// The discovery watching folder B, in the redundant topology.
    DiscoveryB,
    Origin,
    Proxy,
    /// The second proxy, pathway `b`, when the stack steers
    /// ([`StackOptions::steering`]); the first is pathway `a`.
    ProxyB,
}

impl Role {
    /// Every role, in the order their logs are shown.
    const ALL: [Role; 11] = [
        Role::WorkerA,
        Role::WorkerB,
        Role::Server1,
        Role::FaultProxy,
        Role::Server2,
        Role::Reporter,
        Role::DiscoveryA,
        Role::DiscoveryB,
        Role::Origin,
        Role::Proxy,
        Role::ProxyB,
    ];

    /// The order a stack stops its programs in: the fault proxy, then from
    /// the viewers' side back to the media.
    const TEARDOWN: [Role; 11] = [
        Role::FaultProxy,
        Role::ProxyB,
        Role::Proxy,
        Role::Origin,
        Role::DiscoveryB,
        Role::DiscoveryA,
        Role::Reporter,
        Role::Server2,
        Role::Server1,
        Role::WorkerB,
        Role::WorkerA,
    ];

    /// The workspace program that plays it.
    pub fn program(self) -> &'static str {
        match self {
            Role::WorkerA | Role::WorkerB => "worker",
            Role::Server1 => "server1",
            Role::FaultProxy => "faultproxy",
            Role::Server2 => "server2",
            Role::Reporter => "reporter",
            Role::DiscoveryA | Role::DiscoveryB => "discovery",
            Role::Origin => "origin",
            Role::Proxy | Role::ProxyB => "proxy",
        }
    }

    /// The name of its first instance's log (`<name>.log`).
    fn log_name(self) -> &'static str {
        match self {
            Role::WorkerA => "worker",
            Role::WorkerB => "worker-b",
            Role::DiscoveryA => "discovery",
            Role::DiscoveryB => "discovery-b",
            Role::ProxyB => "proxy-b",
            other => other.program(),
        }
    }

    /// Whether it runs with side B's settings (folder B, its own metrics
    /// ports) in the redundant topology: worker B, server2, discovery B.
    fn on_side_b(self) -> bool {
        matches!(self, Role::WorkerB | Role::Server2 | Role::DiscoveryB)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The folders of a stack, all in one temporary folder removed on drop.
struct Folders {
    /// The folder worker A reads (the only worker in the seed's topology).
    input: PathBuf,
    /// Worker B's own copy of the input, in the redundant topology.
    input_b: Option<PathBuf>,
    /// The folder worker A writes (the only worker in the seed's topology).
    output: PathBuf,
    /// The folder worker B writes, in the redundant topology.
    output_b: Option<PathBuf>,
    /// Every program's log, restarted instances included.
    logs: PathBuf,
    /// The temporary folder holding them; declared last, removed last.
    _dir: tempfile::TempDir,
}

/// The ports of a stack beyond the five every host shares.
#[derive(Debug, Clone, Copy)]
struct MetricsPorts {
    worker: u16,
    discovery: u16,
}

/// The seed's seven services (nine in the redundant topology, and the fault
/// proxy when asked) on free ports.
pub struct Stack {
    /// The environment side A's programs (every program in the seed's
    /// topology) were started with.
    env: Vec<(&'static str, String)>,
    /// The environment worker B, server2 and discovery B were started with,
    /// in the redundant topology.
    env_b: Option<Vec<(&'static str, String)>>,
    ports: StackPorts,
    metrics: MetricsPorts,
    metrics_b: Option<MetricsPorts>,
    /// Port of the fault proxy in front of server1, when there is one.
    fault_port: Option<u16>,
    /// Port of the second proxy, when the stack steers.
    proxy_b_port: Option<u16>,
    /// Packager URLs as discovery reports them (and the proxy allows):
    /// packager A (the fault proxy, or server1), then server2.
    packagers: Vec<String>,
    /// The running programs, by [`Role::index`].
    services: [Option<Service>; 11],
    folders: Folders,
    /// This stack's turn to run; declared last so it is released only after
    /// every service has stopped (the services stop in [`Stack`]'s drop).
    _exclusive: ExclusiveStack,
}

impl Stack {
    /// Starts the seven services (and the fault proxy when asked) once no
    /// other stack runs; see [`ExclusiveStack`].
    pub fn start(options: StackOptions) -> Stack {
        let exclusive = ExclusiveStack::acquire();
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("input");
        let (output, output_b) = if options.redundant {
            (
                dir.path().join("output-a"),
                Some(dir.path().join("output-b")),
            )
        } else {
            (dir.path().join("output"), None)
        };
        let input_b = options.redundant.then(|| dir.path().join("input-b"));
        let logs = dir.path().join("logs");
        for d in [&input, &logs] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let input_file = format!("{SIGNAL}.mp4");
        make_input_picture(
            &input.join(&input_file),
            options.input_seconds,
            options.audio,
            options.input_size,
            options.input_picture,
        );
        if let Some(input_b) = &input_b {
            std::fs::create_dir_all(input_b).expect("mkdir input-b");
            std::fs::copy(input.join(&input_file), input_b.join(&input_file))
                .expect("copy the input for worker B");
        }
        let ports = StackPorts::free();
        let fault_port = options.fault_front.then(free_port);
        let proxy_b_port = options.steering.then(free_port);
        let metrics = MetricsPorts {
            worker: free_port(),
            discovery: free_port(),
        };
        let packager_a = fault_port.unwrap_or(ports.server_one);
        let packagers = vec![local(packager_a), local(ports.server_two)];
        let mut env = vec![
            ("INPUT_STREAM_PATH", input.display().to_string()),
            ("OUTPUT_STREAM_PATH", output.display().to_string()),
            ("WORKER_METRICS_PORT", metrics.worker.to_string()),
            ("DISCOVERY_METRICS_PORT", metrics.discovery.to_string()),
        ];
        env.extend(ports.shared_env(
            &packagers,
            "127.0.0.1",
            "127.0.0.1",
            options.segment_seconds,
        ));
        if let Some(ladder) = &options.ladder {
            env.push(("LADDER", ladder.clone()));
        }
        if let Some(hold_back) = options.hold_back_seconds {
            env.push(("HOLD_BACK_SECONDS", hold_back.to_string()));
        }
        // Worker B, server2 and discovery B see folders B (and their own
        // metrics ports) in the redundant topology.
        let metrics_b = options.redundant.then(|| MetricsPorts {
            worker: free_port(),
            discovery: free_port(),
        });
        let env_b = output_b.as_ref().zip(input_b.as_ref()).zip(metrics_b).map(
            |((out_b, in_b), metrics_b)| {
                let mut env_b = env.clone();
                for (key, value) in env_b.iter_mut() {
                    match *key {
                        "INPUT_STREAM_PATH" => *value = in_b.display().to_string(),
                        "OUTPUT_STREAM_PATH" => *value = out_b.display().to_string(),
                        "WORKER_METRICS_PORT" => *value = metrics_b.worker.to_string(),
                        "DISCOVERY_METRICS_PORT" => *value = metrics_b.discovery.to_string(),
                        _ => {}
                    }
                }
                if let Some(offset) = options.host_b_clock {
                    assert!(
                        std::path::Path::new(LIBFAKETIME).exists(),
                        "{LIBFAKETIME} missing: run scripts/setup.sh (installs faketime)"
                    );
                    env_b.push(("LD_PRELOAD", LIBFAKETIME.to_string()));
                    env_b.push(("FAKETIME", offset.to_string()));
                    env_b.push(("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()));
                }
                env_b
            },
        );
        let mut stack = Stack {
            env,
            env_b,
            ports,
            metrics,
            metrics_b,
            fault_port,
            proxy_b_port,
            packagers,
            services: Default::default(),
            folders: Folders {
                input,
                input_b,
                output,
                output_b,
                logs,
                _dir: dir,
            },
            _exclusive: exclusive,
        };
        stack.launch_all();
        stack
    }

    /// Starts every program in order, each once what it needs answers.
    fn launch_all(&mut self) {
        let redundant = self.env_b.is_some();
        self.launch(Role::WorkerA);
        if redundant {
            self.launch(Role::WorkerB);
        }
        let folders = std::iter::once(&self.folders.output).chain(&self.folders.output_b);
        for folder in folders {
            let playlist = folder.join(SIGNAL).join("playlist.m3u8");
            if try_wait_for(FIRST_PLAYLIST_WITHIN, || playlist.exists().then_some(())).is_none() {
                panic!(
                    "timed out waiting for the worker's first playlist, {}\n{}",
                    playlist.display(),
                    self.all_logs()
                );
            }
        }
        for role in [Role::Server1, Role::Server2, Role::Reporter] {
            self.launch(role);
        }
        for port in [
            self.ports.server_one,
            self.ports.server_two,
            self.ports.reporter,
        ] {
            wait_healthy(port);
        }
        if let Some(port) = self.fault_port {
            self.launch(Role::FaultProxy);
            wait_healthy(port);
        }
        self.launch(Role::DiscoveryA);
        if redundant {
            self.launch(Role::DiscoveryB);
        }
        self.launch(Role::Origin);
        self.launch(Role::Proxy);
        if let Some(port) = self.proxy_b_port {
            self.launch(Role::ProxyB);
            wait_healthy(port);
        }
        wait_healthy(self.ports.origin);
        wait_healthy(self.ports.proxy);
        let routes = self.url(Role::Origin, &format!("live/{SIGNAL}/packagers"));
        let reported = try_wait_for(ROUTED_WITHIN, || {
            let (status, body) = get(&routes)?;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            (status == 200 && v["packagers"].as_array()?.len() == 2).then_some(())
        });
        if reported.is_none() {
            panic!(
                "timed out waiting for {SIGNAL} reported with both packagers\n{}",
                self.all_logs()
            );
        }
    }

    /// Starts the first instance of `role`.
    fn launch(&mut self, role: Role) {
        let service = self.start_instance(role, role.log_name(), &[]);
        self.services[role.index()] = Some(service);
    }

    /// Starts an instance of `role` with its side's settings and `extra`
    /// ones, logging to `<log_name>.log`.
    fn start_instance(
        &self,
        role: Role,
        log_name: &str,
        extra: &[(&'static str, String)],
    ) -> Service {
        let args = match role {
            Role::FaultProxy => vec![
                "--listen".to_string(),
                format!("127.0.0.1:{}", self.port(Role::FaultProxy)),
                "--upstream".to_string(),
                local(self.ports.server_one),
            ],
            _ => Vec::new(),
        };
        let env: Vec<(&'static str, String)> = match role {
            // The fault proxy takes its settings from the command line and
            // what it inherits (FAULT_SLOW_MS).
            Role::FaultProxy => Vec::new(),
            _ if role.on_side_b() => self.env_b.as_ref().unwrap_or(&self.env).clone(),
            _ => self.env.clone(),
        };
        let env: Vec<(&str, String)> = env
            .into_iter()
            .chain(self.steering_env(role))
            .chain(extra.iter().cloned())
            .collect();
        Service::start(
            log_name,
            &bin(role.program()),
            &args,
            &env,
            &self.folders.logs,
        )
    }

    /// What a proxy of a steering stack is started with beyond the stack's
    /// settings: both pathways, its own id, and proxy B its own port.
    fn steering_env(&self, role: Role) -> Vec<(&'static str, String)> {
        let Some(port_b) = self.proxy_b_port else {
            return Vec::new();
        };
        let pathways = format!("a={},b={}", local(self.ports.proxy), local(port_b));
        match role {
            Role::Proxy => vec![("PATHWAYS", pathways), ("PATHWAY_ID", "a".into())],
            Role::ProxyB => vec![
                ("PROXY_PORT", port_b.to_string()),
                ("PATHWAYS", pathways),
                ("PATHWAY_ID", "b".into()),
            ],
            _ => Vec::new(),
        }
    }

    /// A log name for another instance of `role` no instance used yet:
    /// `proxy-2`, `proxy-3`...
    fn next_log_name(&self, role: Role) -> String {
        (2..)
            .map(|n| format!("{}-{n}", role.log_name()))
            .find(|name| !self.folders.logs.join(format!("{name}.log")).exists())
            .expect("a free log name")
    }

    /// The running program playing `role`; panics when there is none.
    pub fn service(&self, role: Role) -> &Service {
        self.services[role.index()]
            .as_ref()
            .unwrap_or_else(|| panic!("the stack runs no {role:?}"))
    }

    /// [`Stack::service`], to wait for it.
    pub fn service_mut(&mut self, role: Role) -> &mut Service {
        self.services[role.index()]
            .as_mut()
            .unwrap_or_else(|| panic!("the stack runs no {role:?}"))
    }

    /// Takes the program playing `role` out of the stack (to stop it, or keep
    /// it apart); the stack runs none until [`Stack::restart`].
    pub fn take(&mut self, role: Role) -> Option<Service> {
        self.services[role.index()].take()
    }

    /// Starts another instance of `role` with its settings (side B's for
    /// worker B, server2 and discovery B), in place of the one running, if
    /// any (stopped first); its log is `<name>-2.log`, `-3`...
    pub fn restart(&mut self, role: Role) -> &Service {
        self.restart_with(role, &[])
    }

    /// [`Stack::restart`] with `extra` settings on top of the stack's.
    pub fn restart_with(&mut self, role: Role, extra: &[(&'static str, String)]) -> &Service {
        drop(self.take(role));
        let log_name = self.next_log_name(role);
        let service = self.start_instance(role, &log_name, extra);
        self.services[role.index()].insert(service)
    }

    /// Every running program, in the order logs show them.
    pub fn services(&self) -> impl Iterator<Item = (Role, &Service)> {
        Role::ALL
            .into_iter()
            .filter_map(|role| Some((role, self.services[role.index()].as_ref()?)))
    }

    /// The port `role` listens on (a worker's or discovery's: its metrics
    /// port); panics when the stack has no such program.
    pub fn port(&self, role: Role) -> u16 {
        let side_b = || {
            self.metrics_b
                .unwrap_or_else(|| panic!("{role:?} runs only in the redundant topology"))
        };
        match role {
            Role::WorkerA => self.metrics.worker,
            Role::WorkerB => side_b().worker,
            Role::Server1 => self.ports.server_one,
            Role::FaultProxy => self
                .fault_port
                .unwrap_or_else(|| panic!("the stack has no fault proxy (fault_front)")),
            Role::Server2 => self.ports.server_two,
            Role::Reporter => self.ports.reporter,
            Role::DiscoveryA => self.metrics.discovery,
            Role::DiscoveryB => side_b().discovery,
            Role::Origin => self.ports.origin,
            Role::Proxy => self.ports.proxy,
            Role::ProxyB => self
                .proxy_b_port
                .unwrap_or_else(|| panic!("the stack has no second proxy (steering)")),
        }
    }

    /// `http://127.0.0.1:<port>` of `role`.
    pub fn base_url(&self, role: Role) -> String {
        local(self.port(role))
    }

    /// `<base>/<path>` of `role`.
    pub fn url(&self, role: Role, path: &str) -> String {
        format!("{}/{path}", self.base_url(role))
    }

    /// `<proxy>/<path>`: what viewers ask.
    pub fn proxy_url(&self, path: &str) -> String {
        self.url(Role::Proxy, path)
    }

    /// Packager URLs as discovery reports them and the proxy allows: packager
    /// A (the fault proxy when there is one, else server1), then server2.
    pub fn packagers(&self) -> &[String] {
        &self.packagers
    }

    /// The environment side A's programs were started with, for a test that
    /// starts a program of its own beside the stack.
    pub fn env(&self) -> &[(&'static str, String)] {
        &self.env
    }

    /// Where every program of the stack logs.
    pub fn logs_dir(&self) -> &Path {
        &self.folders.logs
    }

    /// The folder worker A reads (the only worker's in the seed's topology).
    pub fn input_a(&self) -> &Path {
        &self.folders.input
    }

    /// The folder worker A writes (the only worker's in the seed's topology).
    pub fn output_a(&self) -> &Path {
        &self.folders.output
    }

    /// Worker B's own copy of the input, in the redundant topology.
    pub fn input_b(&self) -> Option<&Path> {
        self.folders.input_b.as_deref()
    }

    /// The folder worker B writes, in the redundant topology.
    pub fn output_b(&self) -> Option<&Path> {
        self.folders.output_b.as_deref()
    }

    /// Waits until the proxy's live01 playlist lists `segments` segments
    /// (a ladder's: every rendition its multivariant playlist names): a
    /// viewer then joins a running stream, as in production.
    pub fn wait_for_window(&self, segments: usize) {
        let url = self.proxy_url(&format!("{SIGNAL}/playlist.m3u8"));
        let lists = |url: &str| {
            let (_, body) = get(url)?;
            let facts = PlaylistFacts::parse(&body).ok()?;
            (facts.segments.len() >= segments).then_some(())
        };
        wait_for(FULL_WINDOW_WITHIN, "a full playlist window", || {
            let (_, body) = get(&url)?;
            match Multivariant::parse(&body) {
                // With steering, every pathway's renditions by absolute URL.
                Some(ladder) => ladder.uris().try_for_each(|uri| {
                    if uri.contains("://") {
                        lists(uri)
                    } else {
                        lists(&self.proxy_url(&format!("{SIGNAL}/{uri}")))
                    }
                }),
                None => lists(&url),
            }
        });
    }

    /// The proxy's view of `signal` in its `GET /status`: the signal's state
    /// (up, degraded, ended, down) and each packager's health, in order.
    pub fn proxy_view(&self, signal: &str) -> Option<(String, Vec<String>)> {
        let status = get_json(&self.proxy_url("status"));
        let entry = status["signals"]
            .as_array()?
            .iter()
            .find(|s| s["signal"] == signal)?
            .clone();
        let health = entry["packagers"]
            .as_array()?
            .iter()
            .map(|p| p["health"].as_str().unwrap_or("?").to_string())
            .collect();
        Some((entry["state"].as_str()?.to_string(), health))
    }

    /// The proxy's log so far.
    pub fn proxy_log(&self) -> String {
        self.services[Role::Proxy.index()]
            .as_ref()
            .map(Service::log_text)
            .unwrap_or_default()
    }

    /// Asserts the proxy logged a switch of packager (what every fault test
    /// expects once packager A is broken).
    pub fn assert_switched(&self) {
        let log = self.proxy_log();
        assert!(log.contains("switching from"), "no switch happened:\n{log}");
    }

    /// Every running service's log, for a failure message.
    pub fn logs(&self) -> String {
        self.services()
            .map(|(_, s)| format!("--- {} ---\n{}", s.name(), s.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every log this stack's services wrote, restarted instances included.
    pub fn all_logs(&self) -> String {
        logs_in(&self.folders.logs)
    }

    /// Does `fault` to this stack: packager A is the fault proxy in front of
    /// server1 (or server1 itself without one), worker A the worker whose
    /// folder it serves; on one machine, host A's link is packager A's port.
    pub fn inject(&mut self, fault: impl Into<Fault>) {
        fault.into().inject(self);
    }

    /// Undoes `fault` where something lasts (see [`Fault::clear`]); false
    /// when there was nothing to undo.
    pub fn clear(&mut self, fault: impl Into<Fault>) -> bool {
        fault.into().clear(self)
    }

    /// Packager A's program: the fault proxy, or server1 without one.
    fn packager_a(&self) -> Role {
        if self.fault_port.is_some() {
            Role::FaultProxy
        } else {
            Role::Server1
        }
    }
}

impl FaultTarget for Stack {
    fn set_packager_mode(&mut self, mode: FaultMode) {
        fault_proxy::switch_mode(&self.base_url(Role::FaultProxy), mode);
    }

    fn packager(&mut self) -> &mut Service {
        self.service_mut(self.packager_a())
    }

    fn restart_packager(&mut self) {
        let role = self.packager_a();
        self.restart(role);
        wait_healthy(self.port(role));
    }

    fn worker(&mut self) -> &mut Service {
        self.service_mut(Role::WorkerA)
    }

    fn restart_worker(&mut self) {
        self.restart(Role::WorkerA);
    }

    fn worker_input(&self) -> PathBuf {
        self.folders.input.clone()
    }

    fn worker_output(&self) -> PathBuf {
        self.folders.output.clone()
    }

    fn cut_link(&mut self) {
        crate::fault::loopback_cut::cut(self.port(self.packager_a()));
    }

    fn restore_link(&mut self) {
        crate::fault::loopback_cut::restore();
    }

    fn part(&mut self) {
        panic!("a stack runs on one machine: parting hosts needs the hosts lab (netns)");
    }

    fn heal(&mut self) {
        panic!("a stack runs on one machine: parting hosts needs the hosts lab (netns)");
    }

    fn control_plane(&mut self, program: ControlPlane) -> &mut Service {
        self.service_mut(control_role(program))
    }

    fn restart_control_plane(&mut self, program: ControlPlane) {
        self.restart(control_role(program));
    }
}

/// The stack's role of a control-plane program.
fn control_role(program: ControlPlane) -> Role {
    match program {
        ControlPlane::Reporter => Role::Reporter,
        ControlPlane::Origin => Role::Origin,
        ControlPlane::Discovery => Role::DiscoveryA,
    }
}

impl Drop for Stack {
    /// Stops the programs in [`Role::TEARDOWN`] order, before the folders go
    /// and the turn is given up.
    fn drop(&mut self) {
        for role in Role::TEARDOWN {
            drop(self.take(role));
        }
    }
}
