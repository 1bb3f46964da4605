//! A throwaway `redis-server` for the tests where reporters share a store:
//! on a free port of 127.0.0.1, saving nothing, stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;
use crate::wait::wait_for;

/// How long redis-server may take to listen once started.
const LISTENING_WITHIN: Duration = Duration::from_secs(10);

/// A running `redis-server`; killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts it with `dir` as its working folder and waits until it listens.
    pub fn start(dir: &Path) -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(RedisServer::args(port))
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh)");
        wait_for(LISTENING_WITHIN, "redis-server", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        RedisServer { child, port }
    }

    /// The command line of a redis-server on `port` of 127.0.0.1 that saves
    /// nothing (its folder still to be given with `--dir`), for a caller
    /// that starts it elsewhere (on a host of [`crate::netns`]).
    pub fn args(port: u16) -> Vec<String> {
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from)
        .to_vec()
    }

    /// `redis://127.0.0.1:<port>`, what `REPORTER_STORE` takes.
    pub fn url(&self) -> String {
        store_url(self.port)
    }
}

/// `redis://127.0.0.1:<port>`, what `REPORTER_STORE` takes.
pub fn store_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
