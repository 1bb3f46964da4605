//! One whole stack at a time: a lock on a file in the target folder that
//! every whole stack holds for its life, whatever runs the tests (threads of
//! one binary, several binaries, nextest).

use std::path::{Path, PathBuf};

use crate::workspace::target_dir;

/// Name of the lock file, in the target folder, that whole stacks take in turn.
const STACK_LOCK_FILE: &str = "nonstop-lab-stack.lock";

/// The path of the lock whole stacks take in turn.
fn stack_lock_path() -> PathBuf {
    target_dir().join(STACK_LOCK_FILE)
}

/// The right to run several real services at once, held for a whole stack's
/// life: an exclusive lock on one file in the target folder. Cargo runs one
/// binary's tests in parallel threads (and nextest runs binaries in
/// parallel); two seven-process stacks at once on a small machine make each
/// other stall, and the tests assert zero stalls. The lock is per open file,
/// so it serialises threads of one process as well as processes; the kernel
/// drops it when the holder dies, so a crashed test never leaves it taken.
#[derive(Debug)]
pub struct ExclusiveStack {
    /// The open, locked file; closing it (on drop) releases the lock.
    _file: std::fs::File,
}

impl ExclusiveStack {
    /// Waits until no other stack runs, in this process or another, and takes
    /// the turn.
    pub fn acquire() -> ExclusiveStack {
        let path = stack_lock_path();
        let file = open_lock_file(&path);
        file.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        ExclusiveStack { _file: file }
    }

    /// Takes the turn only when nobody holds it right now.
    #[cfg(test)]
    fn try_acquire() -> Option<ExclusiveStack> {
        let file = open_lock_file(&stack_lock_path());
        file.try_lock()
            .ok()
            .map(|()| ExclusiveStack { _file: file })
    }
}

fn open_lock_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;

    /// Whether another process can take the stack lock right now, asked with
    /// util-linux `flock`, which uses the same kind of lock as `File::lock`.
    fn another_process_can_lock() -> bool {
        Command::new("flock")
            .arg("--nonblock")
            .arg(stack_lock_path())
            .arg("true")
            .status()
            .expect("flock (util-linux) runs")
            .success()
    }

    #[test]
    fn a_second_stack_waits_until_the_first_is_gone() {
        let held = ExclusiveStack::acquire();
        assert!(
            ExclusiveStack::try_acquire().is_none(),
            "another thread of this process got the lock"
        );
        assert!(!another_process_can_lock(), "another process got the lock");

        let (sender, waited) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let guard = ExclusiveStack::acquire();
            let _ = sender.send(());
            guard
        });
        assert!(
            waited.recv_timeout(Duration::from_millis(300)).is_err(),
            "a second acquire returned while the first guard is held"
        );
        drop(held);
        waited
            .recv_timeout(Duration::from_secs(5))
            .expect("the waiting acquire returns once the first guard is dropped");
        let second = waiter.join().expect("waiter thread");
        assert!(!another_process_can_lock());
        drop(second);
        assert!(another_process_can_lock(), "the lock outlived its guards");
    }
}
