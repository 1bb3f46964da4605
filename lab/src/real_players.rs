//! Real players no one here wrote, driven from the outside: VLC (Debian's
//! `vlc-bin`, headless, asked through its command-line remote interface) and
//! WebKit, Safari's engine (WebKitGTK's MiniBrowser under Xvfb, driven over
//! W3C WebDriver by `WebKitWebDriver`). The system tests in `tests/system/vlc.rs`
//! and `tests/system/webkit.rs` play the proxy with them through a packager kill.
//!
//! Every process started here is killed on drop; each player's own log is
//! kept for failure messages.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ports::free_port;
use crate::wait::try_wait_for;
use crate::workspace::{browser_driver, hls_js};

/// VLC's headless front end.
const CVLC: &str = "/usr/bin/cvlc";
/// VLC's HLS reader (`vlc-plugin-base`): without it VLC cannot play HLS.
const VLC_ADAPTIVE_PLUGIN: &str = "vlc/plugins/demux/libadaptive_plugin.so";
/// The WebDriver server of WebKitGTK (`webkit2gtk-driver`).
const WEBKIT_WEBDRIVER: &str = "/usr/bin/WebKitWebDriver";
/// Debian's Chromium, which the browser drivers of `lab/web/` drive (never a
/// downloaded browser).
const CHROMIUM: &str = "/usr/bin/chromium";
/// The X server without a screen (`xvfb`) the MiniBrowser draws into.
const XVFB: &str = "/usr/bin/Xvfb";

/// Budget for VLC's remote interface to listen after start.
const VLC_CONTROL_WITHIN: Duration = Duration::from_secs(15);
/// Budget for one question to VLC's remote interface.
const VLC_ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// Budget for Xvfb to open its display and WebKitWebDriver its port.
const WEBKIT_READY_WITHIN: Duration = Duration::from_secs(15);
/// Budget for one WebDriver call (a new session starts a browser).
const WEBDRIVER_CALL_WITHIN: Duration = Duration::from_secs(30);
/// First X display number tried for Xvfb, far from a desktop's :0.
const FIRST_DISPLAY: u32 = 90;

/// A child process killed (and reaped) on drop.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the effective
/// user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The multiarch library folder holding `relative` (`/usr/lib/<triplet>/...`),
/// so the lab finds Debian's files on any architecture.
fn multiarch_file(relative: &str) -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|e| e.path().join(relative))
        .find(|p| p.exists())
}

/// What VLC's `stats` command reports about a playing input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VlcStats {
    /// Pictures shown: the count a viewer's eye would follow.
    pub frames_displayed: u64,
    /// Pictures dropped because they came too late.
    pub frames_lost: u64,
    /// Audio buffers played.
    pub buffers_played: u64,
    /// Audio buffers dropped.
    pub buffers_lost: u64,
    /// Broken packets the demuxer met.
    pub demux_corrupted: u64,
    /// MPEG-TS continuity breaks the demuxer met.
    pub discontinuities: u64,
}

impl VlcStats {
    /// Reads the `| name : value` lines of VLC's `stats` answer; None when
    /// there is no input (VLC then answers nothing).
    pub fn parse(answer: &str) -> Option<VlcStats> {
        let mut stats = VlcStats::default();
        let mut seen = false;
        for line in answer.lines() {
            let Some((name, value)) = line.trim_start_matches('|').split_once(':') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            let field = match name.trim() {
                "frames displayed" => &mut stats.frames_displayed,
                "frames lost" => &mut stats.frames_lost,
                "buffers played" => &mut stats.buffers_played,
                "buffers lost" => &mut stats.buffers_lost,
                "demux corrupted" => &mut stats.demux_corrupted,
                "discontinuities" => &mut stats.discontinuities,
                _ => continue,
            };
            *field = value;
            seen = true;
        }
        seen.then_some(stats)
    }
}

/// One look at VLC through its remote interface.
#[derive(Debug, Clone, Copy)]
pub struct VlcSample {
    /// When it was taken.
    pub at: Instant,
    /// `get_time`: the position in seconds (VLC answers whole seconds).
    pub time: Option<u64>,
    /// `is_playing`.
    pub playing: bool,
    /// `stats`.
    pub stats: Option<VlcStats>,
}

/// Headless VLC playing one URL, its log written to a file, its remote
/// interface (`--extraintf cli`) listening on a free local port. VLC
/// refuses to run as root, so as root it runs as `nobody` (setpriv, which
/// execs VLC itself: killing the child kills VLC) with its own HOME.
pub struct Vlc {
    /// Where VLC writes its config and its log; owned by the user VLC runs as.
    home: tempfile::TempDir,
    /// Port of the remote interface.
    control_port: u16,
    _process: Owned,
}

impl Vlc {
    /// Starts VLC on `url` with dummy picture and sound outputs (so frames
    /// are decoded and counted but shown nowhere) and the most verbose log.
    pub fn start(url: &str) -> Vlc {
        let home = tempfile::tempdir().expect("VLC's home folder");
        let as_root = running_as_root();
        if as_root {
            let status = Command::new("chown")
                .arg("nobody:")
                .arg(home.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "cannot give VLC's home to nobody");
        }
        let control_port = free_port();
        let log = home.path().join("vlc.log");
        let mut cmd = if as_root {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                CVLC,
            ]);
            cmd
        } else {
            Command::new(CVLC)
        };
        cmd.args(["--vout", "dummy", "--aout", "dummy"])
            .args(["--extraintf", "cli"])
            .arg(format!("--rc-host=127.0.0.1:{control_port}"))
            .args(["--no-video-title-show", "--no-metadata-network-access"])
            .args(["--verbose", "2", "--file-logging", "--log-verbose", "2"])
            .arg("--logfile")
            .arg(&log)
            .arg(url)
            .env("HOME", home.path())
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start VLC ({CVLC}): {e}"));
        let vlc = Vlc {
            home,
            control_port,
            _process: Owned(child),
        };
        let listening = try_wait_for(VLC_CONTROL_WITHIN, || {
            TcpStream::connect(("127.0.0.1", control_port)).ok()
        });
        assert!(
            listening.is_some(),
            "VLC's remote interface never listened on {control_port}:\n{}",
            vlc.log_text()
        );
        vlc
    }

    /// VLC's own log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.home.path().join("vlc.log")).unwrap_or_default()
    }

    /// Asks the remote interface `command` and returns its answer (without
    /// the prompt); None when VLC does not answer in time.
    pub(crate) fn ask(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.control_port)).ok()?;
        stream.set_read_timeout(Some(VLC_ANSWER_WITHIN)).ok()?;
        read_to_prompt(&mut stream)?;
        stream.write_all(format!("{command}\n").as_bytes()).ok()?;
        let answer = read_to_prompt(&mut stream)?;
        let _ = stream.write_all(b"logout\n");
        Some(answer)
    }

    /// One look: position, playing or not, decoding counters.
    pub fn sample(&self) -> VlcSample {
        let at = Instant::now();
        VlcSample {
            at,
            time: self
                .ask("get_time")
                .and_then(|a| a.trim().parse::<u64>().ok()),
            playing: self.ask("is_playing").is_some_and(|a| a.trim() == "1"),
            stats: self.ask("stats").as_deref().and_then(VlcStats::parse),
        }
    }
}

/// Reads from VLC's remote interface up to its `> ` prompt.
fn read_to_prompt(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"> ") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got.truncate(got.len() - 2);
    Some(String::from_utf8_lossy(&got).replace('\r', ""))
}

/// Lines of a VLC log that tell of trouble in getting or reading the stream:
/// any error (HTTP, HLS, demuxer, clock) and every failed download. The
/// three errors VLC logs at every headless start (no D-Bus session, no
/// global hotkeys) are not about playback and are left out. Pictures VLC
/// drops as too late on a busy machine are warnings, not listed here: they
/// show in `stats` as frames lost, and a viewer's judge counts pictures.
fn vlc_trouble(log: &str) -> Vec<&str> {
    const STARTUP_NOISE: [&str; 3] = [
        "dbus error:",
        "main error: no suitable interface module",
        "main error: interface \"",
    ];
    log.lines()
        .filter(|l| l.contains(" error:") || l.contains("warning: Failed"))
        .filter(|l| !STARTUP_NOISE.iter().any(|n| l.starts_with(n)))
        .collect()
}

/// Times VLC finished filling its buffer: once at the start, and once more
/// after every time it ran dry and stopped to rebuffer.
fn vlc_buffering_rounds(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("Stream buffering done"))
        .count()
}

/// WebKitGTK's MiniBrowser, Safari's engine, running under its own Xvfb and
/// driven by WebKitWebDriver over plain W3C WebDriver calls. WebKitGTK plays
/// HLS natively only when `WEBKIT_GST_ENABLE_HLS_SUPPORT=1` is in its
/// environment (otherwise `canPlayType` answers ""), so it is set here.
pub struct WebKit {
    client: reqwest::blocking::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    /// WebKitWebDriver's output (the browser's own messages go there too).
    log: PathBuf,
    _logs: tempfile::TempDir,
    // Dropped after the session is closed, driver before X server.
    _driver: Owned,
    _xvfb: Owned,
}

impl WebKit {
    /// Starts Xvfb, WebKitWebDriver and a MiniBrowser session.
    pub fn start() -> WebKit {
        let browser = minibrowser().unwrap_or_else(|| {
            panic!("WebKitGTK's MiniBrowser is missing: run scripts/setup.sh (installs webkit2gtk-driver)")
        });
        let logs = tempfile::tempdir().expect("WebKit's log folder");
        let log = logs.path().join("webkit.log");
        let (display, xvfb) = start_xvfb(logs.path());
        let port = free_port();
        let out = std::fs::File::create(&log).expect("WebKit's log file");
        let err = out.try_clone().expect("WebKit's log file");
        let driver = Command::new(WEBKIT_WEBDRIVER)
            .arg(format!("--port={port}"))
            .env("DISPLAY", format!(":{display}"))
            .env("WEBKIT_GST_ENABLE_HLS_SUPPORT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {WEBKIT_WEBDRIVER}: {e}"));
        let driver = Owned(driver);
        let client = reqwest::blocking::Client::builder()
            .timeout(WEBDRIVER_CALL_WITHIN)
            .build()
            .expect("HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let ready = try_wait_for(WEBKIT_READY_WITHIN, || {
            let res = client.get(format!("{base}/status")).send().ok()?;
            res.status().is_success().then_some(())
        });
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            ready.is_some(),
            "WebKitWebDriver never answered on {port}:\n{}",
            read_log()
        );
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "webkitgtk:browserOptions": {
                    "binary": browser.display().to_string(),
                    "args": ["--automation"],
                }
            }}
        });
        let answer = call(&client, "POST", &format!("{base}/session"), &capabilities)
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", read_log()));
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}\n{}", read_log()))
            .to_string();
        WebKit {
            client,
            session: format!("{base}/session/{id}"),
            log,
            _logs: logs,
            _driver: driver,
            _xvfb: xvfb,
        }
    }

    /// Opens `url` in the browser's window.
    fn navigate(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", &json!({ "url": url }))
            .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page
    /// and returns what it returns: the latency bench asks the video
    /// element started by [`WebKit::play`] (`#v`) for its `getStartDate()`.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": args }),
        )
    }

    /// The browser's and driver's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        call(
            &self.client,
            method,
            &format!("{}{path}", self.session),
            body,
        )
    }
}

impl Drop for WebKit {
    fn drop(&mut self) {
        // Closing the session closes the MiniBrowser and its helpers; the
        // driver and X server are then killed by their `Owned`.
        let _ = self.client.delete(&self.session).send();
    }
}

/// One WebDriver call: the JSON `value` of a success, the driver's error
/// otherwise.
fn call(
    client: &reqwest::blocking::Client,
    method: &str,
    url: &str,
    body: &Value,
) -> Result<Value, String> {
    let request = match method {
        "POST" => client.post(url).json(body),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    let res = request.send().map_err(|e| format!("{method} {url}: {e}"))?;
    let status = res.status();
    let answer: Value = res
        .json()
        .map_err(|e| format!("{method} {url} ({status}): not JSON: {e}"))?;
    if status.is_success() {
        Ok(answer["value"].clone())
    } else {
        Err(format!("{method} {url} ({status}): {answer}"))
    }
}

/// A blank HTML page on a free local port, for a browser to start from: a
/// page needs an http origin for Media Source Extensions (WebKitGTK refuses
/// a MediaSource's blob URL on `about:blank`, so hls.js cannot play there).
/// Answers every request with the same page until dropped.
pub struct BlankPage {
    /// `http://127.0.0.1:<port>/`.
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the blank page's server looks for a connection or its stop.
const BLANK_PAGE_POLL: Duration = Duration::from_millis(20);
/// Budget for reading one request to the blank page.
const BLANK_PAGE_READ_WITHIN: Duration = Duration::from_secs(2);

impl BlankPage {
    pub fn start() -> BlankPage {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port for the blank page");
        let port = listener.local_addr().expect("the blank page's port").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => answer_blank_page(stream),
                    Err(_) => std::thread::sleep(BLANK_PAGE_POLL),
                }
            }
        });
        BlankPage {
            url: format!("http://127.0.0.1:{port}/"),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BlankPage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request's head (whatever it asks) and answers the blank page.
fn answer_blank_page(mut stream: TcpStream) {
    const PAGE: &str =
        "<!doctype html><html><head><title>nonstop lab</title></head><body></body></html>";
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(BLANK_PAGE_READ_WITHIN));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
        PAGE.len()
    );
}

/// WebKitGTK's MiniBrowser, which WebKitWebDriver starts with `--automation`.
fn minibrowser() -> Option<PathBuf> {
    multiarch_file("webkit2gtk-4.1/MiniBrowser")
}

/// Starts Xvfb on the first free display from [`FIRST_DISPLAY`] and waits
/// for its socket.
fn start_xvfb(logs: &Path) -> (u32, Owned) {
    let display = (FIRST_DISPLAY..FIRST_DISPLAY + 100)
        .find(|n| {
            !Path::new(&format!("/tmp/.X{n}-lock")).exists()
                && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        })
        .expect("a free X display number");
    let out = std::fs::File::create(logs.join("xvfb.log")).expect("Xvfb's log file");
    let child = Command::new(XVFB)
        .arg(format!(":{display}"))
        .args(["-screen", "0", "1280x720x24", "-nolisten", "tcp"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {XVFB}: {e} (run scripts/setup.sh, which installs xvfb)")
        });
    let xvfb = Owned(child);
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
    let up = try_wait_for(WEBKIT_READY_WITHIN, || socket.exists().then_some(()));
    assert!(
        up.is_some(),
        "Xvfb did not open display :{display}:\n{}",
        std::fs::read_to_string(logs.join("xvfb.log")).unwrap_or_default()
    );
    (display, xvfb)
}

/// How often a driven player is asked how it is doing.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest time the picture (VLC's pictures shown, a video element's
/// `currentTime`) may stand still and still count as smooth: more is a
/// freeze a viewer sees.
pub const MAX_FREEZE: Duration = Duration::from_millis(2500);
/// How far the position may fall behind the wall clock over a watch
/// (sampling and start-up jitter, and VLC's whole seconds), in seconds.
const MAX_LAG_SECONDS: f64 = 2.0;
/// The stream's frame rate (the lab's inputs are 25 fps).
pub const FPS: f64 = 25.0;
/// Share of the watch's pictures VLC must show: a viewer would notice less
/// (VLC drops late pictures rather than stalling).
const MIN_SHOWN_SHARE: f64 = 0.85;
/// Media a driven player plays before it counts as watching: the tests and
/// the failover bench inject their fault only after this.
pub const PLAYED_BEFORE_FAULT: f64 = 4.0;

/// What is missing for VLC to play HLS here, if anything.
pub fn vlc_missing() -> Option<&'static str> {
    if !Path::new(CVLC).exists() {
        return Some(
            "VLC is missing: run scripts/setup.sh (installs Debian's vlc-bin and vlc-plugin-base)",
        );
    }
    if multiarch_file(VLC_ADAPTIVE_PLUGIN).is_none() {
        return Some(
            "VLC's HLS reader is missing: run scripts/setup.sh (installs vlc-plugin-base)",
        );
    }
    None
}

/// What the browser drivers of `lab/web/` need and is not installed:
/// Debian's Chromium, node, the console's hls.js (`web/node_modules`) and
/// playwright-core (`lab/web/node_modules`); empty when everything is there.
pub fn chromium_drivers_missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!("Chromium ({CHROMIUM})"));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        missing.push("node".to_string());
    }
    let hls = hls_js();
    if !hls.is_file() {
        missing.push(format!("hls.js ({}; npm ci --prefix web)", hls.display()));
    }
    let playwright = browser_driver("node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        missing.push(format!(
            "playwright-core ({}; npm ci --prefix lab/web)",
            playwright.display()
        ));
    }
    missing
}

/// What is missing for WebKit to run here, if anything.
pub fn webkit_missing() -> Option<&'static str> {
    if !Path::new(WEBKIT_WEBDRIVER).exists() || minibrowser().is_none() {
        return Some(
            "WebKitGTK is missing: run scripts/setup.sh (installs Debian's webkit2gtk-driver)",
        );
    }
    if !Path::new(XVFB).exists() {
        return Some("Xvfb is missing: run scripts/setup.sh (installs Debian's xvfb)");
    }
    None
}

/// The stretches in which a value that should grow did not: for each
/// `(when, value)` in order, a stretch starts at a value and lasts while the
/// next ones are not above it. Each stretch as (start, length); stretches of
/// zero length are left out.
fn frozen_stretches(points: impl IntoIterator<Item = (Instant, f64)>) -> Vec<(Instant, Duration)> {
    let mut stretches: Vec<(Instant, Duration)> = Vec::new();
    let mut since: Option<(Instant, f64)> = None;
    for (at, value) in points {
        match since {
            Some((start, before)) if value <= before => {
                let length = at - start;
                match stretches.last_mut() {
                    Some(last) if last.0 == start => last.1 = length,
                    _ => stretches.push((start, length)),
                }
            }
            _ => since = Some((at, value)),
        }
    }
    stretches
}

/// The longest of [`frozen_stretches`].
fn longest_stretch(stretches: &[(Instant, Duration)]) -> Duration {
    stretches
        .iter()
        .map(|(_, length)| *length)
        .max()
        .unwrap_or(Duration::ZERO)
}

/// How a viewer would judge a watch: freezes they would see, failed
/// downloads or errors the player logged, and every other check that failed
/// (each one line); `summary` gives the figures.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    /// Freezes longer than [`MAX_FREEZE`], as (start, length).
    pub freezes: Vec<(Instant, Duration)>,
    /// The longest stretch without progress, a freeze or not.
    pub longest_freeze: Duration,
    /// Failed downloads and errors in the player's own words.
    pub trouble: Vec<String>,
    /// Every other failed check.
    pub failed_checks: Vec<String>,
    pub summary: String,
}

impl Judgement {
    /// The judgement of a watch whose progress stood still over `stretches`
    /// (from [`frozen_stretches`]): the longer than [`MAX_FREEZE`] are its
    /// freezes. The caller writes the summary, with the longest stretch.
    fn of_watch(
        stretches: Vec<(Instant, Duration)>,
        trouble: Vec<String>,
        failed_checks: Vec<String>,
    ) -> Self {
        Judgement {
            longest_freeze: longest_stretch(&stretches),
            freezes: stretches
                .into_iter()
                .filter(|(_, l)| *l > MAX_FREEZE)
                .collect(),
            trouble,
            failed_checks,
            summary: String::new(),
        }
    }

    /// A watch the player could not be observed in at all.
    fn unobserved(why: &str) -> Self {
        Judgement {
            failed_checks: vec![why.to_string()],
            ..Judgement::default()
        }
    }

    /// Every failure, one per line, for a test's message.
    pub fn failures(&self) -> Vec<String> {
        self.freezes
            .iter()
            .map(|(_, length)| format!("the picture froze for {length:.1?}"))
            .chain(self.trouble.iter().map(|t| format!("trouble: {t}")))
            .chain(self.failed_checks.iter().cloned())
            .collect()
    }
}

/// Judges VLC from `samples` (the first taken once it played
/// [`PLAYED_BEFORE_FAULT`], the fault after it) and its whole `log`: it
/// plays at the end, its position kept up with the wall clock, it showed
/// [`MIN_SHOWN_SHARE`] of the pictures, no freeze longer than [`MAX_FREEZE`],
/// buffered once only (at the start), logged no trouble, met no corrupt
/// packet or discontinuity.
pub fn judge_vlc(samples: &[VlcSample], log: &str) -> Judgement {
    let (Some(before), Some(after)) = (samples.first(), samples.last()) else {
        return Judgement::unobserved("VLC was never sampled");
    };
    let stats_before = before.stats.unwrap_or_default();
    let stats_after = after.stats.unwrap_or_default();
    let watched = after.at - before.at;
    let advanced = after
        .time
        .unwrap_or(0)
        .saturating_sub(before.time.unwrap_or(0));
    let shown = stats_after
        .frames_displayed
        .saturating_sub(stats_before.frames_displayed);
    let stretches = frozen_stretches(
        samples
            .iter()
            .filter_map(|s| s.stats.map(|st| (s.at, st.frames_displayed as f64))),
    );
    let rounds = vlc_buffering_rounds(log);
    let trouble: Vec<String> = vlc_trouble(log).into_iter().map(str::to_string).collect();
    let mut failed_checks = Vec::new();
    if !after.playing {
        failed_checks.push("VLC stopped playing".to_string());
    }
    if (advanced as f64) < watched.as_secs_f64() - MAX_LAG_SECONDS {
        failed_checks.push(format!(
            "VLC's position advanced {advanced} s in {watched:.1?}"
        ));
    }
    if (shown as f64) < watched.as_secs_f64() * FPS * MIN_SHOWN_SHARE {
        failed_checks.push(format!("VLC showed {shown} pictures in {watched:.1?}"));
    }
    if rounds != 1 {
        failed_checks.push(format!(
            "VLC buffered {rounds} times (ran dry and rebuffered)"
        ));
    }
    if stats_after.demux_corrupted != 0 {
        failed_checks.push(format!("{} corrupt packets", stats_after.demux_corrupted));
    }
    if stats_after.discontinuities != 0 {
        failed_checks.push(format!("{} discontinuities", stats_after.discontinuities));
    }
    let mut judgement = Judgement::of_watch(stretches, trouble, failed_checks);
    judgement.summary = format!(
        "VLC: time {:?} s -> {:?} s over {watched:.1?}; pictures shown {shown}; longest freeze {:.1?}; \
         playing at the end {}; stats before {stats_before:?}, after {stats_after:?}; buffering rounds {rounds}; trouble {:?}",
        before.time, after.time, judgement.longest_freeze, after.playing, judgement.trouble,
    );
    judgement
}

/// Builds a muted, autoplaying video element in the page and starts playback
/// of `arguments[0]`; `arguments[1]` says whether hls.js (already in the
/// page) plays it. The element's events go to `window.judge.events`. Returns
/// `canPlayType('application/vnd.apple.mpegurl')`.
const WEBKIT_START_PLAYER: &str = r#"
const [url, useHlsJs] = arguments;
document.body.innerHTML = '';
const v = document.createElement('video');
v.id = 'v'; v.muted = true; v.autoplay = true; v.playsInline = true;
window.judge = { events: [] };
const note = (event, detail) => window.judge.events.push({ event, time: v.currentTime, detail });
for (const e of ['playing', 'waiting', 'stalled', 'error', 'ended', 'pause']) {
  v.addEventListener(e, () => note(e, null));
}
document.body.appendChild(v);
if (useHlsJs) {
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (_, d) => note(d.fatal ? 'hls-fatal' : 'hls-error', d.details));
  hls.loadSource(url);
  hls.attachMedia(v);
} else {
  v.src = url;
}
v.play().catch((e) => note('play-refused', String(e)));
return v.canPlayType('application/vnd.apple.mpegurl');
"#;

/// What the video element says right now.
const WEBKIT_LOOK: &str = r#"
const v = document.getElementById('v');
return { time: v.currentTime, paused: v.paused, readyState: v.readyState,
         error: v.error ? v.error.code : null, events: window.judge.events };
"#;

/// Puts hls.js (`arguments[0]`, its source) into the page.
const WEBKIT_ADD_HLS_JS: &str = r#"
const s = document.createElement('script');
s.textContent = arguments[0];
document.head.appendChild(s);
return typeof Hls === 'function' && Hls.isSupported();
"#;

/// hls.js's build the pages load (`web/node_modules`, `npm ci --prefix web`).
pub fn hlsjs_source() -> Result<String, String> {
    let path = hls_js();
    std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{} is missing ({e}): run scripts/setup.sh (npm ci --prefix web)",
            path.display()
        )
    })
}

/// One look at the page's video element.
#[derive(Debug, Clone)]
pub struct VideoLook {
    pub at: Instant,
    pub time: f64,
    pub paused: bool,
    pub ready_state: u64,
    pub error: Option<u64>,
    /// Every event so far: `{event, time, detail}`.
    pub events: Vec<Value>,
}

impl WebKit {
    /// Opens `page` (an http origin, [`BlankPage`]), adds hls.js when
    /// `hls_js` holds its source, and starts playing `url` in a video
    /// element; fails when native HLS is asked and WebKit cannot play it.
    pub fn play(&self, page: &str, url: &str, hls_js: Option<&str>) -> Result<(), String> {
        self.navigate(page)
            .map_err(|e| format!("cannot open a page: {e}"))?;
        if let Some(source) = hls_js {
            let ready = self
                .execute(WEBKIT_ADD_HLS_JS, &[json!(source)])
                .map_err(|e| format!("cannot add hls.js: {e}"))?;
            if ready != json!(true) {
                return Err(format!("hls.js is not supported here: {ready}"));
            }
        }
        let can_play = self
            .execute(WEBKIT_START_PLAYER, &[json!(url), json!(hls_js.is_some())])
            .map_err(|e| format!("cannot start the player: {e}"))?;
        if hls_js.is_none() && can_play.as_str().unwrap_or("").is_empty() {
            return Err("canPlayType('application/vnd.apple.mpegurl') is empty: WebKitGTK needs WEBKIT_GST_ENABLE_HLS_SUPPORT=1 and GStreamer's HLS plugins (gstreamer1.0-plugins-bad)".into());
        }
        Ok(())
    }

    /// Asks the video element started by [`WebKit::play`] how it is doing.
    pub fn look(&self) -> Result<VideoLook, String> {
        let v = self.execute(WEBKIT_LOOK, &[])?;
        Ok(VideoLook {
            at: Instant::now(),
            time: v["time"].as_f64().unwrap_or(0.0),
            paused: v["paused"].as_bool().unwrap_or(true),
            ready_state: v["readyState"].as_u64().unwrap_or(0),
            error: v["error"].as_u64(),
            events: v["events"].as_array().cloned().unwrap_or_default(),
        })
    }
}

impl VideoLook {
    /// Playing with at least [`PLAYED_BEFORE_FAULT`] of media: watching.
    pub fn watching(&self) -> bool {
        !self.paused && self.time >= PLAYED_BEFORE_FAULT
    }

    /// One line for a message.
    pub fn describe(&self) -> String {
        format!(
            "time {} paused {} readyState {} error {:?} events {:?}",
            self.time, self.paused, self.ready_state, self.error, self.events
        )
    }
}

/// Judges a video element from `looks` (the first taken once it was
/// [`VideoLook::watching`], the fault after it): no error and never paused,
/// `currentTime` kept up with the wall clock, no freeze longer than
/// [`MAX_FREEZE`], and no event after the first look a viewer would notice.
/// 'stalled' only says a download made no progress for 3 s, which a viewer
/// does not see while the buffer lasts (freezes are judged apart), and
/// 'playing' says frames are moving (WebKit may fire the first one late);
/// every other event ('waiting', 'error', 'ended', 'pause', an hls.js error)
/// is one a viewer would notice. hls.js's errors and the element's 'error'
/// are its trouble.
pub fn judge_video(looks: &[VideoLook]) -> Judgement {
    let (Some(first), Some(last)) = (looks.first(), looks.last()) else {
        return Judgement::unobserved("the video element was never looked at");
    };
    let watched = last.at - first.at;
    let advanced = last.time - first.time;
    let stretches = frozen_stretches(looks.iter().map(|l| (l.at, l.time)));
    let events_before = first.events.len().min(last.events.len());
    let later = &last.events[events_before..];
    let is_trouble = |e: &&Value| {
        e["event"] == "error" || e["event"] == "hls-error" || e["event"] == "hls-fatal"
    };
    let trouble: Vec<String> = later
        .iter()
        .filter(is_trouble)
        .map(Value::to_string)
        .collect();
    let noticed: Vec<String> = later
        .iter()
        .filter(|e| e["event"] != "stalled" && e["event"] != "playing" && !is_trouble(e))
        .map(Value::to_string)
        .collect();
    let mut failed_checks = Vec::new();
    if last.error.is_some() || looks.iter().any(|l| l.error.is_some()) {
        failed_checks.push(format!("the video element failed (error {:?})", last.error));
    }
    if looks.iter().any(|l| l.paused) {
        failed_checks.push("the video paused during the watch".to_string());
    }
    if advanced < watched.as_secs_f64() - MAX_LAG_SECONDS {
        failed_checks.push(format!(
            "currentTime advanced {advanced:.2} s in {watched:.1?}"
        ));
    }
    if !noticed.is_empty() {
        failed_checks.push(format!(
            "the player waited or ended: {}",
            noticed.join(", ")
        ));
    }
    let mut judgement = Judgement::of_watch(stretches, trouble, failed_checks);
    judgement.summary = format!(
        "currentTime {:.2} s -> {:.2} s (advanced {advanced:.2} s in {watched:.1?}); longest freeze {:.1?}; \
         paused {}, readyState {}, error {:?}; events before {:?}, after {later:?}",
        first.time,
        last.time,
        judgement.longest_freeze,
        last.paused,
        last.ready_state,
        last.error,
        &last.events[..events_before],
    );
    judgement
}

/// A record a person can read or plot: one line per look at a player,
/// seconds since it started against its position, as CSV; events (a fault
/// injected) are lines with an empty position.
#[derive(Debug, Default, Clone)]
pub struct PositionRecord {
    /// (wall seconds, position seconds, note).
    entries: Vec<(f64, Option<f64>, String)>,
}

impl PositionRecord {
    /// The columns: wall time since the player started, its position (its
    /// `currentTime`, or what it reports as played), and anything else it
    /// said at that moment.
    const HEADER: &'static str = "wall_s,position_s,note";

    pub fn push(&mut self, wall: Duration, position: f64, note: &str) {
        self.entries
            .push((wall.as_secs_f64(), Some(position), note.to_string()));
    }

    /// An event at `wall` (a fault injected or cleared).
    pub fn mark(&mut self, wall: Duration, note: &str) {
        self.entries
            .push((wall.as_secs_f64(), None, note.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the CSV to `path`, lines in time order, making its folder.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut entries = self.entries.clone();
        entries.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut text = String::from(Self::HEADER);
        text.push('\n');
        for (wall, position, note) in entries {
            let position = position.map_or(String::new(), |p| format!("{p:.3}"));
            let note = note.replace([',', '\n', '\r'], " ");
            text.push_str(&format!("{wall:.3},{position},{note}\n"));
        }
        std::fs::write(path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VLC 3.0.24's answer to `stats` while playing our stream.
    const STATS: &str = "+----[ begin of statistical info\n+-[Incoming]\n| input bytes read :        0 KiB\n| input bitrate    :        0 kb/s\n| demux bytes read :      825 KiB\n| demux bitrate    :      470 kb/s\n| demux corrupted  :        0\n| discontinuities  :        2\n|\n+-[Video Decoding]\n| video decoded    :      731\n| frames displayed :      337\n| frames lost      :        1\n|\n+-[Audio Decoding]\n| audio decoded    :     1376\n| buffers played   :      687\n| buffers lost     :        3\n+----[ end of statistical info ]\n";

    #[test]
    fn frozen_stretches_are_where_the_value_stood_still() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let points = [
            (at(0), 0.0),
            (at(250), 1.0),
            (at(500), 1.0),
            (at(750), 1.0),
            (at(1000), 2.0),
            (at(1250), 3.0),
            (at(1500), 3.0),
        ];
        assert_eq!(
            frozen_stretches(points),
            vec![
                (at(250), Duration::from_millis(500)),
                (at(1250), Duration::from_millis(250)),
            ]
        );
        assert_eq!(
            longest_stretch(&frozen_stretches(points)),
            Duration::from_millis(500)
        );
        assert!(frozen_stretches([(at(0), 0.0), (at(250), 1.0)]).is_empty());
    }

    #[test]
    fn stats_are_read_from_vlcs_answer() {
        assert_eq!(
            VlcStats::parse(STATS),
            Some(VlcStats {
                frames_displayed: 337,
                frames_lost: 1,
                buffers_played: 687,
                buffers_lost: 3,
                demux_corrupted: 0,
                discontinuities: 2,
            })
        );
        assert_eq!(VlcStats::parse(""), None);
    }

    #[test]
    fn trouble_in_a_vlc_log_is_found_and_startup_noise_is_not() {
        let log = "\
dbus error: Failed to connect to the D-Bus session daemon
main error: no suitable interface module
main error: interface \"globalhotkeys,none\" initialization failed
main debug: Stream buffering done (1024 ms in 0 ms)
adaptive warning: Failed to update 0/3 playlist ID http://x/p.m3u8
main warning: buffer too late (-1514832 us): dropped
main debug: Stream buffering done (85 ms in 0 ms)
main warning: picture is too late to be displayed (missing 63 ms)
main error: buffer deadlock prevented
";
        assert_eq!(
            vlc_trouble(log),
            vec![
                "adaptive warning: Failed to update 0/3 playlist ID http://x/p.m3u8",
                "main error: buffer deadlock prevented",
            ]
        );
        assert_eq!(vlc_buffering_rounds(log), 2);
    }
}
