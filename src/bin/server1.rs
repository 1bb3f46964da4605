//! `server1`: a packager serving OUTPUT_STREAM_PATH on SERVER_ONE_PORT (see `--help`).

use clap::Parser;
use nonstop::net::packager::{self, PackagerArgs};

/// Packager server1: serves the worker's live HLS output over HTTP.
#[derive(Parser)]
#[command(name = "server1", version)]
struct Config {
    /// Port to listen on.
    #[arg(long, env = "SERVER_ONE_PORT", default_value = "8080", value_parser = nonstop::service::config::parse_port)]
    port: u16,
    #[command(flatten)]
    packager: PackagerArgs,
}

#[tokio::main]
pub async fn main() {
    nonstop::service::logging::init();
    let config = Config::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = packager::run("server1", config.packager, config.port, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
