//! The netpulse operator: Kubernetes controllers for `CollectorPool` and `Device`.
//!
//! [`run`] connects to the API server, proves that it answers, logs Device changes, and
//! once this replica holds the leader Lease ([`leader`]) runs the CollectorPool
//! controller ([`run_pools`]: per pool, scale the collectors, apply the pool's objects,
//! place its Devices, report status). The decisions are pure and
//! tested without a cluster: [`placement`], [`scaling`], [`resources`], [`pods`],
//! [`controller`]; [`devices`] and [`pool`] turn them into requests, checked with
//! tower-test; [`simulation`] drives them in a cluster kept in memory. Not built yet:
//! the collector side that watches its own Devices. It talks to the Kubernetes API only, and must not import the other role crates
//! (`collector`, `web`, `simulator`).

pub mod controller;
pub mod devices;
pub mod leader;
pub mod ops;
pub mod placement;
pub mod pods;
pub mod pool;
pub mod resources;
pub mod scaling;
pub mod simulation;

use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::time::Duration;

use crds::Device;
use futures::StreamExt;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

/// How long [`run`] waits for the API server's first answer by default.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(10);

/// How the operator finds and talks to its cluster.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Kubeconfig file to use. When unset, the configuration is inferred: `KUBECONFIG`,
    /// then `~/.kube/config`, then the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one.
    pub context: Option<String>,
    /// How long to wait for the API server to answer the first request.
    pub api_timeout: Duration,
    /// Where the operator counts what it does (served by [`ops::router`]).
    pub metrics: std::sync::Arc<ops::OperatorMetrics>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            api_timeout: DEFAULT_API_TIMEOUT,
            metrics: std::sync::Arc::default(),
        }
    }
}

/// Why the operator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error("no Kubernetes cluster configured: set KUBECONFIG or run in a pod ({detail})")]
    NoCluster {
        /// What was tried, and how each attempt failed.
        detail: String,
    },

    /// A kubeconfig was found but cannot be used.
    #[error("cannot use the kubeconfig{}: {source}", path_suffix(path.as_ref()))]
    Kubeconfig {
        /// The file, when one was named explicitly.
        path: Option<PathBuf>,
        /// The loader's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The client could not be built from the configuration (TLS material, proxy).
    #[error("cannot build a Kubernetes client for {url}: {source}")]
    Client {
        /// The API server URL.
        url: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// The API server did not answer: connection refused, TLS failure, timeout.
    #[error("Kubernetes API server at {url} is unreachable: {cause}")]
    Unreachable {
        /// The API server URL.
        url: String,
        /// The failure and its causes, outermost first.
        cause: String,
    },

    /// The API server answered the first request with an error (e.g. 401, 403).
    #[error("Kubernetes API server at {url} refused the request: {source}")]
    Refused {
        /// The API server URL.
        url: String,
        /// The error status.
        #[source]
        source: kube::Error,
    },

    /// This replica led, and could not renew its Lease in time: it stops so that exactly
    /// one replica writes (the pod restarts and follows).
    #[error("lost the leader Lease {lease}: {reason}")]
    LostLeadership {
        /// `namespace/name` of the Lease.
        lease: String,
        /// Why, in plain words.
        reason: String,
    },
}

fn path_suffix(path: Option<&PathBuf>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// Result of the operator's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the operator until `shutdown` completes: connects to the cluster, checks that the
/// API server answers within `config.api_timeout`, then runs the CollectorPool controller
/// and logs Device changes.
pub async fn run(config: OperatorConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let kube_config = load_config(&config).await?;
    let client = connect(kube_config, config.api_timeout).await?;
    config.metrics.set_connected();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // The pod's own name and namespace (downward API) identify this replica; outside a
    // pod, the host name and `default`.
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "netpulse-operator".into());
    let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let elector = leader::LeaderElector::new(client.clone(), &namespace, &identity);
    let lead = tokio::spawn(lead(
        elector,
        client.clone(),
        config.metrics.clone(),
        stopping(stopped.clone()),
    ));
    let devices = watch_devices(client, stopping(stopped));
    let ((), watched) = tokio::join!(
        async {
            shutdown.await;
            let _ = stop.send(true);
        },
        devices
    );
    let led = lead.await.unwrap_or(Ok(()));
    watched.and(led)
}

/// Follows until this replica holds the leader Lease, then runs the CollectorPool
/// controller while renewing it; stops it on `shutdown`, and returns
/// [`Error::LostLeadership`] when a renewal fails for longer than the Lease holds.
async fn lead(
    elector: leader::LeaderElector,
    client: Client,
    metrics: std::sync::Arc<ops::OperatorMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut shutdown = pin!(shutdown);
    let lease = format!("{}/{}", elector.namespace(), leader::LEASE_NAME);
    loop {
        match elector.try_lead(chrono::Utc::now()).await {
            Ok(true) => break,
            Ok(false) => debug!(%lease, "Following the operator that holds the Lease"),
            Err(error) => {
                warn!(%lease, error = %error_chain(&error), "Leader election failed; retrying")
            }
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(leader::RENEW_EVERY) => {}
        }
    }
    info!(%lease, "Leading: running the CollectorPool controller");
    metrics.leader.set(1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut pools = tokio::spawn(run_pools(client, metrics.clone(), async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    let mut renewed = tokio::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = tokio::time::sleep(leader::RENEW_EVERY) => {}
        }
        match elector.try_lead(chrono::Utc::now()).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => {
                break Err(Error::LostLeadership {
                    lease,
                    reason: "another replica holds it".into(),
                });
            }
            Err(error) if renewed.elapsed() + leader::RENEW_EVERY >= leader::LEASE_DURATION => {
                break Err(Error::LostLeadership {
                    lease,
                    reason: format!(
                        "not renewed for {:?}: {}",
                        renewed.elapsed(),
                        error_chain(&error)
                    ),
                });
            }
            Err(error) => {
                warn!(%lease, error = %error_chain(&error), "Lease renewal failed; retrying")
            }
        }
    };
    let _ = stop.send(true);
    metrics.leader.set(0);
    // Reconciles in flight get a moment to finish; every write is an idempotent apply, so
    // one cut short is redone by the next leader.
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut pools)
        .await
        .is_err()
    {
        pools.abort();
    }
    outcome
}

/// How long a shutdown waits for the CollectorPool controller to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Shared by the CollectorPool reconciles.
struct PoolContext {
    client: Client,
    metrics: std::sync::Arc<ops::OperatorMetrics>,
    /// Publishes the pools' Events (deduplicated into series by kube).
    recorder: kube::runtime::events::Recorder,
    /// Each pool's recent scaling recommendations (by uid), for the scale-down window.
    /// Kept in memory: an operator that restarts waits a whole window before scaling down.
    history: std::sync::Mutex<std::collections::HashMap<String, Vec<scaling::Recommendation>>>,
}

/// Runs the CollectorPool controller until `shutdown` completes: a pool is reconciled
/// ([`pool::reconcile`]) when it changes, when one of its Deployments, Devices or
/// collector pods changes, and when placement asks to look again (a NotReady grace
/// ending); failures are logged and retried after 5 s.
pub async fn run_pools(
    client: Client,
    metrics: std::sync::Arc<ops::OperatorMetrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::controller::Controller;
    use kube::runtime::reflector::ObjectRef;

    let managed =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=netpulse-operator");
    let controller = Controller::new(
        Api::<crds::CollectorPool>::all(client.clone()),
        watcher::Config::default(),
    );
    let pools = controller.store();
    let pools_of_namespace = move |namespace: Option<String>, name: Option<String>| {
        pools
            .state()
            .into_iter()
            .filter(|p| p.namespace() == namespace)
            .filter(|p| name.as_ref().is_none_or(|n| *n == p.name_any()))
            .map(|p| ObjectRef::from_obj(&*p))
            .collect::<Vec<_>>()
    };
    let for_pods = pools_of_namespace.clone();
    let reporter = kube::runtime::events::Reporter {
        controller: "netpulse-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = std::sync::Arc::new(PoolContext {
        metrics,
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
        client: client.clone(),
        history: std::sync::Mutex::default(),
    });
    controller
        .owns(Api::<Deployment>::all(client.clone()), managed.clone())
        .watches(
            Api::<Device>::all(client.clone()),
            watcher::Config::default(),
            move |device| pools_of_namespace(device.namespace(), device.spec.pool.clone()),
        )
        .watches(Api::<Pod>::all(client), managed, move |pod| {
            let instance = pod.labels().get("app.kubernetes.io/instance").cloned();
            for_pods(pod.namespace(), instance)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile_pool, pool_error, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(error = %error_chain(&error), "CollectorPool controller event");
            }
        })
        .await;
    info!("CollectorPool controller stopped");
}

async fn reconcile_pool(
    pool: std::sync::Arc<crds::CollectorPool>,
    context: std::sync::Arc<PoolContext>,
) -> std::result::Result<kube::runtime::controller::Action, pool::ReconcileError> {
    use kube::runtime::controller::Action;
    let now = chrono::Utc::now();
    let uid = pool.uid().unwrap_or_default();
    let history = context
        .history
        .lock()
        .map(|h| h.get(&uid).cloned().unwrap_or_default())
        .unwrap_or_default();
    let outcome = pool::reconcile(
        &context.client,
        &context.recorder,
        &pool,
        now,
        &history,
        pods::DEFAULT_NOT_READY_GRACE,
    )
    .await
    .inspect_err(|_| {
        context
            .metrics
            .reconciles
            .get_or_create(&ops::ResultLabel { result: "error" })
            .inc();
    })?;
    context
        .metrics
        .reconciles
        .get_or_create(&ops::ResultLabel { result: "ok" })
        .inc();
    context
        .metrics
        .device_writes
        .inc_by(outcome.device_writes as u64);
    context
        .metrics
        .handoffs_deferred
        .set(i64::try_from(outcome.deferred).unwrap_or(i64::MAX));
    info!(
        namespace = %pool.namespace().unwrap_or_default(),
        pool = %pool.name_any(),
        collectors = outcome.scaling.replicas,
        reason = %outcome.scaling.reason,
        device_writes = outcome.device_writes,
        deferred = outcome.deferred,
        "CollectorPool reconciled"
    );
    if let Ok(mut h) = context.history.lock() {
        h.insert(uid, outcome.scaling.history);
    }
    let after = outcome
        .requeue_at
        .and_then(|at| (at - now).to_std().ok())
        .unwrap_or(Duration::from_secs(300));
    Ok(Action::requeue(after.max(Duration::from_millis(100))))
}

fn pool_error(
    pool: std::sync::Arc<crds::CollectorPool>,
    error: &pool::ReconcileError,
    _context: std::sync::Arc<PoolContext>,
) -> kube::runtime::controller::Action {
    warn!(
        namespace = %pool.namespace().unwrap_or_default(),
        pool = %pool.name_any(),
        error = %error_chain(error),
        "CollectorPool reconcile failed; retrying in 5 s"
    );
    kube::runtime::controller::Action::requeue(Duration::from_secs(5))
}

/// Loads the client configuration named by `config`, or infers it.
pub async fn load_config(config: &OperatorConfig) -> Result<kube::Config> {
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    match (&config.kubeconfig, &config.context) {
        (Some(path), _) => {
            let invalid = |source: KubeconfigError| Error::Kubeconfig {
                path: Some(path.clone()),
                source: Box::new(source),
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(invalid)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(invalid)
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| no_cluster_or_invalid(is_absent(&e), Box::new(e))),
        (None, None) => kube::Config::infer().await.map_err(|e| {
            let kubeconfig_error = e.source().and_then(|s| s.downcast_ref::<KubeconfigError>());
            match kubeconfig_error {
                // Name the kubeconfig's own problem, not the in-cluster attempt that followed.
                Some(k) if !is_absent(k) => Error::Kubeconfig {
                    path: None,
                    source: k.to_string().into(),
                },
                _ => Error::NoCluster {
                    detail: e.to_string(),
                },
            }
        }),
    }
}

/// Whether the kubeconfig is simply not there, as opposed to being there and broken.
fn is_absent(error: &KubeconfigError) -> bool {
    match error {
        KubeconfigError::FindPath => true,
        KubeconfigError::ReadConfig(io, _) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// An absent kubeconfig (and no in-cluster account) means "no cluster"; any other problem
/// is the user's to fix in the kubeconfig.
fn no_cluster_or_invalid(absent: bool, error: Box<dyn StdError + Send + Sync>) -> Error {
    if absent {
        Error::NoCluster {
            detail: error.to_string(),
        }
    } else {
        Error::Kubeconfig {
            path: None,
            source: error,
        }
    }
}

/// Builds a client and checks that the API server answers within `timeout`, logging its
/// version.
pub async fn connect(kube_config: kube::Config, timeout: Duration) -> Result<Client> {
    let url = kube_config.cluster_url.to_string();
    let client = Client::try_from(kube_config).map_err(|source| Error::Client {
        url: url.clone(),
        source,
    })?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Err(_) => Err(Error::Unreachable {
            url,
            cause: format!("no answer within {timeout:?}"),
        }),
        Ok(Err(source @ kube::Error::Api(_))) => Err(Error::Refused { url, source }),
        Ok(Err(error)) => Err(Error::Unreachable {
            url,
            cause: error_chain(&error),
        }),
        Ok(Ok(info)) => {
            info!(
                %url,
                version = %info.git_version,
                platform = %info.platform,
                "Connected to the Kubernetes API server"
            );
            Ok(client)
        }
    }
}

/// `error: cause: cause`, skipping causes whose text the previous one already contains.
fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Watches Devices in all namespaces and logs each change until `shutdown` completes.
/// Watch errors are logged and retried with backoff; they never end the loop.
pub async fn watch_devices(client: Client, shutdown: impl Future<Output = ()>) -> Result<()> {
    let devices: Api<Device> = Api::all(client);
    let mut events = pin!(watcher(devices, watcher::Config::default()).default_backoff());
    let mut shutdown = pin!(shutdown);
    let mut listed = 0_usize;
    info!("Watching Devices in all namespaces");
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                info!("Shutting down the Device watch");
                return Ok(());
            }
            event = events.next() => match event {
                Some(Ok(event)) => log_event(&event, &mut listed),
                Some(Err(error)) => log_watch_error(&error),
                // The watcher retries forever; an ended stream is a bug, not a shutdown.
                None => {
                    warn!("Device watch ended unexpectedly");
                    return Ok(());
                }
            }
        }
    }
}

fn log_event(event: &watcher::Event<Device>, listed: &mut usize) {
    match event {
        watcher::Event::Init => {
            *listed = 0;
            debug!("Listing Devices");
        }
        watcher::Event::InitApply(device) => {
            *listed += 1;
            debug!(
                namespace = %device.namespace().unwrap_or_default(),
                name = %device.name_any(),
                address = %device.spec.address,
                "Device listed"
            );
        }
        watcher::Event::InitDone => info!(devices = *listed, "Listed Devices"),
        watcher::Event::Apply(device) => info!(
            namespace = %device.namespace().unwrap_or_default(),
            name = %device.name_any(),
            address = %device.spec.address,
            pool = %device.spec.pool.as_deref().unwrap_or_default(),
            generation = device.metadata.generation.unwrap_or_default(),
            "Device applied"
        ),
        watcher::Event::Delete(device) => info!(
            namespace = %device.namespace().unwrap_or_default(),
            name = %device.name_any(),
            "Device deleted"
        ),
    }
}

fn log_watch_error(error: &watcher::Error) {
    let not_found = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    };
    if not_found {
        warn!(
            error = %error_chain(error),
            "Device watch failed: is the Device CRD installed? \
             (`netpulse crdgen | kubectl apply -f -`); retrying"
        );
    } else {
        warn!(error = %error_chain(error), "Device watch failed; retrying");
    }
}
