//! `ssh-poll` (issue 7): one collector polling a fleet of simulated devices over SSH,
//! three show commands each every interval, and a Python baseline (scrapli, asyncio,
//! asyncssh) polling the same commands on the same devices in the same run.
//!
//! Three processes of this binary (so each one's CPU and memory are its own):
//! - the simulator (`--role simulator`): the simulator crate's fleet serving SSH on
//!   loopback addresses, which writes the devices file, the Python targets and the login;
//! - the collector (`--role collector`): `collector::run` with the CLI tasks exactly as
//!   `netpulse collector` drives them, the store replaced by one that counts and keeps
//!   nothing (as `collect` does: what is measured is the collector's own cost: SSH,
//!   prompts, TextFSM, samples), its Prometheus registry printed on request;
//! - the driver (the default role), which starts the others, then the Python baseline
//!   (`bench/python/ssh_baseline.py`, in a venv it installs from the pinned
//!   `bench/python/requirements.txt`), measures each client in turn against the same
//!   simulator, and prints a table.
//!
//! Each client phase: wait until every session is open, one interval of warm-up (each
//! command's first run falls at a random point of its first interval), then the
//! measured window. In the window: CPU of the client process from `/proc`, polls done
//! (one poll = one command run on one device) against polls due, the p99 of the poll
//! durations (the collector's `cli_poll_seconds` histogram, interpolated in its
//! power-of-two buckets; the baseline's exact durations, and the same buckets), and
//! memory: RSS before any session against RSS with every session open.
//!
//! Children read their stdin and stop when it closes, so they end with the driver on
//! every path; they are also killed when their handles drop.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crds::devices_file::DeviceEntry;
use model::DeviceKey;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use crate::live::percentile;
use crate::{CountingStore, cpu_seconds, rss_kib, rss_kib_at};

/// The commands every device runs, each every interval.
const COMMANDS: [&str; 3] = ["show version", "show interfaces", "show lldp neighbors"];
/// Files the simulator writes into the run directory.
const DEVICES_FILE: &str = "devices.yaml";
const TARGETS_FILE: &str = "targets.txt";
const SECRETS_DIR: &str = "secrets";
/// The Secret with the simulated devices' login.
const SECRET: &str = "sim-ssh";
/// The baseline and its pinned dependencies, written out at run time.
const BASELINE: &str = include_str!("../python/ssh_baseline.py");
const REQUIREMENTS: &str = include_str!("../python/requirements.txt");
/// What the collector prints after its registry, so the driver knows the text ended.
const METRICS_END: &str = "# END";
/// How often a phase samples its client, and how often it says so.
const TICK: Duration = Duration::from_secs(1);
const PROGRESS: Duration = Duration::from_secs(5);
/// Descriptors a process needs besides one per session or listener.
const SPARE_FDS: u64 = 256;

/// `ssh-poll`.
#[derive(Debug, Clone, clap::Args)]
pub struct SshPoll {
    /// Simulated devices, SSH only (each also has an idle gNMI listener).
    #[arg(long, default_value_t = 2_000)]
    devices: usize,
    /// Seconds between two runs of each command.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Seconds measured per client, after the warm-up.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Seconds of warm-up once every session is open (default: one interval, so every
    /// command has had its jittered first run).
    #[arg(long)]
    warmup: Option<u64>,
    /// Longest wait for every session of a client to open, in seconds; the phase goes on
    /// (and reports the sessions missing) after it.
    #[arg(long, default_value_t = 180)]
    open_timeout: u64,
    /// Interfaces per simulated device (the size of `show interfaces`).
    #[arg(long, default_value_t = 8)]
    interfaces: usize,
    /// First loopback address of the devices.
    #[arg(long, default_value = "127.0.80.1")]
    base_address: Ipv4Addr,
    /// SSH port of every device.
    #[arg(long, default_value_t = 2222)]
    ssh_port: u16,
    /// Devices the Python baseline polls, the first N (default: all).
    #[arg(long)]
    python_devices: Option<usize>,
    /// Session opens the baseline keeps in flight at once.
    #[arg(long, default_value_t = 64)]
    python_connects: usize,
    /// Skip the Python baseline.
    #[arg(long)]
    no_python: bool,
    /// Interpreter the baseline's venv is made with.
    #[arg(long, default_value = "python3.11")]
    python: String,
    /// The baseline's venv (default: under the temporary directory, reused while the
    /// requirements are unchanged).
    #[arg(long)]
    venv: Option<PathBuf>,
    /// Which process this is (the driver starts the others).
    #[arg(long, value_enum, default_value = "driver", hide = true)]
    role: Role,
    /// The run directory (for the simulator and the collector).
    #[arg(long, hide = true)]
    dir: Option<PathBuf>,
}

/// The processes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Starts the others, measures, prints.
    Driver,
    /// Serves the simulated devices.
    Simulator,
    /// Runs the collector.
    Collector,
}

/// Runs `ssh-poll` in the role it was given.
pub async fn run(cfg: &SshPoll) -> anyhow::Result<()> {
    match cfg.role {
        Role::Driver => drive(cfg).await,
        Role::Simulator => simulate(cfg).await,
        Role::Collector => collect(cfg).await,
    }
}

// ---------------------------------------------------------------------------------------
// The simulator process.

async fn simulate(cfg: &SshPoll) -> anyhow::Result<()> {
    let dir = cfg.dir.clone().context("--dir")?;
    let fleet = simulator::Fleet::start(simulator::FleetConfig {
        devices: cfg.devices,
        base_address: cfg.base_address,
        // The gNMI side is not used: any free port.
        port: 0,
        interfaces: cfg.interfaces,
        ssh: Some(simulator::SshConfig {
            port: cfg.ssh_port,
            max_sessions: cfg.devices * 2 + 64,
            ..simulator::SshConfig::default()
        }),
        ..simulator::FleetConfig::default()
    })
    .await
    .context("starting the simulated fleet")?;
    let host_key = fleet.ssh_host_key().context("no SSH host key")?.to_owned();
    let interval = format!("{}s", cfg.interval);
    let mut entries = Vec::with_capacity(cfg.devices);
    let mut targets = String::new();
    for device in fleet.devices() {
        let ssh = device.ssh_addr.context("a device without SSH")?;
        let platform = device.platform.context("a device without a platform")?;
        targets.push_str(&format!(
            "{} {} {} {}\n",
            device.name,
            ssh.ip(),
            ssh.port(),
            platform.as_str()
        ));
        entries.push(entry(&device.name, ssh, platform, &host_key, &interval)?);
    }
    std::fs::write(dir.join(DEVICES_FILE), crds::devices_file::render(&entries))?;
    std::fs::write(dir.join(TARGETS_FILE), targets)?;
    let secret = dir.join(SECRETS_DIR).join(SECRET);
    std::fs::create_dir_all(&secret)?;
    std::fs::write(secret.join("username"), simulator::DEFAULT_SSH_USERNAME)?;
    std::fs::write(secret.join("password"), simulator::DEFAULT_SSH_PASSWORD)?;
    println!("ready devices={}", fleet.devices().len());
    std::io::stdout().flush()?;
    until_stdin_closes().await;
    fleet.shutdown().await;
    Ok(())
}

/// A device collected over SSH only, as `netpulse all --ssh-devices` writes one: shell
/// mode, the fleet's host key pinned, the platform given (not detected).
fn entry(
    name: &str,
    ssh: std::net::SocketAddr,
    platform: simulator::Platform,
    host_key: &str,
    interval: &str,
) -> anyhow::Result<DeviceEntry> {
    let mut entry =
        collector::source::plain_text_device(DeviceKey::new(name.to_owned())?, ssh, interval);
    entry.spec.gnmi.enabled = false;
    entry.spec.credentials = Some(crds::SecretRef {
        name: SECRET.into(),
        username_key: None,
        password_key: None,
    });
    entry.spec.ssh = Some(crds::SshSpec {
        port: ssh.port(),
        host_key: Some(host_key.to_owned()),
        known_hosts_secret: None,
        trust_on_first_use: false,
        commands: COMMANDS
            .iter()
            .map(|c| crds::SshCommand {
                command: (*c).to_owned(),
                interval: interval.to_owned(),
            })
            .collect(),
        platform: Some(match platform {
            simulator::Platform::AristaEos => crds::CliPlatform::AristaEos,
            simulator::Platform::CiscoIos => crds::CliPlatform::CiscoIos,
        }),
        mode: crds::SshMode::Shell,
        prompt: None,
        legacy_algorithms: false,
        aaa_group: None,
        private_key_secret: None,
    });
    Ok(entry)
}

async fn until_stdin_closes() {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

// ---------------------------------------------------------------------------------------
// The collector process.

async fn collect(cfg: &SshPoll) -> anyhow::Result<()> {
    let dir = cfg.dir.clone().context("--dir")?;
    let devices = collector::source::from_file(&dir.join(DEVICES_FILE))?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(collector::CollectorMetrics::register(&mut registry));
    let store = Arc::new(CountingStore::default());
    let config = collector::CollectorConfig {
        secrets_dir: Some(dir.join(SECRETS_DIR)),
        // The session caps of `netpulse collector`'s defaults (logins in progress at
        // once; open sessions are not capped).
        ..collector::CollectorConfig::default()
    };
    println!("started rss_kib={}", rss_kib()?);
    std::io::stdout().flush()?;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(collector::run(
        devices,
        store,
        bus::open(None, "bench")?,
        metrics,
        collector::HealthBook::default(),
        config,
        shutdown.clone(),
    ));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "metrics" {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", text.trim_end())?;
            writeln!(out, "{METRICS_END}")?;
            out.flush()?;
        }
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The driver.

/// A child process of the run: killed when dropped, stopped by closing its stdin.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    /// Starts `program` with `args`, with room for `fds` descriptors.
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        fds: u64,
    ) -> anyhow::Result<Self> {
        let mut command = with_fd_limit(program, args, fds);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "error")
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the {name}: {}", program.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        Ok(Self {
            name,
            child,
            stdin,
            stdout,
        })
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has exited")
    }

    fn cpu(&self) -> anyhow::Result<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.pid()?))
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib_at(&format!("/proc/{}/status", self.pid()?))
    }

    /// The next line of its stdout, within `timeout`.
    async fn line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        tokio::time::timeout(timeout, self.stdout.next_line())
            .await
            .with_context(|| format!("the {} said nothing for {timeout:?}", self.name))??
            .with_context(|| format!("the {} exited", self.name))
    }

    /// Sends one line and reads lines up to one that `last` accepts.
    async fn ask(&mut self, request: &str, last: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(format!("{request}\n").as_bytes()).await?;
        stdin.flush().await?;
        let mut text = String::new();
        loop {
            let line = self.line(Duration::from_secs(30)).await?;
            let done = last(&line);
            text.push_str(&line);
            text.push('\n');
            if done {
                return Ok(text);
            }
        }
    }

    /// Closes its stdin and waits a little for it to exit; kills it otherwise.
    async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The soft limit of open files, from `/proc/self/limits`.
fn fd_limits() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace();
    let parse = |v: Option<&str>| match v {
        Some("unlimited") => Some(u64::MAX),
        Some(v) => v.parse().ok(),
        None => None,
    };
    Some((parse(values.next())?, parse(values.next())?))
}

/// `program args`, through `sh -c 'ulimit -n'` when the soft limit of open files is below
/// `fds` (up to the hard limit).
fn with_fd_limit(program: &Path, args: &[String], fds: u64) -> Command {
    match fd_limits() {
        Some((soft, hard)) if soft < fds => {
            let raised = fds.min(hard);
            if raised < fds {
                eprintln!(
                    "  warning: open files limited to {hard}, {fds} wanted; sessions may fail"
                );
            }
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("ulimit -n {raised} && exec \"$0\" \"$@\""))
                .arg(program)
                .args(args);
            command
        }
        _ => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }
}

/// Removes the run directory when dropped.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one client did in the measured window.
#[derive(Debug, Default, Clone)]
struct Outcome {
    client: String,
    devices: usize,
    open: usize,
    open_seconds: f64,
    /// CPU seconds and session opens attempted until every session was open.
    open_cpu: f64,
    open_connects: f64,
    window: f64,
    due: f64,
    ok: f64,
    failed: f64,
    closed: f64,
    overruns: f64,
    /// Session opens attempted in the window.
    connects: f64,
    cpu: f64,
    rss_before_kib: u64,
    rss_kib: u64,
    /// Poll durations per bucket (upper bound, count), not cumulative.
    buckets: Vec<(f64, f64)>,
    /// Exact durations (seconds), when the client reports them.
    exact: Vec<f64>,
    simulator_cpu: f64,
    note: String,
}

impl Outcome {
    fn completeness(&self) -> f64 {
        if self.due > 0.0 {
            100.0 * self.ok / self.due
        } else {
            0.0
        }
    }

    fn cpu_ms_per_poll(&self) -> f64 {
        if self.ok > 0.0 {
            1000.0 * self.cpu / self.ok
        } else {
            f64::NAN
        }
    }

    fn kib_per_session(&self) -> f64 {
        self.rss_kib.saturating_sub(self.rss_before_kib) as f64 / self.open.max(1) as f64
    }
}

/// The collector's histogram buckets: 5 ms doubling 14 times (see collector metrics).
fn bucket_bounds() -> Vec<f64> {
    (0..14).map(|i| 0.005 * f64::powi(2.0, i)).collect()
}

/// The `q` quantile of bucketed counts, interpolated linearly inside its bucket (the
/// usual Prometheus `histogram_quantile`); `None` when it falls in the `+Inf` bucket.
fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total: f64 = buckets.iter().map(|(_, c)| c).sum();
    if total <= 0.0 {
        return Some(f64::NAN);
    }
    let rank = q * total;
    let (mut below, mut lower) = (0.0, 0.0);
    for &(upper, count) in buckets {
        if below + count >= rank && count > 0.0 {
            if upper.is_infinite() {
                return None;
            }
            return Some(lower + (upper - lower) * (rank - below) / count);
        }
        below += count;
        lower = upper;
    }
    None
}

/// Durations counted into the collector's buckets.
fn into_buckets(durations: &[f64]) -> Vec<(f64, f64)> {
    let mut bounds = bucket_bounds();
    bounds.push(f64::INFINITY);
    let mut counts = vec![0.0; bounds.len()];
    for &d in durations {
        let at = bounds
            .iter()
            .position(|&b| d <= b)
            .unwrap_or(bounds.len() - 1);
        counts[at] += 1.0;
    }
    bounds.into_iter().zip(counts).collect()
}

/// Prometheus text as `series -> value` (`name{labels}` as printed).
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The collector's CLI counters at one moment.
#[derive(Debug, Clone, Default)]
struct CollectorSnapshot {
    at: Option<Instant>,
    cpu: f64,
    sim_cpu: f64,
    sessions: f64,
    ok: f64,
    failed: f64,
    closed: f64,
    overruns: f64,
    reconnects: f64,
    connects: f64,
    parse_errors: f64,
    /// Cumulative counts per bucket bound (`+Inf` last).
    cumulative: Vec<(f64, f64)>,
}

async fn collector_snapshot(collector: &mut Proc, sim: &Proc) -> anyhow::Result<CollectorSnapshot> {
    let text = collector.ask("metrics", |l| l == METRICS_END).await?;
    let at = Instant::now();
    let cpu = collector.cpu()?;
    let m = parse_metrics(&text);
    let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
    let polls = |result: &str| {
        get(&format!(
            "netpulse_collector_cli_polls_total{{result=\"{result}\"}}"
        ))
    };
    let mut cumulative: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k
                .strip_prefix("netpulse_collector_cli_poll_seconds_bucket{le=\"")?
                .strip_suffix("\"}")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, *v))
        })
        .collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(CollectorSnapshot {
        at: Some(at),
        cpu,
        sim_cpu: sim.cpu()?,
        sessions: get("netpulse_collector_cli_sessions"),
        ok: polls("ok"),
        failed: polls("failed"),
        closed: polls("closed"),
        overruns: get("netpulse_collector_cli_overruns_total"),
        reconnects: get("netpulse_collector_cli_reconnects_total"),
        connects: get("netpulse_collector_cli_connects_total"),
        parse_errors: get("netpulse_collector_cli_parse_errors_total"),
        cumulative,
    })
}

/// Seconds since `since`, for progress lines.
fn elapsed(since: Instant) -> String {
    format!("{:>4.0}s", since.elapsed().as_secs_f64())
}

struct Phase<'a> {
    cfg: &'a SshPoll,
    devices: usize,
    started: Instant,
    label: &'static str,
}

impl Phase<'_> {
    fn warmup(&self) -> Duration {
        Duration::from_secs(self.cfg.warmup.unwrap_or(self.cfg.interval))
    }

    fn due(&self, window: f64) -> f64 {
        (self.devices * COMMANDS.len()) as f64 * window / self.cfg.interval as f64
    }

    fn say(&self, what: &str) {
        eprintln!("[{} {}] {what}", self.label, elapsed(self.started));
    }
}

async fn netpulse_phase(
    cfg: &SshPoll,
    exe: &Path,
    dir: &Path,
    sim: &Proc,
) -> anyhow::Result<Outcome> {
    let n = cfg.devices;
    let phase = Phase {
        cfg,
        devices: n,
        started: Instant::now(),
        label: "netpulse",
    };
    let args = role_args(cfg, "collector", dir);
    let mut collector = Proc::spawn("collector", exe, &args, n as u64 + SPARE_FDS)?;
    let first = collector.line(Duration::from_secs(60)).await?;
    let rss_before_kib: u64 = first
        .strip_prefix("started rss_kib=")
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("the collector said {first:?}"))?;
    phase.say(&format!(
        "collector started (pid {}, {:.1} MiB); opening {n} sessions",
        collector.pid()?,
        rss_before_kib as f64 / 1024.0
    ));

    // Every session open.
    let deadline = Instant::now() + Duration::from_secs(cfg.open_timeout);
    let mut last_note = Instant::now();
    let mut s = collector_snapshot(&mut collector, sim).await?;
    while (s.sessions as usize) < n {
        if Instant::now() > deadline {
            phase.say(&format!(
                "only {}/{n} sessions open after {}s; measuring anyway",
                s.sessions, cfg.open_timeout
            ));
            break;
        }
        if last_note.elapsed() >= PROGRESS {
            phase.say(&format!(
                "{}/{n} sessions open, {} polls ok, {} reconnects",
                s.sessions, s.ok, s.reconnects
            ));
            last_note = Instant::now();
        }
        tokio::time::sleep(TICK).await;
        s = collector_snapshot(&mut collector, sim).await?;
    }
    let open_seconds = phase.started.elapsed().as_secs_f64();
    let (open_cpu, open_connects) = (s.cpu, s.connects);
    phase.say(&format!(
        "{}/{n} sessions open after {open_seconds:.1}s; warming up {}s",
        s.sessions,
        phase.warmup().as_secs()
    ));
    watch(&phase, phase.warmup(), &mut collector, sim).await?;
    let s0 = collector_snapshot(&mut collector, sim).await?;
    phase.say(&format!("measuring {}s", cfg.seconds));
    let s1 = watch(
        &phase,
        Duration::from_secs(cfg.seconds),
        &mut collector,
        sim,
    )
    .await?;
    let rss_kib = collector.rss_kib()?;
    collector.stop().await;

    let window = match (s0.at, s1.at) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let mut buckets = Vec::new();
    let mut previous = 0.0;
    for (i, &(bound, c1)) in s1.cumulative.iter().enumerate() {
        let c0 = s0.cumulative.get(i).map_or(0.0, |&(_, c)| c);
        let cumulative = c1 - c0;
        buckets.push((bound, cumulative - previous));
        previous = cumulative;
    }
    Ok(Outcome {
        client: "netpulse".into(),
        devices: n,
        open: s1.sessions as usize,
        open_seconds,
        open_cpu,
        open_connects,
        window,
        due: phase.due(window),
        ok: s1.ok - s0.ok,
        failed: s1.failed - s0.failed,
        closed: s1.closed - s0.closed,
        overruns: s1.overruns - s0.overruns,
        connects: s1.connects - s0.connects,
        cpu: s1.cpu - s0.cpu,
        rss_before_kib,
        rss_kib,
        buckets,
        exact: Vec::new(),
        simulator_cpu: s1.sim_cpu - s0.sim_cpu,
        note: format!("parse_errors={}", s1.parse_errors - s0.parse_errors),
    })
}

/// Waits `span`, sampling the collector and saying how it goes; the last sample.
async fn watch(
    phase: &Phase<'_>,
    span: Duration,
    collector: &mut Proc,
    sim: &Proc,
) -> anyhow::Result<CollectorSnapshot> {
    let end = Instant::now() + span;
    let mut last_note = Instant::now();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(TICK)).await;
        let s = collector_snapshot(collector, sim).await?;
        if Instant::now() >= end {
            return Ok(s);
        }
        if last_note.elapsed() >= PROGRESS {
            phase.say(&format!(
                "{} sessions, polls ok {} failed {} closed {}, overruns {}, {:.1} CPU s",
                s.sessions, s.ok, s.failed, s.closed, s.overruns, s.cpu
            ));
            last_note = Instant::now();
        }
    }
}

fn role_args(cfg: &SshPoll, role: &str, dir: &Path) -> Vec<String> {
    vec![
        "ssh-poll".into(),
        "--role".into(),
        role.into(),
        "--dir".into(),
        dir.display().to_string(),
        "--devices".into(),
        cfg.devices.to_string(),
        "--interval".into(),
        cfg.interval.to_string(),
        "--interfaces".into(),
        cfg.interfaces.to_string(),
        "--base-address".into(),
        cfg.base_address.to_string(),
        "--ssh-port".into(),
        cfg.ssh_port.to_string(),
    ]
}

/// The baseline's counters at one moment (durations: since the previous one).
#[derive(Debug, Clone, Default)]
struct PythonSnapshot {
    at: Option<Instant>,
    cpu: f64,
    sim_cpu: f64,
    open: f64,
    connects: f64,
    connect_failed: f64,
    ok: f64,
    failed: f64,
    closed: f64,
    overruns: f64,
    parsed_rows: f64,
    parse_errors: f64,
    last_error: String,
    durations: Vec<f64>,
}

async fn python_snapshot(python: &mut Proc, sim: &Proc) -> anyhow::Result<PythonSnapshot> {
    let text = python.ask("stats", |l| l.starts_with('{')).await?;
    let at = Instant::now();
    let cpu = python.cpu()?;
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("the baseline said {line:?}"))?;
    let get = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(PythonSnapshot {
        at: Some(at),
        cpu,
        sim_cpu: sim.cpu()?,
        open: get("open"),
        connects: get("connects"),
        connect_failed: get("connect_failed"),
        ok: get("ok"),
        failed: get("failed"),
        closed: get("closed"),
        overruns: get("overruns"),
        parsed_rows: get("parsed_rows"),
        parse_errors: get("parse_errors"),
        last_error: v["last_error"].as_str().unwrap_or_default().to_owned(),
        durations: v["durations"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default(),
    })
}

/// Makes the baseline's venv (once per requirements) and returns its interpreter.
async fn venv(cfg: &SshPoll) -> anyhow::Result<PathBuf> {
    let dir = cfg.venv.clone().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("netpulse-bench-ssh-poll")
            .join("venv")
    });
    let python = dir.join("bin").join("python");
    let stamp = dir.join("requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(REQUIREMENTS) {
        return Ok(python);
    }
    eprintln!(
        "[python] installing the baseline's requirements into {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = Command::new(&cfg.python)
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .await
        .with_context(|| format!("{} -m venv", cfg.python))?;
    if !status.success() {
        bail!("{} -m venv failed", cfg.python);
    }
    let requirements = dir.join("requirements.in");
    std::fs::write(&requirements, REQUIREMENTS)?;
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .stdout(Stdio::null())
        .status()
        .await
        .context("pip install")?;
    if !status.success() {
        bail!("pip install -r bench/python/requirements.txt failed");
    }
    std::fs::write(&stamp, REQUIREMENTS)?;
    Ok(python)
}

async fn python_phase(
    cfg: &SshPoll,
    interpreter: &Path,
    dir: &Path,
    sim: &Proc,
) -> anyhow::Result<Outcome> {
    let n = cfg.python_devices.unwrap_or(cfg.devices).min(cfg.devices);
    let phase = Phase {
        cfg,
        devices: n,
        started: Instant::now(),
        label: "python",
    };
    let script = dir.join("ssh_baseline.py");
    std::fs::write(&script, BASELINE)?;
    let args = vec![
        script.display().to_string(),
        "--targets".into(),
        dir.join(TARGETS_FILE).display().to_string(),
        "--interval".into(),
        cfg.interval.to_string(),
        "--limit".into(),
        n.to_string(),
        "--connects".into(),
        cfg.python_connects.to_string(),
        "--username".into(),
        simulator::DEFAULT_SSH_USERNAME.into(),
        "--password".into(),
        simulator::DEFAULT_SSH_PASSWORD.into(),
    ];
    let mut python = Proc::spawn("baseline", interpreter, &args, n as u64 + SPARE_FDS)?;
    let first = python.line(Duration::from_secs(120)).await?;
    let started: serde_json::Value =
        serde_json::from_str(&first).with_context(|| format!("the baseline said {first:?}"))?;
    let rss_before_kib = started["rss_kib"].as_u64().unwrap_or(0);
    phase.say(&format!(
        "baseline started (pid {}, {:.1} MiB); opening {n} sessions",
        python.pid()?,
        rss_before_kib as f64 / 1024.0
    ));

    let deadline = Instant::now() + Duration::from_secs(cfg.open_timeout);
    let mut last_note = Instant::now();
    let mut s = python_snapshot(&mut python, sim).await?;
    while (s.open as usize) < n {
        if Instant::now() > deadline {
            phase.say(&format!(
                "only {}/{n} sessions open after {}s; measuring anyway (last error: {})",
                s.open, cfg.open_timeout, s.last_error
            ));
            break;
        }
        if last_note.elapsed() >= PROGRESS {
            phase.say(&format!(
                "{}/{n} sessions open, {} connect failures, {} polls ok",
                s.open, s.connect_failed, s.ok
            ));
            last_note = Instant::now();
        }
        tokio::time::sleep(TICK).await;
        s = python_snapshot(&mut python, sim).await?;
    }
    let open_seconds = phase.started.elapsed().as_secs_f64();
    let (open_cpu, open_connects) = (s.cpu, s.connects);
    let connect_failed_before = s.connect_failed;
    phase.say(&format!(
        "{}/{n} sessions open after {open_seconds:.1}s ({} connect failures); warming up {}s",
        s.open,
        s.connect_failed,
        phase.warmup().as_secs()
    ));
    python_watch(&phase, phase.warmup(), &mut python, sim, &mut Vec::new()).await?;
    let s0 = python_snapshot(&mut python, sim).await?;
    phase.say(&format!("measuring {}s", cfg.seconds));
    let mut durations = Vec::new();
    let s1 = python_watch(
        &phase,
        Duration::from_secs(cfg.seconds),
        &mut python,
        sim,
        &mut durations,
    )
    .await?;
    let rss_kib = python.rss_kib()?;
    python.stop().await;

    let window = match (s0.at, s1.at) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Outcome {
        client: "python".into(),
        devices: n,
        open: s1.open as usize,
        open_seconds,
        open_cpu,
        open_connects,
        window,
        due: phase.due(window),
        ok: s1.ok - s0.ok,
        failed: s1.failed - s0.failed,
        closed: s1.closed - s0.closed,
        overruns: s1.overruns - s0.overruns,
        connects: s1.connects - s0.connects,
        cpu: s1.cpu - s0.cpu,
        rss_before_kib,
        rss_kib,
        buckets: into_buckets(&durations),
        exact: durations,
        simulator_cpu: s1.sim_cpu - s0.sim_cpu,
        note: format!(
            "parsed_rows={} parse_errors={} connect_failures_before_window={connect_failed_before} last_error={:?}",
            s1.parsed_rows - s0.parsed_rows,
            s1.parse_errors - s0.parse_errors,
            s1.last_error
        ),
    })
}

/// Waits `span`, sampling the baseline (its durations go to `durations`); the last sample.
async fn python_watch(
    phase: &Phase<'_>,
    span: Duration,
    python: &mut Proc,
    sim: &Proc,
    durations: &mut Vec<f64>,
) -> anyhow::Result<PythonSnapshot> {
    let end = Instant::now() + span;
    let mut last_note = Instant::now();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(TICK)).await;
        let mut s = python_snapshot(python, sim).await?;
        durations.append(&mut s.durations);
        if Instant::now() >= end {
            return Ok(s);
        }
        if last_note.elapsed() >= PROGRESS {
            phase.say(&format!(
                "{} sessions, polls ok {} failed {} closed {}, overruns {}, {:.1} CPU s",
                s.open, s.ok, s.failed, s.closed, s.overruns, s.cpu
            ));
            last_note = Instant::now();
        }
    }
}

async fn drive(cfg: &SshPoll) -> anyhow::Result<()> {
    if cfg.devices == 0 || cfg.interval == 0 || cfg.seconds == 0 {
        bail!("--devices, --interval and --seconds must be positive");
    }
    let exe = std::env::current_exe().context("the bench binary")?;
    let dir = std::env::temp_dir().join(format!("netpulse-ssh-poll-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let run_dir = RunDir(dir.clone());
    let outcome = tokio::select! {
        outcome = phases(cfg, &exe, &dir) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The children are gone (their handles dropped); the directory goes last.
    drop(run_dir);
    let outcomes = outcome?;
    print_table(cfg, &outcomes);
    Ok(())
}

async fn phases(cfg: &SshPoll, exe: &Path, dir: &Path) -> anyhow::Result<Vec<Outcome>> {
    let interpreter = if cfg.no_python {
        None
    } else {
        Some(
            venv(cfg)
                .await
                .context("the Python baseline's venv (--no-python skips the baseline)")?,
        )
    };
    let started = Instant::now();
    let args = role_args(cfg, "simulator", dir);
    // Two listeners per device (SSH and the idle gNMI one) and up to two sessions.
    let fds = 4 * cfg.devices as u64 + SPARE_FDS;
    let mut sim = Proc::spawn("simulator", exe, &args, fds)?;
    let ready = sim.line(Duration::from_secs(300)).await?;
    if !ready.starts_with("ready") {
        bail!("the simulator said {ready:?}");
    }
    eprintln!(
        "[simulator {}] {} devices serving SSH on {}.. port {} (pid {}, {:.1} MiB)",
        elapsed(started),
        cfg.devices,
        cfg.base_address,
        cfg.ssh_port,
        sim.pid()?,
        sim.rss_kib()? as f64 / 1024.0
    );
    let mut outcomes = vec![netpulse_phase(cfg, exe, dir, &sim).await?];
    if let Some(interpreter) = interpreter {
        outcomes.push(python_phase(cfg, &interpreter, dir, &sim).await?);
    }
    sim.stop().await;
    Ok(outcomes)
}

/// A row of the table: its name and how each client's cell reads.
type Row = (&'static str, Box<dyn Fn(&Outcome) -> String>);

fn print_table(cfg: &SshPoll, outcomes: &[Outcome]) {
    let ms = |v: Option<f64>| match v {
        Some(v) if v.is_finite() => format!("{:.1}", v * 1000.0),
        Some(_) => "n/a".to_owned(),
        None => format!(
            ">{:.0}",
            bucket_bounds().last().copied().unwrap_or(0.0) * 1000.0
        ),
    };
    let rows: Vec<Row> = vec![
        ("devices polled", Box::new(|o| o.devices.to_string())),
        (
            "sessions open",
            Box::new(|o| format!("{}/{}", o.open, o.devices)),
        ),
        (
            "all open after (s)",
            Box::new(|o| format!("{:.1}", o.open_seconds)),
        ),
        (
            "session opens until then",
            Box::new(|o| format!("{:.0}", o.open_connects)),
        ),
        (
            "CPU until then (s)",
            Box::new(|o| format!("{:.2}", o.open_cpu)),
        ),
        ("window (s)", Box::new(|o| format!("{:.1}", o.window))),
        ("polls due", Box::new(|o| format!("{:.0}", o.due))),
        ("polls ok", Box::new(|o| format!("{:.0}", o.ok))),
        (
            "polls failed/closed",
            Box::new(|o| format!("{:.0}/{:.0}", o.failed, o.closed)),
        ),
        ("overruns", Box::new(|o| format!("{:.0}", o.overruns))),
        (
            "session opens in window",
            Box::new(|o| format!("{:.0}", o.connects)),
        ),
        (
            "completeness (%)",
            Box::new(|o| format!("{:.2}", o.completeness())),
        ),
        ("CPU (s)", Box::new(|o| format!("{:.2}", o.cpu))),
        (
            "CPU (% of a core)",
            Box::new(|o| format!("{:.2}", 100.0 * o.cpu / o.window.max(1e-9))),
        ),
        (
            "CPU per poll (ms)",
            Box::new(|o| format!("{:.3}", o.cpu_ms_per_poll())),
        ),
        (
            "poll p50 (ms, buckets)",
            Box::new(move |o| ms(bucket_quantile(&o.buckets, 0.5))),
        ),
        (
            "poll p99 (ms, buckets)",
            Box::new(move |o| ms(bucket_quantile(&o.buckets, 0.99))),
        ),
        (
            "poll p99 (ms, exact)",
            Box::new(|o| {
                if o.exact.is_empty() {
                    "n/a".to_owned()
                } else {
                    let mut d = o.exact.clone();
                    d.sort_by(f64::total_cmp);
                    format!("{:.1}", percentile(&d, 0.99) * 1000.0)
                }
            }),
        ),
        (
            "RSS before sessions (MiB)",
            Box::new(|o| format!("{:.1}", o.rss_before_kib as f64 / 1024.0)),
        ),
        (
            "RSS, sessions open (MiB)",
            Box::new(|o| format!("{:.1}", o.rss_kib as f64 / 1024.0)),
        ),
        (
            "memory per session (KiB)",
            Box::new(|o| format!("{:.1}", o.kib_per_session())),
        ),
        (
            "simulator CPU (s)",
            Box::new(|o| format!("{:.2}", o.simulator_cpu)),
        ),
    ];
    println!(
        "ssh-poll devices={} interval_s={} commands={} interfaces={} (one poll = one command on one device)",
        cfg.devices,
        cfg.interval,
        COMMANDS.len(),
        cfg.interfaces
    );
    print!("{:<28}", "");
    for o in outcomes {
        print!("{:>16}", o.client);
    }
    println!();
    for (name, value) in &rows {
        print!("{name:<28}");
        for o in outcomes {
            print!("{:>16}", value(o));
        }
        println!();
    }
    for o in outcomes {
        println!(
            "result client={} devices={} open={} open_s={:.1} open_cpu_s={:.2} open_attempts={:.0} window_s={:.1} polls_due={:.0} polls_ok={:.0} completeness_pct={:.2} cpu_s={:.2} cpu_ms_per_poll={:.3} p99_ms_buckets={} rss_before_mib={:.1} rss_mib={:.1} kib_per_session={:.1} {}",
            o.client,
            o.devices,
            o.open,
            o.open_seconds,
            o.open_cpu,
            o.open_connects,
            o.window,
            o.due,
            o.ok,
            o.completeness(),
            o.cpu,
            o.cpu_ms_per_poll(),
            ms(bucket_quantile(&o.buckets, 0.99)),
            o.rss_before_kib as f64 / 1024.0,
            o.rss_kib as f64 / 1024.0,
            o.kib_per_session(),
            o.note,
        );
    }
    if let [netpulse, python] = outcomes {
        println!(
            "ratio python/netpulse: cpu_per_poll={:.2}x memory_per_session={:.3}x",
            python.cpu_ms_per_poll() / netpulse.cpu_ms_per_poll(),
            python.kib_per_session() / netpulse.kib_per_session()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_inside_its_bucket() {
        // 100 polls: 50 up to 10 ms, 49 up to 20 ms, 1 up to 40 ms.
        let buckets = vec![
            (0.01, 50.0),
            (0.02, 49.0),
            (0.04, 1.0),
            (f64::INFINITY, 0.0),
        ];
        let p50 = bucket_quantile(&buckets, 0.5).unwrap();
        assert!((p50 - 0.01).abs() < 1e-12, "{p50}");
        let p99 = bucket_quantile(&buckets, 0.99).unwrap();
        assert!((p99 - 0.02).abs() < 1e-12, "{p99}");
        let over = vec![(0.01, 1.0), (f64::INFINITY, 99.0)];
        assert_eq!(bucket_quantile(&over, 0.99), None);
    }

    #[test]
    fn exact_durations_fall_into_the_collector_buckets() {
        let buckets = into_buckets(&[0.001, 0.005, 0.006, 100.0]);
        assert_eq!(buckets.len(), 15);
        assert_eq!(buckets[0], (0.005, 2.0));
        assert_eq!(buckets[1], (0.01, 1.0));
        assert_eq!(buckets[14].1, 1.0);
    }

    #[test]
    fn metrics_text_is_read_by_series() {
        let text = "# HELP x\nnetpulse_collector_cli_polls_total{result=\"ok\"} 12\nnetpulse_collector_cli_sessions 3\n";
        let m = parse_metrics(text);
        assert_eq!(m["netpulse_collector_cli_polls_total{result=\"ok\"}"], 12.0);
        assert_eq!(m["netpulse_collector_cli_sessions"], 3.0);
    }
}
