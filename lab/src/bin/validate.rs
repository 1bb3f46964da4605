//! `validate`: watches a live HLS playlist (a multivariant playlist: every
//! rendition it names) and prints every violation of Apple's authoring
//! rules, RFC 8216 and its low-latency second edition it sees, then the
//! warnings; exit 1 if any violation (see `--help`).

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
        "{url}: {} playlists read, {} segments checked, {} violations, {} warnings",
        report.playlists_read,
        report.segments_checked,
        report.violations.len(),
        report.warnings.len()
    );
    if report.media_playlists.len() > 1 {
        println!("  media playlists: {}", report.media_playlists.join(", "));
    }
    for v in &report.variants {
        let or_none = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        println!(
            "  {}: BANDWIDTH {} (peak measured {}), CODECS {} (segments: {}), RESOLUTION {} (SPS: {})",
            v.uri,
            v.bandwidth.map_or("-".into(), |b| b.to_string()),
            v.peak_bps.map_or("-".into(), |b| b.to_string()),
            or_none(&v.codecs),
            v.codecs_measured.join(","),
            or_none(&v.resolution),
            or_none(&v.resolution_measured),
        );
    }
    if report.ended {
        println!("{url}: the stream ended (EXT-X-ENDLIST); the watch stopped there");
    }
    for (times, v) in report.summary() {
        println!("  [{}] {} ({times}x, e.g. {})", v.rule, v.message, v.at);
    }
    for (times, v) in report.warnings_summary() {
        println!(
            "  warning [{}] {} ({times}x, e.g. {})",
            v.rule, v.message, v.at
        );
    }
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
