//! Debian's nginx as a child process, for the tests and benchmarks that put it
//! in front of something (the failover bench's baseline in front of the
//! packagers, the balancer test's round robin in front of the proxies): a
//! generated config in a temp dir as its prefix (pid, temp paths, logs), run
//! in the foreground, its logs copied to the caller's log folder when it stops.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{free_port, wait_for, Service};

/// How long nginx may take to listen once started.
const LISTENING_WITHIN: Duration = Duration::from_secs(10);

/// The nginx program, when installed (`nginx-light`, scripts/setup.sh).
pub fn nginx_bin() -> Option<String> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| {
            ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .map(|p| p.display().to_string())
}

/// A running nginx on a free port of 127.0.0.1; stopped (TERM, then KILL) on
/// drop, after its logs are copied.
pub struct Nginx {
    pub port: u16,
    /// The whole config it runs, for failure messages.
    pub config: String,
    /// Declared before `dir`: nginx stops before its prefix goes.
    service: Service,
    dir: tempfile::TempDir,
    /// Where the logs are copied (`nginx.conf`, `nginx-access.log`, ...).
    logs: PathBuf,
}

impl Nginx {
    /// Starts nginx with `template`, a whole `nginx.conf` in which
    /// `{{user}}` (a `user root;` line when running as root, since nginx
    /// refuses to run its workers as root's default `nobody` otherwise),
    /// `{{prefix}}` (its temp dir) and `{{port}}` (a free port) are filled in,
    /// then each of `fields` (`("{{name}}", value)`). Waits until it listens.
    pub fn start(template: &str, fields: &[(&str, String)], logs: &Path) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx temp dir");
        let prefix = dir.path().display().to_string();
        let port = free_port();
        let running_as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut config = template
            .replace(
                "{{user}}",
                if running_as_root {
                    "user root;"
                } else {
                    "# (not root: no user directive)"
                },
            )
            .replace("{{prefix}}", &prefix)
            .replace("{{port}}", &port.to_string());
        for (field, value) in fields {
            config = config.replace(field, value);
        }
        assert!(
            !config.contains("{{"),
            "a field of the nginx template is not filled in:\n{config}"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, &config).expect("nginx.conf written");
        let _ = std::fs::write(logs.join("nginx.conf"), &config);
        let args = [
            "-p".to_string(),
            prefix.clone(),
            "-c".to_string(),
            conf.display().to_string(),
            "-e".to_string(),
            format!("{prefix}/error.log"),
            "-g".to_string(),
            "daemon off;".to_string(),
        ];
        let bin = nginx_bin()
            .expect("nginx is installed (apt-get install nginx-light, or ./scripts/setup.sh)");
        let service = Service::start("nginx", &bin, &args, &[], dir.path());
        let nginx = Nginx {
            port,
            config,
            service,
            dir,
            logs: logs.to_path_buf(),
        };
        wait_for(LISTENING_WITHIN, "nginx listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        nginx
    }

    /// `http://127.0.0.1:<port>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// A file nginx wrote in its prefix so far (`access.log`, `error.log`).
    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }

    /// nginx's own output so far (start-up errors).
    pub fn output(&self) -> String {
        self.service.log_text()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::copy(&self.service.log, self.logs.join("nginx-output.log"));
        for file in ["access.log", "error.log"] {
            let _ = std::fs::copy(
                self.dir.path().join(file),
                self.logs.join(format!("nginx-{file}")),
            );
        }
        // `service` then stops nginx (TERM, then KILL), before `dir` goes.
    }
}
