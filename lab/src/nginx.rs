//! Debian's nginx as a child process, for the tests and benchmarks that put it
//! in front of something (the benches' baseline in front of the packagers, the
//! balancer test's round robin in front of the proxies): a generated config in
//! a temp dir as its prefix (pid, temp paths, logs), run in the foreground,
//! its logs copied to the caller's log folder when it stops.
//!
//! In front of the packagers one template (`lab/bench/nginx.conf.template`)
//! takes one of three [`NginxSettings`]: the conventional reverse proxy of
//! the failover bench (round robin, `proxy_next_upstream`, nginx's
//! defaults), the caching edge of the viewers bench (`proxy_cache` with
//! `proxy_cache_lock`, one worker per core, limits for 10k connections) and
//! the same edge set up for low-latency HLS (blocking reloads cached by
//! their whole URI, the packagers holding them).

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
/// main, `events`, `http`, `upstream packagers`, `location /` and `server`
/// blocks (`{{prefix}}` may be used).
#[derive(Debug, Clone)]
pub struct NginxSettings {
    pub main: String,
    pub events: String,
    pub http: String,
    pub upstream: String,
    pub location: String,
    /// More locations of the server (a named one the `location /` lines
    /// send requests to).
    pub server: String,
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
            .replace("{{server}}", &self.server)
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
            server: String::new(),
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
            server: String::new(),
        }
    }
}

/// How long nginx lets a request wait for the one that went upstream for
/// the same cache key, and how old that request may get before another
/// goes: above the longest a packager holds a blocking reload (three target
/// durations of 2 s), so a held request never sends a second one upstream.
pub const LOW_LATENCY_LOCK_SECONDS: u32 = 7;
/// How long a blocking reload's answer stays cached: the same URI always
/// asks for the same part, so its answer holds; a part target (0.4 s) and
/// more is plenty for every viewer waiting on it.
pub const LOW_LATENCY_BLOCKING_VALID: &str = "6s";
/// How long a plain playlist (no `_HLS_msn`) stays cached: as short as
/// nginx's whole-second cache lifetimes go.
pub const LOW_LATENCY_PLAIN_VALID: &str = "1s";

impl NginxSettings {
    /// [`NginxSettings::caching`] set up for low-latency HLS, as a CDN
    /// operator would: the cache key is the whole request URI, query
    /// included (`_HLS_msn` and `_HLS_part` name the part a blocking reload
    /// waits for), `proxy_cache_lock` so one request per key goes upstream
    /// and waits there while the packager holds it, the others wait on
    /// the lock (at most [`LOW_LATENCY_LOCK_SECONDS`], longer than any
    /// hold); blocking reloads cached [`LOW_LATENCY_BLOCKING_VALID`],
    /// plain playlists [`LOW_LATENCY_PLAIN_VALID`], parts and segments a
    /// minute. The packagers do the blocking.
    pub fn low_latency(workers: usize, open_files: u64) -> NginxSettings {
        let mut settings = NginxSettings::caching(workers, open_files);
        let lock = LOW_LATENCY_LOCK_SECONDS;
        settings.location = format!(
            "proxy_http_version 1.1;\n            \
             proxy_set_header Connection \"\";\n            \
             proxy_cache hls;\n            \
             proxy_cache_key $scheme$proxy_host$request_uri;\n            \
             proxy_cache_lock on;\n            \
             proxy_cache_lock_timeout {lock}s;\n            \
             proxy_cache_lock_age {lock}s;\n            \
             proxy_cache_use_stale updating;\n            \
             proxy_ignore_headers Cache-Control Expires;\n            \
             proxy_cache_valid 200 60s;\n            \
             location ~ \\.m3u8$ {{\n                \
             error_page 418 = @blocking;\n                \
             if ($arg__HLS_msn) {{ return 418; }}\n                \
             proxy_pass http://packagers;\n                \
             proxy_cache_valid 200 {LOW_LATENCY_PLAIN_VALID};\n            \
             }}"
        );
        // A blocking reload: the same cache, keyed on its whole URI, kept
        // longer (the `if` above sends it here: `return` is safe in `if`).
        settings.server = format!(
            "location @blocking {{\n            \
             proxy_pass http://packagers;\n            \
             proxy_next_upstream error timeout http_500 http_502 http_503 http_504;\n            \
             proxy_http_version 1.1;\n            \
             proxy_set_header Connection \"\";\n            \
             proxy_cache hls;\n            \
             proxy_cache_key $scheme$proxy_host$request_uri;\n            \
             proxy_cache_lock on;\n            \
             proxy_cache_lock_timeout {lock}s;\n            \
             proxy_cache_lock_age {lock}s;\n            \
             proxy_ignore_headers Cache-Control Expires;\n            \
             proxy_cache_valid 200 {LOW_LATENCY_BLOCKING_VALID};\n        \
             }}"
        );
        settings
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
    fn every_setting_fills_every_field_of_the_packagers_template() {
        for settings in [
            NginxSettings::conventional(),
            NginxSettings::caching(2, 4096),
            NginxSettings::low_latency(2, 4096),
        ] {
            let config = fill(&settings.packagers_template(), &every_field())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(config.contains("server 127.0.0.1:1;"), "{config}");
            assert!(config.contains("listen 127.0.0.1:8000;"), "{config}");
        }
    }

    /// nginx itself reads every setting's config (`nginx -t`), the
    /// low-latency edge's named location and `if` included.
    #[test]
    fn nginx_accepts_every_setting() {
        let bin = nginx_bin().expect("nginx is installed (./scripts/setup.sh)");
        for settings in [
            NginxSettings::conventional(),
            NginxSettings::caching(2, 4096),
            NginxSettings::low_latency(2, 4096),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let prefix = dir.path().display().to_string();
            let mut fields = every_field();
            fields[0].1 = "# no user".into();
            fields[1].1 = prefix.clone();
            let config = fill(&settings.packagers_template(), &fields).expect("filled");
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, &config).expect("written");
            let out = Command::new(&bin)
                .args(["-t", "-q", "-p", &prefix, "-c", &conf.display().to_string()])
                .args(["-e", &format!("{prefix}/error.log")])
                .output()
                .expect("nginx runs");
            assert!(
                out.status.success(),
                "nginx -t refused:\n{}\n{config}",
                String::from_utf8_lossy(&out.stderr)
            );
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
