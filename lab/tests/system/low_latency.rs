//! A low-latency viewer through the proxy of the redundant topology while
//! worker A restarts, then while its folder is wiped: each time A comes back
//! listing only what it made since (one segment, then two...), beside B's
//! full window. The viewer does what hls.js in low-latency mode does, a
//! blocking reload for the part after the newest it knows, then that part,
//! and must see one story: every reload answered, the window's start never
//! going back and never jumping ahead of what it was given (a short window
//! served moves the start past the playhead: hls.js then jumped 10 s to the
//! live edge and stalled 17 s in `just bench-failover`), every part served.

use std::time::{Duration, Instant};

use nonstop::hls::PlaylistFacts;
use nonstop_lab::fault::{Fault, WorkerFault};
use nonstop_lab::http::get;
use nonstop_lab::stack::{Role, Stack, StackOptions};
use nonstop_lab::wait::wait_for;

/// Answered reloads before each fault: the viewer is playing parts.
const RELOADS_BEFORE_FAULT: usize = 8;
/// Answered reloads after each fault: A is back (it restarts within a few
/// seconds) and lists a short window for a while (one 2 s segment more
/// every five 0.4 s parts).
const RELOADS_AFTER_FAULT: usize = 40;
/// A restarted worker's window is full again within its length (6
/// segments of 2 s) and some slack.
const WINDOW_REFILLED_WITHIN: Duration = Duration::from_secs(40);
/// Newest segments a window lists once full (the product's default).
const FULL_WINDOW: usize = nonstop::pipeline::settings::DEFAULT_PLAYLIST_LENGTH;

/// The viewer: the copy it plays from, and what it saw go wrong.
struct Viewer {
    url: String,
    facts: PlaylistFacts,
    answered: usize,
    faults: Vec<String>,
}

impl Viewer {
    fn join(url: String) -> Viewer {
        let (status, body) = get(&url).expect("the proxy answers");
        assert_eq!(status, 200, "joining: {}", String::from_utf8_lossy(&body));
        let facts = PlaylistFacts::parse(&body).expect("a media playlist");
        assert!(
            facts.low_latency.is_some(),
            "the stack's playlists list parts"
        );
        Viewer {
            url,
            facts,
            answered: 0,
            faults: Vec::new(),
        }
    }

    /// One blocking reload for the part after the newest known, judged,
    /// then the newest part it lists fetched.
    fn reload(&mut self, at: Instant) {
        let next = self.facts.next_sequence();
        let part = self
            .facts
            .low_latency
            .as_ref()
            .map_or(0, |ll| ll.of_segment(next).count());
        let asked = format!("{}?_HLS_msn={next}&_HLS_part={part}", self.url);
        let when = at.elapsed().as_secs_f64();
        let Some((status, body)) = get(&asked) else {
            self.faults.push(format!("{when:.1} s: {asked}: no answer"));
            return;
        };
        if status != 200 {
            let text = String::from_utf8_lossy(&body);
            self.faults
                .push(format!("{when:.1} s: {asked}: {status} {text}"));
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        let Ok(facts) = PlaylistFacts::parse(&body) else {
            self.faults
                .push(format!("{when:.1} s: {asked}: not a playlist"));
            return;
        };
        let (before, after) = (self.facts.media_sequence, facts.media_sequence);
        if after < before {
            self.faults.push(format!(
                "{when:.1} s: window start went back {before} -> {after}"
            ));
        }
        if after > before + 1 {
            self.faults.push(format!(
                "{when:.1} s: window start jumped {before} -> {after} ({} segments listed)",
                facts.segments.len()
            ));
        }
        let newest = facts
            .low_latency
            .as_ref()
            .and_then(|ll| ll.parts.last())
            .map(|p| p.uri.clone());
        if let Some(part) = newest {
            let url = self.url.replace("playlist.m3u8", &part);
            match get(&url) {
                Some((200, _)) => {}
                other => self.faults.push(format!(
                    "{when:.1} s: part {part}: {:?}",
                    other.map(|(s, _)| s)
                )),
            }
        }
        self.facts = facts;
        self.answered += 1;
    }

    fn reloads(&mut self, count: usize, at: Instant) {
        for _ in 0..count {
            self.reload(at);
        }
    }
}

/// Segments worker A's own playlist lists, read at its packager.
fn listed_by_a(stack: &Stack) -> Option<usize> {
    let (status, body) = get(&stack.url(Role::Server1, "live01/playlist.m3u8"))?;
    (status == 200).then_some(())?;
    Some(PlaylistFacts::parse(&body).ok()?.segments.len())
}

#[test]
fn a_low_latency_viewer_sees_one_window_while_a_worker_restarts_or_loses_its_folder() {
    let mut stack = Stack::start(StackOptions::redundant());
    stack.wait_for_window(FULL_WINDOW);
    let started = Instant::now();
    let mut viewer = Viewer::join(stack.proxy_url("live01/playlist.m3u8"));
    for fault in [WorkerFault::Restarted, WorkerFault::FolderWiped] {
        wait_for(WINDOW_REFILLED_WITHIN, "worker A's window full", || {
            listed_by_a(&stack).filter(|&n| n >= FULL_WINDOW)
        });
        viewer.reloads(RELOADS_BEFORE_FAULT, started);
        stack.inject(Fault::Worker(fault));
        // Between reloads, how short worker A's own window got: the test
        // proves nothing unless the viewer reloaded while it was short.
        let mut shortest = usize::MAX;
        for _ in 0..RELOADS_AFTER_FAULT {
            viewer.reload(started);
            if let Some(listed) = listed_by_a(&stack) {
                shortest = shortest.min(listed);
            }
        }
        eprintln!(
            "{}: {} reloads answered so far; worker A listed as few as {shortest} segments meanwhile",
            Fault::Worker(fault).name(),
            viewer.answered
        );
        assert!(
            shortest < FULL_WINDOW,
            "worker A never listed a short window after {}: nothing was tested",
            Fault::Worker(fault).name()
        );
    }
    assert!(
        viewer.faults.is_empty(),
        "the low-latency viewer saw:\n{}\n--- stack ---\n{}",
        viewer.faults.join("\n"),
        stack.logs()
    );
}
