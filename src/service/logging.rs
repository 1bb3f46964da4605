//! Log lines in the seed's style: `2024-04-05 11:23:05 INF Registered signal ...`.
//!
//! The level comes from `RUST_LOG` (default `info`); every service logs through
//! the `log` crate with its own target, so `RUST_LOG=nonstop::net::proxy=debug`
//! isolates one part.

use std::io::Write;

/// Installs the logger once; later calls are ignored (tests may call it often).
pub fn init() {
    // hyper reports every client that dropped an idle connection at warn;
    // that is routine for a server, so it speaks at error unless RUST_LOG
    // asks for more.
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .filter_module("hyper", log::LevelFilter::Error)
        .parse_env(env_logger::Env::default())
        .format(|buf, record| {
            let level = match record.level() {
                log::Level::Error => "ERR",
                log::Level::Warn => "WRN",
                log::Level::Info => "INF",
                log::Level::Debug => "DBG",
                log::Level::Trace => "TRC",
            };
            writeln!(
                buf,
                "{} {} {}",
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
                level,
                record.args()
            )
        })
        .try_init();
}
