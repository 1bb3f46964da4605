//! nginx in front of the same two packagers, configured the conventional way
//! (round robin, `proxy_next_upstream`): the baseline nonstop's proxy is
//! compared with. The lab's [`nonstop_lab::nginx`] runs it.

use std::path::Path;

use nonstop_lab::nginx::NginxSettings;
pub(crate) use nonstop_lab::nginx::{nginx_bin, Nginx};

/// nginx as Debian installs it, configured the conventional way.
pub(crate) fn start_conventional(packager_a: &str, packager_b: &str, logs: &Path) -> Nginx {
    Nginx::in_front_of_packagers(&NginxSettings::conventional(), packager_a, packager_b, logs)
}
