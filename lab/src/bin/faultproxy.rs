//! `faultproxy`: a fault-injecting HTTP proxy in front of a packager, switched
//! at run time through `PUT /_fault/<mode>` (see `--help`).

use clap::Parser;
use nonstop_lab::fault_proxy::{self, FaultConfig};

#[tokio::main]
async fn main() {
    nonstop::service::logging::init();
    let config = FaultConfig::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = fault_proxy::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
