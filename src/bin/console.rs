//! `console`: the operator's live web page over the stack (see `--help`).

use clap::Parser;
use nonstop::net::console::{self, ConsoleConfig};

#[tokio::main]
pub async fn main() {
    nonstop::service::logging::init();
    let config = ConsoleConfig::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = console::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
