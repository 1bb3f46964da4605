//! The programs a test runs, as child processes: started with a clean
//! environment and a log file each, signalled by name, waited for, and
//! stopped on drop (SIGCONT, SIGTERM, then SIGKILL) so no test leaves one
//! running.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a program may take to drain and exit after SIGTERM.
const CLEAN_EXIT_WITHIN: Duration = Duration::from_secs(10);
/// How long a program dropped by a test may take to exit after SIGTERM
/// before it gets SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// How often an exit is looked for.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// Settings the programs read from the environment: removed from every
/// program's environment, so only what a test gives one reaches it (an
/// operator's `LADDER` or `PART_SECONDS` must not change a test's worker).
/// A unit test keeps this list in step with the programs' `env = "..."`.
const CLEARED_SETTINGS: [&str; 46] = [
    "CODEC_THREADS",
    "CONSOLE_ASSETS",
    "CONSOLE_FAULTS",
    "CONSOLE_FAULT_TOKEN",
    "CONSOLE_PORT",
    "DISCOVERY_INTERVAL_SECONDS",
    "DISCOVERY_METRICS_PORT",
    "EPOCH",
    "HOLD_BACK_SECONDS",
    "HTTP_HEADER_TIMEOUT_SECONDS",
    "HTTP_IDLE_TIMEOUT_SECONDS",
    "HTTP_SERVER",
    "INPUT_STREAM_PATH",
    "LADDER",
    "LISTEN_HOST",
    "MAX_CONNECTIONS",
    "ORIGIN_CACHE_SECONDS",
    "ORIGIN_PORT",
    "ORIGIN_URL",
    "OUTPUT_STREAM_PATH",
    "PACKAGERS",
    "PART_SECONDS",
    "PATHWAYS",
    "PATHWAY_ID",
    "PLAYLIST_LENGTH",
    "PROXY_CACHE_MB",
    "PROXY_PORT",
    "PROXY_URL",
    "REPORTER_ALLOWED_PACKAGERS",
    "REPORTER_PORT",
    "REPORTER_PROTECT_READS",
    "REPORTER_STORE",
    "REPORTER_TOKEN",
    "REPORTER_TOKEN_FILE",
    "REPORTER_URL",
    "REPORT_TTL_SECONDS",
    "RETAINED_SEGMENTS",
    "SEGMENT_SECONDS",
    "SERVER_ONE_PORT",
    "SERVER_TWO_PORT",
    "SERVE_THREADS",
    "SIGNAL_FRESH_SECONDS",
    "TRUSTED_PROXIES",
    "VIDEO_KBPS",
    "WORKERS",
    "WORKER_METRICS_PORT",
];

/// A signal a test sends a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ends it at once, no clean-up: a crash, a power cut.
    Kill,
    /// Freezes it: its sockets stay open, nothing answers.
    Stop,
    /// Thaws a stopped one.
    Cont,
    /// Asks it to drain and exit.
    Term,
}

impl Signal {
    /// The name `kill -<name>` takes.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
            Signal::Term => "TERM",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

/// Sends `signal` to process `pid`; false when `kill` refused (no such process).
pub fn send(signal: Signal, pid: u32) -> bool {
    Command::new("kill")
        .arg(format!("-{}", signal.name()))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running program of the workspace; SIGTERM then SIGKILL on drop.
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
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
        for key in CLEARED_SETTINGS {
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

    /// What it is called in logs and messages (its log file's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`; panics when `kill` refuses.
    pub fn signal(&self, signal: Signal) {
        assert!(
            send(signal, self.pid()),
            "kill -{} {} failed",
            signal.name(),
            self.pid()
        );
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(EXIT_POLL);
        }
        None
    }

    /// SIGTERM, then asserts a clean exit (code 0 within [`CLEAN_EXIT_WITHIN`]),
    /// showing the program's log if not: what every server promises.
    pub fn terminate_cleanly(&mut self) {
        self.signal(Signal::Term);
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
            std::thread::sleep(EXIT_POLL);
        }
        false
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A stopped program cannot act on SIGTERM until it runs again.
            send(Signal::Cont, self.pid());
            send(Signal::Term, self.pid());
            if self.wait_gone(DROP_GRACE) {
                return;
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every log file in `dir`, by name, each under its file name.
pub(crate) fn logs_in(dir: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::CLEARED_SETTINGS;
    use std::path::Path;

    /// Every `env = "NAME"` in the programs' sources, read from the files.
    fn settings_in(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                settings_in(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source file");
                for piece in text.split("env = \"").skip(1) {
                    if let Some(name) = piece.split('"').next() {
                        found.push(name.to_string());
                    }
                }
            }
        }
    }

    #[test]
    fn every_setting_the_programs_read_is_cleared_for_a_test() {
        let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
        let mut found = Vec::new();
        settings_in(&sources, &mut found);
        assert!(
            found.iter().any(|n| n == "LADDER"),
            "the scan found the worker's settings: {found:?}"
        );
        let missing: Vec<&String> = found
            .iter()
            .filter(|n| !CLEARED_SETTINGS.contains(&n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "settings a test's programs would inherit: {missing:?}"
        );
    }
}
