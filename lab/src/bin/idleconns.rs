//! `idleconns`: memory per idle viewer connection on the release proxy
//! (`just bench-idle`; see `--help`).

use clap::Parser;
use nonstop_lab::idle::{self, IdleConfig};

#[tokio::main]
async fn main() {
    nonstop::service::logging::init();
    let config = IdleConfig::parse();
    if let Err(e) = idle::run(config).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
