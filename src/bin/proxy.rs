//! `proxy`: what players talk to; fails over between packagers (see `--help`).

use clap::Parser;
use nonstop::net::proxy::{self, ProxyConfig};

#[tokio::main]
pub async fn main() {
    nonstop::service::logging::init();
    let config = ProxyConfig::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = proxy::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
