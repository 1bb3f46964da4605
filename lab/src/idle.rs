//! What an idle viewer costs the proxy: memory per open keep-alive
//! connection that made one request and went quiet (a player between two
//! reloads, or one a CDN keeps open), measured on the real proxy binary.
//!
//! ```text
//!  idleconns --spawns--> proxy (release) --routes--> fake origin (in process)
//!      |                      \--fetches--> packager routes on a temp folder (in process)
//!      +-- N connections, each: GET /live01/playlist.m3u8, read it whole, keep it open
//!      +-- proxy VmRSS (/proc/<pid>/status) and open descriptors before and at each step
//! ```
//!
//! The packager and the origin run inside this tool (the product's own
//! packager routes on a static playlist, and a one-route origin), so only
//! the proxy is measured. Connections are opened in steps (1,000, 5,000,
//! 10,000 by default) and the memory growth per connection is printed for
//! each: a figure for docs/BENCHMARKS.md, never a pass/fail.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warp::{Filter, Reply};

use crate::procfs::rss_kib;
use crate::ts::blank_packets;
use nonstop::pipeline::settings::{DEFAULT_PLAYLIST_LENGTH, DEFAULT_SEGMENT_SECONDS};
use nonstop::service::config::{HttpServer, ListenArgs};
use nonstop::service::shutdown::Shutdown;

/// Connections opened at once while stepping up.
const OPENING_CONCURRENCY: usize = 200;
/// Time left after each step for the proxy to settle before it is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Budget for one connection's request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Memory per idle viewer connection on the proxy.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "idleconns", version)]
pub struct IdleConfig {
    /// Connections held at each step, comma-separated, increasing.
    #[arg(long, default_value = "1000,5000,10000", value_delimiter = ',')]
    pub steps: Vec<usize>,
    /// The proxy program to measure (default: `proxy` beside this program).
    #[arg(long)]
    pub proxy: Option<PathBuf>,
}

/// The proxy's footprint with some connections open.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub connections: usize,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub descriptors: usize,
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn footprint(pid: u32, connections: usize) -> Result<Footprint, String> {
    Ok(Footprint {
        connections,
        rss_kib: rss_kib(pid).ok_or("the proxy's VmRSS cannot be read")?,
        descriptors: descriptors(pid),
    })
}

/// A live-looking playlist as the worker writes it by default
/// (`DEFAULT_PLAYLIST_LENGTH` segments of `DEFAULT_SEGMENT_SECONDS`), and
/// the segments.
fn write_output(root: &Path) -> std::io::Result<()> {
    const FIRST: usize = 100;
    let dir = root.join("live01");
    std::fs::create_dir_all(&dir)?;
    let mut playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{DEFAULT_SEGMENT_SECONDS}\n#EXT-X-MEDIA-SEQUENCE:{FIRST}\n"
    );
    for n in FIRST..FIRST + DEFAULT_PLAYLIST_LENGTH {
        playlist.push_str(&format!(
            "#EXTINF:{DEFAULT_SEGMENT_SECONDS}.000,\nsegment{n:06}.ts\n"
        ));
        std::fs::write(dir.join(format!("segment{n:06}.ts")), blank_packets(64))?;
    }
    std::fs::write(dir.join("playlist.m3u8"), playlist)
}

/// Serves `routes` on a free loopback port until `shutdown`; its base URL.
async fn serve<F>(routes: F, shutdown: &Shutdown) -> Result<String, String>
where
    F: Filter<Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let listen = ListenArgs {
        host: [127, 0, 0, 1].into(),
        max_connections: 1024,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        serve_threads: None,
        http_server: HttpServer::Nonstop,
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        nonstop::service::server::serve_on("idleconns", listener, &listen, routes, shutdown).await
    });
    Ok(base)
}

/// Opens one connection, asks for the playlist, reads the answer whole and
/// returns the connection, open.
async fn idle_viewer(port: u16) -> Result<TcpStream, String> {
    let work = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(b"GET /live01/playlist.m3u8 HTTP/1.1\r\nHost: proxy\r\nUser-Agent: idleconns\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut got = Vec::with_capacity(2048);
        let mut buf = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed before the answer was whole".to_string());
            }
            got.extend_from_slice(&buf[..n]);
            let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(head.lines().next().unwrap_or_default().to_string());
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("no content-length")?;
            if got.len() >= head_end + 4 + length {
                return Ok(stream);
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| "no whole answer in time".to_string())?
}

/// The proxy program, and a guard that stops it.
struct ProxyProcess(Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Runs the measurement and prints it; an error when it could not be made.
pub async fn run(config: IdleConfig) -> Result<Vec<Footprint>, String> {
    let files = nonstop::service::limits::raise_open_files();
    let most = config.steps.iter().copied().max().unwrap_or(0);
    if files.soft.is_some_and(|soft| soft < most as u64 + 100) {
        return Err(format!(
            "this tool may open only {:?} files, fewer than {most} connections need",
            files.soft
        ));
    }
    let proxy_path = match config.proxy {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("proxy"),
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    write_output(dir.path()).map_err(|e| e.to_string())?;
    let shutdown = Shutdown::new();
    let packager_routes = nonstop::net::packager::routes("server1", dir.path().to_path_buf());
    let packager = serve(packager_routes, &shutdown).await?;
    let answer = serde_json::json!({ "signal": "live01", "packagers": [packager.clone()] });
    let origin_routes = warp::path!("live" / String / "packagers")
        .map(move |_signal: String| warp::reply::json(&answer).into_response())
        .recover(nonstop::service::http::recover)
        .unify();
    let origin = serve(origin_routes, &shutdown).await?;

    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("proxy.log")).map_err(|e| e.to_string())?;
    let child = Command::new(&proxy_path)
        .env("PROXY_PORT", port.to_string())
        .env("ORIGIN_URL", &origin)
        .env("PACKAGERS", &packager)
        .env("LISTEN_HOST", "127.0.0.1")
        // Held for the whole run: hyper times the next request's head from
        // the moment it waits for it, so an idle keep-alive connection is
        // otherwise closed after the header timeout (10 s), long before a
        // run ends. A player reloading every target duration keeps its
        // connection all along, which is what is measured.
        .env("HTTP_IDLE_TIMEOUT_SECONDS", "3600")
        .env("HTTP_HEADER_TIMEOUT_SECONDS", "3600")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", proxy_path.display()))?;
    let proxy = ProxyProcess(child);
    let pid = proxy.0.id();

    // Warm up: the signal known, its playlist fetched, pools and caches made.
    let started = Instant::now();
    loop {
        match idle_viewer(port).await {
            Ok(_) => break,
            Err(e) if started.elapsed() > Duration::from_secs(10) => {
                return Err(format!("the proxy never served the playlist: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    for _ in 0..50 {
        drop(idle_viewer(port).await?);
    }
    tokio::time::sleep(SETTLE).await;
    let base = footprint(pid, 0)?;
    println!(
        "proxy {} (pid {pid}): {:.1} MiB resident, {} descriptors, before any idle connection",
        proxy_path.display(),
        base.rss_kib as f64 / 1024.0,
        base.descriptors
    );

    let mut held: Vec<TcpStream> = Vec::new();
    let mut rows = vec![base];
    for &target in &config.steps {
        while held.len() < target {
            let batch = (target - held.len()).min(OPENING_CONCURRENCY);
            let mut opening = tokio::task::JoinSet::new();
            for _ in 0..batch {
                opening.spawn(idle_viewer(port));
            }
            while let Some(result) = opening.join_next().await {
                let stream = result
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map_err(|e| format!("connection {}: {e}", held.len() + 1))?;
                held.push(stream);
            }
        }
        tokio::time::sleep(SETTLE).await;
        let now = footprint(pid, held.len())?;
        let grown = now.rss_kib.saturating_sub(base.rss_kib) as f64 * 1024.0;
        println!(
            "{:>6} idle connections: {:>7.1} MiB resident (+{:.1} MiB), {} descriptors, {:.1} KiB per connection",
            now.connections,
            now.rss_kib as f64 / 1024.0,
            grown / 1024.0 / 1024.0,
            now.descriptors,
            grown / now.connections.max(1) as f64 / 1024.0
        );
        let _ = std::io::stdout().flush();
        rows.push(now);
    }
    drop(held);
    drop(proxy);
    shutdown.trigger();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_resident_memory_is_read() {
        let kib = rss_kib(std::process::id()).expect("VmRSS");
        assert!(kib > 0);
    }
}
