//! `viewers`: a crowd of simulated HLS players against one base URL, with the
//! latency, failures and late segments they saw (see `--help`).

use clap::Parser;
use nonstop_lab::viewers::{self, ViewersConfig};

#[tokio::main]
async fn main() {
    let config = ViewersConfig::parse();
    let limit = viewers::raise_fd_limit();
    if (limit as usize) < config.viewers + 64 {
        eprintln!(
            "viewers: the open-file limit is {limit}, fewer than one socket per viewer ({}): \
             raise it with `ulimit -n`",
            config.viewers
        );
    }
    match viewers::run(&config).await {
        Ok(report) if config.json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serialises")
        ),
        Ok(report) => println!("{}", report.text()),
        Err(e) => {
            eprintln!("viewers: {e}");
            std::process::exit(1);
        }
    }
}
