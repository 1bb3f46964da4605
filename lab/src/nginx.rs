//! nginx from Debian as a child process in front of the same two packagers as
//! a stack's proxy: the baseline the benches compare nonstop's proxy with.
//! One template (`lab/bench/nginx.conf.template`), two settings: the
//! conventional reverse proxy of the failover bench (round robin,
//! `proxy_next_upstream`, nginx's defaults) and the caching edge of the
//! viewers bench (`proxy_cache` with `proxy_cache_lock`, one worker per core,
//! limits for 10k connections).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{free_port, get, wait_for, Service};

/// nginx's configuration, with `{{...}}` fields filled in by [`Nginx::start`].
pub const NGINX_TEMPLATE: &str = include_str!("../bench/nginx.conf.template");

/// The nginx program, when installed.
pub fn nginx_bin() -> Option<String> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("nginx").is_file()));
    if on_path {
        Some("nginx".to_string())
    } else {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .map(str::to_string)
    }
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

/// nginx in front of two packagers, as a child process with its prefix,
/// cache, logs and temp paths in a temp dir. Its logs and generated
/// configuration are copied to `logs` when it is dropped.
pub struct Nginx {
    pub port: u16,
    pub service: Service,
    pub dir: tempfile::TempDir,
    pub logs: PathBuf,
}

impl Nginx {
    /// Starts nginx and waits until it serves live01's playlist.
    pub fn start(
        settings: &NginxSettings,
        packager_a: &str,
        packager_b: &str,
        logs: &Path,
    ) -> Nginx {
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
            .replace("{{main}}", &settings.main)
            .replace("{{events}}", &settings.events)
            .replace("{{http}}", &settings.http)
            .replace("{{upstream}}", &settings.upstream)
            .replace("{{location}}", &settings.location)
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
        let bin = nginx_bin().expect("nginx is installed (apt-get install nginx-light)");
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
                let (status, _) = get(&url)?;
                (status == 200).then_some(())
            },
        );
        nginx
    }

    pub fn url(&self, path: &str) -> String {
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
