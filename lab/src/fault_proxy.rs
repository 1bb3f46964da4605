//! A fault-injecting HTTP proxy that tests and benchmarks put in front of a
//! packager. It shows the failover proxy and the player probe a packager that
//! freezes, fails, loses segments, stalls, cuts bodies short, resets
//! connections or hangs, whenever they ask for it.
//!
//! ```text
//!   client ──▶ faultproxy (raw TCP, one request per connection) ──reqwest──▶ packager
//!                 ▲
//!                 └── GET /_fault, PUT /_fault/<mode>   (control API, never faulted)
//! ```
//!
//! It sits on a raw [`TcpListener`] instead of warp because some faults happen
//! below HTTP: a body shorter than its `Content-Length`, a TCP reset, a request
//! that never gets an answer. Deciding what a mode does to a request is the pure
//! [`FaultMode::action`], unit-tested without sockets; the I/O around it is
//! thin.
//!
//! # Control API
//! - `GET /_fault` answers `{"mode":"none"}`.
//! - `PUT /_fault/<mode>` (or `POST`) switches the mode and answers the same
//!   JSON with the new mode. An unknown mode gets a 400 with `{"error": ...}`.
//!
//! # Modes
//! - `none`: transparent.
//! - `stale`: each playlist (`*.m3u8`) freezes. The first 200 body seen per
//!   path after the switch is served for every later request to that path.
//! - `error500`: every request gets a 500.
//! - `segment404`: segments (`*.ts`) get a 404; playlists pass through.
//! - `slow`: every response waits `--slow-ms` before its first byte.
//! - `cut`: segments are sent with their true `Content-Length` but only about
//!   half of the body, then the connection closes.
//! - `reset`: the connection is reset (TCP RST) once the request is read.
//! - `hang`: the request is read and never answered.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use reqwest::header::{
    HeaderMap, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE,
};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use url::Url;

use nonstop::api::ErrorBody;
use nonstop::service::http::{self, ServeError};
use nonstop::service::shutdown::Shutdown;

/// Where the proxy listens when `--listen` is not given: next to a packager's 9090.
const DEFAULT_LISTEN: &str = "127.0.0.1:9091";
/// Delay of the `slow` mode when `--slow-ms` is not given. It is longer than a
/// typical 2 s segment, so a player that waits for it falls behind live.
const DEFAULT_SLOW_MS: u64 = 2000;
/// Upper bound for `--slow-ms`. A longer delay is a hang, and `hang` exists.
const MAX_SLOW_MS: u64 = 600_000;
/// Path of the control API. Requests under it are never faulted.
pub const CONTROL_PATH: &str = "/_fault";
/// Largest request head read. A player's GET is a few hundred bytes.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request head before the connection
/// is dropped, so idle sockets cannot pile up.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect budget towards the upstream packager. It is local, so connecting
/// should take well under this.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-exchange budget towards the upstream, body included. When it runs
/// out the client gets a 502, so the proxy never hangs unless told to.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest upstream body buffered. Segments are a few MB; this is far above them.
const MAX_UPSTREAM_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Headers parsed per request. More than this gets a 431.
const MAX_REQUEST_HEADERS: usize = 64;
/// How long unread client bytes are drained after the answer. Closing a socket
/// with unread input makes the kernel send RST, and the RST can destroy the
/// answer before the client reads it.
const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (out of file descriptors, say) so the loop
/// does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Size of a single socket read.
const READ_CHUNK_BYTES: usize = 4096;

/// A fault-injecting HTTP proxy in front of one packager, for tests and
/// benchmarks. Read the mode with GET /_fault, switch it with PUT /_fault/<mode>.
#[derive(Debug, Clone, Parser)]
#[command(name = "faultproxy", version)]
pub struct FaultConfig {
    /// Address to listen on (use port 0 to let the system pick one).
    #[arg(long, env = "FAULT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The packager to forward to, e.g. http://127.0.0.1:9090.
    #[arg(long, env = "FAULT_UPSTREAM", value_parser = parse_upstream)]
    pub upstream: Url,
    /// Fault to inject from the start: none, stale, error500, segment404, slow,
    /// cut, reset or hang. Switch later with PUT /_fault/<mode>.
    #[arg(long, env = "FAULT_MODE", default_value_t = FaultMode::None)]
    pub mode: FaultMode,
    /// Delay of the `slow` mode, in milliseconds.
    #[arg(long, env = "FAULT_SLOW_MS", default_value_t = DEFAULT_SLOW_MS,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SLOW_MS))]
    pub slow_ms: u64,
}

/// Accepts only a plain `http(s)://host[:port][/prefix]`. Request paths are
/// appended to it, so a query or fragment would end up in the wrong place.
pub(crate) fn parse_upstream(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{s}' must start with http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(format!("'{s}' has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("'{s}' must not carry a query or fragment"));
    }
    Ok(url)
}

/// What the proxy does to the requests it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    #[default]
    None,
    Stale,
    Error500,
    Segment404,
    Slow,
    Cut,
    Reset,
    Hang,
}

impl FaultMode {
    /// Every mode, in the order the help and error messages list them.
    pub const ALL: [FaultMode; 8] = [
        FaultMode::None,
        FaultMode::Stale,
        FaultMode::Error500,
        FaultMode::Segment404,
        FaultMode::Slow,
        FaultMode::Cut,
        FaultMode::Reset,
        FaultMode::Hang,
    ];

    /// The name used on the command line, in the control API and in logs.
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::None => "none",
            FaultMode::Stale => "stale",
            FaultMode::Error500 => "error500",
            FaultMode::Segment404 => "segment404",
            FaultMode::Slow => "slow",
            FaultMode::Cut => "cut",
            FaultMode::Reset => "reset",
            FaultMode::Hang => "hang",
        }
    }

    /// What this mode does to a request for `kind`. This is the whole fault
    /// policy in one table. Playlist-only and segment-only faults leave the
    /// other kind alone, so a test can tell which failure the client reacted to.
    fn action(self, kind: RequestKind) -> Action {
        match (self, kind) {
            (FaultMode::None, _) => Action::Forward,
            (FaultMode::Stale, RequestKind::Playlist) => Action::Freeze,
            (FaultMode::Stale, _) => Action::Forward,
            (FaultMode::Error500, _) => Action::Fail(StatusCode::INTERNAL_SERVER_ERROR),
            (FaultMode::Segment404, RequestKind::Segment) => Action::Fail(StatusCode::NOT_FOUND),
            (FaultMode::Segment404, _) => Action::Forward,
            (FaultMode::Slow, _) => Action::Delay,
            (FaultMode::Cut, RequestKind::Segment) => Action::Cut,
            (FaultMode::Cut, _) => Action::Forward,
            (FaultMode::Reset, _) => Action::Reset,
            (FaultMode::Hang, _) => Action::Hang,
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultMode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultMode::ALL
            .into_iter()
            .find(|mode| mode.name() == s)
            .ok_or_else(|| UnknownMode {
                given: s.to_string(),
                expected: FaultMode::ALL.map(FaultMode::name).join(", "),
            })
    }
}

/// A mode name that is not one of [`FaultMode::ALL`]. The message lists the
/// valid names, so the user can fix it without reading docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault mode '{given}' (expected one of: {expected})")]
pub struct UnknownMode {
    given: String,
    expected: String,
}

/// What a forwarded request asks for, as far as faults care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Playlist,
    Segment,
    Other,
}

impl RequestKind {
    /// Classifies a request target by the suffix of its path (the query is
    /// ignored). A test tool should be liberal, so any `*.m3u8` counts as a
    /// playlist and any `*.ts` as a segment, not only names a packager would serve.
    pub fn of(target: &str) -> RequestKind {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        if path.ends_with(".m3u8") {
            RequestKind::Playlist
        } else if path.ends_with(".ts") {
            RequestKind::Segment
        } else {
            RequestKind::Other
        }
    }
}

/// What the proxy does with one request, as decided by [`FaultMode::action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Forward and relay the answer unchanged.
    Forward,
    /// Serve the copy frozen for this path, freezing the first 200 seen.
    Freeze,
    /// Answer this status without asking the upstream.
    Fail(StatusCode),
    /// Forward, then wait the slow delay before writing anything.
    Delay,
    /// Forward, then write the true `Content-Length` but only half of the body.
    Cut,
    /// Reset the connection without writing anything.
    Reset,
    /// Hold the connection open and never answer.
    Hang,
}

/// Why the proxy could not start. It is said in one line, then the program
/// exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Bind(#[from] ServeError),
    #[error("cannot read the listening address: {0}")]
    LocalAddr(std::io::Error),
}

/// The control route that switches the proxy at `base` (`http://host:port`)
/// to `mode`: `<base>/_fault/<mode>`, the one place the lab builds it.
pub fn control_url(base: &str, mode: FaultMode) -> String {
    format!("{}{CONTROL_PATH}/{mode}", base.trim_end_matches('/'))
}

/// Switches the fault proxy at `base` to `mode` through its control API
/// (`PUT`), as a test or a bench does; panics unless it says 200.
pub(crate) fn switch_mode(base: &str, mode: FaultMode) {
    let url = control_url(base, mode);
    let status = reqwest::blocking::Client::new()
        .put(&url)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(
        status, 200,
        "cannot switch the fault proxy to {mode} (PUT {url})"
    );
}

/// Binds `config.listen` and proxies with faults until `shutdown` fires.
pub async fn run(config: FaultConfig, shutdown: Shutdown) -> Result<(), FaultError> {
    FaultProxy::bind(&config).await?.run(shutdown).await;
    Ok(())
}

/// A bound fault proxy that is not serving yet. Binding comes first, so a caller
/// that asked for port 0 learns the real address (see [`FaultProxy::local_addr`])
/// before it starts clients.
pub struct FaultProxy {
    listener: TcpListener,
    context: Arc<Context>,
}

/// What every connection task shares.
struct Context {
    /// The mode and the frozen playlists, shared with the control API.
    control: FaultControl,
    /// Pooled client towards the upstream.
    client: reqwest::Client,
    /// The upstream base without a trailing slash. Request targets, which start
    /// with `/`, are appended to it.
    upstream: String,
    /// Delay of the `slow` mode.
    slow: Duration,
}

impl FaultProxy {
    /// Binds the listening socket. A port in use is a clear [`ServeError::Bind`].
    pub async fn bind(config: &FaultConfig) -> Result<FaultProxy, FaultError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ServeError::Bind {
                addr: config.listen,
                port: config.listen.port(),
                reason: http::root_cause(&e),
            })?;
        let addr = listener.local_addr().map_err(FaultError::LocalAddr)?;
        let control = FaultControl {
            addr,
            state: Arc::new(Mutex::new(FaultState {
                mode: config.mode,
                generation: 0,
                frozen: HashMap::new(),
            })),
        };
        let context = Context {
            control,
            client: http::client(UPSTREAM_CONNECT_TIMEOUT),
            upstream: config.upstream.as_str().trim_end_matches('/').to_string(),
            slow: Duration::from_millis(config.slow_ms),
        };
        Ok(FaultProxy {
            listener,
            context: Arc::new(context),
        })
    }

    /// The address actually bound (the real port when `--listen` asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.context.control.addr
    }

    /// Serves one request per connection until `shutdown` fires. Then it stops
    /// accepting and drops every open connection, hanging ones included: a
    /// fault proxy has no in-flight work worth finishing.
    pub async fn run(self, shutdown: Shutdown) {
        let addr = self.local_addr();
        log::info!(
            "Fault proxy listening on http://{addr}, forwarding to {}, mode '{}'",
            self.context.upstream,
            self.context.control.mode()
        );
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(stream, peer, self.context.clone()));
                    }
                    Err(e) => {
                        log::warn!("Fault proxy on {addr} cannot accept a connection: {e}");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = joined {
                        if e.is_panic() {
                            log::error!("Fault proxy on {addr}: a connection task panicked: {e}");
                        }
                    }
                }
            }
        }
        drop(self.listener);
        connections.shutdown().await;
        log::info!("Fault proxy on {addr} stopped");
    }
}

/// The mutable part, behind one lock. It is never held across an await.
struct FaultState {
    mode: FaultMode,
    /// Bumped on every mode switch. A playlist fetched under an older
    /// generation must not be frozen into the new one.
    generation: u64,
    /// `stale` mode: the frozen answer per playlist path.
    frozen: HashMap<String, Arc<Reply>>,
}

/// Reads and switches the mode of one running proxy. It is cheap to clone.
#[derive(Clone)]
struct FaultControl {
    /// The proxy's listening address. Log lines name it because a benchmark
    /// may run one proxy per packager.
    addr: SocketAddr,
    state: Arc<Mutex<FaultState>>,
}

impl FaultControl {
    pub fn mode(&self) -> FaultMode {
        self.lock().mode
    }

    /// Switches the mode and drops every frozen playlist, so `stale` always
    /// freezes afresh. This holds even when `stale` is set again while
    /// already on.
    pub fn set_mode(&self, mode: FaultMode) {
        {
            let mut state = self.lock();
            state.mode = mode;
            state.generation += 1;
            state.frozen.clear();
        }
        log::info!("Fault mode on {} is now '{mode}'", self.addr);
    }

    /// The mode and generation one request is handled under. They are read
    /// once, so a switch mid-request cannot mix two modes.
    fn snapshot(&self) -> (FaultMode, u64) {
        let state = self.lock();
        (state.mode, state.generation)
    }

    fn frozen(&self, path: &str, generation: u64) -> Option<Arc<Reply>> {
        let state = self.lock();
        if state.generation != generation {
            return None;
        }
        state.frozen.get(path).cloned()
    }

    /// Freezes `reply` for `path` unless a copy is already there (the first
    /// body seen wins) or the mode changed meanwhile. Returns the copy to serve.
    fn freeze(&self, path: &str, generation: u64, reply: Arc<Reply>) -> Arc<Reply> {
        let mut state = self.lock();
        if state.generation != generation {
            return reply;
        }
        state
            .frozen
            .entry(path.to_string())
            .or_insert(reply)
            .clone()
    }

    /// A poisoned lock only means another connection task panicked. The state
    /// is a plain value and stays usable.
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A control API request, routed without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ControlRequest {
    Show,
    Set(FaultMode),
    BadMode(UnknownMode),
    WrongMethod { allow: &'static str },
}

/// Routes `method target` to the control API. Returns `None` for anything
/// outside [`CONTROL_PATH`]; those requests are forwarded.
fn control_request(method: &str, target: &str) -> Option<ControlRequest> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path == CONTROL_PATH {
        return Some(match method {
            "GET" | "HEAD" => ControlRequest::Show,
            _ => ControlRequest::WrongMethod { allow: "GET, HEAD" },
        });
    }
    let name = path.strip_prefix(CONTROL_PATH)?.strip_prefix('/')?;
    Some(match method {
        "PUT" | "POST" => match name.parse() {
            Ok(mode) => ControlRequest::Set(mode),
            Err(e) => ControlRequest::BadMode(e),
        },
        _ => ControlRequest::WrongMethod { allow: "PUT, POST" },
    })
}

impl FaultControl {
    fn answer(&self, request: ControlRequest) -> Reply {
        match request {
            ControlRequest::Show => Reply::mode(self.mode()),
            ControlRequest::Set(mode) => {
                self.set_mode(mode);
                Reply::mode(mode)
            }
            ControlRequest::BadMode(e) => Reply::error(StatusCode::BAD_REQUEST, e.to_string()),
            ControlRequest::WrongMethod { allow } => {
                let mut reply = Reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method not allowed here (use {allow})"),
                );
                reply.allow = Some(allow);
                reply
            }
        }
    }
}

/// One answer written back to a client. It comes from the upstream or is made
/// locally, and only the headers a player needs are kept.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    cache_control: Option<String>,
    allow_origin: String,
    /// Sent as `Content-Length`. It equals `body.len()` except for an upstream
    /// HEAD answer, which declares the length of a body it does not send.
    content_length: u64,
    /// `Allow` header of a 405.
    allow: Option<&'static str>,
    body: Bytes,
}

impl Reply {
    fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
        let body = Bytes::from(value.to_string());
        Reply {
            status,
            content_type: Some("application/json".into()),
            cache_control: Some("no-store".into()),
            allow_origin: "*".into(),
            content_length: body.len() as u64,
            allow: None,
            body,
        }
    }

    /// `{"error": ...}`, like every other service's errors.
    fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        let body = ErrorBody {
            error: message.into(),
        };
        let value = serde_json::to_value(&body).unwrap_or(serde_json::Value::Null);
        Reply::json(status, &value)
    }

    fn mode(mode: FaultMode) -> Reply {
        Reply::json(StatusCode::OK, &serde_json::json!({ "mode": mode.name() }))
    }

    /// Status line and headers. `Connection: close` is set because every
    /// connection serves exactly one request.
    fn head(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("")
        );
        let optional = [
            ("Content-Type", self.content_type.as_deref()),
            ("Cache-Control", self.cache_control.as_deref()),
            ("Allow", self.allow),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str(&format!(
            "Access-Control-Allow-Origin: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.allow_origin, self.content_length
        ));
        head.into_bytes()
    }
}

/// The parts of a request head the proxy acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestHead {
    method: String,
    /// Origin-form target: path and query, starting with `/`.
    target: String,
}

/// Why a request head could not be read. [`HeadError::status`] maps it to an
/// answer in one place.
#[derive(Debug, thiserror::Error)]
enum HeadError {
    #[error("client closed the connection before the request head was complete")]
    Closed,
    #[error("no request head within {REQUEST_HEAD_TIMEOUT:?}")]
    Timeout,
    #[error("request head larger than {MAX_REQUEST_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    #[error("request target '{0}' is not a path")]
    NotAPath(String),
    #[error("cannot read the request: {0}")]
    Io(std::io::Error),
}

impl HeadError {
    /// The answer to send. `None` means the client is gone or too slow, and
    /// the connection is only closed.
    fn status(&self) -> Option<StatusCode> {
        match self {
            HeadError::Closed | HeadError::Timeout | HeadError::Io(_) => None,
            HeadError::TooLarge | HeadError::Malformed(httparse::Error::TooManyHeaders) => {
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            HeadError::Malformed(_) | HeadError::NotAPath(_) => Some(StatusCode::BAD_REQUEST),
        }
    }
}

/// Parses a request head from what has arrived so far. Returns `None` when
/// more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf).map_err(HeadError::Malformed)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(_) => {
            let method = request.method.unwrap_or_default().to_string();
            let target = request.path.unwrap_or_default().to_string();
            if !target.starts_with('/') {
                return Err(HeadError::NotAPath(target));
            }
            Ok(Some(RequestHead { method, target }))
        }
    }
}

/// Reads until a complete head, never buffering more than
/// [`MAX_REQUEST_HEAD_BYTES`]. Any request body is left unread; GET and HEAD
/// have none.
async fn read_head(stream: &mut TcpStream) -> Result<RequestHead, HeadError> {
    let mut buf = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    loop {
        let room = MAX_REQUEST_HEAD_BYTES - buf.len();
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let n = stream
            .read(&mut chunk[..room.min(READ_CHUNK_BYTES)])
            .await
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = parse_head(&buf)? {
            return Ok(head);
        }
    }
}

/// Why the upstream gave no usable answer. Every case becomes a 502.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("upstream {url} did not answer within {UPSTREAM_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("upstream {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("upstream {url} sent a body larger than {MAX_UPSTREAM_BODY_BYTES} bytes")]
    TooLarge { url: String },
}

impl UpstreamError {
    fn from_reqwest(url: &str, error: reqwest::Error) -> UpstreamError {
        if error.is_timeout() {
            UpstreamError::Timeout { url: url.into() }
        } else {
            UpstreamError::Unreachable {
                url: url.into(),
                reason: http::root_cause(&error),
            }
        }
    }
}

impl Context {
    /// Forwards the request and buffers the whole answer. Any failure becomes
    /// a 502 with a JSON body.
    async fn fetch(&self, method: &Method, target: &str) -> Reply {
        match self.try_fetch(method, target).await {
            Ok(reply) => reply,
            Err(e) => {
                log::warn!("Fault proxy on {}: {e}", self.control.addr);
                Reply::error(StatusCode::BAD_GATEWAY, e.to_string())
            }
        }
    }

    async fn try_fetch(&self, method: &Method, target: &str) -> Result<Reply, UpstreamError> {
        let url = format!("{}{target}", self.upstream);
        let mut response = self
            .client
            .request(method.clone(), &url)
            .timeout(UPSTREAM_TIMEOUT)
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(&url, e))?;
        let headers = response.headers();
        let declared_length =
            header_text(headers, &CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
        let mut reply = Reply {
            status: response.status(),
            content_type: header_text(headers, &CONTENT_TYPE),
            cache_control: header_text(headers, &CACHE_CONTROL),
            allow_origin: header_text(headers, &ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap_or_else(|| "*".into()),
            content_length: 0,
            allow: None,
            body: Bytes::new(),
        };
        if *method == Method::HEAD {
            reply.content_length = declared_length.unwrap_or(0);
            return Ok(reply);
        }
        let expected = declared_length.map_or(0, |n| n.min(MAX_UPSTREAM_BODY_BYTES as u64));
        let mut body = Vec::with_capacity(expected as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| UpstreamError::from_reqwest(&url, e))?
        {
            if body.len() + chunk.len() > MAX_UPSTREAM_BODY_BYTES {
                return Err(UpstreamError::TooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        reply.content_length = body.len() as u64;
        reply.body = Bytes::from(body);
        Ok(reply)
    }

    /// `stale` mode: serves the frozen copy of this playlist path, freezing the
    /// first 200 GET answer. Errors and HEAD answers pass through unfrozen,
    /// since there is no body to freeze.
    async fn frozen_or_fetch(&self, method: &Method, target: &str, generation: u64) -> Arc<Reply> {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        if let Some(copy) = self.control.frozen(path, generation) {
            return copy;
        }
        let reply = Arc::new(self.fetch(method, target).await);
        if *method == Method::GET && reply.status == StatusCode::OK {
            self.control.freeze(path, generation, reply)
        } else {
            reply
        }
    }
}

/// A header's value as text. A value that is not visible ASCII is dropped and
/// not relayed.
fn header_text(headers: &HeaderMap, name: &reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Handles one connection: one request in, one answer or fault out, then close.
async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, context: Arc<Context>) {
    let _ = stream.set_nodelay(true);
    let addr = context.control.addr;
    let head = match tokio::time::timeout(REQUEST_HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => return refuse(stream, peer, addr, e).await,
        Err(_) => return refuse(stream, peer, addr, HeadError::Timeout).await,
    };
    let head_only = head.method == "HEAD";

    if let Some(request) = control_request(&head.method, &head.target) {
        let reply = context.control.answer(request);
        return finish(stream, &reply, head_only, peer, addr).await;
    }

    let method = match head.method.as_str() {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => {
            let mut reply = Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not proxied (use GET or HEAD)", head.method),
            );
            reply.allow = Some("GET, HEAD");
            return finish(stream, &reply, false, peer, addr).await;
        }
    };

    let (mode, generation) = context.control.snapshot();
    let action = mode.action(RequestKind::of(&head.target));
    log::debug!(
        "Fault proxy on {addr}: {} {} from {peer} in mode '{mode}': {action:?}",
        head.method,
        head.target
    );
    let reply = match action {
        Action::Reset => {
            // SO_LINGER 0 makes the close send RST instead of FIN.
            if let Err(e) = stream.set_zero_linger() {
                log::warn!("Fault proxy on {addr}: cannot arm the reset for {peer}: {e}");
            }
            return;
        }
        Action::Hang => return hold_open(stream).await,
        Action::Fail(status) => Arc::new(Reply::error(
            status,
            format!("fault injected by mode '{mode}'"),
        )),
        Action::Freeze => {
            context
                .frozen_or_fetch(&method, &head.target, generation)
                .await
        }
        Action::Forward | Action::Delay | Action::Cut => {
            Arc::new(context.fetch(&method, &head.target).await)
        }
    };

    if action == Action::Delay {
        tokio::time::sleep(context.slow).await;
    }
    if action == Action::Cut && !head_only {
        let half = reply.body.len() / 2;
        let written = async {
            stream.write_all(&reply.head()).await?;
            stream.write_all(&reply.body[..half]).await?;
            stream.flush().await
        };
        if let Err(e) = written.await {
            log::debug!("Fault proxy on {addr}: cutting the answer to {peer} failed: {e}");
        }
        return close_gracefully(stream).await;
    }
    finish(stream, &reply, head_only, peer, addr).await
}

/// Answers a request whose head could not be read, when there is someone to
/// answer.
async fn refuse(stream: TcpStream, peer: SocketAddr, addr: SocketAddr, error: HeadError) {
    log::debug!("Fault proxy on {addr}: request from {peer} refused: {error}");
    if let Some(status) = error.status() {
        let reply = Reply::error(status, error.to_string());
        finish(stream, &reply, false, peer, addr).await;
    }
}

/// Writes the whole answer (head only for HEAD), then closes.
async fn finish(
    mut stream: TcpStream,
    reply: &Reply,
    head_only: bool,
    peer: SocketAddr,
    addr: SocketAddr,
) {
    let written = async {
        stream.write_all(&reply.head()).await?;
        if !head_only {
            stream.write_all(&reply.body).await?;
        }
        stream.flush().await
    };
    if let Err(e) = written.await {
        log::debug!("Fault proxy on {addr}: writing the answer to {peer} failed: {e}");
    }
    close_gracefully(stream).await;
}

/// Sends FIN, then reads and discards until the client closes (for at most
/// [`CLOSE_DRAIN_TIMEOUT`]). Dropping a socket that still holds unread
/// input would send RST, which can destroy the answer before the client reads it.
async fn close_gracefully(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(CLOSE_DRAIN_TIMEOUT, discard_until_closed(&mut stream)).await;
}

/// `hang` mode: keeps the connection open and answers nothing until the client
/// gives up. Shutdown aborts this task, which drops the connection.
async fn hold_open(mut stream: TcpStream) {
    discard_until_closed(&mut stream).await;
}

async fn discard_until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; READ_CHUNK_BYTES];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for mode in FaultMode::ALL {
            assert_eq!(mode.to_string().parse::<FaultMode>(), Ok(mode));
        }
        assert_eq!("segment404".parse(), Ok(FaultMode::Segment404));
        assert_eq!(FaultMode::default(), FaultMode::None);
    }

    #[test]
    fn the_control_url_routes_to_the_mode_it_names() {
        for mode in FaultMode::ALL {
            let url = control_url("http://127.0.0.1:9091/", mode);
            let target = url
                .strip_prefix("http://127.0.0.1:9091")
                .expect("same base");
            assert_eq!(
                control_request("PUT", target),
                Some(ControlRequest::Set(mode)),
                "{url}"
            );
        }
    }

    #[test]
    fn unknown_modes_are_refused_with_the_valid_names() {
        for bad in ["", "Stale", "error", "stale ", "404"] {
            let error = bad.parse::<FaultMode>().expect_err(bad);
            let message = error.to_string();
            assert!(message.contains(&format!("'{bad}'")), "{message}");
            for mode in FaultMode::ALL {
                assert!(message.contains(mode.name()), "{message}");
            }
        }
    }

    #[test]
    fn requests_are_classified_by_path_suffix() {
        assert_eq!(
            RequestKind::of("/live01/playlist.m3u8"),
            RequestKind::Playlist
        );
        assert_eq!(
            RequestKind::of("/live01/playlist.m3u8?_HLS_msn=4"),
            RequestKind::Playlist
        );
        assert_eq!(
            RequestKind::of("/live01/segment000001.ts"),
            RequestKind::Segment
        );
        assert_eq!(RequestKind::of("/healthcheck"), RequestKind::Other);
        assert_eq!(RequestKind::of("/x?file=a.ts"), RequestKind::Other);
    }

    #[test]
    fn each_mode_affects_only_its_requests() {
        use RequestKind::{Other, Playlist, Segment};
        let kinds = [Playlist, Segment, Other];
        for kind in kinds {
            assert_eq!(FaultMode::None.action(kind), Action::Forward);
            assert_eq!(
                FaultMode::Error500.action(kind),
                Action::Fail(StatusCode::INTERNAL_SERVER_ERROR)
            );
            assert_eq!(FaultMode::Slow.action(kind), Action::Delay);
            assert_eq!(FaultMode::Reset.action(kind), Action::Reset);
            assert_eq!(FaultMode::Hang.action(kind), Action::Hang);
        }
        assert_eq!(FaultMode::Stale.action(Playlist), Action::Freeze);
        assert_eq!(FaultMode::Stale.action(Segment), Action::Forward);
        assert_eq!(FaultMode::Stale.action(Other), Action::Forward);
        assert_eq!(
            FaultMode::Segment404.action(Segment),
            Action::Fail(StatusCode::NOT_FOUND)
        );
        assert_eq!(FaultMode::Segment404.action(Playlist), Action::Forward);
        assert_eq!(FaultMode::Cut.action(Segment), Action::Cut);
        assert_eq!(FaultMode::Cut.action(Playlist), Action::Forward);
        assert_eq!(FaultMode::Cut.action(Other), Action::Forward);
    }

    #[test]
    fn control_api_routes() {
        assert_eq!(
            control_request("GET", "/_fault"),
            Some(ControlRequest::Show)
        );
        assert_eq!(
            control_request("PUT", "/_fault/stale"),
            Some(ControlRequest::Set(FaultMode::Stale))
        );
        assert_eq!(
            control_request("POST", "/_fault/hang?x=1"),
            Some(ControlRequest::Set(FaultMode::Hang))
        );
        assert!(matches!(
            control_request("PUT", "/_fault/bogus"),
            Some(ControlRequest::BadMode(_))
        ));
        assert!(matches!(
            control_request("GET", "/_fault/stale"),
            Some(ControlRequest::WrongMethod { .. })
        ));
        assert!(matches!(
            control_request("DELETE", "/_fault"),
            Some(ControlRequest::WrongMethod { .. })
        ));
        assert_eq!(control_request("GET", "/_faults"), None);
        assert_eq!(control_request("GET", "/live01/playlist.m3u8"), None);
    }

    #[test]
    fn request_heads_parse_when_complete() {
        assert!(matches!(parse_head(b"GET /live01/pl"), Ok(None)));
        let head = parse_head(b"GET /live01/playlist.m3u8?a=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/live01/playlist.m3u8?a=1");
        let bad = parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").expect_err("malformed");
        assert_eq!(bad.status(), Some(StatusCode::BAD_REQUEST));
        let absolute =
            parse_head(b"GET http://x/a.ts HTTP/1.1\r\n\r\n").expect_err("absolute-form");
        assert_eq!(absolute.status(), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn answers_carry_length_and_close() {
        let reply = Reply::mode(FaultMode::Cut);
        let head = String::from_utf8(reply.head()).expect("ASCII head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/json\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", reply.body.len())));
        assert!(head.contains("Connection: close\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        assert_eq!(&reply.body[..], br#"{"mode":"cut"}"#);
    }

    fn control() -> FaultControl {
        FaultControl {
            addr: SocketAddr::from(([127, 0, 0, 1], 9091)),
            state: Arc::new(Mutex::new(FaultState {
                mode: FaultMode::Stale,
                generation: 0,
                frozen: HashMap::new(),
            })),
        }
    }

    #[test]
    fn first_playlist_seen_stays_frozen_until_the_mode_changes() {
        let control = control();
        let first = Arc::new(Reply::json(StatusCode::OK, &serde_json::json!(1)));
        let second = Arc::new(Reply::json(StatusCode::OK, &serde_json::json!(2)));
        let (_, generation) = control.snapshot();
        assert_eq!(control.freeze("/a.m3u8", generation, first.clone()), first);
        assert_eq!(control.freeze("/a.m3u8", generation, second.clone()), first);
        assert_eq!(control.frozen("/a.m3u8", generation), Some(first.clone()));

        control.set_mode(FaultMode::None);
        assert_eq!(control.frozen("/a.m3u8", generation), None);
        // A fetch begun before the switch must not freeze into the new mode.
        assert_eq!(
            control.freeze("/a.m3u8", generation, second.clone()),
            second
        );
        let (_, now) = control.snapshot();
        assert_eq!(control.frozen("/a.m3u8", now), None);
    }

    #[test]
    fn upstream_must_be_a_plain_http_base() {
        assert!(parse_upstream("http://127.0.0.1:9090").is_ok());
        assert!(parse_upstream("https://packager.example/prefix/").is_ok());
        assert!(parse_upstream("127.0.0.1:9090").is_err());
        assert!(parse_upstream("ftp://x").is_err());
        assert!(parse_upstream("http://x/?a=1").is_err());
        assert!(parse_upstream("not a url").is_err());
    }
}
