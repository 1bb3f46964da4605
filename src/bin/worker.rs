//! `worker`: encodes `INPUT_STREAM_PATH/<signal>.mp4` into live HLS (see `--help`).

use clap::Parser;
use nonstop::pipeline::worker::{self, WorkerConfig};

#[tokio::main]
async fn main() {
    nonstop::service::logging::init();
    let config = WorkerConfig::parse();
    if config.print_pipeline {
        match worker::printed_pipelines(&config) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                log::error!("{e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    if let Err(e) = worker::run(config, shutdown).await {
        log::error!("{e}");
        std::process::exit(1);
    }
}
