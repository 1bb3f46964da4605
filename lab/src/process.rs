//! The programs a test runs, as child processes: started with a clean
//! environment and a log file each, signalled, waited for, and stopped on
//! drop (SIGCONT, SIGTERM, then SIGKILL) so no test leaves one running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
