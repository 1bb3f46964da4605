//! `validate`: watches a live HLS playlist and prints every violation of
//! Apple's authoring rules and RFC 8216 it sees; exit 1 if any (see `--help`).

use clap::Parser;
use nonstop_lab::validate::{self, ValidateConfig};

#[tokio::main]
async fn main() {
    nonstop::service::logging::init();
    let config = ValidateConfig::parse();
    let url = config.url.clone();
    let shutdown = nonstop::service::shutdown::Shutdown::on_signals();
    let report = match validate::validate(config, shutdown).await {
        Ok(report) => report,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "{url}: {} playlists read, {} segments checked, {} violations",
        report.playlists_read,
        report.segments_checked,
        report.violations.len()
    );
    if report.ended {
        println!("{url}: the stream ended (EXT-X-ENDLIST); the watch stopped there");
    }
    for (times, v) in report.summary() {
        println!("  [{}] {} ({times}x, e.g. {})", v.rule, v.message, v.at);
    }
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
