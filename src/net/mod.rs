//! The HTTP services, one module or folder each, in data-path order.
//!
//! - [`packager`]: serves the worker's output tree (server1 and server2).
//! - [`playlist_watch`]: playlists on disk watched for blocking reloads.
//! - [`delivery`]: how packagers and proxy answer media (types, caching,
//!   CORS, Last-Modified, gzip playlists).
//! - [`discovery`]: finds live signals and healthy packagers, reports them.
//! - [`reporter`]: keeps the latest report per signal, with expiry, in memory
//!   or in Redis; [`auth`] is the token that guards it.
//! - [`origin`]: answers which packager serves a signal.
//! - [`proxy`]: what players talk to; a request's life, routes from the
//!   origin, the poller, its failover state machine, budgeted upstream
//!   fetches and segment cache live in its folder.
//! - [`console`]: the operator's live web page over the proxy's failover
//!   state, with fault controls for localhost demos.
//! - [`status`]: the operator's table of the running stack, for a terminal.

pub(crate) mod auth;
pub mod console;
pub(crate) mod delivery;
pub mod discovery;
pub mod origin;
pub mod packager;
pub mod playlist_watch;
pub mod proxy;
pub mod reporter;
pub mod status;
pub(crate) mod workers;
