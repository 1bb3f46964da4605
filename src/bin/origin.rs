//! `origin`: answers which packager serves a signal (see `--help`).

use clap::Parser;
use nonstop::net::origin::{self, OriginConfig};

#[tokio::main]
pub async fn main() {
    nonstop::service::logging::init();
    let config = OriginConfig::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = origin::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
