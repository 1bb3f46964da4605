//! A whole stack on free ports, as the system tests and benches run it: the
//! seed's seven programs (nine in the redundant topology, and a fault proxy
//! in front of server1 when asked), started in order once no other stack
//! runs, stopped on drop.

use std::path::PathBuf;
use std::time::Duration;

use crate::http::{get, get_json, wait_healthy};
use crate::input::make_input;
use crate::ports::{free_port, StackPorts};
use crate::process::{logs_in, Service};
use crate::stack_lock::ExclusiveStack;
use crate::wait::{try_wait_for, wait_for};
use crate::workspace::bin;

/// How long a stack's proxy may take to list a full playlist window.
pub const FULL_WINDOW_WITHIN: Duration = Duration::from_secs(30);

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
}

impl StackOptions {
    /// The product's 2 s segments with a fault proxy in front of server1:
    /// what the real-player tests run.
    pub fn as_in_production() -> Self {
        StackOptions {
            fault_front: true,
            segment_seconds: 2,
            input_seconds: 6,
            ..StackOptions::default()
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
    fn default() -> Self {
        StackOptions {
            segment_seconds: 1,
            input_seconds: 4,
            audio: true,
            fault_front: false,
            redundant: false,
        }
    }
}

/// The shared token every stack's discovery and reporter use.
pub const REPORTER_TOKEN: &str = "test-token-0123456789abcdef";

/// The seven services of the seed on free ports, in the seed's order.
pub struct Stack {
    /// The environment every service of this stack was started with.
    pub env: Vec<(&'static str, String)>,
    pub logs_dir: PathBuf,
    pub dir: tempfile::TempDir,
    /// The folder worker A reads (the only worker in the seed's topology).
    pub input: PathBuf,
    /// Worker B's own copy of the input, in the redundant topology.
    pub input_b: Option<PathBuf>,
    /// The folder worker A writes (the only worker in the seed's topology).
    pub output: PathBuf,
    /// The folder worker B writes, in the redundant topology.
    pub output_b: Option<PathBuf>,
    /// The environment worker B and its discovery were started with.
    pub env_b: Option<Vec<(&'static str, String)>>,
    pub server1_port: u16,
    pub server2_port: u16,
    pub reporter_port: u16,
    pub origin_port: u16,
    pub proxy_port: u16,
    pub worker_metrics_port: u16,
    pub discovery_metrics_port: u16,
    /// Packager URLs as discovery reports them (and the proxy allows).
    pub packagers: Vec<String>,
    /// Port of the fault proxy in front of server1, when there is one.
    pub fault_port: Option<u16>,
    // Dropped in reverse order of start.
    pub fault: Option<Service>,
    pub proxy: Option<Service>,
    pub origin: Option<Service>,
    pub discovery_b: Option<Service>,
    pub discovery: Option<Service>,
    pub reporter: Option<Service>,
    pub server2: Option<Service>,
    pub server1: Option<Service>,
    pub worker_b: Option<Service>,
    pub worker: Option<Service>,
    /// This stack's turn to run; declared last so it is released only after
    /// every service above has stopped.
    pub exclusive: ExclusiveStack,
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
        make_input(
            &input.join("live01.mp4"),
            options.input_seconds,
            options.audio,
        );
        if let Some(input_b) = &input_b {
            std::fs::create_dir_all(input_b).expect("mkdir input-b");
            std::fs::copy(input.join("live01.mp4"), input_b.join("live01.mp4"))
                .expect("copy the input for worker B");
        }
        let ports = StackPorts::free();
        let StackPorts {
            server_one: s1,
            server_two: s2,
            reporter: rep,
            origin: ori,
            proxy: pro,
        } = ports;
        let fault_port = options.fault_front.then(free_port);
        let (worker_metrics, discovery_metrics) = (free_port(), free_port());
        let packager_a = fault_port.unwrap_or(s1);
        let packagers = vec![
            format!("http://127.0.0.1:{packager_a}"),
            format!("http://127.0.0.1:{s2}"),
        ];
        let mut common = vec![
            ("INPUT_STREAM_PATH", input.display().to_string()),
            ("OUTPUT_STREAM_PATH", output.display().to_string()),
            ("WORKER_METRICS_PORT", worker_metrics.to_string()),
            ("DISCOVERY_METRICS_PORT", discovery_metrics.to_string()),
        ];
        common.extend(ports.shared_env(
            &packagers,
            "127.0.0.1",
            "127.0.0.1",
            options.segment_seconds,
        ));
        // Worker B, server2 and discovery B see folders B (and their own
        // metrics ports) in the redundant topology.
        let env_b = output_b
            .as_ref()
            .zip(input_b.as_ref())
            .map(|(out_b, in_b)| {
                let mut env = common.clone();
                for (key, value) in env.iter_mut() {
                    match *key {
                        "INPUT_STREAM_PATH" => *value = in_b.display().to_string(),
                        "OUTPUT_STREAM_PATH" => *value = out_b.display().to_string(),
                        "WORKER_METRICS_PORT" | "DISCOVERY_METRICS_PORT" => {
                            *value = free_port().to_string()
                        }
                        _ => {}
                    }
                }
                env
            });
        let start = |name: &str| Some(Service::start(name, &bin(name), &[], &common, &logs));
        let start_b = |name: &str, log_name: &str| {
            env_b
                .as_ref()
                .map(|env| Service::start(log_name, &bin(name), &[], env, &logs))
        };
        let worker = start("worker");
        let worker_b = start_b("worker", "worker-b");
        for folder in std::iter::once(&output).chain(output_b.as_ref()) {
            let playlist = folder.join("live01/playlist.m3u8");
            wait_for(
                Duration::from_secs(30),
                "the worker's first playlist",
                || playlist.exists().then_some(()),
            );
        }
        let server1 = start("server1");
        let server2 = start_b("server2", "server2").or_else(|| start("server2"));
        let reporter = start("reporter");
        for port in [s1, s2, rep] {
            wait_healthy(port);
        }
        let fault = fault_port.map(|port| {
            let args = [
                "--listen".to_string(),
                format!("127.0.0.1:{port}"),
                "--upstream".to_string(),
                format!("http://127.0.0.1:{s1}"),
            ];
            let service = Service::start("faultproxy", &bin("faultproxy"), &args, &[], &logs);
            wait_healthy(port);
            service
        });
        let discovery = start("discovery");
        let discovery_b = start_b("discovery", "discovery-b");
        let origin = start("origin");
        let proxy = start("proxy");
        wait_healthy(ori);
        wait_healthy(pro);
        let reported = try_wait_for(Duration::from_secs(30), || {
            let (status, body) = get(&format!("http://127.0.0.1:{ori}/live/live01/packagers"))?;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            (status == 200 && v["packagers"].as_array()?.len() == 2).then_some(())
        });
        if reported.is_none() {
            panic!(
                "timed out waiting for live01 reported with both packagers\n{}",
                logs_in(&logs)
            );
        }
        Stack {
            env: common,
            logs_dir: logs,
            dir,
            input,
            input_b,
            output,
            output_b,
            env_b,
            server1_port: s1,
            server2_port: s2,
            reporter_port: rep,
            origin_port: ori,
            proxy_port: pro,
            worker_metrics_port: worker_metrics,
            discovery_metrics_port: discovery_metrics,
            packagers,
            fault_port,
            fault,
            proxy,
            origin,
            discovery_b,
            discovery,
            reporter,
            server2,
            server1,
            worker_b,
            worker,
            exclusive,
        }
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.proxy_port)
    }

    /// Waits until the proxy's live01 playlist lists `segments` segments: a
    /// viewer then joins a running stream, as in production.
    pub fn wait_for_window(&self, segments: usize) {
        let url = self.proxy_url("live01/playlist.m3u8");
        wait_for(FULL_WINDOW_WITHIN, "a full playlist window", || {
            let (_, body) = get(&url)?;
            let facts = nonstop::hls::PlaylistFacts::parse(&body).ok()?;
            (facts.segments.len() >= segments).then_some(())
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
        self.proxy
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

    /// Every service's log, for a failure message.
    pub fn logs(&self) -> String {
        [
            &self.worker,
            &self.worker_b,
            &self.server1,
            &self.fault,
            &self.server2,
            &self.reporter,
            &self.discovery,
            &self.discovery_b,
            &self.origin,
            &self.proxy,
        ]
        .iter()
        .filter_map(|s| s.as_ref())
        .map(|s| format!("--- {} ---\n{}", s.name, s.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// Starts another instance of service `name` with this stack's settings.
    pub fn start_again(&self, name: &str, log_name: &str) -> Service {
        Service::start(log_name, &bin(name), &[], &self.env, &self.logs_dir)
    }

    /// Starts another instance of a B-side service (worker B, server2,
    /// discovery B) with B's settings: in the redundant topology they see
    /// folder B, not A's. The same as [`Self::start_again`] otherwise.
    pub fn start_again_b(&self, name: &str, log_name: &str) -> Service {
        let env = self.env_b.as_ref().unwrap_or(&self.env);
        Service::start(log_name, &bin(name), &[], env, &self.logs_dir)
    }

    /// Every log this stack's services wrote, restarted instances included.
    pub fn all_logs(&self) -> String {
        logs_in(&self.logs_dir)
    }

    /// Switches the fault proxy in front of server1 to `mode` (none, stale, ...).
    pub fn inject(&self, mode: &str) {
        let port = self.fault_port.expect("stack started with fault_front");
        let status = reqwest::blocking::Client::new()
            .put(format!("http://127.0.0.1:{port}/_fault/{mode}"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 200, "cannot switch the fault proxy to {mode}");
    }
}
