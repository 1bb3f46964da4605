//! `gstplayer`: GStreamer's playbin playing a live HLS URL as a viewer; prints
//! one JSON report (see `--help` and `nonstop_lab::gst_player`).

use std::io::Write;

use clap::Parser;
use nonstop_lab::gst_player::{self, GstPlayerConfig};

fn main() {
    let config = GstPlayerConfig::parse();
    let code = match gst_player::play(&config) {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({ "started": false, "fatal_error": e })
            );
            1
        }
    };
    let _ = std::io::stdout().flush();
    // No teardown: a demuxer stuck on a hung server must not hold the report.
    std::process::exit(code);
}
