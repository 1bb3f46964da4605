//! Ports for the services a test starts: each free when chosen and never
//! handed out twice by one process, and the five a stack's programs share.

use std::net::TcpListener;

/// The shared token every stack's discovery and reporter use.
pub const REPORTER_TOKEN: &str = "test-token-0123456789abcdef";
/// How often a stack's discovery reports: quicker than the product's, so a
/// stack is routed (and a restarted reporter refilled) within a second.
pub const DISCOVERY_INTERVAL_SECONDS: &str = "0.5";

/// A port nobody listens on right now, never handed out twice by this
/// process, and below the kernel's ephemeral range (32768+), so neither a
/// parallel test nor an outgoing connection can take it before the service
/// binds it. Each test process starts at its own place in 20000-31999.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// The ports a stack's services listen on, each free when chosen.
#[derive(Debug, Clone, Copy)]
pub struct StackPorts {
    pub server_one: u16,
    pub server_two: u16,
    pub reporter: u16,
    pub origin: u16,
    pub proxy: u16,
}

impl StackPorts {
    pub fn free() -> Self {
        StackPorts {
            server_one: free_port(),
            server_two: free_port(),
            reporter: free_port(),
            origin: free_port(),
            proxy: free_port(),
        }
    }

    /// The settings every program of a stack shares, whatever host it runs
    /// on: these ports, the packagers' URLs, where the reporter and origin
    /// are reached (`services_host`), the listen address and the segment
    /// length. Each host adds its folders and metrics ports.
    pub fn shared_env(
        &self,
        packagers: &[String],
        services_host: &str,
        listen_host: &str,
        segment_seconds: u32,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("SERVER_ONE_PORT", self.server_one.to_string()),
            ("SERVER_TWO_PORT", self.server_two.to_string()),
            ("REPORTER_PORT", self.reporter.to_string()),
            ("ORIGIN_PORT", self.origin.to_string()),
            ("PROXY_PORT", self.proxy.to_string()),
            ("PACKAGERS", packagers.join(",")),
            (
                "REPORTER_URL",
                format!("http://{services_host}:{}", self.reporter),
            ),
            (
                "ORIGIN_URL",
                format!("http://{services_host}:{}", self.origin),
            ),
            ("LISTEN_HOST", listen_host.to_string()),
            ("SEGMENT_SECONDS", segment_seconds.to_string()),
            (
                "DISCOVERY_INTERVAL_SECONDS",
                DISCOVERY_INTERVAL_SECONDS.to_string(),
            ),
            ("REPORTER_TOKEN", REPORTER_TOKEN.to_string()),
        ]
    }
}
