//! nonstop's system tests: the real programs started on free ports and judged
//! from outside, one module per subject, all in one test binary (one link
//! instead of one per subject). Run one subject with
//! `cargo test -p nonstop-lab --test system <module>::`, e.g. `failover::`.
//!
//! Whole stacks, and the tests that encode beside them, take their turn with
//! [`nonstop_lab::stack_lock::ExclusiveStack`]: the lock is per open file, so
//! it serialises this binary's test threads as it serialises processes, and
//! no stack shares the machine with another.
//!
//! - [`stack`]: the seven services end to end, the seed's JSON contracts.
//! - [`failover`]: packager faults through the proxy, and a control without it.
//! - [`hosts`]: hosts in network namespaces: links cut, workers frozen or
//!   killed, folders wiped, hosts parted.
//! - [`down`], [`ended`]: the proxy's truth when every live edge stops, or ends.
//! - [`low_latency`]: a low-latency viewer's blocking reloads while a worker
//!   restarts or loses its folder: one window, never a short one.
//! - [`redundant`]: two epoch-locked workers write interchangeable segments.
//! - [`skew`]: a host whose clock is behind: shown, and serving alone.
//! - [`ladder`]: a bit-rate ladder served rendition by rendition, aligned,
//!   failing over per rendition.
//! - [`worker`]: the worker alone: looping, restarts, bad inputs, a full disk.
//! - [`balancer`]: three proxies behind nginx keep one story.
//! - [`browser`], [`console`], [`vlc`], [`webkit`]: real players and the
//!   operator's page through a packager kill (hls.js plain and low latency).
//! - [`steering`]: hls.js moves to the other proxy's pathway when its own
//!   proxy dies (Content Steering).
//! - [`throttle`]: hls.js down a ladder while the network is throttled and
//!   back up after, without a stall.
//! - [`resilience`], [`abuse`], [`limits`], [`metrics`], [`reporter`],
//!   [`viewers`], [`validate`]: static stability, abusive clients, server
//!   limits, metrics, Redis, a crowd, the HLS rules.
//! - [`fault_proxy`], [`player_probe`]: the lab's own tools over the wire.

mod abuse;
mod balancer;
mod browser;
mod console;
mod down;
mod ended;
mod failover;
mod fault_proxy;
mod hosts;
mod ladder;
mod limits;
mod low_latency;
mod metrics;
mod player_probe;
mod redundant;
mod reporter;
mod resilience;
mod skew;
mod stack;
mod steering;
mod throttle;
mod validate;
mod viewers;
mod vlc;
mod webkit;
mod worker;
