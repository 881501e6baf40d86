//! The netpulse operator: Kubernetes controllers for `CollectorPool` and `Device`.
//!
//! For now it connects to the API server, proves that it answers, and watches Devices in
//! all namespaces, logging what changes; placement, resource builders and status writing
//! come with the controllers. It talks to the Kubernetes API only, and must not import the
//! other role crates (`collector`, `web`, `simulator`).

pub mod controller;
pub mod devices;
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
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            api_timeout: DEFAULT_API_TIMEOUT,
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
}

fn path_suffix(path: Option<&PathBuf>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// Result of the operator's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the operator until `shutdown` completes: connects to the cluster, checks that the
/// API server answers within `config.api_timeout`, then watches Devices.
pub async fn run(config: OperatorConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let kube_config = load_config(&config).await?;
    let client = connect(kube_config, config.api_timeout).await?;
    watch_devices(client, shutdown).await
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
