//! nonstop's test lab: the tools that judge the product from outside, kept out
//! of the product crate and its image.
//!
//! # Layout
//! - [`fault_proxy`]: a fault-injecting HTTP proxy put in front of a packager (dead,
//!   hung, frozen, 500s, cut bodies, resets...), switched at run time.
//! - [`nginx`]: nginx from Debian in front of a stack's packagers, the
//!   baseline the benches compare the proxy with (conventional or caching).
//! - [`probe`]: the player probe, which plays a live playlist as a viewer would and
//!   reports stalls, failed requests, regressions, skips and repeats.
//! - [`demux`]: pushes one segment through GStreamer's tsdemux and parsers, so
//!   the probe can tell whether a viewer would get pictures and sound from it.
//! - [`validate`]: a live HLS validator (Apple's authoring rules, RFC 8216);
//!   [`ts`] reads just enough MPEG-TS for it (first PTS, IDR first).
//! - [`real_players`]: real players no one here wrote, driven from outside: VLC
//!   through its remote interface, WebKit (Safari's engine) through WebDriver.
//! - [`nginx`]: Debian's nginx run with a generated config (the failover
//!   bench's baseline, the balancer test's round robin).
//! - [`idle`]: what an idle viewer connection costs the proxy in memory
//!   (`just bench-idle`).
//! - [`netns`]: hosts on one machine (network namespaces on a switch) whose
//!   links a test can cut, for faults between hosts rather than processes.
//! - [`procfs`]: what `/proc` says about a process (resident memory), for the
//!   benches that measure servers from outside.
//! - [`support`]: what the system tests and benchmarks share: free ports,
//!   generated inputs, the real programs started as child processes, whole
//!   stacks on free ports, and the probe driven until it says it plays.
//! - [`viewers`]: a crowd of simulated players (thousands of keep-alive
//!   connections) against one URL, for `just bench-viewers`.
//!
//! The programs in `src/bin/` (`faultproxy`, `probe`, `validate`, `idleconns`,
//! `viewers`) are thin; the system
//! tests are in `tests/`, the benchmarks (`just bench-*`) in `benches/`.

pub mod demux;
pub mod fault_proxy;
pub mod idle;
pub mod netns;
pub mod nginx;
pub mod probe;
pub mod real_players;
pub mod procfs;
pub mod support;
pub mod ts;
pub mod validate;
pub mod viewers;
