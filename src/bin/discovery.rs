//! `discovery`: reports live signals and healthy packagers to the reporter (see `--help`).

use clap::Parser;
use nonstop::net::discovery::{self, DiscoveryConfig};

#[tokio::main]
pub async fn main() {
    nonstop::service::logging::init();
    let config = DiscoveryConfig::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = discovery::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
