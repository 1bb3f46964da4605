//! nginx in front of the same two packagers, configured the conventional way
//! (round robin, `proxy_next_upstream`): the baseline nonstop's proxy is
//! compared with. Launching nginx is the lab's ([`nonstop_lab::nginx`]).

use super::*;

pub(crate) use nonstop_lab::nginx::{nginx_bin, Nginx};

/// nginx as Debian installs it, configured the conventional way.
pub(crate) const NGINX_TEMPLATE: &str = include_str!("../../bench/nginx.conf.template");

/// nginx with [`NGINX_TEMPLATE`] in front of packagers A and B, serving the
/// playlist.
pub(crate) fn start_nginx(packager_a: &str, packager_b: &str, logs: &Path) -> Nginx {
    let host = |url: &str| {
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    };
    let nginx = Nginx::start(
        NGINX_TEMPLATE,
        &[
            ("{{packager_a}}", host(packager_a)),
            ("{{packager_b}}", host(packager_b)),
        ],
        logs,
    );
    let url = nginx.url("live01/playlist.m3u8");
    wait_for(
        Duration::from_secs(10),
        "nginx serving the playlist",
        || {
            let (status, _) = common::get(&url)?;
            (status == 200).then_some(())
        },
    );
    nginx
}
