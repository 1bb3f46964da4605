//! One HTTP/1.1 connection, served with as little held per connection as a
//! viewer's keep-alive connection allows: a buffer exists only while a
//! request head is read (and holds what a client pipelined after it), the
//! response head only while it is written. Between requests a connection
//! holds its socket and its task, nothing else.
//!
//! Why not hyper's connection: hyper 1 keeps an 8 KiB read buffer and an
//! 8 KiB head buffer for a connection's whole life, neither configurable
//! below 8 KiB. At 10,000 viewers that was 147 MiB resident in the proxy
//! against nginx's 46 MiB (`just bench-viewers`, issue 23); nginx, like this
//! module, frees a keep-alive connection's buffers while it waits.
//! `HTTP_SERVER=hyper` serves with hyper's instead (`server.rs`).
//!
//! What it speaks: HTTP/1.1 and 1.0, keep-alive (1.0 only when asked),
//! pipelined requests answered in order, `Expect: 100-continue`, request
//! bodies with a `Content-Length` of at most [`MAX_BODY_BYTES`] (a
//! chunked request body gets 411), responses with a length (`Content-Length`
//! from the handler or from the body's exact size) or chunked (HTTP/1.1) or
//! ended by closing (HTTP/1.0), no body for HEAD, 204 and 304, a `Date`
//! header on every response. Bounds: the head must arrive within the header
//! timeout and fit [`MAX_HEADER_BYTES`] (else 408 or 431 and the connection
//! closes), a silent connection closes after the idle timeout, so does one
//! whose client stops reading a response for as long. A client that closes
//! while its request is held (a blocking playlist reload) drops the request
//! at once. On shutdown an idle connection closes, a busy one after its
//! response.

use std::cell::RefCell;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::config::ListenArgs;
use super::server::{Handler, Peer, MAX_HEADER_BYTES};
use crate::service::shutdown::Shutdown;

/// Largest request body accepted (the services take small JSON bodies).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Headers a request may carry.
const MAX_HEADERS: usize = 64;
/// What a request head is first read into; grown as needed up to
/// [`MAX_HEADER_BYTES`]. A player's GET fits in a few hundred bytes.
const FIRST_READ_BYTES: usize = 1024;

/// The request type handlers get: the head, and the whole body read.
pub(crate) type FullRequest = Request<Full<Bytes>>;

/// Serves HTTP/1.1 requests on `stream` with `svc` until the client closes,
/// a bound is crossed, or `stop` (see the module's documentation).
pub(crate) async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    svc: Handler<Full<Bytes>>,
    limits: &ListenArgs,
    stop: Shutdown,
) {
    // Bytes read past the request being served: a pipelined next request.
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if pending.is_empty() {
            // Waiting for the next request holds no buffer.
            pending = Vec::new();
            tokio::select! {
                _ = stop.wait() => return,
                ready = timeout(limits.idle_timeout, stream.readable()) => {
                    if !matches!(ready, Ok(Ok(()))) {
                        log::debug!("closing idle connection from {peer}");
                        return;
                    }
                }
            }
        }
        let head = match timeout(limits.header_timeout, read_head(&mut stream, &mut pending)).await
        {
            Ok(Ok(head)) => head,
            Ok(Err(HeadError::Closed)) => return,
            Ok(Err(e)) => {
                log::debug!("request from {peer} refused: {e}");
                refuse(&mut stream, e.status(), limits).await;
                return;
            }
            Err(_) => {
                log::debug!("request head from {peer} not complete in time");
                refuse(&mut stream, StatusCode::REQUEST_TIMEOUT, limits).await;
                return;
            }
        };
        let body = match Box::pin(read_body(&mut stream, &mut pending, &head, limits)).await {
            Ok(body) => body,
            Err(status) => {
                refuse(&mut stream, status, limits).await;
                return;
            }
        };
        let method = head.request.method().clone();
        let version = head.request.version();
        let mut keep_alive = head.keep_alive;
        let mut request = head.request.map(|()| Full::new(body));
        request.extensions_mut().insert(Peer(peer));
        // The request's futures are boxed: held in the connection's task, they
        // would make every waiting connection as large as its busiest moment.
        let Some(response) = Box::pin(answer(&stream, &svc, request, pending.is_empty())).await
        else {
            log::debug!("{peer} closed while its request was served");
            return;
        };
        keep_alive &= !stop.is_triggered();
        let written = write_response(
            &mut stream,
            response,
            (&method, version),
            keep_alive,
            limits,
        );
        match Box::pin(written).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = stream.shutdown().await;
                return;
            }
            Err(e) => {
                log::debug!("response to {peer} not written: {e}");
                return;
            }
        }
    }
}

/// A request head read and checked.
struct Head {
    request: Request<()>,
    keep_alive: bool,
    content_length: usize,
    expects_continue: bool,
}

/// Why a request head was not taken.
#[derive(Debug, thiserror::Error)]
enum HeadError {
    #[error("the client closed")]
    Closed,
    #[error("request head over {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} headers")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request body over {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("a request body without a Content-Length")]
    LengthRequired,
}

impl HeadError {
    fn status(&self) -> StatusCode {
        match self {
            HeadError::Closed | HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HeadError::LengthRequired => StatusCode::LENGTH_REQUIRED,
        }
    }
}

impl From<std::io::Error> for HeadError {
    fn from(_: std::io::Error) -> Self {
        HeadError::Closed
    }
}

/// Reads until `buf` holds a whole request head, parses it, and leaves in
/// `buf` what follows it.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Head, HeadError> {
    loop {
        if !buf.is_empty() {
            if let Some((head, length)) = parse_head(buf)? {
                buf.drain(..length);
                return Ok(head);
            }
        }
        if buf.len() >= MAX_HEADER_BYTES {
            return Err(HeadError::TooLarge);
        }
        if buf.capacity() - buf.len() < FIRST_READ_BYTES / 2 {
            buf.reserve(buf.len().max(FIRST_READ_BYTES));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(HeadError::Closed);
        }
    }
}

/// The request head at the start of `bytes` and its length, `None` while
/// incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let length = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if length > MAX_HEADER_BYTES {
        return Err(HeadError::TooLarge);
    }
    let malformed = |what: &str| HeadError::Malformed(what.to_string());
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| malformed("method"))?;
    let uri: Uri = parsed
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| malformed("request target"))?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| malformed("header name"))?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| malformed("header value"))?;
        map.append(name, value);
    }
    let mut content_length: Option<usize> = None;
    for value in map.get_all(CONTENT_LENGTH) {
        let n: usize = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| malformed("Content-Length"))?;
        if content_length.is_some_and(|m| m != n) {
            return Err(malformed("conflicting Content-Length"));
        }
        content_length = Some(n);
    }
    if map.contains_key(TRANSFER_ENCODING) {
        return Err(HeadError::LengthRequired);
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY_BYTES {
        return Err(HeadError::BodyTooLarge);
    }
    let has_token = |token: &str| {
        map.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let keep_alive = match version {
        Version::HTTP_11 => !has_token("close"),
        _ => has_token("keep-alive"),
    };
    let expects_continue = map
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Ok(Some((
        Head {
            request,
            keep_alive,
            content_length,
            expects_continue,
        },
        length,
    )))
}

/// Reads the request's body (its `Content-Length`, within the header
/// timeout), leaving in `buf` what follows it.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &Head,
    limits: &ListenArgs,
) -> Result<Bytes, StatusCode> {
    let wanted = head.content_length;
    if wanted == 0 {
        return Ok(Bytes::new());
    }
    if head.expects_continue && buf.len() < wanted {
        write_all(
            stream,
            &mut [IoSlice::new(b"HTTP/1.1 100 Continue\r\n\r\n")],
            limits,
        )
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    }
    let read = async {
        while buf.len() < wanted {
            buf.reserve(wanted - buf.len());
            if stream.read_buf(buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok::<_, std::io::Error>(())
    };
    match timeout(limits.header_timeout, read).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(StatusCode::BAD_REQUEST),
        Err(_) => return Err(StatusCode::REQUEST_TIMEOUT),
    }
    let body = Bytes::copy_from_slice(&buf[..wanted]);
    buf.drain(..wanted);
    Ok(body)
}

/// The handler's answer to `request`; `None` when the client closed first.
/// While nothing else was sent (`watch_close`), the socket is watched: a
/// client gone drops the request, which may be held for seconds.
async fn answer(
    stream: &TcpStream,
    svc: &Handler<Full<Bytes>>,
    request: FullRequest,
    watch_close: bool,
) -> Option<warp::reply::Response> {
    let future = hyper::service::Service::call(svc, request);
    tokio::pin!(future);
    let mut watching = watch_close;
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            result = &mut future => {
                return match result {
                    Ok(response) => Some(response),
                    Err(never) => match never {},
                };
            }
            peeked = stream.peek(&mut probe), if watching => match peeked {
                // More bytes: a pipelined request, read after this answer.
                Ok(n) if n > 0 => watching = false,
                _ => return None,
            },
        }
    }
}

/// Writes `response` (see the module's documentation for its framing).
/// Returns whether the connection may serve another request.
async fn write_response(
    stream: &mut TcpStream,
    response: warp::reply::Response,
    (method, version): (&Method, Version),
    mut keep_alive: bool,
    limits: &ListenArgs,
) -> std::io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodyless = method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let declared: Option<usize> = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok());
    let exact = body.size_hint().exact().map(|n| n as usize);
    let length = declared.or(exact);
    let chunked = length.is_none() && !bodyless && version != Version::HTTP_10;
    if length.is_none() && !bodyless && !chunked {
        keep_alive = false;
    }

    let mut head = status_line(status);
    for (name, value) in parts.headers.iter() {
        if name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        push_header(&mut head, name.as_str(), value.as_bytes());
    }
    // A HEAD answer tells the length a GET would get; 204 and 304 none.
    if declared.is_none() && (!bodyless || method == Method::HEAD) {
        if let Some(n) = exact {
            push_header(&mut head, "content-length", n.to_string().as_bytes());
        }
    }
    if chunked {
        push_header(&mut head, "transfer-encoding", b"chunked");
    }
    if !keep_alive {
        push_header(&mut head, "connection", b"close");
    }
    if !parts.headers.contains_key(DATE) {
        with_date(|date| push_header(&mut head, "date", date.as_bytes()));
    }
    head.extend_from_slice(b"\r\n");

    if bodyless {
        write_all(stream, &mut [IoSlice::new(&head)], limits).await?;
        return Ok(keep_alive);
    }
    let mut head = Some(head);
    let mut written = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| std::io::Error::other(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not sent
        };
        if data.is_empty() {
            continue;
        }
        written += data.len();
        let start = head.take().unwrap_or_default();
        if chunked {
            let size = format!("{:x}\r\n", data.len());
            write_all(
                stream,
                &mut [
                    IoSlice::new(&start),
                    IoSlice::new(size.as_bytes()),
                    IoSlice::new(&data),
                    IoSlice::new(b"\r\n"),
                ],
                limits,
            )
            .await?;
        } else {
            write_all(
                stream,
                &mut [IoSlice::new(&start), IoSlice::new(&data)],
                limits,
            )
            .await?;
        }
    }
    let start = head.take().unwrap_or_default();
    let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
    if !start.is_empty() || !end.is_empty() {
        write_all(
            stream,
            &mut [IoSlice::new(&start), IoSlice::new(end)],
            limits,
        )
        .await?;
    }
    if length.is_some_and(|n| n != written) {
        // The body was not the length the head announced: the client
        // cannot find the next response on this connection.
        return Ok(false);
    }
    Ok(keep_alive)
}

/// A response head's first line, in a buffer with room for its headers.
fn status_line(status: StatusCode) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    head
}

fn push_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Writes every byte of `slices`, each write due within the idle timeout
/// (a client that stops reading is let go).
async fn write_all(
    stream: &mut TcpStream,
    mut slices: &mut [IoSlice<'_>],
    limits: &ListenArgs,
) -> std::io::Result<()> {
    // Drops leading empty slices (a head already sent with an earlier frame).
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = timeout(limits.idle_timeout, stream.write_vectored(slices))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Answers `status` with no body and closes.
async fn refuse(stream: &mut TcpStream, status: StatusCode, limits: &ListenArgs) {
    let mut head = status_line(status);
    push_header(&mut head, "content-length", b"0");
    push_header(&mut head, "connection", b"close");
    with_date(|date| push_header(&mut head, "date", date.as_bytes()));
    head.extend_from_slice(b"\r\n");
    let _ = write_all(stream, &mut [IoSlice::new(&head)], limits).await;
    let _ = stream.shutdown().await;
}

/// Calls `f` with the `Date` header's value for now (formatted once a
/// second per thread).
fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != second {
            *cell = (second, httpdate::fmt_http_date(now));
        }
        f(&cell.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<(Head, usize)>, HeadError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_player_get_is_parsed_with_its_target_and_kept_alive() {
        let text =
            "GET /live01/playlist.m3u8?_HLS_msn=4&_HLS_part=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        let (head, length) = head(text).unwrap().unwrap();
        assert_eq!(length, text.find("GET /next").unwrap());
        assert_eq!(head.request.uri().path(), "/live01/playlist.m3u8");
        assert_eq!(head.request.uri().query(), Some("_HLS_msn=4&_HLS_part=1"));
        assert!(head.keep_alive);
        assert_eq!(head.content_length, 0);
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert!(head("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let alive = |t: &str| head(t).unwrap().unwrap().0.keep_alive;
        assert!(!alive("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!alive("GET / HTTP/1.0\r\n\r\n"));
        assert!(alive("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn broken_or_oversized_heads_are_refused_with_their_status() {
        let status = |t: &str| head(t).err().map(|e| e.status());
        assert_eq!(
            status("GET /\x01 HTTP/1.1\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(StatusCode::LENGTH_REQUIRED)
        );
        assert_eq!(
            status(&format!(
                "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY_BYTES + 1
            )),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    // A real server on a free port, driven with raw bytes as a client sends them.

    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use warp::Filter;

    use crate::service::server::{bind, serve_on};

    /// Where the held route's request is: not started, held, let go.
    const HELD: u8 = 1;
    const LET_GO: u8 = 2;

    /// Says [`LET_GO`] when dropped: the handler's future let go.
    struct DropFlag(Arc<AtomicU8>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(LET_GO, Ordering::SeqCst);
        }
    }

    /// Polls `state` until it is `wanted`, for at most 5 s.
    async fn reaches(state: &AtomicU8, wanted: u8) -> bool {
        timeout(Duration::from_secs(5), async {
            while state.load(Ordering::SeqCst) != wanted {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Serves test routes; returns the address, where the held route's
    /// request is, and the shutdown that stops the server.
    async fn server() -> (SocketAddr, Arc<AtomicU8>, Shutdown) {
        let listen = ListenArgs::local(100, None);
        let listener = bind(&listen, 0).await.expect("bound");
        let addr = listener.local_addr().expect("an address");
        let held_state = Arc::new(AtomicU8::new(0));
        let flag = held_state.clone();
        let hello = warp::path("hello")
            .and(warp::get().or(warp::head()).unify())
            .map(|| "hello");
        let bee = warp::path("bee").map(|| "bee");
        let held = warp::path("held").then(move || {
            flag.store(HELD, Ordering::SeqCst);
            let guard = DropFlag(flag.clone());
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }
        });
        let echo = warp::path("echo")
            .and(warp::post())
            .and(warp::body::bytes())
            .map(|body: Bytes| body.to_vec());
        let events = warp::path("events").map(|| {
            let events =
                ["one", "two"].map(|d| Ok::<_, Infallible>(warp::sse::Event::default().data(d)));
            warp::sse::reply(futures_util::stream::iter(events))
        });
        let routes = hello
            .or(bee)
            .or(held)
            .or(echo)
            .or(events)
            .recover(|_| async { Ok::<_, Infallible>(StatusCode::NOT_FOUND) });
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        tokio::spawn(async move { serve_on("test", listener, &listen, routes, stop).await });
        (addr, held_state, shutdown)
    }

    /// Sends `raw` and reads until the server closes the connection.
    async fn exchange(addr: SocketAddr, raw: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream.write_all(raw.as_bytes()).await.expect("sent");
        let mut answer = String::new();
        timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .expect("the server closes after a Connection: close request")
            .expect("read");
        answer
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let (addr, _, shutdown) = server().await;
        let answer = exchange(
            addr,
            "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /bee HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let hello = answer.find("\r\n\r\nhello").expect("hello answered");
        let bee = answer.find("\r\n\r\nbee").expect("bee answered");
        assert!(hello < bee, "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
        assert!(answer.contains("content-length: 5\r\n"), "{answer}");
        assert!(answer.contains("date: "), "{answer}");
        let (first, second) = answer.split_at(answer.rfind("HTTP/1.1 200 OK").expect("two"));
        assert!(!first.contains("connection: close"), "kept alive: {answer}");
        assert!(
            second.contains("connection: close"),
            "closed as asked: {answer}"
        );
        shutdown.trigger();
    }

    #[tokio::test]
    async fn head_gets_the_length_and_no_body_and_the_connection_stays_usable() {
        let (addr, _, shutdown) = server().await;
        let answer = exchange(
            addr,
            "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /bee HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (head, rest) = answer.split_once("\r\n\r\n").expect("a head");
        assert!(head.contains("content-length: 5"), "{answer}");
        assert!(
            rest.starts_with("HTTP/1.1 200 OK"),
            "no body after HEAD: {answer}"
        );
        assert!(rest.ends_with("\r\n\r\nbee"), "{answer}");
        shutdown.trigger();
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_is_sent_chunked() {
        let (addr, _, shutdown) = server().await;
        let answer = exchange(
            addr,
            "GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.contains("transfer-encoding: chunked"), "{answer}");
        assert!(!answer.contains("content-length"), "{answer}");
        assert!(
            answer.contains("data:one") && answer.contains("data:two"),
            "{answer}"
        );
        assert!(answer.ends_with("\r\n0\r\n\r\n"), "{answer}");
        shutdown.trigger();
    }

    #[tokio::test]
    async fn a_body_is_read_by_its_length_after_100_continue() {
        let (addr, _, shutdown) = server().await;
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            .await
            .expect("sent");
        let mut interim = [0u8; 25];
        stream
            .read_exact(&mut interim)
            .await
            .expect("an interim answer");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"ping").await.expect("sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nping"), "{answer}");
        shutdown.trigger();
    }

    #[tokio::test]
    async fn a_client_gone_while_its_request_is_held_lets_the_request_go() {
        let (addr, state, shutdown) = server().await;
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream
            .write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("sent");
        assert!(reaches(&state, HELD).await, "the request is held");
        drop(stream);
        assert!(
            reaches(&state, LET_GO).await,
            "the held request outlived its client"
        );
        shutdown.trigger();
    }
}
