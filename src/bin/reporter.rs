//! `reporter`: keeps discovery's reports and serves `GET /ingests` (see `--help`).

use clap::Parser;
use nonstop::net::reporter::{self, ReporterConfig};

#[tokio::main]
pub async fn main() {
    nonstop::service::logging::init();
    let config = ReporterConfig::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = reporter::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
