//! Command-line interface: flags with environment fallbacks. Names here are stable;
//! scripts, charts and docs depend on them.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Roles `NODE_ROLE` may name when no subcommand is given (containers).
const NODE_ROLES: [&str; 5] = ["all", "both", "collector", "web", "operator"];

/// Default database of the single-node mode.
pub const DEFAULT_SQLITE_URL: &str = "sqlite:netpulse-data/netpulse.db";

#[derive(Debug, Parser)]
#[command(
    name = "netpulse",
    version,
    about = "Network telemetry: gNMI and SSH collection, PostgreSQL storage, live dashboards"
)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, env = "NETPULSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log pipelines).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collector and web in one process: the single-node mode.
    #[command(alias = "both")]
    All(AllArgs),
    /// Collect from devices into the store and onto the bus.
    Collector(CollectorArgs),
    /// Serve dashboards and the API from the store and the bus.
    Web(WebArgs),
    /// Run the Kubernetes operator.
    Operator(OperatorArgs),
    /// Run simulated gNMI devices on loopback addresses.
    Simulate(SimulateArgs),
    /// Print the CustomResourceDefinitions, or write them into a directory.
    Crdgen(CrdgenArgs),
    /// Apply database migrations.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address the HTTP server binds (port 0 picks a free port).
    #[arg(long, env = "NETPULSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A device without a new sample for this long is shown stale on its page
    /// (collector down or device unreachable), e.g. `30s`.
    #[arg(long, env = "NETPULSE_STALE_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub stale_after: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis URL (redis:// or rediss://). Without it live updates stay in-process.
    #[arg(long, env = "NETPULSE_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every bus channel, so several installations can share one Redis.
    #[arg(long, env = "NETPULSE_BUS_PREFIX", default_value = bus::DEFAULT_PREFIX)]
    pub bus_prefix: String,

    /// PEM file of the CA that signed the Redis server's certificate, for a rediss://
    /// URL whose server the system roots do not know. User name and password go in the
    /// URL: rediss://user:password@host:port.
    #[arg(long, env = "NETPULSE_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
}

impl RedisArgs {
    /// The bus these flags describe.
    pub fn open(&self) -> anyhow::Result<std::sync::Arc<dyn bus::Bus>> {
        use anyhow::Context as _;
        let ca = match &self.redis_ca {
            Some(file) => Some(
                std::fs::read(file).with_context(|| format!("--redis-ca {}", file.display()))?,
            ),
            None => None,
        };
        Ok(bus::open_with(
            self.redis_url.as_deref(),
            &self.bus_prefix,
            ca,
        )?)
    }
}

/// Storage upkeep the collector runs (one collector at a time on PostgreSQL).
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// How long raw samples are kept (500ms, 30s, 5m, 1h, 7d). Older days are dropped
    /// whole (PostgreSQL partitions) or deleted (SQLite) by the maintenance task.
    #[arg(long, env = "NETPULSE_RETENTION_RAW", default_value = "7d", value_parser = parse_retention)]
    pub retention_raw: std::time::Duration,

    /// How long 1-minute rollups are kept (PostgreSQL; dropped by the day).
    #[arg(long, env = "NETPULSE_RETENTION_MINUTES", default_value = "90d", value_parser = parse_retention)]
    pub retention_minutes: std::time::Duration,

    /// How long 1-hour rollups are kept (PostgreSQL; dropped by the month).
    #[arg(long, env = "NETPULSE_RETENTION_HOURS", default_value = "730d", value_parser = parse_retention)]
    pub retention_hours: std::time::Duration,

    /// How often the maintenance task runs (partitions ahead, retention, rollups,
    /// compression).
    #[arg(long, env = "NETPULSE_MAINTENANCE_INTERVAL", default_value = "10m", value_parser = parse_retention)]
    pub maintenance_interval: std::time::Duration,

    /// Age after which hours are sealed: rolled up into 1-minute and 1-hour aggregates and
    /// their numeric samples packed into compressed blocks, one per series and hour
    /// (PostgreSQL only); `0s` turns compression off (hours are still rolled up at 2h).
    #[arg(long, env = "NETPULSE_COMPRESS_AFTER", default_value = "2h", value_parser = parse_age)]
    pub compress_after: std::time::Duration,
}

impl StorageArgs {
    /// The retention policy these flags ask for.
    pub fn retention(&self) -> store::Retention {
        store::Retention {
            raw: self.retention_raw,
            minutes: self.retention_minutes,
            hours: self.retention_hours,
            compress_after: (!self.compress_after.is_zero()).then_some(self.compress_after),
            ..store::Retention::default()
        }
    }
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    crds::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_retention(s: &str) -> Result<std::time::Duration, String> {
    match crds::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be positive".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// gNMI session settings of the collector.
#[derive(Debug, Args)]
pub struct GnmiArgs {
    /// Directory of the Secrets devices name (credentials, gnmi.tls.caSecret,
    /// clientCertSecret): one sub-directory per Secret holding `ca.crt`, `tls.crt`,
    /// `tls.key`, `username`, `password` (the layout of a Secret mounted as a volume).
    #[arg(long, env = "NETPULSE_SECRETS_DIR", value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Largest gNMI message accepted, in bytes.
    #[arg(long, env = "NETPULSE_GNMI_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub gnmi_max_message_bytes: usize,

    /// Interval of gRPC (HTTP/2) keepalive pings to devices, e.g. `30s`.
    #[arg(long, env = "NETPULSE_GNMI_KEEPALIVE", default_value = "30s", value_parser = parse_duration)]
    pub gnmi_keepalive: std::time::Duration,

    /// Retry delay for a device that rejects the credentials or refuses every form of the
    /// subscription, e.g. `5m`.
    #[arg(long, env = "NETPULSE_GNMI_REFUSED_BACKOFF", default_value = "5m", value_parser = parse_duration)]
    pub gnmi_refused_backoff: std::time::Duration,

    /// Directory of TextFSM templates for SSH command output, laid out like the
    /// `templates/` folder of ntc-templates (an `index` and `.textfsm` files), tried
    /// before netpulse's own.
    #[arg(long, env = "NETPULSE_CLI_TEMPLATES", value_name = "DIR")]
    pub cli_templates: Option<PathBuf>,

    /// Most SSH logins (connect, authenticate, open the shell) this collector has in
    /// progress at once, so a reconnect storm comes in waves. A session gives its slot
    /// back once it is up: open sessions are not capped (one per device), and every
    /// device gets polled however many there are.
    #[arg(long, env = "NETPULSE_SSH_SESSIONS", default_value_t = 64)]
    pub ssh_sessions: usize,

    /// Most SSH logins in progress at once to the devices of one AAA group
    /// (`ssh.aaaGroup`), so a reconnect storm does not overwhelm their TACACS+ or RADIUS
    /// server. A session gives its slot back once it is up.
    #[arg(long, env = "NETPULSE_SSH_SESSIONS_PER_GROUP", default_value_t = 16)]
    pub ssh_sessions_per_group: usize,
}

impl GnmiArgs {
    /// The collector configuration these flags describe.
    pub fn config(&self) -> collector::CollectorConfig {
        collector::CollectorConfig {
            secrets_dir: self.secrets_dir.clone(),
            max_message_bytes: self.gnmi_max_message_bytes,
            keepalive_interval: self.gnmi_keepalive,
            refused_backoff: self.gnmi_refused_backoff,
            cli_templates_dir: self.cli_templates.clone(),
            ssh_limits: sshcli::session::limit::Limits {
                per_device: 1,
                per_group: self.ssh_sessions_per_group,
                global: self.ssh_sessions,
            },
            ..collector::CollectorConfig::default()
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crds::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// First loopback address of the simulated devices; each device takes the next one.
    #[arg(long, env = "NETPULSE_SIM_BASE_ADDRESS", default_value = "127.0.1.1")]
    pub base_address: Ipv4Addr,

    /// gNMI port of every simulated device (0: a free port per device).
    #[arg(long, env = "NETPULSE_SIM_PORT", default_value_t = 57400)]
    pub port: u16,

    /// Interfaces per simulated device.
    #[arg(long, default_value_t = 4)]
    pub interfaces: usize,

    /// Sample interval the collector asks simulated devices for.
    #[arg(long, env = "NETPULSE_SAMPLE_INTERVAL", default_value = "2s")]
    pub sample_interval: String,

    /// Spines per pod of the simulated leaf-spine fabric that LLDP reports: devices come in
    /// pods of SPINES + INTERFACES devices, the first SPINES of each pod being spines
    /// (with the defaults sim-0001 and sim-0002 are spines, sim-0003..sim-0006 leaves).
    /// 0: no LLDP neighbours.
    #[arg(long, env = "NETPULSE_SIM_SPINES", default_value_t = 2)]
    pub spines: usize,

    /// How every simulated device misbehaves: a comma-separated list of
    /// `refuse-on-change` (ON_CHANGE subscriptions fail with UNIMPLEMENTED),
    /// `json-ietf-only` (every other encoding fails with UNIMPLEMENTED), `slow=DURATION`
    /// (delay before each Subscribe response), `drop-every=DURATION` (streams end with
    /// UNAVAILABLE after this long), `silent-after=DURATION` (streams stay open but go
    /// quiet after this long), `malformed-path-every=N` (every Nth notification has a path
    /// element with an empty name), `oversize=BYTES` (one notification larger than BYTES,
    /// once per device), `drop-when-behind` (sample notifications that do not fit the
    /// send queue of a slow collector are dropped, not sent late), `refuse-path=PREFIX`
    /// (subscriptions under PREFIX fail with INVALID_ARGUMENT naming the path). Durations:
    /// 500ms, 30s, 5m, 1h.
    #[arg(
        long,
        env = "NETPULSE_SIM_MISBEHAVE",
        value_name = "LIST",
        default_value = ""
    )]
    pub misbehave: simulator::Misbehaviour,

    /// Misbehaviour of one device, replacing --misbehave for it: `NAME:LIST`, for example
    /// `sim-0003:drop-every=30s,slow=1s`. Repeat for several devices.
    #[arg(long, value_name = "NAME:LIST", value_parser = parse_device_misbehaviour)]
    pub misbehave_device: Vec<(usize, simulator::Misbehaviour)>,
    /// Accept every simulated device's connections on one socket (0.0.0.0:PORT tied to
    /// `lo`), telling devices apart by the address dialled: one file descriptor instead of
    /// one per device. Needs a fixed --port, no TLS, Linux and CAP_NET_RAW.
    #[arg(long, env = "NETPULSE_SIM_SHARED_LISTENER")]
    pub shared_listener: bool,

    /// Simulated devices that also serve SSH (EOS-like spines, IOS-like leaves), the last
    /// N of the fleet; in single-node mode these are collected over SSH only (show
    /// commands parsed into the same series as gNMI). 0: no SSH.
    #[arg(long, env = "NETPULSE_SIM_SSH_DEVICES", default_value_t = 0)]
    pub ssh_devices: usize,

    /// SSH port of the simulated devices (each has its own loopback address).
    #[arg(long, env = "NETPULSE_SIM_SSH_PORT", default_value_t = 2222)]
    pub ssh_port: u16,
}

impl SimArgs {
    /// The fleet these flags describe, with `devices` devices.
    pub fn fleet_config(&self, devices: usize) -> simulator::FleetConfig {
        simulator::FleetConfig {
            devices,
            base_address: self.base_address,
            port: self.port,
            interfaces: self.interfaces,
            spines: self.spines,
            misbehaviour: self.misbehave.clone(),
            misbehaving: self.misbehave_device.clone(),
            shared_listener: self.shared_listener,
            ssh: (self.ssh_devices > 0).then(|| simulator::SshConfig {
                port: self.ssh_port,
                ..simulator::SshConfig::default()
            }),
            ..simulator::FleetConfig::default()
        }
    }
}

/// `sim-0003:LIST` -> (2, LIST parsed): device names are 1-based, indexes 0-based.
fn parse_device_misbehaviour(s: &str) -> Result<(usize, simulator::Misbehaviour), String> {
    let (name, list) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not NAME:LIST (e.g. sim-0003:drop-every=30s)"))?;
    let number: usize = name
        .strip_prefix("sim-")
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{name:?} is not a simulated device name (sim-0001, ...)"))?;
    let misbehaviour = list
        .parse()
        .map_err(|e: simulator::ParseMisbehaviourError| e.to_string())?;
    Ok((number - 1, misbehaviour))
}

#[derive(Debug, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub listen: ListenArgs,

    /// Run this many simulated devices in process and collect from them.
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,

    /// Devices file to collect from (see examples/devices.yaml).
    #[arg(long, env = "NETPULSE_DEVICES", value_name = "FILE")]
    pub devices: Option<PathBuf>,

    /// Database URL (postgres://... or sqlite:...).
    #[arg(long, env = "NETPULSE_DATABASE_URL", default_value = DEFAULT_SQLITE_URL)]
    pub database_url: String,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub sim: SimArgs,

    #[command(flatten)]
    pub gnmi: GnmiArgs,

    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct CollectorArgs {
    /// Address of the health and metrics endpoints.
    #[arg(long, env = "NETPULSE_LISTEN", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,

    /// Devices file to collect from.
    #[arg(
        long,
        env = "NETPULSE_DEVICES",
        value_name = "FILE",
        required_unless_present = "kubernetes"
    )]
    pub devices: Option<PathBuf>,

    /// Collect the Devices the operator places on this pod instead of a devices file:
    /// watch the Kubernetes API for Devices labelled with the pod's name, read their
    /// Secrets through the API, report their state to Device status.
    #[arg(long, env = "NETPULSE_KUBERNETES", conflicts_with = "devices")]
    pub kubernetes: bool,

    /// This pod's name (with --kubernetes; the Deployment sets it from the downward API).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Namespace of the Devices (with --kubernetes; default: the pod's own).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    /// The CollectorPool this collector belongs to (the operator's Deployment sets it):
    /// placement messages go to the pool's bus channel.
    #[arg(long, env = "NETPULSE_POOL")]
    pub pool: Option<String>,

    /// Device status writes per second, all devices together (with --kubernetes): a
    /// flapping fleet cannot flood the API server; each device's latest state wins.
    #[arg(
        long,
        env = "NETPULSE_STATUS_WRITES_PER_SECOND",
        default_value_t = 20.0
    )]
    pub status_writes_per_second: f64,

    /// Database URL (postgres://... or sqlite:...).
    #[arg(long, env = "NETPULSE_DATABASE_URL")]
    pub database_url: String,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub gnmi: GnmiArgs,

    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct WebArgs {
    #[command(flatten)]
    pub listen: ListenArgs,

    /// Database URL (postgres://... or sqlite:...).
    #[arg(long, env = "NETPULSE_DATABASE_URL")]
    pub database_url: String,

    #[command(flatten)]
    pub redis: RedisArgs,
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    #[command(subcommand)]
    pub action: Option<OperatorAction>,

    /// Address of the health and metrics endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "NETPULSE_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum OperatorAction {
    /// Print the objects the operator creates for a CollectorPool (Deployments, Service,
    /// HPA, PodDisruptionBudget, ServiceAccount, Role, RoleBinding) as YAML, without a
    /// cluster.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// CollectorPool manifest.
    #[arg(long, value_name = "FILE")]
    pub pool: PathBuf,

    /// Collector pods (default: the pool's `collectors.replicas`, else `minReplicas`).
    #[arg(long)]
    pub collectors: Option<i32>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of simulated devices.
    #[arg(long, default_value_t = 20)]
    pub devices: usize,

    /// Also write a devices file listing them, for a separate collector process.
    #[arg(long, value_name = "FILE")]
    pub write_devices: Option<PathBuf>,

    /// Serve gNMI over TLS: a CA is generated at start, and each device gets a certificate
    /// for its IP address. See --write-secret for the CA.
    #[arg(long, env = "NETPULSE_SIM_TLS")]
    pub tls: bool,

    /// With --tls, demand a client certificate signed by the generated CA (mutual TLS).
    #[arg(long, requires = "tls", env = "NETPULSE_SIM_REQUIRE_CLIENT_CERT")]
    pub require_client_cert: bool,

    /// Username and password every gNMI RPC must carry (`username`/`password` metadata),
    /// as USER:PASSWORD; others get UNAUTHENTICATED.
    #[arg(long, env = "NETPULSE_SIM_CREDENTIALS", value_name = "USER:PASSWORD", value_parser = parse_credentials)]
    pub credentials: Option<(String, String)>,

    /// Write what a client needs into DIR, in the layout of a mounted Kubernetes Secret
    /// (a sub-directory of a collector's --secrets-dir): `ca.crt` (with --tls), `tls.crt`
    /// and `tls.key` (with --require-client-cert), `username` and `password` (with
    /// --credentials).
    #[arg(long, value_name = "DIR")]
    pub write_secret: Option<PathBuf>,

    #[command(flatten)]
    pub sim: SimArgs,
}

/// `USER:PASSWORD` -> (USER, PASSWORD); the password may contain `:`.
fn parse_credentials(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err("expected USER:PASSWORD".to_owned()),
    }
}

#[derive(Debug, Args)]
pub struct CrdgenArgs {
    /// Write one YAML file per CRD into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Database URL (postgres://... or sqlite:...).
    #[arg(long, env = "NETPULSE_DATABASE_URL")]
    pub database_url: String,
}

/// Parses the command line; in a container without a subcommand, `NODE_ROLE` names it.
pub fn parse() -> Cli {
    Cli::parse_from(with_node_role(
        std::env::args_os().collect(),
        std::env::var("NODE_ROLE").ok(),
    ))
}

/// Inserts `NODE_ROLE` as the subcommand when the arguments name none.
fn with_node_role(mut args: Vec<OsString>, role: Option<String>) -> Vec<OsString> {
    let Some(role) = role.filter(|r| NODE_ROLES.contains(&r.as_str())) else {
        return args;
    };
    let names_command = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        Cli::command_names().iter().any(|c| *c == a) || a == "help" || a == "--help" || a == "-h"
    });
    if !names_command {
        args.insert(1, role.into());
    }
    args
}

impl Cli {
    fn command_names() -> &'static [&'static str] {
        &[
            "all",
            "both",
            "collector",
            "web",
            "operator",
            "simulate",
            "crdgen",
            "migrate",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_collector_takes_a_devices_file_or_kubernetes_but_not_both() {
        let db = ["--database-url", "sqlite::memory:"];
        let parse = |extra: &[&str]| {
            let mut v = vec!["netpulse", "collector"];
            v.extend(db);
            v.extend(extra);
            Cli::try_parse_from(v)
        };
        let none = parse(&[]).unwrap_err().to_string();
        assert!(none.contains("--devices"), "{none}");
        let both = parse(&["--devices", "d.yaml", "--kubernetes"])
            .unwrap_err()
            .to_string();
        assert!(both.contains("cannot be used with"), "{both}");
        let Command::Collector(k) = parse(&["--kubernetes", "--pod-name", "pool-collector-0"])
            .unwrap()
            .command
        else {
            panic!("not the collector");
        };
        assert!(k.kubernetes && k.devices.is_none());
        assert_eq!(k.pod_name.as_deref(), Some("pool-collector-0"));
        assert!((k.status_writes_per_second - 20.0).abs() < f64::EPSILON);
    }

    #[test]
    fn simulate_takes_tls_credentials_and_misbehaviour() {
        let cli = Cli::try_parse_from([
            "netpulse",
            "simulate",
            "--tls",
            "--require-client-cert",
            "--credentials",
            "admin:pa:ss",
            "--misbehave",
            "slow=200ms,refuse-on-change",
            "--misbehave-device",
            "sim-0003:drop-every=30s",
            "--spines",
            "4",
        ])
        .unwrap();
        let Command::Simulate(args) = cli.command else {
            panic!("not simulate");
        };
        assert!(args.tls && args.require_client_cert);
        assert_eq!(args.credentials, Some(("admin".into(), "pa:ss".into())));
        let config = args.sim.fleet_config(5);
        assert_eq!(config.spines, 4);
        assert!(config.misbehaviour.refuse_on_change);
        assert_eq!(
            config.misbehaviour.send_delay,
            Some(std::time::Duration::from_millis(200))
        );
        assert_eq!(config.misbehaving.len(), 1);
        assert_eq!(config.misbehaving[0].0, 2);
        assert!(
            Cli::try_parse_from(["netpulse", "simulate", "--require-client-cert"]).is_err(),
            "mTLS needs TLS"
        );
        for bad in ["explode", "sim-0000:slow=1s", "eth0:slow=1s", "sim-0001"] {
            let flag = if bad.contains(':') || bad.starts_with("sim") {
                "--misbehave-device"
            } else {
                "--misbehave"
            };
            assert!(
                Cli::try_parse_from(["netpulse", "simulate", flag, bad]).is_err(),
                "{bad}"
            );
        }
        // Defaults keep the old behaviour.
        let cli = Cli::try_parse_from(["netpulse", "simulate"]).unwrap();
        let Command::Simulate(args) = cli.command else {
            panic!("not simulate");
        };
        assert!(!args.tls && args.credentials.is_none());
        assert!(!args.sim.fleet_config(1).misbehaviour.is_any());
    }

    #[test]
    fn node_role_supplies_a_missing_subcommand() {
        let got = with_node_role(args(&["netpulse"]), Some("web".into()));
        assert_eq!(got, args(&["netpulse", "web"]));
        let got = with_node_role(
            args(&["netpulse", "--log-format", "json"]),
            Some("collector".into()),
        );
        assert_eq!(
            got,
            args(&["netpulse", "collector", "--log-format", "json"])
        );
    }

    #[test]
    fn an_explicit_subcommand_wins_and_unknown_roles_are_ignored() {
        let got = with_node_role(args(&["netpulse", "migrate"]), Some("web".into()));
        assert_eq!(got, args(&["netpulse", "migrate"]));
        let got = with_node_role(args(&["netpulse"]), Some("toaster".into()));
        assert_eq!(got, args(&["netpulse"]));
    }

    #[test]
    fn both_is_an_alias_of_all() {
        let cli = Cli::try_parse_from(["netpulse", "both", "--simulate", "2"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::All(AllArgs {
                simulate: Some(2),
                ..
            })
        ));
    }
}
