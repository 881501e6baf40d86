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
}

#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis URL (redis:// or rediss://). Without it live updates stay in-process.
    #[arg(long, env = "NETPULSE_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every bus channel, so several installations can share one Redis.
    #[arg(long, env = "NETPULSE_BUS_PREFIX", default_value = bus::DEFAULT_PREFIX)]
    pub bus_prefix: String,
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
}

#[derive(Debug, Args)]
pub struct CollectorArgs {
    /// Address of the health and metrics endpoints.
    #[arg(long, env = "NETPULSE_LISTEN", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,

    /// Devices file to collect from.
    #[arg(long, env = "NETPULSE_DEVICES", value_name = "FILE")]
    pub devices: PathBuf,

    /// Database URL (postgres://... or sqlite:...).
    #[arg(long, env = "NETPULSE_DATABASE_URL")]
    pub database_url: String,

    #[command(flatten)]
    pub redis: RedisArgs,
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
pub struct OperatorArgs {}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of simulated devices.
    #[arg(long, default_value_t = 20)]
    pub devices: usize,

    /// Also write a devices file listing them, for a separate collector process.
    #[arg(long, value_name = "FILE")]
    pub write_devices: Option<PathBuf>,

    #[command(flatten)]
    pub sim: SimArgs,
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
