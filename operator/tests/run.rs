//! `operator::run` against no cluster, unreachable and silent API servers, and a fake API
//! server on loopback that serves Devices.

// Helpers outside #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use operator::{Error, OperatorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: {server}
users:
  - name: test
    user:
      token: not-a-real-token
contexts:
  - name: test
    context:
      cluster: test
      user: test
current-context: test
"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn config(kubeconfig: PathBuf, api_timeout: Duration) -> OperatorConfig {
    OperatorConfig {
        kubeconfig: Some(kubeconfig),
        context: None,
        api_timeout,
        ..OperatorConfig::default()
    }
}

/// Runs with a deadline well above any timeout under test, so a hang fails instead of
/// blocking the suite.
async fn run_bounded(config: OperatorConfig) -> operator::Result<()> {
    tokio::time::timeout(
        Duration::from_secs(30),
        operator::run(config, std::future::pending()),
    )
    .await
    .expect("run should return on its own")
}

#[tokio::test]
async fn an_unreachable_server_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(tmp.path(), "https://127.0.0.1:1");
    let err = run_bounded(config(kubeconfig, Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("Kubernetes API server at https://127.0.0.1:1/ is unreachable: "),
        "{message}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections (the kernel does, from the backlog) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(tmp.path(), &server);
    let err = run_bounded(config(kubeconfig, Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Kubernetes API server at {server}/ is unreachable: no answer within 300ms")
    );
    drop(listener);
}

#[tokio::test]
async fn a_broken_kubeconfig_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("kubeconfig");
    std::fs::write(&path, "clusters: [ this is not a kubeconfig").unwrap();
    let err = run_bounded(config(path.clone(), Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Kubeconfig { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot use the kubeconfig {}: ", path.display())),
        "{err}"
    );
}

const CHILD: &str = "NETPULSE_OPERATOR_TEST_CHILD";

/// Runs `operator::run` with the default (inferred) configuration in a child process whose
/// environment the parent controls, so no test mutates this process's environment.
#[test]
fn inferred_configuration_follows_kubeconfig_and_pod_environment() {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = OperatorConfig {
            api_timeout: Duration::from_secs(10),
            ..OperatorConfig::default()
        };
        let result = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                operator::run(config, std::future::pending()),
            )
            .await
        });
        match result {
            Ok(Err(err)) => println!("CHILD-ERROR: {err}"),
            other => println!("CHILD-UNEXPECTED: {other:?}"),
        }
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let child = |kubeconfig: &Path| {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "inferred_configuration_follows_kubeconfig_and_pod_environment",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", tmp.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("CHILD-ERROR: "))
            .unwrap_or_else(|| panic!("child printed no error:\n{stdout}"))
            .to_owned()
    };

    let missing = child(&tmp.path().join("no-such-kubeconfig"));
    assert!(
        missing.starts_with(
            "no Kubernetes cluster configured: set KUBECONFIG or run in a pod (failed to infer config: "
        ),
        "{missing}"
    );

    let unreachable = child(&write_kubeconfig(tmp.path(), "https://127.0.0.1:1"));
    assert!(
        unreachable.starts_with("Kubernetes API server at https://127.0.0.1:1/ is unreachable: "),
        "{unreachable}"
    );
}

/// A Kubernetes API server good enough for a Device watcher: `/version`, one list page and
/// one watch stream that adds one Device and deletes another, then stays open.
struct FakeApiServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn device_json(name: &str, address: &str) -> String {
    format!(
        r#"{{"apiVersion":"netpulse.io/v1alpha1","kind":"Device","metadata":{{"name":"{name}","namespace":"lab","resourceVersion":"2","generation":1}},"spec":{{"address":"{address}"}}}}"#
    )
}

impl FakeApiServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(Self::serve(stream, log.clone()));
            }
        });
        Self { url, requests }
    }

    async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<String>>>) {
        let mut buffer = Vec::new();
        loop {
            // Requests are GETs without bodies: a request ends with its blank line.
            let end = loop {
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let mut chunk = [0; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end);
            let target = head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            log.lock().unwrap().push(target.clone());

            if target == "/version" {
                let body = r#"{"major":"1","minor":"31","gitVersion":"v1.31.0","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":"linux/amd64"}"#;
                Self::respond(&mut stream, "200 OK", body).await;
            } else if target.starts_with("/apis/netpulse.io/v1alpha1/devices?")
                && target.contains("watch=true")
            {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                let events = format!(
                    "{{\"type\":\"ADDED\",\"object\":{}}}\n{{\"type\":\"DELETED\",\"object\":{}}}\n",
                    device_json("leaf2", "10.0.0.2"),
                    device_json("leaf1", "10.0.0.1"),
                );
                let chunk = format!("{:x}\r\n{events}\r\n", events.len());
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(chunk.as_bytes()).await;
                // Keep the watch open, as a real server does until its timeout.
                std::future::pending::<()>().await;
            } else if target.starts_with("/apis/netpulse.io/v1alpha1/devices?") {
                let body = format!(
                    r#"{{"apiVersion":"netpulse.io/v1alpha1","kind":"DeviceList","metadata":{{"resourceVersion":"1"}},"items":[{}]}}"#,
                    device_json("leaf1", "10.0.0.1")
                );
                Self::respond(&mut stream, "200 OK", &body).await;
            } else {
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
                Self::respond(&mut stream, "404 Not Found", body).await;
            }
        }
    }

    async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }
}

/// Captured log output.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::Write::write(&mut *self.0.lock().unwrap(), buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn line_with(&self, needles: &[&str]) -> Option<String> {
        self.text()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
    }
}

#[tokio::test]
async fn watches_devices_in_all_namespaces_until_shutdown() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so every task logs through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = FakeApiServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(tmp.path(), &server.url);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(operator::run(
        config(kubeconfig, Duration::from_secs(10)),
        async move {
            let _ = stopped.await;
        },
    ));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while logs.line_with(&["Device deleted", "leaf1"]).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deletion logged; logs:\n{}\nrequests: {:?}",
            logs.text(),
            server.requests.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run should stop on shutdown")
        .unwrap()
        .unwrap();

    for needles in [
        &["Connected to the Kubernetes API server", "v1.31.0"][..],
        &["Listed Devices", "devices=1"],
        &["Device applied", "name=leaf2 address=10.0.0.2"],
        &["Device deleted", "namespace=lab name=leaf1"],
        &["Shutting down the Device watch"],
    ] {
        assert!(
            logs.line_with(needles).is_some(),
            "no line with {needles:?} in\n{}",
            logs.text()
        );
    }
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests[0], "/version");
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/apis/netpulse.io/v1alpha1/devices?")
                && r.contains("watch=true")),
        "{requests:?}"
    );
    // Devices in all namespaces: no Device request is scoped to one. (The leader Lease
    // is the operator's own namespace's: `default` outside a pod.)
    assert!(
        !requests
            .iter()
            .any(|r| r.contains("/devices") && r.contains("/namespaces/")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(
            |r| r == "/apis/coordination.k8s.io/v1/namespaces/default/leases/netpulse-operator"
        ),
        "{requests:?}"
    );
}
