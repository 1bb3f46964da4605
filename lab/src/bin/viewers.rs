//! `viewers`: a crowd of simulated HLS players against one base URL, with the
//! latency, failures and late segments they saw; with `--low-latency`, players
//! doing blocking reloads part by part, with the release latency of each held
//! request (see `--help`).

use std::path::PathBuf;

use clap::Parser;
use nonstop_lab::viewers::low_latency;
use nonstop_lab::viewers::published::Published;
use nonstop_lab::viewers::{self, ViewersConfig};

#[derive(Debug, Parser)]
#[command(
    name = "viewers",
    version,
    about = "A crowd of simulated HLS players against one base URL: each polls the playlist every \
             target duration on its own keep-alive connection and fetches every new segment once; \
             with --low-latency, each does a blocking reload per part and fetches the part. \
             Prints latency (release latency of held reloads), failed requests, late segments \
             and, with --server-pid, the server's CPU and memory."
)]
struct Cli {
    #[command(flatten)]
    crowd: ViewersConfig,
    /// Low-latency players: the plain playlist once, then per part a
    /// blocking reload (?_HLS_msn=N&_HLS_part=K) and the part, as hls.js in
    /// low-latency mode; reports each held request's release latency.
    #[arg(long)]
    low_latency: bool,
    /// With --low-latency: the signal's folder the worker writes (the one
    /// the packagers serve), watched for each part's publication; without
    /// it, the first answer listing a part stands for its publication.
    #[arg(long, value_name = "DIR", requires = "low_latency")]
    published: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let config = &cli.crowd;
    let limit = viewers::raise_fd_limit();
    if (limit as usize) < config.viewers + 64 {
        eprintln!(
            "viewers: the open-file limit is {limit}, fewer than one socket per viewer ({}): \
             raise it with `ulimit -n`",
            config.viewers
        );
    }
    let printed = if cli.low_latency {
        let published = match cli.published.as_deref().map(|dir| {
            Published::watch(dir, "playlist.m3u8")
                .map_err(|e| format!("cannot watch {}: {e}", dir.display()))
        }) {
            Some(Err(e)) => fail(&e),
            Some(Ok(p)) => Some(p),
            None => None,
        };
        low_latency::run(config, published.as_ref())
            .await
            .map(|report| as_text_or_json(config.json, &report, report.text()))
    } else {
        viewers::run(config)
            .await
            .map(|report| as_text_or_json(config.json, &report, report.text()))
    };
    match printed {
        Ok(text) => println!("{text}"),
        Err(e) => fail(&e.to_string()),
    }
}

fn as_text_or_json(json: bool, report: &impl serde::Serialize, text: String) -> String {
    if json {
        serde_json::to_string_pretty(report).expect("a report serialises")
    } else {
        text
    }
}

fn fail(message: &str) -> ! {
    eprintln!("viewers: {message}");
    std::process::exit(1);
}
