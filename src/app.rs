//! Wires each role from its parts and runs it until SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use crds::devices_file::{self, DeviceEntry};
use model::DeviceKey;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    AllArgs, Cli, CollectorArgs, Command, CrdgenArgs, LogFormat, MigrateArgs, SimArgs,
    SimulateArgs, WebArgs,
};

/// Installs the tracing subscriber: `RUST_LOG` filters (default `info`), text or JSON.
pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::All(args) => run_all(args).await,
        Command::Collector(args) => run_collector(args).await,
        Command::Web(args) => run_web(args).await,
        Command::Operator(crate::cli::OperatorArgs {
            action: Some(crate::cli::OperatorAction::Render(args)),
            ..
        }) => render_pool(&args),
        Command::Operator(args) => run_operator(args).await,
        Command::Simulate(args) => run_simulate(args).await,
        Command::Crdgen(args) => crdgen(args),
        Command::Migrate(args) => migrate(args).await,
    }
}

/// `netpulse operator`: the controllers, with health and metrics on `--listen`.
async fn run_operator(args: crate::cli::OperatorArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_token();
    let mut registry = Registry::default();
    let metrics = operator::ops::OperatorMetrics::register(&mut registry);
    let listener = bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "Operator health and metrics listening");
    let ops = tokio::spawn(web::serve(
        listener,
        operator::ops::router(metrics.clone(), Arc::new(registry)),
        shutdown.clone().cancelled_owned(),
    ));
    let config = operator::OperatorConfig {
        metrics,
        ..operator::OperatorConfig::default()
    };
    let result = operator::run(config, shutdown.clone().cancelled_owned()).await;
    shutdown.cancel();
    ops.await??;
    result.map_err(anyhow::Error::from)
}

/// `netpulse operator render`: the pool's children as a YAML stream on stdout.
fn render_pool(args: &crate::cli::RenderArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.pool)
        .with_context(|| format!("cannot read {}", args.pool.display()))?;
    let mut pool: crds::CollectorPool = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is no CollectorPool", args.pool.display()))?;
    let placeholder = pool.metadata.uid.is_none();
    if placeholder {
        pool.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    }
    if pool.metadata.namespace.is_none() {
        pool.metadata.namespace = Some("default".into());
    }
    let scaling = &pool.spec.collectors;
    let collectors = args
        .collectors
        .or(scaling.replicas)
        .unwrap_or(scaling.min_replicas);
    let children = operator::resources::children(&pool, collectors)?;
    let mut out = String::new();
    if placeholder {
        out.push_str(
            "# ownerReferences carry a placeholder uid: the operator fills in the pool's own.\n",
        );
    }
    for value in children.to_values() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&value)?);
    }
    print!("{out}");
    Ok(())
}

/// A token cancelled on the first SIGINT or SIGTERM.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::error!(%error, "Cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        cancel.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("Shutdown requested; draining");
        cancel.cancel();
    });
    token
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

async fn start_fleet(count: usize, sim: &SimArgs) -> anyhow::Result<simulator::Fleet> {
    start_fleet_with(sim.fleet_config(count)).await
}

async fn start_fleet_with(config: simulator::FleetConfig) -> anyhow::Result<simulator::Fleet> {
    simulator::Fleet::start(config)
        .await
        .context("cannot start the simulated devices")
}

fn fleet_entries(fleet: &simulator::Fleet, interval: &str) -> anyhow::Result<Vec<DeviceEntry>> {
    crds::parse_duration(interval).with_context(|| format!("--sample-interval {interval:?}"))?;
    fleet
        .devices()
        .iter()
        .map(|d| {
            let name = DeviceKey::new(d.name.clone())?;
            Ok(collector::source::plain_text_device(name, d.addr, interval))
        })
        .collect()
}

/// The Secret (under the single-node secrets directory) with the simulated devices' SSH
/// login.
const SIM_SSH_SECRET: &str = "netpulse-sim-ssh";

/// The last `count` simulated devices, collected over SSH only: `show interfaces` at
/// `interval` (the same series gNMI gives), LLDP neighbours, version and running config
/// kept raw and compared. The host key is pinned to the fleet's.
fn ssh_entries(
    fleet: &simulator::Fleet,
    entries: &mut [DeviceEntry],
    count: usize,
    interval: &str,
) -> anyhow::Result<()> {
    let host_key = fleet
        .ssh_host_key()
        .context("the simulated devices do not serve SSH")?
        .to_owned();
    let start = entries.len().saturating_sub(count);
    for (entry, device) in entries[start..].iter_mut().zip(&fleet.devices()[start..]) {
        let addr = device.ssh_addr.context("a simulated device without SSH")?;
        let command = |command: &str, interval: &str| crds::SshCommand {
            command: command.into(),
            interval: interval.into(),
        };
        entry.spec.gnmi.enabled = false;
        entry.spec.credentials = Some(crds::SecretRef {
            name: SIM_SSH_SECRET.into(),
            username_key: None,
            password_key: None,
        });
        entry.spec.ssh = Some(crds::SshSpec {
            port: addr.port(),
            host_key: Some(host_key.clone()),
            known_hosts_secret: None,
            trust_on_first_use: false,
            commands: vec![
                command("show interfaces", interval),
                command("show lldp neighbors", "60s"),
                command("show version", "5m"),
                command("show running-config", "60s"),
            ],
            platform: None,
            mode: crds::SshMode::Shell,
            prompt: None,
            legacy_algorithms: false,
            aaa_group: None,
            private_key_secret: None,
        });
    }
    Ok(())
}

/// Writes the simulated devices' SSH login as a Secret directory under a new temporary
/// directory (removed when the returned guard drops), for the collector's secrets dir.
fn sim_ssh_secrets() -> anyhow::Result<TempSecrets> {
    let dir = std::env::temp_dir().join(format!("netpulse-sim-secrets-{}", std::process::id()));
    let secret = dir.join(SIM_SSH_SECRET);
    std::fs::create_dir_all(&secret)
        .with_context(|| format!("cannot create {}", secret.display()))?;
    std::fs::write(secret.join("username"), simulator::DEFAULT_SSH_USERNAME)?;
    std::fs::write(secret.join("password"), simulator::DEFAULT_SSH_PASSWORD)?;
    Ok(TempSecrets(dir))
}

/// A secrets directory removed on drop.
struct TempSecrets(std::path::PathBuf);

impl Drop for TempSecrets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run_all(args: AllArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_token();
    let store = store::open(&args.database_url, true)
        .await
        .with_context(|| format!("database {}", args.database_url))?;
    let bus = args.redis.open()?;

    let mut devices = Vec::new();
    if let Some(file) = &args.devices {
        devices.extend(collector::source::from_file(file)?);
    }
    let mut config = args.gnmi.config();
    let mut _sim_secrets = None;
    let fleet = match args.simulate {
        Some(n) if n > 0 => {
            let fleet = start_fleet(n, &args.sim).await?;
            let mut entries = fleet_entries(&fleet, &args.sim.sample_interval)?;
            if args.sim.ssh_devices > 0 {
                anyhow::ensure!(
                    config.secrets_dir.is_none(),
                    "--ssh-devices writes the simulated devices' SSH login to a secrets directory of its own: leave out --secrets-dir"
                );
                ssh_entries(
                    &fleet,
                    &mut entries,
                    args.sim.ssh_devices,
                    &args.sim.sample_interval,
                )?;
                let secrets = sim_ssh_secrets()?;
                config.secrets_dir = Some(secrets.0.clone());
                _sim_secrets = Some(secrets);
            }
            devices.extend(entries);
            Some(fleet)
        }
        _ => None,
    };
    if devices.is_empty() {
        tracing::warn!("No devices: pass --simulate N or --devices FILE");
    }

    let mut registry = Registry::default();
    let metrics = Arc::new(collector::CollectorMetrics::register(&mut registry));
    let state = web::AppState::new(store.clone(), bus.clone(), registry)
        .with_stale_after(args.listen.stale_after);
    let listener = bind(args.listen.listen).await?;
    let addr = listener.local_addr()?;
    let count = devices.len();
    let health = collector::HealthBook::default();
    let web_task = tokio::spawn(web::serve_with_live(
        listener,
        web::router(state.clone()).merge(collector_api(health.clone())),
        state,
        shutdown.clone().cancelled_owned(),
    ));
    let upkeep = tokio::spawn(maintain(
        store.clone(),
        args.storage.retention(),
        args.storage.maintenance_interval,
        shutdown.clone(),
    ));
    println!("netpulse is running with {count} devices: open http://{addr}/");
    collector::run(
        devices,
        store,
        bus,
        metrics,
        health,
        config,
        shutdown.clone(),
    )
    .await?;
    shutdown.cancelled().await;
    upkeep.await?;
    web_task.await??;
    if let Some(fleet) = fleet {
        fleet.shutdown().await;
    }
    Ok(())
}

/// Storage upkeep (partitions ahead, retention, rollups, compression) now and every `every` until shutdown.
/// Failures are logged and retried at the next tick: ingest does not depend on them.
async fn maintain(
    store: Arc<dyn store::Store>,
    retention: store::Retention,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        match store.maintain(now, &retention).await {
            Ok(r) if r.skipped => {
                tracing::debug!("Storage maintenance skipped: another process runs it");
            }
            Ok(r) => tracing::info!(
                created = ?r.created,
                dropped = ?r.dropped,
                moved = r.moved,
                deleted = r.deleted,
                sealed_hours = r.compressed_hours,
                compressed_samples = r.compressed_samples,
                rolled_up_minutes = r.rolled_up_minutes,
                rolled_up_hours = r.rolled_up_hours,
                "Storage maintenance done"
            ),
            Err(error) => tracing::warn!(%error, "Storage maintenance failed; retrying later"),
        }
    }
}

async fn run_collector(args: CollectorArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_token();
    let mut config = args.gnmi.config();
    let mut gate: Option<web::ReadinessGate> = None;
    let (assignments, identity, count) = if args.kubernetes {
        let pod = args.pod_name.clone().context(
            "--kubernetes needs this pod's name: set POD_NAME (the downward API does) or --pod-name",
        )?;
        anyhow::ensure!(
            args.status_writes_per_second > 0.0,
            "--status-writes-per-second must be positive"
        );
        let limits = collector::k8s::StatusLimits {
            per_second: args.status_writes_per_second,
            ..collector::k8s::StatusLimits::default()
        };
        let source = collector::k8s::start(
            pod.clone(),
            args.namespace.clone(),
            limits,
            shutdown.clone(),
        )
        .await
        .context("Kubernetes API")?;
        tracing::info!(pod = %pod, namespace = %source.namespace, "Watching the Devices placed on this pod");
        config.secret_source = Some(source.secrets.clone());
        let ready = source.ready.clone();
        gate = Some(Arc::new(move || {
            (!ready.load(std::sync::atomic::Ordering::Relaxed))
                .then(|| "the Device watch has not listed this pod's devices yet".to_owned())
        }));
        let sink: Arc<dyn collector::status::StateSink> = source.status.clone();
        let identity = collector::Identity {
            name: pod,
            pool: args.pool.clone().unwrap_or_default(),
            sink: Some(sink),
        };
        (
            source.assignments,
            identity,
            "the devices placed on this pod".to_owned(),
        )
    } else {
        let file = args
            .devices
            .as_ref()
            .context("--devices FILE or --kubernetes is required")?;
        let devices = collector::source::from_file(file)?;
        let count = format!("{} devices", devices.len());
        let identity = collector::Identity {
            pool: args.pool.clone().unwrap_or_default(),
            ..collector::Identity::default()
        };
        (collector::membership::fixed(devices), identity, count)
    };
    let store = store::open(&args.database_url, true)
        .await
        .context("database")?;
    let bus = args.redis.open()?;
    let mut registry = Registry::default();
    let metrics = Arc::new(collector::CollectorMetrics::register(&mut registry));
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let health = collector::HealthBook::default();
    let ops = web::ops_router_gated(store.clone(), Arc::new(registry), gate)
        .merge(collector_api(health.clone()));
    let ops_task = tokio::spawn(web::serve(
        listener,
        ops,
        shutdown.clone().cancelled_owned(),
    ));
    let upkeep = tokio::spawn(maintain(
        store.clone(),
        args.storage.retention(),
        args.storage.maintenance_interval,
        shutdown.clone(),
    ));
    println!("netpulse collector is running with {count}: metrics at http://{addr}/metrics");
    let services = collector::Services {
        store,
        bus,
        metrics,
        health,
    };
    collector::run_assigned(assignments, identity, services, config, shutdown.clone()).await?;
    shutdown.cancelled().await;
    upkeep.await?;
    ops_task.await??;
    Ok(())
}

/// Path of the collector's per-device health (state, quirks, completeness) as JSON.
pub const COLLECTOR_DEVICES_PATH: &str = "/api/v1/collector/devices";

/// `GET /api/v1/collector/devices` on the collector's ops listener.
fn collector_api(health: collector::HealthBook) -> axum::Router {
    axum::Router::new().route(
        COLLECTOR_DEVICES_PATH,
        axum::routing::get(move || {
            let health = health.clone();
            async move { axum::Json(health.snapshot()) }
        }),
    )
}

async fn run_web(args: WebArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_token();
    let store = store::open(&args.database_url, true)
        .await
        .context("database")?;
    let bus = args.redis.open()?;
    let state = web::AppState::new(store, bus, Registry::default())
        .with_stale_after(args.listen.stale_after);
    let listener = bind(args.listen.listen).await?;
    let addr = listener.local_addr()?;
    println!("netpulse web is running: open http://{addr}/");
    web::serve_with_live(
        listener,
        web::router(state.clone()),
        state,
        shutdown.cancelled_owned(),
    )
    .await?;
    Ok(())
}

async fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_token();
    let config = simulator::FleetConfig {
        tls: args.tls,
        require_client_cert: args.require_client_cert,
        credentials: args.credentials.clone(),
        ..args.sim.fleet_config(args.devices)
    };
    let fleet = start_fleet_with(config).await?;
    if let Some(dir) = &args.write_secret {
        write_secret(&fleet, args.credentials.as_ref(), dir)
            .with_context(|| format!("cannot write {}", dir.display()))?;
        println!("wrote client secrets to {}", dir.display());
    }
    if let Some(file) = &args.write_devices {
        let entries = fleet_entries(&fleet, &args.sim.sample_interval)?;
        std::fs::write(file, devices_file::render(&entries))
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!("wrote {} devices to {}", entries.len(), file.display());
    }
    for device in fleet.devices() {
        println!("{} {} {}", device.name, device.addr, device.role.as_str());
    }
    println!(
        "{} simulated devices running; Ctrl-C stops them",
        fleet.devices().len()
    );
    shutdown.cancelled().await;
    fleet.shutdown().await;
    Ok(())
}

/// Writes what a client of `fleet` needs into `dir`, laid out like a mounted Secret.
fn write_secret(
    fleet: &simulator::Fleet,
    credentials: Option<&(String, String)>,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut files: Vec<(&str, String)> = Vec::new();
    if let Some(ca) = fleet.ca_pem() {
        files.push(("ca.crt", ca));
    }
    if let Some((cert, key)) = fleet.client_identity_pem() {
        files.push(("tls.crt", cert));
        files.push(("tls.key", key));
    }
    if let Some((username, password)) = credentials {
        files.push(("username", username.clone()));
        files.push(("password", password.clone()));
    }
    for (name, content) in files {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // Keys and passwords readable by the owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(dir.join(name))?, content.as_bytes())?;
    }
    Ok(())
}

fn crdgen(args: CrdgenArgs) -> anyhow::Result<()> {
    match args.out_dir {
        Some(dir) => {
            crds::write_crds(&dir).with_context(|| format!("cannot write {}", dir.display()))?;
            for (file, _) in crds::crds() {
                println!("wrote {}", dir.join(file).display());
            }
        }
        None => {
            for (_, yaml) in crds::crds() {
                println!("---\n{}", yaml.trim_end());
            }
        }
    }
    Ok(())
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let report = store::migrate(&args.database_url).await?;
    println!(
        "database schema at version {} ({} migrations applied now)",
        report.version, report.applied
    );
    Ok(())
}
