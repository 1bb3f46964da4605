//! Every fault the lab injects, as one type: on packager A (a mode of its
//! fault proxy, or its process killed or stopped), on worker A (killed,
//! stopped, restarted, its folder wiped, its input removed), on host A's
//! network (its link cut, hosts a and b parted) or on the control plane (the
//! reporter, origin or discovery killed).
//!
//! ```text
//!   test / bench ── Fault ──▶ Fault::inject(target) ──▶ FaultTarget (a Stack, the hosts lab)
//!                                                        ├─ fault proxy: PUT /_fault/<FaultMode>
//!                                                        ├─ a process: SIGKILL / SIGSTOP / SIGCONT
//!                                                        ├─ a folder or an input file
//!                                                        └─ the network: nftables
//! ```
//!
//! What a fault does, and what clearing it undoes, is decided here once;
//! each topology ([`crate::stack::Stack`] on one machine, the hosts lab of
//! `tests/system/hosts.rs` across network namespaces) only says where its
//! packager, worker and links are ([`FaultTarget`]). Each fault has a name
//! (the failover bench's `--faults` list, its output folders), one
//! [`Display`](fmt::Display)/[`FromStr`] pair, round-trip tested.
//!
//! The console's demo faults (`nonstop::net::console::DemoFault`: reset,
//! hang, stale, error500, none) are modes of the fault proxy: the same names
//! as [`FaultMode`]'s, which a test here pins.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::fault_proxy::FaultMode;
use crate::process::{Service, Signal};

/// The signal every fault here is done to.
const SIGNAL: &str = "live01";

/// A fault, wherever it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Packager A misbehaves.
    Packager(PackagerFault),
    /// Worker A, its folder or its input fails.
    Worker(WorkerFault),
    /// Host A's network fails.
    Host(HostFault),
    /// A program of the control plane is killed.
    ControlPlane(ControlPlane),
}

/// What happens to packager A: what its fault proxy does to requests, or
/// what happens to its process (the fault proxy's, or the packager's own
/// when it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackagerFault {
    /// Its fault proxy answers in this mode (stale, error500, segment404,
    /// slow, cut, reset, hang); cleared by the mode `none`.
    Mode(FaultMode),
    /// SIGKILL: connections refused from then on; cleared by starting it again.
    Killed,
    /// SIGSTOP: connections accepted by the kernel, never answered; cleared
    /// by SIGCONT.
    Stopped,
}

/// What happens to worker A (the only worker in the seed's topology).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerFault {
    /// SIGKILL: its packager serves a playlist that no longer advances,
    /// whose newest `EXT-X-PROGRAM-DATE-TIME` grows old; cleared by starting
    /// it again on the same folders.
    Killed,
    /// SIGSTOP (a frozen encoder); cleared by SIGCONT.
    Stopped,
    /// SIGKILL and a new worker at once, as a supervisor would: it rejoins
    /// the wall clock with the same numbering. Over once done.
    Restarted,
    /// `rm -rf` of its signal's folder while it runs: it makes it again on
    /// its next pipeline run. Over once done.
    FolderWiped,
    /// Its input file moved aside (a name it does not read): it ends its
    /// playlist (`EXT-X-ENDLIST`); cleared by putting the file back (it
    /// starts again after a discontinuity).
    InputRemoved,
}

/// What happens to host A's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFault {
    /// Its link cut: every packet to and from it dropped, so connections go
    /// silent instead of being refused; cleared by restoring the link.
    LinkCut,
    /// Hosts a and b parted from each other (each drops the other's
    /// packets) while both still reach the rest; cleared by healing.
    Partition,
}

/// A program of the control plane, killed (SIGKILL) and, when cleared,
/// started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlane {
    Reporter,
    Origin,
    /// Discovery A (the only one in the seed's topology).
    Discovery,
}

impl Fault {
    /// Every fault, in the order the failover bench lists them.
    pub const ALL: [Fault; 19] = [
        Fault::Packager(PackagerFault::Killed),
        Fault::Packager(PackagerFault::Stopped),
        Fault::Packager(PackagerFault::Mode(FaultMode::Stale)),
        Fault::Packager(PackagerFault::Mode(FaultMode::Error500)),
        Fault::Packager(PackagerFault::Mode(FaultMode::Segment404)),
        Fault::Packager(PackagerFault::Mode(FaultMode::Slow)),
        Fault::Packager(PackagerFault::Mode(FaultMode::Cut)),
        Fault::Packager(PackagerFault::Mode(FaultMode::Reset)),
        Fault::Packager(PackagerFault::Mode(FaultMode::Hang)),
        Fault::Worker(WorkerFault::Killed),
        Fault::Worker(WorkerFault::Stopped),
        Fault::Worker(WorkerFault::Restarted),
        Fault::Worker(WorkerFault::FolderWiped),
        Fault::Worker(WorkerFault::InputRemoved),
        Fault::Host(HostFault::LinkCut),
        Fault::Host(HostFault::Partition),
        Fault::ControlPlane(ControlPlane::Reporter),
        Fault::ControlPlane(ControlPlane::Origin),
        Fault::ControlPlane(ControlPlane::Discovery),
    ];

    /// The fault's name: a packager mode's is the fault proxy's own name for
    /// it (`stale`, `hang`...), the others say what is hit (`kill` and
    /// `stop` for packager A's process, `worker-kill`, `link-cut`...).
    pub fn name(self) -> &'static str {
        match self {
            Fault::Packager(PackagerFault::Mode(mode)) => mode.name(),
            Fault::Packager(PackagerFault::Killed) => "kill",
            Fault::Packager(PackagerFault::Stopped) => "stop",
            Fault::Worker(WorkerFault::Killed) => "worker-kill",
            Fault::Worker(WorkerFault::Stopped) => "worker-stop",
            Fault::Worker(WorkerFault::Restarted) => "worker-restart",
            Fault::Worker(WorkerFault::FolderWiped) => "wipe",
            Fault::Worker(WorkerFault::InputRemoved) => "input-removed",
            Fault::Host(HostFault::LinkCut) => "link-cut",
            Fault::Host(HostFault::Partition) => "partition",
            Fault::ControlPlane(ControlPlane::Reporter) => "reporter-kill",
            Fault::ControlPlane(ControlPlane::Origin) => "origin-kill",
            Fault::ControlPlane(ControlPlane::Discovery) => "discovery-kill",
        }
    }

    /// What is hit, for progress lines.
    pub fn target(self) -> &'static str {
        match self {
            Fault::Packager(_) => "packager A",
            Fault::Worker(WorkerFault::FolderWiped) => "worker A's folder",
            Fault::Worker(WorkerFault::InputRemoved) => "worker A's input",
            Fault::Worker(_) => "worker A",
            Fault::Host(HostFault::LinkCut) => "host A's link",
            Fault::Host(HostFault::Partition) => "the link between hosts a and b",
            Fault::ControlPlane(ControlPlane::Reporter) => "the reporter",
            Fault::ControlPlane(ControlPlane::Origin) => "the origin",
            Fault::ControlPlane(ControlPlane::Discovery) => "discovery A",
        }
    }

    /// Does the fault to `target`. A kill is a SIGKILL sent, not waited
    /// for: a caller that needs the process gone waits for it; a program
    /// started again in its place waits for the old one first.
    pub fn inject(self, target: &mut impl FaultTarget) {
        match self {
            Fault::Packager(PackagerFault::Mode(mode)) => target.set_packager_mode(mode),
            Fault::Packager(PackagerFault::Killed) => target.packager().signal(Signal::Kill),
            Fault::Packager(PackagerFault::Stopped) => target.packager().signal(Signal::Stop),
            Fault::Worker(WorkerFault::Killed) => target.worker().signal(Signal::Kill),
            Fault::Worker(WorkerFault::Stopped) => target.worker().signal(Signal::Stop),
            Fault::Worker(WorkerFault::Restarted) => {
                target.worker().signal(Signal::Kill);
                target.restart_worker();
            }
            Fault::Worker(WorkerFault::FolderWiped) => {
                // Moved aside in one step, then removed: removing it in place
                // races the worker, which may write a file into it between
                // remove_dir_all's emptying and its rmdir ("Directory not
                // empty", seen once with 1 s segments).
                let folder = target.worker_output().join(SIGNAL);
                let aside = target.worker_output().join(format!(".{SIGNAL}.wiped"));
                match std::fs::rename(&folder, &aside) {
                    Ok(()) => std::fs::remove_dir_all(&aside)
                        .unwrap_or_else(|e| panic!("cannot wipe {}: {e}", aside.display())),
                    // Not there (the worker has yet to make it again): as wiped.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("cannot wipe {}: {e}", folder.display()),
                }
            }
            Fault::Worker(WorkerFault::InputRemoved) => {
                let (input, aside) = input_and_aside(&target.worker_input());
                std::fs::rename(&input, &aside)
                    .unwrap_or_else(|e| panic!("cannot move {} aside: {e}", input.display()));
            }
            Fault::Host(HostFault::LinkCut) => target.cut_link(),
            Fault::Host(HostFault::Partition) => target.part(),
            Fault::ControlPlane(program) => target.control_plane(program).signal(Signal::Kill),
        }
    }

    /// Undoes the fault on `target` where something lasts: a mode back to
    /// `none`, SIGCONT after SIGSTOP, a killed program started again, the
    /// input put back, the link restored. False when there is nothing to
    /// undo (a restart or a wipe is over once done).
    pub fn clear(self, target: &mut impl FaultTarget) -> bool {
        match self {
            Fault::Packager(PackagerFault::Mode(_)) => target.set_packager_mode(FaultMode::None),
            Fault::Packager(PackagerFault::Killed) => target.restart_packager(),
            Fault::Packager(PackagerFault::Stopped) => target.packager().signal(Signal::Cont),
            Fault::Worker(WorkerFault::Killed) => target.restart_worker(),
            Fault::Worker(WorkerFault::Stopped) => target.worker().signal(Signal::Cont),
            Fault::Worker(WorkerFault::Restarted | WorkerFault::FolderWiped) => return false,
            Fault::Worker(WorkerFault::InputRemoved) => {
                let (input, aside) = input_and_aside(&target.worker_input());
                std::fs::rename(&aside, &input)
                    .unwrap_or_else(|e| panic!("cannot put {} back: {e}", input.display()));
            }
            Fault::Host(HostFault::LinkCut) => target.restore_link(),
            Fault::Host(HostFault::Partition) => target.heal(),
            Fault::ControlPlane(program) => target.restart_control_plane(program),
        }
        true
    }
}

/// The signal's input file in `folder`, and where [`WorkerFault::InputRemoved`]
/// moves it (a name the worker does not read).
fn input_and_aside(folder: &Path) -> (PathBuf, PathBuf) {
    (
        folder.join(format!("{SIGNAL}.mp4")),
        folder.join(format!("{SIGNAL}.mp4.removed")),
    )
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault name that is not one of [`Fault::ALL`]'s; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault '{given}' (expected one of: {expected})")]
pub struct UnknownFault {
    given: String,
    expected: String,
}

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == s)
            .ok_or_else(|| UnknownFault {
                given: s.to_string(),
                expected: Fault::ALL.map(Fault::name).join(", "),
            })
    }
}

impl From<PackagerFault> for Fault {
    fn from(fault: PackagerFault) -> Fault {
        Fault::Packager(fault)
    }
}

impl From<FaultMode> for Fault {
    fn from(mode: FaultMode) -> Fault {
        Fault::Packager(PackagerFault::Mode(mode))
    }
}

impl From<WorkerFault> for Fault {
    fn from(fault: WorkerFault) -> Fault {
        Fault::Worker(fault)
    }
}

impl From<HostFault> for Fault {
    fn from(fault: HostFault) -> Fault {
        Fault::Host(fault)
    }
}

impl From<ControlPlane> for Fault {
    fn from(program: ControlPlane) -> Fault {
        Fault::ControlPlane(program)
    }
}

/// Where a topology's faults land: packager A, worker A and its folders,
/// host A's links, the control plane. [`crate::stack::Stack`] is one; a
/// topology without a part (no fault proxy, one machine with no hosts to
/// part) panics saying so when a fault asks for it.
pub trait FaultTarget {
    /// Switches packager A's fault proxy to `mode`.
    fn set_packager_mode(&mut self, mode: FaultMode);
    /// Packager A's process: its fault proxy's, or its own when it has none.
    fn packager(&mut self) -> &mut Service;
    /// Starts packager A's process again, as it was started.
    fn restart_packager(&mut self);
    /// Worker A's process.
    fn worker(&mut self) -> &mut Service;
    /// Starts worker A again, on the same folders, in place of the old one
    /// (which must be gone first).
    fn restart_worker(&mut self);
    /// The folder worker A reads its inputs from.
    fn worker_input(&self) -> PathBuf;
    /// The folder worker A writes its signals' folders in.
    fn worker_output(&self) -> PathBuf;
    /// Cuts host A's link: packets to and from it dropped.
    fn cut_link(&mut self);
    /// Restores host A's link.
    fn restore_link(&mut self);
    /// Parts hosts a and b from each other.
    fn part(&mut self);
    /// Heals the partition.
    fn heal(&mut self);
    /// A program of the control plane.
    fn control_plane(&mut self, program: ControlPlane) -> &mut Service;
    /// Starts a program of the control plane again, as it was started.
    fn restart_control_plane(&mut self, program: ControlPlane);
}

/// Packets to and from one loopback port dropped with nftables, as a cut
/// link drops them: no reset, no refusal, silence. On one machine, packager
/// A's port stands for its host ([`HostFault::LinkCut`] on a
/// [`crate::stack::Stack`]); the hosts lab cuts real links instead.
pub mod loopback_cut {
    use std::process::{Command, Stdio};

    /// The table holding the drop rules; one cut at a time.
    const TABLE: &str = "nonstop_lab_link_cut";

    /// Drops every packet to and from `port` until [`restore`].
    pub fn cut(port: u16) {
        restore();
        let rules = format!(
            "table inet {TABLE} {{\n\
             \tchain output {{ type filter hook output priority 0; tcp dport {port} drop; tcp sport {port} drop; }}\n\
             }}\n"
        );
        if let Err(e) = crate::netns::load_rules(None, &rules) {
            panic!("nft refused the link-cut rules (a link cut needs root and nftables from scripts/setup.sh): {e}");
        }
    }

    /// Removes the cut, if there is one.
    pub fn restore() {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", TABLE])
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nonstop::net::console::{DemoFault, CONSOLE_MODES};

    #[test]
    fn fault_names_round_trip() {
        for fault in Fault::ALL {
            assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault));
        }
        let names: std::collections::HashSet<&str> = Fault::ALL.map(Fault::name).into();
        assert_eq!(names.len(), Fault::ALL.len(), "two faults share a name");
    }

    #[test]
    fn every_fault_proxy_mode_but_none_is_a_fault_under_its_own_name() {
        for mode in FaultMode::ALL {
            let fault = Fault::from(mode);
            if mode == FaultMode::None {
                assert!(!Fault::ALL.contains(&fault), "'none' is no fault");
            } else {
                assert!(Fault::ALL.contains(&fault), "{mode} missing");
                assert_eq!(fault.name(), mode.name());
            }
        }
    }

    #[test]
    fn unknown_faults_are_refused_with_the_valid_names() {
        let error = "hung".parse::<Fault>().expect_err("not a fault");
        let message = error.to_string();
        assert!(message.contains("'hung'"), "{message}");
        for fault in Fault::ALL {
            assert!(message.contains(fault.name()), "{message}");
        }
    }

    /// The console's demo faults are fault proxy modes under the same names:
    /// the console speaks the fault proxy's control API without its code.
    #[test]
    fn the_consoles_demo_faults_are_fault_proxy_modes() {
        for demo in CONSOLE_MODES {
            let mode: FaultMode = demo
                .name()
                .parse()
                .unwrap_or_else(|e| panic!("console mode {demo}: {e}"));
            assert_eq!(mode.name(), demo.to_string());
        }
        assert_eq!(DemoFault::None.name(), FaultMode::None.name());
    }
}
