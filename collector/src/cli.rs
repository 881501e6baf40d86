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
//! - **Parsed tables as snapshots.** Any other output a template parses (`show version`,
//!   `show lldp neighbors`, an ntc template from `--cli-templates`) is also stored as a
//!   structured snapshot: its rows as JSON objects, interface names expanded, rows sorted,
//!   volatile columns ([`VOLATILE_COLUMNS`]) left out; the store keeps a new one only when
//!   it differs from the latest. An output a template cannot parse is still kept raw; the
//!   failure is counted (`netpulse_collector_cli_parse_errors`) and logged once per
//!   command until it parses again.
//! - **Schedule.** Each command first runs at a random point of its interval (a fleet
//!   does not poll in lock step), then every interval. A poll that overruns is reported
//!   (`netpulse_collector_cli_overruns`) and the missed runs are skipped, never stacked.
//!   Commands that fell due while the device had no session (opening, reconnecting) run
//!   at a random point of the next min(interval, [`OVERDUE_WINDOW`]) once it opens, not
//!   all at once ([`respread`]): sessions that open together after a storm would
//!   otherwise poll together for good.
//! - **Sessions.** One session per device, reused across polls and reset every
//!   [`SESSION_RESET`]. Its slot (one session per device) is held for the session's
//!   life; logins (connect, authenticate, shell and `enable`) are capped per AAA group
//!   and per collector, their slots given back once the session is up
//!   ([`sshcli::session::limit`]), so every device gets polled however many there are. A device waiting for a slot is
//!   counted (`netpulse_collector_cli_waiting`); one waiting longer than
//!   [`WAIT_REPORT`] is reported connecting with the cap it waits for. A failed or
//!   closed session is retried with jittered exponential backoff, a refused login or
//!   host key much later (retrying cannot help).
//!   A reset is no state change: the device stays synced while the new session opens,
//!   unless that takes longer than [`RESET_GRACE`] (then it is connecting) or fails (then
//!   it is unreachable, as after any failure).
//! - **Host keys.** Pinned key, known-hosts Secret, or explicit trust on first use: the
//!   key learned first is recorded in the store (as the output of the pseudo-command
//!   [`HOST_KEY_RECORD`], shared by every collector) and a different key is refused
//!   afterwards. The trusted key (learned now or loaded) goes to the state sink, which
//!   shows it in the Device status (`sshHostKey`).
//! - **Enable secret.** A shell whose first prompt is unprivileged gets `enable`; its
//!   password prompt is answered with [`ENABLE_SECRET_KEY`] of the credentials Secret.
//!   The shell is opened on connect, so a missing or wrong secret is a refusal (retried
//!   after the refused backoff, as a wrong login is), not a failed command.
//!
//! A device without gNMI collection gets its state (connecting, synced, unreachable)
//! from this task; one with both keeps the gNMI session's, and SSH failures go to the
//! log and the metrics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::devices_file::DeviceEntry;
use crds::{CliPlatform, SshMode, SshSpec};
use model::{DeviceKey, DeviceState, Sample};
use sshcli::Platform;
use sshcli::parse::{Field, Row, TemplateSet};
use sshcli::session::limit::{Blocked, Limiter, jittered_backoff};
use sshcli::session::{
    self, AuthMethod, EnableSecret, HostKeyPolicy, LearnedHostKey, Mode, Session, SessionConfig,
};
use store::{CliOutput, CliSnapshot, SnapshotOutcome, SnapshotRow, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::CollectorConfig;
use crate::metrics::{CliResultLabel, CollectorMetrics};
use crate::session::{Reporter, now_ns};
use crate::status::{SshHostKeyStatus, StateSink};
use crate::transport;

/// Raw output kept per command run (the store's limit is larger).
pub const MAX_RAW_OUTPUT: usize = 256 * 1024;
/// A session is closed and opened again after this long (devices leak per-session state).
pub const SESSION_RESET: Duration = Duration::from_secs(3600);
/// How long the session replacing a reset one may take to open before the device is
/// reported connecting (until then it stays synced: a planned reset is no state change).
pub const RESET_GRACE: Duration = Duration::from_secs(30);
/// A device waiting this long for a session or login slot is reported connecting with
/// the cap it waits for (and logged); until then it is only counted.
pub const WAIT_REPORT: Duration = Duration::from_secs(30);
/// Commands that fell due while a device had no session run at a random point of the
/// next min(their interval, this) once it opens: long enough to give a fleet that
/// reconnected together its spread back (uniform phases for intervals up to a minute),
/// short enough that a long-interval command (a configuration backup) is not left stale
/// for another full interval after an outage.
pub const OVERDUE_WINDOW: Duration = Duration::from_secs(60);
/// The pseudo-command under which a host key learned on first use is recorded.
pub const HOST_KEY_RECORD: &str = "#ssh-host-key";
/// Key of a private-key Secret when none is named (as in `kubernetes.io/ssh-auth`).
pub const DEFAULT_PRIVATE_KEY_KEY: &str = "ssh-privatekey";
/// Key of the private key's passphrase, in the same Secret (optional).
pub const PASSPHRASE_KEY: &str = "passphrase";
/// Key of the enable secret in the credentials Secret (optional): sent when `enable`
/// asks for a password.
pub const ENABLE_SECRET_KEY: &str = "enable-secret";

/// What the CLI tasks of a collector share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// TextFSM templates (the project's, optionally in front of a directory's).
    pub templates: Arc<TemplateSet>,
    /// Session caps: per device, per AAA group, per collector.
    pub limiter: Arc<Limiter>,
    /// Where raw outputs, changes and learned host keys go.
    pub store: Arc<dyn Store>,
    /// Where the host keys trusted on first use are shown (the Device status), if anywhere.
    pub sink: Option<Arc<dyn StateSink>>,
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
    let timing = Timing {
        reset: SESSION_RESET,
        reset_grace: RESET_GRACE,
        wait_report: WAIT_REPORT,
    };
    run_with(device, tx, reporter, shared, config, shutdown, timing).await;
}

/// When sessions are reset and waits reported: [`SESSION_RESET`], [`RESET_GRACE`] and
/// [`WAIT_REPORT`] but in tests.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// A session is reset after this long.
    reset: Duration,
    /// The replacing session may take this long before the device is reported connecting.
    reset_grace: Duration,
    /// A wait for a session or login slot this long is reported.
    wait_report: Duration,
}

/// [`run`] with its session timing.
async fn run_with(
    device: DeviceEntry,
    tx: mpsc::Sender<Vec<Sample>>,
    reporter: Reporter,
    shared: Shared,
    config: CollectorConfig,
    shutdown: CancellationToken,
    timing: Timing,
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
        timing,
        unparsed: Mutex::default(),
        waiting: Mutex::default(),
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
    timing: Timing,
    /// Commands whose output the template failed to parse last time (logged once).
    unparsed: Mutex<HashSet<String>>,
    /// Why the device is waiting for a session or login slot, while it is.
    waiting: Mutex<Option<String>>,
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
        // The previous session was reset as planned: the device stays synced while the
        // next one opens, if it opens in time.
        let mut reset = false;
        loop {
            if attempt > 0 {
                self.metrics().cli_reconnects.inc();
            }
            if !reset {
                self.set_state(DeviceState::Connecting, None).await;
            }
            let connecting = self.connect(reset);
            tokio::pin!(connecting);
            let connected = tokio::select! {
                () = self.shutdown.cancelled() => return,
                c = &mut connecting => c,
                () = tokio::time::sleep(self.timing.reset_grace), if reset => {
                    tracing::info!(device = %self.name(), grace_ms = self.timing.reset_grace.as_millis() as u64, "SSH session reset is slow to reconnect");
                    let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    self.set_state(DeviceState::Connecting, waiting).await;
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        c = &mut connecting => c,
                    }
                }
            };
            reset = false;
            let wait = match connected {
                Ok((session, platform)) => {
                    attempt = 0;
                    match self.poll(session, platform, &mut schedule).await {
                        Ended::Shutdown => return,
                        Ended::Reset => {
                            reset = true;
                            continue;
                        }
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

    /// Opens a session (within the caps) and settles the platform. The device's session
    /// slot is held for the session's life, the login slots until it is up. `reset`: the
    /// previous session was reset as planned (the device stays synced meanwhile).
    async fn connect(&self, reset: bool) -> Result<(Connected, Platform), Refusal> {
        let limiter = &self.shared.limiter;
        let device = self.name().as_str();
        let group = self.ssh.aaa_group.as_deref();
        let mut permit = match limiter.try_device(device) {
            Some(permit) => permit,
            None => {
                let limit = limiter.limits().per_device;
                let blocked = || Some(Blocked::Device { limit });
                self.wait_for(limiter.device(device), blocked, reset).await
            }
        };
        // Secrets and the recorded host key are read before logging in: a login slot is
        // only held while talking to the device.
        let recorded = self.learned_key().await?;
        if let Some(record) = &recorded {
            self.show_host_key(&record.output, record.ts);
        }
        let learned = recorded.map(|r| r.output);
        let config = self.session_config(learned.clone()).await?;
        if !limiter.try_login(&mut permit, group) {
            let blocked = || limiter.login_blocked(group);
            self.wait_for(limiter.login(&mut permit, group), blocked, reset)
                .await;
        }
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
            match self.shared.store.record_cli_output(&record).await {
                Ok(_) => self.show_host_key(&record.output, record.ts),
                // Kept for this session; the next one learns it again.
                Err(error) => {
                    tracing::warn!(device = %self.name(), %error, "Learned host key not recorded");
                }
            }
        }
        if config.mode == Mode::Shell {
            // Enable (and its secret) now: a refused one is a refused connection.
            session.open_shell().await.map_err(refusal)?;
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
        // Up: the AAA group and the collector may let the next login in.
        permit.logged_in();
        Ok((
            Connected {
                session,
                _permit: permit,
                opened: Instant::now(),
            },
            platform,
        ))
    }

    /// Waits for `slot`, counted in `netpulse_collector_cli_waiting`. A wait longer than
    /// [`WAIT_REPORT`] is logged with the cap `blocked` names, and the device reported
    /// connecting with it (after a planned reset, the reset's grace reports it instead).
    async fn wait_for<T>(
        &self,
        slot: impl Future<Output = T>,
        blocked: impl Fn() -> Option<Blocked>,
        reset: bool,
    ) -> T {
        let why = || {
            blocked().map_or_else(
                || "waiting for an SSH login slot".to_owned(),
                waiting_reason,
            )
        };
        let _waiting = Waiting::start(self, why());
        tokio::pin!(slot);
        let started = Instant::now();
        tokio::select! {
            got = &mut slot => return got,
            () = tokio::time::sleep(self.timing.wait_report) => {}
        }
        let reason = why();
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
        tracing::info!(device = %self.name(), %reason, waited_s = started.elapsed().as_secs(), "SSH session waits for a slot");
        if !reset {
            self.set_state(DeviceState::Connecting, Some(reason)).await;
        }
        let got = slot.await;
        tracing::info!(device = %self.name(), waited_s = started.elapsed().as_secs(), "SSH session got its slot");
        if !reset {
            self.set_state(DeviceState::Connecting, None).await;
        }
        got
    }

    /// Shows the host key trusted on first use (recorded at `at`, ns) in the state sink.
    fn show_host_key(&self, openssh: &str, at: i64) {
        let Some(sink) = &self.shared.sink else {
            return;
        };
        match LearnedHostKey::from_openssh(openssh) {
            Ok(key) => sink.host_key(
                self.name(),
                SshHostKeyStatus {
                    algorithm: key.algorithm().to_owned(),
                    fingerprint: key.fingerprint,
                    learned_at: chrono::DateTime::from_timestamp_nanos(at)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            ),
            // The session refuses it as a configuration error, with the reason.
            Err(error) => {
                tracing::warn!(device = %self.name(), %error, "Recorded host key unreadable");
            }
        }
    }

    /// The record of the host key learned on first use earlier, from the store.
    async fn learned_key(&self) -> Result<Option<CliOutput>, Refusal> {
        if !self.ssh.trust_on_first_use || self.ssh.host_key.is_some() {
            return Ok(None);
        }
        match self
            .shared
            .store
            .cli_output(self.name(), HOST_KEY_RECORD)
            .await
        {
            Ok(found) => Ok(found),
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
        let (username, password, enable_secret) = match &spec.credentials {
            Some(secret) => {
                let user = transport::read_text(&self.config, &secret.name, secret.username_key())
                    .await
                    .map_err(Refusal::Refused)?;
                let password =
                    transport::read_text(&self.config, &secret.name, secret.password_key()).await;
                // Optional, as the password is: a device that asks for it without one
                // is refused with a message naming the key.
                let enable_secret =
                    transport::read_text(&self.config, &secret.name, ENABLE_SECRET_KEY)
                        .await
                        .ok()
                        .filter(|s| !s.is_empty())
                        .map(EnableSecret::new);
                (user, password.ok(), enable_secret)
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
        config.shell.enable_secret = enable_secret;
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
        // Runs that fell due while there was no session are not overruns: they run soon,
        // spread apart.
        respread(schedule, Instant::now(), fastrand::f64);
        let ended = loop {
            if connected.opened.elapsed() >= self.timing.reset {
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
                // A reopened shell (after a timeout) whose enable is refused now: the
                // next connection reports it as a refusal.
                Err(error)
                    if matches!(
                        error,
                        session::Error::Closed { .. }
                            | session::Error::EnableDenied { .. }
                            | session::Error::EnableSecretRequired { .. }
                    ) || connected.session.is_closed() =>
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

    /// Keeps the output (recording a change), and sends the series it carries or stores
    /// the table it parses into.
    async fn process(&self, platform: Platform, command: &str, text: String) {
        let ts = now_ns();
        let mut series = false;
        let mut snapshot = None;
        match self.shared.templates.lookup(platform.as_str(), command) {
            Ok(template) if template.name().ends_with("show_interfaces.textfsm") => {
                series = true;
                let samples = template.parse(&text).and_then(|rows| {
                    sshcli::parse::interface_samples(self.name(), platform, &rows, ts)
                });
                match samples {
                    Ok(samples) => {
                        self.parsed(command);
                        if !samples.is_empty() {
                            self.metrics().samples_received.inc_by(samples.len() as u64);
                            if self.tx.send(samples).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(error) => self.not_parsed(command, &error),
                }
            }
            // Other tables are kept as snapshots beside the raw output.
            Ok(template) => match template.parse(&text) {
                Ok(rows) => {
                    self.parsed(command);
                    let (rows, truncated) = store::cli::bound_rows(snapshot_rows(platform, rows));
                    snapshot = Some(CliSnapshot {
                        device: self.name().clone(),
                        command: command.to_owned(),
                        template: template.name().to_owned(),
                        ts,
                        last_seen: ts,
                        rows,
                        truncated,
                    });
                }
                Err(error) => self.not_parsed(command, &error),
            },
            // A command without a template is kept raw only.
            Err(_) => {}
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
        let Some(snapshot) = snapshot else {
            return;
        };
        match self.shared.store.record_cli_snapshot(&snapshot).await {
            Ok(SnapshotOutcome::Changed) => {
                self.metrics().cli_snapshot_changes.inc();
                tracing::info!(device = %self.name(), %command, rows = snapshot.rows.len(), "Parsed CLI table changed");
            }
            Ok(SnapshotOutcome::First | SnapshotOutcome::Unchanged | SnapshotOutcome::Late) => {}
            Err(error) => {
                tracing::warn!(device = %self.name(), %command, %error, "CLI snapshot not stored");
            }
        }
    }

    /// Counts a parse failure, and logs the first of a run of them.
    fn not_parsed(&self, command: &str, error: &sshcli::parse::Error) {
        self.metrics().cli_parse_errors.inc();
        let first = self
            .unparsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(command.to_owned());
        if first {
            tracing::warn!(device = %self.name(), %command, %error, "CLI output not parsed (kept raw; not logged again until it parses)");
        }
    }

    /// Ends a run of parse failures of `command`, if there was one.
    fn parsed(&self, command: &str) {
        let recovered = self
            .unparsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(command);
        if recovered {
            tracing::info!(device = %self.name(), %command, "CLI output parsed again");
        }
    }
}

/// Columns that change on every run while nothing changed (uptimes, free memory), left
/// out of snapshots as [`VOLATILE`] lines are out of raw outputs; so is any column
/// starting with `UPTIME_` (ntc-templates split uptimes into years, weeks, ...).
pub const VOLATILE_COLUMNS: &[&str] = &[
    "UPTIME",
    "FREE_MEMORY",
    "USED_MEMORY",
    "FREE_MEM",
    "USED_MEM",
];

fn volatile_column(column: &str) -> bool {
    VOLATILE_COLUMNS.contains(&column) || column.starts_with("UPTIME_")
}

/// Parsed rows as snapshot rows: without volatile columns, interface names expanded,
/// sorted (the same table always gives the same snapshot), `List` values as arrays.
fn snapshot_rows(platform: Platform, rows: Vec<Row>) -> Vec<SnapshotRow> {
    let rows = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .filter(|(c, _)| !volatile_column(c))
                .collect()
        })
        .collect();
    sshcli::parse::Snapshot::new(platform, "", rows)
        .rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(column, field)| {
                    let value = match field {
                        Field::Text(text) => serde_json::Value::String(text),
                        Field::List(items) => serde_json::Value::Array(
                            items.into_iter().map(serde_json::Value::String).collect(),
                        ),
                    };
                    (column, value)
                })
                .collect()
        })
        .collect()
}

/// A wait for a session or login slot, counted in the waiting gauge while it lasts.
struct Waiting<'a> {
    task: &'a Task,
}

impl<'a> Waiting<'a> {
    fn start(task: &'a Task, reason: String) -> Self {
        task.metrics().cli_waiting.inc();
        *task.waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        Waiting { task }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.task.metrics().cli_waiting.dec();
        *self.task.waiting.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Why a device waits, in the words of its Device status.
fn waiting_reason(blocked: Blocked) -> String {
    match blocked {
        Blocked::Device { limit } => format!(
            "waiting for the SSH session already open to this device to close ({limit} per device)"
        ),
        Blocked::Group { group, limit } => format!(
            "waiting to log in: {limit} SSH logins to AAA group {group} already in progress (--ssh-sessions-per-group)"
        ),
        Blocked::Collector { limit } => format!(
            "waiting to log in: {limit} SSH logins of this collector already in progress (--ssh-sessions)"
        ),
    }
}

/// Spreads the commands that fell due before `now` (while the device had no session)
/// over the next min(interval, [`OVERDUE_WINDOW`]): each at `jitter()` (in `[0, 1)`) of
/// that window. Those not due yet keep their time. Each overdue command runs once, its
/// missed runs are dropped (they are not overruns: there was no session to run them).
fn respread(schedule: &mut [Due], now: Instant, mut jitter: impl FnMut() -> f64) {
    for due in schedule.iter_mut().filter(|d| d.next <= now) {
        let window = due.interval.min(OVERDUE_WINDOW);
        let at = jitter();
        let at = if at.is_finite() {
            at.clamp(0.0, 1.0)
        } else {
            0.0
        };
        due.next = now + window.mul_f64(at);
    }
}

/// An open session and its permit (the device's session slot; the login slots are
/// given back once it is up).
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
        E::EnableSecretRequired { .. } => Refusal::Refused(format!(
            "{error}: put it under {ENABLE_SECRET_KEY} in the credentials Secret"
        )),
        E::AuthFailed { .. }
        | E::HostKeyMismatch { .. }
        | E::HostKeyUnknown { .. }
        | E::HostKeyRevoked { .. }
        | E::PrivateKey { .. }
        | E::EnableDenied { .. }
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
    fn snapshot_rows_leave_out_volatile_columns_and_sort() {
        let row = |uptime: &str, port: &str, neighbour: &str| -> Row {
            [
                ("UPTIME", Field::Text(uptime.into())),
                ("UPTIME_WEEKS", Field::Text(uptime.into())),
                ("LOCAL_INTERFACE", Field::Text(port.into())),
                ("NEIGHBOR_NAME", Field::Text(neighbour.into())),
                ("CAPABILITIES", Field::List(vec!["B".into(), "R".into()])),
            ]
            .into_iter()
            .map(|(c, f)| (c.to_owned(), f))
            .collect()
        };
        let first = snapshot_rows(
            Platform::CiscoIos,
            vec![
                row("1 day", "Gi0/2", "spine2"),
                row("1 day", "Gi0/1", "spine1"),
            ],
        );
        let later = snapshot_rows(
            Platform::CiscoIos,
            vec![
                row("2 days", "Gi0/1", "spine1"),
                row("3 days", "Gi0/2", "spine2"),
            ],
        );
        assert_eq!(first, later, "uptimes and row order are no change");
        assert_eq!(
            serde_json::Value::Array(first.into_iter().map(serde_json::Value::Object).collect()),
            serde_json::json!([
                {"CAPABILITIES": ["B", "R"], "LOCAL_INTERFACE": "GigabitEthernet0/1", "NEIGHBOR_NAME": "spine1"},
                {"CAPABILITIES": ["B", "R"], "LOCAL_INTERFACE": "GigabitEthernet0/2", "NEIGHBOR_NAME": "spine2"},
            ])
        );
    }

    /// A TCP proxy in front of a device that can turn into a black hole: it then accepts
    /// connections and never answers (a device whose SSH server hangs).
    struct Proxy {
        addr: std::net::SocketAddr,
        black_hole: Arc<std::sync::atomic::AtomicBool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Proxy {
        async fn start(target: std::net::SocketAddr) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let black_hole = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let hole = black_hole.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if hole.load(std::sync::atomic::Ordering::SeqCst) {
                        tokio::spawn(async move {
                            let _held = inbound;
                            std::future::pending::<()>().await;
                        });
                        continue;
                    }
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            Self {
                addr,
                black_hole,
                task,
            }
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// The states published for the device so far, oldest first (the state writer runs a
    /// few writes at once, so they are sorted by their time).
    async fn states(
        events: &mut bus::Subscription,
        seen: &mut Vec<model::DeviceEvent>,
    ) -> Vec<DeviceState> {
        use futures::StreamExt as _;
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(300), events.next()).await
        {
            if let bus::BusMessage::State(event) = message {
                seen.push(event);
            }
        }
        seen.sort_by_key(|e| e.ts);
        seen.iter().map(|e| e.state).collect()
    }

    #[tokio::test]
    async fn a_planned_reset_is_no_state_change_but_a_slow_or_failed_reconnect_is() {
        use std::sync::atomic::Ordering::SeqCst;
        let fleet = simulator::Fleet::start(simulator::FleetConfig {
            devices: 1,
            base_address: "127.41.9.1".parse().unwrap(),
            port: 0,
            interfaces: 1,
            seed: 3,
            ssh: Some(simulator::SshConfig {
                port: 0,
                config_change_every: None,
                ..simulator::SshConfig::default()
            }),
            ..simulator::FleetConfig::default()
        })
        .await
        .unwrap();
        let proxy = Proxy::start(fleet.devices()[0].ssh_addr.unwrap()).await;
        let secrets = tempfile::tempdir().unwrap();
        let sim = secrets.path().join("sim");
        std::fs::create_dir_all(&sim).unwrap();
        std::fs::write(sim.join("username"), simulator::DEFAULT_SSH_USERNAME).unwrap();
        std::fs::write(sim.join("password"), simulator::DEFAULT_SSH_PASSWORD).unwrap();
        let config = CollectorConfig {
            secrets_dir: Some(secrets.path().to_owned()),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            ..CollectorConfig::default()
        };
        let name = DeviceKey::new("reset1").unwrap();
        let mut spec = crds::DeviceSpec::new(proxy.addr.ip().to_string());
        spec.gnmi.enabled = false;
        spec.credentials = Some(crds::SecretRef {
            name: "sim".into(),
            username_key: None,
            password_key: None,
        });
        spec.ssh = Some(SshSpec {
            port: proxy.addr.port(),
            host_key: Some(fleet.ssh_host_key().unwrap().to_owned()),
            known_hosts_secret: None,
            trust_on_first_use: false,
            commands: vec![crds::SshCommand {
                command: "show version".into(),
                interval: "200ms".into(),
            }],
            platform: Some(CliPlatform::AristaEos),
            mode: SshMode::Shell,
            prompt: None,
            legacy_algorithms: false,
            aaa_group: None,
            private_key_secret: None,
        });
        let device = DeviceEntry {
            name: name.clone(),
            spec,
        };
        let store = store::open("sqlite::memory:", true).await.unwrap();
        let bus: Arc<dyn bus::Bus> = Arc::new(bus::MemoryBus::new());
        let mut events = bus.subscribe(bus::Topic::Device(name.clone()));
        let metrics = Arc::new(CollectorMetrics::default());
        let (reporter, _writer) = Reporter::new(
            store.clone(),
            bus.clone(),
            metrics.clone(),
            crate::HealthBook::default(),
            crate::membership::OwnershipTable::default(),
            None,
        );
        let shared = Shared {
            templates: Arc::new(TemplateSet::embedded().unwrap()),
            limiter: Arc::new(Limiter::new(sshcli::session::limit::Limits::default())),
            store,
            sink: None,
        };
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let shutdown = CancellationToken::new();
        let timing = Timing {
            reset: Duration::from_millis(600),
            reset_grace: Duration::from_millis(1500),
            wait_report: WAIT_REPORT,
        };
        let task = tokio::spawn(run_with(
            device,
            tx,
            reporter,
            shared,
            config,
            shutdown.clone(),
            timing,
        ));

        // Sessions come and go every 600 ms: the device is connecting once, then synced.
        let deadline = Instant::now() + Duration::from_secs(20);
        while metrics.cli_connects.get() < 4 {
            assert!(
                Instant::now() < deadline,
                "the session was not reset 3 times"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut seen = Vec::new();
        assert_eq!(
            states(&mut events, &mut seen).await,
            [DeviceState::Connecting, DeviceState::Synced],
            "{} connects",
            metrics.cli_connects.get()
        );

        // The device stops answering: the next reset's session does not come up within
        // the grace (connecting), then its connect times out (unreachable).
        proxy.black_hole.store(true, SeqCst);
        let black_hole_at = now_ns();
        let deadline = Instant::now() + Duration::from_secs(20);
        let after_reset = loop {
            let states = states(&mut events, &mut seen).await;
            if states.contains(&DeviceState::Unreachable) {
                break states;
            }
            assert!(Instant::now() < deadline, "never unreachable: {states:?}");
        };
        assert_eq!(
            after_reset.get(..4),
            Some(
                &[
                    DeviceState::Connecting,
                    DeviceState::Synced,
                    DeviceState::Connecting,
                    DeviceState::Unreachable
                ][..]
            ),
            "{after_reset:?}"
        );
        // Reported connecting only once the grace had passed since the reset's connect.
        assert!(
            seen[2].ts >= black_hole_at + timing.reset_grace.as_nanos() as i64,
            "connecting {} ms after the black hole",
            (seen[2].ts - black_hole_at) / 1_000_000
        );

        // It answers again: synced once more.
        proxy.black_hole.store(false, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while states(&mut events, &mut seen).await.last() != Some(&DeviceState::Synced) {
            assert!(Instant::now() < deadline, "never synced again");
        }
        shutdown.cancel();
        task.await.unwrap();
        fleet.shutdown().await;
    }

    fn due(command: &str, interval: Duration, next: Instant) -> Due {
        Due {
            command: command.to_owned(),
            interval,
            next,
        }
    }

    #[test]
    fn overdue_commands_are_spread_over_a_bounded_window_when_a_session_opens() {
        let s = Duration::from_secs;
        let now = Instant::now();
        let mut schedule = [
            due("show interfaces", s(5), now - s(3)),
            due("show running-config", s(900), now - s(1)),
            due("show version", s(10), now + s(2)),
            due("show lldp neighbors", s(20), now),
        ];
        let mut draws = [0.5, 0.5, 0.25].into_iter();
        respread(&mut schedule, now, || {
            draws
                .next()
                .unwrap_or_else(|| panic!("drawn for a command not due"))
        });
        let next: Vec<Duration> = schedule
            .iter()
            .map(|d| d.next.duration_since(now))
            .collect();
        assert_eq!(
            next,
            [Duration::from_millis(2500), OVERDUE_WINDOW / 2, s(2), s(5),],
            "overdue within min(interval, {OVERDUE_WINDOW:?}); not due: unchanged"
        );
        // Whatever the draw, an overdue command runs once, within its window.
        for draw in [0.0, 0.999_999, 1.0, 7.0, -1.0, f64::NAN] {
            let mut one = [due("show version", s(5), now - s(60))];
            respread(&mut one, now, || draw);
            assert!(one[0].next >= now && one[0].next <= now + s(5), "{draw}");
        }
    }

    #[test]
    fn a_fleet_reconnected_at_once_gets_its_spread_back() {
        // 1,200 devices polling every 60 s, all overdue at the same instant (they
        // reconnected together after an outage): once their sessions open, each 5 s of
        // the next minute gets about a twelfth of the polls, not all of them.
        let now = Instant::now();
        let interval = Duration::from_secs(60);
        let mut rng = fastrand::Rng::with_seed(17);
        let mut bins = [0u32; 12];
        for _ in 0..1200 {
            let mut schedule = [due(
                "show interfaces",
                interval,
                now - Duration::from_secs(1),
            )];
            respread(&mut schedule, now, || rng.f64());
            let at = schedule[0].next.duration_since(now).as_secs() as usize;
            bins[at / 5] += 1;
        }
        assert!(
            bins.iter().all(|&n| (60..=140).contains(&n)),
            "polls per 5 s: {bins:?}"
        );
    }

    #[tokio::test]
    async fn a_device_waiting_for_a_login_slot_is_counted_and_says_why() {
        let fleet = simulator::Fleet::start(simulator::FleetConfig {
            devices: 1,
            base_address: "127.41.9.2".parse().unwrap(),
            port: 0,
            interfaces: 1,
            seed: 5,
            ssh: Some(simulator::SshConfig {
                port: 0,
                config_change_every: None,
                ..simulator::SshConfig::default()
            }),
            ..simulator::FleetConfig::default()
        })
        .await
        .unwrap();
        let addr = fleet.devices()[0].ssh_addr.unwrap();
        let secrets = tempfile::tempdir().unwrap();
        let sim = secrets.path().join("sim");
        std::fs::create_dir_all(&sim).unwrap();
        std::fs::write(sim.join("username"), simulator::DEFAULT_SSH_USERNAME).unwrap();
        std::fs::write(sim.join("password"), simulator::DEFAULT_SSH_PASSWORD).unwrap();
        let config = CollectorConfig {
            secrets_dir: Some(secrets.path().to_owned()),
            ..CollectorConfig::default()
        };
        let name = DeviceKey::new("waits1").unwrap();
        let mut spec = crds::DeviceSpec::new(addr.ip().to_string());
        spec.gnmi.enabled = false;
        spec.credentials = Some(crds::SecretRef {
            name: "sim".into(),
            username_key: None,
            password_key: None,
        });
        spec.ssh = Some(SshSpec {
            port: addr.port(),
            host_key: Some(fleet.ssh_host_key().unwrap().to_owned()),
            known_hosts_secret: None,
            trust_on_first_use: false,
            commands: vec![crds::SshCommand {
                command: "show version".into(),
                interval: "200ms".into(),
            }],
            platform: Some(CliPlatform::AristaEos),
            mode: SshMode::Shell,
            prompt: None,
            legacy_algorithms: false,
            aaa_group: Some("tacacs1".into()),
            private_key_secret: None,
        });
        let device = DeviceEntry {
            name: name.clone(),
            spec,
        };
        let store = store::open("sqlite::memory:", true).await.unwrap();
        let bus: Arc<dyn bus::Bus> = Arc::new(bus::MemoryBus::new());
        let mut events = bus.subscribe(bus::Topic::Device(name.clone()));
        let metrics = Arc::new(CollectorMetrics::default());
        let (reporter, _writer) = Reporter::new(
            store.clone(),
            bus.clone(),
            metrics.clone(),
            crate::HealthBook::default(),
            crate::membership::OwnershipTable::default(),
            None,
        );
        let limiter = Arc::new(Limiter::new(sshcli::session::limit::Limits {
            per_device: 1,
            per_group: 1,
            global: 8,
        }));
        // Another device of the group is logging in, and stays at it.
        let blocker = limiter.try_acquire("other", Some("tacacs1")).unwrap();
        let shared = Shared {
            templates: Arc::new(TemplateSet::embedded().unwrap()),
            limiter: limiter.clone(),
            store,
            sink: None,
        };
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let shutdown = CancellationToken::new();
        let timing = Timing {
            reset: SESSION_RESET,
            reset_grace: RESET_GRACE,
            wait_report: Duration::from_millis(300),
        };
        let task = tokio::spawn(run_with(
            device,
            tx,
            reporter,
            shared,
            config,
            shutdown.clone(),
            timing,
        ));

        // Counted as waiting at once, then reported connecting with the cap it waits for.
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let reason = loop {
            states(&mut events, &mut seen).await;
            if let Some(reason) = seen.iter().find_map(|e| e.error.clone()) {
                break reason;
            }
            assert!(
                Instant::now() < deadline,
                "the wait was never reported: {seen:?}"
            );
        };
        assert_eq!(metrics.cli_waiting.get(), 1);
        assert_eq!(
            metrics.cli_connects.get(),
            0,
            "no login past the group's cap"
        );
        assert!(
            reason.contains("tacacs1") && reason.contains("--ssh-sessions-per-group"),
            "{reason}"
        );
        assert!(
            seen.iter().all(|e| e.state == DeviceState::Connecting),
            "{seen:?}"
        );

        // The other login ends: this one logs in, and once its session is up, gives the
        // group's login slot back while the session stays open.
        drop(blocker);
        let deadline = Instant::now() + Duration::from_secs(10);
        while states(&mut events, &mut seen).await.last() != Some(&DeviceState::Synced) {
            assert!(Instant::now() < deadline, "never synced: {seen:?}");
        }
        assert_eq!(metrics.cli_waiting.get(), 0);
        assert_eq!(metrics.cli_sessions.get(), 1);
        assert!(
            limiter.try_acquire("third", Some("tacacs1")).is_some(),
            "an open session holds no login slot"
        );
        assert!(
            limiter.try_device("waits1").is_none(),
            "the session holds its device's"
        );
        shutdown.cancel();
        task.await.unwrap();
        fleet.shutdown().await;
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
        let denied = refusal(session::Error::EnableDenied {
            device: "leaf1".into(),
            reason: "the enable secret was not accepted".into(),
        });
        assert!(matches!(denied, Refusal::Refused(m) if m.contains("leaf1")));
        let needed = refusal(session::Error::EnableSecretRequired {
            device: "leaf1".into(),
        });
        assert!(
            matches!(&needed, Refusal::Refused(m) if m.contains("leaf1") && m.contains(ENABLE_SECRET_KEY)),
            "needs the key named"
        );
    }
}
