//! nginx in front of the same two packagers, configured the conventional way
//! (round robin, `proxy_next_upstream`): the baseline nonstop's proxy is
//! compared with.

use super::*;

/// nginx as Debian installs it, configured the conventional way.
pub(crate) const NGINX_TEMPLATE: &str = include_str!("../../bench/nginx.conf.template");

pub(crate) fn nginx_bin() -> Option<String> {
    if on_path("nginx") {
        Some("nginx".to_string())
    } else {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .map(str::to_string)
    }
}

/// nginx in front of the same two packagers, as a child process with its
/// prefix, logs and temp paths in a temp dir.
pub(crate) struct Nginx {
    pub(crate) port: u16,
    pub(crate) service: Service,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) logs: PathBuf,
}

impl Nginx {
    pub(crate) fn start(packager_a: &str, packager_b: &str, logs: &Path) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx temp dir");
        let prefix = dir.path().display().to_string();
        let port = free_port();
        let host = |url: &str| {
            url.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        };
        let running_as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let config = NGINX_TEMPLATE
            .replace(
                "{{user}}",
                if running_as_root {
                    "user root;"
                } else {
                    "# (not root: no user directive)"
                },
            )
            .replace("{{prefix}}", &prefix)
            .replace("{{port}}", &port.to_string())
            .replace("{{packager_a}}", &host(packager_a))
            .replace("{{packager_b}}", &host(packager_b));
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
        let bin = nginx_bin().expect("nginx was checked at start");
        let service = Service::start("nginx", &bin, &args, &[], dir.path());
        let nginx = Nginx {
            port,
            service,
            dir,
            logs: logs.to_path_buf(),
        };
        let url = nginx.url("live01/playlist.m3u8");
        wait_for(
            Duration::from_secs(10),
            "nginx serving the playlist",
            || {
                let (status, _) = common::get(&url)?;
                (status == 200).then_some(())
            },
        );
        nginx
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
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
