//! `server2`: a packager serving OUTPUT_STREAM_PATH on SERVER_TWO_PORT (see `--help`).

use clap::Parser;
use nonstop::net::packager::{self, PackagerArgs};

/// Packager server2: serves the worker's live HLS output over HTTP.
#[derive(Parser)]
#[command(name = "server2", version)]
struct Config {
    /// Port to listen on.
    #[arg(long, env = "SERVER_TWO_PORT", default_value = "9090", value_parser = nonstop::service::config::parse_port)]
    port: u16,
    #[command(flatten)]
    packager: PackagerArgs,
}

#[tokio::main]
pub async fn main() {
    nonstop::service::logging::init();
    let config = Config::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = packager::run("server2", config.packager, config.port, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
