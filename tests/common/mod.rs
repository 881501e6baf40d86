//! Helpers for end-to-end tests: run the real `netpulse` binary, read what it prints,
//! talk to it over HTTP, and make throwaway PostgreSQL databases.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Upper bound on any wait in these tests; generous for a loaded 2-core CI machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running `netpulse` process, killed when dropped.
pub struct Netpulse {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netpulse"));
    cmd.args(args)
        .env("RUST_LOG", "info")
        .env_remove("NETPULSE_DATABASE_URL")
        .env_remove("NETPULSE_REDIS_URL")
        .env_remove("NETPULSE_LISTEN")
        .env_remove("NODE_ROLE")
        .kill_on_drop(true);
    cmd
}

impl Netpulse {
    /// Starts `netpulse args...`, capturing stdout and stderr line by line.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(command(args))
    }

    pub fn start_with(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("netpulse binary starts");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        for (stream, tag) in [
            (
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                "out",
            ),
            (Box::new(stderr), "err"),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = tx.send(format!("[{tag}] {line}"));
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an output line containing `needle` and returns it.
    pub async fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                _ => panic!(
                    "no line containing {needle:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the `http://host:port/` URL the process prints and returns its base.
    pub async fn wait_for_url(&mut self) -> String {
        let line = self.wait_for_line("http://").await;
        let start = line.find("http://").expect("url in line");
        let rest = &line[start..];
        let end = rest[7..].find('/').map(|i| i + 7).unwrap_or(rest.len());
        rest[..end].to_owned()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait works")
    }
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `PATIENCE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The body of a successful-or-not GET as text; panics if the server does not answer.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}

pub async fn get_json(url: &str) -> Option<serde_json::Value> {
    let res = reqwest::get(url).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json().await.ok()
}

/// Reads a server-sent-event stream until `count` events named `event` arrived; returns
/// the raw text read.
pub async fn read_sse(url: &str, event: &str, count: usize) -> String {
    use futures::StreamExt;
    let res = reqwest::get(url).await.expect("SSE request");
    assert!(res.status().is_success(), "SSE status {}", res.status());
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let needle = format!("event: {event}\n");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while text.matches(&needle).count() < count {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("SSE went quiet; got:\n{text}"))
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// A PostgreSQL database created for one test and dropped afterwards.
pub struct TempDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TempDatabase {
    pub async fn create(tag: &str) -> Self {
        use sqlx::Connection;
        let admin_url = std::env::var("NETPULSE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!(
            "netpulse_e2e_{tag}_{}_{}",
            std::process::id(),
            fastrand::u32(..)
        );
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required: {e}"));
        // The name is built above from digits and a fixed tag: safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }

    pub async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// A loopback TCP port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
