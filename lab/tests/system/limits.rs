//! Every server holds under abusive clients: a slowloris client or an idle
//! connection is cut after its timeout, oversized heads are refused, and the
//! connection bound keeps a flood from exhausting the process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nonstop_lab::http::{get, wait_healthy};
use nonstop_lab::ports::free_port;
use nonstop_lab::process::Service;
use nonstop_lab::wait::wait_for;
use nonstop_lab::workspace::bin;

fn packager(dir: &std::path::Path, max_connections: u32) -> (Service, u16) {
    std::fs::create_dir_all(dir.join("output")).expect("mkdir");
    let port = free_port();
    let service = Service::start(
        "server1",
        &bin("server1"),
        &[],
        &[
            ("SERVER_ONE_PORT", port.to_string()),
            (
                "OUTPUT_STREAM_PATH",
                dir.join("output").display().to_string(),
            ),
            ("LISTEN_HOST", "127.0.0.1".to_string()),
            ("MAX_CONNECTIONS", max_connections.to_string()),
            ("HTTP_HEADER_TIMEOUT_SECONDS", "1".to_string()),
            ("HTTP_IDLE_TIMEOUT_SECONDS", "2".to_string()),
        ],
        dir,
    );
    wait_healthy(port);
    (service, port)
}

/// Seconds until the server closes `stream` (reads return 0 or fail).
fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn a_slowloris_client_is_cut_after_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = packager(dir.path(), 64);
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let closed = closed_after(&mut slow, Duration::from_secs(8));
    assert!(
        closed.is_some(),
        "a request head that never ends holds the connection"
    );
}

#[test]
fn an_idle_connection_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = packager(dir.path(), 64);
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert!(closed_after(&mut idle, Duration::from_secs(8)).is_some());
}

#[test]
fn oversized_request_heads_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = packager(dir.path(), 64);
    let mut big = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let header = format!(
        "GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(header.as_bytes());
    big.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "a 64 KiB header was served: {text}"
    );
}

#[test]
fn connections_beyond_the_bound_are_closed_and_service_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = packager(dir.path(), 2);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(("127.0.0.1", port)).expect("the kernel accepts");
    let _ = extra.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n");
    let closed = closed_after(&mut extra, Duration::from_secs(1));
    assert!(
        closed.is_some(),
        "a third connection was served beyond the bound of 2"
    );
    drop(held);
    wait_for(Duration::from_secs(10), "service to return", || {
        get(&format!("http://127.0.0.1:{port}/healthcheck")).filter(|(s, _)| *s == 200)
    });
}
