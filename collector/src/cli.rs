//! SSH/CLI collection of one device: a long-lived SSH session ([`sshcli::session`])
//! polling the Device's show commands on a jittered schedule, parsed with TextFSM
//! ([`sshcli::parse`]).
//!
//! - **Same series as gNMI.** A parsed `show interfaces` becomes samples on the OpenConfig
//!   paths gNMI uses, sent down the same pipeline (batched, fenced, stored, published),
//!   so an SSH-only device gets the same charts.
//! - **Raw output kept, changes recorded.** Every output (cut at [`MAX_RAW_OUTPUT`]) is
//!   the command's latest in the store, which compares it with the previous one and
//!   records a change with a diff (running config, LLDP neighbours, ...).
//! - **Schedule.** Each command first runs at a random point of its interval (a fleet
//!   does not poll in lock step), then every interval. A poll that overruns is reported
//!   (`netpulse_collector_cli_overruns`) and the missed runs are skipped, never stacked.
//! - **Sessions.** One session per device, reused across polls and reset every
//!   [`SESSION_RESET`]; capped per device, per AAA group and per collector
//!   ([`sshcli::session::limit`]); a failed or closed session is retried with jittered
//!   exponential backoff, a refused login or host key much later (retrying cannot help).
//! - **Host keys.** Pinned key, known-hosts Secret, or explicit trust on first use: the
//!   key learned first is recorded in the store (as the output of the pseudo-command
//!   [`HOST_KEY_RECORD`], shared by every collector) and a different key is refused
//!   afterwards.
//!
//! A device without gNMI collection gets its state (connecting, synced, unreachable)
//! from this task; one with both keeps the gNMI session's, and SSH failures go to the
//! log and the metrics.

use std::sync::Arc;
use std::time::Duration;

use crds::devices_file::DeviceEntry;
use crds::{CliPlatform, SshMode, SshSpec};
use model::{DeviceKey, DeviceState, Sample};
use sshcli::Platform;
use sshcli::parse::TemplateSet;
use sshcli::session::limit::{Limiter, jittered_backoff};
use sshcli::session::{self, AuthMethod, HostKeyPolicy, Mode, Session, SessionConfig};
use store::{CliOutput, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::CollectorConfig;
use crate::metrics::{CliResultLabel, CollectorMetrics};
use crate::session::{Reporter, now_ns};
use crate::transport;

/// Raw output kept per command run (the store's limit is larger).
pub const MAX_RAW_OUTPUT: usize = 256 * 1024;
/// A session is closed and opened again after this long (devices leak per-session state).
pub const SESSION_RESET: Duration = Duration::from_secs(3600);
/// The pseudo-command under which a host key learned on first use is recorded.
pub const HOST_KEY_RECORD: &str = "#ssh-host-key";
/// Key of a private-key Secret when none is named (as in `kubernetes.io/ssh-auth`).
pub const DEFAULT_PRIVATE_KEY_KEY: &str = "ssh-privatekey";
/// Key of the private key's passphrase, in the same Secret (optional).
pub const PASSPHRASE_KEY: &str = "passphrase";

/// What the CLI tasks of a collector share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// TextFSM templates (the project's, optionally in front of a directory's).
    pub templates: Arc<TemplateSet>,
    /// Session caps: per device, per AAA group, per collector.
    pub limiter: Arc<Limiter>,
    /// Where raw outputs, changes and learned host keys go.
    pub store: Arc<dyn Store>,
}

/// Runs the SSH collection of `device` until `shutdown`.
pub async fn run(
    device: DeviceEntry,
    tx: mpsc::Sender<Vec<Sample>>,
    reporter: Reporter,
    shared: Shared,
    config: CollectorConfig,
    shutdown: CancellationToken,
) {
    let Some(ssh) = device.spec.ssh.clone() else {
        return;
    };
    let span = tracing::info_span!("cli", device = %device.name);
    let task = Task {
        owns_state: !device.spec.gnmi.enabled,
        device,
        ssh,
        tx,
        reporter,
        shared,
        config,
        shutdown,
    };
    task.supervise().instrument(span).await;
}

struct Task {
    device: DeviceEntry,
    ssh: SshSpec,
    tx: mpsc::Sender<Vec<Sample>>,
    reporter: Reporter,
    shared: Shared,
    config: CollectorConfig,
    /// Whether this task reports the device's state (no gNMI session does).
    owns_state: bool,
    shutdown: CancellationToken,
}

/// Why a session ended.
enum Ended {
    Shutdown,
    /// Time to reset it.
    Reset,
    /// It failed (closed by the device, timed out): reconnect with backoff.
    Failed(String),
}

/// The schedule of one command.
struct Due {
    command: String,
    interval: Duration,
    next: Instant,
}

impl Task {
    fn name(&self) -> &DeviceKey {
        &self.device.name
    }

    fn metrics(&self) -> &CollectorMetrics {
        &self.reporter.metrics
    }

    async fn set_state(&self, state: DeviceState, error: Option<String>) {
        if self.owns_state {
            self.reporter.set(self.name(), state, error).await;
        }
    }

    async fn supervise(self) {
        let mut attempt: u32 = 0;
        let mut schedule = self.schedule();
        loop {
            if attempt > 0 {
                self.metrics().cli_reconnects.inc();
            }
            self.set_state(DeviceState::Connecting, None).await;
            let connected = tokio::select! {
                () = self.shutdown.cancelled() => return,
                c = self.connect() => c,
            };
            let wait = match connected {
                Ok((session, platform)) => {
                    attempt = 0;
                    match self.poll(session, platform, &mut schedule).await {
                        Ended::Shutdown => return,
                        Ended::Reset => continue,
                        Ended::Failed(error) => {
                            tracing::warn!(device = %self.name(), %error, "SSH session failed");
                            self.set_state(DeviceState::Unreachable, Some(error)).await;
                            attempt += 1;
                            jittered_backoff(
                                attempt,
                                self.config.backoff_min,
                                self.config.backoff_max,
                            )
                        }
                    }
                }
                Err(Refusal::Retry(error)) => {
                    tracing::warn!(device = %self.name(), %error, "SSH connect failed");
                    self.set_state(DeviceState::Unreachable, Some(error)).await;
                    attempt += 1;
                    jittered_backoff(attempt, self.config.backoff_min, self.config.backoff_max)
                }
                Err(Refusal::Refused(error)) => {
                    // A refused login or host key: retrying soon cannot succeed.
                    tracing::warn!(device = %self.name(), %error, "SSH refused");
                    self.set_state(DeviceState::Unreachable, Some(error)).await;
                    attempt = attempt.saturating_add(1);
                    self.config.refused_backoff
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Each command's first run at a random point of its interval.
    fn schedule(&self) -> Vec<Due> {
        let now = Instant::now();
        self.ssh
            .commands
            .iter()
            .map(|c| {
                let interval = crds::parse_duration(&c.interval)
                    .unwrap_or(Duration::from_secs(60))
                    .max(Duration::from_millis(100));
                let offset = interval.mul_f64(fastrand::f64());
                Due {
                    command: c.command.clone(),
                    interval,
                    next: now + offset,
                }
            })
            .collect()
    }

    /// Opens a session (within the caps) and settles the platform.
    async fn connect(&self) -> Result<(Connected, Platform), Refusal> {
        let permit = self
            .shared
            .limiter
            .acquire(self.name().as_str(), self.ssh.aaa_group.as_deref())
            .await;
        let learned = self.learned_key().await?;
        let config = self.session_config(learned.clone()).await?;
        self.metrics().cli_connects.inc();
        let (mut session, newly_learned) = Session::connect(&config).await.map_err(refusal)?;
        if let Some(key) = newly_learned.filter(|_| learned.is_none()) {
            tracing::info!(device = %self.name(), fingerprint = %key.fingerprint, "SSH host key learned on first use");
            let record = CliOutput {
                device: self.name().clone(),
                command: HOST_KEY_RECORD.to_owned(),
                ts: now_ns(),
                output: key.openssh.clone(),
                truncated: false,
                track_changes: true,
            };
            if let Err(error) = self.shared.store.record_cli_output(&record).await {
                // Kept for this session; the next one learns it again.
                tracing::warn!(device = %self.name(), %error, "Learned host key not recorded");
            }
        }
        let platform = match self.ssh.platform {
            Some(p) => platform_of(p),
            None => {
                let version = session
                    .run("show version")
                    .await
                    .map_err(|e| Refusal::Retry(e.to_string()))?;
                sshcli::parse::detect_platform(&version.text).ok_or_else(|| {
                    Refusal::Refused(
                        "the platform is not recognised from `show version`: set ssh.platform"
                            .to_owned(),
                    )
                })?
            }
        };
        Ok((
            Connected {
                session,
                _permit: permit,
                opened: Instant::now(),
            },
            platform,
        ))
    }

    /// The host key learned on first use earlier, from the store.
    async fn learned_key(&self) -> Result<Option<String>, Refusal> {
        if !self.ssh.trust_on_first_use || self.ssh.host_key.is_some() {
            return Ok(None);
        }
        match self
            .shared
            .store
            .cli_output(self.name(), HOST_KEY_RECORD)
            .await
        {
            Ok(found) => Ok(found.map(|o| o.output)),
            // Without the record, trusting the key again would not be first use.
            Err(error) => Err(Refusal::Retry(format!(
                "cannot read the host key learned earlier: {error}"
            ))),
        }
    }

    async fn session_config(&self, learned: Option<String>) -> Result<SessionConfig, Refusal> {
        let spec = &self.device.spec;
        let host_key = if let Some(key) = &self.ssh.host_key {
            HostKeyPolicy::Pinned(vec![key.clone()])
        } else if let Some(secret) = &self.ssh.known_hosts_secret {
            let key = secret.key_or(crds::DEFAULT_KNOWN_HOSTS_KEY);
            let text = transport::read_text(&self.config, &secret.name, key)
                .await
                .map_err(Refusal::Refused)?;
            HostKeyPolicy::KnownHosts(text)
        } else {
            HostKeyPolicy::TrustOnFirstUse { learned }
        };
        let (username, password) = match &spec.credentials {
            Some(secret) => {
                let user = transport::read_text(&self.config, &secret.name, secret.username_key())
                    .await
                    .map_err(Refusal::Refused)?;
                let password =
                    transport::read_text(&self.config, &secret.name, secret.password_key()).await;
                (user, password.ok())
            }
            None => {
                return Err(Refusal::Refused(
                    "SSH needs a user name: set credentials (a Secret with username)".to_owned(),
                ));
            }
        };
        let mut auth = Vec::new();
        if let Some(secret) = &self.ssh.private_key_secret {
            let key = secret.key_or(DEFAULT_PRIVATE_KEY_KEY);
            let pem = transport::read_text(&self.config, &secret.name, key)
                .await
                .map_err(Refusal::Refused)?;
            let passphrase = transport::read_text(&self.config, &secret.name, PASSPHRASE_KEY)
                .await
                .ok()
                .filter(|p| !p.is_empty());
            auth.push(AuthMethod::PrivateKey { pem, passphrase });
        }
        if let Some(password) = password {
            auth.push(AuthMethod::Password(password.clone()));
            auth.push(AuthMethod::KeyboardInteractive(password));
        }
        if auth.is_empty() {
            return Err(Refusal::Refused(
                "SSH has no way to log in: the credentials Secret has no password and there is no privateKeySecret".to_owned(),
            ));
        }
        let platform = self.ssh.platform.map_or(Platform::CiscoIos, platform_of);
        let mut config = SessionConfig::new(
            self.name().as_str(),
            spec.address.clone(),
            self.ssh.port,
            username,
            host_key,
            platform,
        );
        config.auth = auth;
        config.mode = match self.ssh.mode {
            SshMode::Shell => Mode::Shell,
            SshMode::Exec => Mode::Exec,
        };
        config.legacy_algorithms = self.ssh.legacy_algorithms;
        config.shell.prompt = self.ssh.prompt.clone();
        config.timeouts.connect = self.config.connect_timeout.max(Duration::from_secs(5));
        Ok(config)
    }

    /// Runs the commands as they fall due until the session ends.
    async fn poll(
        &self,
        mut connected: Connected,
        platform: Platform,
        schedule: &mut [Due],
    ) -> Ended {
        self.set_state(DeviceState::Synced, None).await;
        self.metrics().cli_sessions.inc();
        // Runs that fell due while there was no session are not overruns: they run now.
        let now = Instant::now();
        for due in schedule.iter_mut() {
            due.next = due.next.max(now);
        }
        let ended = loop {
            if connected.opened.elapsed() >= SESSION_RESET {
                break Ended::Reset;
            }
            let Some(i) = (0..schedule.len()).min_by_key(|&i| schedule[i].next) else {
                // No command: nothing to do but wait.
                self.shutdown.cancelled().await;
                break Ended::Shutdown;
            };
            tokio::select! {
                () = self.shutdown.cancelled() => break Ended::Shutdown,
                () = tokio::time::sleep_until(schedule[i].next) => {}
            }
            let started = Instant::now();
            let command = schedule[i].command.clone();
            let result = connected.session.run(&command).await;
            let took = started.elapsed();
            self.metrics().cli_poll_seconds.observe(took.as_secs_f64());
            // The next run: one interval after this one was due; missed runs are skipped.
            let due = &mut schedule[i];
            due.next += due.interval;
            let now = Instant::now();
            if due.next <= now {
                let missed =
                    ((now - due.next).as_secs_f64() / due.interval.as_secs_f64()) as u64 + 1;
                self.metrics().cli_overruns.inc_by(missed);
                tracing::warn!(device = %self.name(), %command, took_ms = took.as_millis() as u64, interval_ms = due.interval.as_millis() as u64, missed, "CLI poll overran its interval");
                due.next += due.interval * missed as u32;
            }
            match result {
                Ok(output) => {
                    self.result("ok");
                    self.process(platform, &command, output.text).await;
                }
                Err(error)
                    if matches!(error, session::Error::Closed { .. })
                        || connected.session.is_closed() =>
                {
                    self.result("closed");
                    break Ended::Failed(error.to_string());
                }
                Err(error) => {
                    // A timeout or an oversize output: the session resets its shell;
                    // the command is retried at its next interval.
                    self.result("failed");
                    tracing::warn!(device = %self.name(), %command, %error, "CLI command failed");
                    if self.owns_state {
                        self.reporter
                            .set(self.name(), DeviceState::Degraded, Some(error.to_string()))
                            .await;
                    }
                }
            }
        };
        self.metrics().cli_sessions.dec();
        connected.session.close().await;
        ended
    }

    fn result(&self, result: &'static str) {
        self.metrics()
            .cli_polls
            .get_or_create(&CliResultLabel { result })
            .inc();
    }

    /// Keeps the output (recording a change), and sends the series it carries.
    async fn process(&self, platform: Platform, command: &str, text: String) {
        let ts = now_ns();
        let mut series = false;
        match self.shared.templates.lookup(platform.as_str(), command) {
            Ok(template) if template.name().ends_with("show_interfaces.textfsm") => {
                series = true;
                let samples = template.parse(&text).and_then(|rows| {
                    sshcli::parse::interface_samples(self.name(), platform, &rows, ts)
                });
                match samples {
                    Ok(samples) if !samples.is_empty() => {
                        self.metrics().samples_received.inc_by(samples.len() as u64);
                        if self.tx.send(samples).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.metrics().cli_parse_errors.inc();
                        tracing::warn!(device = %self.name(), %command, %error, "CLI output not parsed");
                    }
                }
            }
            // Other tables are kept as raw output (and compared); a command without a
            // template is kept raw only.
            Ok(_) | Err(_) => {}
        }
        // An output that became series is kept raw, its changes are the series; others
        // are kept without their volatile lines, and compared.
        let (output, truncated) = bounded(if series { text } else { stable(&text) });
        let record = CliOutput {
            device: self.name().clone(),
            command: command.to_owned(),
            ts,
            output,
            truncated,
            track_changes: !series,
        };
        match self.shared.store.record_cli_output(&record).await {
            Ok(Some(change)) => {
                self.metrics().cli_changes.inc();
                tracing::info!(device = %self.name(), %command, added = change.added, removed = change.removed, "CLI output changed");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(device = %self.name(), %command, %error, "CLI output not stored");
            }
        }
    }
}

/// An open session and its permit.
struct Connected {
    session: Session,
    _permit: sshcli::session::limit::Permit,
    opened: Instant,
}

/// Why a connect failed.
enum Refusal {
    /// Worth retrying soon (network, timeouts, a closed connection).
    Retry(String),
    /// Refused (login, host key, configuration): retried after `refused_backoff`.
    Refused(String),
}

fn refusal(error: session::Error) -> Refusal {
    use session::Error as E;
    match error {
        E::AuthFailed { .. }
        | E::HostKeyMismatch { .. }
        | E::HostKeyUnknown { .. }
        | E::HostKeyRevoked { .. }
        | E::PrivateKey { .. }
        | E::Config { .. } => Refusal::Refused(error.to_string()),
        other => Refusal::Retry(other.to_string()),
    }
}

fn platform_of(p: CliPlatform) -> Platform {
    match p {
        CliPlatform::AristaEos => Platform::AristaEos,
        CliPlatform::CiscoIos => Platform::CiscoIos,
    }
}

/// Parts of lines that change on every run while nothing changed (uptimes, free memory,
/// clocks, "last changed" stamps): such lines are left out of what is kept and compared,
/// as configuration backup tools do.
const VOLATILE: &[&str] = &[
    " uptime is ",
    "Uptime:",
    "Free memory:",
    "Last table change time",
    "Last configuration change at",
    "NVRAM config last updated",
    "Current configuration :",
    "! Time:",
];

/// `text` without its [`VOLATILE`] lines.
fn stable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text
        .lines()
        .filter(|l| !VOLATILE.iter().any(|v| l.contains(v)))
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `text` cut to [`MAX_RAW_OUTPUT`] bytes at a character boundary, and whether it was.
fn bounded(mut text: String) -> (String, bool) {
    if text.len() <= MAX_RAW_OUTPUT {
        return (text, false);
    }
    let mut end = MAX_RAW_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_output_is_cut_at_a_character_boundary() {
        let (short, cut) = bounded("show version\n".to_owned());
        assert_eq!((short.as_str(), cut), ("show version\n", false));
        let long = "é".repeat(MAX_RAW_OUTPUT);
        let (kept, cut) = bounded(long);
        assert!(cut);
        assert!(kept.len() <= MAX_RAW_OUTPUT && kept.len() > MAX_RAW_OUTPUT - 2);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn volatile_lines_are_left_out_of_what_is_compared() {
        let version = "Arista DCS-7050SX3-48YC8\nUptime:                 0 weeks, 1 day\nFree memory:  20666552 kB\nSerial number: JPE1\n";
        assert_eq!(
            stable(version),
            "Arista DCS-7050SX3-48YC8\nSerial number: JPE1\n"
        );
        let ios = "sim-0003 uptime is 17 weeks, 4 days\nCisco IOS Software\n";
        assert_eq!(stable(ios), "Cisco IOS Software\n");
        // A description that mentions uptime is not volatile.
        let config = "interface Ethernet1\n   description uptime-probe\n";
        assert_eq!(stable(config), config);
    }

    #[test]
    fn refused_logins_and_host_keys_wait_longer_than_network_failures() {
        let refused = refusal(session::Error::AuthFailed {
            device: "leaf1".into(),
            user: "netpulse".into(),
            tried: vec!["password".into()],
            offered: vec!["publickey".into()],
        });
        assert!(matches!(refused, Refusal::Refused(m) if m.contains("leaf1")));
        let retry = refusal(session::Error::Closed {
            device: "leaf1".into(),
            during: "show version".into(),
        });
        assert!(matches!(retry, Refusal::Retry(_)));
    }
}
