//! `faultproxy`: a fault-injecting HTTP proxy in front of a packager, switched
//! at run time through `PUT /_fault/<mode>` (see `--help`).

use clap::Parser;
use nonstop::net::fault::{self, FaultConfig};

#[tokio::main]
async fn main() {
    nonstop::logging::init();
    let config = FaultConfig::parse();
    let shutdown = nonstop::shutdown::Shutdown::on_signals();
    if let Err(e) = fault::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
