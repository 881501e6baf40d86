//! Live streams held without hyper.
//!
//! A web node holds one connection per watching browser for as long as the page is
//! open, so what a held connection costs is what a node can serve. hyper's HTTP/1
//! connection keeps an 8 KiB read and an 8 KiB write buffer (fixed minimums) and its
//! connection task for the whole stream: 22.0 KiB per held stream before any netpulse
//! code, against 1.0 KiB for a task holding only the socket (`netpulse-bench
//! sse-floor`). So [`crate::serve_with_live`] reads each request head of a connection
//! itself ([`connection`]; into a buffer freed once it is parsed):
//!
//! - `GET /devices/{name}/live` over HTTP/1.1 for a known device: the stream is served
//!   here, by a task that owns the socket and writes the events as chunks
//!   (`text/event-stream`, chunked, keep-alive comments every 15 s as axum's `Sse`);
//!   the same events as the axum route ([`crate::live::open`]).
//! - an HTTP/1.1 `GET` or `HEAD` without a body (pages, assets, the API, health; also
//!   a live request the route refuses: unknown device, bad query): lent to hyper for
//!   that one request ([`Prefixed::once`]: its input ends after the head, so hyper
//!   answers and gives the socket back, keep-alive intact), then the next head is read
//!   here. Browsers ask for the stream on a connection they loaded the page on, and an
//!   ingress reuses its upstream connections: those streams are held too.
//! - anything else (HTTP/1.0, a body, an upgrade, `Connection: close`, a head that does
//!   not parse): the bytes read so far are handed to hyper in front of the socket
//!   ([`Prefixed`]) for the rest of the connection, which answers as it always did.
//!
//! The first head must come within 30 s, later ones within 75 s of the last response
//! (an idle kept-alive connection is then closed).
//!
//! A held stream ends when the browser goes (its socket reads end or writes fail) or at
//! shutdown; it is not part of the graceful drain (a stream has no end to wait for).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::live::{self, LiveEvent, LiveQuery};

/// Longest request head read before handing the connection to hyper (which answers
/// 431 to a longer one).
pub(crate) const HEAD_LIMIT: usize = 16 * 1024;
/// A connection that has not sent a whole request head by then is closed.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// A kept-alive connection without a new request for this long is closed (longer than
/// the 60 s an nginx ingress keeps idle upstream connections, so it closes first).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// A comment is sent after this long without an event, so proxies keep the stream and
/// a gone browser is noticed (axum's `KeepAlive::default()`).
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most request headers looked at.
const MAX_HEADERS: usize = 64;

/// What a request head asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Head {
    /// Not all there yet.
    Incomplete,
    /// A live stream this module serves.
    Live(LiveRequest),
    /// A request without a body that hyper answers alone (the head is this many
    /// bytes); the connection comes back here for the next request.
    Simple(usize),
    /// Anything else: hyper's, for the rest of the connection.
    Other,
}

/// A request for a device's live stream.
#[derive(Debug, PartialEq)]
pub(crate) struct LiveRequest {
    /// The device, percent-decoded.
    pub name: String,
    pub query: LiveQuery,
    /// `Last-Event-ID`.
    pub since: Option<i64>,
}

/// Reads `buf` as an HTTP/1 request head.
pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => Head::Incomplete,
        // hyper answers malformed heads (400, 431) as before.
        Err(_) => Head::Other,
        Ok(httparse::Status::Complete(n)) => match live_request(&request) {
            Some(live) => Head::Live(live),
            None if simple(&request) => Head::Simple(n),
            None => Head::Other,
        },
    }
}

/// Whether hyper can answer `request` alone and give the connection back: HTTP/1.1
/// `GET` or `HEAD` without a body, an upgrade, or `Connection: close`.
fn simple(request: &httparse::Request<'_, '_>) -> bool {
    if !matches!(request.method, Some("GET" | "HEAD")) || request.version != Some(1) {
        return false;
    }
    request.headers.iter().all(|header| {
        let name = header.name;
        let value = String::from_utf8_lossy(header.value);
        !(name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
            || (name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
            || (name.eq_ignore_ascii_case("connection")
                && value.to_ascii_lowercase().contains("close")))
    })
}

fn live_request(request: &httparse::Request<'_, '_>) -> Option<LiveRequest> {
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let target = request.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let name = path.strip_prefix("/devices/")?.strip_suffix("/live")?;
    // As the router: one path segment, decoded after matching.
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()?
        .into_owned();
    let query: LiveQuery = serde_urlencoded::from_str(query).ok()?;
    let mut since = None;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("last-event-id") {
            since = live::last_event_id(Some(header.value));
        } else if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            // A GET with a body or an upgrade: not what a browser sends; hyper's.
            return None;
        }
    }
    Some(LiveRequest { name, query, since })
}

/// What [`sniff`] found.
pub(crate) enum Sniffed {
    /// Served here until the browser goes.
    Live(mpsc::Receiver<LiveEvent>),
    /// One request for hyper (its head), and what the client sent after it.
    Simple { head: Vec<u8>, rest: Vec<u8> },
    /// For hyper, with the bytes already read.
    Other(Vec<u8>),
    /// Closed, timed out or failed before a whole head arrived.
    Gone,
}

/// Reads the next request head of `socket` (after `buf`, what was read already) within
/// `timeout`, and opens its live stream if it asks for one.
pub(crate) async fn sniff(
    socket: &mut TcpStream,
    state: &AppState,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> Sniffed {
    let read = tokio::time::timeout(timeout, async {
        loop {
            if !buf.is_empty() {
                match parse_head(&buf) {
                    Head::Incomplete => {}
                    head => return Ok::<_, io::Error>(head),
                }
            }
            if buf.len() >= HEAD_LIMIT {
                return Ok(Head::Other);
            }
            buf.reserve(1024);
            if socket.read_buf(&mut buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    })
    .await;
    match read {
        Ok(Ok(Head::Live(request))) => {
            match live::open(state.clone(), &request.name, request.query, request.since).await {
                Ok(rx) => {
                    state.metrics.sse_held.inc();
                    Sniffed::Live(rx)
                }
                // The route answers it (404 for an unknown device, 500 for a store error).
                Err(_) => Sniffed::Other(buf),
            }
        }
        Ok(Ok(Head::Simple(n))) => {
            let rest = buf.split_off(n);
            Sniffed::Simple { head: buf, rest }
        }
        Ok(Ok(_)) => Sniffed::Other(buf),
        Ok(Err(_)) | Err(_) => Sniffed::Gone,
    }
}

/// Serves one connection: each request head is read here; a live stream is held here
/// (the connection ends with it), a simple request is answered by hyper alone and the
/// connection comes back for the next one, anything else goes to hyper for the rest of
/// the connection. So a browser (or an ingress with upstream keep-alive) that asks for
/// a stream on a connection it used before still gets it held.
pub(crate) async fn connection(
    mut socket: TcpStream,
    state: AppState,
    http: hyper::server::conn::http1::Builder,
    service: hyper_util::service::TowerToHyperService<axum::Router>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let mut pending = Vec::new();
    let mut timeout = HEAD_TIMEOUT;
    loop {
        let sniffed = tokio::select! {
            // Shutdown: an idle connection ends (one in a request finishes it first).
            () = state.streams.cancelled() => return,
            sniffed = sniff(&mut socket, &state, std::mem::take(&mut pending), timeout) => sniffed,
        };
        match sniffed {
            Sniffed::Live(events) => {
                let streams = state.streams.clone();
                drop((watcher, service, state));
                stream(socket, events, streams).await;
                return;
            }
            Sniffed::Simple { head, rest } => {
                let io = hyper_util::rt::TokioIo::new(Prefixed::once(head, socket));
                match http
                    .serve_connection(io, service.clone())
                    .without_shutdown()
                    .await
                {
                    Ok(parts) => {
                        socket = parts.io.into_inner().socket;
                        pending = rest;
                        timeout = IDLE_TIMEOUT;
                    }
                    // The client went away mid-request: not a server error.
                    Err(_) => return,
                }
            }
            Sniffed::Other(head) => {
                let io = hyper_util::rt::TokioIo::new(Prefixed::new(head, socket));
                let _ = watcher.watch(http.serve_connection(io, service)).await;
                return;
            }
            Sniffed::Gone => return,
        }
    }
}

/// The response head of a held stream (what axum's `Sse` sends, plus
/// `X-Accel-Buffering: no` so an nginx ingress passes events on at once).
fn response_head() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         x-accel-buffering: no\r\ntransfer-encoding: chunked\r\ndate: {}\r\n\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    )
    .into_bytes()
}

/// Appends `payload` as one HTTP/1.1 chunk.
fn chunk(out: &mut Vec<u8>, payload: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", payload.len());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Writes `events` to `socket` until the browser goes, the stream ends or `shutdown`.
pub(crate) async fn stream(
    mut socket: TcpStream,
    mut events: mpsc::Receiver<LiveEvent>,
    shutdown: CancellationToken,
) {
    if socket.write_all(&response_head()).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = socket.split();
    // Bytes a browser sends on a held stream are ignored; its end is the browser going.
    let mut discard = [0u8; 64];
    let keep_alive = tokio::time::sleep(KEEP_ALIVE);
    tokio::pin!(keep_alive);
    loop {
        // Each event is written from a buffer of its own, freed after the write: a
        // held stream keeps no buffer between events.
        let bytes = tokio::select! {
            () = shutdown.cancelled() => break,
            read = reader.read(&mut discard) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            },
            event = events.recv() => {
                let Some(event) = event else { break };
                let mut payload = Vec::with_capacity(event.data.len() + 64);
                event.encode(&mut payload);
                let mut bytes = Vec::with_capacity(payload.len() + 16);
                chunk(&mut bytes, &payload);
                bytes
            }
            () = &mut keep_alive => {
                let mut bytes = Vec::with_capacity(16);
                chunk(&mut bytes, b":\n\n");
                bytes
            }
        };
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
        keep_alive
            .as_mut()
            .reset(tokio::time::Instant::now() + KEEP_ALIVE);
    }
    // The end of the chunked body, if the browser is still there.
    let _ = writer.write_all(b"0\r\n\r\n").await;
}

/// A socket whose first bytes were already read: they are read again first (then the
/// socket, or an end of input for a connection lent to hyper for one request).
pub(crate) struct Prefixed {
    head: Vec<u8>,
    at: usize,
    /// Reads end after `head`: hyper answers that request, finds no other and ends,
    /// giving the socket back.
    once: bool,
    socket: TcpStream,
}

impl Prefixed {
    pub(crate) fn new(head: Vec<u8>, socket: TcpStream) -> Self {
        Self {
            head,
            at: 0,
            once: false,
            socket,
        }
    }

    pub(crate) fn once(head: Vec<u8>, socket: TcpStream) -> Self {
        Self {
            once: true,
            ..Self::new(head, socket)
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.head.len() {
            let n = (this.head.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            if this.at == this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.once {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(head: &str) -> Option<LiveRequest> {
        match parse_head(head.as_bytes()) {
            Head::Live(request) => Some(request),
            Head::Simple(_) | Head::Other => None,
            Head::Incomplete => panic!("incomplete: {head:?}"),
        }
    }

    #[test]
    fn a_browsers_live_request_is_recognised_with_its_query_and_last_event_id() {
        let request = live(
            "GET /devices/leaf%2D1/live?minutes=30&charts=false HTTP/1.1\r\nHost: x\r\n\
             Accept: text/event-stream\r\nLast-Event-ID: 1700000000000000000\r\n\r\n",
        )
        .unwrap();
        assert_eq!(request.name, "leaf-1");
        assert_eq!(request.since, Some(1_700_000_000_000_000_000));
        assert_eq!(request.query.minutes, Some(30));
        assert_eq!(request.query.charts, Some(false));
        assert_eq!(request.query.since, None);
    }

    #[test]
    fn other_requests_go_to_hyper_one_at_a_time_when_they_have_no_body() {
        // hyper answers these alone and the connection comes back (errors included).
        for head in [
            "GET /devices/leaf1 HTTP/1.1\r\n\r\n",
            "HEAD / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /devices//live HTTP/1.1\r\n\r\n",
            "GET /devices/a/b/live HTTP/1.1\r\n\r\n",
            "GET /devices/leaf1/live?minutes=many HTTP/1.1\r\n\r\n",
            "GET /devices/%FF/live HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(head.as_bytes()),
                Head::Simple(head.len()),
                "{head:?}"
            );
        }
        // Only the first of pipelined requests is read.
        let two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(parse_head(two.as_bytes()), Head::Simple(two.len() / 2));
        // hyper keeps these for the rest of the connection.
        for head in [
            "GET /devices/leaf1/live HTTP/1.0\r\n\r\n",
            "POST /devices/leaf1/live HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Close\r\n\r\n",
            "GET /devices/leaf1/live HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /devices/leaf1/live HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert_eq!(parse_head(head.as_bytes()), Head::Other, "{head:?}");
        }
        assert_eq!(
            parse_head(b"GET /devices/leaf1/live HTTP/1.1\r\nHost: x\r\n"),
            Head::Incomplete
        );
    }

    #[test]
    fn events_are_written_as_axum_writes_them_in_chunks() {
        let event = LiveEvent {
            kind: "samples",
            id: Some(42),
            data: "{\"a\":1}".into(),
        };
        let mut payload = Vec::new();
        event.encode(&mut payload);
        assert_eq!(payload, b"event: samples\ndata: {\"a\":1}\nid: 42\n\n");
        let mut bytes = Vec::new();
        chunk(&mut bytes, &payload);
        assert_eq!(&bytes[..4], b"25\r\n");
        assert!(bytes.ends_with(b"\n\n\r\n"));
    }
}
