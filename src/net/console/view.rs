//! What the page shows: the state gathered every refresh (signals, packagers,
//! sources, timeline, fault controls) as the JSON the page reads, and the
//! pure functions that build it.

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;

use super::config::{ConsoleConfig, DemoFault, CONSOLE_MODES};
use super::{GONE, GONE_SHOWN_FOR, TIMELINE_CAPACITY};
use crate::api::PackagerStatus;

/// What the page shows, gathered every [`REFRESH_INTERVAL`](super::REFRESH_INTERVAL).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConsoleState {
    /// Local time of the gathering, `YYYY-MM-DD HH:MM:SS`.
    pub generated_at: String,
    /// Milliseconds between two states, so the page knows when one is late.
    pub refresh_ms: u64,
    /// Base of the URL the page plays: `<player_base>/<signal>/playlist.m3u8`.
    pub player_base: String,
    /// Whether the origin answered, and why not.
    pub origin: SourceView,
    /// Whether the proxy answered, and why not.
    pub proxy: SourceView,
    /// Every signal the origin lists or the proxy serves, by name.
    pub signals: Vec<SignalView>,
    /// Switches and faults, newest first.
    pub timeline: Vec<TimelineEntry>,
    pub faults: FaultsView,
    /// Each worker in `WORKERS`, in order: up or down, its signals' states,
    /// newest segments and how far behind the wall clock (empty without it).
    pub workers: Vec<crate::net::workers::WorkerView>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SourceView {
    pub url: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// One signal as the console sees it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SignalView {
    pub signal: String,
    /// The origin lists it (discovery found it live on some packager).
    pub live: bool,
    /// The proxy serves it (someone asked for it): its packagers are known.
    pub watched: bool,
    /// The proxy's verdict (up, degraded, down) while it serves the signal.
    pub state: Option<String>,
    /// Distinct clients watching through the proxy, while it serves the signal.
    pub viewers: Option<u64>,
    pub packagers: Vec<PackagerView>,
    /// With a ladder, each rendition's media playlist and its serving state
    /// (the proxy judges failover per rendition).
    pub renditions: Vec<RenditionView>,
}

/// One rendition of a ladder as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RenditionView {
    /// Its media playlist: `720p.m3u8`.
    pub playlist: String,
    /// The proxy's verdict for it: up, degraded, ended, down.
    pub state: String,
    /// Its packagers that are fresh now.
    pub fresh: usize,
    pub packagers: usize,
}

/// One packager of a signal, as the proxy's `GET /status` reports it
/// ([`PackagerStatus`]), or [`GONE`] when it left the routes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PackagerView {
    pub packager: String,
    /// The proxy's word ([`crate::api::PackagerHealth`]), or [`GONE`].
    pub health: String,
    pub active: bool,
    pub newest_sequence: Option<u64>,
    pub advanced_ms_ago: Option<u64>,
    /// How far the live edge (newest segment's end, by its date) is behind
    /// the wall clock; absent for undated playlists.
    pub edge_ms_ago: Option<u64>,
    /// How far its live edge is behind its freshest twin's, by their dates.
    pub behind_twin_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl From<&PackagerStatus> for PackagerView {
    fn from(p: &PackagerStatus) -> Self {
        PackagerView {
            packager: p.packager.clone(),
            health: p.health.name().to_string(),
            active: p.active,
            newest_sequence: p.newest_sequence,
            advanced_ms_ago: p.advanced_ms_ago,
            edge_ms_ago: p.edge_ms_ago,
            behind_twin_ms: p.behind_twin_ms,
            last_error: p.last_error.clone(),
        }
    }
}

/// Something that happened: the proxy switched packagers, or someone
/// triggered a fault from the console.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum TimelineEntry {
    Switch {
        at: String,
        signal: String,
        from: Option<String>,
        to: String,
        reason: String,
    },
    Fault {
        at: String,
        name: String,
        control: String,
        mode: String,
    },
}

impl TimelineEntry {
    pub(super) fn at(&self) -> &str {
        match self {
            TimelineEntry::Switch { at, .. } | TimelineEntry::Fault { at, .. } => at,
        }
    }
}

/// The fault controls as the page needs them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultsView {
    pub enabled: bool,
    pub modes: Vec<ModeView>,
    pub controls: Vec<ControlView>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModeView {
    pub mode: &'static str,
    /// The button's label.
    pub label: &'static str,
    pub help: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ControlView {
    pub name: String,
    pub control: String,
    /// The fault proxy's current mode, when it answered.
    pub mode: Option<String>,
    pub error: Option<String>,
}

/// Label and help of a mode's button.
pub(super) fn mode_view(mode: DemoFault) -> ModeView {
    let (label, help) = match mode {
        DemoFault::Reset => ("kill", "every connection is reset, as if the packager died"),
        DemoFault::Hang => ("hang", "requests are read and never answered"),
        DemoFault::Stale => ("stale", "its playlists freeze (200 OK, never advancing)"),
        DemoFault::Error500 => ("500s", "every request gets a 500"),
        DemoFault::None => ("restore", "back to normal"),
    };
    ModeView {
        mode: mode.name(),
        label,
        help,
    }
}

pub(super) fn faults_view(config: &ConsoleConfig, gathered: Vec<ControlView>) -> FaultsView {
    let enabled = !config.faults.0.is_empty() && config.fault_token.is_some();
    if !enabled {
        return FaultsView {
            enabled,
            modes: Vec::new(),
            controls: Vec::new(),
        };
    }
    let controls = if gathered.is_empty() {
        config
            .faults
            .0
            .iter()
            .map(|t| ControlView {
                name: t.name.clone(),
                control: t.control.clone(),
                mode: None,
                error: None,
            })
            .collect()
    } else {
        gathered
    };
    FaultsView {
        enabled,
        modes: CONSOLE_MODES.into_iter().map(mode_view).collect(),
        controls,
    }
}

pub(super) fn source_view<T>(url: &str, result: &Result<T, String>) -> SourceView {
    SourceView {
        url: url.to_string(),
        ok: result.is_ok(),
        error: result.as_ref().err().cloned(),
    }
}

/// The proxy's packagers for a signal, followed by those it routed the signal
/// to within [`GONE_SHOWN_FOR`] but no longer does, shown as [`GONE`]. `seen`
/// is the signal's memory of packagers and when they were last routed.
pub(super) fn with_gone(
    seen: &mut Vec<(String, Instant)>,
    mut current: Vec<PackagerView>,
    now: Instant,
) -> Vec<PackagerView> {
    for p in &current {
        match seen.iter_mut().find(|(base, _)| base == &p.packager) {
            Some(entry) => entry.1 = now,
            None => seen.push((p.packager.clone(), now)),
        }
    }
    seen.retain(|(_, at)| now.saturating_duration_since(*at) < GONE_SHOWN_FOR);
    for (base, _) in seen.iter() {
        if !current.iter().any(|p| &p.packager == base) {
            current.push(PackagerView {
                packager: base.clone(),
                health: GONE.to_string(),
                active: false,
                newest_sequence: None,
                advanced_ms_ago: None,
                edge_ms_ago: None,
                behind_twin_ms: None,
                last_error: Some(
                    "not in the proxy's routes any more (discovery stopped reporting it)".into(),
                ),
            });
        }
    }
    current
}

/// Adds an entry the timeline does not hold yet (the proxy reports its recent
/// switches at every poll), dropping the oldest beyond [`TIMELINE_CAPACITY`].
pub(super) fn remember(timeline: &mut VecDeque<TimelineEntry>, entry: TimelineEntry) {
    if timeline.contains(&entry) {
        return;
    }
    timeline.push_back(entry);
    while timeline.len() > TIMELINE_CAPACITY {
        timeline.pop_front();
    }
}

/// Newest first: by time (second resolution), then latest learnt first.
pub(super) fn newest_first(timeline: &VecDeque<TimelineEntry>) -> Vec<TimelineEntry> {
    let mut entries: Vec<TimelineEntry> = timeline.iter().rev().cloned().collect();
    entries.sort_by(|a, b| b.at().cmp(a.at()));
    entries
}
