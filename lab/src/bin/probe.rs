//! `probe`: plays a live HLS playlist as a viewer would and prints a JSON report
//! of what the viewer went through (see `--help`).

use clap::Parser;
use nonstop_lab::probe::{self, ProbeConfig};

#[tokio::main]
async fn main() {
    nonstop::service::logging::init();
    let config = ProbeConfig::parse();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    let report = match probe::play(config, shutdown).await {
        Ok(report) => report,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(1);
        }
    };
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            log::error!("cannot write the report: {e}");
            std::process::exit(1);
        }
    }
}
