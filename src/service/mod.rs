//! What every nonstop program shares, whichever half of the data path it is on.
//!
//! - [`config`]: flags backed by environment variables, checked at start.
//! - [`server`]: the HTTP accept loop every service runs (timeouts, connection
//!   bound, drain on shutdown).
//! - `http1`: the HTTP/1.1 connection the accept loop serves, holding no
//!   buffer while a keep-alive connection waits.
//! - [`limits`]: the open-files limit raised and checked against the
//!   connections a server may hold.
//! - [`http`]: JSON errors, CORS, the health route and the outgoing client.
//! - [`metrics`]: the Prometheus registry helpers, the request metrics every
//!   server shares and `GET /metrics` (each service's own metrics sit beside
//!   its code).
//! - [`logging`]: the seed's log line format (`2024-04-05 11:23:05 INF ...`).
//! - [`shutdown`]: one shutdown signal shared by every task.

pub mod config;
pub mod http;
pub(crate) mod http1;
pub mod limits;
pub mod logging;
pub(crate) mod metrics;
pub mod server;
pub mod shutdown;
