//! The process's open-files limit, sized for the connections a server is
//! allowed. Every connection is a file descriptor: a proxy for 10,000
//! viewers needs more than the 1,024 most shells and units start with.
//!
//! At a server's start ([`connection_capacity`]): the soft `RLIMIT_NOFILE` is
//! raised to the hard limit (allowed without privileges), the limit is
//! logged, and when even the hard limit cannot hold `MAX_CONNECTIONS` plus
//! [`RESERVED_FILES`], one warning says what to set, and the server takes
//! only the connections the limit allows, closing extra ones at once
//! instead of failing to accept them.

use std::sync::OnceLock;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept for everything but viewer connections: upstream
/// connections, files being read (a packager reads one per request, at
/// most one per blocking thread), logs.
pub(crate) const RESERVED_FILES: u64 = 1024;

/// The open-files limit after the raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// In force (`None`: unlimited).
    pub soft: Option<u64>,
    /// The most it may be raised to without privileges (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Raises the soft limit to the hard one, once per process, and returns
/// the limit in force.
pub fn raise_open_files() -> OpenFiles {
    static RAISED: OnceLock<OpenFiles> = OnceLock::new();
    *RAISED.get_or_init(|| {
        let before = getrlimit(Resource::Nofile);
        if before.current != before.maximum {
            let raised = Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                log::warn!(
                    "Cannot raise the open-files limit from {} to {}: {e}",
                    show(before.current),
                    show(before.maximum)
                );
            }
        }
        let after = getrlimit(Resource::Nofile);
        OpenFiles {
            soft: after.current,
            hard: after.maximum,
        }
    })
}

/// Descriptors `max_connections` connections need, with [`RESERVED_FILES`].
pub(crate) fn files_needed(max_connections: usize) -> u64 {
    max_connections as u64 + RESERVED_FILES
}

/// How many connections `service` may hold given `MAX_CONNECTIONS` and the
/// open-files limit (raised first): `max_connections`, or fewer when the
/// limit cannot hold them, with a warning saying what to set.
pub(crate) fn connection_capacity(service: &str, max_connections: usize) -> usize {
    let files = raise_open_files();
    let (capacity, warning) = capacity_within(files, max_connections);
    match warning {
        Some(text) => log::warn!("{service}: {text}"),
        None => log::info!(
            "{service}: open-files limit {} (hard {}), up to {max_connections} connections",
            show(files.soft),
            show(files.hard)
        ),
    }
    capacity
}

/// The pure part of [`connection_capacity`]: the connections the limit
/// holds, and the warning when that is fewer than asked.
pub(crate) fn capacity_within(files: OpenFiles, max_connections: usize) -> (usize, Option<String>) {
    let needed = files_needed(max_connections);
    let Some(soft) = files.soft.filter(|soft| *soft < needed) else {
        return (max_connections, None);
    };
    let capacity = soft.saturating_sub(RESERVED_FILES).max(1) as usize;
    let warning = format!(
        "the open-files limit is {soft} (hard limit {}), but MAX_CONNECTIONS={max_connections} \
         needs {needed}: serving at most {capacity} connections. Raise the hard limit to \
         {needed} or more (`ulimit -Hn {needed}` as root before starting, `LimitNOFILE={needed}` \
         in a systemd unit, `--ulimit nofile={needed}` for docker run) or lower MAX_CONNECTIONS",
        show(files.hard)
    );
    (capacity, Some(warning))
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let files = raise_open_files();
        assert_eq!(files.soft, files.hard);
        assert_eq!(getrlimit(Resource::Nofile).current, files.hard);
    }

    #[test]
    fn a_limit_too_low_for_the_connections_is_said_and_respected() {
        let roomy = OpenFiles {
            soft: Some(1 << 20),
            hard: Some(1 << 20),
        };
        assert_eq!(capacity_within(roomy, 16384), (16384, None));
        let unlimited = OpenFiles {
            soft: None,
            hard: None,
        };
        assert_eq!(capacity_within(unlimited, 16384), (16384, None));

        let tight = OpenFiles {
            soft: Some(4096),
            hard: Some(4096),
        };
        let (capacity, warning) = capacity_within(tight, 16384);
        assert_eq!(capacity, 4096 - RESERVED_FILES as usize);
        let warning = warning.expect("a warning");
        assert!(warning.contains("MAX_CONNECTIONS=16384"), "{warning}");
        assert!(warning.contains("LimitNOFILE=17408"), "{warning}");
        assert!(warning.contains("ulimit -Hn 17408"), "{warning}");
    }
}
