//! What the system tests and benchmarks share: free ports, generated inputs,
//! the real programs started as child processes (killed on drop), whole
//! stacks on free ports, the player probe, and waits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::probe::Progress;

static GST_INIT: Once = Once::new();

pub fn init_gst() {
    GST_INIT.call_once(|| gst::init().expect("GStreamer initialises"));
}

/// A port nobody listens on right now.
/// A port nobody listens on right now, never handed out twice by this
/// process, and below the kernel's ephemeral range (32768+), so neither a
/// parallel test nor an outgoing connection can take it before the service
/// binds it. Each test process starts at its own place in 20000-31999.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// Writes a short MP4 (320x240, 25 fps, H.264, plus AAC when `audio`) with GStreamer.
pub fn make_input(path: &Path, seconds: u32, audio: bool) {
    init_gst();
    let frames = seconds * 25;
    let mut line = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1,format=I420 \
         ! x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! queue ! mp4mux name=mux ! filesink location={}",
        path.display()
    );
    if audio {
        let buffers = seconds * 48_000 / 1024;
        line.push_str(&format!(
            " audiotestsrc num-buffers={buffers} samplesperbuffer=1024 wave=ticks ! audio/x-raw,rate=48000,channels=2 \
             ! audioconvert ! avenc_aac ! aacparse ! queue ! mux."
        ));
    }
    let pipeline = gst::parse::launch(&line).expect("input pipeline parses");
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("making input failed: {}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).expect("stops");
}

/// How long a stack's proxy may take to list a full playlist window.
pub const FULL_WINDOW_WITHIN: Duration = Duration::from_secs(30);

/// How long a program may take to drain and exit after SIGTERM.
pub const CLEAN_EXIT_WITHIN: Duration = Duration::from_secs(10);

/// A running program of the workspace; SIGTERM then SIGKILL on drop.
pub struct Service {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    /// Starts `bin` with `args` and `envs`, logging to `<logs>/<name>.log`.
    pub fn start(
        name: &str,
        bin: &str,
        args: &[String],
        envs: &[(&str, String)],
        logs: &Path,
    ) -> Service {
        Service::start_on(&[], name, bin, args, envs, logs)
    }

    /// [`Service::start`] behind a command `prefix` that runs it elsewhere
    /// and then execs it, so the process (its pid, its signals) is still the
    /// program's: e.g. `ip netns exec <ns>` for a host of [`crate::netns`].
    pub fn start_on(
        prefix: &[String],
        name: &str,
        bin: &str,
        args: &[String],
        envs: &[(&str, String)],
        logs: &Path,
    ) -> Service {
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for key in [
            "INPUT_STREAM_PATH",
            "OUTPUT_STREAM_PATH",
            "SERVER_ONE_PORT",
            "SERVER_TWO_PORT",
            "REPORTER_PORT",
            "ORIGIN_PORT",
            "PROXY_PORT",
            "PACKAGERS",
            "REPORTER_URL",
            "ORIGIN_URL",
            "WORKER_METRICS_PORT",
            "DISCOVERY_METRICS_PORT",
            "REPORTER_TOKEN",
            "PROXY_URL",
            "CONSOLE_PORT",
            "CONSOLE_ASSETS",
            "CONSOLE_FAULTS",
            "CONSOLE_FAULT_TOKEN",
        ] {
            cmd.env_remove(key);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Service {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then asserts a clean exit (code 0 within [`CLEAN_EXIT_WITHIN`]),
    /// showing the program's log if not: what every server promises.
    pub fn terminate_cleanly(&mut self) {
        self.signal("TERM");
        let code = self.wait_exit(CLEAN_EXIT_WITHIN);
        assert_eq!(
            code,
            Some(0),
            "{} did not exit cleanly:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Waits for the process to be gone, however it ended (a signal included).
    pub fn wait_gone(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.pid().to_string())
                .status();
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it returns Some, or None once `within` passes.
pub fn try_wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `check` until it returns Some or `within` passes.
pub fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A blocking GET returning status and body, or None when the request failed.
pub fn get(url: &str) -> Option<(u16, Vec<u8>)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let res = client.get(url).send().ok()?;
    let status = res.status().as_u16();
    Some((status, res.bytes().ok()?.to_vec()))
}

/// Metrics scraped from a service's `GET /metrics`: each series (name with
/// labels) and its value.
pub type Scrape = std::collections::HashMap<String, f64>;

/// Scrapes `http://127.0.0.1:<port>/metrics` (Prometheus text format).
pub fn scrape(port: u16) -> Scrape {
    scrape_at(&format!("http://127.0.0.1:{port}"))
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

pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get(url).unwrap_or_else(|| panic!("GET {url} failed"));
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "GET {url} ({status}) is not JSON: {e}: {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// The workspace's root folder (the product crate), where `web/`, `pipelines/`
/// and `target/` are.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every program the lab runs: the product's and the lab's own.
pub const PROGRAMS: [&str; 11] = [
    "worker",
    "server1",
    "server2",
    "reporter",
    "discovery",
    "origin",
    "proxy",
    "status",
    "console",
    "faultproxy",
    "probe",
];

/// The path of a workspace program, built beside the running test or bench
/// (`target/<profile>/`). Cargo gives a package's tests only its own programs
/// (`CARGO_BIN_EXE_*`), and the product's belong to another package, so they
/// are found where cargo puts them: `cargo test --workspace` and the `just`
/// recipes build them all first.
pub fn bin(name: &str) -> String {
    assert!(PROGRAMS.contains(&name), "unknown program {name}");
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` (or `just test`, which builds every program)",
        path.display()
    );
    path.display().to_string()
}

/// Name of the lock file, in the target folder, that whole stacks take in turn.
pub const STACK_LOCK_FILE: &str = "nonstop-lab-stack.lock";

/// The target folder (`target/`) the running test or bench was built in:
/// its executable sits in `target/<profile>/deps/` (tests) or
/// `target/<profile>/` (programs).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let mut dir = exe.parent().expect("the executable is in a folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("deps is inside target/<profile>");
    }
    dir.parent()
        .expect("target/<profile> is inside target")
        .to_path_buf()
}

/// The path of the lock whole stacks take in turn.
pub fn stack_lock_path() -> PathBuf {
    target_dir().join(STACK_LOCK_FILE)
}

/// The right to run several real services at once, held for a whole stack's
/// life: an exclusive lock on one file in the target folder. Cargo runs one
/// binary's tests in parallel threads (and nextest runs binaries in
/// parallel); two seven-process stacks at once on a small machine make each
/// other stall, and the tests assert zero stalls. The lock is per open file,
/// so it serialises threads of one process as well as processes; the kernel
/// drops it when the holder dies, so a crashed test never leaves it taken.
#[derive(Debug)]
pub struct ExclusiveStack {
    /// The open, locked file; closing it (on drop) releases the lock.
    _file: std::fs::File,
}

impl ExclusiveStack {
    /// Waits until no other stack runs, in this process or another, and takes
    /// the turn.
    pub fn acquire() -> ExclusiveStack {
        let path = stack_lock_path();
        let file = open_lock_file(&path);
        file.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        ExclusiveStack { _file: file }
    }

    /// Takes the turn only when nobody holds it right now.
    pub fn try_acquire() -> Option<ExclusiveStack> {
        let file = open_lock_file(&stack_lock_path());
        file.try_lock()
            .ok()
            .map(|()| ExclusiveStack { _file: file })
    }
}

fn open_lock_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

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

/// The ports a stack's services listen on, each free when chosen.
#[derive(Debug, Clone, Copy)]
pub struct StackPorts {
    pub server_one: u16,
    pub server_two: u16,
    pub reporter: u16,
    pub origin: u16,
    pub proxy: u16,
}

impl StackPorts {
    pub fn free() -> Self {
        StackPorts {
            server_one: free_port(),
            server_two: free_port(),
            reporter: free_port(),
            origin: free_port(),
            proxy: free_port(),
        }
    }

    /// The settings every program of a stack shares, whatever host it runs
    /// on: these ports, the packagers' URLs, where the reporter and origin
    /// are reached (`services_host`), the listen address and the segment
    /// length. Each host adds its folders and metrics ports.
    pub fn shared_env(
        &self,
        packagers: &[String],
        services_host: &str,
        listen_host: &str,
        segment_seconds: u32,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("SERVER_ONE_PORT", self.server_one.to_string()),
            ("SERVER_TWO_PORT", self.server_two.to_string()),
            ("REPORTER_PORT", self.reporter.to_string()),
            ("ORIGIN_PORT", self.origin.to_string()),
            ("PROXY_PORT", self.proxy.to_string()),
            ("PACKAGERS", packagers.join(",")),
            (
                "REPORTER_URL",
                format!("http://{services_host}:{}", self.reporter),
            ),
            (
                "ORIGIN_URL",
                format!("http://{services_host}:{}", self.origin),
            ),
            ("LISTEN_HOST", listen_host.to_string()),
            ("SEGMENT_SECONDS", segment_seconds.to_string()),
            ("DISCOVERY_INTERVAL_SECONDS", "0.5".to_string()),
            ("REPORTER_TOKEN", REPORTER_TOKEN.to_string()),
        ]
    }
}

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

/// Every log file in `dir`, by name, each under its file name.
fn logs_in(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            format!(
                "--- {} ---\n{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::fs::read_to_string(path).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn wait_healthy(port: u16) {
    wait_healthy_at(&format!("http://127.0.0.1:{port}"));
}

/// Waits until `<base>/healthcheck` answers 200.
pub fn wait_healthy_at(base: &str) {
    wait_for(
        Duration::from_secs(20),
        &format!("healthcheck at {base}"),
        || {
            let (status, _) = get(&format!("{base}/healthcheck"))?;
            (status == 200).then_some(())
        },
    );
}

/// A throwaway `redis-server` on a free port of 127.0.0.1, saving nothing,
/// stopped on drop: the reporter's shared store in the tests that need one.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts it with `dir` as its working folder and waits until it listens.
    pub fn start(dir: &Path) -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh)");
        wait_for(Duration::from_secs(10), "redis-server", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        RedisServer { child, port }
    }

    /// `redis://127.0.0.1:<port>`, what `REPORTER_STORE` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first video PTS (90 kHz) in an MPEG-TS segment: the PES with
/// stream id 0xE0 that starts first.
pub fn first_video_pts(ts: &[u8]) -> Option<u64> {
    for packet in ts.chunks(188) {
        if packet.len() < 188 || packet[0] != 0x47 || packet[1] & 0x40 == 0 {
            continue;
        }
        let adaptation = (packet[3] >> 4) & 0x3;
        let mut offset = 4;
        if adaptation & 0x2 != 0 {
            offset += 1 + packet[4] as usize;
        }
        if adaptation & 0x1 == 0 || offset + 14 > 188 {
            continue;
        }
        let pes = &packet[offset..];
        if pes[0..3] != [0, 0, 1] || pes[3] != 0xE0 || pes[7] & 0x80 == 0 {
            continue;
        }
        let p = &pes[9..14];
        let pts = (((p[0] as u64 >> 1) & 0x07) << 30)
            | ((p[1] as u64) << 22)
            | (((p[2] as u64) >> 1) << 15)
            | ((p[3] as u64) << 7)
            | ((p[4] as u64) >> 1);
        return Some(pts);
    }
    None
}

/// Budget for a player to start playing and reach the media a test waits
/// for: a stack on a busy 2-core machine can take this long to settle.
pub const PLAYING_WITHIN: Duration = Duration::from_secs(30);

/// A player's announcement that it is playing, read from one line of its
/// stderr: the probe's [`Progress`], the browser player's [`BrowserProgress`].
pub trait PlayingLine: Copy + Send + 'static {
    /// The announcement in `line`, or `None` for any other line.
    fn parse(line: &str) -> Option<Self>;
    /// Media played by the time of the announcement.
    fn media_played(&self) -> Duration;
}

impl PlayingLine for Progress {
    fn parse(line: &str) -> Option<Self> {
        Progress::parse(line)
    }

    fn media_played(&self) -> Duration {
        self.media_played
    }
}

/// What `web/hlsjs-player.mjs` says once per poll while playing:
/// `[judge] playing 4.120 s of media` (currentTime advanced since the first
/// 'playing' event).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrowserProgress {
    pub media_played: Duration,
}

impl PlayingLine for BrowserProgress {
    fn parse(line: &str) -> Option<Self> {
        let seconds = line
            .strip_prefix("[judge] playing ")?
            .trim_end()
            .strip_suffix(" s of media")?;
        let seconds: f64 = seconds.parse().ok()?;
        Some(BrowserProgress {
            media_played: Duration::try_from_secs_f64(seconds).ok()?,
        })
    }

    fn media_played(&self) -> Duration {
        self.media_played
    }
}

/// What a player's stderr reader has seen so far.
struct Heard<P> {
    /// The player's log, line by line.
    log: String,
    /// Its latest playing announcement.
    progress: Option<P>,
    /// Its stderr closed: it exited.
    ended: bool,
}

/// A player program (the probe, a browser driver) running in the background,
/// its stderr read as it comes so a test can wait until the viewer is really
/// watching ([`PlayerProcess::wait_playing`]) before injecting a fault,
/// rather than sleeping for a time guessed to be long enough. Killed on drop
/// if still running.
pub struct PlayerProcess<P> {
    /// What it is, for messages.
    name: String,
    child: Option<Child>,
    heard: std::sync::Arc<(std::sync::Mutex<Heard<P>>, std::sync::Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl<P: PlayingLine> PlayerProcess<P> {
    /// Starts `cmd` with stdout and stderr piped.
    pub fn spawn(name: &str, cmd: &mut Command) -> PlayerProcess<P> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let heard = std::sync::Arc::new((
            std::sync::Mutex::new(Heard {
                log: String::new(),
                progress: None,
                ended: false,
            }),
            std::sync::Condvar::new(),
        ));
        let shared = heard.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let (lock, changed) = &*shared;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut heard = lock.lock().expect("player log lock");
                if let Some(progress) = P::parse(&line) {
                    heard.progress = Some(progress);
                }
                heard.log.push_str(&line);
                heard.log.push('\n');
                changed.notify_all();
            }
            lock.lock().expect("player log lock").ended = true;
            changed.notify_all();
        });
        PlayerProcess {
            name: name.to_string(),
            child: Some(child),
            heard,
            reader: Some(reader),
        }
    }

    /// Waits until the player says it has played at least `min_media_played`
    /// of media (zero: playback started), and returns that announcement.
    /// Panics with the player's log when it does not within `within`, or exits.
    pub fn wait_playing(&self, min_media_played: Duration, within: Duration) -> P {
        let deadline = Instant::now() + within;
        let (lock, changed) = &*self.heard;
        let mut heard = lock.lock().expect("player log lock");
        loop {
            if let Some(progress) = heard.progress {
                if progress.media_played() >= min_media_played {
                    return progress;
                }
            }
            let now = Instant::now();
            assert!(
                !heard.ended && now < deadline,
                "{} did not play {:.1} s of media within {:.0} s ({}):\n{}",
                self.name,
                min_media_played.as_secs_f64(),
                within.as_secs_f64(),
                if heard.ended {
                    "it exited"
                } else {
                    "timed out"
                },
                heard.log
            );
            heard = changed
                .wait_timeout(heard, deadline - now)
                .expect("player log lock")
                .0;
        }
    }

    /// Waits for the player to end; returns its exit status, stdout and log.
    pub fn finish(mut self) -> (std::process::ExitStatus, Vec<u8>, String) {
        let child = self.child.take().expect("the player is running");
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{} did not end: {e}", self.name));
        if let Some(reader) = self.reader.take() {
            reader.join().expect("player log reader");
        }
        let log = std::mem::take(&mut self.heard.0.lock().expect("player log lock").log);
        (out.status, out.stdout, log)
    }
}

impl<P> Drop for PlayerProcess<P> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The player probe running against a URL in the background; `wait_playing`
/// waits until it plays, `finish` for its JSON report.
pub struct Probe {
    process: PlayerProcess<Progress>,
}

impl Probe {
    pub fn start(url: &str, seconds: u32) -> Probe {
        Probe::start_from(url, seconds, None)
    }

    /// Like [`Probe::start`], connecting from `local` (e.g. 127.0.0.2), so
    /// several probes reach the server as viewers on distinct hosts.
    pub fn start_from(url: &str, seconds: u32, local: Option<std::net::IpAddr>) -> Probe {
        let mut cmd = Command::new(bin("probe"));
        if let Some(local) = local {
            cmd.args(["--local-address", &local.to_string()]);
        }
        cmd.args([
            "--url",
            url,
            "--duration",
            &seconds.to_string(),
            "--start-segments",
            "3",
            "--demux",
        ])
        .env_remove("RUST_LOG");
        Probe {
            process: PlayerProcess::spawn("the probe", &mut cmd),
        }
    }

    /// See [`PlayerProcess::wait_playing`].
    pub fn wait_playing(&self, min_media_played: Duration, within: Duration) -> Progress {
        self.process.wait_playing(min_media_played, within)
    }

    /// Waits for the probe to end and returns its report and log.
    pub fn finish(self) -> (crate::probe::ProbeReport, String) {
        let (_, stdout, log) = self.process.finish();
        let report = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            panic!(
                "probe printed no report ({e}): {}\n{log}",
                String::from_utf8_lossy(&stdout)
            )
        });
        (report, log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether another process can take the stack lock right now, asked with
    /// util-linux `flock`, which uses the same kind of lock as `File::lock`.
    fn another_process_can_lock() -> bool {
        Command::new("flock")
            .arg("--nonblock")
            .arg(stack_lock_path())
            .arg("true")
            .status()
            .expect("flock (util-linux) runs")
            .success()
    }

    /// A stand-in player: a shell that prints `lines` on stderr, 100 ms apart.
    fn fake_player(lines: &[&str]) -> PlayerProcess<BrowserProgress> {
        let script: String = lines
            .iter()
            .map(|l| format!("echo '{l}' >&2; sleep 0.1; "))
            .chain(std::iter::once("echo verdict".to_string()))
            .collect();
        PlayerProcess::spawn("a fake player", Command::new("sh").args(["-c", &script]))
    }

    #[test]
    fn waiting_for_playback_returns_once_enough_media_played() {
        let player = fake_player(&[
            "[judge] starting",
            "[judge] playing 0.000 s of media",
            "[judge] playing 1.250 s of media",
            "[judge] playing 2.500 s of media",
        ]);
        let progress = player.wait_playing(Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(progress.media_played, Duration::from_millis(1250));
        let (status, stdout, log) = player.finish();
        assert!(status.success());
        assert_eq!(String::from_utf8_lossy(&stdout), "verdict\n");
        assert!(
            log.contains("[judge] starting") && log.contains("2.500 s of media"),
            "{log}"
        );
    }

    #[test]
    #[should_panic(expected = "did not play 5.0 s of media")]
    fn a_player_that_ends_before_playing_enough_fails_the_wait() {
        let player = fake_player(&["[judge] playing 1.000 s of media"]);
        player.wait_playing(Duration::from_secs(5), Duration::from_secs(10));
    }

    #[test]
    fn a_second_stack_waits_until_the_first_is_gone() {
        let held = ExclusiveStack::acquire();
        assert!(
            ExclusiveStack::try_acquire().is_none(),
            "another thread of this process got the lock"
        );
        assert!(!another_process_can_lock(), "another process got the lock");

        let (sender, waited) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let guard = ExclusiveStack::acquire();
            let _ = sender.send(());
            guard
        });
        assert!(
            waited.recv_timeout(Duration::from_millis(300)).is_err(),
            "a second acquire returned while the first guard is held"
        );
        drop(held);
        waited
            .recv_timeout(Duration::from_secs(5))
            .expect("the waiting acquire returns once the first guard is dropped");
        let second = waiter.join().expect("waiter thread");
        assert!(!another_process_can_lock());
        drop(second);
        assert!(another_process_can_lock(), "the lock outlived its guards");
    }
}
