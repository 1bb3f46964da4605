//! Players running as child programs (the probe, a browser driver), their
//! stderr read as it comes, so a test waits until the viewer really watches
//! before injecting a fault, rather than sleeping for a guessed time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::probe::{Progress, DEFAULT_START_SEGMENTS};
use crate::workspace::bin;

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

/// What `lab/web/hlsjs-player.mjs` says once per poll while playing:
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

    /// Asks the player to end now (SIGTERM), as a viewer closing it.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            crate::process::send(crate::process::Signal::Term, child.id());
        }
    }

    /// Whether the player has ended (its log closed).
    pub fn is_done(&self) -> bool {
        self.heard.0.lock().expect("player log lock").ended
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

/// The last JSON object a program printed on stdout.
pub fn last_json(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .or_else(|| serde_json::from_str::<Value>(stdout.trim()).ok())
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
            &DEFAULT_START_SEGMENTS.to_string(),
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

    /// Whether the probe has ended its watch.
    pub fn is_done(&self) -> bool {
        self.process.is_done()
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
}
