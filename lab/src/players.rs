//! Real players no one here wrote, driven from the outside: VLC (Debian's
//! `vlc-bin`, headless, asked through its command-line remote interface) and
//! WebKit, Safari's engine (WebKitGTK's MiniBrowser under Xvfb, driven over
//! W3C WebDriver by `WebKitWebDriver`). The system tests in `tests/vlc.rs`
//! and `tests/webkit.rs` play the proxy with them through a packager kill.
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

use crate::support::{free_port, try_wait_for};

/// VLC's headless front end.
pub const CVLC: &str = "/usr/bin/cvlc";
/// VLC's HLS reader (`vlc-plugin-base`): without it VLC cannot play HLS.
pub const VLC_ADAPTIVE_PLUGIN: &str = "vlc/plugins/demux/libadaptive_plugin.so";
/// The WebDriver server of WebKitGTK (`webkit2gtk-driver`).
pub const WEBKIT_WEBDRIVER: &str = "/usr/bin/WebKitWebDriver";
/// The X server without a screen (`xvfb`) the MiniBrowser draws into.
pub const XVFB: &str = "/usr/bin/Xvfb";

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
pub fn multiarch_file(relative: &str) -> Option<PathBuf> {
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
    pub fn ask(&self, command: &str) -> Option<String> {
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
pub fn vlc_trouble(log: &str) -> Vec<&str> {
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
pub fn vlc_buffering_rounds(log: &str) -> usize {
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
    pub fn navigate(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", &json!({ "url": url }))
            .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page
    /// and returns what it returns.
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
pub fn minibrowser() -> Option<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// VLC 3.0.24's answer to `stats` while playing our stream.
    const STATS: &str = "+----[ begin of statistical info\n+-[Incoming]\n| input bytes read :        0 KiB\n| input bitrate    :        0 kb/s\n| demux bytes read :      825 KiB\n| demux bitrate    :      470 kb/s\n| demux corrupted  :        0\n| discontinuities  :        2\n|\n+-[Video Decoding]\n| video decoded    :      731\n| frames displayed :      337\n| frames lost      :        1\n|\n+-[Audio Decoding]\n| audio decoded    :     1376\n| buffers played   :      687\n| buffers lost     :        3\n+----[ end of statistical info ]\n";

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
