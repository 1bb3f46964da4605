//! The HTTP server loop every service runs: warp routes served on our own
//! HTTP/1.1 connections (`http1`, or hyper's with `HTTP_SERVER=hyper`) with
//! limits a live event needs. A slow or idle client cannot hold a connection
//! (header read and idle timeouts), headers are capped, connections are
//! bounded (extra ones are closed at once), and on shutdown the listener stops
//! accepting while in-flight requests finish within a bound.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use warp::{Filter, Reply};

use super::config::{HttpServer, ListenArgs};
use super::http::{root_cause, ServeError};
use crate::service::shutdown::Shutdown;

/// Largest request head (request line and headers) accepted.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long in-flight requests may take to finish after shutdown.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The address a request came from, as an extension of every request
/// (`warp::ext::optional::<Peer>()`): warp's own `addr::remote()` is only
/// filled by warp's server, not by this loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub SocketAddr);

/// Serves `routes` on `listen.addr(port)` until shutdown, then drains: on
/// the program's runtime, or with `SERVE_THREADS` set, on that many threads
/// of their own ([`serve_per_thread`]).
pub async fn serve<F>(
    service: &'static str,
    listen: &ListenArgs,
    port: u16,
    routes: F,
    shutdown: Shutdown,
) -> Result<(), ServeError>
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    if let Some(threads @ 1..) = listen.serve_threads {
        let listeners = bind_shared(listen, port, threads)?;
        return serve_per_thread(service, listeners, listen, routes, shutdown).await;
    }
    let listener = bind(listen, port).await?;
    serve_on(service, listener, listen, routes, shutdown).await;
    Ok(())
}

/// Binds `listen.addr(port)`, so a program can fail fast on a busy port
/// before it starts other work. The accept queue holds up to
/// [`listen_backlog`] connections not accepted yet.
pub async fn bind(listen: &ListenArgs, port: u16) -> Result<TcpListener, ServeError> {
    bind_socket(listen, port, false)
}

/// Binds `count` sockets to `listen.addr(port)` together (`SO_REUSEPORT`),
/// one per serving thread; the first settles the port when `port` is 0.
pub fn bind_shared(
    listen: &ListenArgs,
    port: u16,
    count: usize,
) -> Result<Vec<TcpListener>, ServeError> {
    let first = bind_socket(listen, port, true)?;
    let port = first.local_addr().map_or(port, |a| a.port());
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(bind_socket(listen, port, true)?);
    }
    Ok(listeners)
}

fn bind_socket(listen: &ListenArgs, port: u16, shared: bool) -> Result<TcpListener, ServeError> {
    let addr = listen.addr(port);
    let fail = |e: std::io::Error| ServeError::Bind {
        addr,
        port,
        reason: root_cause(&e),
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(fail)?;
    // As `TcpListener::bind` does: a restarted server binds its port at
    // once, whatever connections of its predecessor linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(fail)?;
    // Several sockets of this process on one port, each given its share of
    // new connections by the kernel.
    #[cfg(unix)]
    if shared {
        socket.set_reuseport(true).map_err(fail)?;
    }
    socket.bind(addr).map_err(fail)?;
    socket
        .listen(listen_backlog(listen.max_connections))
        .map_err(fail)
}

/// Connections the kernel may queue before the server accepts them: as
/// many as the server may hold, at least 1,024 and at most 65,535 (the
/// kernel caps it at `net.core.somaxconn`, 4,096 by default). A crowd
/// connecting at once (players rejoining after a restart, a load test) then
/// waits in the queue instead of being dropped: a dropped connection
/// attempt is retried by the client only after a second or more. With
/// tokio's 1,024, 5,000 connections opened at once by `wrk` overflowed it
/// about 8,000 times per run (`TcpExt ListenOverflows`), and those clients
/// waited a second; nginx, accepting in two processes, had none
/// (`just bench-segments --connections 5000`).
pub(crate) fn listen_backlog(max_connections: usize) -> u32 {
    max_connections.clamp(1024, 65_535) as u32
}

/// Serves `routes` on an already bound listener until shutdown, then drains.
pub async fn serve_on<F>(
    service: &'static str,
    listener: TcpListener,
    listen: &ListenArgs,
    routes: F,
    shutdown: Shutdown,
) where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let capacity = super::limits::connection_capacity(service, listen.max_connections);
    log::info!("{service} listening on http://{bound}");
    let permits = Arc::new(Semaphore::new(capacity));
    accept_until_shutdown(
        service,
        listener,
        listen,
        routes,
        (permits, capacity),
        shutdown,
    )
    .await;
    log::info!("{service} stopped");
}

/// Serves `routes` on `listen.serve_threads` threads, each running its own
/// single-threaded runtime and accepting on its own socket bound to the
/// same port: a connection lives and is served on the one thread the kernel
/// gave it to, in the order its events come, as in nginx's worker
/// processes, instead of being passed between a shared runtime's workers.
/// The connection limit is shared. Whatever a request starts (a fetch
/// upstream other viewers wait for) runs on the thread that started it;
/// the program's own runtime keeps its background work.
pub async fn serve_per_thread<F>(
    service: &'static str,
    listeners: Vec<TcpListener>,
    listen: &ListenArgs,
    routes: F,
    shutdown: Shutdown,
) -> Result<(), ServeError>
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let bound = match listeners.first().map(|l| l.local_addr()) {
        Some(Ok(addr)) => addr,
        _ => return Ok(()),
    };
    let capacity = super::limits::connection_capacity(service, listen.max_connections);
    let permits = Arc::new(Semaphore::new(capacity));
    let mut finished = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        // Taken off this runtime, registered again with the thread's own.
        let listener = listener.into_std().map_err(|e| ServeError::Bind {
            addr: bound,
            port: bound.port(),
            reason: root_cause(&e),
        })?;
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let (routes, listen, permits, stop) = (
            routes.clone(),
            listen.clone(),
            permits.clone(),
            shutdown.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("{service}-serve-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => {
                                accept_until_shutdown(
                                    service,
                                    listener,
                                    &listen,
                                    routes,
                                    (permits, capacity),
                                    stop,
                                )
                                .await
                            }
                            Err(e) => log::error!("{service}: serving thread {index}: {e}"),
                        }
                    }),
                    Err(e) => log::error!("{service}: serving thread {index}: {e}"),
                }
                let _ = done.send(());
            });
        match thread {
            Ok(_) => finished.push(finished_rx),
            Err(e) => log::error!("{service}: cannot start serving thread {index}: {e}"),
        }
    }
    log::info!(
        "{service} listening on http://{bound} ({} serving threads)",
        finished.len()
    );
    for thread in finished {
        // An error means the thread is gone already: nothing to wait for.
        let _ = thread.await;
    }
    log::info!("{service} stopped");
    Ok(())
}

/// Accepts on `listener` until shutdown, each connection served in a task
/// of its own while a permit is free (else closed at once), then drains.
async fn accept_until_shutdown<F>(
    service: &'static str,
    listener: TcpListener,
    listen: &ListenArgs,
    routes: F,
    (permits, capacity): (Arc<Semaphore>, usize),
    shutdown: Shutdown,
) where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let svc = Handler::<http_body_util::Full<bytes::Bytes>>::new(routes.clone());
    let hyper_svc = Handler::<hyper::body::Incoming>::new(routes);
    let mut connections = JoinSet::new();
    let mut refused: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a little.
                        log::warn!("{service}: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    refused += 1;
                    if refused.is_power_of_two() {
                        log::warn!(
                            "{service}: {capacity} connections open, closing new ones ({refused} so far)"
                        );
                    }
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (svc, hyper_svc) = (svc.clone(), hyper_svc.clone());
                let stop = shutdown.clone();
                let limits = listen.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    match limits.http_server {
                        HttpServer::Nonstop => {
                            super::http1::serve_connection(stream, peer, svc, &limits, stop).await
                        }
                        HttpServer::Hyper => {
                            serve_connection(stream, peer, hyper_svc, &limits, stop).await
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        log::info!("{service}: draining {open} connection(s)");
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        log::warn!(
            "{service}: {} connection(s) still open after {} s, closing them",
            connections.len(),
            DRAIN_TIMEOUT.as_secs()
        );
        connections.abort_all();
    }
}

/// A service's routes behind one type whatever the routes: the connection
/// code is then compiled once for all services, not once per service's
/// routes (eight services, two connection codes).
pub(crate) struct Handler<B> {
    call: Arc<dyn Fn(hyper::Request<B>) -> HandlerFuture + Send + Sync>,
}

type HandlerFuture =
    Pin<Box<dyn std::future::Future<Output = Result<warp::reply::Response, Infallible>> + Send>>;

impl<B> Clone for Handler<B> {
    fn clone(&self) -> Self {
        Handler {
            call: self.call.clone(),
        }
    }
}

impl<B> Handler<B>
where
    B: hyper::body::Body + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn new<F>(routes: F) -> Self
    where
        F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
        F::Extract: Reply,
    {
        let svc = TowerToHyperService::new(warp::service(routes));
        Handler {
            call: Arc::new(move |request| Box::pin(hyper::service::Service::call(&svc, request))),
        }
    }
}

impl<B> hyper::service::Service<hyper::Request<B>> for Handler<B> {
    type Response = warp::reply::Response;
    type Error = Infallible;
    type Future = HandlerFuture;

    fn call(&self, request: hyper::Request<B>) -> Self::Future {
        (self.call)(request)
    }
}

/// One connection served by hyper (`HTTP_SERVER=hyper`).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    svc: Handler<hyper::body::Incoming>,
    limits: &ListenArgs,
    stop: Shutdown,
) {
    let activity = Activity::new();
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        activity: activity.clone(),
    });
    let svc = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(Peer(peer));
        hyper::service::Service::call(&svc, request)
    });
    // HTTP/1 only: this builder speaks nothing else. The header read timeout
    // needs a timer to run on.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    // One timer per connection, due when it would have been idle too long:
    // an idle viewer's connection costs no wake-up until then (thousands of
    // them would otherwise keep the server busy looking at them).
    let idle_check = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle_check);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    log::debug!("connection from {peer} ended: {e}");
                }
                return;
            }
            _ = stop.wait() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn.as_mut()).await;
                return;
            }
            _ = &mut idle_check => {
                let idle = activity.idle_for();
                if idle >= limits.idle_timeout {
                    log::debug!("closing idle connection from {peer}");
                    return;
                }
                let due = tokio::time::Instant::now() + (limits.idle_timeout - idle);
                idle_check.as_mut().reset(due);
            }
        }
    }
}

/// When a connection last moved a byte.
#[derive(Clone)]
struct Activity {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// A stream that records activity on every read and write (hyper sees it
/// through [`TokioIo`]). It passes vectored writes through: without them
/// hyper flattens every response (head and body) into a per-connection
/// buffer, which cost about 100 KiB per viewer connection (1 GiB at 10k
/// viewers in `just bench-viewers`, 144 MiB with them).
struct TrackedIo<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_queue_is_as_deep_as_the_connection_limit_within_bounds() {
        assert_eq!(listen_backlog(10), 1024);
        assert_eq!(listen_backlog(30_000), 30_000);
        assert_eq!(listen_backlog(1_000_000), 65_535);
    }

    /// `GET path` on a connection of its own, closed after: the whole answer.
    async fn ask(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn a_server_binds_with_its_backlog_and_answers() {
        let listen = ListenArgs::local(5000, None);
        let listener = bind(&listen, 0).await.expect("bound");
        let addr = listener.local_addr().expect("an address");
        let routes = crate::service::metrics::standalone_routes("test");
        let shutdown = Shutdown::new();
        let server = serve_on("test", listener, &listen, routes, shutdown.clone());
        let client = async {
            let answer = ask(addr, "/healthcheck").await;
            shutdown.trigger();
            answer
        };
        let ((), answer) = tokio::join!(server, client);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn serving_threads_share_one_port_and_each_takes_connections() {
        let listen = ListenArgs::local(100, Some(2));
        let listeners = bind_shared(&listen, 0, 2).expect("bound");
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("an address"))
            .collect();
        assert_eq!(addrs[0], addrs[1], "both sockets on one port");
        // Each answer names the thread that served it.
        let routes = warp::any().map(|| {
            std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string()
        });
        let shutdown = Shutdown::new();
        let server = serve_per_thread("test", listeners, &listen, routes, shutdown.clone());
        let clients = async {
            let mut threads = std::collections::BTreeSet::new();
            for _ in 0..40 {
                let answer = ask(addrs[0], "/thread").await;
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                let body = answer.rsplit("\r\n\r\n").next().unwrap_or("").to_string();
                threads.insert(body);
            }
            shutdown.trigger();
            threads
        };
        let (served, threads) = tokio::join!(server, clients);
        served.expect("served until shutdown");
        // 40 connections from different ports, spread by the kernel's hash:
        // all on one socket would happen about once in 2^39 runs.
        assert_eq!(
            threads.into_iter().collect::<Vec<_>>(),
            vec!["test-serve-0".to_string(), "test-serve-1".to_string()]
        );
    }
}
