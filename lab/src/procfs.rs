//! What `/proc` says about a process, for the benches that measure servers
//! from outside: its resident memory.

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`),
/// or `None` when the process is gone or the line cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory_and_a_gone_one_has_none() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
