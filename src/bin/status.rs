//! `status`: prints signals, routes and packager freshness of the running stack (see `--help`).

use clap::Parser;
use nonstop::net::status::{self, StatusConfig};

#[tokio::main]
pub async fn main() {
    let config = StatusConfig::parse();
    let snapshot = status::snapshot(&config).await;
    print!("{}", status::render(&snapshot));
    if snapshot.signals.is_err() && snapshot.proxy.is_err() {
        std::process::exit(1);
    }
}
