//! Inputs added or removed while the worker runs: the set of running signals
//! and the rescan of INPUT_STREAM_PATH that keeps it equal to the folder's
//! `<name>.mp4` files.
//!
//! ```text
//! every 2 s: list *.mp4 + size/mtime --> Inputs::scan (pure) --> Start / Stop / Restart
//!                                                                  |      |      |
//!        probe, SignalRunner on its own thread (same settings) <---+      |      |
//!        stop flag, pipeline to NULL, thread joined, health forgotten, <--+      |
//!        playlist ended (EXT-X-ENDLIST)                                         |
//!        probe the new file; if it plays: stop, then start on it <--------------+
//! ```
//!
//! - A new file starts once it has settled: the same size and modification
//!   time in two scans in a row, so a file still being copied is never opened
//!   half written. It goes live within about two rescans.
//! - A file that fails its probe (or whose signal cannot start) is refused
//!   with one error line and tried again only once it changes: no tight loop.
//! - A removed file stops its signal with one INFO line; its `/healthcheck`
//!   entry and status gauges go. Its playlist keeps its last segments and
//!   gets `EXT-X-ENDLIST`: the event is over, so players play to its end and
//!   stop instead of waiting. (A proxy in front of redundant workers prefers
//!   a twin still live: a file removed on one host ends nothing for viewers.)
//!   Added back, the file starts the signal again: the playlist goes on
//!   after a discontinuity.
//! - Signals started here share the worker's [`EncodeSettings`], so they are
//!   epoch-locked ([`super::epoch`]) like the ones started with the worker.
//! - A file replaced while its signal runs (copied over, or a new file moved
//!   onto its name) restarts its signal on the new file once that has settled,
//!   with one INFO line; the epoch grid keeps the numbering, so players see one
//!   discontinuity. A replacement that fails its probe is refused with one
//!   error line and the signal keeps running as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::error::RunError;
use super::health::SignalHealth;
use super::input::{self, Input, InputError};
use super::settings::EncodeSettings;
use super::signal::{sleep_unless, SignalRunner};
use crate::service::shutdown::Shutdown;

/// How often the input folder is listed again.
pub const DEFAULT_RESCAN_EVERY: Duration = Duration::from_secs(2);

/// What a scan records of a file to tell whether it is still changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub size: u64,
    pub modified: Option<SystemTime>,
}

impl Fingerprint {
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Fingerprint {
            size: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// The folder's `.mp4` files by signal name, with their fingerprints. A file
/// that vanishes between the listing and its metadata is left out.
pub fn listing(folder: &Path) -> Result<BTreeMap<String, Fingerprint>, InputError> {
    Ok(input::mp4_files(folder)?
        .into_iter()
        .filter_map(|path| Some((input::signal_of(&path), Fingerprint::of(&path).ok()?)))
        .collect())
}

/// What a scan asks the worker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The file has settled: probe it and start its signal.
    Start(String, Fingerprint),
    /// The file is gone: stop its signal.
    Stop(String),
    /// The file of a running signal was replaced and has settled: probe it,
    /// then restart the signal on it.
    Restart(String),
}

/// What the scans know of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Seen once with this fingerprint; starts if the next scan sees the same.
    Settling(Fingerprint),
    /// Its signal runs, on the file as this fingerprint says (`None` until a
    /// scan has seen it, for signals the worker started itself).
    Live(Option<Fingerprint>),
    /// Its signal runs, but the file changed to this; restarts if the next
    /// scan sees the same.
    Replaced(Fingerprint),
    /// Failed to start with this fingerprint; waits until the file changes.
    Refused(Fingerprint),
}

/// The scan diff: previous knowledge + a listing -> start/stop decisions.
/// Pure (no I/O), so the settle and retry rules are unit tested.
#[derive(Debug, Default)]
pub struct Inputs {
    seen: BTreeMap<String, Seen>,
}

impl Inputs {
    /// Knowledge after the worker started these signals itself.
    pub fn live<'a>(signals: impl IntoIterator<Item = &'a str>) -> Self {
        Inputs {
            seen: signals
                .into_iter()
                .map(|s| (s.to_string(), Seen::Live(None)))
                .collect(),
        }
    }

    /// Compares a new listing with what earlier scans saw.
    pub fn scan(&mut self, listing: &BTreeMap<String, Fingerprint>) -> Vec<Decision> {
        let mut decisions = Vec::new();
        self.seen.retain(|signal, seen| {
            let present = listing.contains_key(signal);
            if !present && matches!(seen, Seen::Live(_) | Seen::Replaced(_)) {
                decisions.push(Decision::Stop(signal.clone()));
            }
            present
        });
        for (signal, &now) in listing {
            let next = match self.seen.get(signal) {
                None => Seen::Settling(now),
                Some(Seen::Live(None)) => Seen::Live(Some(now)),
                Some(Seen::Live(Some(running))) if *running == now => Seen::Live(Some(now)),
                Some(Seen::Live(Some(_))) => Seen::Replaced(now),
                Some(Seen::Replaced(before)) if *before == now => {
                    decisions.push(Decision::Restart(signal.clone()));
                    Seen::Live(Some(now))
                }
                Some(Seen::Replaced(_)) => Seen::Replaced(now),
                Some(Seen::Settling(before)) if *before == now => {
                    decisions.push(Decision::Start(signal.clone(), now));
                    Seen::Live(Some(now))
                }
                Some(Seen::Settling(_)) => Seen::Settling(now),
                Some(Seen::Refused(before)) if *before == now => Seen::Refused(now),
                Some(Seen::Refused(_)) => Seen::Settling(now),
            };
            self.seen.insert(signal.clone(), next);
        }
        decisions
    }

    /// `signal` could not start with the file as `fingerprint` says: do not
    /// try again until the file changes.
    pub fn refuse(&mut self, signal: &str, fingerprint: Fingerprint) {
        self.seen
            .insert(signal.to_string(), Seen::Refused(fingerprint));
    }
}

/// One running signal: its own stop flag and thread (which hands its
/// runner back when it ends).
struct Running {
    stop: Shutdown,
    thread: JoinHandle<SignalRunner>,
    path: PathBuf,
}

/// The running signals, each on its own thread, started with the same
/// output folder, settings and health.
pub struct Signals {
    output: PathBuf,
    settings: EncodeSettings,
    health: SignalHealth,
    running: BTreeMap<String, Running>,
}

/// Why a signal did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("signal '{0}' cannot start: {1}")]
    Runner(String, RunError),
    #[error("signal '{0}' cannot start: no thread: {1}")]
    Thread(String, std::io::Error),
}

impl Signals {
    pub fn new(output: &Path, settings: EncodeSettings, health: SignalHealth) -> Self {
        Signals {
            output: output.to_path_buf(),
            settings,
            health,
            running: BTreeMap::new(),
        }
    }

    /// The names of the running signals.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.running.keys().map(String::as_str)
    }

    /// Starts `input`'s signal on its own thread, logging what it encodes.
    pub fn start(&mut self, input: Input) -> Result<(), StartError> {
        self.launch(input, false)
    }

    /// [`Self::start`]; with `new_content`, the signal's playlist goes on
    /// after a discontinuity (its input was replaced).
    fn launch(&mut self, input: Input, new_content: bool) -> Result<(), StartError> {
        log::info!("{}", describe(&input));
        let signal = input.signal.clone();
        let path = input.path.clone();
        let mut runner = SignalRunner::new(
            input,
            &self.output,
            self.settings.clone(),
            self.health.clone(),
        )
        .map_err(|e| StartError::Runner(signal.clone(), e))?;
        if new_content {
            runner.follows_new_content();
        }
        let stop = Shutdown::new();
        let thread = std::thread::Builder::new()
            .name(format!("signal-{signal}"))
            .spawn({
                let stop = stop.clone();
                move || {
                    runner.run(&stop);
                    runner
                }
            })
            .map_err(|e| {
                self.health.remove(&signal);
                StartError::Thread(signal.clone(), e)
            })?;
        self.running.insert(signal, Running { stop, thread, path });
        Ok(())
    }

    /// Stops `signal` because its input was removed: pipeline to NULL,
    /// thread joined, health and status gauges forgotten, its playlist ended
    /// (`EXT-X-ENDLIST`: the event is over, players stop cleanly), one INFO
    /// line.
    pub fn stop(&mut self, signal: &str) {
        if let Some((path, runner)) = self.halt(signal) {
            if let Some(Err(e)) = runner.map(|mut r| r.end_stream()) {
                log::error!("Signal '{signal}': cannot end its playlist: {e}");
            }
            log::info!(
                "Signal '{signal}' stopped: its input {} was removed; its playlist ends there (EXT-X-ENDLIST)",
                path.display()
            );
        }
    }

    /// Restarts `signal` on `input`, the file that replaced its input: the
    /// old pipeline stops, then the new one starts, with one INFO line.
    pub fn restart(&mut self, input: Input) -> Result<(), StartError> {
        if self.halt(&input.signal).is_some() {
            log::info!(
                "Signal '{}': its input {} was replaced; restarting on the new file",
                input.signal,
                input.path.display()
            );
        }
        self.launch(input, true)
    }

    /// Stops `signal`'s pipeline and thread and forgets its health; the path
    /// it was playing and its runner (unless its thread panicked), or `None`
    /// if it was not running.
    fn halt(&mut self, signal: &str) -> Option<(PathBuf, Option<SignalRunner>)> {
        let running = self.running.remove(signal)?;
        running.stop.trigger();
        let runner = running.thread.join().ok();
        self.health.remove(signal);
        Some((running.path, runner))
    }

    /// Stops every signal (worker shutdown): all flags first, then the joins,
    /// so the pipelines wind down together.
    pub fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.trigger();
        }
        for (_, running) in std::mem::take(&mut self.running) {
            let _ = running.thread.join();
        }
    }
}

/// The line logged when a signal starts: file, size, duration, audio.
fn describe(input: &Input) -> String {
    format!(
        "Signal '{}': {} ({}x{}, {}{})",
        input.signal,
        input.path.display(),
        input.size.0,
        input.size.1,
        input
            .duration
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "unknown duration".into()),
        if input.has_audio {
            ", with audio"
        } else {
            ", video only"
        }
    )
}

/// Rescans `folder` every `every` until `shutdown`, starting and stopping
/// `signals` to match it; then stops them all.
pub fn watch(
    folder: &Path,
    mut signals: Signals,
    mut inputs: Inputs,
    shutdown: &Shutdown,
    every: Duration,
) {
    let mut listing_failed = false;
    loop {
        sleep_unless(shutdown, every);
        if shutdown.is_triggered() {
            break;
        }
        let listed = match listing(folder) {
            Ok(listed) => {
                if listing_failed {
                    log::info!("Input folder {} readable again", folder.display());
                }
                listing_failed = false;
                listed
            }
            Err(e) => {
                // Keep the signals running: a folder that blinks (a remount)
                // must not stop them all. Say it once, not every scan.
                if !listing_failed {
                    log::warn!("{e}; signals keep running, inputs not rescanned until it is back");
                }
                listing_failed = true;
                continue;
            }
        };
        let probe = |signal: &str| {
            input::probe(
                &input::path_of(folder, signal),
                input::DEFAULT_PROBE_TIMEOUT,
            )
        };
        for decision in inputs.scan(&listed) {
            match decision {
                Decision::Stop(signal) => signals.stop(&signal),
                Decision::Restart(signal) => {
                    match probe(&signal) {
                        Ok(replacement) => {
                            if let Err(e) = signals.restart(replacement) {
                                log::error!("{e}");
                            }
                        }
                        Err(e) => log::error!(
                            "{e}; signal '{signal}' keeps running as it is and its replaced input is not used until the file changes again"
                        ),
                    }
                }
                Decision::Start(signal, fingerprint) => {
                    let started = probe(&signal)
                        .map_err(|e| e.to_string())
                        .and_then(|i| signals.start(i).map_err(|e| e.to_string()));
                    if let Err(e) = started {
                        log::error!("{e}; signal '{signal}' not started until its file changes");
                        inputs.refuse(&signal, fingerprint);
                    }
                }
            }
        }
    }
    signals.stop_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(size: u64, secs: u64) -> Fingerprint {
        Fingerprint {
            size,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    fn list(files: &[(&str, Fingerprint)]) -> BTreeMap<String, Fingerprint> {
        files.iter().map(|(s, f)| (s.to_string(), *f)).collect()
    }

    #[test]
    fn a_new_file_starts_once_unchanged_across_two_scans() {
        let mut inputs = Inputs::live(["live01"]);
        let one = fp(1, 10);
        assert_eq!(inputs.scan(&list(&[("live01", one)])), vec![]);
        // Being copied: it grows, then its mtime moves at the same size.
        assert_eq!(
            inputs.scan(&list(&[("live01", one), ("live02", fp(100, 20))])),
            vec![]
        );
        assert_eq!(
            inputs.scan(&list(&[("live01", one), ("live02", fp(500, 21))])),
            vec![]
        );
        assert_eq!(
            inputs.scan(&list(&[("live01", one), ("live02", fp(500, 22))])),
            vec![]
        );
        assert_eq!(
            inputs.scan(&list(&[("live01", one), ("live02", fp(500, 22))])),
            vec![Decision::Start("live02".into(), fp(500, 22))]
        );
        // Running: nothing more while the file stays as it is.
        assert_eq!(
            inputs.scan(&list(&[("live01", one), ("live02", fp(500, 22))])),
            vec![]
        );
    }

    #[test]
    fn a_replaced_file_restarts_its_signal_once_it_has_settled() {
        // Started by the worker: the first scan learns its file.
        let mut inputs = Inputs::live(["live01"]);
        let first = fp(100, 1);
        assert_eq!(inputs.scan(&list(&[("live01", first)])), vec![]);
        assert_eq!(inputs.scan(&list(&[("live01", first)])), vec![]);
        // Copied over: it changes twice while being written, then settles.
        assert_eq!(inputs.scan(&list(&[("live01", fp(10, 5))])), vec![]);
        assert_eq!(inputs.scan(&list(&[("live01", fp(80, 6))])), vec![]);
        let second = fp(90, 7);
        assert_eq!(inputs.scan(&list(&[("live01", second)])), vec![]);
        assert_eq!(
            inputs.scan(&list(&[("live01", second)])),
            vec![Decision::Restart("live01".into())]
        );
        assert_eq!(inputs.scan(&list(&[("live01", second)])), vec![], "once");
        // Removed while a replacement settles: stopped, as it still runs.
        assert_eq!(inputs.scan(&list(&[("live01", fp(1, 9))])), vec![]);
        assert_eq!(
            inputs.scan(&list(&[])),
            vec![Decision::Stop("live01".into())]
        );
    }

    #[test]
    fn a_removed_file_stops_its_signal_once() {
        let mut inputs = Inputs::live(["live01", "live02"]);
        let one = fp(1, 10);
        assert_eq!(
            inputs.scan(&list(&[("live01", one)])),
            vec![Decision::Stop("live02".into())]
        );
        assert_eq!(inputs.scan(&list(&[("live01", one)])), vec![]);
        assert_eq!(
            inputs.scan(&list(&[])),
            vec![Decision::Stop("live01".into())]
        );
        assert_eq!(inputs.scan(&list(&[])), vec![]);
    }

    #[test]
    fn a_file_removed_before_it_settled_never_starts_or_stops() {
        let mut inputs = Inputs::default();
        assert_eq!(inputs.scan(&list(&[("live03", fp(5, 1))])), vec![]);
        assert_eq!(inputs.scan(&list(&[])), vec![]);
        // Back again: it settles from scratch.
        assert_eq!(inputs.scan(&list(&[("live03", fp(5, 1))])), vec![]);
        assert_eq!(
            inputs.scan(&list(&[("live03", fp(5, 1))])),
            vec![Decision::Start("live03".into(), fp(5, 1))]
        );
    }

    #[test]
    fn a_refused_file_is_retried_only_once_it_changes() {
        let mut inputs = Inputs::default();
        let bad = fp(7, 1);
        inputs.scan(&list(&[("broken", bad)]));
        assert_eq!(
            inputs.scan(&list(&[("broken", bad)])),
            vec![Decision::Start("broken".into(), bad)]
        );
        inputs.refuse("broken", bad);
        for _ in 0..5 {
            assert_eq!(
                inputs.scan(&list(&[("broken", bad)])),
                vec![],
                "no retry loop"
            );
        }
        // Fixed (copied again): settles, then starts.
        let fixed = fp(900, 2);
        assert_eq!(inputs.scan(&list(&[("broken", fixed)])), vec![]);
        assert_eq!(
            inputs.scan(&list(&[("broken", fixed)])),
            vec![Decision::Start("broken".into(), fixed)]
        );
        // A refused file removed is forgotten, with no stop (it never ran).
        inputs.refuse("broken", fixed);
        assert_eq!(inputs.scan(&list(&[])), vec![]);
    }

    #[test]
    fn a_removed_signal_added_back_starts_again() {
        let mut inputs = Inputs::live(["live01"]);
        assert_eq!(
            inputs.scan(&list(&[])),
            vec![Decision::Stop("live01".into())]
        );
        assert_eq!(inputs.scan(&list(&[("live01", fp(3, 4))])), vec![]);
        assert_eq!(
            inputs.scan(&list(&[("live01", fp(3, 4))])),
            vec![Decision::Start("live01".into(), fp(3, 4))]
        );
    }

    #[test]
    fn listing_names_each_mp4_by_signal_with_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("live01.mp4"), b"abc").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        let listed = listing(dir.path()).expect("listing");
        assert_eq!(listed.keys().collect::<Vec<_>>(), vec!["live01"]);
        assert_eq!(listed["live01"].size, 3);
        assert!(listing(&dir.path().join("missing")).is_err());
    }
}
