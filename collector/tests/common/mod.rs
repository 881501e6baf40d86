//! A gNMI target on loopback that misbehaves exactly as a test asks, and a collector
//! running against it with short timeouts.

#![allow(dead_code)]
// Test helpers, outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use collector::{CollectorConfig, CollectorMetrics, DeviceHealth, HealthBook};
use crds::devices_file::DeviceEntry;
use crds::{DeviceSpec, Subscription};
use futures::Stream;
use model::{DeviceEvent, DeviceKey, Path, Sample, TimestampNs};
use proto::gnmi::{self, g_nmi_server};
use store::{DeviceInfo, DeviceSummary, Point, SeriesSummary, Store, WriteReport};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// Leaf every notification of the fake carries.
pub const LEAF: &str = "/interfaces/interface[name=eth0]/state/counters/in-octets";
/// Sample interval the tests ask for.
pub const INTERVAL: &str = "100ms";
const INTERVAL_NS: i64 = 100_000_000;

/// How the fake target behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Encodings advertised in Capabilities; others are refused in Subscribe.
    pub encodings: Vec<gnmi::Encoding>,
    /// Refuse ON_CHANGE subscriptions with UNIMPLEMENTED.
    pub refuse_on_change: bool,
    /// Required `username`/`password` metadata.
    pub credentials: Option<(String, String)>,
    /// Notifications sent before `sync_response`.
    pub initial: usize,
    /// Hold `sync_response` until this is notified.
    pub sync_gate: Option<Arc<Notify>>,
    /// Notifications sent after `sync_response`, `period` apart (`usize::MAX`: forever).
    pub after_sync: usize,
    /// Time between notifications after sync.
    pub period: Duration,
    /// After the notifications, end the stream cleanly (else stay open and silent).
    pub close: bool,
    /// Every notification carries an extra update with an unreadable path.
    pub malformed_path: bool,
    /// End every stream at once, without sending anything.
    pub close_at_once: bool,
    /// Timestamps advance by this many intervals per notification (2: every other
    /// sample missing).
    pub stride: i64,
    /// Timestamp before the first notification (a realistic 2023 instant by default;
    /// 0 is a device whose clock was never set).
    pub clock_start: i64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            encodings: vec![
                gnmi::Encoding::Proto,
                gnmi::Encoding::Json,
                gnmi::Encoding::JsonIetf,
            ],
            refuse_on_change: false,
            credentials: None,
            initial: 1,
            sync_gate: None,
            after_sync: usize::MAX,
            period: Duration::from_millis(20),
            close: false,
            malformed_path: false,
            close_at_once: false,
            stride: 1,
            clock_start: 1_700_000_000_000_000_000,
        }
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub capabilities: AtomicUsize,
    pub subscribes: Mutex<Vec<gnmi::SubscriptionList>>,
    pub rejected_logins: AtomicUsize,
    /// Notifications handed to the transport.
    pub sent: AtomicUsize,
    /// Poll requests received.
    pub polls: AtomicUsize,
}

impl Seen {
    pub fn subscribes(&self) -> Vec<gnmi::SubscriptionList> {
        self.subscribes.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Fake {
    behaviour: Behaviour,
    seen: Arc<Seen>,
    /// Timestamp of the next notification, shared across streams so a reconnect goes on.
    clock: Arc<Mutex<i64>>,
}

impl Fake {
    fn check_login<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some((user, pass)) = &self.behaviour.credentials else {
            return Ok(());
        };
        let m = request.metadata();
        let ok = m.get("username").and_then(|v| v.to_str().ok()) == Some(user)
            && m.get("password").and_then(|v| v.to_str().ok()) == Some(pass);
        if ok {
            Ok(())
        } else {
            self.seen.rejected_logins.fetch_add(1, Ordering::SeqCst);
            Err(Status::unauthenticated("bad username or password"))
        }
    }

    fn notification(&self) -> gnmi::Notification {
        let ts = {
            let mut clock = self.clock.lock().unwrap();
            *clock += INTERVAL_NS * self.behaviour.stride;
            *clock
        };
        let path: model::Path = LEAF.parse().unwrap();
        let mut update = vec![gnmi::Update {
            path: Some(gnmi::Path::from(&path)),
            val: Some(gnmi::TypedValue {
                value: Some(gnmi::typed_value::Value::UintVal(ts as u64)),
            }),
            ..Default::default()
        }];
        if self.behaviour.malformed_path {
            update.push(gnmi::Update {
                path: Some(gnmi::Path {
                    elem: vec![gnmi::PathElem {
                        name: String::new(),
                        key: Default::default(),
                    }],
                    ..Default::default()
                }),
                val: Some(gnmi::TypedValue {
                    value: Some(gnmi::typed_value::Value::UintVal(1)),
                }),
                ..Default::default()
            });
        }
        gnmi::Notification {
            timestamp: ts,
            update,
            ..Default::default()
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<gnmi::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl g_nmi_server::GNmi for Fake {
    async fn capabilities(
        &self,
        request: Request<gnmi::CapabilityRequest>,
    ) -> Result<Response<gnmi::CapabilityResponse>, Status> {
        self.seen.capabilities.fetch_add(1, Ordering::SeqCst);
        self.check_login(&request)?;
        Ok(Response::new(gnmi::CapabilityResponse {
            supported_encodings: self.behaviour.encodings.iter().map(|e| *e as i32).collect(),
            g_nmi_version: "0.10.0".into(),
            ..Default::default()
        }))
    }

    async fn get(
        &self,
        _: Request<gnmi::GetRequest>,
    ) -> Result<Response<gnmi::GetResponse>, Status> {
        Err(Status::unimplemented("Get"))
    }

    async fn set(
        &self,
        _: Request<gnmi::SetRequest>,
    ) -> Result<Response<gnmi::SetResponse>, Status> {
        Err(Status::unimplemented("Set"))
    }

    type SubscribeStream = ResponseStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<gnmi::SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.check_login(&request)?;
        let mut requests = request.into_inner();
        let Some(first) = requests.message().await? else {
            return Err(Status::invalid_argument("no request"));
        };
        let Some(gnmi::subscribe_request::Request::Subscribe(list)) = first.request else {
            return Err(Status::invalid_argument(
                "first request must be a subscription list",
            ));
        };
        self.seen.subscribes.lock().unwrap().push(list.clone());
        let encoding = gnmi::Encoding::try_from(list.encoding).unwrap_or(gnmi::Encoding::Proto);
        if !self.behaviour.encodings.contains(&encoding) {
            return Err(Status::invalid_argument(format!(
                "unsupported encoding {encoding:?}"
            )));
        }
        if self.behaviour.refuse_on_change
            && list
                .subscription
                .iter()
                .any(|s| s.mode == gnmi::SubscriptionMode::OnChange as i32)
        {
            return Err(Status::unimplemented(
                "ON_CHANGE subscriptions are not supported",
            ));
        }
        if self.behaviour.close_at_once {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        let (tx, rx) = mpsc::channel(16);
        let fake = self.clone();
        let update = |n: gnmi::Notification| gnmi::SubscribeResponse {
            response: Some(gnmi::subscribe_response::Response::Update(n)),
            ..Default::default()
        };
        let sync = || gnmi::SubscribeResponse {
            response: Some(gnmi::subscribe_response::Response::SyncResponse(true)),
            ..Default::default()
        };
        if list.mode != gnmi::subscription_list::Mode::Stream as i32 {
            let once = list.mode == gnmi::subscription_list::Mode::Once as i32;
            tokio::spawn(async move {
                let mut requests = requests;
                loop {
                    let sent = tx.send(Ok(update(fake.notification()))).await.is_ok()
                        && tx.send(Ok(sync())).await.is_ok();
                    fake.seen.sent.fetch_add(1, Ordering::SeqCst);
                    if !sent || once {
                        return;
                    }
                    // Poll: one notification and a sync_response per Poll request.
                    match requests.message().await {
                        Ok(Some(r))
                            if matches!(
                                r.request,
                                Some(gnmi::subscribe_request::Request::Poll(_))
                            ) =>
                        {
                            fake.seen.polls.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return,
                    }
                }
            });
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        tokio::spawn(async move {
            // Keeps the request stream (and so the subscription) alive as long as we send.
            let _requests = requests;
            let b = &fake.behaviour;
            let send = |n: gnmi::Notification| gnmi::SubscribeResponse {
                response: Some(gnmi::subscribe_response::Response::Update(n)),
                ..Default::default()
            };
            for _ in 0..b.initial {
                if tx.send(Ok(send(fake.notification()))).await.is_err() {
                    return;
                }
                fake.seen.sent.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(gate) = &b.sync_gate {
                gate.notified().await;
            }
            let sync = gnmi::SubscribeResponse {
                response: Some(gnmi::subscribe_response::Response::SyncResponse(true)),
                ..Default::default()
            };
            if tx.send(Ok(sync)).await.is_err() {
                return;
            }
            let mut sent = 0;
            while sent < b.after_sync {
                tokio::time::sleep(b.period).await;
                if tx.send(Ok(send(fake.notification()))).await.is_err() {
                    return;
                }
                fake.seen.sent.fetch_add(1, Ordering::SeqCst);
                sent += 1;
            }
            if !b.close {
                // Silent but open until the client goes away.
                tx.closed().await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// PEM files of a test PKI made with the `openssl` command.
#[derive(Debug)]
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 / `device.test`, and a client certificate.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl command is needed to make test certificates");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:device.test\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            ),
            (
                "client",
                "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
            ),
        ] {
            std::fs::write(dir.path().join(format!("{name}.ext")), ext).unwrap();
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Self { dir }
    }

    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(file)).unwrap()
    }

    /// Writes a Secret directory `<secrets>/<name>/` with `files` (name in Secret, file here).
    pub fn secret(&self, secrets: &std::path::Path, name: &str, files: &[(&str, &str)]) {
        let d = secrets.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (key, file) in files {
            std::fs::write(d.join(key), self.read(file)).unwrap();
        }
    }
}

/// A running fake target.
pub struct Target {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a fake target on 127.0.0.1; `tls` is (identity, client CA for mTLS).
pub async fn target(behaviour: Behaviour, tls: Option<ServerTlsConfig>) -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let fake = Fake {
        clock: Arc::new(Mutex::new(behaviour.clock_start)),
        behaviour,
        seen: seen.clone(),
    };
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).unwrap();
    }
    let router = builder.add_service(g_nmi_server::GNmiServer::new(fake));
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    Target { addr, seen, task }
}

/// A device at `addr` with one SAMPLE subscription of [`LEAF`]'s interface.
pub fn device(name: &str, addr: SocketAddr) -> DeviceEntry {
    let mut spec = DeviceSpec::new(addr.ip().to_string());
    spec.gnmi.port = addr.port();
    spec.gnmi.insecure = true;
    spec.gnmi.subscriptions = vec![Subscription::sample(
        "/interfaces/interface[name=*]/state/counters",
        INTERVAL,
    )];
    DeviceEntry {
        name: DeviceKey::new(name).unwrap(),
        spec,
    }
}

/// Short timeouts, so misbehaviour shows within a second.
pub fn config() -> CollectorConfig {
    CollectorConfig {
        batch_size: 100,
        batch_wait: Duration::from_millis(20),
        queue: 16,
        connect_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        refused_backoff: Duration::from_secs(3600),
        min_idle: Duration::from_millis(400),
        completeness_window: Duration::from_millis(500),
        ..CollectorConfig::default()
    }
}

/// A collector running in the background.
pub struct Running {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<CollectorMetrics>,
    pub health: HealthBook,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<collector::Result<()>>,
    db: tempfile::TempDir,
}

impl Running {
    /// Polls the device's health until `check` holds (10 s at most).
    pub async fn wait_for(
        &self,
        device: &str,
        what: &str,
        check: impl Fn(&DeviceHealth) -> bool,
    ) -> DeviceHealth {
        let key = DeviceKey::new(device).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let health = self.health.device(&key);
            if let Some(h) = &health
                && check(h)
            {
                return h.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; health: {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the collector and waits for its flush.
    /// Stops the collector; the returned directory keeps the SQLite file alive for
    /// as long as the caller reads the store.
    pub async fn stop(self) -> (Arc<dyn Store>, Arc<CollectorMetrics>, tempfile::TempDir) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        (self.store, self.metrics, self.db)
    }
}

/// Runs a collector for `devices` over a fresh SQLite store, wrapped by `wrap`.
pub async fn collect_with(
    devices: Vec<DeviceEntry>,
    config: CollectorConfig,
    wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
) -> Running {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", db.path().join("t.db").display());
    let store = wrap(store::open(&url, true).await.unwrap());
    let bus = bus::open(None, "test").unwrap();
    let metrics = Arc::new(CollectorMetrics::default());
    let health = HealthBook::default();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(collector::run(
        devices,
        store.clone(),
        bus,
        metrics.clone(),
        health.clone(),
        config,
        shutdown.clone(),
    ));
    Running {
        store,
        metrics,
        health,
        shutdown,
        task,
        db,
    }
}

pub async fn collect(devices: Vec<DeviceEntry>, config: CollectorConfig) -> Running {
    collect_with(devices, config, |s| s).await
}

/// Samples stored for `device`'s [`LEAF`].
pub async fn stored(store: &dyn Store, device: &str) -> usize {
    let key = DeviceKey::new(device).unwrap();
    let path: model::Path = LEAF.parse().unwrap();
    store.range(&key, &path, 0, i64::MAX).await.unwrap().len()
}

/// Polls `check` until it holds (10 s at most).
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A secrets directory.
pub fn secrets_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    (dir, path)
}

/// A store that takes its time (the `Duration`) with every batch, like a busy database.
#[derive(Debug)]
pub struct SlowStore(pub Arc<dyn Store>, pub Duration);

#[async_trait]
impl Store for SlowStore {
    async fn upsert_devices(&self, devices: &[DeviceInfo]) -> store::Result<()> {
        self.0.upsert_devices(devices).await
    }
    async fn record_event(&self, event: &DeviceEvent) -> store::Result<()> {
        self.0.record_event(event).await
    }
    async fn write_samples(&self, samples: &[Sample]) -> store::Result<WriteReport> {
        tokio::time::sleep(self.1).await;
        self.0.write_samples(samples).await
    }
    async fn devices(&self) -> store::Result<Vec<DeviceSummary>> {
        self.0.devices().await
    }
    async fn device(&self, name: &DeviceKey) -> store::Result<Option<DeviceSummary>> {
        self.0.device(name).await
    }
    async fn series(&self, device: &DeviceKey) -> store::Result<Vec<SeriesSummary>> {
        self.0.series(device).await
    }
    async fn range(
        &self,
        device: &DeviceKey,
        path: &Path,
        from: TimestampNs,
        to: TimestampNs,
    ) -> store::Result<Vec<Point>> {
        self.0.range(device, path, from, to).await
    }
    async fn ping(&self) -> store::Result<()> {
        self.0.ping().await
    }
}
