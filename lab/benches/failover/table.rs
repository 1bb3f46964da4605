//! The results: one row per fault, player and proxy, printed as a table
//! with nonstop and nginx side by side, and the target's verdict.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::players::{Outcome, Player};
use super::{millis, Fault, Proxy, FAULTS, SOURCE_GAP_NOTE};

/// One line of the table and of the JSON.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) fault: &'static str,
    pub(crate) player: &'static str,
    pub(crate) proxy: &'static str,
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
    /// Longest extra wait for the playlist to advance during the fault; None
    /// when it never advanced again before the fault was cleared.
    pub(crate) time_to_switch_ms: Option<u64>,
    /// The control: the longest extra wait for packager B's own playlist to
    /// advance, asked directly, during the whole watch. Above zero, the worker
    /// or the machine paused, and every player and proxy saw it.
    pub(crate) source_extra_gap_ms: Option<u64>,
    /// Which of `--runs` this row is from (1 for the first).
    pub(crate) run: u32,
    #[serde(skip)]
    pub(crate) fault_index: usize,
    #[serde(skip)]
    pub(crate) player_index: usize,
    #[serde(skip)]
    pub(crate) proxy_index: usize,
}

impl Row {
    pub(crate) fn new(
        fault: Fault,
        player: Player,
        proxy: Proxy,
        outcome: Outcome,
        switch: Option<Duration>,
    ) -> Row {
        Row {
            fault: fault.name(),
            player: player.name(),
            proxy: proxy.name(),
            outcome,
            time_to_switch_ms: switch.map(millis),
            source_extra_gap_ms: None,
            run: 1,
            fault_index: FAULTS.iter().position(|f| *f == fault).unwrap_or(0),
            player_index: Player::ALL.iter().position(|p| *p == player).unwrap_or(0),
            proxy_index: Proxy::ALL.iter().position(|p| *p == proxy).unwrap_or(0),
        }
    }

    pub(crate) fn failed(fault: Fault, player: Player, proxy: Proxy, note: &str) -> Row {
        Row::new(fault, player, proxy, Outcome::unmeasured(note), None)
    }
}

/// The table: one row per fault and player, nonstop and nginx side by side.
pub(crate) fn print_table(rows: &[Row], out: &mut dyn Write) {
    let mut keys: Vec<(usize, u32, usize, &str, &str)> = rows
        .iter()
        .map(|r| (r.fault_index, r.run, r.player_index, r.fault, r.player))
        .collect();
    keys.sort();
    keys.dedup();
    let proxies: Vec<Proxy> = Proxy::ALL
        .into_iter()
        .filter(|p| rows.iter().any(|r| r.proxy == p.name()))
        .collect();
    let num = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
    let runs = rows.iter().map(|r| r.run).max().unwrap_or(1);
    let mut header = format!("{:<17} {:<13}", "fault", "player");
    let mut rule = format!("{:<17} {:<13}", "", "");
    for p in &proxies {
        header.push_str(&format!(
            " | {:<7} {:>6} {:>8} {:>6} {:>8}",
            p.name(),
            "stalls",
            "stall ms",
            "failed",
            "switch s"
        ));
        rule.push_str(" | ----------------------------------------");
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{rule}");
    let mut notes = Vec::new();
    let mut noted_sources = Vec::new();
    for (_, run, _, fault, player) in keys {
        let label = if runs > 1 {
            format!("{fault} #{run}")
        } else {
            fault.to_string()
        };
        let source = rows
            .iter()
            .filter(|r| r.fault == fault && r.run == run)
            .filter_map(|r| r.source_extra_gap_ms)
            .max()
            .unwrap_or(0);
        if millis(SOURCE_GAP_NOTE) < source && !noted_sources.contains(&label) {
            noted_sources.push(label.clone());
            notes.push(format!(
                "{label}: packager B's own playlist paused {:.1} s longer than a segment (the worker or the machine, seen by every row of {label})",
                source as f64 / 1000.0
            ));
        }
        let mut line = format!("{label:<17} {player:<13}");
        for p in &proxies {
            match rows.iter().find(|r| {
                r.fault == fault && r.run == run && r.player == player && r.proxy == p.name()
            }) {
                Some(r) => {
                    let o = &r.outcome;
                    let switch = r
                        .time_to_switch_ms
                        .map_or("-".to_string(), |ms| format!("{:.1}", ms as f64 / 1000.0));
                    let mark = if o.clean() { " " } else { "*" };
                    line.push_str(&format!(
                        " | {:<7}{mark}{:>6} {:>8} {:>6} {:>8}",
                        "",
                        num(o.stalls),
                        num(o.stall_ms),
                        num(o.failed_requests),
                        switch
                    ));
                    if !o.note.is_empty() {
                        notes.push(format!("{label}/{player}/{}: {}", p.name(), o.note));
                    }
                }
                None => line.push_str(&format!(" | {:<40}", "")),
            }
        }
        let _ = writeln!(out, "{line}");
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for n in notes {
            let _ = writeln!(out, "  {n}");
        }
    }
}

/// The target, checked: zero stalls and zero failed requests everywhere.
pub(crate) fn verdict(rows: &[Row]) -> String {
    Proxy::ALL
        .into_iter()
        .filter_map(|p| {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.proxy == p.name()).collect();
            (!mine.is_empty()).then(|| {
                format!(
                    "{}: {}/{} clean rows (0 stalls, 0 failed requests, no failed check)",
                    p.name(),
                    mine.iter().filter(|r| r.outcome.clean()).count(),
                    mine.len()
                )
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}
