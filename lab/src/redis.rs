//! A throwaway `redis-server` for the tests where reporters share a store:
//! on a free port of 127.0.0.1, saving nothing, stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;
use crate::wait::wait_for;

/// A throwaway `redis-server` on a free port of 127.0.0.1, saving nothing,
/// stopped on drop: the reporter's shared store in the tests that need one.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts it with `dir` as its working folder and waits until it listens.
    pub fn start(dir: &Path) -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh)");
        wait_for(Duration::from_secs(10), "redis-server", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        RedisServer { child, port }
    }

    /// `redis://127.0.0.1:<port>`, what `REPORTER_STORE` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
