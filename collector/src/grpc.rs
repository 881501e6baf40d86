//! The gNMI client: gRPC straight on one HTTP/2 connection (`h2`) per device.
//!
//! Why not tonic's client (ADR-0009): a tonic `Channel` is built for a service called
//! by many tasks, with a request queue (a tower `Buffer`), hyper's dispatch channel and
//! a task per streaming request body in front of the connection. A collector holds
//! 10,000 connections that each carry one long-lived Subscribe stream and, at start, one
//! Capabilities call; that machinery cost ~25 KiB and three tasks per device. Here a
//! device costs its h2 connection (one task, which also sends keepalive pings) and what
//! its session reads.
//!
//! The gRPC part is small: a request is `POST /gnmi.gNMI/<Method>` with
//! `content-type: application/grpc`; messages in both directions are a 5-byte prefix
//! (compressed flag, big-endian length) then the protobuf bytes; the outcome is the
//! `grpc-status` (and `grpc-message`) trailer, or header for a response without a body.
//! Compression is never asked for, so a compressed message is an error.

use std::future::poll_fn;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{Ping, RecvStream, SendStream};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue, TE, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, StatusCode, Uri};
use prost::Message;
use proto::gnmi;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::transport::{Credentials, Target};

/// Bytes before each message: compressed flag and length.
pub(crate) const PREFIX: usize = 5;
const SUBSCRIBE: &str = "/gnmi.gNMI/Subscribe";
const CAPABILITIES: &str = "/gnmi.gNMI/Capabilities";
const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
const AGENT: HeaderValue =
    HeaderValue::from_static(concat!("netpulse/", env!("CARGO_PKG_VERSION")));

/// Connection settings, from the collector's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Limit on TCP connect, TLS and HTTP/2 handshakes together.
    pub connect_timeout: Duration,
    /// Interval of keepalive pings.
    pub keepalive_interval: Duration,
    /// How long a ping may stay unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// HTTP/2 stream receive window.
    pub stream_window: u32,
    /// HTTP/2 connection receive window.
    pub connection_window: u32,
    /// Largest message accepted from the device.
    pub max_message_bytes: usize,
}

/// Why the connection ended, when this side ended it (keepalive); shared between the
/// connection's task and the streams, so a stream's error says it.
type Ending = Arc<OnceLock<String>>;

/// An open HTTP/2 connection to one device. Dropping it (and the [`Subscription`] made
/// from it) closes the connection.
pub struct Connection {
    send: SendRequest<Bytes>,
    scheme: Scheme,
    authority: Authority,
    credentials: Option<Credentials>,
    max_message: usize,
    ending: Ending,
    _driver: Driver,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// Opens the connection: TCP, TLS unless the target is plain text, the HTTP/2
/// handshake. The error is in plain words with its causes.
pub async fn connect(target: &Target, settings: &Settings) -> Result<Connection, String> {
    let authority: Authority = target
        .authority
        .parse()
        .map_err(|e| format!("invalid address {}: {e}", target.authority))?;
    let opened = tokio::time::timeout(settings.connect_timeout, async {
        let tcp = tokio::net::TcpStream::connect(target.authority.as_str())
            .await
            .map_err(|e| format!("tcp connect error: {}", describe(&e)))?;
        // Telemetry is many small writes each way; waiting to coalesce only adds latency.
        let _ = tcp.set_nodelay(true);
        match &target.tls {
            None => handshake(tcp, settings).await,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {}", describe(&e)))?;
                handshake(stream, settings).await
            }
        }
    })
    .await;
    let (send, ending, driver) = match opened {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "no connection within {}s",
                settings.connect_timeout.as_secs_f64()
            ));
        }
    };
    Ok(Connection {
        send,
        scheme: if target.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        },
        authority,
        credentials: target.credentials.clone(),
        max_message: settings.max_message_bytes,
        ending,
        _driver: driver,
    })
}

type Handshake = (SendRequest<Bytes>, Ending, Driver);

async fn handshake<T>(io: T, settings: &Settings) -> Result<Handshake, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake failed: {}", describe(&e)))?;
    let ending = Ending::default();
    let pings = connection.ping_pong();
    let driver = tokio::spawn(drive(connection, pings, *settings, ending.clone()));
    Ok((send, ending, Driver(driver)))
}

/// The connection's task, stopped when the connection is dropped.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the connection until it ends, pinging every keepalive interval; a ping left
/// unanswered for the keepalive timeout ends it (and with it every stream).
async fn drive<T>(
    mut connection: h2::client::Connection<T, Bytes>,
    pings: Option<h2::PingPong>,
    settings: Settings,
    ending: Ending,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Some(mut pings) = pings else {
        let _ = connection.await;
        return;
    };
    let mut next_ping = Instant::now() + settings.keepalive_interval;
    let mut answer_by: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = &mut connection => return,
            _ = tokio::time::sleep_until(next_ping), if answer_by.is_none() => {
                if pings.send_ping(Ping::opaque()).is_err() {
                    return;
                }
                answer_by = Some(Instant::now() + settings.keepalive_timeout);
            }
            pong = poll_fn(|cx| pings.poll_pong(cx)), if answer_by.is_some() => {
                if pong.is_err() {
                    return;
                }
                answer_by = None;
                next_ping = Instant::now() + settings.keepalive_interval;
            }
            _ = tokio::time::sleep_until(answer_by.unwrap_or(next_ping)), if answer_by.is_some() => {
                let _ = ending.set(format!(
                    "the device did not answer a keepalive ping within {}s",
                    settings.keepalive_timeout.as_secs_f64()
                ));
                return;
            }
        }
    }
}

impl Connection {
    /// Asks for the device's capabilities (a unary call).
    pub async fn capabilities(&mut self) -> Result<gnmi::CapabilityResponse, Status> {
        let request = gnmi::CapabilityRequest::default();
        let (mut messages, _send) = self.call(CAPABILITIES, &request, true).await?;
        let answer = messages.message::<gnmi::CapabilityResponse>().await?;
        // The outcome is in the trailers, after the message.
        match answer {
            Some(response) => match messages.message::<gnmi::CapabilityResponse>().await {
                Ok(None) => Ok(response),
                Ok(Some(_)) => Err(Status::internal(
                    "the device answered Capabilities with more than one message",
                )),
                Err(status) => Err(status),
            },
            None => Err(Status::internal(
                "the device answered Capabilities without a message",
            )),
        }
    }

    /// Opens a Subscribe stream with its first request. The request side stays open for
    /// the life of the subscription (closing it would tell the target we are done).
    pub async fn subscribe(
        mut self,
        request: &gnmi::SubscribeRequest,
    ) -> Result<Subscription, Status> {
        let (messages, requests) = self.call(SUBSCRIBE, request, false).await?;
        Ok(Subscription {
            messages,
            requests,
            _connection: self,
        })
    }

    /// Sends the request headers and the first message, and waits for the response
    /// headers. A response that ends in its headers (gRPC "trailers only") with an error
    /// status is that error.
    async fn call(
        &mut self,
        method: &'static str,
        message: &impl Message,
        end: bool,
    ) -> Result<(Messages, SendStream<Bytes>), Status> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::from_static(method))
            .build()
            .map_err(|e| Status::internal(format!("request URI: {e}")))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(())
            .map_err(|e| Status::internal(format!("request: {e}")))?;
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, GRPC);
        headers.insert(TE, TRAILERS);
        headers.insert(USER_AGENT, AGENT);
        if let Some(c) = &self.credentials {
            c.insert(headers);
        }
        let ready = self.send.clone().ready().await;
        let mut send = ready.map_err(|e| self.status(&e))?;
        let (response, mut stream) = send
            .send_request(request, false)
            .map_err(|e| self.status(&e))?;
        stream
            .send_data(frame(message), end)
            .map_err(|e| self.status(&e))?;
        let response = response.await.map_err(|e| self.status(&e))?;
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(http_status(parts.status));
        }
        let messages = Messages {
            body,
            frames: Framer::new(self.max_message),
            finished: false,
            ending: self.ending.clone(),
        };
        match grpc_status(&parts.headers) {
            Some(Err(status)) => Err(status),
            _ => Ok((messages, stream)),
        }
    }

    fn status(&self, error: &h2::Error) -> Status {
        h2_status(error, &self.ending)
    }
}

/// An open Subscribe stream.
pub struct Subscription {
    messages: Messages,
    requests: SendStream<Bytes>,
    _connection: Connection,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next response's protobuf bytes (decoded by [`proto::wire`]), `None` when the
    /// device ended the stream cleanly. Cancel-safe: what was read stays buffered for the
    /// next call.
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        self.messages.raw().await
    }

    /// Sends one more request on the stream (a POLL trigger).
    pub fn send(&mut self, request: &gnmi::SubscribeRequest) -> Result<(), Status> {
        self.requests
            .send_data(frame(request), false)
            .map_err(|e| h2_status(&e, &self.messages.ending))
    }
}

/// The messages of a response body.
struct Messages {
    body: RecvStream,
    frames: Framer,
    finished: bool,
    ending: Ending,
}

impl Messages {
    async fn message<M: Message + Default>(&mut self) -> Result<Option<M>, Status> {
        let Some(bytes) = self.raw().await? else {
            return Ok(None);
        };
        M::decode(bytes).map(Some).map_err(|e| undecodable(&e))
    }

    /// The next message's bytes.
    async fn raw(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(bytes) = self.frames.next()? {
                return Ok(Some(bytes));
            }
            if self.finished {
                return Ok(None);
            }
            match poll_fn(|cx| self.body.poll_data(cx)).await {
                Some(Ok(data)) => {
                    // Reading is what frees the window for the device to send more.
                    let _ = self.body.flow_control().release_capacity(data.len());
                    self.frames.push(data);
                }
                Some(Err(e)) => return Err(h2_status(&e, &self.ending)),
                None => {
                    if self.frames.holds_part() {
                        return Err(Status::internal(
                            "the device ended the stream in the middle of a message",
                        ));
                    }
                    let trailers = poll_fn(|cx| self.body.poll_trailers(cx))
                        .await
                        .map_err(|e| h2_status(&e, &self.ending))?;
                    self.finished = true;
                    return match trailers.as_ref().and_then(grpc_status) {
                        Some(Ok(())) => Ok(None),
                        Some(Err(status)) => Err(status),
                        None => Err(Status::internal(
                            "the device ended the stream without a grpc-status",
                        )),
                    };
                }
            }
        }
    }
}

/// Cuts length-prefixed messages out of data frames as they arrive.
#[derive(Debug)]
struct Framer {
    /// The data frame being read.
    current: Bytes,
    /// A message that spans data frames, assembled.
    partial: BytesMut,
    max: usize,
}

impl Framer {
    fn new(max: usize) -> Self {
        Self {
            current: Bytes::new(),
            partial: BytesMut::new(),
            max,
        }
    }

    /// Takes the next data frame; call only once [`Framer::next`] returned `None`.
    fn push(&mut self, data: Bytes) {
        debug_assert!(self.current.is_empty());
        self.current = data;
    }

    /// Whether part of a message is waiting for the rest.
    fn holds_part(&self) -> bool {
        !self.partial.is_empty() || !self.current.is_empty()
    }

    /// The next whole message from what was read, if there is one. A message inside one
    /// data frame is a slice of it, not a copy.
    fn next(&mut self) -> Result<Option<Bytes>, Status> {
        if self.partial.is_empty() {
            if let Some(length) = self.length(&self.current)?
                && self.current.len() >= PREFIX + length
            {
                let message = self.current.slice(PREFIX..PREFIX + length);
                self.current.advance(PREFIX + length);
                return Ok(Some(message));
            }
            if self.current.is_empty() {
                return Ok(None);
            }
        }
        self.partial.extend_from_slice(&self.current);
        self.current = Bytes::new();
        let Some(length) = self.length(&self.partial)? else {
            return Ok(None);
        };
        if self.partial.len() < PREFIX + length {
            self.partial.reserve(PREFIX + length - self.partial.len());
            return Ok(None);
        }
        let mut message = self.partial.split_to(PREFIX + length).freeze();
        message.advance(PREFIX);
        if self.partial.is_empty() {
            // Do not keep a large message's buffer for the life of the stream.
            self.partial = BytesMut::new();
        }
        Ok(Some(message))
    }

    /// The length of the message starting `buffer`, once its prefix is there.
    fn length(&self, buffer: &[u8]) -> Result<Option<usize>, Status> {
        let Some(prefix) = buffer.get(..PREFIX) else {
            return Ok(None);
        };
        if prefix[0] != 0 {
            return Err(Status::internal(
                "the device sent a compressed message, which netpulse did not ask for",
            ));
        }
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if length > self.max {
            return Err(Status::resource_exhausted(format!(
                "message too large: {length} bytes, the limit is {} (max message size)",
                self.max
            )));
        }
        Ok(Some(length))
    }
}

/// The status of a message that is not what the method returns.
pub fn undecodable(error: &prost::DecodeError) -> Status {
    Status::internal(format!(
        "the device sent a message that does not decode: {error}"
    ))
}

/// A message with its gRPC prefix.
fn frame(message: &impl Message) -> Bytes {
    let length = message.encoded_len();
    let mut buffer = BytesMut::with_capacity(PREFIX + length);
    buffer.put_u8(0);
    buffer.put_u32(length as u32);
    // Cannot fail: the buffer has room for the whole message.
    let _ = message.encode(&mut buffer);
    buffer.freeze()
}

/// The status a response carries in `grpc-status`/`grpc-message`, if any.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let code = headers.get("grpc-status")?;
    let code = code
        .to_str()
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    if code == Code::Ok {
        return Some(Ok(()));
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some(Err(Status::new(code, message)))
}

/// `grpc-message` is percent-encoded UTF-8.
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The gRPC code for an HTTP status that is not 200 (gRPC's HTTP mapping).
fn http_status(status: StatusCode) -> Status {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("the device answered HTTP {status}"))
}

/// A connection or stream failure as a status, naming why this side ended it if it did.
fn h2_status(error: &h2::Error, ending: &Ending) -> Status {
    if let Some(reason) = ending.get() {
        return Status::unavailable(reason.clone());
    }
    let code = match error.reason() {
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        Some(h2::Reason::REFUSED_STREAM) | None => Code::Unavailable,
        Some(_) => Code::Internal,
    };
    Status::new(code, format!("connection: {}", describe(error)))
}

/// Joins an error and its sources: "tcp connect error: Connection refused".
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Feeds `wire` cut into pieces of `piece` bytes; returns the messages in order.
    fn read_all(wire: &[u8], piece: usize, max: usize) -> Result<Vec<Vec<u8>>, Status> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        for chunk in wire.chunks(piece) {
            while let Some(m) = framer.next()? {
                out.push(m.to_vec());
            }
            framer.push(Bytes::copy_from_slice(chunk));
        }
        while let Some(m) = framer.next()? {
            out.push(m.to_vec());
        }
        assert!(!framer.holds_part(), "nothing left over");
        Ok(out)
    }

    #[test]
    fn messages_are_cut_out_whatever_the_data_frames() {
        let bodies: Vec<Vec<u8>> =
            vec![b"first".to_vec(), Vec::new(), vec![7; 3000], b"x".to_vec()];
        let wire: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        for piece in [1, 2, 4, 5, 6, 9, 100, 3004, wire.len()] {
            assert_eq!(
                read_all(&wire, piece, 4096).unwrap(),
                bodies,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_prefix() {
        let wire = framed(&[1; 100]);
        let error = read_all(&wire[..PREFIX], PREFIX, 99).unwrap_err();
        assert_eq!(error.code(), Code::ResourceExhausted);
        assert!(error.message().contains("too large"), "{}", error.message());
        assert_eq!(read_all(&wire, 7, 100).unwrap(), vec![vec![1; 100]]);
    }

    #[test]
    fn compressed_messages_are_refused() {
        let mut wire = framed(b"abc");
        wire[0] = 1;
        let error = read_all(&wire, 64, 100).unwrap_err();
        assert!(
            error.message().contains("compressed"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn a_cut_message_is_held_until_complete() {
        let wire = framed(b"hello");
        let mut framer = Framer::new(100);
        framer.push(Bytes::copy_from_slice(&wire[..7]));
        assert!(framer.next().unwrap().is_none());
        assert!(
            framer.holds_part(),
            "an incomplete message is reported at end of stream"
        );
        framer.push(Bytes::copy_from_slice(&wire[7..]));
        assert_eq!(framer.next().unwrap().unwrap(), &b"hello"[..]);
        assert!(!framer.holds_part());
    }

    #[test]
    fn frames_carry_the_prefix_and_the_encoded_message() {
        let request = gnmi::CapabilityRequest::default();
        assert_eq!(&frame(&request)[..], &[0, 0, 0, 0, 0]);
        let poll = gnmi::SubscribeRequest {
            request: Some(gnmi::subscribe_request::Request::Poll(gnmi::Poll {})),
            ..Default::default()
        };
        let bytes = frame(&poll);
        assert_eq!(bytes.len(), PREFIX + poll.encoded_len());
        let decoded = gnmi::SubscribeRequest::decode(&bytes[PREFIX..]).unwrap();
        assert_eq!(decoded, poll);
    }

    #[test]
    fn errors_are_described_with_their_causes() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        assert!(describe(&outer).contains("connection refused"));
    }

    #[test]
    fn percent_decoding_of_grpc_message() {
        assert_eq!(percent_decode(b"no%20such path%3A /x"), "no such path: /x");
        assert_eq!(percent_decode(b"50%"), "50%");
        assert_eq!(percent_decode(b"caf%C3%A9"), "café");
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        assert_eq!(
            http_status(StatusCode::NOT_FOUND).code(),
            Code::Unimplemented
        );
        assert_eq!(
            http_status(StatusCode::SERVICE_UNAVAILABLE).code(),
            Code::Unavailable
        );
        assert_eq!(http_status(StatusCode::IM_A_TEAPOT).code(), Code::Unknown);
    }

    #[test]
    fn grpc_status_header_is_read() {
        let mut headers = HeaderMap::new();
        assert!(grpc_status(&headers).is_none());
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(grpc_status(&headers), Some(Ok(()))));
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        headers.insert("grpc-message", HeaderValue::from_static("no%20such%20path"));
        let status = grpc_status(&headers).unwrap().unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such path");
    }
}
