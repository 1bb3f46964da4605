//! Flag and environment parsing shared by the services: every setting is a
//! flag with an environment variable behind it (clap), checked at start so a
//! bad value is one clear line and a non-zero exit.

use std::net::{IpAddr, SocketAddr};

/// Connections a server holds by default: 10,000 viewers of one proxy,
/// each with a keep-alive connection, and room for those reconnecting.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 16384;

/// Where a service listens (`LISTEN_HOST`: all interfaces by default, so each
/// service can run on its own host) and the limits that keep one client from
/// holding it.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Address to listen on.
    #[arg(long = "listen-host", env = "LISTEN_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Most connections served at once; extra ones are closed at once. The
    /// default holds 10,000 viewers with room to spare (each needs a file
    /// descriptor: the open-files limit is raised at start, see `limits`).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = parse_connection_limit)]
    pub max_connections: usize,
    /// Seconds a client has to send a whole request head.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub header_timeout: std::time::Duration,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_SECONDS", default_value = "60", value_parser = parse_seconds)]
    pub idle_timeout: std::time::Duration,
    /// Threads that accept and serve connections, each with its own
    /// listening socket on the port (`SO_REUSEPORT`: the kernel spreads new
    /// connections over them) and its own event loop, as nginx's worker
    /// processes do. 0: connections are served by the program's shared
    /// runtime, one listening socket. Default: one per core for the proxy
    /// (what viewers load), 0 for the other services.
    #[arg(long, env = "SERVE_THREADS", value_parser = parse_serve_threads)]
    pub serve_threads: Option<usize>,
    /// Whose HTTP/1.1 connection code serves requests: `nonstop` (ours, which
    /// holds no buffer while a keep-alive connection waits for its next
    /// request) or `hyper` (8 KiB twice per connection, for its life).
    #[arg(long, env = "HTTP_SERVER", value_enum, default_value_t = HttpServer::Nonstop)]
    pub http_server: HttpServer,
}

#[cfg(test)]
impl ListenArgs {
    /// For tests: loopback, the default timeouts, our HTTP/1.1 connection.
    pub(crate) fn local(max_connections: usize, serve_threads: Option<usize>) -> Self {
        ListenArgs {
            host: "127.0.0.1".parse().expect("an address"),
            max_connections,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
            serve_threads,
            http_server: HttpServer::Nonstop,
        }
    }
}

/// Whose HTTP/1.1 connection code a server runs (`HTTP_SERVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpServer {
    /// `service::http1`: buffers only while a request is read or answered.
    Nonstop,
    /// hyper's `server::conn::http1`.
    Hyper,
}

impl ListenArgs {
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.host, port)
    }

    /// These settings with serving threads, unless `SERVE_THREADS` chose:
    /// one per core the process may run on.
    pub fn with_thread_per_core(mut self) -> Self {
        if self.serve_threads.is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            self.serve_threads = Some(cores.min(64));
        }
        self
    }
}

/// A connection limit: 1 to a million.
pub(crate) fn parse_connection_limit(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{s}' is not a number of connections between 1 and 1000000"
        )),
    }
}

/// Serving threads: 0 (the shared runtime) to 64.
pub(crate) fn parse_serve_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n <= 64 => Ok(n),
        _ => Err(format!("'{s}' is not a number of threads between 0 and 64")),
    }
}

/// A port flag's parser: 1 to 65535 (0 would pick a random port silently).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is out of range (1-65535)")),
        Err(_) => Err(format!("'{s}' is not a port number")),
    }
}

/// A service's base URL (`http://host:port`), normalised without a trailing
/// slash. Only http and https with a host; no query, fragment or credentials.
pub(crate) fn parse_base_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("'{s}' must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{s}' has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("'{s}' must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("'{s}' must not carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A comma-separated list of IP addresses (`TRUSTED_PROXIES`); empty is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressList(pub Vec<IpAddr>);

pub(crate) fn parse_address_list(s: &str) -> Result<AddressList, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpAddr>()
                .map_err(|_| format!("'{item}' is not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(AddressList)
}

/// A positive number of seconds (fractions allowed), as a Duration.
pub fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(std::time::Duration::from_secs_f64(v)),
        _ => Err(format!(
            "'{s}' is not a number of seconds between 0 and 86400"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised_and_checked() {
        assert_eq!(
            parse_base_url("http://localhost:8080/").as_deref(),
            Ok("http://localhost:8080")
        );
        assert_eq!(
            parse_base_url("https://cdn.example/path/").as_deref(),
            Ok("https://cdn.example/path")
        );
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http://a/?q=1",
            "http://u:p@a",
            "",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn address_lists_may_be_empty() {
        assert_eq!(parse_address_list(""), Ok(AddressList::default()));
        assert_eq!(
            parse_address_list("10.0.0.1, ::1").map(|l| l.0.len()),
            Ok(2)
        );
        assert!(parse_address_list("10.0.0.1,lb.example")
            .unwrap_err()
            .contains("lb.example"));
    }

    #[test]
    fn ports_must_be_in_range() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").unwrap_err().contains("out of range"));
        assert!(parse_port("http").is_err());
    }
}
