//! The console's configuration: flags and environment, the fault proxies it
//! may switch (on this machine only), the modes it offers, and why it may
//! refuse to start.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::net::auth::{Token, MIN_TOKEN_LEN};
use crate::service::config::{parse_base_url, parse_port, ListenArgs};
use crate::service::http;

/// Longest fault-control name (it ends up in URLs and on buttons).
pub(super) const MAX_FAULT_NAME: usize = 32;
/// The fault modes the console offers: a dead packager (`reset`: every
/// connection reset, like a killed process), a hung one, a frozen playlist,
/// errors, and back to normal. Slowness and cut bodies stay test-only.
pub const CONSOLE_MODES: [DemoFault; 5] = [
    DemoFault::Reset,
    DemoFault::Hang,
    DemoFault::Stale,
    DemoFault::Error500,
    DemoFault::None,
];

/// A fault the console may ask a fault proxy (the lab's `faultproxy`) for.
/// The console only speaks its control API (`PUT /_fault/<name>`), so it
/// names the modes as that API does and carries none of the lab's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoFault {
    Reset,
    Hang,
    Stale,
    Error500,
    None,
}

impl DemoFault {
    /// The mode's name in the fault proxy's control API.
    pub fn name(self) -> &'static str {
        match self {
            DemoFault::Reset => "reset",
            DemoFault::Hang => "hang",
            DemoFault::Stale => "stale",
            DemoFault::Error500 => "error500",
            DemoFault::None => "none",
        }
    }
}

impl std::fmt::Display for DemoFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The operator's console: a live web page over the proxy's failover state.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "console", version)]
pub struct ConsoleConfig {
    /// Port to listen on.
    #[arg(long, env = "CONSOLE_PORT", default_value = "8003", value_parser = parse_port)]
    pub port: u16,
    /// The proxy as the browser reaches it: the page plays
    /// <PROXY_URL>/<signal>/playlist.m3u8, and the console reads <PROXY_URL>/status.
    #[arg(long, env = "PROXY_URL", default_value = "http://localhost:8002", value_parser = parse_base_url)]
    pub proxy_url: String,
    /// Origin base URL, asked which signals are live.
    #[arg(long, env = "ORIGIN_URL", default_value = "http://localhost:8001", value_parser = parse_base_url)]
    pub origin_url: String,
    /// Workers to show, comma-separated base URLs of their healthcheck/metrics
    /// port (e.g. http://localhost:9100,http://localhost:9110); the console
    /// asks each one's /healthcheck. Empty: no workers panel.
    #[arg(long, env = "WORKERS", default_value = "", hide_default_value = true, value_parser = crate::net::workers::parse_workers)]
    pub workers: crate::net::workers::Workers,
    /// Folder with console.html, console.js and node_modules/hls.js/dist/hls.min.js.
    #[arg(long, env = "CONSOLE_ASSETS", default_value = "web")]
    pub assets: PathBuf,
    /// Fault controls for localhost demos, comma-separated
    /// `name=http://127.0.0.1:port` (a faultproxy's control API). Empty: off.
    #[arg(long, env = "CONSOLE_FAULTS", default_value = "", hide_default_value = true, value_parser = parse_fault_targets)]
    pub faults: FaultTargets,
    /// Token the page must send to trigger faults; required with CONSOLE_FAULTS
    /// (environment only, so it never shows in `ps`).
    #[arg(long = "fault-token", env = "CONSOLE_FAULT_TOKEN", hide_env_values = true, hide = true, value_parser = parse_fault_token)]
    pub fault_token: Option<Token>,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// One fault proxy the console may switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultTarget {
    /// Shown on the page and used in `/api/faults/<name>/<mode>`.
    pub name: String,
    /// The fault proxy's base URL: its control API, and the packager URL the
    /// proxy knows it by (so the page can show which packager it affects).
    pub control: String,
}

/// The fault proxies the console may switch (none: controls off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultTargets(pub Vec<FaultTarget>);

/// A comma-separated list of [`parse_fault_target`]; empty means none. Each
/// name may appear once.
pub(super) fn parse_fault_targets(s: &str) -> Result<FaultTargets, String> {
    let mut targets: Vec<FaultTarget> = Vec::new();
    for item in s.split(',').filter(|item| !item.trim().is_empty()) {
        let target = parse_fault_target(item)?;
        if targets.iter().any(|t| t.name == target.name) {
            return Err(format!("fault control '{}' is named twice", target.name));
        }
        targets.push(target);
    }
    Ok(FaultTargets(targets))
}

/// `name=http://127.0.0.1:port`, on this machine only.
pub(super) fn parse_fault_target(s: &str) -> Result<FaultTarget, String> {
    let (name, control) = s
        .trim()
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not name=http://127.0.0.1:port"))?;
    let name = name.trim();
    let name_ok = !name.is_empty()
        && name.len() <= MAX_FAULT_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(format!(
            "fault control name '{name}' must be 1 to {MAX_FAULT_NAME} letters, digits, '-' or '_'"
        ));
    }
    let control = parse_base_url(control)?;
    if !is_loopback_url(&control) {
        return Err(format!(
            "fault control '{name}' must be on this machine (localhost, 127.0.0.1 or [::1]), not {control}"
        ));
    }
    Ok(FaultTarget {
        name: name.to_string(),
        control,
    })
}

pub(super) fn parse_fault_token(s: &str) -> Result<Token, String> {
    Token::parse(s, "CONSOLE_FAULT_TOKEN")
}

pub(super) fn is_loopback_url(base: &str) -> bool {
    match url::Url::parse(base)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Why the console cannot start: one line, then a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("CONSOLE_FAULTS is set, so CONSOLE_FAULT_TOKEN is required (at least {MIN_TOKEN_LEN} characters); leave CONSOLE_FAULTS empty to keep fault controls off")]
    TokenMissing,
    #[error("fault controls are for localhost demos: the console must listen on a loopback address (LISTEN_HOST=127.0.0.1), not {0}")]
    NotLocal(IpAddr),
    #[error("{what} not found at {path}: {hint}")]
    MissingAsset {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}
