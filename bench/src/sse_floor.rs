//! `netpulse-bench sse-floor`: the memory floor of one held SSE connection, without
//! netpulse. A server process of this binary (`sse-floor-server`, with the same
//! allocator as `netpulse`) holds `clients` connections, each sent one event a second,
//! served either by axum + hyper exactly as `netpulse web` serves them (`axum::serve`,
//! `Sse` with the default keep-alive, an mpsc-fed stream per client) or by a bare tokio
//! task per connection writing the same bytes (`raw`: no HTTP library at all). The
//! difference between the two and `netpulse-bench fanout` tells where the memory per
//! client of `netpulse web` goes.

use std::convert::Infallible;
use std::time::Duration;

use anyhow::Context;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::StreamExt as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Settings of `netpulse-bench sse-floor`.
#[derive(Debug, clap::Args)]
pub struct SseFloor {
    /// Connections held.
    #[arg(long, default_value_t = 5_000)]
    pub clients: usize,
    /// Seconds of events once every connection is open.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

/// How `sse-floor-server` serves.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    /// axum + hyper, as `netpulse web`.
    Axum,
    /// The same axum router, each connection served by hyper's HTTP/1 connection alone
    /// (no HTTP/2 detection, no upgrades).
    Http1,
    /// A tokio task per connection writing the bytes itself.
    Raw,
}

/// Runs the server side (a child process of [`run`]): prints its port, then serves.
pub async fn server(mode: Mode) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("port={}", listener.local_addr()?.port());
    match mode {
        Mode::Axum => {
            let app = axum::Router::new().route("/sse", axum::routing::get(sse));
            axum::serve(listener, app).await?;
        }
        Mode::Http1 => {
            let app = axum::Router::new().route("/sse", axum::routing::get(sse));
            loop {
                let (socket, _) = listener.accept().await?;
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        }
        Mode::Raw => loop {
            let (socket, _) = listener.accept().await?;
            tokio::spawn(raw(socket));
        },
    }
    Ok(())
}

async fn sse() -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n = 0u64;
        loop {
            tick.tick().await;
            n += 1;
            let event = Event::default()
                .event("samples")
                .id(n.to_string())
                .data(r#"{"samples":[{"path":"/interfaces/interface[name=Ethernet1]/state/counters/in-octets","ts":"2026-11-28T12:00:00Z","value":123456789}]}"#);
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn raw(socket: TcpStream) {
    let mut socket = BufReader::new(socket);
    let mut line = String::new();
    // The request head, up to the blank line.
    loop {
        line.clear();
        match socket.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let mut socket = socket.into_inner();
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let event = format!(
            "event: samples\nid: {n}\ndata: {}\n\n",
            r#"{"samples":[{"path":"/interfaces/interface[name=Ethernet1]/state/counters/in-octets","ts":"2026-11-28T12:00:00Z","value":123456789}]}"#
        );
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Runs both servers in turn and prints the memory per held connection of each.
pub async fn run(cfg: &SseFloor) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    for name in ["raw", "http1", "axum"] {
        let mut child = tokio::process::Command::new(&exe)
            .args(["sse-floor-server", "--mode", name])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("server pid")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next_line().await?.context("server exited")?;
        let port: u16 = first
            .strip_prefix("port=")
            .context("no port line")?
            .parse()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = crate::rss_kib_at(&format!("/proc/{pid}/status"))?;
        let mut held = Vec::with_capacity(cfg.clients);
        for i in 0..cfg.clients {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
            socket
                .write_all(b"GET /sse HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n")
                .await?;
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut bytes = 0u64;
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    bytes += n as u64;
                }
                bytes
            }));
            if (i + 1) % 1_000 == 0 {
                eprintln!("sse-floor {name}: {} connections", i + 1);
            }
        }
        tokio::time::sleep(Duration::from_secs(cfg.seconds)).await;
        let loaded = crate::rss_kib_at(&format!("/proc/{pid}/status"))?;
        child.kill().await?;
        let mut received = 0u64;
        for h in held {
            received += h.await.unwrap_or(0);
        }
        println!(
            "sse-floor mode={name} clients={} seconds={} rss_idle_kib={idle} rss_loaded_kib={loaded} \
             per_client_kib={:.1} bytes_received={received}",
            cfg.clients,
            cfg.seconds,
            (loaded.saturating_sub(idle)) as f64 / cfg.clients as f64,
        );
    }
    Ok(())
}
