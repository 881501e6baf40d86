//! Collector sessions against peers that break HTTP/2 and gRPC themselves, below what a
//! gNMI server library lets a test do: a peer that stops answering keepalive pings,
//! garbage instead of HTTP/2, a message that does not decode.

// Test helpers, outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

/// What the peer does once a Subscribe stream is open.
#[derive(Clone, Copy)]
enum Then {
    /// Stops polling its HTTP/2 connection: no data, no answer to pings.
    Freeze,
    /// Sends this raw body (a gRPC-framed message of the test's making).
    Send(&'static [u8]),
}

/// An HTTP/2 peer that answers Capabilities UNIMPLEMENTED ("trailers only") and opens
/// every Subscribe stream with headers, then does `then`. Counts connections.
async fn h2_peer(then: Then) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                // Streams stay open while the connection does: dropping one resets it.
                let mut open = Vec::new();
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let grpc = |status: Option<&str>| {
                        let mut r = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc");
                        if let Some(s) = status {
                            r = r.header("grpc-status", s);
                        }
                        r.body(()).unwrap()
                    };
                    if request.uri().path().ends_with("/Capabilities") {
                        let _ = respond.send_response(grpc(Some("12")), true);
                        continue;
                    }
                    let Ok(mut body) = respond.send_response(grpc(None), false) else {
                        return;
                    };
                    match then {
                        Then::Freeze => {
                            // Long enough to flush the headers, then never again.
                            let _ = tokio::time::timeout(
                                Duration::from_millis(100),
                                connection.accept(),
                            )
                            .await;
                            std::future::pending::<()>().await;
                        }
                        Then::Send(raw) => {
                            let _ = body.send_data(Bytes::from_static(raw), false);
                        }
                    }
                    open.push(body);
                }
            });
        }
    });
    (addr, accepted)
}

/// Short timeouts, and an hour between retries: a test sees the first failure only.
fn no_retry() -> collector::CollectorConfig {
    collector::CollectorConfig {
        backoff_min: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..config()
    }
}

/// Runs a collector for one device at `addr` until it is unreachable; its last error.
async fn failure_of(addr: SocketAddr) -> (Running, String) {
    let c = collect(vec![device("leaf1", addr)], no_retry()).await;
    let h = c
        .wait_for("leaf1", "unreachable", |h| h.state == "unreachable")
        .await;
    (c, h.last_error.unwrap_or_default())
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped_by_keepalive() {
    let (addr, accepted) = h2_peer(Then::Freeze).await;
    let mut d = device("leaf1", addr);
    // Idle detection would take minutes at this interval: only keepalive can notice.
    d.spec.gnmi.subscriptions[0].sample_interval = Some("60s".into());
    let config = collector::CollectorConfig {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(300),
        ..no_retry()
    };
    let c = collect(vec![d], config).await;
    let h = c
        .wait_for("leaf1", "unreachable", |h| h.state == "unreachable")
        .await;
    let error = h.last_error.unwrap_or_default();
    assert!(
        error.contains("did not answer a keepalive ping within 0.3s"),
        "{error}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    c.stop().await;
}

#[tokio::test]
async fn an_undecodable_message_fails_the_stream_in_plain_words() {
    // A gRPC frame of 3 bytes that are not a SubscribeResponse (field 15, bad wire type).
    let (addr, _) = h2_peer(Then::Send(&[0, 0, 0, 0, 3, 0x7f, 0xff, 0xff])).await;
    let (c, error) = failure_of(addr).await;
    assert!(error.contains("does not decode"), "{error}");
    assert_eq!(c.metrics.samples_received.get(), 0);
    c.stop().await;
}

#[tokio::test]
async fn a_compressed_message_is_refused() {
    let (addr, _) = h2_peer(Then::Send(&[1, 0, 0, 0, 1, 0])).await;
    let (c, error) = failure_of(addr).await;
    assert!(error.contains("compressed"), "{error}");
    c.stop().await;
}

#[tokio::test]
async fn garbage_instead_of_http2_is_a_failure_with_backoff_not_a_loop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // An SSH server where the gNMI port was expected.
                let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let (c, error) = failure_of(addr).await;
    assert!(
        error.contains("connection"),
        "says the connection failed: {error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "no tight reconnect loop"
    );
    c.stop().await;
}
