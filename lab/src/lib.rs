//! nonstop's test lab: the tools that judge the product from outside, kept out
//! of the product crate and its image.
//!
//! # Layout
//! The tools, each with a thin program in `src/bin/`:
//! - [`fault_proxy`]: a fault-injecting HTTP proxy put in front of a packager
//!   (dead, hung, frozen, 500s, cut bodies, resets...), switched at run time
//!   (`faultproxy`).
//! - [`probe`]: the player probe, which plays a live playlist as a viewer would
//!   and reports stalls, failed requests, regressions, skips and repeats
//!   (`probe`).
//! - [`demux`]: pushes one segment through GStreamer's tsdemux and parsers, so
//!   the probe can tell whether a viewer would get pictures and sound from it.
//! - [`ts`]: the lab's one MPEG-TS reader (packets, PES timestamps, the first
//!   picture, continuity counters).
//! - [`validate`]: a live HLS validator (Apple's authoring rules, RFC 8216)
//!   (`validate`).
//! - [`viewers`]: a crowd of simulated players (thousands of keep-alive
//!   connections) against one URL (`viewers`, `just bench-viewers`).
//! - [`idle`]: what an idle viewer connection costs the proxy in memory
//!   (`idleconns`, `just bench-idle`).
//! - [`gst_player`]: GStreamer's own player (`playbin`, `hlsdemux`) playing a
//!   URL to clock-synced fake sinks, judged by its rendered pictures
//!   (`gstplayer`).
//!
//! What the system tests (`tests/system/`) and benchmarks (`benches/`) share:
//! - [`fault`]: every fault the lab injects as one type (packager, worker,
//!   host, control plane), injected and cleared the same way everywhere.
//! - [`workspace`]: where things are: the workspace root, the programs built
//!   beside the running test, test artifacts.
//! - [`ports`]: free ports, and the ports a stack's programs share.
//! - [`process`]: the programs as child processes: logs, signals, waiting
//!   for exit, stopped on drop.
//! - [`wait`]: polling until something holds, never a guessed sleep.
//! - [`http`]: blocking GETs, JSON, metrics scrapes, waiting until healthy.
//! - [`input`]: short MP4 inputs made with GStreamer.
//! - [`redis`]: a throwaway `redis-server`.
//! - [`stack`]: a whole stack on free ports (seed or redundant topology,
//!   with or without a fault proxy).
//! - [`stack_lock`]: one whole stack at a time, across threads and processes.
//! - [`player_judging`]: stalls from rendered pictures, failed requests
//!   counted once from a player's log.
//! - [`player_process`]: a player program (the probe, a browser driver) run in
//!   the background and waited on until it says it plays.
//! - [`real_players`]: real players no one here wrote, driven from outside: VLC
//!   through its remote interface, WebKit (Safari's engine) through WebDriver.
//! - [`nginx`]: Debian's nginx run with a generated config (the failover
//!   bench's baseline, the balancer test's round robin).
//! - [`netns`]: hosts on one machine (network namespaces on a switch) whose
//!   links a test can cut, for faults between hosts rather than processes.
//! - [`procfs`]: what `/proc` says about a process (resident memory), for the
//!   benches that measure servers from outside.

pub mod demux;
pub mod fault;
pub mod fault_proxy;
pub mod gst_player;
pub mod http;
pub mod idle;
pub mod input;
pub mod netns;
pub mod nginx;
pub mod player_judging;
pub mod player_process;
pub mod ports;
pub mod probe;
pub mod process;
pub mod procfs;
pub mod real_players;
pub mod redis;
pub mod stack;
pub mod stack_lock;
pub mod ts;
pub mod validate;
pub mod viewers;
pub mod wait;
pub mod workspace;
