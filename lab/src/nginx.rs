//! Debian's nginx as a child process, for the tests and benchmarks that put it
//! in front of something (the benches' baseline in front of the packagers, the
//! balancer test's round robin in front of the proxies): a generated config in
//! a temp dir as its prefix (pid, temp paths, logs), run in the foreground,
//! its logs copied to the caller's log folder when it stops.
//!
//! In front of the packagers one template (`lab/bench/nginx.conf.template`)
//! takes one of two [`NginxSettings`]: the conventional reverse proxy of the
//! failover bench (round robin, `proxy_next_upstream`, nginx's defaults) and
//! the caching edge of the viewers bench (`proxy_cache` with
//! `proxy_cache_lock`, one worker per core, limits for 10k connections).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::get;
use crate::ports::free_port;
use crate::process::Service;
use crate::wait::wait_for;

/// nginx in front of the packagers; `{{...}}` fields filled in by
/// [`Nginx::in_front_of_packagers`].
const NGINX_TEMPLATE: &str = include_str!("../bench/nginx.conf.template");

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

/// What differs between the benches' nginx: lines put into the template's
/// main, `events`, `http`, `upstream packagers` and `location /` blocks
/// (`{{prefix}}` may be used).
#[derive(Debug, Clone)]
pub struct NginxSettings {
    pub main: String,
    pub events: String,
    pub http: String,
    pub upstream: String,
    pub location: String,
}

impl NginxSettings {
    /// [`NGINX_TEMPLATE`] with these settings' lines in; the settings go in
    /// first since they may hold `{{prefix}}` themselves.
    fn packagers_template(&self) -> String {
        NGINX_TEMPLATE
            .replace("{{main}}", &self.main)
            .replace("{{events}}", &self.events)
            .replace("{{http}}", &self.http)
            .replace("{{upstream}}", &self.upstream)
            .replace("{{location}}", &self.location)
    }

    /// A plain reverse proxy, nginx's defaults spelled out (one worker, 1024
    /// connections, no cache): the failover bench's baseline.
    pub fn conventional() -> NginxSettings {
        NginxSettings {
            main: "worker_processes 1;".into(),
            events: "worker_connections 1024;".into(),
            http: String::new(),
            upstream: String::new(),
            location: String::new(),
        }
    }

    /// A caching edge as a CDN operator would set one up for live HLS:
    /// `workers` worker processes, each allowed `open_files` descriptors;
    /// segments cached for a minute, playlists for one second;
    /// `proxy_cache_lock` so one request per object goes upstream while the
    /// others wait, `proxy_cache_use_stale updating` so an expired playlist
    /// is served while one request refreshes it; keep-alive to the packagers.
    /// Cache headers from the packagers are ignored so both kinds of object
    /// live exactly as long as said here, whatever the packagers send.
    pub fn caching(workers: usize, open_files: u64) -> NginxSettings {
        let connections = open_files.saturating_sub(64).clamp(1024, 65_536);
        NginxSettings {
            main: format!("worker_processes {workers};\nworker_rlimit_nofile {open_files};"),
            events: format!("worker_connections {connections};"),
            // No access log: nonstop's proxy writes none per request either.
            http: "access_log off;\n    \
                   proxy_cache_path {{prefix}}/cache levels=1:2 keys_zone=hls:16m max_size=1g \
                   inactive=2m use_temp_path=off;"
                .into(),
            upstream: "keepalive 64;".into(),
            location: "proxy_http_version 1.1;\n            \
                       proxy_set_header Connection \"\";\n            \
                       proxy_cache hls;\n            \
                       proxy_cache_lock on;\n            \
                       proxy_cache_use_stale updating;\n            \
                       proxy_ignore_headers Cache-Control Expires;\n            \
                       proxy_cache_valid 200 60s;\n            \
                       location ~ \\.m3u8$ {\n                \
                       proxy_pass http://packagers;\n                \
                       proxy_cache_valid 200 1s;\n            \
                       }"
            .into(),
        }
    }
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

/// `template` with each `("{{name}}", value)` of `fields` filled in, or an
/// error naming a field left in a directive (comments may mention `{{...}}`).
pub fn fill(template: &str, fields: &[(&str, String)]) -> Result<String, String> {
    let mut config = template.to_string();
    for (field, value) in fields {
        config = config.replace(field, value);
    }
    let unfilled: Vec<&str> = config
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && line.contains("{{"))
        .collect();
    if unfilled.is_empty() {
        Ok(config)
    } else {
        Err(format!(
            "fields of the nginx template are not filled in: {unfilled:?}"
        ))
    }
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
        let user = if running_as_root {
            "user root;"
        } else {
            "# (not root: no user directive)"
        };
        let mut all = vec![
            ("{{user}}", user.to_string()),
            ("{{prefix}}", prefix.clone()),
            ("{{port}}", port.to_string()),
        ];
        all.extend(fields.iter().cloned());
        let config = fill(template, &all).unwrap_or_else(|e| panic!("{e}"));
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

    /// nginx with [`NGINX_TEMPLATE`] and `settings` in front of packagers A
    /// and B; waits until it serves live01's playlist.
    pub fn in_front_of_packagers(
        settings: &NginxSettings,
        packager_a: &str,
        packager_b: &str,
        logs: &Path,
    ) -> Nginx {
        let host = |url: &str| {
            url.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        };
        let nginx = Nginx::start(
            &settings.packagers_template(),
            &[
                ("{{packager_a}}", host(packager_a)),
                ("{{packager_b}}", host(packager_b)),
            ],
            logs,
        );
        let url = nginx.url("live01/playlist.m3u8");
        wait_for(
            Duration::from_secs(10),
            "nginx serving the playlist",
            || {
                let (status, _) = get(&url)?;
                (status == 200).then_some(())
            },
        );
        nginx
    }

    /// The master process's pid (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.service.pid()
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
        let _ = std::fs::copy(self.service.log_path(), self.logs.join("nginx-output.log"));
        for file in ["access.log", "error.log"] {
            let _ = std::fs::copy(
                self.dir.path().join(file),
                self.logs.join(format!("nginx-{file}")),
            );
        }
        // `service` then stops nginx (TERM, then KILL), before `dir` goes.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`Nginx::start`] and [`Nginx::in_front_of_packagers`] fill in.
    fn every_field() -> Vec<(&'static str, String)> {
        vec![
            ("{{user}}", "user root;".into()),
            ("{{prefix}}", "/tmp/x".into()),
            ("{{port}}", "8000".into()),
            ("{{packager_a}}", "127.0.0.1:1".into()),
            ("{{packager_b}}", "127.0.0.1:2".into()),
        ]
    }

    #[test]
    fn both_settings_fill_every_field_of_the_packagers_template() {
        for settings in [
            NginxSettings::conventional(),
            NginxSettings::caching(2, 4096),
        ] {
            let config = fill(&settings.packagers_template(), &every_field())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(config.contains("server 127.0.0.1:1;"), "{config}");
            assert!(config.contains("listen 127.0.0.1:8000;"), "{config}");
        }
    }

    #[test]
    fn a_field_left_in_a_directive_is_refused_but_comments_may_name_fields() {
        let template = "# fills the {{...}} fields\nlisten {{port}};\nroot {{root}};\n";
        let err = fill(template, &every_field()).expect_err("{{root}} is not filled");
        assert!(err.contains("root {{root}};"), "{err}");
        assert!(!err.contains("fills the"), "{err}");
    }
}
