//! HTTP services and clients, one module per service, plus what they share.
//!
//! - [`packager`]: serves the worker's output tree (server1 and server2).
//! - [`discovery`]: finds live signals and healthy packagers, reports them.
//! - [`reporter`]: keeps the latest report per signal, with expiry; [`store`]
//!   holds it in memory or in Redis.
//! - [`origin`]: answers which packager serves a signal.
//! - [`proxy`]: what players talk to; [`failover`] is its pure decision core and
//!   [`upstream`] its budgeted fetches from packagers.
//! - [`hls`]: reading live playlists; [`http`]: shared HTTP helpers;
//!   [`config`]: flag and environment parsing shared by the services.
//! - [`console`]: the operator's console, a live web page over the proxy's
//!   failover state, with fault controls for localhost demos.
//! - [`fault`]: a fault-injecting HTTP proxy put in front of a packager by tests
//!   and benchmarks; [`player`]: a player probe that judges a stream as a viewer.

pub mod auth;
pub mod config;
pub mod console;
pub mod discovery;
pub mod failover;
pub mod fault;
pub mod hls;
pub mod http;
pub mod metrics;
pub mod origin;
pub mod packager;
pub mod player;
pub mod proxy;
pub mod reporter;
pub mod server;
pub mod status;
pub mod store;
pub mod upstream;
